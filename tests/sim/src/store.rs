//! The in-memory contact store: records by numeric id, a lowercase email index,
//! and the write planner that checks a batch for email conflicts before
//! anything is written.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::errors::InputError;
use crate::props::Props;

/// First id handed out; HubSpot contact ids are large numbers.
pub const FIRST_ID: u64 = 51_000_000_001;
/// The property HubSpot keeps a contact's secondary emails in.
pub const ADDITIONAL_EMAILS: &str = "hs_additional_emails";

/// A stored contact, as [`crate::SimHandle::contacts`] returns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    /// Numeric id as a string, as HubSpot sends it.
    pub id: String,
    /// Every property set on the record, including `createdate`,
    /// `lastmodifieddate` and `hs_object_id`.
    pub properties: BTreeMap<String, String>,
    #[serde(with = "iso")]
    pub created_at: OffsetDateTime,
    #[serde(with = "iso")]
    pub updated_at: OffsetDateTime,
}

impl Contact {
    /// The email property, if set.
    pub fn email(&self) -> Option<&str> {
        self.properties.get("email").map(String::as_str)
    }

    /// The secondary emails (`hs_additional_emails`, `;`-separated).
    pub fn additional_emails(&self) -> impl Iterator<Item = &str> {
        self.properties
            .get(ADDITIONAL_EMAILS)
            .map(String::as_str)
            .unwrap_or_default()
            .split(';')
            .filter(|e| !e.is_empty())
    }
}

/// Formats a time as HubSpot does: `2024-01-01T00:00:00.000Z`.
pub(crate) fn format_iso(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Current time truncated to milliseconds (HubSpot's precision).
pub(crate) fn now_millis() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    let nanos = now.nanosecond();
    now.replace_nanosecond(nanos - nanos % 1_000_000)
        .unwrap_or(now)
}

/// Serde for timestamps in HubSpot's ISO-8601 form.
pub(crate) mod iso {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_iso(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = String::deserialize(d)?;
        OffsetDateTime::parse(&text, &Rfc3339).map_err(serde::de::Error::custom)
    }
}

/// All contacts of the simulated portal.
#[derive(Debug)]
pub(crate) struct Store {
    records: HashMap<u64, Contact>,
    /// Lowercased email → id.
    by_email: HashMap<String, u64>,
    next_id: u64,
}

impl Default for Store {
    fn default() -> Self {
        Store {
            records: HashMap::new(),
            by_email: HashMap::new(),
            next_id: FIRST_ID,
        }
    }
}

impl Store {
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Drops every record; ids keep increasing so none is ever reused.
    pub(crate) fn clear(&mut self) {
        self.records.clear();
        self.by_email.clear();
    }

    pub(crate) fn get(&self, id: u64) -> Option<&Contact> {
        self.records.get(&id)
    }

    pub(crate) fn id_by_email(&self, email: &str) -> Option<u64> {
        if email.bytes().any(|b| b.is_ascii_uppercase()) {
            self.by_email.get(&email.to_ascii_lowercase()).copied()
        } else {
            self.by_email.get(email).copied()
        }
    }

    /// Finds a record by `id` interpreted per `idProperty` (`None` means the
    /// object id). Non-numeric object ids simply are not found.
    pub(crate) fn resolve(&self, id: &str, by: IdProperty) -> Option<u64> {
        match by {
            IdProperty::ObjectId => id
                .parse::<u64>()
                .ok()
                .filter(|n| self.records.contains_key(n)),
            IdProperty::Email => self.id_by_email(id),
        }
    }

    /// Records sorted by id.
    pub(crate) fn sorted(&self) -> Vec<&Contact> {
        let mut ids: Vec<u64> = self.records.keys().copied().collect();
        ids.sort_unstable();
        ids.iter().filter_map(|id| self.records.get(id)).collect()
    }

    /// Records with an id greater than `after`, in id order, at most `limit`;
    /// plus whether more follow.
    pub(crate) fn page(&self, after: u64, limit: usize) -> (Vec<&Contact>, bool) {
        let mut ids: Vec<u64> = self
            .records
            .keys()
            .copied()
            .filter(|id| *id > after)
            .collect();
        ids.sort_unstable();
        let more = ids.len() > limit;
        ids.truncate(limit);
        (
            ids.iter().filter_map(|id| self.records.get(id)).collect(),
            more,
        )
    }

    /// Counts records whose email equals `email` ignoring case, by scanning
    /// every record (not the index), so duplicates would show.
    pub(crate) fn count_by_email(&self, email: &str) -> usize {
        self.records
            .values()
            .filter(|c| c.email().is_some_and(|e| e.eq_ignore_ascii_case(email)))
            .count()
    }

    pub(crate) fn find_by_email(&self, email: &str) -> Vec<Contact> {
        let mut found: Vec<Contact> = self
            .records
            .values()
            .filter(|c| c.email().is_some_and(|e| e.eq_ignore_ascii_case(email)))
            .cloned()
            .collect();
        found.sort_by_key(|c| c.id.parse::<u64>().unwrap_or(0));
        found
    }

    pub(crate) fn remove(&mut self, id: u64) -> Option<Contact> {
        let removed = self.records.remove(&id)?;
        for email in removed
            .email()
            .into_iter()
            .chain(removed.additional_emails())
        {
            if self.by_email.get(email) == Some(&id) {
                self.by_email.remove(email);
            }
        }
        Some(removed)
    }

    /// Gives contact `id` a secondary email (`hs_additional_emails`), as a
    /// merge in HubSpot does with the merged contact's address: lookups
    /// by email (upserts, batch reads, the uniqueness check) find the
    /// contact by it from then on; its primary email stays.
    pub(crate) fn add_additional_email(&mut self, id: u64, email: &str) -> Result<(), String> {
        let email = email.trim().to_ascii_lowercase();
        if let Some(owner) = self.id_by_email(&email) {
            return Err(format!("{email} belongs to contact {owner}"));
        }
        let contact = self
            .records
            .get_mut(&id)
            .ok_or_else(|| format!("no contact {id}"))?;
        let mut all: Vec<&str> = contact.additional_emails().collect();
        all.push(&email);
        let joined = all.join(";");
        contact
            .properties
            .insert(ADDITIONAL_EMAILS.to_owned(), joined);
        self.by_email.insert(email, id);
        Ok(())
    }

    /// Starts planning a set of writes against the current state.
    pub(crate) fn planner(&self) -> Planner<'_> {
        Planner {
            store: self,
            claimed: HashMap::new(),
            next_new: self.next_id,
        }
    }

    /// Performs a planned write (or, when `dry` is set, only computes the
    /// record it would produce: a "silently failed" write). Returns the
    /// resulting record.
    pub(crate) fn apply(&mut self, write: PlannedWrite, stamp: &Stamp, dry: bool) -> Contact {
        self.next_id = self.next_id.max(write.id + 1);
        let touches_email = write.props.contains_key("email");
        if !write.is_new
            && !dry
            && let Some(stored) = self.records.get_mut(&write.id)
        {
            let old_email = touches_email
                .then(|| stored.email().map(str::to_owned))
                .flatten();
            set_props(stored, write.props, stamp);
            if touches_email {
                let new_email = stored.email().map(str::to_owned);
                reindex(&mut self.by_email, write.id, old_email, new_email);
            }
            return stored.clone();
        }
        let mut contact = match self.records.get(&write.id) {
            Some(stored) if !write.is_new => stored.clone(),
            _ => {
                let mut properties = BTreeMap::new();
                properties.insert("createdate".to_owned(), stamp.iso.clone());
                properties.insert("hs_object_id".to_owned(), write.id.to_string());
                Contact {
                    id: write.id.to_string(),
                    properties,
                    created_at: stamp.now,
                    updated_at: stamp.now,
                }
            }
        };
        set_props(&mut contact, write.props, stamp);
        if !dry {
            let email = contact.email().map(str::to_owned);
            reindex(&mut self.by_email, write.id, None, email);
            self.records.insert(write.id, contact.clone());
        }
        contact
    }
}

