//! The org's records, its API credits and its calls in flight, and the
//! rules a write meets in Zoho's order: field values (`INVALID_DATA`),
//! mandatory fields (`MANDATORY_NOT_FOUND`), then the duplicate check on
//! `Email` and the unique fields (`DUPLICATE_DATA`, or
//! `MULTIPLE_OR_MULTI_ERRORS` when several fields collide).
//!
//! A write call goes through a [`Tx`]: an overlay on the stored records,
//! so the records of one call are written in order and later ones see the
//! earlier ones (two records with one email in one insert: the second is
//! `DUPLICATE_DATA` naming the first), and so a silently failed write
//! (`Faults::fail_silently_next`) can be thrown away whole.
//!
//! The stored records are indexed per module ([`FieldIndex`]) by their
//! duplicate-check fields (`Email` and every unique field), so the
//! duplicate check, an upsert's match and a search by email look records
//! up instead of scanning the org. A criteria search's `equals` on one of
//! those fields (which Zoho runs as *contains* on text) goes through a
//! [`Substrings`] index, built the first time such a search comes.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::schema::{Field, FieldType, Module, Schema, check_value};
use super::search::{Criteria, Op};
use super::wire::{USER_ID, ZohoError, owner, user, written_details};
use crate::index::{self, FieldIndex, Substrings};

/// Zoho's limits for one simulated org.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ZohoLimits {
    /// API credits per rolling 24 hours (50,000: the base of every paid
    /// edition before per-user credits).
    pub daily_credits: u32,
    /// Calls in flight at once, per org (Standard edition: 10).
    pub concurrency: u32,
    /// How long a written record takes to show up in `/search` (Zoho's
    /// search index lags: "you may face the 204 NO CONTENT error due to a
    /// delay in indexing"). 0 by default.
    pub search_lag_ms: u64,
}

impl Default for ZohoLimits {
    fn default() -> Self {
        ZohoLimits {
            daily_credits: 50_000,
            concurrency: 10,
            search_lag_ms: 0,
        }
    }
}

/// A stored record, as [`crate::SimHandle::zoho_records`] returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZohoRecord {
    /// 19-digit record id.
    pub id: String,
    /// `Leads` or `Contacts`.
    pub module: String,
    /// Every field with a value, under its API name, system fields
    /// included (`Owner`, `Created_Time`, `Modified_Time`, `Created_By`,
    /// `Modified_By`, `Full_Name`).
    pub fields: BTreeMap<String, Value>,
}

impl ZohoRecord {
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
}

/// One stored record and what the simulator keeps beside it.
#[derive(Clone, Debug)]
pub(crate) struct Stored {
    pub record: ZohoRecord,
    pub module: Module,
    /// When the search index shows it (ms).
    pub searchable_at_ms: u64,
}

/// Record ids are this plus a sequence number: 19 digits, increasing.
const ID_BASE: u64 = 5_725_767_000_000_524_000;
const DAY_MS: u64 = 86_400_000;

/// Zoho's part of the simulator state.
#[derive(Debug)]
pub(crate) struct ZohoState {
    /// Every record by key; changed only through [`ZohoState::put`] and
    /// [`ZohoState::take`], which keep the indexes current.
    records: BTreeMap<u64, Stored>,
    /// Per module: the duplicate-check fields' values → record keys.
    indexes: BTreeMap<Module, FieldIndex<u64>>,
    /// Substring indexes of indexed fields, made by the first criteria
    /// search that needs one.
    substrings: BTreeMap<(Module, String), Substrings<u64>>,
    pub schema: Schema,
    next_seq: u64,
    pub limits: ZohoLimits,
    /// Credits charged in the last 24 hours: (when, how many).
    usage: VecDeque<(u64, u32)>,
    /// Calls admitted and not answered yet.
    pub in_flight: u32,
}

impl ZohoState {
    pub(crate) fn new(limits: ZohoLimits) -> Self {
        let schema = Schema::default();
        let indexes = Module::ALL
            .into_iter()
            .map(|module| {
                let fields: Vec<&str> = schema
                    .duplicate_check_fields(module)
                    .iter()
                    .map(|f| f.api_name.as_str())
                    .collect();
                (module, FieldIndex::new(&fields))
            })
            .collect();
        ZohoState {
            records: BTreeMap::new(),
            indexes,
            substrings: BTreeMap::new(),
            schema,
            next_seq: 1,
            limits,
            usage: VecDeque::new(),
            in_flight: 0,
        }
    }

    /// Drops records and credit usage; ids keep increasing.
    pub(crate) fn clear(&mut self) {
        self.records.clear();
        for index in self.indexes.values_mut() {
            index.clear();
        }
        self.substrings.clear();
        self.usage.clear();
    }

