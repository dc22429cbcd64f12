//! New rows as JSON arrays, one per table, for `json_each` inserts. The
//! lead's raw and normalized forms, its dedupe decision, its merge and the
//! person's record are nested as JSON values (SQLite stores each as its
//! JSON text with `->`), not escaped into strings and parsed again.

use serde::Serialize;

use super::{JobPayload, JobState, NewLead, StoredEnum};
use crate::pipeline::dedupe::Decision;
use crate::pipeline::merge::{Change, Person};
use crate::pipeline::normalize::NormalizedLead;

pub(crate) struct RowsJson {
    pub leads: String,
    pub jobs: String,
    /// `[]` when no lead of the group changed a person.
    pub persons: String,
}

#[derive(Serialize)]
struct PersonRowJson<'a> {
    id: &'a str,
    rev: u32,
    rec: &'a Person,
    at: i64,
}

#[derive(Serialize)]
struct LeadRow<'a> {
    id: &'a str,
    src: &'a str,
    at: i64,
    st: &'a str,
    person: &'a str,
    dec: &'a Decision,
    rv: u32,
    fv: u32,
    raw: &'a serde_json::Value,
    norm: &'a NormalizedLead,
    fps: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    merge: Option<&'a Vec<Change>>,
}

#[derive(Serialize)]
struct JobRow<'a> {
    id: &'a str,
    lead: &'a str,
    dest: &'a str,
    key: &'a str,
    st: &'a str,
    prio: i64,
    at: i64,
    payload: &'a JobPayload,
    mv: &'a str,
    sla: i64,
    err: Option<&'a str>,
    fin: Option<i64>,
    chain: &'a str,
    src: &'a str,
}

pub(crate) fn rows_json(leads: &[NewLead]) -> RowsJson {
    let lead_rows: Vec<LeadRow> = leads
        .iter()
        .map(|l| LeadRow {
            id: &l.id,
            src: &l.source,
            at: l.received_at_ms,
            st: l.state.as_str(),
            person: &l.person_id,
            dec: &l.decision,
            rv: l.rules_version,
            fv: l.fp_version,
            raw: &l.raw,
            norm: &l.normalized,
            fps: l.new_fingerprints.join(" "),
            merge: l.merge.as_ref(),
        })
        .collect();
    let job_rows: Vec<JobRow> = leads
        .iter()
        .flat_map(|l| {
            l.jobs.iter().map(move |j| JobRow {
                id: &j.id,
                lead: &l.id,
                dest: &j.destination,
                key: &j.idempotency_key,
                st: j.state.as_str(),
                prio: j.priority.as_i64(),
                at: l.received_at_ms,
                payload: &j.payload,
                mv: &j.mapping_version,
                sla: j.sla_deadline_ms,
                err: j.last_error.as_deref(),
                fin: (j.state == JobState::Dead).then_some(l.received_at_ms),
                chain: &j.chain,
                src: &l.source,
            })
        })
        .collect();
    // One row per person: the group's last revision (an upsert may not
    // touch a row twice in one statement on every database).
    let mut persons: Vec<PersonRowJson> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for l in leads.iter().rev() {
        if let Some(p) = &l.person
            && seen.insert(p.id.as_str())
        {
            persons.push(PersonRowJson {
                id: &p.id,
                rev: p.revision,
                rec: p,
                at: l.received_at_ms,
            });
        }
    }
    RowsJson {
        leads: serde_json::to_string(&lead_rows).expect("rows serialize"),
        jobs: serde_json::to_string(&job_rows).expect("rows serialize"),
        persons: serde_json::to_string(&persons).expect("rows serialize"),
    }
}
