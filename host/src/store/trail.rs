//! The ingest part of a lead's audit trail. Receiving, normalizing, the
//! dedupe decision and routing all happen in the one transaction that
//! stores the lead, so their record is the lead and job rows themselves;
//! the trail is derived from them rather than written twice.

use serde_json::json;

use super::{Event, EventKind, LeadView, Stage};

pub(crate) fn ingest_trail(view: &LeadView) -> Vec<Event> {
    let event = |stage, event, job_id: Option<&str>, at_ms: i64, detail| Event {
        lead_id: view.id.clone(),
        job_id: job_id.map(str::to_string),
        at_ms,
        stage,
        event,
        detail,
    };
    let at = view.received_at_ms;
    let mut trail = vec![
        event(
            Stage::Ingest,
            EventKind::Received,
            None,
            at,
            json!({ "source": view.source }),
        ),
        event(
            Stage::Normalize,
            EventKind::Normalized,
            None,
            at,
            json!({
                "rules_version": view.rules_version,
                "flags": view.normalized.get("flags").cloned().unwrap_or_else(|| json!([])),
            }),
        ),
        event(
            Stage::Dedupe,
            if view.status == super::LeadState::Duplicate {
                EventKind::Duplicate
            } else {
                EventKind::NewPerson
            },
            None,
            at,
            json!({
                "fingerprint_version": view.fingerprint_version,
                "decision": view.dedupe,
            }),
        ),
    ];
    if let Some(changes) = &view.merge {
        trail.push(event(
            Stage::Merge,
            EventKind::Merged,
            None,
            at,
            json!({ "person_id": view.person_id, "changes": changes }),
        ));
    }
    for job in &view.deliveries {
        let unmappable = job.state == super::JobState::Dead && job.attempts == 0;
        trail.push(event(
            Stage::Route,
            if unmappable {
                EventKind::Unmappable
            } else {
                EventKind::Queued
            },
            Some(&job.id),
            job.created_at_ms,
            json!({
                "destination": job.destination,
                "priority": job.priority,
                "sla_deadline_ms": job.sla_deadline_ms,
                "mapping_version": job.mapping_version,
                "error": if unmappable { job.last_error.clone() } else { None },
                "held": job.held,
            }),
        ));
    }
    trail
}
