//! The org's rows and the checks a write meets, in Dataverse's order: the
//! OData reader (unknown properties, wrong types: `0x80048d19`), the
//! platform's validation (lengths `0x80044331`, choice values
//! `0x8004431a`), lookups that must exist, duplicate detection rules
//! (only when the request asks, `0x80040333`), then the database's
//! unique alternate keys (`0x80060892`).
//!
//! Every change is journaled, so a change set that fails (or a write the
//! fault injector drops) is undone whole.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::limits::{DataverseLimits, Usage};
use super::odata::{Filter, Key, compare, is_guid};
use super::schema::{Kind, Schema, Table};
use super::wire::{DvError, etag};

/// A stored row, as [`crate::SimHandle::dataverse_records`] returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataverseRecord {
    /// The row's GUID (lowercase).
    pub id: String,
    /// The table's logical name: `lead` or `contact`.
    pub table: String,
    /// Every column with a value, by logical name, including the id
    /// column, `createdon`, `modifiedon`, `versionnumber`, `statecode`,
    /// `statuscode`, `fullname` and lookups as `_x_value`.
    pub fields: BTreeMap<String, Value>,
}

impl DataverseRecord {
    pub fn get(&self, column: &str) -> Option<&Value> {
        self.fields.get(column).filter(|v| !v.is_null())
    }

    pub fn text(&self, column: &str) -> Option<&str> {
        self.get(column).and_then(Value::as_str)
    }

    /// `emailaddress1`.
    pub fn email(&self) -> Option<&str> {
        self.text("emailaddress1")
    }

    /// The row version (`versionnumber`), which its ETag carries.
    pub fn version(&self) -> u64 {
        self.get("versionnumber")
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }

    pub fn etag(&self) -> String {
        etag(self.version())
    }
}

/// A validated write: column values, and the id a create asked for.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Changes {
    pub values: Vec<(String, Value)>,
    /// Lookups: column, target entity set, target id.
    pub binds: Vec<(String, &'static str, String)>,
    pub id: Option<String>,
}

/// How a write is checked beyond the schema.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// `MSCRM.SuppressDuplicateDetection: false`.
    pub detect_duplicates: bool,
}

/// `If-Match` / `If-None-Match` on an upsert.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Condition {
    #[default]
    None,
    /// `If-Match: *`: update only.
    Exists,
    /// `If-Match: W/"n"`: update only, and only that version.
    Version(String),
    /// `If-None-Match: *`: create only.
    Absent,
}

/// What undoes one change.
#[derive(Clone, Debug)]
enum Undo {
    Created(String),
    Updated(Box<DataverseRecord>),
    Deleted(u64, Box<DataverseRecord>),
}

/// The changes of a request (or change set): undo steps and what to log
/// when it commits.
#[derive(Debug, Default)]
pub struct Journal {
    undo: Vec<Undo>,
    /// Rows created, in order.
    pub created: Vec<String>,
    /// Updates made.
    pub updated: u64,
}

impl Journal {
    pub fn is_empty(&self) -> bool {
        self.undo.is_empty()
    }

    /// Appends a committed change set's journal.
    pub fn absorb(&mut self, other: Journal) {
        self.undo.extend(other.undo);
        self.created.extend(other.created);
        self.updated += other.updated;
    }
}

/// The simulated org.
#[derive(Debug)]
pub(crate) struct DataverseState {
    pub schema: Schema,
    /// Rows of each table by creation sequence.
    rows: [BTreeMap<u64, DataverseRecord>; 2],
    /// id → (table, sequence).
    ids: HashMap<String, (Table, u64)>,
    next_seq: u64,
    next_version: u64,
    /// Whether the org's duplicate detection rules are published (on by
    /// default: "Leads/Contacts with the same e-mail address").
    pub duplicate_detection: bool,
    pub limits: DataverseLimits,
    pub usage: Usage,
}

