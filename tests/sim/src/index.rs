//! Secondary indexes for the Salesforce, Zoho and Dataverse stores, the
//! way [`crate::store::Store`] keeps HubSpot's emails: for a few chosen
//! fields (emails, External ID / unique / alternate key fields), each
//! value → the records holding it, so upserts, duplicate checks and
//! equality lookups find records without scanning every one.
//!
//! An index only narrows the search. Values are filed under [`fold`],
//! which is coarser than every comparison the stores make (ASCII
//! case-insensitive, trimmed or not, Unicode lowercase), and a caller
//! checks each candidate with the comparison it always used; so answers
//! are exactly those of a scan, and in the same order (candidates come in
//! key order, which is each store's record order).
//!
//! The owner keeps an index current on every change of its records:
//! [`FieldIndex::add`] a record's fields when it is stored,
//! [`FieldIndex::remove`] them (as they were) before it is replaced or
//! dropped, [`FieldIndex::clear`] with the records.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;

use serde_json::Value;

/// The form a text value is filed under: trimmed and lowercased (Unicode).
///
/// Any two texts a store calls equal share a fold, whichever comparison it
/// uses: equal ignoring ASCII case, trimmed or not (the texts differ only
/// in ASCII letters, which neither trimming nor lowercasing treats
/// differently), or equal once lowercased (lowercasing maps no character
/// to or from whitespace, so it commutes with trimming; a Kelvin sign and
/// a `k` share a fold).
pub(crate) fn fold(text: &str) -> String {
    text.trim().to_lowercase()
}

/// Where one field's values are filed.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Postings<K: Ord> {
    /// Folded text → records holding it.
    by_text: HashMap<String, BTreeSet<K>>,
    /// Records holding a value that is not text (a number, an object…):
    /// always candidates, as some comparisons match them by their text.
    other: BTreeSet<K>,
}

impl<K: Ord> Default for Postings<K> {
    fn default() -> Self {
        Postings {
            by_text: HashMap::new(),
            other: BTreeSet::new(),
        }
    }
}

/// For each watched field: its values → the records holding them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct FieldIndex<K: Ord> {
    fields: BTreeMap<String, Postings<K>>,
}

impl<K: Ord + Clone> FieldIndex<K> {
    /// An empty index watching `fields`.
    pub(crate) fn new(fields: &[&str]) -> Self {
        FieldIndex {
            fields: fields
                .iter()
                .map(|f| ((*f).to_owned(), Postings::default()))
                .collect(),
        }
    }

    /// Whether `field` is indexed.
    pub(crate) fn watches(&self, field: &str) -> bool {
        self.fields.contains_key(field)
    }

    /// The fields indexed.
    #[cfg(test)]
    pub(crate) fn watched(&self) -> impl Iterator<Item = &str> {
        self.fields.keys().map(String::as_str)
    }

    /// Starts indexing `field`, filing the values `records` hold now.
    /// Nothing changes when it is indexed already.
    pub(crate) fn watch<'r>(
        &mut self,
        field: &str,
        records: impl IntoIterator<Item = (K, &'r BTreeMap<String, Value>)>,
    ) {
        if self.watches(field) {
            return;
        }
        let mut postings = Postings::default();
        for (key, fields) in records {
            file(&mut postings, key, fields.get(field));
        }
        self.fields.insert(field.to_owned(), postings);
    }

    /// Files a stored record's values.
    pub(crate) fn add(&mut self, key: &K, fields: &BTreeMap<String, Value>) {
        for (name, postings) in &mut self.fields {
            file(postings, key.clone(), fields.get(name));
        }
    }

    /// Unfiles a record's values, as they were when filed.
    pub(crate) fn remove(&mut self, key: &K, fields: &BTreeMap<String, Value>) {
        for (name, postings) in &mut self.fields {
            match fields.get(name) {
                None | Some(Value::Null) => {}
                Some(Value::String(text)) => {
                    let folded = fold(text);
                    if let Some(keys) = postings.by_text.get_mut(&folded) {
                        keys.remove(key);
                        if keys.is_empty() {
                            postings.by_text.remove(&folded);
                        }
                    }
                }
                Some(_) => {
                    postings.other.remove(key);
                }
            }
        }
    }