/// The time of a write, with its ISO form computed once per request.
#[derive(Clone, Debug)]
pub(crate) struct Stamp {
    pub now: OffsetDateTime,
    pub iso: String,
}

impl Stamp {
    pub(crate) fn now() -> Stamp {
        let now = now_millis();
        Stamp {
            now,
            iso: format_iso(now),
        }
    }
}

/// Sets (or, for null and "", clears) properties; emails are stored lowercase.
fn set_props(contact: &mut Contact, props: Props, stamp: &Stamp) {
    for (name, value) in props {
        match value {
            Some(value) if !value.is_empty() => {
                let value = if name == "email" {
                    value.to_ascii_lowercase()
                } else {
                    value
                };
                contact.properties.insert(name, value);
            }
            _ => {
                contact.properties.remove(&name);
            }
        }
    }
    contact
        .properties
        .insert("lastmodifieddate".to_owned(), stamp.iso.clone());
    contact.updated_at = stamp.now;
}

fn reindex(index: &mut HashMap<String, u64>, id: u64, old: Option<String>, new: Option<String>) {
    if old == new {
        return;
    }
    if let Some(old) = old
        && index.get(&old) == Some(&id)
    {
        index.remove(&old);
    }
    if let Some(new) = new {
        index.insert(new, id);
    }
}

/// How an input names the record it refers to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IdProperty {
    ObjectId,
    Email,
}

impl IdProperty {
    /// Parses `idProperty`; `None` (absent) means the object id.
    pub(crate) fn parse(value: Option<&str>) -> Result<IdProperty, String> {
        match value {
            None | Some("hs_object_id") => Ok(IdProperty::ObjectId),
            Some("email") => Ok(IdProperty::Email),
            Some(other) => Err(format!(
                "Property \"{other}\" is not a unique identifier property for CONTACT. Use one of: [email, hs_object_id]"
            )),
        }
    }