impl DataverseState {
    pub fn new(limits: DataverseLimits) -> Self {
        DataverseState {
            schema: Schema::default(),
            rows: [BTreeMap::new(), BTreeMap::new()],
            ids: HashMap::new(),
            next_seq: 1,
            next_version: 1_000_000,
            duplicate_detection: true,
            limits,
            usage: Usage::default(),
        }
    }

    /// Drops every row and the usage of the limits (schema, limits and
    /// the duplicate detection switch stay).
    pub fn clear(&mut self) {
        self.rows = [BTreeMap::new(), BTreeMap::new()];
        self.ids.clear();
        self.usage.clear();
    }

    /// Rows of `table` in creation order.
    pub fn rows(&self, table: Table) -> impl DoubleEndedIterator<Item = &DataverseRecord> {
        self.rows[table.index()].values()
    }

    pub fn get(&self, table: Table, id: &str) -> Option<&DataverseRecord> {
        let (t, seq) = self.ids.get(&id.to_ascii_lowercase())?;
        (*t == table)
            .then(|| self.rows[t.index()].get(seq))
            .flatten()
    }

    /// The row a key addresses: `Ok(None)` when none; an error when the
    /// key's columns are no alternate key of the table.
    pub fn find(&self, table: Table, key: &Key) -> Result<Option<&DataverseRecord>, DvError> {
        match key {
            Key::Id(id) => Ok(self.get(table, id)),
            Key::Alternate(pairs) => {
                if let [(name, value)] = pairs.as_slice()
                    && name == table.id_column()
                {
                    if !is_guid(value) {
                        return Err(DvError::bad_query("Bad Request - Error in query syntax."));
                    }
                    return Ok(self.get(table, value));
                }
                let names: Vec<&str> = pairs.iter().map(|(n, _)| n.as_str()).collect();
                if self.schema.key_for(table, &names).is_none() {
                    return Err(DvError::key_not_defined(table));
                }
                Ok(self.rows(table).find(|r| {
                    pairs
                        .iter()
                        .all(|(n, v)| r.text(n).is_some_and(|held| held.eq_ignore_ascii_case(v)))
                }))
            }
        }
    }

    /// Rows matching a filter.
    pub fn query(
        &self,
        table: Table,
        filter: Option<&Filter>,
        order: &[(String, bool)],
    ) -> Vec<&DataverseRecord> {
        let mut rows: Vec<&DataverseRecord> = self
            .rows(table)
            .filter(|r| filter.is_none_or(|f| f.matches(&|c: &str| r.fields.get(c).cloned())))
            .collect();
        if !order.is_empty() {
            rows.sort_by(|a, b| {
                order
                    .iter()
                    .map(|(c, desc)| {
                        let o = compare(a.fields.get(c), b.fields.get(c));
                        if *desc { o.reverse() } else { o }
                    })
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
            });
        }
        rows
    }

