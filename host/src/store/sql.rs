//! What the two SQL stores (SQLite, PostgreSQL) share: the meaning of a
//! delivery result for its job row, the reading of job and event rows, the
//! tables a re-sealing pass walks and what it does to one row, and what
//! forgetting a lead leaves. The statements themselves stay with each
//! store (their dialects and their ways to a fast write differ).

use super::seal::{self, Column, Crypt};
use super::*;

/// `SELECT … FROM jobs <tail>`: the columns [`job_view`] reads.
macro_rules! job_view_sql {
    ($tail:literal) => {
        concat!(
            "SELECT id, destination, state, priority, attempts, next_attempt_at, sla_deadline, crm_id,
                    outcome, last_error, mapping_version, payload, lead_id, created_at, discarded, held
             FROM jobs ",
            $tail
        )
    };
}
pub(crate) use job_view_sql;

/// The cells of a result row, by position, whatever the database.
pub(crate) trait Cells {
    fn text(&self, i: usize) -> String;
    fn opt_text(&self, i: usize) -> Option<String>;
    fn int(&self, i: usize) -> i64;
    fn opt_int(&self, i: usize) -> Option<i64>;
}

macro_rules! cells {
    ($row:ty) => {
        impl Cells for $row {
            fn text(&self, i: usize) -> String {
                sqlx::Row::get(self, i)
            }
            fn opt_text(&self, i: usize) -> Option<String> {
                sqlx::Row::get(self, i)
            }
            fn int(&self, i: usize) -> i64 {
                sqlx::Row::get(self, i)
            }
            fn opt_int(&self, i: usize) -> Option<i64> {
                sqlx::Row::get(self, i)
            }
        }
    };
}
cells!(sqlx::sqlite::SqliteRow);
cells!(sqlx::postgres::PgRow);

/// Adds the adapter version that ran to an event's detail.
fn with_adapter(adapter: &str, mut detail: serde_json::Value) -> serde_json::Value {
    if let Some(obj) = detail.as_object_mut() {
        obj.insert("adapter".into(), adapter.into());
    }
    detail
}

/// What one delivery result does to its job, and the event it records.
struct Completion<'a> {
    state: JobState,
    next_at: Option<i64>,
    /// Attempts it counts.
    add: u32,
    error: Option<&'a str>,
    crm_id: Option<&'a str>,
    outcome: Option<&'a str>,
    event: EventKind,
    detail: serde_json::Value,
}

