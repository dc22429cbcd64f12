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

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::schema::{Field, FieldType, Module, Schema, check_value};
use super::wire::{USER_ID, ZohoError, owner, user, written_details};

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
    pub records: BTreeMap<u64, Stored>,
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
        ZohoState {
            records: BTreeMap::new(),
            schema: Schema::default(),
            next_seq: 1,
            limits,
            usage: VecDeque::new(),
            in_flight: 0,
        }
    }

    /// Drops records and credit usage; ids keep increasing.
    pub(crate) fn clear(&mut self) {
        self.records.clear();
        self.usage.clear();
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
            self.records.remove(key);
        }
        let created: Vec<ZohoRecord> = staged
            .created
            .iter()
            .filter_map(|k| staged.changed.get(k).map(|s| s.record.clone()))
            .collect();
        let updated = staged.updated.len();
        self.records.extend(staged.changed);
        (created, updated)
    }

    /// Drops a finished transaction but keeps its ids used.
    pub(crate) fn discard(&mut self, staged: &Staged) {
        self.next_seq = self.next_seq.max(staged.next_seq);
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

    /// The module's records as this transaction sees them, in id order.
    fn records(&self) -> impl Iterator<Item = (u64, &Stored)> {
        let module = self.module;
        let staged = &self.staged;
        let base = self
            .state
            .records
            .iter()
            .filter(move |(k, _)| !staged.changed.contains_key(k) && !staged.deleted.contains(k))
            .map(|(k, s)| (*k, s));
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
            .records()
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