    /// Replaces a record's filed values: `before` out, `after` in.
    pub(crate) fn replace(
        &mut self,
        key: &K,
        before: &BTreeMap<String, Value>,
        after: &BTreeMap<String, Value>,
    ) {
        self.remove(key, before);
        self.add(key, after);
    }

    /// Drops every filed value; the watched fields stay.
    pub(crate) fn clear(&mut self) {
        for postings in self.fields.values_mut() {
            *postings = Postings::default();
        }
    }

    /// The records that may hold `text` in `field` (every record whose
    /// value folds the same, and those holding a non-text value), in key
    /// order; `None` when `field` is not indexed (scan instead).
    pub(crate) fn candidates(&self, field: &str, text: &str) -> Option<BTreeSet<K>> {
        let postings = self.fields.get(field)?;
        let mut keys = postings.other.clone();
        if let Some(found) = postings.by_text.get(&fold(text)) {
            keys.extend(found.iter().cloned());
        }
        Some(keys)
    }

    /// The records that may hold `value` in `field`: for text as
    /// [`FieldIndex::candidates`], for any other value those holding a
    /// non-text value. `None` when `field` is not indexed or `value` is
    /// null.
    pub(crate) fn candidates_of(&self, field: &str, value: &Value) -> Option<BTreeSet<K>> {
        match value {
            Value::Null => None,
            Value::String(text) => self.candidates(field, text),
            _ => self.fields.get(field).map(|p| p.other.clone()),
        }
    }
}

fn file<K: Ord>(postings: &mut Postings<K>, key: K, value: Option<&Value>) {
    match value {
        None | Some(Value::Null) => {}
        Some(Value::String(text)) => {
            postings.by_text.entry(fold(text)).or_default().insert(key);
        }
        Some(_) => {
            postings.other.insert(key);
        }
    }
}

/// A substring index of one field: every suffix of each value's lowercase
/// form → the records holding it, so "contains" finds its matches by a
/// range of suffixes instead of a scan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Substrings<K: Ord> {
    field: String,
    suffixes: BTreeMap<String, BTreeSet<K>>,
    /// Records holding a value that is not text.
    other: BTreeSet<K>,
}

impl<K: Ord + Clone> Substrings<K> {
    /// The index of `field` over `records`.
    pub(crate) fn build<'r>(
        field: &str,
        records: impl IntoIterator<Item = (K, &'r BTreeMap<String, Value>)>,
    ) -> Self {
        let mut index = Substrings {
            field: field.to_owned(),
            suffixes: BTreeMap::new(),
            other: BTreeSet::new(),
        };
        for (key, fields) in records {
            index.add(&key, fields);
        }
        index
    }

    fn suffixes_of(text: &str) -> impl Iterator<Item = &str> {
        text.char_indices().map(move |(i, _)| &text[i..])
    }

    pub(crate) fn add(&mut self, key: &K, fields: &BTreeMap<String, Value>) {
        match fields.get(&self.field) {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => {
                let lower = text.to_lowercase();
                for suffix in Self::suffixes_of(&lower) {
                    self.suffixes
                        .entry(suffix.to_owned())
                        .or_default()
                        .insert(key.clone());
                }
            }
            Some(_) => {
                self.other.insert(key.clone());
            }
        }
    }

    pub(crate) fn remove(&mut self, key: &K, fields: &BTreeMap<String, Value>) {
        match fields.get(&self.field) {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => {
                let lower = text.to_lowercase();
                for suffix in Self::suffixes_of(&lower) {
                    if let Some(keys) = self.suffixes.get_mut(suffix) {
                        keys.remove(key);
                        if keys.is_empty() {
                            self.suffixes.remove(suffix);
                        }
                    }
                }
            }
            Some(_) => {
                self.other.remove(key);
            }
        }
    }

    /// The records whose lowercase value contains `needle` (lowercase),
    /// and those holding a non-text value, in key order.
    pub(crate) fn containing(&self, needle: &str) -> BTreeSet<K> {
        let mut keys = self.other.clone();
        for (suffix, holders) in self
            .suffixes
            .range::<str, _>((Bound::Included(needle), Bound::Unbounded))
        {
            if !suffix.starts_with(needle) {
                break;
            }
            keys.extend(holders.iter().cloned());
        }
        keys
    }
}

