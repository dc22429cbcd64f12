//! Store: durable leads, fingerprints, the outbox and the audit trail,
//! behind one trait. SQLite is the embedded default; PostgreSQL follows for
//! several hosts sharing the work.

#[cfg(test)]
pub(crate) mod conformance;
mod person;
mod postgres;
pub mod private;
pub mod retention;
pub mod rotation;
mod rows;
pub mod seal;
mod sql;
mod sqlite;
mod trail;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::pipeline::dedupe::Decision;
use crate::pipeline::merge::{Change, Person};
use crate::pipeline::normalize::NormalizedLead;
use crate::pipeline::route::Priority;

pub use person::{load_person, person_from_store};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported store URL {0:?} (use sqlite://FILE or postgres://USER@HOST/DATABASE)")]
    UnsupportedUrl(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Seal(#[from] seal::SealError),
    #[error("another host took the dedupe turn: this host's writes of leads were fenced out")]
    Fenced,
}

impl StoreError {
    /// Whether the database could not be reached (a connection cut or
    /// refused, no connection free in time): worth trying again, where any
    /// other error says the same thing the next time.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            StoreError::Database(sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut)
        )
    }
}

/// The text form of a persisted state, and its parse (each value is
/// CHECK-constrained in the database).
pub trait StoredEnum: Sized + Copy + Into<&'static str> + std::str::FromStr {
    fn as_str(self) -> &'static str {
        self.into()
    }

    fn parse(s: &str) -> Result<Self, StoreError> {
        s.parse().map_err(|_| {
            StoreError::Corrupt(format!("{s:?} is not a {}", std::any::type_name::<Self>()))
        })
    }
}

/// Derives what a persisted state enum needs: serde and the text form in
/// snake case, and comparison with that text.
macro_rules! stored_enum {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident,)+ }) => {
        $(#[$meta])*
        #[derive(
            Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize,
            strum::IntoStaticStr, strum::EnumString,
        )]
        #[serde(rename_all = "snake_case")]
        #[strum(serialize_all = "snake_case")]
        pub enum $name { $($(#[$vmeta])* $variant,)+ }

        impl StoredEnum for $name {}

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }
    };
}

stored_enum! {
    /// The states of an outbox job.
    pub enum JobState {
        Pending,
        Leased,
        Delivered,
        Dead,
    }
}

stored_enum! {
    /// What a stored lead is.
    pub enum LeadState {
        /// The first lead of its person.
        Accepted,
        /// Merged into an earlier lead's person.
        Duplicate,
    }
}

stored_enum! {
    /// The stage an audit-trail entry belongs to.
    pub enum Stage {
        Ingest,
        Normalize,
        Dedupe,
        Merge,
        Route,
        Delivery,
        Dlq,
        Privacy,
    }
}

stored_enum! {
    /// What happened, in an audit-trail entry.
    pub enum EventKind {
        Received,
        Normalized,
        NewPerson,
        Duplicate,
        Merged,
        Queued,
        Unmappable,
        Delivered,
        RetryScheduled,
        DeadLettered,
        Replayed,
        Discarded,
        Erased,
    }
}

/// One audit-trail entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub lead_id: String,
    pub job_id: Option<String>,
    pub at_ms: i64,
    pub stage: Stage,
    pub event: EventKind,
    pub detail: serde_json::Value,
}

/// What a job delivers, as stored. Versioned: a host reads every version
/// it ever wrote (rows written before versions existed hold the bare
/// property list, read as [`JobPayload::V1`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "v")]
pub enum JobPayload {
    /// The CRM properties, in the mapping's order.
    #[serde(rename = "1")]
    V1 { properties: Vec<(String, String)> },
    /// Delete a record at the CRM (an erasure): its CRM id.
    #[serde(rename = "erase")]
    Erase { record_id: String },
}

