//! The org's rows and the checks a write meets, in Dataverse's order: the
//! OData reader (unknown properties, wrong types: `0x80048d19`), the
//! platform's validation (lengths `0x80044331`, choice values
//! `0x8004431a`), lookups that must exist, duplicate detection rules
//! (only when the request asks, `0x80040333`), then the database's
//! unique alternate keys (`0x80060892`).
//!
//! Every change is journaled, so a change set that fails (or a write the
//! fault injector drops) is undone whole.
//!
//! The rows are indexed per table ([`FieldIndex`]) by `emailaddress1` and
//! by every alternate key column, so an upsert by key, the key and
//! duplicate checks and a `$filter` equality on those columns look rows up
//! instead of scanning the table.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::limits::{DataverseLimits, Usage};
use super::odata::{Filter, Key, Literal, Op, compare, is_guid};
use super::schema::{Kind, Schema, Table};
use super::wire::{DvError, etag};
use crate::index::{self, FieldIndex};

/// The column duplicate detection compares.
const EMAIL: &str = "emailaddress1";

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
    /// Per table: `emailaddress1` and the alternate key columns → rows
    /// (by sequence). Kept current by every change of `rows`.
    indexes: [FieldIndex<u64>; 2],
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
        let schema = Schema::default();
        let indexes = Table::ALL.map(|table| {
            let mut columns = vec![EMAIL];
            for key in schema.keys(table) {
                columns.extend(key.columns.iter().map(String::as_str));
            }
            FieldIndex::new(&columns)
        });
        DataverseState {
            schema,
            rows: [BTreeMap::new(), BTreeMap::new()],
            ids: HashMap::new(),
            indexes,
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
        for index in &mut self.indexes {
            index.clear();
        }
        self.usage.clear();
    }

    /// Defines an alternate key (see [`Schema::define_key`]); its columns
    /// get indexed.
    pub fn define_key(&mut self, table: Table, columns: &[&str]) -> bool {
        if !self.schema.define_key(table, columns) {
            return false;
        }
        let rows = &self.rows[table.index()];
        for column in columns {
            self.indexes[table.index()]
                .watch(column, rows.iter().map(|(seq, r)| (*seq, &r.fields)));
        }
        true
    }

    /// Stores a row, keeping the indexes current.
    fn put_row(&mut self, table: Table, seq: u64, row: DataverseRecord) {
        let i = table.index();
        if let Some(old) = self.rows[i].remove(&seq) {
            self.indexes[i].remove(&seq, &old.fields);
        }
        self.indexes[i].add(&seq, &row.fields);
        self.ids.insert(row.id.clone(), (table, seq));
        self.rows[i].insert(seq, row);
    }

    /// Removes a row, keeping the indexes current.
    fn take_row(&mut self, table: Table, seq: u64) -> Option<DataverseRecord> {
        let row = self.rows[table.index()].remove(&seq)?;
        self.ids.remove(&row.id);
        self.indexes[table.index()].remove(&seq, &row.fields);
        Some(row)
    }

    /// Replaces a stored row's columns, keeping the indexes current.
    fn set_fields(&mut self, table: Table, seq: u64, fields: BTreeMap<String, Value>) {
        if let Some(row) = self.rows[table.index()].get_mut(&seq) {
            self.indexes[table.index()].replace(&seq, &row.fields, &fields);
            row.fields = fields;
        }
    }

    /// The rows of `table` that may hold `text` in `column` (a superset of
    /// those equal to it ignoring case, in creation order): the index's
    /// candidates, or every row when the column is not indexed. Callers
    /// check each with their comparison.
    fn lookup<'s>(
        &'s self,
        table: Table,
        column: &str,
        text: &str,
    ) -> Box<dyn Iterator<Item = &'s DataverseRecord> + 's> {
        self.pool(table, self.indexes[table.index()].candidates(column, text))
    }

    /// The rows of `table` that may hold every `(column, text)` of `pairs`:
    /// [`DataverseState::lookup`] by the first indexed column among them.
    fn lookup_all<'s>(
        &'s self,
        table: Table,
        pairs: &[(&str, &str)],
    ) -> Box<dyn Iterator<Item = &'s DataverseRecord> + 's> {
        let index = &self.indexes[table.index()];
        match pairs.iter().find(|(column, _)| index.watches(column)) {
            Some((column, text)) => self.lookup(table, column, text),
            None => Box::new(self.rows(table)),
        }
    }

    /// The rows of `table` at these sequence numbers, in creation order;
    /// every row of the table for `None`.
    fn pool(
        &self,
        table: Table,
        seqs: Option<BTreeSet<u64>>,
    ) -> Box<dyn Iterator<Item = &DataverseRecord> + '_> {
        let rows = &self.rows[table.index()];
        match seqs {
            Some(seqs) => Box::new(seqs.into_iter().filter_map(move |seq| rows.get(&seq))),
            None => Box::new(rows.values()),
        }
    }

    /// The rows of `table` that may match `filter` (a superset, by
    /// sequence) from the indexes: `eq` with a text literal on an indexed
    /// column, through `and` (either side) and `or` (both sides). `None`
    /// when the filter has to be answered by a scan.
    fn narrowed(&self, table: Table, filter: &Filter) -> Option<BTreeSet<u64>> {
        match filter {
            Filter::Compare(column, Op::Eq, Literal::Text(text)) => {
                self.indexes[table.index()].candidates(column, text)
            }
            Filter::And(a, b) => index::both(self.narrowed(table, a), self.narrowed(table, b)),
            Filter::Or(a, b) => index::either(self.narrowed(table, a), self.narrowed(table, b)),
            _ => None,
        }
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
                let wanted: Vec<(&str, &str)> = pairs
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                Ok(self.lookup_all(table, &wanted).find(|r| {
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
        let narrowed = filter.and_then(|f| self.narrowed(table, f));
        let mut rows: Vec<&DataverseRecord> = self
            .pool(table, narrowed)
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
        self.put_row(
            table,
            seq,
            DataverseRecord {
                id: id.clone(),
                table: table.logical_name().to_owned(),
                fields,
            },
        );
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
        self.set_fields(table, seq, fields);
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
        if let Some(row) = self.take_row(t, seq) {
            journal.undo.push(Undo::Deleted(seq, Box::new(row)));
        }
        Ok(())
    }

    /// Undoes a journal's changes, newest first.
    pub fn rollback(&mut self, journal: Journal) {
        for step in journal.undo.into_iter().rev() {
            match step {
                Undo::Created(id) => {
                    if let Some((t, seq)) = self.ids.get(&id).copied() {
                        self.take_row(t, seq);
                    }
                }
                Undo::Updated(before) => {
                    if let Some((t, seq)) = self.ids.get(&before.id).copied() {
                        self.put_row(t, seq, *before);
                    }
                }
                Undo::Deleted(seq, row) => {
                    if let Some(table) = Table::parse(&row.table) {
                        self.put_row(table, seq, *row);
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
            && self.lookup(table, EMAIL, email).any(|r| {
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
            let wanted: Vec<(&str, &str)> = key
                .columns
                .iter()
                .map(String::as_str)
                .zip(values.iter().copied())
                .collect();
            let taken =
                self.lookup_all(table, &wanted).any(|r| {
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

#[cfg(test)]
impl DataverseState {
    /// Panics unless every index is the one the rows make now.
    pub(crate) fn check_indexes(&self) {
        for table in Table::ALL {
            let index = &self.indexes[table.index()];
            let columns: Vec<&str> = index.watched().collect();
            let mut fresh = FieldIndex::new(&columns);
            for (seq, row) in &self.rows[table.index()] {
                fresh.add(seq, &row.fields);
            }
            assert_eq!(index, &fresh, "the {} index is stale", table.logical_name());
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
    use crate::LEADGATE_KEY_COLUMN;
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

    fn create(s: &mut DataverseState, table: Table, body: &str) -> Result<String, DvError> {
        let mut journal = Journal::default();
        let body = changes(s, table, body)?;
        s.create(table, &body, None, WriteOptions::default(), &mut journal)
    }

    fn key(value: &str) -> Key {
        Key::Alternate(vec![(LEADGATE_KEY_COLUMN.into(), value.into())])
    }

    fn found(s: &DataverseState, key: &Key) -> Option<String> {
        s.find(Table::Lead, key).unwrap().map(|r| r.id.clone())
    }

    fn filtered(s: &DataverseState, filter: &str) -> Vec<String> {
        let filter = super::super::odata::filter(&s.schema, Table::Lead, Some(filter)).unwrap();
        s.query(Table::Lead, filter.as_ref(), &[])
            .iter()
            .map(|r| r.id.clone())
            .collect()
    }

    #[test]
    fn indexes_follow_updates_deletes_rollbacks_definitions_and_clears() {
        let mut s = state();
        let detect = WriteOptions {
            detect_duplicates: true,
        };
        let a = create(
            &mut s,
            Table::Lead,
            r#"{"lastname":"A","emailaddress1":"a@x.io","new_leadgateid":"k1"}"#,
        )
        .unwrap();
        s.check_indexes();

        // A changed email moves: duplicate detection and $filter find the
        // new one, the old one is free.
        let mut journal = Journal::default();
        let patch = changes(&s, Table::Lead, r#"{"emailaddress1":" B@x.io "}"#).unwrap();
        s.update(Table::Lead, &a, &patch, detect, &mut journal)
            .unwrap();
        s.check_indexes();
        let dup = changes(
            &s,
            Table::Lead,
            r#"{"lastname":"B","emailaddress1":"b@X.io"}"#,
        )
        .unwrap();
        let err = s
            .create(Table::Lead, &dup, None, detect, &mut journal)
            .unwrap_err();
        assert_eq!(err.code, "0x80040333");
        assert_eq!(filtered(&s, "emailaddress1 eq ' b@x.io '"), vec![a.clone()]);
        assert_eq!(
            filtered(&s, "emailaddress1 eq 'a@x.io'"),
            Vec::<String>::new()
        );
        let free = changes(
            &s,
            Table::Lead,
            r#"{"lastname":"F","emailaddress1":"A@x.io"}"#,
        )
        .unwrap();
        let fresh = s
            .create(Table::Lead, &free, None, detect, &mut journal)
            .unwrap();
        assert_eq!(
            filtered(&s, "emailaddress1 eq 'a@x.io'"),
            vec![fresh.clone()]
        );

        // A changed key value moves too.
        let patch = changes(&s, Table::Lead, r#"{"new_leadgateid":"k2"}"#).unwrap();
        s.update(
            Table::Lead,
            &a,
            &patch,
            WriteOptions::default(),
            &mut journal,
        )
        .unwrap();
        s.check_indexes();
        assert_eq!(found(&s, &key("k1")), None);
        assert_eq!(found(&s, &key("K2")), Some(a.clone()));
        let taken = changes(&s, Table::Lead, r#"{"lastname":"T","new_leadgateid":"k2"}"#).unwrap();
        let err = s
            .create(
                Table::Lead,
                &taken,
                None,
                WriteOptions::default(),
                &mut journal,
            )
            .unwrap_err();
        assert_eq!(err.code, "0x80060892");

        // Deleted, then an upsert by the same key creates a new row.
        s.delete(Table::Lead, &a, &mut journal).unwrap();
        s.check_indexes();
        assert_eq!(found(&s, &key("k2")), None);
        let body = changes(&s, Table::Lead, r#"{"lastname":"A2"}"#).unwrap();
        let (again, created) = s
            .upsert(
                Table::Lead,
                &key("k2"),
                &body,
                &Condition::None,
                WriteOptions::default(),
                &mut journal,
            )
            .unwrap();
        assert!(created && again != a);
        assert_eq!(filtered(&s, "new_leadgateid eq 'k2'"), vec![again.clone()]);

        // Rolled back: the create, the updates, the delete and the upsert
        // are undone, and so are their index entries.
        s.rollback(journal);
        s.check_indexes();
        assert_eq!(found(&s, &key("k1")), Some(a.clone()));
        assert_eq!(found(&s, &key("k2")), None);
        assert_eq!(filtered(&s, "emailaddress1 eq 'a@x.io'"), vec![a.clone()]);
        assert_eq!(
            filtered(&s, "emailaddress1 eq 'b@x.io'"),
            Vec::<String>::new()
        );

        // A key defined later indexes the values rows hold.
        let patch = changes(&s, Table::Lead, r#"{"leadsourcecode":3}"#).unwrap();
        let mut journal = Journal::default();
        s.update(
            Table::Lead,
            &a,
            &patch,
            WriteOptions::default(),
            &mut journal,
        )
        .unwrap();
        assert!(s.define_key(Table::Lead, &["new_code", "leadsourcecode"]));
        s.check_indexes();
        let patch = changes(&s, Table::Lead, r#"{"new_code":"C-1"}"#).unwrap();
        s.update(
            Table::Lead,
            &a,
            &patch,
            WriteOptions::default(),
            &mut journal,
        )
        .unwrap();
        s.check_indexes();
        assert_eq!(filtered(&s, "new_code eq 'c-1'"), vec![a.clone()]);
        assert_eq!(filtered(&s, "leadsourcecode eq '3'"), vec![a.clone()]);

        // Cleared: nothing is found.
        s.clear();
        s.check_indexes();
        assert_eq!(found(&s, &key("k1")), None);
        assert_eq!(
            filtered(&s, "emailaddress1 eq 'a@x.io'"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn filters_through_the_indexes_answer_as_a_scan() {
        let mut s = state();
        assert!(s.define_key(Table::Lead, &["leadsourcecode"]));
        for (i, (email, key)) in [
            ("jane@x.io", "k1"),
            (" JANE@x.io", "k2"),
            ("\u{212A}ate@x.io", "k3"), // a Kelvin sign: lowercase "kate@x.io"
            ("kate@x.io", "k4"),
            ("bob@x.io", "k5"),
        ]
        .into_iter()
        .enumerate()
        {
            let body = format!(
                r#"{{"lastname":"L{i}","emailaddress1":"{email}","new_leadgateid":"{key}","leadsourcecode":{}}}"#,
                i % 2 + 1
            );
            create(&mut s, Table::Lead, &body).unwrap();
        }
        create(&mut s, Table::Lead, r#"{"lastname":"none"}"#).unwrap();
        s.check_indexes();
        for filter in [
            "emailaddress1 eq 'jane@x.io'",
            "emailaddress1 eq ' jane@x.io'",
            "emailaddress1 eq 'KATE@x.io'",
            "emailaddress1 ne 'kate@x.io'",
            "emailaddress1 eq null",
            "new_leadgateid eq 'k1' or new_leadgateid eq 'K3' or new_leadgateid eq 'k9'",
            "new_leadgateid eq 'k1' or lastname eq 'L4'",
            "emailaddress1 eq 'bob@x.io' and lastname eq 'L4'",
            "lastname eq 'L0' and (new_leadgateid eq 'k1' or new_leadgateid eq 'k2')",
            "not (new_leadgateid eq 'k1')",
            "contains(emailaddress1,'jane')",
            "leadsourcecode eq '2'",
            "leadsourcecode eq 2",
        ] {
            let parsed = super::super::odata::filter(&s.schema, Table::Lead, Some(filter))
                .unwrap()
                .unwrap();
            let scan: Vec<String> = s
                .rows(Table::Lead)
                .filter(|r| parsed.matches(&|c: &str| r.fields.get(c).cloned()))
                .map(|r| r.id.clone())
                .collect();
            assert_eq!(filtered(&s, filter), scan, "{filter}");
        }
        assert_eq!(filtered(&s, "emailaddress1 eq 'kate@x.io'").len(), 2);
        assert_eq!(filtered(&s, "leadsourcecode eq '2'").len(), 2);
        let narrows = |filter: &str| {
            let parsed = super::super::odata::filter(&s.schema, Table::Lead, Some(filter))
                .unwrap()
                .unwrap();
            s.narrowed(Table::Lead, &parsed).is_some()
        };
        assert!(narrows("new_leadgateid eq 'k1' or new_leadgateid eq 'k2'"));
        assert!(narrows("lastname eq 'L0' and emailaddress1 eq 'a'"));
        assert!(!narrows("new_leadgateid eq 'k1' or lastname eq 'L4'"));
        assert!(!narrows("lastname eq 'L0'"));
    }

    #[test]
    fn twenty_thousand_upserts_each_find_their_one_row() {
        const N: usize = 20_000;
        let mut s = state();
        for round in 0..2 {
            for i in 0..N {
                let body = changes(
                    &s,
                    Table::Lead,
                    &format!(r#"{{"lastname":"L{i}","emailaddress1":"lead{i}@example.com"}}"#),
                )
                .unwrap();
                let mut journal = Journal::default();
                let (_, created) = s
                    .upsert(
                        Table::Lead,
                        &key(&format!("LG-{i}")),
                        &body,
                        &Condition::None,
                        WriteOptions {
                            detect_duplicates: true,
                        },
                        &mut journal,
                    )
                    .unwrap();
                assert_eq!(created, round == 0, "round {round}: LG-{i}");
            }
        }
        assert_eq!(s.rows(Table::Lead).count(), N);
        s.check_indexes();
        for i in (0..N).step_by(7) {
            assert!(found(&s, &key(&format!("lg-{i}"))).is_some(), "LG-{i}");
            assert_eq!(
                filtered(&s, &format!("new_leadgateid eq 'LG-{i}'")).len(),
                1
            );
        }
    }
}
