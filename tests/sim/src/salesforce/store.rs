//! The org's records and the rules a write meets, in Salesforce's order:
//! field names, converted leads, field values and required fields, unique
//! External ID values (`DUPLICATE_VALUE`), then the duplicate rule
//! (`DUPLICATES_DETECTED`).
//!
//! Writes go through a [`Tx`]: an overlay on the committed records, so a
//! Collections call can be thrown away whole when `allOrNone` fails, and
//! so later records of one call see the earlier ones (a unique value taken
//! by record 1 is taken for record 2). The duplicate rule, though, matches
//! only records committed before the call: the simulator does not flag
//! two new duplicates inside one call (how Salesforce treats that is not
//! documented; see the module notes in `salesforce.rs`).
//!
//! The committed records are indexed per object ([`FieldIndex`]) by
//! `Email` and by every External ID field, so the External ID match of an
//! upsert, the unique-value check, the duplicate rule and a SOQL equality
//! on those fields look records up instead of scanning the org.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound;

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::schema::{CONVERTED_LEAD_STATUS, DEFAULT_LEAD_STATUS, Field, SObject, Schema};
use super::soql::{self, Join, Literal};
use super::wire::{DUPLICATE_ALERT, SfError, record_url};
use crate::index::{self, FieldIndex};

/// The field the duplicate rule matches on, indexed on every object.
const EMAIL: &str = "Email";

/// A stored record, as [`crate::SimHandle::salesforce_records`] returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesforceRecord {
    /// 18-character id (`00Q…` Lead, `003…` Contact).
    pub id: String,
    /// `Lead` or `Contact`.
    pub object: String,
    /// Every field with a value, under its API name, including the system
    /// fields (`CreatedDate`, `IsConverted`, `ConvertedContactId`, …).
    pub fields: BTreeMap<String, Value>,
}

impl SalesforceRecord {
    /// A field's value by API name, ignoring case.
    pub fn get(&self, field: &str) -> Option<&Value> {
        self.fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(field))
            .map(|(_, v)| v)
    }

    /// A text field's value.
    pub fn text(&self, field: &str) -> Option<&str> {
        self.get(field).and_then(Value::as_str)
    }

    pub fn email(&self) -> Option<&str> {
        self.text("Email")
    }

    /// Whether this is a Lead that has been converted.
    pub fn is_converted(&self) -> bool {
        self.get("IsConverted") == Some(&Value::Bool(true))
    }

    pub(crate) fn sobject(&self) -> Option<SObject> {
        SObject::parse(&self.object)
    }
}

/// What the Lead duplicate rule does when a new lead matches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DuplicateRuleAction {
    /// Salesforce's Standard Lead Duplicate Rule ("Allow" with an alert):
    /// through the API the save is refused with `DUPLICATES_DETECTED`
    /// unless the request says `Sforce-Duplicate-Rule-Header:
    /// allowSave=true`; `duplicateResult.allowSave` is true.
    #[default]
    Alert,
    /// A "Block" rule: refused whatever the header says;
    /// `duplicateResult.allowSave` is false.
    Block,
}

/// Timestamps as Salesforce writes them: `2024-05-01T12:34:56.000+0000`.
pub(crate) fn sf_datetime(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}+0000",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn now_stamp() -> String {
    sf_datetime(time::OffsetDateTime::now_utc())
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const CHECKSUM: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ012345";

/// An 18-character record id: key prefix, a pod-like `5S`, ten base-62
/// digits of `n`, and Salesforce's 3-character case-safe suffix (one
/// character per 5-character chunk, encoding which characters are
/// uppercase). Ids of one prefix sort in creation order.
pub(crate) fn record_id(prefix: &str, n: u64) -> String {
    let mut digits = [b'0'; 10];
    let mut rest = n;
    for slot in digits.iter_mut().rev() {
        *slot = BASE62[(rest % 62) as usize];
        rest /= 62;
    }
    let mut id = format!("{prefix}5S{}", String::from_utf8_lossy(&digits));
    let suffix: String = id
        .as_bytes()
        .chunks(5)
        .map(|chunk| {
            let flags = chunk
                .iter()
                .enumerate()
                .filter(|(_, c)| c.is_ascii_uppercase())
                .fold(0usize, |acc, (i, _)| acc | (1 << i));
            CHECKSUM[flags] as char
        })
        .collect();
    id.push_str(&suffix);
    id
}

