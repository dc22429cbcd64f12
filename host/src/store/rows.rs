//! Values bound to statements ([`Col`]), and new rows as plain column values, one list per table in the table's
//! column order, for multi-row `INSERT … VALUES` statements with bound
//! parameters. The lead's raw and normalized forms, its dedupe decision,
//! its merge and the person's record are JSON texts, serialized once here;
//! the database parses nothing.

use super::seal::{Column, Crypt};
use super::{JobState, NewJob, NewLead, StoredEnum};

/// One bound value.
#[derive(Debug, PartialEq)]
pub(crate) enum Col {
    Text(String),
    Int(i64),
    Blob(Vec<u8>),
    Null,
}

impl From<Vec<u8>> for Col {
    fn from(v: Vec<u8>) -> Col {
        Col::Blob(v)
    }
}

impl From<String> for Col {
    fn from(v: String) -> Col {
        Col::Text(v)
    }
}

impl From<&str> for Col {
    fn from(v: &str) -> Col {
        Col::Text(v.to_string())
    }
}

impl From<i64> for Col {
    fn from(v: i64) -> Col {
        Col::Int(v)
    }
}

impl<T: Into<Col>> From<Option<T>> for Col {
    fn from(v: Option<T>) -> Col {
        v.map_or(Col::Null, Into::into)
    }
}

/// `leads (id, source, received_at, status, person_id, decision,
/// rules_version, fp_version, raw, normalized, fingerprints, merge)`.
pub(crate) const LEAD_COLUMNS: &str = "id, source, received_at, status, person_id, decision, rules_version, fp_version, raw, normalized, fingerprints, merge";
/// `jobs (…)`, the columns a new job sets.
pub(crate) const JOB_COLUMNS: &str = "id, lead_id, destination, idempotency_key, state, priority, next_attempt_at, payload, mapping_version, sla_deadline, last_error, created_at, updated_at, finished_at, chain, source, held";
/// `persons (id, revision, record, updated_at)`.
pub(crate) const PERSON_COLUMNS: &str = "id, revision, record, updated_at";

/// The rows a group of new leads adds, as column values.
#[derive(Debug, Default)]
pub(crate) struct NewRows {
    pub leads: Vec<[Col; 12]>,
    pub jobs: Vec<[Col; 17]>,
    /// One per person: the group's last revision (an upsert may not touch
    /// a row twice in one statement on every database).
    pub persons: Vec<[Col; 4]>,
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("rows serialize")
}

/// The row of job `j` of lead `lead_id` (from `source`, made at `at`), its
/// payload and error sealed by `crypt`.
pub(crate) fn job_row(
    j: &NewJob,
    lead_id: &str,
    source: &str,
    at: i64,
    crypt: &Crypt,
) -> [Col; 17] {
    [
        j.id.as_str().into(),
        lead_id.into(),
        j.destination.as_str().into(),
        j.idempotency_key.as_str().into(),
        j.state.as_str().into(),
        j.priority.as_i64().into(),
        // A held job sorts last among the pending until released.
        if j.held.is_some() { i64::MAX } else { at }.into(),
        crypt
            .seal(Column::JobPayload, &j.id, json(&j.payload))
            .into(),
        j.mapping_version.as_str().into(),
        j.sla_deadline_ms.into(),
        j.last_error
            .as_ref()
            .map(|e| crypt.seal(Column::JobError, &j.id, e.clone()))
            .into(),
        at.into(),
        at.into(),
        (j.state == JobState::Dead).then_some(at).into(),
        j.chain.as_str().into(),
        source.into(),
        j.held.map(|h| h.as_str()).into(),
    ]
}

/// The rows of `leads`, personal data sealed by `crypt`.
pub(crate) fn new_rows(leads: &[NewLead], crypt: &Crypt) -> NewRows {
    let mut rows = NewRows {
        leads: Vec::with_capacity(leads.len()),
        jobs: Vec::with_capacity(leads.iter().map(|l| l.jobs.len()).sum()),
        persons: Vec::new(),
    };
    for l in leads {
        let at = l.received_at_ms;
        rows.leads.push([
            l.id.as_str().into(),
            l.source.as_str().into(),
            at.into(),
            l.state.as_str().into(),
            l.person_id.as_str().into(),
            crypt
                .seal(Column::LeadDecision, &l.id, json(&l.decision))
                .into(),
            i64::from(l.rules_version).into(),
            i64::from(l.fp_version).into(),
            l.forms.raw.as_str().into(),
            l.forms.normalized.as_str().into(),
            l.new_fingerprints.join(" ").into(),
            l.merge
                .as_ref()
                .map(|m| crypt.seal(Column::LeadMerge, &l.id, json(m)))
                .into(),
        ]);
        for j in &l.jobs {
            rows.jobs.push(job_row(j, &l.id, &l.source, at, crypt));
        }
    }
    let mut seen = std::collections::HashSet::new();
    for l in leads.iter().rev() {
        if let Some(p) = &l.person
            && seen.insert(p.id.as_str())
        {
            rows.persons.push([
                p.id.as_str().into(),
                i64::from(p.revision).into(),
                crypt.seal(Column::PersonRecord, &p.id, json(p)).into(),
                l.received_at_ms.into(),
            ]);
        }
    }
    rows
}