/// Both sides' candidates when both have some, else whichever has.
pub(crate) fn both<K: Ord + Clone>(
    a: Option<BTreeSet<K>>,
    b: Option<BTreeSet<K>>,
) -> Option<BTreeSet<K>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.intersection(&b).cloned().collect()),
        (a, b) => a.or(b),
    }
}

/// Either side's candidates, when both have some (a side that must be
/// scanned makes the whole a scan).
pub(crate) fn either<K: Ord>(
    a: Option<BTreeSet<K>>,
    b: Option<BTreeSet<K>>,
) -> Option<BTreeSet<K>> {
    let (mut a, b) = (a?, b?);
    a.extend(b);
    Some(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value) -> BTreeMap<String, Value> {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    #[test]
    fn folding_is_coarser_than_every_comparison() {
        let pairs = [
            ("Jane@X.io", "jane@x.io"),
            (" jane@x.io ", "JANE@X.IO"),
            ("\u{212A}ate@x.io", "kate@x.io"), // Kelvin sign lowercases to k
            ("ÄB", "äb"),
            ("ΣΑΣ", "σας"),
        ];
        for (a, b) in pairs {
            let equal = a.eq_ignore_ascii_case(b)
                || a.trim().eq_ignore_ascii_case(b.trim())
                || a.to_lowercase() == b.to_lowercase();
            assert!(equal, "{a} ~ {b}");
            assert_eq!(fold(a), fold(b), "{a} ~ {b}");
        }
    }

    #[test]
    fn files_moves_and_unfiles_values() {
        let mut index: FieldIndex<u64> = FieldIndex::new(&["Email"]);
        let one = fields(json!({"Email": "A@x.io", "Name": "A"}));
        let two = fields(json!({"Email": "a@X.io"}));
        index.add(&1, &one);
        index.add(&2, &two);
        assert_eq!(index.candidates("Email", " a@x.io"), Some([1, 2].into()));
        assert_eq!(index.candidates("Name", "A"), None, "not watched");
        let moved = fields(json!({"Email": "b@x.io"}));
        index.replace(&1, &one, &moved);
        assert_eq!(index.candidates("Email", "a@x.io"), Some([2].into()));
        assert_eq!(index.candidates("Email", "B@x.io"), Some([1].into()));
        index.remove(&2, &two);
        assert_eq!(index.candidates("Email", "a@x.io"), Some(BTreeSet::new()));
        let odd = fields(json!({"Email": 7}));
        index.add(&3, &odd);
        assert_eq!(index.candidates("Email", "b@x.io"), Some([1, 3].into()));
        assert_eq!(index.candidates_of("Email", &json!(7)), Some([3].into()));
        index.clear();
        assert_eq!(index.candidates("Email", "b@x.io"), Some(BTreeSet::new()));
        index.watch("Name", [(1, &one)]);
        assert_eq!(index.candidates("Name", "a"), Some([1].into()));
    }

    #[test]
    fn substrings_find_what_contains_finds() {
        let values = [
            "jane@x.io",
            "JANE@x.io.uk",
            "xjane@y.org",
            "bob@x.io",
            "ünï@x.io",
        ];
        let records: Vec<(u64, BTreeMap<String, Value>)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as u64, fields(json!({ "Email": v }))))
            .collect();
        let mut index = Substrings::build("Email", records.iter().map(|(k, f)| (*k, f)));
        for needle in ["jane@x.io", "@x.io", "o", "ünï", "nï@", "zzz", "x.io.uk"] {
            let scan: BTreeSet<u64> = values
                .iter()
                .enumerate()
                .filter(|(_, v)| v.to_lowercase().contains(needle))
                .map(|(i, _)| i as u64)
                .collect();
            assert_eq!(index.containing(needle), scan, "{needle}");
        }
        index.remove(&0, &records[0].1);
        assert_eq!(index.containing("jane@x.io"), [1].into());
        assert_eq!(index.containing("jane@"), [1, 2].into());
    }
}