    /// Stores a record under `key` (new, or replacing one), keeping the
    /// indexes current.
    fn put(&mut self, key: u64, stored: Stored) {
        self.take(key);
        if let Some(index) = self.indexes.get_mut(&stored.module) {
            index.add(&key, &stored.record.fields);
        }
        for ((module, _), substrings) in &mut self.substrings {
            if *module == stored.module {
                substrings.add(&key, &stored.record.fields);
            }
        }
        self.records.insert(key, stored);
    }

    /// Removes the record under `key`, keeping the indexes current.
    fn take(&mut self, key: u64) -> Option<Stored> {
        let stored = self.records.remove(&key)?;
        if let Some(index) = self.indexes.get_mut(&stored.module) {
            index.remove(&key, &stored.record.fields);
        }
        for ((module, _), substrings) in &mut self.substrings {
            if *module == stored.module {
                substrings.remove(&key, &stored.record.fields);
            }
        }
        Some(stored)
    }

    /// The record under `key`, in any module.
    pub(crate) fn get(&self, key: u64) -> Option<&Stored> {
        self.records.get(&key)
    }

    /// Adds a custom field or marks one unique or not (see
    /// [`Schema::define`]); a unique field gets indexed.
    pub(crate) fn define_field(&mut self, module: Module, api_name: &str, unique: bool) -> bool {
        if !self.schema.define(module, api_name, unique) {
            return false;
        }
        if let Some(field) = self.schema.field(module, api_name).filter(|f| f.unique)
            && let Some(index) = self.indexes.get_mut(&module)
        {
            let records = self
                .records
                .iter()
                .filter(|(_, s)| s.module == module)
                .map(|(k, s)| (*k, &s.record.fields));
            index.watch(&field.api_name, records);
        }
        true
    }

    /// The keys of the records of `module` that may hold `text` in
    /// `field` (a superset of those equal to it ignoring case and
    /// surrounding space, in key order); `None` when the field is not
    /// indexed.
    pub(crate) fn candidates(
        &self,
        module: Module,
        field: &str,
        text: &str,
    ) -> Option<BTreeSet<u64>> {
        self.indexes.get(&module)?.candidates(field, text)
    }

    /// The keys of the records of `module` that may match `criteria` (a
    /// superset, in key order), from the indexes; `None` when it has to
    /// be answered by a scan. Narrows on `equals` and `in` conditions of
    /// indexed fields, through `and` (either side) and `or` (both sides).
    pub(crate) fn criteria_candidates(
        &mut self,
        module: Module,
        criteria: &Criteria,
    ) -> Option<BTreeSet<u64>> {
        match criteria {
            Criteria::And(a, b) => {
                let a = self.criteria_candidates(module, a);
                let b = self.criteria_candidates(module, b);
                index::both(a, b)
            }
            Criteria::Or(a, b) => {
                let a = self.criteria_candidates(module, a)?;
                let b = self.criteria_candidates(module, b)?;
                index::either(Some(a), Some(b))
            }
            Criteria::Condition {
                field,
                kind,
                op,
                values,
            } => {
                if !self.indexes.get(&module)?.watches(field) {
                    return None;
                }
                let contains = matches!(
                    kind,
                    FieldType::Text
                        | FieldType::TextArea
                        | FieldType::Email
                        | FieldType::Phone
                        | FieldType::Website
                );
                let exact = !matches!(kind, FieldType::DateTime | FieldType::OwnerLookup);
                match op {
                    Op::Equals if contains => {
                        let needle = values.first()?.to_lowercase();
                        Some(self.substrings(module, field).containing(&needle))
                    }
                    Op::Equals if exact => self.candidates(module, field, values.first()?),
                    Op::In if exact => values.iter().try_fold(BTreeSet::new(), |mut keys, v| {
                        keys.extend(self.candidates(module, field, v)?);
                        Some(keys)
                    }),
                    _ => None,
                }
            }
        }
    }

    /// The substring index of `field` in `module`, made now if needed.
    fn substrings(&mut self, module: Module, field: &str) -> &Substrings<u64> {
        let records = &self.records;
        self.substrings
            .entry((module, field.to_owned()))
            .or_insert_with(|| {
                Substrings::build(
                    field,
                    records
                        .iter()
                        .filter(|(_, s)| s.module == module)
                        .map(|(k, s)| (*k, &s.record.fields)),
                )
            })
    }

    fn prune(&mut self, now_ms: u64) {
        while self
            .usage
            .front()
            .is_some_and(|(t, _)| now_ms.saturating_sub(*t) >= DAY_MS)
        {
            self.usage.pop_front();
        }
    }

    /// Credits used in the last 24 hours, and the daily allowance.
    pub(crate) fn credits(&mut self, now_ms: u64) -> (u32, u32) {
        self.prune(now_ms);
        let used = self
            .usage
            .iter()
            .fold(0u32, |sum, (_, n)| sum.saturating_add(*n));
        (used, self.limits.daily_credits)
    }

