//! A person as stored: its golden record, or (before any merge changed
//! it) the record its first lead makes.

use super::{Store, StoreError, StoredPerson};
use crate::pipeline::merge::{LeadMeta, Person};

/// A person's golden record, built from its first lead when no merge has
/// changed it yet.
pub async fn load_person(store: &dyn Store, id: &str) -> Result<Option<Person>, StoreError> {
    store
        .person(id)
        .await?
        .map(|stored| person_from_store(id, stored))
        .transpose()
}

/// The golden record of what the store holds of person `id`.
pub fn person_from_store(id: &str, stored: StoredPerson) -> Result<Person, StoreError> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("person {id}: {e}"));
    Ok(match stored {
        StoredPerson::Merged(json) => serde_json::from_str(&json).map_err(corrupt)?,
        StoredPerson::FirstLead {
            source,
            received_at_ms,
            normalized,
        } => Person::first(
            id,
            serde_json::from_str(&normalized).map_err(corrupt)?,
            &LeadMeta {
                lead_id: id,
                source: &source,
                at_ms: received_at_ms,
            },
        ),
    })
}