impl JobPayload {
    /// Reads a stored payload.
    pub fn parse(text: &str) -> Result<JobPayload, serde_json::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Stored {
            Versioned(JobPayload),
            Bare(Vec<(String, String)>),
        }
        Ok(match serde_json::from_str(text)? {
            Stored::Versioned(p) => p,
            Stored::Bare(properties) => JobPayload::V1 { properties },
        })
    }

    /// The CRM properties to deliver (none for a deletion).
    pub fn into_properties(self) -> Vec<(String, String)> {
        match self {
            JobPayload::V1 { properties } => properties,
            JobPayload::Erase { .. } => Vec::new(),
        }
    }

    /// The properties as the API shows them: `[[name, value], …]`; a
    /// deletion as `{"erase": crm_id}`.
    pub fn view(&self) -> serde_json::Value {
        match self {
            JobPayload::V1 { properties } => serde_json::json!(properties),
            JobPayload::Erase { record_id } => serde_json::json!({ "erase": record_id }),
        }
    }
}

/// A job to create with its lead.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub id: String,
    pub destination: String,
    pub idempotency_key: String,
    pub priority: Priority,
    pub sla_deadline_ms: i64,
    pub payload: JobPayload,
    pub mapping_version: String,
    /// `Pending`, or `Dead` when the lead cannot be mapped for this CRM.
    pub state: JobState,
    pub last_error: Option<String>,
    /// person × destination: jobs of one chain go out in acceptance order.
    pub chain: String,
    /// Why it waits instead of going out (a pending job only).
    pub held: Option<crate::pipeline::consent::Hold>,
}

/// What the store knows of a person: its golden record, or, before any
/// merge changed it, its first lead.
#[derive(Clone, Debug)]
pub enum StoredPerson {
    /// JSON of [`crate::pipeline::merge::Person`].
    Merged(String),
    FirstLead {
        source: String,
        received_at_ms: i64,
        /// JSON of the normalized lead.
        normalized: String,
    },
}

/// A lead's forms as the store keeps them: the lead as posted and
/// normalized, each JSON sealed for its row (or JSON alone with encryption
/// off). Made by ingest, in parallel, off the one commit path.
#[derive(Clone, Debug)]
pub struct StoredForms {
    pub raw: String,
    pub normalized: String,
}

impl StoredForms {
    pub fn new(
        crypt: &seal::Crypt,
        lead_id: &str,
        raw: &serde_json::Value,
        normalized: &NormalizedLead,
    ) -> StoredForms {
        let raw = serde_json::to_string(raw).expect("JSON serializes");
        let normalized = serde_json::to_string(normalized).expect("a lead serializes");
        StoredForms {
            raw: crypt.seal(seal::Column::LeadRaw, lead_id, raw),
            normalized: crypt.seal(seal::Column::LeadNormalized, lead_id, normalized),
        }
    }
}

/// A lead ready to commit, with its dedupe result, jobs and events.
#[derive(Clone, Debug)]
pub struct NewLead {
    pub id: String,
    pub source: String,
    pub received_at_ms: i64,
    pub state: LeadState,
    pub person_id: String,
    pub decision: Decision,
    pub rules_version: u32,
    pub fp_version: u32,
    /// The lead as posted and normalized, as stored.
    pub forms: StoredForms,
    pub new_fingerprints: Vec<String>,
    pub jobs: Vec<NewJob>,
    /// What merging this lead into its person changed.
    pub merge: Option<Vec<Change>>,
    /// The person's new golden record, when this lead changed it.
    pub person: Option<Person>,
    /// Chains (person × destination) whose held jobs go now: this lead
    /// brought consent.
    pub release: Vec<String>,
    /// The person withdrew consent: its jobs not yet sent are stopped
    /// (before this lead's own, which carry the withdrawal).
    pub stop_pending: bool,
}

/// A job handed to a delivery worker.
#[derive(Clone, Debug)]
pub struct LeasedJob {
    pub seq: i64,
    pub id: String,
    pub lead_id: String,
    pub idempotency_key: String,
    pub attempts: u32,
    pub priority: Priority,
    /// The stored [`JobPayload`], read by the worker (an unreadable one
    /// dead-letters its job, not the lease).
    pub payload: String,
    pub created_at_ms: i64,
    /// Which lease of the job this is: a result applies only under the
    /// lease it was made in (fencing a worker that lost its lease and
    /// leased the job again, not only a worker of another host).
    pub lease_token: i64,
}