    pub(crate) fn charge(&mut self, now_ms: u64, credits: u32) {
        if credits > 0 {
            self.usage.push_back((now_ms, credits));
        }
    }

    /// A record by id, in any module.
    pub(crate) fn find(&self, id: &str) -> Option<&Stored> {
        self.records.get(&key_of(id)?)
    }

    pub(crate) fn of(&self, module: Module) -> impl DoubleEndedIterator<Item = &Stored> {
        self.records.values().filter(move |s| s.module == module)
    }

    /// Applies a finished transaction; returns the records it created and
    /// how many it updated.
    pub(crate) fn commit(&mut self, staged: Staged) -> (Vec<ZohoRecord>, usize) {
        self.next_seq = self.next_seq.max(staged.next_seq);
        for key in &staged.deleted {
            self.take(*key);
        }
        let created: Vec<ZohoRecord> = staged
            .created
            .iter()
            .filter_map(|k| staged.changed.get(k).map(|s| s.record.clone()))
            .collect();
        let updated = staged.updated.len();
        for (key, stored) in staged.changed {
            self.put(key, stored);
        }
        (created, updated)
    }

    /// Drops a finished transaction but keeps its ids used.
    pub(crate) fn discard(&mut self, staged: &Staged) {
        self.next_seq = self.next_seq.max(staged.next_seq);
    }
}

#[cfg(test)]
impl ZohoState {
    /// Panics unless every index is the one the records make now.
    pub(crate) fn check_indexes(&self) {
        let of = |module: Module| {
            self.records
                .iter()
                .filter(move |(_, s)| s.module == module)
                .map(|(k, s)| (*k, &s.record.fields))
        };
        for (module, index) in &self.indexes {
            let fields: Vec<&str> = index.watched().collect();
            let mut fresh = FieldIndex::new(&fields);
            for (key, fields) in of(*module) {
                fresh.add(&key, fields);
            }
            assert_eq!(index, &fresh, "the {} index is stale", module.name());
        }
        for ((module, field), substrings) in &self.substrings {
            let fresh = Substrings::build(field, of(*module));
            assert_eq!(substrings, &fresh, "the {field} substrings are stale");
        }
    }
}

/// The numeric key of a record id, if it is one.
pub(crate) fn key_of(id: &str) -> Option<u64> {
    if id.is_empty() || id.len() > 19 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse::<u64>().ok()?.checked_sub(ID_BASE)
}

fn id_of(key: u64) -> String {
    (ID_BASE + key).to_string()
}

/// `2024-05-01T12:34:56+00:00`: Zoho's ISO 8601 with an offset.
pub(crate) fn zoho_datetime(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp((ms / 1000) as i64)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Whether two field values are the same for a duplicate check: text
/// ignoring case and surrounding space.
pub(crate) fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(a), Value::String(b)) => a.trim().eq_ignore_ascii_case(b.trim()),
        _ => a == b,
    }
}

/// A record's field values after the checks: what to store (nulls clear a
/// field) and whether it named a `Layout`.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    pub values: Vec<(String, Value)>,
    pub layout: bool,
}

impl Prepared {
    pub(crate) fn value(&self, api_name: &str) -> Option<&Value> {
        self.values
            .iter()
            .find(|(k, _)| k == api_name)
            .map(|(_, v)| v)
            .filter(|v| !v.is_null())
    }
}

/// Checks one input record (`data[index]`): every key that is a writable
/// field's API name is checked and kept; other keys are ignored.
pub(crate) fn prepare(
    schema: &Schema,
    module: Module,
    index: usize,
    input: &Value,
) -> Result<Prepared, ZohoError> {
    let Value::Object(map) = input else {
        return Err(ZohoError::record_not_object(index));
    };
    let mut prepared = Prepared {
        layout: map.get("Layout").is_some_and(|l| !l.is_null()),
        ..Prepared::default()
    };
    for (key, value) in map {
        if key == "id" || key.starts_with('$') {
            continue;
        }
        let Some(field) = schema.field(module, key) else {
            continue;
        };
        if field.read_only {
            continue;
        }
        match check_value(field, value, USER_ID) {
            Ok(v) => prepared.values.push((field.api_name.clone(), v)),
            Err(e) => {
                return Err(ZohoError::invalid_value(
                    index,
                    &field.api_name,
                    e.details(),
                ));
            }
        }
    }
    Ok(prepared)
}

/// A finished transaction.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    changed: BTreeMap<u64, Stored>,
    created: Vec<u64>,
    updated: BTreeSet<u64>,
    deleted: BTreeSet<u64>,
    next_seq: u64,
}