    /// Checks a request body (a JSON object) for `table`.
    pub fn changes(&self, table: Table, body: &[u8]) -> Result<Changes, DvError> {
        let object: Vec<(String, Value)> = if body.iter().all(u8::is_ascii_whitespace) {
            Vec::new()
        } else {
            match serde_json::from_slice::<Ordered>(body) {
                Ok(Ordered(Some(pairs))) => pairs,
                Ok(Ordered(None)) => {
                    return Err(DvError::payload(
                        table,
                        "Microsoft.OData.ODataException: An unexpected 'StartArray' node was found when reading from the JSON reader. A 'StartObject' node was expected.",
                    ));
                }
                Err(err) => {
                    return Err(DvError::payload(
                        table,
                        &format!("Microsoft.OData.ODataException: Invalid JSON. {err}"),
                    ));
                }
            }
        };
        let mut changes = Changes::default();
        // The OData reader first, in the body's order: names and types.
        for (key, value) in &object {
            if key.starts_with('@') {
                continue;
            }
            if let Some((name, annotation)) = key.split_once('@') {
                if annotation != "odata.bind" {
                    continue;
                }
                let Some((column, set)) = self.schema.navigation(table, name) else {
                    return Err(DvError::undeclared_annotation(table, name));
                };
                let target = value.as_str().and_then(|v| bound_id(v, set)).ok_or_else(|| {
                    DvError::payload(
                        table,
                        &format!(
                            "Microsoft.OData.ODataException: The value '{}' of '{key}' is not a reference to a row of '{set}'.",
                            value.as_str().unwrap_or_default()
                        ),
                    )
                })?;
                changes.binds.push((column.name.clone(), set, target));
                continue;
            }
            if key == table.id_column() {
                match value.as_str() {
                    Some(id) if is_guid(id) => changes.id = Some(id.to_ascii_lowercase()),
                    _ => return Err(DvError::wrong_type(table, &literal(value), "Edm.Guid")),
                }
                continue;
            }
            if super::schema::lookup_of_value(key).is_some() && self.schema.readable(table, key) {
                continue;
            }
            let Some(column) = self.schema.column(table, key) else {
                return Err(DvError::unknown_property(table, key));
            };
            match (&column.kind, value) {
                (Kind::System, _) => continue,
                (_, Value::Null) => {}
                (Kind::Text(_), Value::String(_)) => {}
                (Kind::Text(_), other) => {
                    return Err(DvError::wrong_type(table, &literal(other), "Edm.String"));
                }
                (Kind::Choice(_), Value::Number(n)) if n.is_i64() => {}
                (Kind::Choice(_), other) => {
                    return Err(DvError::wrong_type(table, &literal(other), "Edm.Int32"));
                }
                (Kind::Lookup(_), _) => {
                    return Err(DvError::payload(
                        table,
                        "Microsoft.OData.ODataException: An unexpected 'PrimitiveValue' node was found when reading from the JSON reader. A 'StartObject' node was expected.",
                    ));
                }
            }
            changes.values.push((key.clone(), value.clone()));
        }
        // Then the platform's validation.
        for (name, value) in &changes.values {
            self.check_value(table, name, value)?;
        }
        Ok(changes)
    }

    /// Length and choice checks of one value.
    pub fn check_value(&self, table: Table, name: &str, value: &Value) -> Result<(), DvError> {
        match (self.schema.column(table, name).map(|c| &c.kind), value) {
            (Some(Kind::Text(max)), Value::String(s)) if s.chars().count() > *max => {
                Err(DvError::too_long(table, name, *max))
            }
            (Some(Kind::Choice(allowed)), Value::Number(n))
                if !n.as_i64().is_some_and(|v| allowed.contains(&v)) =>
            {
                Err(DvError::out_of_range(table, name, value, allowed))
            }
            _ => Ok(()),
        }
    }

    /// Creates a row; `key_values` are an upsert's alternate key values.
    pub fn create(
        &mut self,
        table: Table,
        changes: &Changes,
        id: Option<String>,
        options: WriteOptions,
        journal: &mut Journal,
    ) -> Result<String, DvError> {
        let id = id.or_else(|| changes.id.clone()).unwrap_or_else(new_guid);
        if self.ids.contains_key(&id) {
            return Err(DvError::record_exists());
        }
        let now = now_stamp();
        let mut fields = BTreeMap::new();
        fields.insert(table.id_column().to_owned(), Value::String(id.clone()));
        fields.insert("createdon".into(), Value::String(now.clone()));
        fields.insert("modifiedon".into(), Value::String(now));
        fields.insert("statecode".into(), Value::from(0));
        fields.insert("statuscode".into(), Value::from(1));
        self.apply(table, &mut fields, changes)?;
        self.check_row(table, &id, &fields, options)?;
        self.next_version += 1;
        fields.insert("versionnumber".into(), Value::from(self.next_version));
        let seq = self.next_seq;
        self.next_seq += 1;
        self.rows[table.index()].insert(
            seq,
            DataverseRecord {
                id: id.clone(),
                table: table.logical_name().to_owned(),
                fields,
            },
        );
        self.ids.insert(id.clone(), (table, seq));
        journal.undo.push(Undo::Created(id.clone()));
        journal.created.push(id.clone());
        Ok(id)
    }