/// Which jobs to lease: up to `limit` due jobs of `destination`, held
/// for `lease_ms`.
#[derive(Clone, Copy, Debug)]
pub struct LeaseRequest<'a> {
    pub destination: &'a str,
    pub limit: u32,
    pub lease_ms: i64,
}

/// What a worker reports for a leased job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobResult {
    Delivered {
        crm_id: String,
        outcome: String,
    },
    Retry {
        next_attempt_at_ms: i64,
        error: String,
        /// Rate limiting does not use up an attempt.
        count_attempt: bool,
    },
    Dead {
        error: String,
    },
}

/// A job as the lead view shows it.
#[derive(Clone, Debug, Serialize)]
pub struct JobView {
    pub id: String,
    pub destination: String,
    pub state: JobState,
    pub priority: Priority,
    pub attempts: u32,
    pub next_attempt_at_ms: i64,
    pub sla_deadline_ms: i64,
    pub crm_id: Option<String>,
    pub outcome: Option<String>,
    pub last_error: Option<String>,
    pub mapping_version: String,
    pub payload: serde_json::Value,
    pub created_at_ms: i64,
    /// Set when an operator discarded the dead letter: reason and time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub discarded: Option<serde_json::Value>,
    /// Why a pending job waits instead of going out.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<crate::pipeline::consent::Hold>,
}

/// One job in full, for the dead-letter queue.
#[derive(Clone, Debug, Serialize)]
pub struct JobDetail {
    pub lead_id: String,
    pub person_id: String,
    pub job: JobView,
    /// Its delivery events, oldest first: each attempt, its error, replays.
    pub events: Vec<Event>,
}

/// A dead letter to put back in the queue.
#[derive(Clone, Debug)]
pub struct Replay {
    pub id: String,
    /// A new payload and its mapping version, when replayed with the
    /// current mapping; None keeps the payload the job was made with.
    pub remapped: Option<(JobPayload, String)>,
    /// The adapter that will deliver it (for the audit trail).
    pub adapter: String,
}

/// What a replay or discard did with one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DlqStatus {
    Replayed,
    Discarded,
    NotFound,
    /// Pending, leased, delivered or already discarded.
    NotDead,
    /// A later update of the person was delivered: replaying the old
    /// payload would undo it; replay with the current mapping instead.
    Superseded,
    /// The destination is not loaded.
    DestinationUnavailable,
    /// The current mapping cannot map the person.
    Unmappable,
}

/// What a replay or discard did with one job.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DlqOutcome {
    pub id: String,
    pub status: DlqStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mapping_version: Option<String>,
}

/// Everything stored about one lead.
#[derive(Clone, Debug, Serialize)]
pub struct LeadView {
    pub id: String,
    pub source: String,
    pub received_at_ms: i64,
    pub status: LeadState,
    pub person_id: String,
    pub dedupe: serde_json::Value,
    pub rules_version: u32,
    pub fingerprint_version: u32,
    pub raw: serde_json::Value,
    pub normalized: serde_json::Value,
    /// What merging this lead into its person changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merge: Option<serde_json::Value>,
    pub deliveries: Vec<JobView>,
    pub audit: Vec<Event>,
    /// When the person's data was erased from this lead (a tombstone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erased_at_ms: Option<i64>,
    /// Why: `erasure` (the person asked) or `retention` (its source's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub erased_by: Option<String>,
}

/// What an erasure removed, and where (ids and counts: no personal data).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErasureReceipt {
    pub person_id: String,
    pub erased_at_ms: i64,
    /// The person's leads: their forms as posted and normalized, merge
    /// changes and fingerprints removed (ids, times, source and dedupe
    /// decision stay for the audit).
    pub leads: Vec<String>,
    /// Whether a golden record was deleted.
    pub golden_record: bool,
    /// Jobs whose payload and last error were removed.
    pub jobs: u64,
    /// Jobs pending or leased that will not be delivered now.
    pub deliveries_stopped: u64,
    /// Dead letters taken out of the dead-letter queue.
    pub dead_letters: u64,
    /// Audit entries whose details were removed (stage, event and time
    /// stay).
    pub audit_entries: u64,
    /// Dedupe records the host's index forgot.
    pub dedupe_records: u64,
    /// The records the person has in each CRM.
    pub destinations: Vec<CrmRecords>,
    /// Whether the store's files were scrubbed after the erasure (freed
    /// content zeroed, the write-ahead log emptied); the receipt the store
    /// keeps is written before, and says false.
    pub scrubbed: bool,
}