impl Staged {
    /// Whether it wrote anything.
    pub(crate) fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.deleted.is_empty()
    }
}

/// The writes of one call, over the stored records.
pub(crate) struct Tx<'a> {
    state: &'a ZohoState,
    pub module: Module,
    staged: Staged,
    now_ms: u64,
    stamp: String,
}

impl<'a> Tx<'a> {
    pub(crate) fn new(state: &'a ZohoState, module: Module, now_ms: u64) -> Tx<'a> {
        Tx {
            state,
            module,
            staged: Staged {
                next_seq: state.next_seq,
                ..Staged::default()
            },
            now_ms,
            stamp: zoho_datetime(now_ms),
        }
    }

    pub(crate) fn schema(&self) -> &'a Schema {
        &self.state.schema
    }

    pub(crate) fn finish(self) -> Staged {
        self.staged
    }

    /// The module's records as this transaction sees them that may hold
    /// `value` in `field`: the stored ones the index names (all of them
    /// when the field is not indexed) and the staged ones.
    fn records(&self, field: &str, value: &Value) -> impl Iterator<Item = (u64, &Stored)> {
        let module = self.module;
        let staged = &self.staged;
        let state = self.state;
        let stored: Box<dyn Iterator<Item = (u64, &Stored)>> = match state
            .indexes
            .get(&module)
            .and_then(|index| index.candidates_of(field, value))
        {
            Some(keys) => Box::new(
                keys.into_iter()
                    .filter_map(move |k| state.records.get(&k).map(|s| (k, s))),
            ),
            None => Box::new(state.records.iter().map(|(k, s)| (*k, s))),
        };
        let base = stored
            .filter(move |(k, _)| !staged.changed.contains_key(k) && !staged.deleted.contains(k));
        let changed = staged.changed.iter().map(|(k, s)| (*k, s));
        base.chain(changed).filter(move |(_, s)| s.module == module)
    }

    fn get(&self, key: u64) -> Option<&Stored> {
        if self.staged.deleted.contains(&key) {
            return None;
        }
        self.staged
            .changed
            .get(&key)
            .or_else(|| self.state.records.get(&key))
            .filter(|s| s.module == self.module)
    }

    /// The key of a record id of this module.
    pub(crate) fn resolve(&self, id: &str) -> Option<u64> {
        let key = key_of(id)?;
        self.get(key).map(|_| key)
    }

    /// Records whose `field` equals `value`, oldest first.
    pub(crate) fn find_by(&self, field: &str, value: &Value, except: Option<u64>) -> Vec<u64> {
        let mut keys: Vec<u64> = self
            .records(field, value)
            .filter(|(k, s)| {
                Some(*k) != except
                    && s.record
                        .fields
                        .get(field)
                        .is_some_and(|v| same_value(v, value))
            })
            .map(|(k, _)| k)
            .collect();
        keys.sort_unstable();
        keys
    }