/// Whether `text` looks like a record id (15 or 18 letters and digits).
pub(crate) fn looks_like_id(text: &str) -> bool {
    matches!(text.len(), 15 | 18) && text.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Salesforce's part of the simulator state.
#[derive(Debug)]
pub(crate) struct SalesforceState {
    /// Every record by id; changed only through [`SalesforceState::put`]
    /// and [`SalesforceState::take`], which keep `indexes` current.
    records: BTreeMap<String, SalesforceRecord>,
    /// Per object: `Email` and the External ID fields → record ids.
    indexes: BTreeMap<SObject, FieldIndex<String>>,
    pub schema: Schema,
    next_id: u64,
    /// `None`: the Lead duplicate rule is off.
    pub duplicate_rule: Option<DuplicateRuleAction>,
    /// API requests per rolling 24 hours.
    pub daily_limit: u32,
    /// When each request of the last 24 hours was counted (ms).
    usage: VecDeque<u64>,
}

const DAY_MS: u64 = 86_400_000;

impl SalesforceState {
    pub(crate) fn new(daily_limit: u32) -> Self {
        let schema = Schema::default();
        let indexes = SObject::ALL
            .into_iter()
            .map(|object| {
                let mut fields = vec![EMAIL];
                fields.extend(
                    schema
                        .fields(object)
                        .iter()
                        .filter(|f| f.is_external_id())
                        .map(|f| f.name.as_str()),
                );
                (object, FieldIndex::new(&fields))
            })
            .collect();
        SalesforceState {
            records: BTreeMap::new(),
            indexes,
            schema,
            next_id: 1,
            duplicate_rule: Some(DuplicateRuleAction::Alert),
            daily_limit,
            usage: VecDeque::new(),
        }
    }

    /// Drops records and usage; ids keep increasing.
    pub(crate) fn clear(&mut self) {
        self.records.clear();
        for index in self.indexes.values_mut() {
            index.clear();
        }
        self.usage.clear();
    }

    /// Stores a record (new, or replacing the one with its id), keeping
    /// the indexes current.
    fn put(&mut self, record: SalesforceRecord) {
        self.take(&record.id);
        if let Some(index) = record
            .sobject()
            .and_then(|object| self.indexes.get_mut(&object))
        {
            index.add(&record.id, &record.fields);
        }
        self.records.insert(record.id.clone(), record);
    }

    /// Removes the record with exactly this id, keeping the indexes
    /// current.
    pub(crate) fn take(&mut self, id: &str) -> Option<SalesforceRecord> {
        let record = self.records.remove(id)?;
        if let Some(index) = record
            .sobject()
            .and_then(|object| self.indexes.get_mut(&object))
        {
            index.remove(&record.id, &record.fields);
        }
        Some(record)
    }

    /// The record with exactly this id.
    pub(crate) fn record(&self, id: &str) -> Option<&SalesforceRecord> {
        self.records.get(id)
    }

    /// Adds a custom field to `object` or changes one (see
    /// [`Schema::define`]); an External ID field gets indexed.
    pub(crate) fn define_field(
        &mut self,
        object: SObject,
        name: &str,
        external_id: Option<bool>,
    ) -> bool {
        if !self.schema.define(object, name, external_id) {
            return false;
        }
        if let Some(field) = self
            .schema
            .field(object, name)
            .filter(|f| f.is_external_id())
            && let Some(index) = self.indexes.get_mut(&object)
        {
            let records = self
                .records
                .values()
                .filter(|r| r.sobject() == Some(object))
                .map(|r| (r.id.clone(), &r.fields));
            index.watch(&field.name, records);
        }
        true
    }

    /// The records of `object` that may hold `text` in `field`, in id
    /// order: the index's candidates when the field is indexed, else every
    /// record of the object. Callers check each with their comparison.
    pub(crate) fn lookup<'s>(
        &'s self,
        object: SObject,
        field: &str,
        text: &str,
    ) -> Box<dyn DoubleEndedIterator<Item = &'s SalesforceRecord> + 's> {
        self.pool(object, self.candidates(object, field, text))
    }

    /// The records of `object` with these ids, in id order; every record
    /// of the object for `None`.
    fn pool(
        &self,
        object: SObject,
        ids: Option<BTreeSet<String>>,
    ) -> Box<dyn DoubleEndedIterator<Item = &SalesforceRecord> + '_> {
        match ids {
            Some(ids) => Box::new(
                ids.into_iter()
                    .filter_map(|id| self.records.get(&id))
                    .filter(move |r| r.sobject() == Some(object)),
            ),
            None => Box::new(self.of(object)),
        }
    }

    fn candidates(&self, object: SObject, field: &str, text: &str) -> Option<BTreeSet<String>> {
        self.indexes.get(&object)?.candidates(field, text)
    }

    /// The records a SOQL query selects, in id (creation) order, at most
    /// its `LIMIT`. An equality on an indexed field (`WHERE Email = 'x'`,
    /// `WHERE Leadgate_Id__c = 'k' OR Leadgate_Id__c = 'j'`) narrows the
    /// records through the index; every record is still checked against
    /// the whole WHERE clause.
    pub(crate) fn select(&self, query: &soql::Query) -> Vec<&SalesforceRecord> {
        let object = query.object;
        let narrowed = |c: &soql::Condition| match &c.value {
            Literal::Text(text) | Literal::Number(text) if !c.negated => {
                self.candidates(object, &c.field, text)
            }
            _ => None,
        };
        let mut conditions = query.conditions.iter().map(narrowed);
        let candidates = match query.join {
            Join::And => conditions.fold(None, index::both),
            Join::Or => conditions
                .next()
                .flatten()
                .and_then(|first| conditions.try_fold(first, |acc, c| index::either(Some(acc), c))),
        };
        self.pool(object, candidates)
            .filter(|r| query.matches(|f| r.fields.get(f).cloned()))
            .take(query.limit.unwrap_or(usize::MAX))
            .collect()
    }

    fn prune(&mut self, now_ms: u64) {
        while self
            .usage
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) >= DAY_MS)
        {
            self.usage.pop_front();
        }
    }

    /// API requests used in the last 24 hours, and the allocation.
    pub(crate) fn usage(&mut self, now_ms: u64) -> (u32, u32) {
        self.prune(now_ms);
        (
            u32::try_from(self.usage.len()).unwrap_or(u32::MAX),
            self.daily_limit,
        )
    }

    /// Counts one API request against the daily allocation; `Err` when
    /// it is used up (the request is not counted then).
    pub(crate) fn count_request(&mut self, now_ms: u64) -> Result<(u32, u32), (u32, u32)> {
        let (used, max) = self.usage(now_ms);
        if used >= max {
            return Err((used, max));
        }
        self.usage.push_back(now_ms);
        Ok((used + 1, max))
    }

    /// A record by 18-character id (ignoring case) or 15-character id.
    pub(crate) fn find(&self, id: &str) -> Option<&SalesforceRecord> {
        match id.len() {
            18 => self.records.get(id).or_else(|| {
                self.records
                    .values()
                    .find(|r| r.id.eq_ignore_ascii_case(id))
            }),
            // The ids starting with `id` sort right after it.
            15 => self
                .records
                .range::<str, _>((Bound::Included(id), Bound::Unbounded))
                .next()
                .map(|(_, r)| r)
                .filter(|r| r.id.starts_with(id)),
            _ => None,
        }
    }

    pub(crate) fn of(&self, object: SObject) -> impl DoubleEndedIterator<Item = &SalesforceRecord> {
        self.records
            .values()
            .filter(move |r| r.sobject() == Some(object))
    }

    fn take_id(&mut self, object_prefix: &str) -> String {
        let id = record_id(object_prefix, self.next_id);
        self.next_id += 1;
        id
    }

    /// Converts a lead as Salesforce's lead conversion does: a Contact
    /// (and an Account id for it) made from the lead's standard fields,
    /// the lead marked `IsConverted` with `ConvertedContactId`,
    /// `ConvertedAccountId`, `ConvertedDate` and status "Closed -
    /// Converted". Custom fields are not carried over (that needs a field
    /// mapping in the org). Returns the contact's id; `None` when `lead_id`
    /// is not an unconverted lead.
    pub(crate) fn convert_lead(&mut self, lead_id: &str) -> Option<String> {
        let lead = self.find(lead_id)?.clone();
        if lead.sobject() != Some(SObject::Lead) || lead.is_converted() {
            return None;
        }
        let contact_id = self.take_id(SObject::Contact.prefix());
        let account_id = self.take_id("001");
        let now = now_stamp();
        let mut fields = BTreeMap::new();
        for name in [
            "FirstName",
            "LastName",
            "Email",
            "Phone",
            "MobilePhone",
            "Title",
            "LeadSource",
            "Description",
            "Name",
        ] {
            if let Some(v) = lead.fields.get(name) {
                fields.insert(name.to_owned(), v.clone());
            }
        }
        for (from, to) in [
            ("Street", "MailingStreet"),
            ("City", "MailingCity"),
            ("State", "MailingState"),
            ("PostalCode", "MailingPostalCode"),
            ("Country", "MailingCountry"),
        ] {
            if let Some(v) = lead.fields.get(from) {
                fields.insert(to.to_owned(), v.clone());
            }
        }
        fields.insert("Id".into(), contact_id.clone().into());
        fields.insert("AccountId".into(), account_id.clone().into());
        fields.insert("IsDeleted".into(), false.into());
        fields.insert("CreatedDate".into(), now.clone().into());
        fields.insert("LastModifiedDate".into(), now.clone().into());
        fields.insert("SystemModstamp".into(), now.clone().into());
        self.put(SalesforceRecord {
            id: contact_id.clone(),
            object: SObject::Contact.name().into(),
            fields,
        });
        let mut stored = lead;
        let today = now.get(..10).unwrap_or_default().to_owned();
        for (name, value) in [
            ("IsConverted", Value::Bool(true)),
            ("ConvertedContactId", contact_id.clone().into()),
            ("ConvertedAccountId", account_id.into()),
            ("ConvertedDate", today.into()),
            ("Status", CONVERTED_LEAD_STATUS.into()),
            ("LastModifiedDate", now.clone().into()),
            ("SystemModstamp", now.into()),
        ] {
            stored.fields.insert(name.to_owned(), value);
        }
        self.put(stored);
        Some(contact_id)
    }

    /// Drops a finished transaction (a silently failed write) but keeps
    /// the ids it handed out used, as Salesforce never reuses an id.
    pub(crate) fn discard(&mut self, staged: Staged) {
        self.next_id = self.next_id.max(staged.next_id);
    }

    /// Applies a finished transaction; returns the ids it created, in
    /// order, and the number of records it updated.
    pub(crate) fn commit(&mut self, staged: Staged) -> (Vec<String>, usize) {
        self.next_id = self.next_id.max(staged.next_id);
        let mut created = Vec::new();
        let mut updated = 0;
        for (id, record) in staged.pending {
            if staged.created.contains(&id) {
                created.push(id.clone());
            } else {
                updated += 1;
            }
            self.put(record);
        }
        created.sort();
        (created, updated)
    }
}

