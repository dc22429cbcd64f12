//! The ingest part of a lead's audit trail. Receiving, normalizing, the
//! dedupe decision and routing all happen in the one transaction that
//! stores the lead, so their record is the lead and job rows themselves;
//! the trail is derived from them rather than written twice.

use serde_json::json;

use super::{Event, LeadView};

pub(crate) fn ingest_trail(view: &LeadView) -> Vec<Event> {
    let event = |stage: &str, name: &str, job_id: Option<&str>, at_ms: i64, detail| Event {
        lead_id: view.id.clone(),
        job_id: job_id.map(str::to_string),
        at_ms,
        stage: stage.into(),
        event: name.into(),
        detail,
    };
    let at = view.received_at_ms;
    let mut trail = vec![
        event(
            "ingest",
            "received",
            None,
            at,
            json!({ "source": view.source }),
        ),
        event(
            "normalize",
            "normalized",
            None,
            at,
            json!({
                "rules_version": view.rules_version,
                "flags": view.normalized.get("flags").cloned().unwrap_or_else(|| json!([])),
            }),
        ),
        event(
            "dedupe",
            if view.status == super::LeadState::Duplicate {
                "duplicate"
            } else {
                "new_person"
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
            "merge",
            "merged",
            None,
            at,
            json!({ "person_id": view.person_id, "changes": changes }),
        ));
    }
    for job in &view.deliveries {
        let unmappable = job.state == super::JobState::Dead && job.attempts == 0;
        trail.push(event(
            "route",
            if unmappable { "unmappable" } else { "queued" },
            Some(&job.id),
            job.created_at_ms,
            json!({
                "destination": job.destination,
                "priority": job.priority,
                "sla_deadline_ms": job.sla_deadline_ms,
                "mapping_version": job.mapping_version,
                "error": if unmappable { job.last_error.clone() } else { None },
            }),
        ));
    }
    trail
}