impl<'a> Completion<'a> {
    fn of(result: &'a JobResult) -> Completion<'a> {
        match result {
            JobResult::Delivered { crm_id, outcome } => Completion {
                state: JobState::Delivered,
                next_at: None,
                add: 1,
                error: None,
                crm_id: Some(crm_id),
                outcome: Some(outcome),
                event: EventKind::Delivered,
                detail: serde_json::json!({"crm_id": crm_id, "outcome": outcome}),
            },
            JobResult::Retry {
                next_attempt_at_ms,
                error,
                count_attempt,
            } => Completion {
                state: JobState::Pending,
                next_at: Some(*next_attempt_at_ms),
                add: u32::from(*count_attempt),
                error: Some(error),
                crm_id: None,
                outcome: None,
                event: EventKind::RetryScheduled,
                detail: serde_json::json!({"error": error, "next_attempt_at_ms": next_attempt_at_ms}),
            },
            JobResult::Dead { error } => Completion {
                state: JobState::Dead,
                next_at: None,
                add: 1,
                error: Some(error),
                crm_id: None,
                outcome: None,
                event: EventKind::DeadLettered,
                detail: serde_json::json!({"error": error}),
            },
        }
    }
}

/// The results and their delivery events, as one JSON array text each:
/// results `{id, st, next, add, err, crm, out, fin}` (the job's new state,
/// next attempt, attempts to add, sealed error, CRM id, outcome, finish
/// time) and events `{lead, job, ev, detail}` (detail sealed).
pub(crate) fn completion_rows(
    adapter: &str,
    results: &[(LeasedJob, JobResult)],
    now_ms: i64,
    crypt: &Crypt,
) -> (String, String) {
    let mut rows = Vec::with_capacity(results.len());
    let mut events = Vec::with_capacity(results.len());
    for (job, result) in results {
        let c = Completion::of(result);
        let finished = matches!(c.state, JobState::Delivered | JobState::Dead).then_some(now_ms);
        let error = c
            .error
            .map(|e| crypt.seal(Column::JobError, &job.id, e.to_string()));
        rows.push(serde_json::json!({
            "id": job.id, "st": c.state.as_str(), "next": c.next_at, "add": c.add,
            "err": error, "crm": c.crm_id, "out": c.outcome, "fin": finished,
            "tok": job.lease_token,
        }));
        let mut detail = with_adapter(adapter, c.detail);
        detail["attempt"] = (job.attempts + c.add).into();
        // Stored as text (sealed, or the JSON itself).
        let detail = crypt.seal(Column::EventDetail, &job.lead_id, detail.to_string());
        events.push(serde_json::json!({
            "lead": job.lead_id, "job": job.id, "ev": c.event.as_str(), "detail": detail,
            "tok": job.lease_token,
        }));
    }
    (
        serde_json::Value::Array(rows).to_string(),
        serde_json::Value::Array(events).to_string(),
    )
}

/// A job just leased, from the row `id, seq, lead_id, idempotency_key,
/// attempts, priority, payload, created_at, lease_token` starting at cell
/// `at`.
pub(crate) fn leased_job(
    r: &impl Cells,
    at: usize,
    crypt: &Crypt,
) -> Result<LeasedJob, StoreError> {
    let id = r.text(at);
    Ok(LeasedJob {
        payload: crypt.open(Column::JobPayload, &id, r.text(at + 6))?,
        seq: r.int(at + 1),
        lead_id: r.text(at + 2),
        idempotency_key: r.text(at + 3),
        attempts: r.int(at + 4) as u32,
        priority: priority(r.int(at + 5))?,
        created_at_ms: r.int(at + 7),
        lease_token: r.int(at + 8),
        id,
    })
}

/// Which results applied (in the order given, from the ids the store
/// says it completed) and the jobs leased, by priority then acceptance.
pub(crate) fn completed_and_leased(
    results: &[(LeasedJob, JobResult)],
    done: std::collections::HashSet<String>,
    mut leased: Vec<LeasedJob>,
) -> (Vec<bool>, Vec<LeasedJob>) {
    leased.sort_by_key(|j| (j.priority, j.seq));
    let applied = results
        .iter()
        .map(|(job, _)| done.contains(&job.id))
        .collect();
    (applied, leased)
}

/// The row a plugin key-value entry's value is sealed for.
pub(crate) fn kv_row(namespace: &str, stored_key: &str) -> String {
    format!("{namespace}/{stored_key}")
}

pub(crate) fn priority(n: i64) -> Result<Priority, StoreError> {
    Priority::from_i64(n).ok_or_else(|| StoreError::Corrupt(format!("priority {n}")))
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// An audit entry from `lead_id, job_id, at, stage, event, detail`.
pub(crate) fn event_row(r: &impl Cells, crypt: &Crypt) -> Result<Event, StoreError> {
    let lead_id = r.text(0);
    let detail = crypt.open(Column::EventDetail, &lead_id, r.text(5))?;
    Ok(Event {
        job_id: r.opt_text(1),
        at_ms: r.int(2),
        stage: Stage::parse(&r.text(3))?,
        event: EventKind::parse(&r.text(4))?,
        detail: serde_json::from_str(&detail).map_err(corrupt)?,
        lead_id,
    })
}

/// A job from the columns of [`job_view_sql`].
pub(crate) fn job_view(r: &impl Cells, crypt: &Crypt) -> Result<JobView, StoreError> {
    let id = r.text(0);
    let payload = crypt.open(Column::JobPayload, &id, r.text(11))?;
    let payload = JobPayload::parse(&payload).map_err(corrupt)?;
    let last_error = r
        .opt_text(9)
        .map(|e| crypt.open(Column::JobError, &id, e))
        .transpose()?;
    Ok(JobView {
        destination: r.text(1),
        state: JobState::parse(&r.text(2))?,
        priority: priority(r.int(3))?,
        attempts: r.int(4) as u32,
        next_attempt_at_ms: r.int(5),
        sla_deadline_ms: r.int(6),
        crm_id: r.opt_text(7),
        outcome: r.opt_text(8),
        last_error,
        mapping_version: r.text(10),
        payload: payload.view(),
        created_at_ms: r.int(13),
        discarded: r
            .opt_text(14)
            .map(|d| serde_json::from_str(&d).map_err(corrupt))
            .transpose()?,
        held: r
            .opt_text(15)
            .map(|h| crate::pipeline::consent::Hold::parse(&h))
            .transpose()?,
        id,
    })
}

/// A lead from `id, source, received_at, status, person_id, decision,
/// rules_version, fp_version, raw, normalized, merge, erased_at,
/// erased_by`, with its deliveries and the audit entries stored for it.
pub(crate) fn lead_view(
    row: &impl Cells,
    deliveries: Vec<JobView>,
    stored: Vec<Event>,
    crypt: &Crypt,
) -> Result<LeadView, StoreError> {
    let id = row.text(0);
    let json = |column, s: String| -> Result<serde_json::Value, StoreError> {
        serde_json::from_str(&crypt.open(column, &id, s)?).map_err(corrupt)
    };
    let mut view = LeadView {
        source: row.text(1),
        received_at_ms: row.int(2),
        status: LeadState::parse(&row.text(3))?,
        person_id: row.text(4),
        dedupe: json(Column::LeadDecision, row.text(5))?,
        rules_version: row.int(6) as u32,
        fingerprint_version: row.int(7) as u32,
        raw: json(Column::LeadRaw, row.text(8))?,
        normalized: json(Column::LeadNormalized, row.text(9))?,
        merge: row
            .opt_text(10)
            .map(|m| json(Column::LeadMerge, m))
            .transpose()?,
        deliveries,
        audit: Vec::new(),
        erased_at_ms: row.opt_int(11),
        erased_by: row.opt_text(12),
        id,
    };
    view.audit = super::trail::ingest_trail(&view);
    view.audit.extend(stored);
    Ok(view)
}

/// A person from `id, record, source, received_at, normalized`: its
/// golden record (sealed) when a merge wrote one, else its first lead
/// (`normalized` read only then).
pub(crate) fn person_row(
    r: &impl Cells,
    crypt: &Crypt,
) -> Result<(String, StoredPerson), StoreError> {
    let id = r.text(0);
    let person = match r.opt_text(1) {
        Some(record) => StoredPerson::Merged(crypt.open(Column::PersonRecord, &id, record)?),
        None => StoredPerson::FirstLead {
            source: r.text(2),
            received_at_ms: r.int(3),
            normalized: crypt.open(
                Column::LeadNormalized,
                &id,
                r.opt_text(4).unwrap_or_default(),
            )?,
        },
    };
    Ok((id, person))
}

/// The erasure receipt's note for the records at a CRM whose adapter
/// cannot delete.
pub(crate) const NOT_DELETED_AT_CRM: &str = "not deleted at the CRM: the destination's adapter \
     exports no erasure interface (WIT 0.2.1); delete these records there";
/// The note for the records whose deletion was queued.
pub(crate) const DELETION_QUEUED: &str = "deletion queued: one job per record (deletion_jobs), \
     delivered through the outbox; each shows its outcome among its lead's deliveries";

/// The mapping version of a deletion job: how the stores tell a
/// deletion's CRM id from the records a person has.
pub(crate) const ERASURE_MAPPING: &str = "erasure";

/// A record a person has at a CRM, as the erasure found it: the lead and
/// source of a job that wrote it.
pub(crate) struct Delivered {
    pub destination: String,
    pub crm_id: String,
    pub lead_id: String,
    pub source: String,
}

impl Delivered {
    /// The rows of `SELECT destination, crm_id, lead_id, source`.
    pub(crate) fn from_rows(rows: &[impl Cells]) -> Vec<Delivered> {
        rows.iter()
            .map(|r| Delivered {
                destination: r.text(0),
                crm_id: r.text(1),
                lead_id: r.text(2),
                source: r.text(3),
            })
            .collect()
    }
}

/// What an erasure does at the CRMs: the receipt's records per CRM
/// (`delivered` sorted by destination), and the rows of a deletion job for
/// each record at a destination of `deletable`.
pub(crate) fn erasure_at_crms(
    delivered: Vec<Delivered>,
    deletable: &[String],
    now_ms: i64,
    crypt: &Crypt,
) -> (Vec<CrmRecords>, Vec<[super::rows::Col; 17]>) {
    let mut out: Vec<CrmRecords> = Vec::new();
    let mut jobs = Vec::new();
    for d in delivered {
        let can = deletable.contains(&d.destination);
        if out.last().map(|r| &r.destination) != Some(&d.destination) {
            out.push(CrmRecords {
                destination: d.destination.clone(),
                note: Some(
                    if can {
                        DELETION_QUEUED
                    } else {
                        NOT_DELETED_AT_CRM
                    }
                    .into(),
                ),
                ..Default::default()
            });
        }
        let records = out.last_mut().expect("just pushed");
        if can {
            let id = uuid::Uuid::now_v7().to_string();
            let job = NewJob {
                idempotency_key: format!("erase/{id}"),
                // Each deletion goes on its own.
                chain: format!("erase/{id}"),
                id,
                destination: d.destination.clone(),
                priority: Priority::P1,
                sla_deadline_ms: now_ms + Priority::P1.sla().as_millis() as i64,
                payload: JobPayload::Erase {
                    record_id: d.crm_id.clone(),
                },
                mapping_version: ERASURE_MAPPING.into(),
                state: JobState::Pending,
                last_error: None,
                held: None,
            };
            jobs.push(super::rows::job_row(
                &job, &d.lead_id, &d.source, now_ms, crypt,
            ));
            records.deletion_jobs.push(job.id);
        }
        records.crm_ids.push(d.crm_id);
    }
    (out, jobs)
}

/// Why leads are forgotten: the person asked, or their source's retention
/// ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Forget {
    Erasure,
    Retention,
}

impl Forget {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Forget::Erasure => "erasure",
            Forget::Retention => "retention",
        }
    }

    /// Why a stopped job or a dead letter left the queue.
    pub(crate) fn reason(self, now_ms: i64) -> String {
        serde_json::json!({"reason": self.as_str(), "at_ms": now_ms}).to_string()
    }
}