#[cfg(test)]
impl SalesforceState {
    /// Panics unless every index is the one the records make now.
    pub(crate) fn check_indexes(&self) {
        for (object, index) in &self.indexes {
            let fields: Vec<&str> = index.watched().collect();
            let mut fresh = FieldIndex::new(&fields);
            for record in self.of(*object) {
                fresh.add(&record.id, &record.fields);
            }
            assert_eq!(index, &fresh, "the {} index is stale", object.name());
        }
    }
}

/// Options a request sets for its writes.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct WriteOptions {
    /// `Sforce-Duplicate-Rule-Header: allowSave=true`.
    pub allow_save: bool,
}

/// The outcome of an upsert that wrote nothing.
#[derive(Debug)]
pub(crate) enum UpsertFailure {
    Errors(Vec<SfError>),
    /// More than one record has the value: Salesforce's 300 (or
    /// `DUPLICATE_EXTERNAL_ID` in a collection).
    Ambiguous(Vec<String>),
    /// `updateOnly=true` and nothing matched.
    NotFound,
}

/// The writes of a transaction, ready to commit.
#[derive(Debug)]
pub(crate) struct Staged {
    pending: BTreeMap<String, SalesforceRecord>,
    created: BTreeSet<String>,
    next_id: u64,
}

/// Writes staged over the committed records.
#[derive(Debug)]
pub(crate) struct Tx<'a> {
    base: &'a SalesforceState,
    pending: BTreeMap<String, SalesforceRecord>,
    created: BTreeSet<String>,
    next_id: u64,
    version: &'a str,
    options: WriteOptions,
}

