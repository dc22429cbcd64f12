//! A person as stored: its golden record, or (before any merge changed
//! it) the record its first lead makes.

use super::{Store, StoreError, StoredPerson};
use crate::pipeline::merge::{LeadMeta, Person};

/// A person's golden record, built from its first lead when no merge has
/// changed it yet.
pub async fn load_person(store: &dyn Store, id: &str) -> Result<Option<Person>, StoreError> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("person {id}: {e}"));
    Ok(match store.person(id).await? {
        None => None,
        Some(StoredPerson::Merged(json)) => Some(serde_json::from_str(&json).map_err(corrupt)?),
        Some(StoredPerson::FirstLead {
            source,
            received_at_ms,
            normalized,
        }) => Some(Person::first(
            id,
            serde_json::from_str(&normalized).map_err(corrupt)?,
            &LeadMeta {
                lead_id: id,
                source: &source,
                at_ms: received_at_ms,
            },
        )),
    })
}