/// A person's records in one CRM, as an erasure found them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CrmRecords {
    pub destination: String,
    pub crm_ids: Vec<String>,
    /// Whether they were deleted at the CRM when the receipt was made
    /// (never yet: deletions are jobs of the outbox, `deletion_jobs`).
    pub deleted: bool,
    /// The jobs that delete them at the CRM, one per record, when the
    /// destination's adapter can delete; each shows its state and outcome
    /// among the deliveries of the lead that made the record
    /// (`GET /v1/leads/{id}`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deletion_jobs: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Counts for the demo, metrics and backpressure.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct StoreCounts {
    pub leads: u64,
    pub duplicates: u64,
    pub jobs_pending: u64,
    pub jobs_leased: u64,
    pub jobs_delivered: u64,
    pub jobs_dead: u64,
    /// Pending jobs held (consent missing).
    pub jobs_held: u64,
    /// The same job counts per destination.
    pub destinations: std::collections::BTreeMap<String, JobCounts>,
}

impl StoreCounts {
    /// Counts `n` jobs of `destination` in `state` (`held`: pending jobs
    /// waiting for consent, not for delivery).
    pub(crate) fn add_jobs(&mut self, destination: String, state: JobState, held: bool, n: u64) {
        let of = self.destinations.entry(destination).or_default();
        let (total, one) = match state {
            JobState::Pending if held => (&mut self.jobs_held, &mut of.held),
            JobState::Pending => (&mut self.jobs_pending, &mut of.pending),
            JobState::Leased => (&mut self.jobs_leased, &mut of.leased),
            JobState::Delivered => (&mut self.jobs_delivered, &mut of.delivered),
            JobState::Dead => (&mut self.jobs_dead, &mut of.dead),
        };
        *total += n;
        *one += n;
    }
}

/// Jobs of one destination by state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct JobCounts {
    pub pending: u64,
    pub leased: u64,
    pub delivered: u64,
    pub dead: u64,
    /// Pending jobs held (consent missing).
    pub held: u64,
}

/// A stored lead, for rebuilding the dedupe index at start-up.
#[derive(Clone, Debug)]
pub struct DedupeRecord {
    pub id: String,
    pub person_id: String,
    pub received_at_ms: i64,
    pub normalized: String,
    pub fingerprints: Vec<String>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// How this store seals personal data (and blinds what it indexes).
    fn crypt(&self) -> &seal::Crypt;

    /// Commits leads, fingerprints, jobs and events in one transaction.
    async fn insert_leads(&self, leads: &[NewLead]) -> Result<(), StoreError>;

