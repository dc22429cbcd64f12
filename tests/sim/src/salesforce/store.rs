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

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::schema::{CONVERTED_LEAD_STATUS, DEFAULT_LEAD_STATUS, Field, SObject, Schema};
use super::wire::{DUPLICATE_ALERT, SfError, record_url};

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
    pub records: BTreeMap<String, SalesforceRecord>,
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
        SalesforceState {
            records: BTreeMap::new(),
            schema: Schema::default(),
            next_id: 1,
            duplicate_rule: Some(DuplicateRuleAction::Alert),
            daily_limit,
            usage: VecDeque::new(),
        }
    }

    /// Drops records and usage; ids keep increasing.
    pub(crate) fn clear(&mut self) {
        self.records.clear();
        self.usage.clear();
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
            15 => self.records.values().find(|r| r.id.starts_with(id)),
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
        self.records.insert(
            contact_id.clone(),
            SalesforceRecord {
                id: contact_id.clone(),
                object: SObject::Contact.name().into(),
                fields,
            },
        );
        let stored = self.records.get_mut(&lead.id)?;
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
            self.records.insert(id, record);
        }
        created.sort();
        (created, updated)
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
            .records
            .values()
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
            .of(SObject::Lead)
            .filter(|r| !r.is_converted())
            .filter(same)
            .collect();
        let contacts: Vec<&SalesforceRecord> =
            self.base.of(SObject::Contact).filter(same).collect();
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