impl<'a> Tx<'a> {
    pub(crate) fn new(base: &'a SalesforceState, version: &'a str, options: WriteOptions) -> Self {
        Tx {
            base,
            pending: BTreeMap::new(),
            created: BTreeSet::new(),
            next_id: base.next_id,
            version,
            options,
        }
    }

    pub(crate) fn finish(self) -> Staged {
        Staged {
            pending: self.pending,
            created: self.created,
            next_id: self.next_id,
        }
    }

    pub(crate) fn schema(&self) -> &'a Schema {
        &self.base.schema
    }

    /// A record as this transaction sees it.
    pub(crate) fn get(&self, id: &str) -> Option<&SalesforceRecord> {
        self.pending.get(id).or_else(|| self.base.find(id))
    }

    /// Ids of the records of `object` whose `field` equals `value`
    /// (ignoring case, as External ID matching does), staged or committed.
    pub(crate) fn find_by(&self, object: SObject, field: &str, value: &str) -> Vec<String> {
        let matches = |r: &SalesforceRecord| {
            r.sobject() == Some(object)
                && r.fields
                    .get(field)
                    .and_then(Value::as_str)
                    .is_some_and(|v| v.eq_ignore_ascii_case(value))
        };
        let mut ids: Vec<String> = self
            .base
            .lookup(object, field, value)
            .filter(|r| !self.pending.contains_key(&r.id))
            .chain(self.pending.values())
            .filter(|r| matches(r))
            .map(|r| r.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Creates a record from a body (plus `extra` values, e.g. the
    /// External ID of an upsert); returns its id.
    pub(crate) fn create(
        &mut self,
        object: SObject,
        body: &Map<String, Value>,
        extra: &[(String, Value)],
    ) -> Result<String, Vec<SfError>> {
        let prepared = self.schema().prepare(object, body).map_err(|e| vec![e])?;
        let mut record: Map<String, Value> = Map::new();
        for (name, value) in prepared.values.iter().chain(extra) {
            record.insert(name.clone(), value.clone());
        }
        if object == SObject::Lead && record.get("Status").is_none_or(Value::is_null) {
            record.insert("Status".into(), DEFAULT_LEAD_STATUS.into());
        }
        let mut errors = prepared.errors;
        errors.extend(self.schema().missing_required(object, &record));
        if !errors.is_empty() {
            return Err(errors);
        }
        if let Some(error) = self.unique_violation(object, &record, None) {
            return Err(vec![error]);
        }
        if let Some(error) = self.duplicate_rule(object, &record) {
            return Err(vec![error]);
        }
        let id = record_id(object.prefix(), self.next_id);
        self.next_id += 1;
        let now = now_stamp();
        let mut fields: BTreeMap<String, Value> =
            record.into_iter().filter(|(_, v)| !v.is_null()).collect();
        fields.insert("Id".into(), id.clone().into());
        fields.insert("IsDeleted".into(), false.into());
        if object == SObject::Lead {
            fields.insert("IsConverted".into(), false.into());
        }
        fields.insert("CreatedDate".into(), now.clone().into());
        stamp(&mut fields, now);
        self.pending.insert(
            id.clone(),
            SalesforceRecord {
                id: id.clone(),
                object: object.name().into(),
                fields,
            },
        );
        self.created.insert(id.clone());
        Ok(id)
    }

    /// Updates the record `id` (which must exist) from a body.
    pub(crate) fn update(
        &mut self,
        id: &str,
        body: &Map<String, Value>,
    ) -> Result<String, Vec<SfError>> {
        let Some(existing) = self.get(id).cloned() else {
            return Err(vec![SfError::not_found()]);
        };
        let Some(object) = existing.sobject() else {
            return Err(vec![SfError::not_found()]);
        };
        let prepared = self.schema().prepare(object, body).map_err(|e| vec![e])?;
        if existing.is_converted() {
            return Err(vec![converted_lead()]);
        }
        let mut record: Map<String, Value> = existing
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (name, value) in prepared.values {
            record.insert(name, value);
        }
        let mut errors = prepared.errors;
        errors.extend(self.schema().missing_required(object, &record));
        if !errors.is_empty() {
            return Err(errors);
        }
        if let Some(error) = self.unique_violation(object, &record, Some(&existing.id)) {
            return Err(vec![error]);
        }
        let mut fields: BTreeMap<String, Value> =
            record.into_iter().filter(|(_, v)| !v.is_null()).collect();
        stamp(&mut fields, now_stamp());
        let id = existing.id.clone();
        self.pending
            .insert(id.clone(), SalesforceRecord { fields, ..existing });
        Ok(id)
    }

    /// Upserts by an External ID value: updates the one match, creates
    /// when there is none (unless `update_only`). `body` must not carry
    /// the External ID field itself. Returns the id and whether it was
    /// created.
    pub(crate) fn upsert(
        &mut self,
        object: SObject,
        field: &Field,
        value: &str,
        body: &Map<String, Value>,
        update_only: bool,
    ) -> Result<(String, bool), UpsertFailure> {
        let matches = self.find_by(object, &field.name, value);
        match matches.as_slice() {
            [] if update_only => Err(UpsertFailure::NotFound),
            [] => self
                .create(object, body, &[(field.name.clone(), value.into())])
                .map(|id| (id, true))
                .map_err(UpsertFailure::Errors),
            [id] => {
                let id = id.clone();
                self.update(&id, body)
                    .map(|id| (id, false))
                    .map_err(UpsertFailure::Errors)
            }
            _ => Err(UpsertFailure::Ambiguous(matches)),
        }
    }

    /// `DUPLICATE_VALUE` when a unique field's value is another record's.
    fn unique_violation(
        &self,
        object: SObject,
        record: &Map<String, Value>,
        own_id: Option<&str>,
    ) -> Option<SfError> {
        for field in self
            .schema()
            .fields(object)
            .iter()
            .filter(|f| f.is_unique())
        {
            let Some(value) = record.get(&field.name).and_then(Value::as_str) else {
                continue;
            };
            if let Some(other) = self
                .find_by(object, &field.name, value)
                .into_iter()
                .find(|id| Some(id.as_str()) != own_id)
            {
                return Some(
                    SfError::new(
                        StatusCode::BAD_REQUEST,
                        "DUPLICATE_VALUE",
                        format!(
                            "duplicate value found: {} duplicates value on record with id: {other}",
                            field.name
                        ),
                    )
                    .with_fields(Vec::new()),
                );
            }
        }
        None
    }

    /// The Lead duplicate rule on a new lead: committed, unconverted leads
    /// and contacts with the same email (ignoring case), as the Standard
    /// Lead Duplicate Rule's lead and contact matching rules find them.
    fn duplicate_rule(&self, object: SObject, record: &Map<String, Value>) -> Option<SfError> {
        let action = self.base.duplicate_rule?;
        if object != SObject::Lead
            || (action == DuplicateRuleAction::Alert && self.options.allow_save)
        {
            return None;
        }
        let email = record.get("Email").and_then(Value::as_str)?;
        let same = |r: &&SalesforceRecord| r.email().is_some_and(|e| e.eq_ignore_ascii_case(email));
        let leads: Vec<&SalesforceRecord> = self
            .base
            .lookup(SObject::Lead, EMAIL, email)
            .filter(|r| !r.is_converted())
            .filter(same)
            .collect();
        let contacts: Vec<&SalesforceRecord> = self
            .base
            .lookup(SObject::Contact, EMAIL, email)
            .filter(same)
            .collect();
        if leads.is_empty() && contacts.is_empty() {
            return None;
        }
        let match_result = |entity: SObject, rule: &str, found: &[&SalesforceRecord]| {
            json!({
                "entityType": entity.name(),
                "errors": [],
                "matchEngine": "FuzzyMatchEngine",
                "matchRecords": found.iter().map(|r| json!({
                    "additionalInformation": [],
                    "fieldDiffs": [],
                    "matchConfidence": 100.0,
                    "record": {
                        "attributes": {"type": entity.name(), "url": record_url(entity.name(), &r.id, self.version)},
                        "Id": r.id,
                    },
                })).collect::<Vec<_>>(),
                "rule": rule,
                "size": found.len(),
                "success": true,
            })
        };
        let mut results = Vec::new();
        if !leads.is_empty() {
            results.push(match_result(
                SObject::Lead,
                "Standard_Lead_Match_Rule_v1_0",
                &leads,
            ));
        }
        if !contacts.is_empty() {
            results.push(match_result(
                SObject::Contact,
                "Standard_Contact_Match_Rule_v1_1",
                &contacts,
            ));
        }
        let mut error = SfError::new(
            StatusCode::BAD_REQUEST,
            "DUPLICATES_DETECTED",
            DUPLICATE_ALERT.to_owned(),
        );
        error.duplicate_result = Some(json!({
            "allowSave": action == DuplicateRuleAction::Alert,
            "duplicateRule": "Standard_Lead_Duplicate_Rule",
            "duplicateRuleEntityType": "Lead",
            "errorMessage": DUPLICATE_ALERT,
            "matchResults": results,
        }));
        Some(error)
    }
}

fn stamp(fields: &mut BTreeMap<String, Value>, now: String) {
    let name = [fields.get("FirstName"), fields.get("LastName")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join(" ");
    if !name.is_empty() {
        fields.insert("Name".into(), name.into());
    }
    fields.insert("LastModifiedDate".into(), now.clone().into());
    fields.insert("SystemModstamp".into(), now.into());
}

/// `CANNOT_UPDATE_CONVERTED_LEAD`: a converted lead is read-only.
pub(crate) fn converted_lead() -> SfError {
    SfError::new(
        StatusCode::BAD_REQUEST,
        "CANNOT_UPDATE_CONVERTED_LEAD",
        "cannot reference converted lead".to_owned(),
    )
    .with_fields(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_prefix_and_the_case_safe_suffix() {
        let id = record_id("00Q", 1);
        assert_eq!(id.len(), 18);
        assert_eq!(&id[..15], "00Q5S0000000001");
        // chunks "00Q5S", "00000", "00001": uppercase at 2 and 4 → 0b10100 = 20 → 'U'
        assert_eq!(&id[15..], "UAA");
        assert!(looks_like_id(&id) && looks_like_id(&id[..15]));
        assert!(record_id("003", 62) < record_id("003", 63));
        assert!(
            record_id("003", 61) < record_id("003", 62),
            "base-62 digits sort in order"
        );
    }

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn a_transaction_sees_its_own_writes_and_commits_them() {
        let mut state = SalesforceState::new(10);
        let staged = {
            let mut tx = Tx::new(&state, "59.0", WriteOptions::default());
            let a = tx
                .create(
                    SObject::Lead,
                    &body(json!({"LastName": "A", "Company": "C", "External_Id__c": "X1"})),
                    &[],
                )
                .unwrap();
            let dup = tx
                .create(
                    SObject::Lead,
                    &body(json!({"LastName": "B", "Company": "C", "External_Id__c": "x1"})),
                    &[],
                )
                .unwrap_err();
            assert_eq!(dup[0].code, "DUPLICATE_VALUE");
            assert!(dup[0].message.ends_with(&a));
            assert_eq!(
                tx.get(&a).unwrap().text("Status"),
                Some(DEFAULT_LEAD_STATUS)
            );
            tx.finish()
        };
        let (created, updated) = state.commit(staged);
        assert_eq!((created.len(), updated), (1, 0));
        assert_eq!(state.records[&created[0]].text("Name"), Some("A"));
    }

    #[test]
    fn conversion_makes_a_contact_and_freezes_the_lead() {
        let mut state = SalesforceState::new(10);
        let staged = {
            let mut tx = Tx::new(&state, "59.0", WriteOptions::default());
            tx.create(
                SObject::Lead,
                &body(json!({"FirstName": "Jo", "LastName": "Li", "Company": "C", "Email": "jo@x.io", "City": "Oslo"})),
                &[],
            )
            .unwrap();
            tx.finish()
        };
        let (created, _) = state.commit(staged);
        let lead = created[0].clone();
        let contact = state.convert_lead(&lead).unwrap();
        assert!(contact.starts_with("003"));
        assert!(state.convert_lead(&lead).is_none(), "only once");
        let c = &state.records[&contact];
        assert_eq!(
            (c.email(), c.text("MailingCity")),
            (Some("jo@x.io"), Some("Oslo"))
        );
        let l = &state.records[&lead];
        assert!(l.is_converted());
        assert_eq!(l.text("ConvertedContactId"), Some(contact.as_str()));
        let mut tx = Tx::new(&state, "59.0", WriteOptions::default());
        let err = tx.update(&lead, &body(json!({"Title": "x"}))).unwrap_err();
        assert_eq!(err[0].code, "CANNOT_UPDATE_CONVERTED_LEAD");
    }

    /// Runs `work` in a transaction and commits it.
    fn commit<R>(
        state: &mut SalesforceState,
        allow_save: bool,
        work: impl FnOnce(&mut Tx<'_>) -> R,
    ) -> R {
        let (result, staged) = {
            let mut tx = Tx::new(state, "59.0", WriteOptions { allow_save });
            let result = work(&mut tx);
            (result, tx.finish())
        };
        state.commit(staged);
        result
    }

    /// [`commit`], then checks the indexes.
    fn write<R>(
        state: &mut SalesforceState,
        allow_save: bool,
        work: impl FnOnce(&mut Tx<'_>) -> R,
    ) -> R {
        let result = commit(state, allow_save, work);
        state.check_indexes();
        result
    }

    fn lead(email: &str) -> Map<String, Value> {
        body(json!({"LastName": "L", "Company": "C", "Email": email}))
    }

    fn soql_ids(state: &SalesforceState, query: &str) -> Vec<String> {
        let query = soql::parse(query, &state.schema).unwrap();
        state.select(&query).iter().map(|r| r.id.clone()).collect()
    }

    /// The ids the duplicate rule names for a new lead with `email`, or
    /// the error code when it is another.
    fn duplicates_of(state: &mut SalesforceState, email: &str) -> Result<Vec<String>, String> {
        match write(state, false, |tx| {
            tx.create(SObject::Lead, &lead(email), &[])
        }) {
            Ok(id) => Err(format!("created {id}")),
            Err(errors) if errors[0].code == "DUPLICATES_DETECTED" => {
                let result = errors[0].duplicate_result.clone().unwrap();
                Ok(result["matchResults"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|m| m["matchRecords"].as_array().unwrap().clone())
                    .map(|m| m["record"]["Id"].as_str().unwrap().to_owned())
                    .collect())
            }
            Err(errors) => Err(errors[0].code.to_owned()),
        }
    }

    #[test]
    fn indexes_follow_updates_deletes_conversions_and_clears() {
        let mut state = SalesforceState::new(10);
        let key = state
            .schema
            .field(SObject::Lead, "Leadgate_Id__c")
            .unwrap()
            .clone();
        let upsert = |state: &mut SalesforceState, value: &str, body: Map<String, Value>| {
            write(state, false, |tx| {
                tx.upsert(SObject::Lead, &key, value, &body, false)
            })
        };
        let (a, created) = upsert(&mut state, "k1", lead("a@x.io")).unwrap();
        assert!(created);

        // A changed email moves: the duplicate rule and SOQL find the new
        // one, the old one is free.
        write(&mut state, false, |tx| {
            tx.update(&a, &body(json!({"Email": "B@x.io"})))
        })
        .unwrap();
        assert_eq!(duplicates_of(&mut state, "b@X.io"), Ok(vec![a.clone()]));
        assert_eq!(
            soql_ids(&state, "SELECT Id FROM Lead WHERE Email = 'a@x.io'"),
            Vec::<String>::new()
        );
        assert_eq!(
            soql_ids(&state, "SELECT Id FROM Lead WHERE Email = 'b@x.io'"),
            vec![a.clone()]
        );
        let fresh = duplicates_of(&mut state, "a@x.io").unwrap_err();
        assert!(fresh.starts_with("created"), "{fresh}");

        // A changed External ID moves too.
        write(&mut state, false, |tx| {
            tx.update(&a, &body(json!({"Leadgate_Id__c": "k2"})))
        })
        .unwrap();
        {
            let tx = Tx::new(&state, "59.0", WriteOptions::default());
            assert!(tx.find_by(SObject::Lead, "Leadgate_Id__c", "k1").is_empty());
            assert_eq!(
                tx.find_by(SObject::Lead, "Leadgate_Id__c", "K2"),
                vec![a.clone()]
            );
        }
        let (same, created) = upsert(&mut state, "K2", body(json!({"Title": "CEO"}))).unwrap();
        assert_eq!((same.as_str(), created), (a.as_str(), false));

        // Deleted, then the same External ID creates a new record.
        assert!(state.take(&a).is_some());
        state.check_indexes();
        assert_eq!(
            soql_ids(&state, "SELECT Id FROM Lead WHERE Leadgate_Id__c = 'k2'"),
            Vec::<String>::new()
        );
        let (b, created) = upsert(&mut state, "k2", lead("b@x.io")).unwrap();
        assert!(created && b != a);

        // Converted: the lead keeps its values (and stays found), the
        // contact is found by email, an upsert of the lead is refused.
        let contact = state.convert_lead(&b).unwrap();
        state.check_indexes();
        assert_eq!(
            soql_ids(&state, "SELECT Id FROM Contact WHERE Email = 'B@X.IO'"),
            vec![contact.clone()]
        );
        assert_eq!(
            soql_ids(
                &state,
                "SELECT Id FROM Lead WHERE Leadgate_Id__c = 'k2' AND IsConverted = true"
            ),
            vec![b.clone()]
        );
        let UpsertFailure::Errors(errors) =
            upsert(&mut state, "k2", body(json!({"Title": "x"}))).unwrap_err()
        else {
            panic!("not a write error");
        };
        assert_eq!(errors[0].code, "CANNOT_UPDATE_CONVERTED_LEAD");
        assert_eq!(
            duplicates_of(&mut state, "b@x.io"),
            Ok(vec![contact.clone()])
        );
        let taken = write(&mut state, true, |tx| {
            tx.create(
                SObject::Lead,
                &body(json!({"LastName": "L", "Company": "C", "Leadgate_Id__c": "K2"})),
                &[],
            )
        })
        .unwrap_err();
        assert_eq!(taken[0].code, "DUPLICATE_VALUE");
        assert!(taken[0].message.ends_with(&b));

        // A field made an External ID later is indexed with its values.
        write(&mut state, false, |tx| {
            tx.update(&contact, &body(json!({"Department": "Sales"})))
        })
        .unwrap();
        assert!(state.define_field(SObject::Lead, "Crm_Key__c", None));
        write(&mut state, true, |tx| {
            tx.create(
                SObject::Lead,
                &body(json!({"LastName": "L", "Company": "C", "Crm_Key__c": "c-1"})),
                &[],
            )
        })
        .unwrap();
        assert!(state.define_field(SObject::Lead, "Crm_Key__c", Some(false)));
        state.check_indexes();
        assert_eq!(
            soql_ids(&state, "SELECT Id FROM Lead WHERE Crm_Key__c = 'C-1'").len(),
            1
        );

        // Cleared: nothing is found, the key creates again.
        state.clear();
        state.check_indexes();
        assert!(
            duplicates_of(&mut state, "b@x.io")
                .unwrap_err()
                .starts_with("created")
        );
        let (_, created) = upsert(&mut state, "k2", lead("z@x.io")).unwrap();
        assert!(created);
    }

    #[test]
    fn soql_through_the_index_answers_as_a_scan() {
        let mut state = SalesforceState::new(10);
        let rows = [
            json!({"LastName": "A", "Company": "C", "Email": "a@x.io", "Leadgate_Id__c": "1"}),
            json!({"LastName": "B", "Company": "C", "Email": "A@X.io", "Leadgate_Id__c": "2", "Title": "CEO"}),
            json!({"LastName": "C", "Company": "C", "Email": "c@x.io", "Leadgate_Id__c": "3"}),
            json!({"LastName": "D", "Company": "C", "Leadgate_Id__c": "x'y"}),
            json!({"LastName": "E", "Company": "C", "Email": "a@x.io", "Title": "CEO"}),
        ];
        write(&mut state, true, |tx| {
            for row in &rows {
                tx.create(SObject::Lead, &body(row.clone()), &[]).unwrap();
            }
        });
        write(&mut state, true, |tx| {
            tx.create(
                SObject::Contact,
                &body(json!({"LastName": "K", "Email": "a@x.io"})),
                &[],
            )
            .unwrap();
        });
        for query in [
            "SELECT Id FROM Lead WHERE Email = 'A@x.io'",
            "SELECT Id FROM Lead WHERE Email = 'a@x.io' LIMIT 2",
            "SELECT Id FROM Lead WHERE Email = 'a@x.io' AND Title = 'ceo'",
            "SELECT Id FROM Lead WHERE Title = 'CEO' AND Email = 'a@x.io'",
            "SELECT Id FROM Lead WHERE Email = 'a@x.io' OR Leadgate_Id__c = '3'",
            "SELECT Id FROM Lead WHERE Leadgate_Id__c = 1 OR Leadgate_Id__c = 'X\\'Y'",
            "SELECT Id FROM Lead WHERE Email = 'a@x.io' OR Title = 'CEO'",
            "SELECT Id FROM Lead WHERE Email != 'a@x.io'",
            "SELECT Id FROM Lead WHERE Email = null",
            "SELECT Id FROM Lead WHERE Email = 'nobody@x.io'",
            "SELECT Id FROM Contact WHERE Email = 'a@x.io'",
            "SELECT Id FROM Lead",
        ] {
            let parsed = soql::parse(query, &state.schema).unwrap();
            let scan: Vec<String> = state
                .of(parsed.object)
                .filter(|r| parsed.matches(|f| r.fields.get(f).cloned()))
                .take(parsed.limit.unwrap_or(usize::MAX))
                .map(|r| r.id.clone())
                .collect();
            assert_eq!(soql_ids(&state, query), scan, "{query}");
        }
        assert_eq!(
            soql_ids(&state, "SELECT Id FROM Lead WHERE Email = 'a@x.io'").len(),
            3
        );
    }

    #[test]
    fn twenty_thousand_upserts_each_find_their_one_record() {
        const N: usize = 20_000;
        let mut state = SalesforceState::new(10);
        let key = state
            .schema
            .field(SObject::Lead, "Leadgate_Id__c")
            .unwrap()
            .clone();
        for round in 0..2 {
            // In calls of 200, as sObject Collections carries them.
            for start in (0..N).step_by(200) {
                let outcomes = commit(&mut state, false, |tx| {
                    (start..start + 200)
                        .map(|i| {
                            let body = lead(&format!("lead{i}@example.com"));
                            tx.upsert(SObject::Lead, &key, &format!("LG-{i}"), &body, false)
                                .map(|(_, created)| created)
                                .map_err(|e| format!("{e:?}"))
                        })
                        .collect::<Vec<_>>()
                });
                assert!(
                    outcomes.iter().all(|o| o == &Ok(round == 0)),
                    "round {round}: {outcomes:?}"
                );
            }
        }
        assert_eq!(state.of(SObject::Lead).count(), N);
        state.check_indexes();
        let tx = Tx::new(&state, "59.0", WriteOptions::default());
        for i in (0..N).step_by(7) {
            assert_eq!(
                tx.find_by(SObject::Lead, "Leadgate_Id__c", &format!("lg-{i}"))
                    .len(),
                1
            );
        }
        assert_eq!(
            soql_ids(
                &state,
                "SELECT Id FROM Lead WHERE Email = 'LEAD19999@example.com'"
            )
            .len(),
            1
        );
    }

    #[test]
    fn daily_allocation_rolls() {
        let mut state = SalesforceState::new(2);
        assert_eq!(state.count_request(0), Ok((1, 2)));
        assert_eq!(state.count_request(10), Ok((2, 2)));
        assert_eq!(state.count_request(20), Err((2, 2)));
        assert_eq!(
            state.count_request(DAY_MS),
            Ok((2, 2)),
            "the first one rolled off"
        );
    }
}