    /// The first mandatory field the record would be saved without.
    fn missing_mandatory(
        &self,
        fields: &BTreeMap<String, Value>,
        layout: bool,
    ) -> Option<&'a Field> {
        self.schema().fields(self.module).iter().find(|f| {
            (f.system_mandatory || (layout && f.layout_mandatory))
                && fields.get(&f.api_name).is_none_or(Value::is_null)
        })
    }

    /// The duplicate check: `Email` and the unique fields (but `skip`, the
    /// field an upsert matched on) against the module's other records.
    fn duplicates(
        &self,
        index: usize,
        fields: &BTreeMap<String, Value>,
        except: Option<u64>,
        skip: Option<&str>,
    ) -> Option<ZohoError> {
        let errors: Vec<ZohoError> = self
            .schema()
            .duplicate_check_fields(self.module)
            .into_iter()
            .filter(|f| Some(f.api_name.as_str()) != skip)
            .filter_map(|f| {
                let value = fields.get(&f.api_name).filter(|v| !v.is_null())?;
                let matches = self.find_by(&f.api_name, value, except);
                let first = matches.first()?;
                Some(ZohoError::duplicate_data(
                    index,
                    &f.api_name,
                    self.module.name(),
                    self.module.id(),
                    &id_of(*first),
                    matches.len() > 1,
                ))
            })
            .collect();
        match errors.len() {
            0 => None,
            1 => errors.into_iter().next(),
            _ => Some(ZohoError::multiple_errors(&errors)),
        }
    }

    fn full_name(fields: &BTreeMap<String, Value>) -> Value {
        let part = |k: &str| fields.get(k).and_then(Value::as_str).unwrap_or("").trim();
        let name = format!("{} {}", part("First_Name"), part("Last_Name"));
        let name = name.trim();
        if name.is_empty() {
            Value::Null
        } else {
            name.to_owned().into()
        }
    }

    /// Inserts a checked record; returns its id and `details`.
    pub(crate) fn insert(
        &mut self,
        index: usize,
        prepared: &Prepared,
    ) -> Result<(String, Value), ZohoError> {
        let mut fields: BTreeMap<String, Value> = prepared
            .values
            .iter()
            .filter(|(_, v)| !v.is_null())
            .cloned()
            .collect();
        if let Some(field) = self.missing_mandatory(&fields, prepared.layout) {
            return Err(ZohoError::mandatory_not_found(index, &field.api_name));
        }
        if let Some(error) = self.duplicates(index, &fields, None, None) {
            return Err(error);
        }
        let key = self.staged.next_seq;
        self.staged.next_seq += 1;
        let id = id_of(key);
        fields.insert("Owner".into(), owner());
        fields.insert("Created_Time".into(), self.stamp.clone().into());
        fields.insert("Modified_Time".into(), self.stamp.clone().into());
        fields.insert("Created_By".into(), user());
        fields.insert("Modified_By".into(), user());
        fields.insert("Full_Name".into(), Self::full_name(&fields));
        fields.retain(|_, v| !v.is_null());
        self.staged.changed.insert(
            key,
            Stored {
                record: ZohoRecord {
                    id: id.clone(),
                    module: self.module.name().into(),
                    fields,
                },
                module: self.module,
                searchable_at_ms: self.now_ms + self.state.limits.search_lag_ms,
            },
        );
        self.staged.created.push(key);
        let details = written_details(&id, &self.stamp, &self.stamp, true);
        Ok((id, details))
    }

    /// Updates record `key` with a checked record; returns its `details`.
    pub(crate) fn update(
        &mut self,
        index: usize,
        key: u64,
        prepared: &Prepared,
        matched_on: Option<&str>,
    ) -> Result<Value, ZohoError> {
        let Some(existing) = self.get(key).cloned() else {
            return Err(ZohoError::invalid_record_id(index));
        };
        let mut fields = existing.record.fields.clone();
        for (name, value) in &prepared.values {
            if value.is_null() {
                fields.remove(name);
            } else {
                fields.insert(name.clone(), value.clone());
            }
        }
        if let Some(field) = self.missing_mandatory(&fields, prepared.layout) {
            return Err(ZohoError::mandatory_not_found(index, &field.api_name));
        }
        if let Some(error) = self.duplicates(index, &fields, Some(key), matched_on) {
            return Err(error);
        }
        fields.insert("Modified_Time".into(), self.stamp.clone().into());
        fields.insert("Modified_By".into(), user());
        match Self::full_name(&fields) {
            Value::Null => fields.remove("Full_Name"),
            name => fields.insert("Full_Name".into(), name),
        };
        let created = existing
            .record
            .fields
            .get("Created_Time")
            .and_then(Value::as_str)
            .unwrap_or(&self.stamp)
            .to_owned();
        let details = written_details(&existing.record.id, &created, &self.stamp, false);
        let mut stored = existing;
        stored.record.fields = fields;
        stored.searchable_at_ms = self.now_ms + self.state.limits.search_lag_ms;
        self.staged.changed.insert(key, stored);
        if !self.staged.created.contains(&key) {
            self.staged.updated.insert(key);
        }
        Ok(details)
    }

    /// Deletes record `key`; false if it is no record of the module.
    pub(crate) fn delete(&mut self, key: u64) -> bool {
        if self.get(key).is_none() {
            return false;
        }
        self.staged.changed.remove(&key);
        self.staged.updated.remove(&key);
        self.staged.created.retain(|k| *k != key);
        self.staged.deleted.insert(key);
        true
    }
}

/// A record as a read answers it: `id`, then every field of the module
/// (null when unset) or only the asked ones.
pub(crate) fn render(schema: &Schema, stored: &Stored, fields: Option<&[String]>) -> Value {
    let mut out = Map::new();
    out.insert("id".into(), stored.record.id.clone().into());
    let all: Vec<String>;
    let names: &[String] = match fields {
        Some(names) => names,
        None => {
            all = schema
                .fields(stored.module)
                .iter()
                .map(|f| f.api_name.clone())
                .collect();
            &all
        }
    };
    for name in names {
        let api_name = schema
            .field(stored.module, name)
            .map_or(name.as_str(), |f| f.api_name.as_str());
        if api_name == "id" {
            continue;
        }
        out.insert(
            api_name.to_owned(),
            stored
                .record
                .fields
                .get(api_name)
                .cloned()
                .unwrap_or(Value::Null),
        );
    }
    Value::Object(out)
}