    /// Every stored fingerprint and its person, for the dedupe index.
    async fn load_fingerprints(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// Every stored lead received at or after `since_ms` (`i64::MIN`:
    /// every lead), as the dedupe index needs it, in arrival order. An older
    /// lead can match nothing any more: its record and the fingerprints it
    /// alone brought are out of the window (the live index prunes them the
    /// same way), and a fingerprint a newer lead brought again is refreshed
    /// by that lead.
    ///
    /// The records are handed to `each` one by one as they are read, so
    /// that memory holds the index being built, never the whole table.
    ///
    /// Returns the feed position the records are as of: on a store several
    /// hosts share, the records and the position are read in one snapshot,
    /// so [`Store::feed`] after it holds exactly what the load did not see
    /// (a host loads without the dedupe turn while others write, then
    /// reads the rest under its turn).
    async fn load_dedupe_records(
        &self,
        since_ms: i64,
        each: &mut (dyn FnMut(DedupeRecord) + Send),
    ) -> Result<i64, StoreError>;

    /// A person's golden record, or its first lead.
    async fn person(&self, id: &str) -> Result<Option<StoredPerson>, StoreError>;

    /// Several persons in one read (the ones found), as [`Store::person`].
    async fn persons(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, StoredPerson>, StoreError> {
        let mut found = std::collections::HashMap::with_capacity(ids.len());
        for id in ids {
            if let Some(p) = self.person(id).await? {
                found.insert(id.clone(), p);
            }
        }
        Ok(found)
    }

    /// The ids of the leads of one person, in arrival order.
    async fn person_leads(&self, id: &str) -> Result<Vec<String>, StoreError>;

    /// Leases up to `limit` due jobs of one destination, P0 first, then in
    /// acceptance order; a job waits while an earlier job of its chain is
    /// pending or leased.
    async fn lease(
        &self,
        destination: &str,
        owner: &str,
        limit: u32,
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<LeasedJob>, StoreError> {
        let next = LeaseRequest {
            destination,
            limit,
            lease_ms,
        };
        Ok(self
            .complete_and_lease(owner, "", &[], next, now_ms)
            .await?
            .1)
    }

    /// Returns expired leases to the queue; the number returned.
    async fn reclaim_expired(&self, now_ms: i64) -> Result<u64, StoreError>;

    /// Extends `owner`'s leases of the jobs `ids` to `now_ms + lease_ms`
    /// (a worker whose call outlasts a lease keeps its jobs: nobody else
    /// may take them while the call still runs). Returns how many `owner`
    /// still held.
    async fn renew_leases(
        &self,
        owner: &str,
        ids: &[String],
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<u64, StoreError>;

    /// Records results for leased jobs, each only if `owner` still holds
    /// its lease. `adapter` names the adapter version that ran (for the
    /// audit trail). Returns, per result, whether it was applied.
    async fn complete(
        &self,
        owner: &str,
        adapter: &str,
        results: &[(LeasedJob, JobResult)],
        now_ms: i64,
    ) -> Result<Vec<bool>, StoreError> {
        let none = LeaseRequest {
            destination: "",
            limit: 0,
            lease_ms: 0,
        };
        Ok(self
            .complete_and_lease(owner, adapter, results, none, now_ms)
            .await?
            .0)
    }

    /// [`Store::complete`] and then [`Store::lease`] for the same owner in
    /// one transaction: a worker that finished a full batch takes its next
    /// one in the same write. Returns what each call would.
    async fn complete_and_lease(
        &self,
        owner: &str,
        adapter: &str,
        results: &[(LeasedJob, JobResult)],
        next: LeaseRequest<'_>,
        now_ms: i64,
    ) -> Result<(Vec<bool>, Vec<LeasedJob>), StoreError>;

    async fn lead(&self, id: &str) -> Result<Option<LeadView>, StoreError>;

    /// Jobs pending or leased: cheap, for drain checks and backpressure.
    async fn outstanding_jobs(&self) -> Result<u64, StoreError>;

    /// Jobs pending or leased per source of the lead that made them.
    async fn outstanding_by_source(&self) -> Result<Vec<(String, u64)>, StoreError>;

    /// Counts of everything: kept as rows change, so a read is cheap (a
    /// scrape of `/metrics` reads them each time).
    async fn counts(&self) -> Result<StoreCounts, StoreError>;

    /// Dead-lettered jobs not discarded, newest first, of one destination
    /// or all: (lead id, job).
    async fn dead_letters(
        &self,
        destination: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, JobView)>, StoreError>;

    /// One job, its lead and person, and its delivery events (every
    /// attempt and error).
    async fn job(&self, id: &str) -> Result<Option<JobDetail>, StoreError>;

    /// Puts dead letters back in the queue with fresh attempts. Idempotent:
    /// a job that is not (or no longer) a dead letter is left alone and
    /// reported so.
    async fn replay(&self, replays: &[Replay], now_ms: i64) -> Result<Vec<DlqOutcome>, StoreError>;

    /// Takes dead letters out of the queue for good, with a reason.
    async fn discard(
        &self,
        ids: &[String],
        reason: &str,
        now_ms: i64,
    ) -> Result<Vec<DlqOutcome>, StoreError>;

    /// A plugin's key-value entry, unless it expired by `now_ms`.
    async fn kv_get(
        &self,
        namespace: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores a plugin's key-value entry, durably, expiring at
    /// `expires_at_ms` (never if None). Entries expired by `now_ms` are
    /// dropped first; a new key is refused (false) when the namespace
    /// already holds `max_entries` live ones.
    async fn kv_set(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        expires_at_ms: Option<i64>,
        now_ms: i64,
        max_entries: usize,
    ) -> Result<bool, StoreError>;

    /// Removes a plugin's key-value entry.
    async fn kv_delete(&self, namespace: &str, key: &str) -> Result<(), StoreError>;

    /// Records a verified webhook delivery of `destination` by its digest;
    /// false when it was already recorded (a replay). Deliveries received
    /// before `forget_before_ms` are forgotten.
    async fn remember_webhook(
        &self,
        destination: &str,
        digest: &[u8],
        now_ms: i64,
        forget_before_ms: i64,
    ) -> Result<bool, StoreError>;

    /// The refresh token kept for `destination`, if any.
    async fn oauth_refresh_token(
        &self,
        destination: &str,
    ) -> Result<Option<StoredRefreshToken>, StoreError>;

    /// Keeps `token` as `destination`'s refresh token, durably.
    async fn set_oauth_refresh_token(
        &self,
        destination: &str,
        token: &StoredRefreshToken,
        now_ms: i64,
    ) -> Result<(), StoreError>;

    /// The data key every sealed value was under when the last re-sealing
    /// pass finished ("" after a run with encryption off; None: never
    /// recorded).
    async fn sealed_under(&self) -> Result<Option<String>, StoreError>;

    /// Records that every value is sealed under `key` ("": plain text).
    async fn set_sealed_under(&self, key: &str) -> Result<(), StoreError>;

    /// One step of a re-sealing pass: up to `limit` rows from `cursor` on,
    /// each value not sealed under the current key (older key, or plain
    /// text from before encryption) sealed again under it, and plain
    /// fingerprints and plugin keys blinded. Rows written meanwhile are
    /// left as they are. Returns the next cursor (None: the pass is done).
    async fn reseal(&self, cursor: ResealCursor, limit: u32) -> Result<Resealed, StoreError>;

    /// Erases a person's personal data from every lead, the golden record,
    /// jobs, dead letters and audit details in one transaction, stops its
    /// deliveries, and keeps the receipt. None when no lead has that
    /// person. The dedupe index in memory is the outbox writer's to forget.
    /// Each CRM record the person has at a destination of `deletable`
    /// (those whose adapter can delete) gets a deletion job, queued in the
    /// same transaction.
    async fn erase_person(
        &self,
        person_id: &str,
        now_ms: i64,
        deletable: &[String],
    ) -> Result<Option<ErasureReceipt>, StoreError>;

    /// One step of a source's retention (see [`retention`]): at most
    /// `limit` leads of each kind, in one transaction.
    async fn purge(
        &self,
        source: &str,
        cutoffs: retention::Cutoffs,
        limit: u32,
        now_ms: i64,
    ) -> Result<retention::Purged, StoreError>;

    /// Leaves no copy of rewritten or deleted values in the store's files
    /// (after a re-sealing pass or an erasure): deleted content is
    /// overwritten as it is freed, and this moves the write-ahead log into
    /// the database and empties it.
    async fn scrub(&self) -> Result<(), StoreError>;

    /// Whether other hosts may write this store. Then a host deciding
    /// leads takes the dedupe turn first, and follows the feed of what the
    /// others wrote between its turns. (An SQLite store has one host.)
    fn shared(&self) -> bool {
        false
    }

    /// Waits for this host's turn to decide and write leads and erasures.
    /// Everything another host wrote before is in the feed; a write of a
    /// host that lost its turn (another took it) fails with
    /// [`StoreError::Fenced`].
    async fn take_turn(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Gives the turn back (everything written in it is committed).
    async fn end_turn(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Whether another host waits for the turn.
    async fn turn_wanted(&self) -> Result<bool, StoreError> {
        Ok(false)
    }

    /// The feed's position now (taken while holding the turn: everything
    /// up to it is known to this host).
    async fn feed_position(&self) -> Result<i64, StoreError> {
        Ok(0)
    }

    /// What was written after `after`, in order; returns the position of
    /// the last item read (or `after`).
    async fn feed(
        &self,
        after: i64,
        each: &mut (dyn FnMut(FeedItem) + Send),
    ) -> Result<i64, StoreError> {
        let _ = each;
        Ok(after)
    }

    /// Says `host` is alive at `now_ms`; returns every host seen since
    /// `since_ms` (itself included). Hosts not seen for an hour are
    /// forgotten.
    async fn heartbeat(
        &self,
        host: &str,
        now_ms: i64,
        since_ms: i64,
    ) -> Result<Vec<HostSeen>, StoreError> {
        let _ = since_ms;
        Ok(vec![HostSeen {
            host: host.to_string(),
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
        }])
    }

    /// Publishes this host's pauses of destinations (a later one wins)
    /// and returns every pause still running.
    async fn pauses(&self, publish: &[Pause], now_ms: i64) -> Result<Vec<Pause>, StoreError> {
        let _ = now_ms;
        Ok(publish.to_vec())
    }
}

stored_enum! {
    /// Why every host stops calling a CRM for a while.
    pub enum PauseKind {
        /// The CRM said to stop (a 429's `Retry-After`, a quota header at
        /// zero).
        Quota,
        /// A host's circuit breaker opened: no calls until its probe.
        Breaker,
    }
}

/// A destination paused until `until_ms` (wall clock) for `kind`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pause {
    pub destination: String,
    pub kind: PauseKind,
    pub until_ms: i64,
}

/// A host sharing the store, as its heartbeats show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSeen {
    pub host: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

/// A write another host made, as a host following the store sees it.
#[derive(Clone, Debug)]
pub enum FeedItem {
    /// A lead decided and stored.
    Lead(DedupeRecord),
    /// A person erased.
    Erased { person_id: String },
}

/// Where a re-sealing pass is: a table (in the store's own order) and the
/// last row done in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ResealCursor {
    pub table: usize,
    pub after: i64,
}

/// What one [`Store::reseal`] step did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Resealed {
    pub next: Option<ResealCursor>,
    /// Rows read.
    pub scanned: u64,
    /// Values sealed again (or blinded).
    pub changed: u64,
}

/// A destination's refresh token as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRefreshToken {
    pub refresh_token: String,
    /// SHA-256 (hex) of the configured refresh token it descends from.
    pub configured_hash: String,
}

/// When a commit counts as durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Survives a crash of the process, the OS or the power (an fsync per
    /// commit).
    #[default]
    Full,
    /// Survives a crash of the process (kill -9), not of the OS or the
    /// power: the last commits before a power cut may be lost.
    Normal,
}

/// Opens the store named by `url`, running migrations; personal data is
/// sealed by `crypt`.
pub async fn open(
    url: &str,
    durability: Durability,
    crypt: seal::Crypt,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(
            SqliteStore::open(url, durability, crypt).await?,
        ))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(std::sync::Arc::new(
            PgStore::open(url, durability, crypt).await?,
        ))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_payloads_of_every_version_are_read() {
        let properties = vec![("email".to_string(), "a@b.com".to_string())];
        let v1 = JobPayload::V1 {
            properties: properties.clone(),
        };
        let text = serde_json::to_string(&v1).unwrap();
        assert_eq!(text, r#"{"v":"1","properties":[["email","a@b.com"]]}"#);
        assert_eq!(JobPayload::parse(&text).unwrap(), v1);
        // Rows written before payloads had versions: the bare list.
        assert_eq!(JobPayload::parse(r#"[["email","a@b.com"]]"#).unwrap(), v1);
        assert!(JobPayload::parse(r#"{"v":"9","properties":[]}"#).is_err());
        assert_eq!(v1.view(), serde_json::json!([["email", "a@b.com"]]));
        assert_eq!(v1.into_properties(), properties);
    }

    #[test]
    fn stored_states_read_back_and_refuse_what_they_do_not_know() {
        for state in [
            JobState::Pending,
            JobState::Leased,
            JobState::Delivered,
            JobState::Dead,
        ] {
            assert_eq!(JobState::parse(state.as_str()).unwrap(), state);
        }
        assert_eq!(EventKind::RetryScheduled.as_str(), "retry_scheduled");
        assert_eq!(Stage::parse("dlq").unwrap(), Stage::Dlq);
        assert!(matches!(
            LeadState::parse("merged"),
            Err(StoreError::Corrupt(_))
        ));
        assert!(EventKind::DeadLettered == "dead_lettered");
    }
}