    /// The form of an id used to spot duplicates within one batch.
    pub(crate) fn normalize(self, id: &str) -> String {
        match self {
            IdProperty::ObjectId => id.trim().to_owned(),
            IdProperty::Email => id.to_ascii_lowercase(),
        }
    }
}

/// A write that passed every check, ready to [`Store::apply`].
#[derive(Debug)]
pub(crate) struct PlannedWrite {
    pub id: u64,
    pub is_new: bool,
    pub props: Props,
}

/// Checks the writes of one request in order, so that two inputs of the same
/// batch cannot claim one email, and hands out the ids creations will get.
pub(crate) struct Planner<'a> {
    store: &'a Store,
    /// Lowercased emails claimed by earlier inputs of this request.
    claimed: HashMap<String, u64>,
    next_new: u64,
}

impl Planner<'_> {
    /// Plans a creation (`target == None`) or an update of an existing id.
    pub(crate) fn plan(
        &mut self,
        target: Option<u64>,
        props: Props,
    ) -> Result<PlannedWrite, InputError> {
        let email = props
            .get("email")
            .and_then(|v| v.as_deref())
            .filter(|e| !e.is_empty())
            .map(str::to_ascii_lowercase);
        if let Some(email) = &email {
            let owner = self
                .claimed
                .get(email)
                .copied()
                .or_else(|| self.store.id_by_email(email));
            if let Some(owner) = owner
                && Some(owner) != target
            {
                return Err(InputError::Conflict { existing_id: owner });
            }
        }
        let (id, is_new) = match target {
            Some(id) => (id, false),
            None => {
                let id = self.next_new;
                self.next_new += 1;
                (id, true)
            }
        };
        if let Some(email) = email {
            self.claimed.insert(email, id);
        }
        Ok(PlannedWrite { id, is_new, props })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props(pairs: &[(&str, &str)]) -> Props {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Some((*v).to_owned())))
            .collect()
    }

    #[test]
    fn iso_has_millis_and_z() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_704_067_200_123_456_789).unwrap();
        assert_eq!(format_iso(t), "2024-01-01T00:00:00.123Z");
    }

    #[test]
    fn create_then_conflict_then_update() {
        let mut store = Store::default();
        let stamp = Stamp::now();
        let mut planner = store.planner();
        let write = planner
            .plan(None, props(&[("email", "Jane@X.com")]))
            .unwrap();
        assert_eq!(write.id, FIRST_ID);
        let created = store.apply(write, &stamp, false);
        assert_eq!(created.email(), Some("jane@x.com"));
        assert_eq!(created.properties["hs_object_id"], FIRST_ID.to_string());

        let mut planner = store.planner();
        let err = planner
            .plan(None, props(&[("email", "JANE@x.com")]))
            .unwrap_err();
        assert_eq!(
            err,
            InputError::Conflict {
                existing_id: FIRST_ID
            }
        );

        let target = store.resolve("jane@x.com", IdProperty::Email);
        assert_eq!(target, Some(FIRST_ID));
        let write = planner
            .plan(target, props(&[("firstname", "Jane")]))
            .unwrap();
        let updated = store.apply(write, &stamp, false);
        assert_eq!(updated.properties["firstname"], "Jane");
        assert_eq!(store.len(), 1);
        assert_eq!(store.count_by_email("JANE@X.COM"), 1);
    }

    #[test]
    fn same_email_twice_in_one_request_conflicts_with_the_first() {
        let store = Store::default();
        let mut planner = store.planner();
        let first = planner.plan(None, props(&[("email", "a@x.io")])).unwrap();
        let err = planner
            .plan(None, props(&[("email", "A@x.io")]))
            .unwrap_err();
        assert_eq!(
            err,
            InputError::Conflict {
                existing_id: first.id
            }
        );
    }

    #[test]
    fn dry_apply_stores_nothing_but_ids_advance() {
        let mut store = Store::default();
        let mut planner = store.planner();
        let write = planner.plan(None, props(&[("email", "a@x.io")])).unwrap();
        let contact = store.apply(write, &Stamp::now(), true);
        assert_eq!(contact.id, FIRST_ID.to_string());
        assert_eq!(store.len(), 0);
        let mut planner = store.planner();
        let write = planner.plan(None, props(&[("email", "a@x.io")])).unwrap();
        assert_eq!(write.id, FIRST_ID + 1);
    }

    #[test]
    fn empty_value_clears_a_property_and_email_index() {
        let mut store = Store::default();
        let mut planner = store.planner();
        let write = planner
            .plan(None, props(&[("email", "a@x.io"), ("city", "Bonn")]))
            .unwrap();
        store.apply(write, &Stamp::now(), false);
        let mut planner = store.planner();
        let write = planner
            .plan(Some(FIRST_ID), props(&[("email", ""), ("city", "")]))
            .unwrap();
        let contact = store.apply(write, &Stamp::now(), false);
        assert!(!contact.properties.contains_key("city"));
        assert_eq!(store.id_by_email("a@x.io"), None);
    }
}
