//! Replay: dead letters back into the queue.
//!
//! A replay is idempotent: only a job that is still a dead letter goes back
//! to the queue, with fresh attempts, so replaying twice (or replaying
//! while another operator does) makes one delivery. The job keeps its
//! idempotency key, so the CRM upserts the same record. By default it is
//! delivered with the payload and mapping version it was made with; with
//! [`MappingChoice::Current`] it is mapped again from the person's current
//! golden record with the destination's current mapping. Either way it is
//! delivered by the destination's current adapter, and the audit trail
//! names both.

use serde::Deserialize;

use crate::pipeline::mapping::Renderer;
use crate::pipeline::route::Route;
use crate::store::{DlqOutcome, DlqStatus, JobPayload, Replay, Store, StoreError, load_person};

/// Which payload a replayed job is delivered with.
#[derive(Deserialize, Default, Clone, Copy, Debug, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MappingChoice {
    /// The payload the job was made with.
    #[default]
    Original,
    /// Mapped again from the person's golden record, current mapping.
    Current,
}

/// Puts the dead letters `ids` back in the queue. `adapter_of` names the
/// adapter version that will deliver a destination's jobs (None: the
/// destination is not loaded, and its jobs stay dead letters).
pub async fn replay(
    store: &dyn Store,
    renderer: &dyn Renderer,
    adapter_of: impl Fn(&str) -> Option<String>,
    ids: Vec<String>,
    mapping: MappingChoice,
) -> Result<Vec<DlqOutcome>, StoreError> {
    let mut replays = Vec::with_capacity(ids.len());
    let mut refused = Vec::new();
    for id in ids {
        match prepare(store, renderer, &adapter_of, id, mapping).await? {
            Ok(r) => replays.push(r),
            Err(outcome) => refused.push(outcome),
        }
    }
    let mut results = store.replay(&replays, crate::now_ms()).await?;
    results.extend(refused);
    Ok(results)
}

/// The replay of one job, or why it cannot be replayed here.
async fn prepare(
    store: &dyn Store,
    renderer: &dyn Renderer,
    adapter_of: &impl Fn(&str) -> Option<String>,
    id: String,
    mapping: MappingChoice,
) -> Result<Result<Replay, DlqOutcome>, StoreError> {
    let refuse = |id: String, status| {
        Ok(Err(DlqOutcome {
            id,
            status,
            mapping_version: None,
        }))
    };
    let Some(detail) = store.job(&id).await? else {
        return refuse(id, DlqStatus::NotFound);
    };
    let destination = &detail.job.destination;
    let Some(adapter) = adapter_of(destination) else {
        return refuse(id, DlqStatus::DestinationUnavailable);
    };
    let remapped = match mapping {
        MappingChoice::Original => None,
        MappingChoice::Current => {
            let Some(person) = load_person(store, &detail.person_id).await? else {
                return refuse(id, DlqStatus::NotFound);
            };
            let route = Route {
                destination: destination.clone(),
                priority: detail.job.priority,
                sla_deadline_ms: detail.job.sla_deadline_ms,
            };
            match renderer.render(&person, route) {
                Some(m) => match m.payload {
                    Ok(properties) => Some((JobPayload::V1 { properties }, m.mapping_version)),
                    Err(_) => return refuse(id, DlqStatus::Unmappable),
                },
                None => return refuse(id, DlqStatus::DestinationUnavailable),
            }
        }
    };
    Ok(Ok(Replay {
        id,
        remapped,
        adapter,
    }))
}