    /// Updates a row that exists.
    pub fn update(
        &mut self,
        table: Table,
        id: &str,
        changes: &Changes,
        options: WriteOptions,
        journal: &mut Journal,
    ) -> Result<(), DvError> {
        let Some(before) = self.get(table, id).cloned() else {
            return Err(DvError::not_found_id(table, id));
        };
        let mut fields = before.fields.clone();
        self.apply(table, &mut fields, changes)?;
        self.check_row(table, &before.id, &fields, options)?;
        self.next_version += 1;
        fields.insert("versionnumber".into(), Value::from(self.next_version));
        fields.insert("modifiedon".into(), Value::String(now_stamp()));
        let (_, seq) = self.ids[&before.id];
        if let Some(row) = self.rows[table.index()].get_mut(&seq) {
            row.fields = fields;
        }
        journal.undo.push(Undo::Updated(Box::new(before)));
        journal.updated += 1;
        Ok(())
    }

    pub fn delete(&mut self, table: Table, id: &str, journal: &mut Journal) -> Result<(), DvError> {
        let id = id.to_ascii_lowercase();
        let id = id.as_str();
        let Some((t, seq)) = self.ids.get(id).copied().filter(|(t, _)| *t == table) else {
            return Err(DvError::not_found_id(table, id));
        };
        if let Some(row) = self.rows[t.index()].remove(&seq) {
            self.ids.remove(id);
            journal.undo.push(Undo::Deleted(seq, Box::new(row)));
        }
        Ok(())
    }

    /// Undoes a journal's changes, newest first.
    pub fn rollback(&mut self, journal: Journal) {
        for step in journal.undo.into_iter().rev() {
            match step {
                Undo::Created(id) => {
                    if let Some((t, seq)) = self.ids.remove(&id) {
                        self.rows[t.index()].remove(&seq);
                    }
                }
                Undo::Updated(before) => {
                    if let Some((t, seq)) = self.ids.get(&before.id).copied()
                        && let Some(row) = self.rows[t.index()].get_mut(&seq)
                    {
                        *row = *before;
                    }
                }
                Undo::Deleted(seq, row) => {
                    if let Some(table) = Table::parse(&row.table) {
                        self.ids.insert(row.id.clone(), (table, seq));
                        self.rows[table.index()].insert(seq, *row);
                    }
                }
            }
        }
    }

    /// Applies values and lookups to a row's fields (lookups must exist
    /// when they point at a simulated table).
    fn apply(
        &self,
        table: Table,
        fields: &mut BTreeMap<String, Value>,
        changes: &Changes,
    ) -> Result<(), DvError> {
        for (name, value) in &changes.values {
            if value.is_null() {
                fields.remove(name);
            } else {
                fields.insert(name.clone(), value.clone());
            }
        }
        for (column, set, target) in &changes.binds {
            if let Some(target_table) = Table::from_entity_set(set)
                && self.get(target_table, target).is_none()
            {
                return Err(DvError::not_found_id(target_table, target));
            }
            fields.insert(format!("_{column}_value"), Value::String(target.clone()));
        }
        let full: Vec<&str> = ["firstname", "lastname"]
            .iter()
            .filter_map(|c| fields.get(*c).and_then(Value::as_str))
            .collect();
        if full.is_empty() {
            fields.remove("fullname");
        } else {
            fields.insert("fullname".into(), Value::String(full.join(" ")));
        }
        let _ = table;
        Ok(())
    }