/// A job payload with nothing in it, as stored where personal data went.
pub(crate) fn empty_payload() -> String {
    serde_json::to_string(&JobPayload::V1 {
        properties: Vec::new(),
    })
    .expect("a payload serializes")
}

/// A forgotten lead's normalized form.
pub(crate) fn empty_normalized() -> String {
    serde_json::to_string(&NormalizedLead::default()).expect("serializes")
}

/// What forgetting leads did to their jobs and audit entries.
#[derive(Debug, Default)]
pub(crate) struct Forgotten {
    pub jobs: u64,
    pub deliveries_stopped: u64,
    pub dead_letters: u64,
    pub audit_entries: u64,
}

/// A duplicate's decision names the fingerprint that matched (the email
/// itself, or its blind index): forgetting the lead keeps only its kind.
/// The decision to store instead of `sealed`, if it changes.
pub(crate) fn redacted_decision(
    crypt: &Crypt,
    id: &str,
    sealed: String,
) -> Result<Option<String>, StoreError> {
    let text = crypt.open(Column::LeadDecision, id, sealed)?;
    let mut decision: Decision = serde_json::from_str(&text).map_err(corrupt)?;
    let Decision::Duplicate { matched, .. } = &mut decision else {
        return Ok(None);
    };
    let Some(kind) = crate::pipeline::dedupe::fingerprint_kind(matched) else {
        return Ok(None);
    };
    *matched = format!("{kind}:erased");
    let text = serde_json::to_string(&decision).expect("a decision serializes");
    Ok(Some(crypt.seal(Column::LeadDecision, id, text)))
}

