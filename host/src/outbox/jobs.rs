//! Jobs: the rows a lead becomes (the lead itself, one job per lead ×
//! destination, the person's new golden record), and the idempotency keys
//! that make a job, and a CRM record, exactly once per person.

use super::PreparedLead;
use crate::pipeline::dedupe::{Decision, FINGERPRINT_VERSION};
use crate::pipeline::mapping::MappedRoute;
use crate::pipeline::merge::{Change, Person};
use crate::pipeline::normalize::RULES_VERSION;
use crate::store::{JobPayload, JobState, LeadState, NewJob, NewLead};

/// What merging a duplicate produced: the changes, the person's new
/// record and the updates for the destinations whose payload changed.
pub(super) struct Merged {
    pub changes: Vec<Change>,
    pub person: Person,
    pub updates: Vec<MappedRoute>,
    /// Chains whose jobs held for missing consent go now.
    pub release: Vec<String>,
}

/// The rows of one decided lead: a new person's first jobs, or a merged
/// person's updates.
pub(super) fn build_row(
    lead: PreparedLead,
    decision: Decision,
    new_fingerprints: Vec<String>,
    merged: Option<Merged>,
) -> NewLead {
    let (state, person_id) = match &decision {
        // A possible duplicate is a new person, flagged for review.
        Decision::New | Decision::Possible { .. } => (LeadState::Accepted, lead.id.clone()),
        Decision::Duplicate { person_id, .. } => (LeadState::Duplicate, person_id.clone()),
    };
    let (routes, revision, merge, person, release) = match merged {
        _ if state == LeadState::Accepted => (lead.routes, 0, None, None, Vec::new()),
        None => (Vec::new(), 0, None, None, Vec::new()),
        Some(m) => (
            m.updates,
            m.person.revision,
            Some(m.changes),
            Some(m.person),
            m.release,
        ),
    };
    let jobs = routes
        .into_iter()
        .map(|mapped| new_job(&lead.id, &person_id, revision, mapped))
        .collect();
    NewLead {
        id: lead.id,
        source: lead.source,
        received_at_ms: lead.received_at_ms,
        state,
        person_id,
        decision,
        rules_version: RULES_VERSION,
        fp_version: FINGERPRINT_VERSION,
        forms: lead.forms,
        new_fingerprints,
        jobs,
        merge,
        person,
        release,
        stop_pending: false,
    }
}

/// One destination's job for a lead: pending, or dead at once when the
/// lead cannot be mapped for that CRM.
fn new_job(lead_id: &str, person_id: &str, revision: u32, mapped: MappedRoute) -> NewJob {
    let (state, payload, last_error, held) = match mapped.payload {
        Ok(properties) => (
            JobState::Pending,
            JobPayload::V1 { properties },
            None,
            mapped.hold,
        ),
        Err(e) => (
            JobState::Dead,
            JobPayload::V1 {
                properties: Vec::new(),
            },
            Some(format!("mapping: {e}")),
            None,
        ),
    };
    let destination = mapped.route.destination;
    NewJob {
        idempotency_key: revision_key(person_id, &destination, revision),
        chain: chain(person_id, &destination),
        id: format!("{lead_id}:{destination}"),
        destination,
        priority: mapped.route.priority,
        sla_deadline_ms: mapped.route.sla_deadline_ms,
        payload,
        mapping_version: mapped.mapping_version,
        state,
        last_error,
        held,
    }
}

/// The chain of a person's jobs for one destination: they go out in the
/// order they were accepted.
pub(super) fn chain(person_id: &str, destination: &str) -> String {
    format!("{person_id}/{destination}")
}

/// One key per person × destination: a retry, a replay or a crash can never
/// make a second job, or a second CRM record, for the same person.
pub fn idempotency_key(person_id: &str, destination: &str) -> String {
    format!("{person_id}/{destination}/v1")
}

/// The key of a person's job for one revision of its golden record: the
/// first delivery keeps [`idempotency_key`], each merge that changed the
/// payload gets its own (`…/v1/r2`), so an update is made once.
pub fn revision_key(person_id: &str, destination: &str, revision: u32) -> String {
    let key = idempotency_key(person_id, destination);
    match revision {
        0 => key,
        r => format!("{key}/r{r}"),
    }
}