    /// Duplicate detection, then the alternate keys.
    fn check_row(
        &self,
        table: Table,
        id: &str,
        fields: &BTreeMap<String, Value>,
        options: WriteOptions,
    ) -> Result<(), DvError> {
        let email = fields
            .get("emailaddress1")
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|e| !e.is_empty());
        if options.detect_duplicates
            && self.duplicate_detection
            && let Some(email) = email
            && self.rows(table).any(|r| {
                r.id != id
                    && r.email()
                        .is_some_and(|e| e.trim().eq_ignore_ascii_case(email))
            })
        {
            return Err(DvError::duplicate_detected());
        }
        for key in self.schema.keys(table) {
            let values: Option<Vec<&str>> = key
                .columns
                .iter()
                .map(|c| fields.get(c).and_then(Value::as_str))
                .collect();
            let Some(values) = values else { continue };
            let taken =
                self.rows(table).any(|r| {
                    r.id != id
                        && key.columns.iter().zip(&values).all(|(c, v)| {
                            r.text(c).is_some_and(|held| held.eq_ignore_ascii_case(v))
                        })
                });
            if taken {
                return Err(DvError::duplicate_key(&key.name, &key.columns));
            }
        }
        Ok(())
    }

    /// Upsert: update the row the key addresses, or create it (with the
    /// key's id or alternate key values), as the condition allows.
    /// Returns the id and whether it was created.
    pub fn upsert(
        &mut self,
        table: Table,
        key: &Key,
        changes: &Changes,
        condition: &Condition,
        options: WriteOptions,
        journal: &mut Journal,
    ) -> Result<(String, bool), DvError> {
        let existing = self.find(table, key)?.map(|r| (r.id.clone(), r.etag()));
        let missing = || match key {
            Key::Id(id) => DvError::not_found_id(table, id),
            Key::Alternate(_) => DvError::not_found_key(table),
        };
        match (existing, condition) {
            (Some(_), Condition::Absent) => Err(DvError::record_exists()),
            (None, Condition::Exists | Condition::Version(_)) => Err(missing()),
            (Some((_, held)), Condition::Version(wanted)) if &held != wanted => {
                Err(DvError::version_mismatch())
            }
            (Some((id, _)), _) => {
                self.update(table, &id, changes, options, journal)?;
                Ok((id, false))
            }
            (None, _) => {
                let mut changes = changes.clone();
                let id = match key {
                    Key::Id(id) => Some(id.clone()),
                    Key::Alternate(pairs) => {
                        for (name, value) in pairs {
                            let value = Value::String(value.clone());
                            self.check_value(table, name, &value)?;
                            changes.values.retain(|(n, _)| n != name);
                            changes.values.push((name.clone(), value));
                        }
                        None
                    }
                };
                let id = self.create(table, &changes, id, options, journal)?;
                Ok((id, true))
            }
        }
    }
}