/// A table with sealed columns, for re-sealing passes.
pub(crate) struct SealedTable {
    pub table: &'static str,
    /// The column naming the row in the associated data.
    pub row: &'static str,
    pub columns: &'static [(&'static str, Column)],
    /// A column of space-separated fingerprints, blinded by the pass.
    pub fingerprints: Option<&'static str>,
}

impl SealedTable {
    /// The columns a pass reads and may rewrite, fingerprints last.
    pub(crate) fn rewritten(&self) -> Vec<&'static str> {
        self.columns
            .iter()
            .map(|c| c.0)
            .chain(self.fingerprints)
            .collect()
    }

    /// What a pass rewrites in one row: `(column index in
    /// [`Self::rewritten`], new value, old value)` for each value not yet
    /// under the current key (or a fingerprint not yet blinded). `values`
    /// are the row's cells in that order.
    pub(crate) fn resealed(
        &self,
        keyring: &seal::Keyring,
        id: &str,
        values: Vec<Option<String>>,
    ) -> Result<Vec<(usize, String, String)>, StoreError> {
        let mut out = Vec::new();
        for (i, old) in values.into_iter().enumerate() {
            let Some(old) = old else { continue };
            match self.columns.get(i) {
                Some((_, column)) => {
                    if !keyring.is_current(&old) {
                        let new = keyring.seal(*column, id, &keyring.open(*column, id, &old)?);
                        out.push((i, new, old));
                    }
                }
                None => {
                    let fps = || old.split(' ').filter(|f| !f.is_empty());
                    if fps().any(|f| !seal::is_blind_fingerprint(f)) {
                        let new: Vec<String> =
                            fps().map(|f| keyring.blinder().fingerprint(f)).collect();
                        out.push((i, new.join(" "), old));
                    }
                }
            }
        }
        Ok(out)
    }
}