/// Whether a field holds text a `word` search looks in.
pub(crate) fn is_searchable_text(field: &Field) -> bool {
    matches!(
        field.kind,
        FieldType::Text
            | FieldType::TextArea
            | FieldType::Email
            | FieldType::Phone
            | FieldType::Website
            | FieldType::Picklist
    ) && !field.read_only
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn prepared(state: &ZohoState, index: usize, input: Value) -> Prepared {
        prepare(&state.schema, Module::Leads, index, &input).unwrap()
    }

    #[test]
    fn ids_are_nineteen_digits_and_round_trip() {
        let id = id_of(1);
        assert_eq!(id.len(), 19);
        assert_eq!(key_of(&id), Some(1));
        assert_eq!(key_of("12"), None);
        assert_eq!(key_of("abc"), None);
        assert_eq!(zoho_datetime(0), "1970-01-01T00:00:00+00:00");
    }

    #[test]
    fn inserts_see_earlier_records_of_the_call() {
        let mut state = ZohoState::new(ZohoLimits::default());
        let staged = {
            let mut tx = Tx::new(&state, Module::Leads, 1_000);
            let p = prepared(
                &state,
                0,
                json!({"Last_Name": "A", "Email": "a@x.io", "Foo": 1}),
            );
            let (id, details) = tx.insert(0, &p).unwrap();
            assert_eq!(details["id"], json!(id));
            let p = prepared(&state, 1, json!({"Last_Name": "B", "Email": "A@X.io"}));
            let err = tx.insert(1, &p).unwrap_err();
            assert_eq!(err.code, "DUPLICATE_DATA");
            assert_eq!(err.details["duplicate_record"]["id"], json!(id));
            let p = prepared(&state, 2, json!({"First_Name": "C"}));
            assert_eq!(tx.insert(2, &p).unwrap_err().code, "MANDATORY_NOT_FOUND");
            tx.finish()
        };
        let (created, updated) = state.commit(staged);
        assert_eq!((created.len(), updated), (1, 0));
        let record = &created[0];
        assert_eq!(record.text("Full_Name"), Some("A"));
        assert!(record.get("Foo").is_none(), "unknown keys are ignored");
        assert_eq!(record.get("Owner").unwrap()["id"], USER_ID);
    }

    /// Runs `work` in a transaction on Leads and commits it.
    fn commit<R>(state: &mut ZohoState, work: impl FnOnce(&mut Tx<'_>) -> R) -> R {
        let (result, staged) = {
            let mut tx = Tx::new(state, Module::Leads, 1_000);
            let result = work(&mut tx);
            (result, tx.finish())
        };
        state.commit(staged);
        result
    }

    /// [`commit`], then checks the indexes.
    fn write<R>(state: &mut ZohoState, work: impl FnOnce(&mut Tx<'_>) -> R) -> R {
        let result = commit(state, work);
        state.check_indexes();
        result
    }

    fn input(tx: &Tx<'_>, input: Value) -> Prepared {
        prepare(tx.schema(), Module::Leads, 0, &input).unwrap()
    }

    /// Upserts as `POST /Leads/upsert` with `duplicate_check_fields:
    /// [Leadgate_Id]` does; returns the id and whether it was added.
    fn upsert(tx: &mut Tx<'_>, record: Value) -> Result<(String, bool), ZohoError> {
        let p = input(tx, record);
        let matched = p
            .value("Leadgate_Id")
            .and_then(|v| tx.find_by("Leadgate_Id", v, None).first().copied());
        match matched {
            Some(key) => tx
                .update(0, key, &p, Some("Leadgate_Id"))
                .map(|d| (d["id"].as_str().unwrap().to_owned(), false)),
            None => tx.insert(0, &p).map(|(id, _)| (id, true)),
        }
    }

    /// The keys a criteria search finds through the indexes (when it can)
    /// and the ones a scan finds, both in key order.
    fn searched(state: &mut ZohoState, criteria: &str) -> (Vec<u64>, Vec<u64>) {
        let c = super::super::search::parse(criteria, &state.schema, Module::Leads).unwrap();
        let narrowed = state.criteria_candidates(Module::Leads, &c);
        let matches = |s: &Stored| c.matches(&|f| s.record.fields.get(f).cloned());
        let scan: Vec<u64> = state
            .of(Module::Leads)
            .filter(|s| matches(s))
            .filter_map(|s| key_of(&s.record.id))
            .collect();
        let found = match narrowed {
            Some(keys) => keys
                .into_iter()
                .filter(|k| {
                    state
                        .get(*k)
                        .is_some_and(|s| s.module == Module::Leads && matches(s))
                })
                .collect(),
            None => scan.clone(),
        };
        (found, scan)
    }

    #[test]
    fn indexes_follow_updates_deletes_definitions_and_clears() {
        let mut state = ZohoState::new(ZohoLimits::default());
        let (a, added) = write(&mut state, |tx| {
            upsert(
                tx,
                json!({"Last_Name": "A", "Email": "a@x.io", "Leadgate_Id": "k1"}),
            )
        })
        .unwrap();
        assert!(added);
        let key_a = key_of(&a).unwrap();
        // A criteria search builds the Email substrings; they follow too.
        assert_eq!(searched(&mut state, "(Email:equals:a@x.io)").0, vec![key_a]);
        state.check_indexes();

        // A changed email moves: the duplicate check and the searches find
        // the new one, the old one is free.
        write(&mut state, |tx| {
            let p = input(tx, json!({"Email": " B@x.io "}));
            tx.update(0, key_a, &p, None)
        })
        .unwrap();
        let err = write(&mut state, |tx| {
            let p = input(tx, json!({"Last_Name": "B", "Email": "b@X.IO"}));
            tx.insert(0, &p)
        })
        .unwrap_err();
        assert_eq!(err.code, "DUPLICATE_DATA");
        assert_eq!(err.details["duplicate_record"]["id"], json!(a));
        assert_eq!(searched(&mut state, "(Email:equals:b@x.io)").0, vec![key_a]);
        assert_eq!(
            searched(&mut state, "(Email:equals:a@x.io)").0,
            Vec::<u64>::new()
        );
        assert_eq!(
            state.candidates(Module::Leads, "Email", "B@x.io"),
            Some([key_a].into())
        );
        let (fresh, _) = write(&mut state, |tx| {
            let p = input(tx, json!({"Last_Name": "F", "Email": "a@x.io"}));
            tx.insert(0, &p)
        })
        .unwrap();
        let key_fresh = key_of(&fresh).unwrap();
        assert_eq!(
            searched(&mut state, "(Email:equals:a@x.io)").0,
            vec![key_fresh]
        );

        // A changed unique value moves too.
        write(&mut state, |tx| {
            let p = input(tx, json!({"Leadgate_Id": "k2"}));
            tx.update(0, key_a, &p, None)
        })
        .unwrap();
        let (same, added) = write(&mut state, |tx| {
            upsert(tx, json!({"Last_Name": "A2", "Leadgate_Id": "K2"}))
        })
        .unwrap();
        assert_eq!((same.as_str(), added), (a.as_str(), false));
        let (other, added) = write(&mut state, |tx| {
            upsert(tx, json!({"Last_Name": "O", "Leadgate_Id": "k1"}))
        })
        .unwrap();
        assert!(added && other != a);

        // Deleted, then the same key and email make a new record.
        assert!(write(&mut state, |tx| tx.delete(key_a)));
        assert_eq!(
            searched(&mut state, "(Email:equals:b@x.io)").0,
            Vec::<u64>::new()
        );
        let (again, added) = write(&mut state, |tx| {
            upsert(
                tx,
                json!({"Last_Name": "A3", "Email": "b@x.io", "Leadgate_Id": "k2"}),
            )
        })
        .unwrap();
        assert!(added && again != a);

        // A field made unique later is indexed with the values it holds.
        write(&mut state, |tx| {
            let p = input(tx, json!({"Phone": "+1 555 0100"}));
            tx.update(0, key_of(&again).unwrap(), &p, None)
        })
        .unwrap();
        assert!(state.define_field(Module::Leads, "phone", true));
        state.check_indexes();
        assert_eq!(
            state.candidates(Module::Leads, "Phone", "+1 555 0100"),
            Some([key_of(&again).unwrap()].into())
        );
        let err = write(&mut state, |tx| {
            let p = input(tx, json!({"Last_Name": "P", "Phone": "+1 555 0100"}));
            tx.insert(0, &p)
        })
        .unwrap_err();
        assert_eq!(err.details["duplicate_record"]["id"], json!(again));

        // Cleared: nothing is found.
        state.clear();
        state.check_indexes();
        assert_eq!(
            searched(&mut state, "(Email:equals:b@x.io)").0,
            Vec::<u64>::new()
        );
        let (_, added) = write(&mut state, |tx| {
            upsert(
                tx,
                json!({"Last_Name": "A", "Email": "b@x.io", "Leadgate_Id": "k2"}),
            )
        })
        .unwrap();
        assert!(added);
    }

    #[test]
    fn criteria_through_the_indexes_answer_as_a_scan() {
        let mut state = ZohoState::new(ZohoLimits::default());
        let rows = [
            ("jane@x.io", "k1"),
            ("JANE@x.io.uk", "k1 x"),
            ("xjane@y.org", "k2"),
            ("\u{212A}ate@x.io", "k3"), // a Kelvin sign: lowercase "kate@x.io"
            ("kate@x.io", "k4"),
            ("bob@x.io", "k5"),
        ];
        write(&mut state, |tx| {
            for (i, (email, id)) in rows.into_iter().enumerate() {
                let p = input(
                    tx,
                    json!({"Last_Name": format!("L{i}"), "Company": "ABC Inc", "Email": email, "Leadgate_Id": id}),
                );
                tx.insert(i, &p).unwrap();
            }
        });
        for criteria in [
            "(Email:equals:jane@x.io)",
            "(Email:equals:JANE)",
            "(Email:equals:kate@x.io)",
            "(Email:in:kate@x.io,bob@x.io)",
            "(Email:starts_with:jane)",
            "(Email:not_equal:jane@x.io)",
            "(Leadgate_Id:equals:k1)",
            "(Leadgate_Id:in:k1,k5)",
            "((Email:equals:x.io)and(Last_Name:equals:L1))",
            "((Last_Name:equals:L0)or(Email:equals:bob))",
            "((Leadgate_Id:equals:k2)or(Email:equals:bob))",
            "(Company:equals:ABC)",
        ] {
            let (found, scan) = searched(&mut state, criteria);
            assert_eq!(found, scan, "{criteria}");
        }
        assert_eq!(searched(&mut state, "(Email:equals:kate@x.io)").0.len(), 2);
        assert_eq!(searched(&mut state, "(Email:in:kate@x.io)").0.len(), 2);
        assert_eq!(searched(&mut state, "(Leadgate_Id:equals:k1)").0.len(), 2);
        let narrows = |state: &mut ZohoState, criteria: &str| {
            let c = super::super::search::parse(criteria, &state.schema, Module::Leads).unwrap();
            state.criteria_candidates(Module::Leads, &c).is_some()
        };
        assert!(narrows(&mut state, "(Email:equals:JANE)"));
        assert!(narrows(
            &mut state,
            "((Email:in:a@x.io)and(Last_Name:equals:L1))"
        ));
        assert!(!narrows(&mut state, "(Company:equals:ABC)"));
        assert!(!narrows(
            &mut state,
            "((Email:equals:a)or(Company:equals:ABC))"
        ));
        state.check_indexes();
    }

    #[test]
    fn twenty_thousand_upserts_each_find_their_one_record() {
        const N: usize = 20_000;
        let mut state = ZohoState::new(ZohoLimits::default());
        for round in 0..2 {
            // In calls of 100, as Zoho's upsert takes them.
            for start in (0..N).step_by(100) {
                let outcomes = commit(&mut state, |tx| {
                    (start..start + 100)
                        .map(|i| {
                            let record = json!({"Last_Name": format!("L{i}"), "Email": format!("lead{i}@example.com"), "Leadgate_Id": format!("LG-{i}")});
                            upsert(tx, record)
                                .map(|(_, added)| added)
                                .map_err(|e| e.code)
                        })
                        .collect::<Vec<_>>()
                });
                assert!(
                    outcomes.iter().all(|o| o == &Ok(round == 0)),
                    "round {round}: {outcomes:?}"
                );
            }
        }
        assert_eq!(state.of(Module::Leads).count(), N);
        state.check_indexes();
        let tx = Tx::new(&state, Module::Leads, 1_000);
        for i in (0..N).step_by(7) {
            let found = tx.find_by("Leadgate_Id", &json!(format!("lg-{i}")), None);
            assert_eq!(found.len(), 1, "LG-{i}");
        }
        assert_eq!(
            state
                .candidates(Module::Leads, "Email", "LEAD19999@example.com")
                .map(|k| k.len()),
            Some(1)
        );
    }

    #[test]
    fn layout_makes_company_mandatory_and_several_duplicates_are_one_error() {
        let mut state = ZohoState::new(ZohoLimits::default());
        state.schema.define(Module::Leads, "Phone", true);
        let staged = {
            let mut tx = Tx::new(&state, Module::Leads, 1_000);
            let p = prepared(&state, 0, json!({"Last_Name": "A", "Layout": {"id": "1"}}));
            let err = tx.insert(0, &p).unwrap_err();
            assert_eq!(err.details["api_name"], "Company");
            let p = prepared(
                &state,
                0,
                json!({"Last_Name": "A", "Email": "a@x.io", "Phone": "1", "Leadgate_Id": "k"}),
            );
            tx.insert(0, &p).unwrap();
            let p = prepared(
                &state,
                1,
                json!({"Last_Name": "B", "Email": "a@x.io", "Phone": "1", "Leadgate_Id": "k"}),
            );
            let err = tx.insert(1, &p).unwrap_err();
            assert_eq!(err.code, "MULTIPLE_OR_MULTI_ERRORS");
            assert_eq!(err.details["errors"].as_array().unwrap().len(), 3);
            tx.finish()
        };
        state.commit(staged);
        let (used, max) = state.credits(0);
        assert_eq!((used, max), (0, 50_000));
        state.charge(0, 3);
        state.charge(10, 2);
        assert_eq!(state.credits(DAY_MS).0, 2);
    }
}