/// A JSON body's top-level properties in the order they were written
/// (`None`: not an object).
struct Ordered(Option<Vec<(String, Value)>>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Ordered, A::Error> {
                let mut pairs = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    pairs.push((k, v));
                }
                Ok(Ordered(Some(pairs)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Ordered, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Ordered(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<Ordered, E> {
                Ok(Ordered(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Ordered, E> {
                Ok(Ordered(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Ordered, E> {
                Ok(Ordered(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Ordered, E> {
                Ok(Ordered(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Ordered, E> {
                Ok(Ordered(None))
            }
            fn visit_unit<E>(self) -> Result<Ordered, E> {
                Ok(Ordered(None))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// The GUID of `/contacts(<guid>)`, `contacts(<guid>)` or a full URL
/// ending so, when `set` is the entity set.
fn bound_id(reference: &str, set: &str) -> Option<String> {
    let tail = reference.rsplit('/').next()?;
    let inner = tail
        .strip_prefix(set)?
        .strip_prefix('(')?
        .strip_suffix(')')?;
    is_guid(inner).then(|| inner.to_ascii_lowercase())
}

/// A new row id (random, lowercase).
pub fn new_guid() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

/// A GUID that is always the same for `name` (FNV-1a over it, twice).
pub fn stable_guid(name: &str) -> String {
    let hash = |seed: u64| {
        name.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    let (a, b) = (hash(0xcbf2_9ce4_8422_2325), hash(0x8422_2325_cbf2_9ce4));
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_be_bytes());
    bytes[8..].copy_from_slice(&b.to_be_bytes());
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .to_string()
}

/// A JSON value as a literal in an OData message.
fn literal(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `2024-05-01T12:34:56Z`, as Dataverse writes `createdon`.
pub fn now_stamp() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn state() -> DataverseState {
        DataverseState::new(DataverseLimits::default())
    }

    fn changes(state: &DataverseState, table: Table, body: &str) -> Result<Changes, DvError> {
        state.changes(table, body.as_bytes())
    }

    #[test]
    fn body_checks_in_order() {
        let s = state();
        let err = changes(&s, Table::Lead, r#"{"foo":1,"firstname":5}"#).unwrap_err();
        assert_eq!(err.code, "0x80048d19");
        assert!(err.message.contains("The property 'foo' does not exist"));
        let err = changes(&s, Table::Lead, r#"{"firstname":5}"#).unwrap_err();
        assert!(
            err.message
                .contains("Cannot convert the literal '5' to the expected type 'Edm.String'")
        );
        let long = "x".repeat(51);
        let err = changes(&s, Table::Lead, &format!(r#"{{"firstname":"{long}"}}"#)).unwrap_err();
        assert_eq!(
            (err.status, err.code),
            (StatusCode::BAD_REQUEST, "0x80044331")
        );
        let err = changes(&s, Table::Lead, r#"{"leadsourcecode":99}"#).unwrap_err();
        assert_eq!(err.code, "0x8004431a");
        assert!(
            err.message
                .ends_with("Accepted Values: 1,2,3,4,5,6,7,8,9,10")
        );
        let err = changes(&s, Table::Lead, "{").unwrap_err();
        assert_eq!(err.code, "0x80048d19");
        let err = changes(&s, Table::Contact, r#"{"companyname":"Acme"}"#).unwrap_err();
        assert!(err.message.contains("'Microsoft.Dynamics.CRM.contact'"));
        let err = changes(&s, Table::Contact, r#"{"foo@odata.bind":"/accounts(1)"}"#).unwrap_err();
        assert!(err.message.contains("An undeclared property 'foo'"));
        let ok = changes(
            &s,
            Table::Contact,
            r#"{"@odata.type":"Microsoft.Dynamics.CRM.contact","lastname":"Doe","createdon":"x","parentcustomerid_account@odata.bind":"/accounts(00000000-0000-0000-0000-000000000001)"}"#,
        )
        .unwrap();
        assert_eq!(ok.values, vec![("lastname".to_owned(), Value::from("Doe"))]);
        assert_eq!(ok.binds.len(), 1);
    }

    #[test]
    fn keys_duplicates_and_rollback() {
        let mut s = state();
        let mut journal = Journal::default();
        let body = changes(
            &s,
            Table::Lead,
            r#"{"lastname":"Doe","emailaddress1":"a@x.io","new_leadgateid":"k1"}"#,
        )
        .unwrap();
        let id = s
            .create(
                Table::Lead,
                &body,
                None,
                WriteOptions::default(),
                &mut journal,
            )
            .unwrap();
        // Same key again: 412.
        let err = s
            .create(
                Table::Lead,
                &body,
                None,
                WriteOptions::default(),
                &mut journal,
            )
            .unwrap_err();
        assert_eq!(
            (err.status, err.code),
            (StatusCode::PRECONDITION_FAILED, "0x80060892")
        );
        // Same email, other key: allowed unless detection is asked for.
        let other = changes(
            &s,
            Table::Lead,
            r#"{"lastname":"Doe","emailaddress1":"A@x.io"}"#,
        )
        .unwrap();
        let detect = WriteOptions {
            detect_duplicates: true,
        };
        let err = s
            .create(Table::Lead, &other, None, detect, &mut journal)
            .unwrap_err();
        assert_eq!(
            (err.status, err.code),
            (StatusCode::INTERNAL_SERVER_ERROR, "0x80040333")
        );
        let second = s
            .create(
                Table::Lead,
                &other,
                None,
                WriteOptions::default(),
                &mut journal,
            )
            .unwrap();
        assert_eq!(s.rows(Table::Lead).count(), 2);
        // Upsert by key: update, then conditions.
        let key = Key::Alternate(vec![("new_leadgateid".into(), "K1".into())]);
        let patch = changes(&s, Table::Lead, r#"{"firstname":"Jane"}"#).unwrap();
        let (got, created) = s
            .upsert(
                Table::Lead,
                &key,
                &patch,
                &Condition::None,
                WriteOptions::default(),
                &mut journal,
            )
            .unwrap();
        assert_eq!((got.as_str(), created), (id.as_str(), false));
        assert_eq!(
            s.get(Table::Lead, &id).unwrap().text("fullname"),
            Some("Jane Doe")
        );
        let err = s
            .upsert(
                Table::Lead,
                &key,
                &patch,
                &Condition::Absent,
                WriteOptions::default(),
                &mut journal,
            )
            .unwrap_err();
        assert_eq!(err.status, StatusCode::PRECONDITION_FAILED);
        let new_key = Key::Alternate(vec![("new_leadgateid".into(), "k2".into())]);
        let err = s
            .upsert(
                Table::Lead,
                &new_key,
                &patch,
                &Condition::Exists,
                WriteOptions::default(),
                &mut journal,
            )
            .unwrap_err();
        assert_eq!(
            (err.status, err.code),
            (StatusCode::NOT_FOUND, "0x80048d02")
        );
        let stale = Condition::Version("W/\"1\"".into());
        let err = s
            .upsert(
                Table::Lead,
                &key,
                &patch,
                &stale,
                WriteOptions::default(),
                &mut journal,
            )
            .unwrap_err();
        assert_eq!(err.code, "0x80060882");
        let (third, created) = s
            .upsert(
                Table::Lead,
                &new_key,
                &patch,
                &Condition::None,
                WriteOptions::default(),
                &mut journal,
            )
            .unwrap();
        assert!(created);
        assert_eq!(
            s.get(Table::Lead, &third).unwrap().text("new_leadgateid"),
            Some("k2")
        );
        let bad = Key::Alternate(vec![("emailaddress1".into(), "a@x.io".into())]);
        assert_eq!(s.find(Table::Lead, &bad).unwrap_err().code, "0x80060890");
        s.delete(Table::Lead, &second, &mut journal).unwrap();
        assert_eq!(s.rows(Table::Lead).count(), 2);
        s.rollback(journal);
        assert_eq!(s.rows(Table::Lead).count(), 0);
        assert!(s.get(Table::Lead, &id).is_none());
    }

    #[test]
    fn lookups_must_exist_for_simulated_tables() {
        let mut s = state();
        let mut journal = Journal::default();
        let missing = changes(
            &s,
            Table::Lead,
            r#"{"parentcontactid@odata.bind":"/contacts(00000000-0000-0000-0000-000000000009)"}"#,
        )
        .unwrap();
        let err = s
            .create(
                Table::Lead,
                &missing,
                None,
                WriteOptions::default(),
                &mut journal,
            )
            .unwrap_err();
        assert_eq!(err.code, "0x80040217");
        let contact = changes(&s, Table::Contact, r#"{"lastname":"C"}"#).unwrap();
        let cid = s
            .create(
                Table::Contact,
                &contact,
                None,
                WriteOptions::default(),
                &mut journal,
            )
            .unwrap();
        let bound = changes(
            &s,
            Table::Lead,
            &format!(r#"{{"parentcontactid@odata.bind":"contacts({cid})"}}"#),
        )
        .unwrap();
        let lid = s
            .create(
                Table::Lead,
                &bound,
                None,
                WriteOptions::default(),
                &mut journal,
            )
            .unwrap();
        assert_eq!(
            s.get(Table::Lead, &lid)
                .unwrap()
                .text("_parentcontactid_value"),
            Some(cid.as_str())
        );
    }
}