/// Every table with sealed columns but `plugin_kv` (its own step, last),
/// in the order a pass takes them.
pub(crate) const SEALED_TABLES: [SealedTable; 5] = [
    SealedTable {
        table: "leads",
        row: "id",
        columns: &[
            ("decision", Column::LeadDecision),
            ("raw", Column::LeadRaw),
            ("normalized", Column::LeadNormalized),
            ("merge", Column::LeadMerge),
        ],
        fingerprints: Some("fingerprints"),
    },
    SealedTable {
        table: "jobs",
        row: "id",
        columns: &[
            ("payload", Column::JobPayload),
            ("last_error", Column::JobError),
        ],
        fingerprints: None,
    },
    SealedTable {
        table: "events",
        row: "lead_id",
        columns: &[("detail", Column::EventDetail)],
        fingerprints: None,
    },
    SealedTable {
        table: "persons",
        row: "id",
        columns: &[("record", Column::PersonRecord)],
        fingerprints: None,
    },
    SealedTable {
        table: "oauth_tokens",
        row: "destination",
        columns: &[("refresh_token", Column::RefreshToken)],
        fingerprints: None,
    },
];

/// A plugin key-value entry as a pass leaves it: its key blinded and its
/// value sealed under the current key. `None` when it already is.
pub(crate) fn resealed_kv(
    keyring: &seal::Keyring,
    namespace: &str,
    key: &str,
    value: &[u8],
) -> Result<Option<(String, Vec<u8>)>, StoreError> {
    let blind = if seal::is_blind_kv_key(key) {
        key.to_string()
    } else {
        keyring.blinder().kv_key(namespace, key)
    };
    let sealed = std::str::from_utf8(value)
        .ok()
        .filter(|t| seal::is_sealed(t));
    if blind == key && sealed.is_some_and(|t| keyring.is_current(t)) {
        return Ok(None);
    }
    let plain = match sealed {
        Some(t) => keyring.open(Column::KvValue, &kv_row(namespace, key), t)?,
        None => value.to_vec(),
    };
    let new = keyring
        .seal(Column::KvValue, &kv_row(namespace, &blind), &plain)
        .into_bytes();
    Ok(Some((blind, new)))
}

/// The cursor after a pass's step over table `table` that read `rows`
/// rows up to `after`, of at most `limit`.
pub(crate) fn next_cursor(table: usize, rows: usize, after: i64, limit: u32) -> ResealCursor {
    if rows < limit as usize {
        ResealCursor {
            table: table + 1,
            after: 0,
        }
    } else {
        ResealCursor { table, after }
    }
}
