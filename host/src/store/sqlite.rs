//! The SQLite store: WAL, synchronous FULL, migrations at open. Writes are
//! few, large transactions (the outbox stage groups concurrent requests into
//! one commit); multi-row statements keep the driver's per-statement cost
//! off the hot path.

use std::str::FromStr;
use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Arguments, ConnectOptions, Row, Sqlite};
use tokio::sync::{mpsc, oneshot};

use super::trail::ingest_trail;

use super::rows::{self, Col};
use super::seal::{Column, Crypt};
use super::*;

/// Adds the adapter version that ran to an event's detail.
fn with_adapter(adapter: &str, mut detail: serde_json::Value) -> serde_json::Value {
    if let Some(obj) = detail.as_object_mut() {
        obj.insert("adapter".into(), adapter.into());
    }
    detail
}

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

/// Every write goes through one connection (`writer`): SQLite takes one
/// writer at a time, and writers on several connections wait for each
/// other in SQLite's busy handler, which sleeps (1, 2, 5, 10 ms …) while
/// the cores idle. On one connection they queue in order instead. That
/// connection belongs to one task ([`writer_loop`]) that runs the queued
/// transactions back to back: no caller holds it between its statements
/// or while it waits to be scheduled. Reads use their own connections
/// (`pool`); in WAL mode they never wait for the writer. The rare
/// operator writes (dead-letter replay and discard), which read between
/// their statements, use `admin` and wait for the writer's lock.
pub struct SqliteStore {
    writes: mpsc::Sender<WriteCmd>,
    admin: SqlitePool,
    pool: SqlitePool,
    crypt: Crypt,
    _checkpointer: AbortOnDrop,
}

/// One write transaction for the writer task, and where its rows go.
struct WriteCmd {
    work: Work,
    reply: oneshot::Sender<Result<Vec<SqliteRow>, sqlx::Error>>,
}

enum Work {
    /// SQL text that begins and commits its transaction itself, and its
    /// arguments.
    Script(&'static str, SqliteArguments),
    /// Statements run in order in one `BEGIN IMMEDIATE … COMMIT`; each is
    /// prepared once per connection (the texts are a fixed few).
    Transaction(Vec<(&'static str, SqliteArguments)>),
}

/// Binds one value to the next parameter.
fn bind(args: &mut SqliteArguments, value: Col) -> Result<(), StoreError> {
    match value {
        Col::Text(t) => args.add(t),
        Col::Int(i) => args.add(i),
        Col::Blob(b) => args.add(b),
        Col::Null => args.add(None::<String>),
    }
    .map_err(|e| StoreError::Database(sqlx::Error::Encode(e)))
}

/// The arguments `?1`, `?2`, … of a write transaction.
fn args<const N: usize>(values: [Col; N]) -> Result<SqliteArguments, StoreError> {
    let mut args = SqliteArguments::default();
    for v in values {
        bind(&mut args, v)?;
    }
    Ok(args)
}

/// The writer connection's page cache: the indexes every insert and lease
/// touches stay in memory.
const WRITER_CACHE_KIB: u32 = 8 * 1024;
/// Every other connection's page cache (readers, checkpoints, operator
/// writes): each connection has its own, and a scan (counts, the dedupe
/// index load at start-up) would otherwise fill a large one for good.
const OTHER_CACHE_KIB: u32 = 2 * 1024;

/// Transactions waiting for the writer; a full queue makes callers wait.
const WRITE_QUEUE: usize = 256;

/// Runs the queued write transactions in order on the writer connection.
/// A failed one is rolled back so the next starts clean. Ends when the
/// store is dropped.
async fn writer_loop(mut conn: SqliteConnection, mut queue: mpsc::Receiver<WriteCmd>) {
    while let Some(cmd) = queue.recv().await {
        let result = match cmd.work {
            Work::Script(sql, args) => {
                sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
                    .fetch_all(&mut conn)
                    .await
            }
            Work::Transaction(statements) => transaction(&mut conn, statements).await,
        };
        if result.is_err() {
            let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
        }
        let _ = cmd.reply.send(result);
    }
}

async fn transaction(
    conn: &mut SqliteConnection,
    statements: Vec<(&'static str, SqliteArguments)>,
) -> Result<Vec<SqliteRow>, sqlx::Error> {
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    for (sql, args) in statements {
        sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query("COMMIT").execute(&mut *conn).await?;
    Ok(Vec::new())
}

/// Rows per multi-row statement, largest first: a group's rows go in as
/// few statements as these sizes allow, and every statement text is one
/// of a fixed few, so each is prepared once. 256 rows of 16 columns stay
/// far under SQLite's 32,766 bound parameters.
const CHUNKS: [usize; 5] = [256, 64, 16, 4, 1];

/// `INSERT INTO table (columns) VALUES (?, …), … tail` for each size in
/// [`CHUNKS`].
fn insert_texts(table: &str, columns: &str, tail: &str) -> [String; CHUNKS.len()] {
    let width = columns.split(',').count();
    let row = format!("({})", vec!["?"; width].join(", "));
    CHUNKS.map(|n| {
        format!(
            "INSERT INTO {table} ({columns}) VALUES {} {tail}",
            vec![row.as_str(); n].join(", ")
        )
    })
}

static LEAD_INSERTS: LazyLock<[String; CHUNKS.len()]> =
    LazyLock::new(|| insert_texts("leads", rows::LEAD_COLUMNS, ""));
// A retried request cannot make a second job for the same person ×
// destination (ON CONFLICT on the idempotency key).
static JOB_INSERTS: LazyLock<[String; CHUNKS.len()]> = LazyLock::new(|| {
    insert_texts(
        "jobs",
        rows::JOB_COLUMNS,
        "ON CONFLICT (idempotency_key) DO NOTHING",
    )
});
static PERSON_UPSERTS: LazyLock<[String; CHUNKS.len()]> = LazyLock::new(|| {
    insert_texts(
        "persons",
        rows::PERSON_COLUMNS,
        "ON CONFLICT (id) DO UPDATE SET revision = excluded.revision,
             record = excluded.record, updated_at = excluded.updated_at
         WHERE excluded.revision > persons.revision",
    )
});

/// The statements that insert `rows` with `texts`, in [`CHUNKS`].
fn chunked<const W: usize>(
    texts: &'static [String; CHUNKS.len()],
    rows: Vec<[Col; W]>,
    out: &mut Vec<(&'static str, SqliteArguments)>,
) -> Result<(), StoreError> {
    let mut rows = rows.into_iter().peekable();
    let mut left = rows.len();
    for (size, text) in CHUNKS.iter().zip(texts) {
        while left >= *size {
            let mut args = SqliteArguments::default();
            for col in rows.by_ref().take(*size).flatten() {
                bind(&mut args, col)?;
            }
            out.push((text.as_str(), args));
            left -= size;
        }
    }
    debug_assert!(rows.peek().is_none());
    Ok(())
}

/// The database file is the owner's alone (0600): created so when missing
/// (SQLite takes an empty file as an empty database, and gives its WAL and
/// shared-memory files the database file's permissions), and narrowed
/// (with its WAL and shared memory) when an older version left it
/// readable by others.
fn private_database(path: &std::path::Path) -> std::io::Result<()> {
    if path.as_os_str().is_empty() || path == std::path::Path::new(":memory:") {
        return Ok(());
    }
    let wal = std::path::PathBuf::from(format!("{}-wal", path.display()));
    let shm = std::path::PathBuf::from(format!("{}-shm", path.display()));
    match super::private::narrow_to_owner("the store", &[path, &wal, &shm]) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            super::private::create_private(path).map(drop)
        }
        other => other,
    }
}

impl SqliteStore {
    pub async fn open(
        url: &str,
        durability: Durability,
        crypt: Crypt,
    ) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .busy_timeout(Duration::from_secs(30))
            // Commits never stop to checkpoint; a background task does it.
            .pragma("wal_autocheckpoint", "0")
            .pragma("cache_size", format!("-{}", OTHER_CACHE_KIB))
            .pragma("temp_store", "memory")
            // Freed content (a value re-sealed, a row deleted) is
            // overwritten with zeros, not left in free pages.
            .pragma("secure_delete", "on");
        let io = |e: std::io::Error| StoreError::Database(sqlx::Error::Io(e));
        if let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            super::private::private_dir(dir).map_err(io)?;
        }
        private_database(options.get_filename()).map_err(io)?;
        let admin = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&admin).await?;
        let (writes, queue) = mpsc::channel(WRITE_QUEUE);
        let writer = options
            .clone()
            .pragma("cache_size", format!("-{WRITER_CACHE_KIB}"))
            .connect()
            .await?;
        tokio::spawn(writer_loop(writer, queue));
        // Checkpoints write the database file: a connection of their own,
        // off the writer's queue.
        let checkpoints = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        let checkpointer = tokio::spawn(checkpoint_loop(checkpoints));
        Ok(SqliteStore {
            writes,
            admin,
            pool,
            crypt,
            _checkpointer: AbortOnDrop(checkpointer),
        })
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Moves the WAL into the database file off the commit path. PASSIVE never
/// waits for readers or writers; a WAL that still grows past ~64 MB gets a
/// RESTART checkpoint, which briefly waits for writers.
async fn checkpoint_loop(pool: SqlitePool) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        match sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&pool)
            .await
        {
            Ok(row) => {
                let wal_pages: i64 = row.get(1);
                if wal_pages > 16_384
                    && let Err(e) = sqlx::query("PRAGMA wal_checkpoint(RESTART)")
                        .execute(&pool)
                        .await
                {
                    tracing::warn!(error = %e, "WAL checkpoint failed");
                }
            }
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn crypt(&self) -> &Crypt {
        &self.crypt
    }

    async fn insert_leads(&self, leads: &[NewLead]) -> Result<(), StoreError> {
        if leads.is_empty() {
            return Ok(());
        }
        let rows = rows::new_rows(leads, &self.crypt);
        let mut statements = Vec::new();
        // Before the new jobs: a held job goes ahead of the update of its
        // chain that this group may add.
        for l in leads.iter().filter(|l| l.stop_pending) {
            let stopped =
                serde_json::json!({"reason": "consent withdrawn", "at_ms": l.received_at_ms});
            statements.push((
                "UPDATE jobs SET state = 'dead', discarded = ?2, held = NULL,
                                 finished_at = ?3, updated_at = ?3
                 WHERE state = 'pending'
                   AND lead_id IN (SELECT id FROM leads WHERE person_id = ?1)",
                args([
                    l.person_id.as_str().into(),
                    stopped.to_string().into(),
                    l.received_at_ms.into(),
                ])?,
            ));
        }
        let release: Vec<&String> = leads.iter().flat_map(|l| &l.release).collect();
        if !release.is_empty() {
            let now = leads.iter().map(|l| l.received_at_ms).max().unwrap_or(0);
            statements.push((
                "UPDATE jobs SET held = NULL, next_attempt_at = ?1, updated_at = ?1
                 WHERE held IS NOT NULL AND state = 'pending'
                   AND chain IN (SELECT value FROM json_each(?2))",
                args([
                    now.into(),
                    serde_json::to_string(&release)
                        .expect("chains serialize")
                        .into(),
                ])?,
            ));
        }
        chunked(&LEAD_INSERTS, rows.leads, &mut statements)?;
        chunked(&JOB_INSERTS, rows.jobs, &mut statements)?;
        chunked(&PERSON_UPSERTS, rows.persons, &mut statements)?;
        self.transaction(statements).await?;
        Ok(())
    }

    async fn load_dedupe_records(
        &self,
        since_ms: i64,
        each: &mut (dyn FnMut(super::DedupeRecord) + Send),
    ) -> Result<(), StoreError> {
        use futures_util::TryStreamExt as _;
        let mut rows = sqlx::query(
            "SELECT id, person_id, received_at, normalized, fingerprints FROM leads
             WHERE ?1 = -9223372036854775808
                OR person_id IN (SELECT person_id FROM leads WHERE received_at >= ?1)
             ORDER BY rowid",
        )
        .bind(since_ms)
        .fetch(&self.pool);
        while let Some(r) = rows.try_next().await? {
            let fps: String = r.get(4);
            let id: String = r.get(0);
            each(super::DedupeRecord {
                normalized: self.crypt.open(Column::LeadNormalized, &id, r.get(3))?,
                id,
                person_id: r.get(1),
                received_at_ms: r.get(2),
                fingerprints: fps
                    .split(' ')
                    .filter(|f| !f.is_empty())
                    .map(String::from)
                    .collect(),
            });
        }
        Ok(())
    }

    async fn load_fingerprints(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT person_id, fingerprints FROM leads WHERE fingerprints != '' ORDER BY rowid",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let person: String = r.get(0);
            let fps: String = r.get(1);
            for fp in fps.split(' ').filter(|f| !f.is_empty()) {
                out.push((fp.to_string(), person.clone()));
            }
        }
        Ok(out)
    }

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

    async fn reclaim_expired(&self, now_ms: i64) -> Result<u64, StoreError> {
        let returned = self
            .write(
                "UPDATE jobs SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL,
                                 updated_at = ?1
                 WHERE state = 'leased' AND lease_expires_at <= ?1
                 RETURNING seq",
                args([now_ms.into()])?,
            )
            .await?;
        Ok(returned.len() as u64)
    }

    async fn renew_leases(
        &self,
        owner: &str,
        ids: &[String],
        lease_ms: i64,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let ids = serde_json::to_string(ids).expect("ids serialize");
        let renewed = self
            .write(
                "UPDATE jobs SET lease_expires_at = ?3
                 WHERE state = 'leased' AND lease_owner = ?1
                   AND id IN (SELECT value FROM json_each(?2))
                 RETURNING seq",
                args([
                    owner.to_string().into(),
                    ids.into(),
                    now_ms.saturating_add(lease_ms).into(),
                ])?,
            )
            .await?;
        Ok(renewed.len() as u64)
    }

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

    async fn complete_and_lease(
        &self,
        owner: &str,
        adapter: &str,
        results: &[(LeasedJob, JobResult)],
        next: LeaseRequest<'_>,
        now_ms: i64,
    ) -> Result<(Vec<bool>, Vec<LeasedJob>), StoreError> {
        let (rows, events) = completion_rows(adapter, results, now_ms, &self.crypt);
        let rows = self
            .write(
                COMPLETE_AND_LEASE,
                args([
                    rows.into(),
                    now_ms.into(),
                    owner.to_string().into(),
                    events.into(),
                    (now_ms + next.lease_ms).into(),
                    next.destination.to_string().into(),
                    i64::from(next.limit).into(),
                    Stage::Delivery.as_str().to_string().into(),
                ])?,
            )
            .await?;
        completed_and_leased(results, rows, &self.crypt)
    }

    async fn lead(&self, id: &str) -> Result<Option<LeadView>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT id, source, received_at, status, person_id, decision, rules_version, fp_version, raw, normalized,
                    merge, erased_at, erased_by
             FROM leads WHERE id = ?1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let json = |column, s: String| -> Result<serde_json::Value, StoreError> {
            let text = self.crypt.open(column, id, s)?;
            serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))
        };
        let jobs = sqlx::query(job_view_sql!("WHERE lead_id = ?1 ORDER BY seq"))
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|r| job_view(r, &self.crypt))
            .collect::<Result<Vec<_>, _>>()?;
        let stored = sqlx::query(
            "SELECT lead_id, job_id, at, stage, event, detail FROM events WHERE lead_id = ?1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| event_row(r, &self.crypt))
        .collect::<Result<Vec<_>, StoreError>>()?;
        let mut view = LeadView {
            id: row.get(0),
            source: row.get(1),
            received_at_ms: row.get(2),
            status: LeadState::parse(row.get(3))?,
            person_id: row.get(4),
            dedupe: json(Column::LeadDecision, row.get(5))?,
            rules_version: row.get::<i64, _>(6) as u32,
            fingerprint_version: row.get::<i64, _>(7) as u32,
            raw: json(Column::LeadRaw, row.get(8))?,
            normalized: json(Column::LeadNormalized, row.get(9))?,
            merge: row
                .get::<Option<String>, _>(10)
                .map(|m| json(Column::LeadMerge, m))
                .transpose()?,
            deliveries: jobs,
            audit: Vec::new(),
            erased_at_ms: row.get(11),
            erased_by: row.get(12),
        };
        view.audit = ingest_trail(&view);
        view.audit.extend(stored);
        Ok(Some(view))
    }

    async fn person(&self, id: &str) -> Result<Option<StoredPerson>, StoreError> {
        if let Some(row) = sqlx::query("SELECT record FROM persons WHERE id = ?1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        {
            return Ok(Some(StoredPerson::Merged(self.crypt.open(
                Column::PersonRecord,
                id,
                row.get(0),
            )?)));
        }
        // An erased person is no person.
        sqlx::query(
            "SELECT source, received_at, normalized FROM leads WHERE id = ?1 AND erased_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| {
            Ok(StoredPerson::FirstLead {
                source: r.get(0),
                received_at_ms: r.get(1),
                normalized: self.crypt.open(Column::LeadNormalized, id, r.get(2))?,
            })
        })
        .transpose()
    }

    async fn persons(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, StoredPerson>, StoreError> {
        let ids = serde_json::to_string(ids).expect("ids serialize");
        let rows = sqlx::query(
            "SELECT l.id, p.record, l.source, l.received_at,
                    CASE WHEN p.record IS NULL THEN l.normalized END
             FROM json_each(?1) AS j JOIN leads l ON l.id = j.value
             LEFT JOIN persons p ON p.id = l.id
             WHERE l.erased_at IS NULL",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let id: String = r.get(0);
                let stored = match r.get::<Option<String>, _>(1) {
                    Some(record) => {
                        StoredPerson::Merged(self.crypt.open(Column::PersonRecord, &id, record)?)
                    }
                    None => StoredPerson::FirstLead {
                        source: r.get(2),
                        received_at_ms: r.get(3),
                        normalized: self.crypt.open(Column::LeadNormalized, &id, r.get(4))?,
                    },
                };
                Ok((id, stored))
            })
            .collect()
    }

    async fn person_leads(&self, id: &str) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM leads WHERE person_id = ?1 ORDER BY rowid")
                .bind(id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn job(&self, id: &str) -> Result<Option<JobDetail>, StoreError> {
        let Some(row) = sqlx::query(job_view_sql!("WHERE id = ?1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let lead_id: String = row.get("lead_id");
        let job = job_view(row, &self.crypt)?;
        let person_id: String = sqlx::query_scalar("SELECT person_id FROM leads WHERE id = ?1")
            .bind(&lead_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(Some(JobDetail {
            events: self.job_events(id).await?,
            lead_id,
            person_id,
            job,
        }))
    }

    async fn replay(&self, replays: &[Replay], now_ms: i64) -> Result<Vec<DlqOutcome>, StoreError> {
        // Reads, then writes: take the write lock up front, so two
        // operators acting at once wait for each other instead of failing.
        let mut tx = self.admin.begin_with("BEGIN IMMEDIATE").await?;
        let mut out = Vec::with_capacity(replays.len());
        for r in replays {
            if let Some(refusal) = Self::dlq_refusal(&mut tx, &r.id, r.remapped.is_none()).await? {
                out.push(DlqOutcome {
                    id: r.id.clone(),
                    status: refusal,
                    mapping_version: None,
                });
                continue;
            }
            let (payload, mapping) = match &r.remapped {
                Some((p, m)) => (
                    Some(self.crypt.seal(
                        Column::JobPayload,
                        &r.id,
                        serde_json::to_string(p).expect("payload serializes"),
                    )),
                    Some(m.as_str()),
                ),
                None => (None, None),
            };
            let mapping_version: String = sqlx::query_scalar(
                "UPDATE jobs SET state = 'pending', attempts = 0, next_attempt_at = ?2,
                     lease_owner = NULL, lease_expires_at = NULL, finished_at = NULL,
                     updated_at = ?2, payload = COALESCE(?3, payload),
                     mapping_version = COALESCE(?4, mapping_version)
                 WHERE id = ?1 RETURNING mapping_version",
            )
            .bind(&r.id)
            .bind(now_ms)
            .bind(payload)
            .bind(mapping)
            .fetch_one(&mut *tx)
            .await?;
            self.dlq_event(
                &mut tx,
                &r.id,
                now_ms,
                EventKind::Replayed,
                serde_json::json!({
                    "mapping": if r.remapped.is_some() { "current" } else { "original" },
                    "mapping_version": mapping_version,
                    "adapter": r.adapter,
                }),
            )
            .await?;
            out.push(DlqOutcome {
                id: r.id.clone(),
                status: DlqStatus::Replayed,
                mapping_version: Some(mapping_version),
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn discard(
        &self,
        ids: &[String],
        reason: &str,
        now_ms: i64,
    ) -> Result<Vec<DlqOutcome>, StoreError> {
        // Reads, then writes: take the write lock up front, so two
        // operators acting at once wait for each other instead of failing.
        let mut tx = self.admin.begin_with("BEGIN IMMEDIATE").await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let status = match Self::dlq_refusal(&mut tx, id, false).await? {
                Some(refusal) => refusal,
                None => {
                    let detail = serde_json::json!({"reason": reason, "at_ms": now_ms});
                    sqlx::query("UPDATE jobs SET discarded = ?2, updated_at = ?3 WHERE id = ?1")
                        .bind(id)
                        .bind(detail.to_string())
                        .bind(now_ms)
                        .execute(&mut *tx)
                        .await?;
                    self.dlq_event(&mut tx, id, now_ms, EventKind::Discarded, detail)
                        .await?;
                    DlqStatus::Discarded
                }
            };
            out.push(DlqOutcome {
                id: id.clone(),
                status,
                mapping_version: None,
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn kv_get(
        &self,
        namespace: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        // The blinded key, or the plain one an entry written before
        // encryption still has until the re-sealing pass blinds it.
        let stored = self.crypt.kv_key(namespace, key);
        let row = sqlx::query(
            "SELECT key, value FROM plugin_kv WHERE namespace = ?1 AND key IN (?2, ?4)
                 AND (expires_at IS NULL OR expires_at > ?3)
             ORDER BY key = ?2 DESC LIMIT 1",
        )
        .bind(namespace)
        .bind(&stored)
        .bind(now_ms)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let found: String = row.get(0);
        Ok(Some(self.crypt.open_bytes(
            Column::KvValue,
            &kv_row(namespace, &found),
            row.get(1),
        )?))
    }

    async fn kv_set(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        expires_at_ms: Option<i64>,
        now_ms: i64,
        max_entries: usize,
    ) -> Result<bool, StoreError> {
        let key = self.crypt.kv_key(namespace, key);
        let value = self
            .crypt
            .seal_bytes(Column::KvValue, &kv_row(namespace, &key), value);
        let rows = self
            .write(
                "BEGIN IMMEDIATE;
                 DELETE FROM plugin_kv WHERE namespace = ?1 AND expires_at <= ?5;
                 INSERT INTO plugin_kv (namespace, key, value, expires_at)
                 SELECT ?1, ?2, ?3, ?4
                 WHERE EXISTS (SELECT 1 FROM plugin_kv WHERE namespace = ?1 AND key = ?2)
                    OR (SELECT COUNT(*) FROM plugin_kv WHERE namespace = ?1) < ?6
                 ON CONFLICT (namespace, key) DO UPDATE
                     SET value = excluded.value, expires_at = excluded.expires_at
                 RETURNING 1;
                 COMMIT;",
                args([
                    namespace.to_string().into(),
                    key.into(),
                    value.into(),
                    expires_at_ms.into(),
                    now_ms.into(),
                    (max_entries as i64).into(),
                ])?,
            )
            .await?;
        Ok(!rows.is_empty())
    }

    async fn remember_webhook(
        &self,
        destination: &str,
        digest: &[u8],
        now_ms: i64,
        forget_before_ms: i64,
    ) -> Result<bool, StoreError> {
        let rows = self
            .write(
                "BEGIN IMMEDIATE;
                 DELETE FROM webhook_receipts WHERE received_at < ?4;
                 INSERT INTO webhook_receipts (destination, digest, received_at)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (destination, digest) DO NOTHING
                 RETURNING 1;
                 COMMIT;",
                args([
                    destination.to_string().into(),
                    digest.to_vec().into(),
                    now_ms.into(),
                    forget_before_ms.into(),
                ])?,
            )
            .await?;
        Ok(!rows.is_empty())
    }

    async fn oauth_refresh_token(
        &self,
        destination: &str,
    ) -> Result<Option<StoredRefreshToken>, StoreError> {
        let row = sqlx::query(
            "SELECT refresh_token, configured_hash FROM oauth_tokens WHERE destination = ?1",
        )
        .bind(destination)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(StoredRefreshToken {
                refresh_token: self
                    .crypt
                    .open(Column::RefreshToken, destination, r.get(0))?,
                configured_hash: r.get(1),
            })
        })
        .transpose()
    }

    async fn set_oauth_refresh_token(
        &self,
        destination: &str,
        token: &StoredRefreshToken,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.write(
            "BEGIN IMMEDIATE;
             INSERT INTO oauth_tokens (destination, refresh_token, configured_hash, updated_at)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (destination) DO UPDATE SET refresh_token = excluded.refresh_token,
                 configured_hash = excluded.configured_hash, updated_at = excluded.updated_at;
             COMMIT;",
            args([
                destination.to_string().into(),
                self.crypt
                    .seal(
                        Column::RefreshToken,
                        destination,
                        token.refresh_token.clone(),
                    )
                    .into(),
                token.configured_hash.clone().into(),
                now_ms.into(),
            ])?,
        )
        .await?;
        Ok(())
    }

    async fn kv_delete(&self, namespace: &str, key: &str) -> Result<(), StoreError> {
        self.write(
            "BEGIN IMMEDIATE;
             DELETE FROM plugin_kv WHERE namespace = ?1 AND key IN (?2, ?3);
             COMMIT;",
            args([
                namespace.to_string().into(),
                self.crypt.kv_key(namespace, key).into(),
                key.to_string().into(),
            ])?,
        )
        .await?;
        Ok(())
    }

    async fn sealed_under(&self) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT value FROM store_meta WHERE key = 'sealed_under'")
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn set_sealed_under(&self, key: &str) -> Result<(), StoreError> {
        self.write(
            "BEGIN IMMEDIATE;
             INSERT INTO store_meta (key, value) VALUES ('sealed_under', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value;
             COMMIT;",
            args([key.to_string().into()])?,
        )
        .await?;
        Ok(())
    }

    async fn erase_person(
        &self,
        person_id: &str,
        now_ms: i64,
    ) -> Result<Option<ErasureReceipt>, StoreError> {
        // Reads, then writes: the write lock up front.
        let mut tx = self.admin.begin_with("BEGIN IMMEDIATE").await?;
        let leads: Vec<String> =
            sqlx::query_scalar("SELECT id FROM leads WHERE person_id = ?1 ORDER BY rowid")
                .bind(person_id)
                .fetch_all(&mut *tx)
                .await?;
        if leads.is_empty() {
            return Ok(None);
        }
        let mut receipt = ErasureReceipt {
            person_id: person_id.to_string(),
            erased_at_ms: now_ms,
            leads,
            ..Default::default()
        };
        // The records the person has in each CRM.
        let delivered = sqlx::query(
            "SELECT destination, crm_id FROM jobs
             WHERE lead_id IN (SELECT id FROM leads WHERE person_id = ?1) AND crm_id IS NOT NULL
             GROUP BY destination, crm_id ORDER BY destination, crm_id",
        )
        .bind(person_id)
        .fetch_all(&mut *tx)
        .await?;
        for r in delivered {
            let destination: String = r.get(0);
            if receipt.destinations.last().map(|d| &d.destination) != Some(&destination) {
                receipt.destinations.push(CrmRecords {
                    destination,
                    ..Default::default()
                });
            }
            let last = receipt.destinations.last_mut().expect("just pushed");
            last.crm_ids.push(r.get(1));
        }
        let ids = serde_json::to_string(&receipt.leads).expect("ids serialize");
        let forgotten = self
            .forget_leads(&mut tx, &ids, Forget::Erasure, now_ms)
            .await?;
        receipt.jobs = forgotten.jobs;
        receipt.deliveries_stopped = forgotten.deliveries_stopped;
        receipt.dead_letters = forgotten.dead_letters;
        receipt.audit_entries = forgotten.audit_entries;
        receipt.golden_record = sqlx::query("DELETE FROM persons WHERE id = ?1")
            .bind(person_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        for crm in &mut receipt.destinations {
            crm.note = Some(
                "not deleted at the CRM: the adapter interface (WIT 0.2) has no delete \
                 operation; delete these records there"
                    .into(),
            );
        }
        let summary = serde_json::to_string(&receipt).expect("receipt serializes");
        sqlx::query(
            "INSERT INTO events (lead_id, job_id, at, stage, event, detail)
             VALUES (?1, NULL, ?2, ?3, ?4, ?5)",
        )
        .bind(person_id)
        .bind(now_ms)
        .bind(Stage::Privacy.as_str())
        .bind(EventKind::Erased.as_str())
        .bind(&summary)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO erasures (person_id, erased_at, receipt) VALUES (?1, ?2, ?3)
             ON CONFLICT (person_id) DO UPDATE SET erased_at = excluded.erased_at,
                 receipt = excluded.receipt",
        )
        .bind(person_id)
        .bind(now_ms)
        .bind(&summary)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        receipt.scrubbed = match self.scrub().await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %e, "erased, but the write-ahead log could not be emptied");
                false
            }
        };
        Ok(Some(receipt))
    }

    async fn purge(
        &self,
        source: &str,
        cutoffs: retention::Cutoffs,
        limit: u32,
        now_ms: i64,
    ) -> Result<retention::Purged, StoreError> {
        let mut purged = retention::Purged::default();
        let mut tx = self.admin.begin_with("BEGIN IMMEDIATE").await?;
        if let Some(before) = cutoffs.raw_before_ms {
            purged.raw = sqlx::query(
                "UPDATE leads SET raw = '{}', raw_purged_at = ?3
                 WHERE rowid IN (SELECT rowid FROM leads
                                 WHERE source = ?1 AND received_at < ?2
                                   AND raw_purged_at IS NULL AND erased_at IS NULL
                                 LIMIT ?4)",
            )
            .bind(source)
            .bind(before)
            .bind(now_ms)
            .bind(i64::from(limit))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        if let Some(before) = cutoffs.leads_before_ms {
            let rows = sqlx::query(
                "SELECT id, person_id FROM leads
                 WHERE source = ?1 AND received_at < ?2 AND erased_at IS NULL LIMIT ?3",
            )
            .bind(source)
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
            if !rows.is_empty() {
                let ids: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
                let persons: Vec<String> = rows.iter().map(|r| r.get(1)).collect();
                let ids = serde_json::to_string(&ids).expect("ids serialize");
                self.forget_leads(&mut tx, &ids, Forget::Retention, now_ms)
                    .await?;
                purged.leads = rows.len() as u64;
                purged.persons = sqlx::query(
                    "DELETE FROM persons WHERE id IN (SELECT value FROM json_each(?1))
                       AND NOT EXISTS (SELECT 1 FROM leads
                                       WHERE person_id = persons.id AND erased_at IS NULL)",
                )
                .bind(serde_json::to_string(&persons).expect("ids serialize"))
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
        }
        if let Some(before) = cutoffs.dead_letters_before_ms {
            let reason = serde_json::json!({"reason": "retention", "at_ms": now_ms}).to_string();
            purged.dead_letters = sqlx::query(
                "UPDATE jobs SET discarded = ?3, payload = ?4, last_error = NULL, updated_at = ?5
                 WHERE seq IN (SELECT seq FROM jobs
                               WHERE state = 'dead' AND discarded IS NULL AND source = ?1
                                 AND finished_at < ?2
                               LIMIT ?6)",
            )
            .bind(source)
            .bind(before)
            .bind(reason)
            .bind(empty_payload())
            .bind(now_ms)
            .bind(i64::from(limit))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(purged)
    }

    async fn scrub(&self) -> Result<(), StoreError> {
        // TRUNCATE waits for readers and writers, copies every page of the
        // WAL into the database and truncates the WAL to zero bytes.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.admin)
            .await?;
        Ok(())
    }

    async fn reseal(&self, cursor: ResealCursor, limit: u32) -> Result<Resealed, StoreError> {
        let Some(keyring) = self.crypt.keyring() else {
            return Ok(Resealed::default());
        };
        match cursor.table {
            t if t < SEALED_TABLES.len() => self.reseal_rows(keyring, cursor, limit).await,
            t if t == SEALED_TABLES.len() => self.reseal_kv(keyring).await,
            _ => Ok(Resealed::default()),
        }
    }

    async fn outstanding_jobs(&self) -> Result<u64, StoreError> {
        // Both partial indexes answer this without touching the table
        // (a held job's next attempt is at i64::MAX: not work to do).
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM jobs
                     WHERE state = 'pending' AND next_attempt_at < 9223372036854775807)
                  + (SELECT COUNT(*) FROM jobs WHERE state = 'leased')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(row.get::<i64, _>(0) as u64)
    }

    async fn outstanding_by_source(&self) -> Result<Vec<(String, u64)>, StoreError> {
        // The partial index on source answers this without the table. A
        // held job waits for consent, not for delivery: not backlog.
        let rows = sqlx::query(
            "SELECT COALESCE(source, ''), COUNT(*) FROM jobs
             WHERE state IN ('pending', 'leased') AND held IS NULL GROUP BY source",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get(0), r.get::<i64, _>(1) as u64))
            .collect())
    }

    async fn counts(&self) -> Result<StoreCounts, StoreError> {
        let leads =
            sqlx::query("SELECT COUNT(*), COALESCE(SUM(status = 'duplicate'), 0) FROM leads")
                .fetch_one(&self.pool)
                .await?;
        let mut counts = StoreCounts {
            leads: leads.get::<i64, _>(0) as u64,
            duplicates: leads.get::<i64, _>(1) as u64,
            ..Default::default()
        };
        for r in sqlx::query(
            "SELECT destination, state, held IS NOT NULL, COUNT(*) FROM jobs
             GROUP BY destination, state, held IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?
        {
            let n = r.get::<i64, _>(3) as u64;
            let of = counts
                .destinations
                .entry(r.get::<String, _>(0))
                .or_default();
            let (total, one) = match JobState::parse(&r.get::<String, _>(1))? {
                // Held: waiting for consent, not for delivery.
                JobState::Pending if r.get::<bool, _>(2) => (&mut counts.jobs_held, &mut of.held),
                JobState::Pending => (&mut counts.jobs_pending, &mut of.pending),
                JobState::Leased => (&mut counts.jobs_leased, &mut of.leased),
                JobState::Delivered => (&mut counts.jobs_delivered, &mut of.delivered),
                JobState::Dead => (&mut counts.jobs_dead, &mut of.dead),
            };
            *total += n;
            *one = n;
        }
        Ok(counts)
    }

    async fn dead_letters(
        &self,
        destination: Option<&str>,
        limit: u32,
    ) -> Result<Vec<(String, JobView)>, StoreError> {
        let rows = sqlx::query(job_view_sql!(
            "WHERE state = 'dead' AND discarded IS NULL AND (?2 IS NULL OR destination = ?2)
             ORDER BY seq DESC LIMIT ?1"
        ))
        .bind(i64::from(limit))
        .bind(destination)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let lead: String = r.get("lead_id");
                Ok((lead, job_view(r, &self.crypt)?))
            })
            .collect()
    }
}

/// Why leads are forgotten: the person asked, or their source's retention
/// ran out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Forget {
    Erasure,
    Retention,
}

impl Forget {
    fn as_str(self) -> &'static str {
        match self {
            Forget::Erasure => "erasure",
            Forget::Retention => "retention",
        }
    }
}

/// A job payload with nothing in it, as stored where personal data went.
fn empty_payload() -> String {
    serde_json::to_string(&JobPayload::V1 {
        properties: Vec::new(),
    })
    .expect("a payload serializes")
}

/// What forgetting leads did to their jobs and audit entries.
#[derive(Debug, Default)]
struct Forgotten {
    jobs: u64,
    deliveries_stopped: u64,
    dead_letters: u64,
    audit_entries: u64,
}

impl SqliteStore {
    /// Removes the personal data of the leads `ids` (a JSON array) in
    /// `tx`: their forms, merge changes, fingerprints and the fingerprint a
    /// duplicate matched; their jobs' payloads and errors (waiting ones
    /// stopped, dead letters taken out of the queue) and their audit
    /// details. Ids, times, source, status and decisions stay: tombstones.
    async fn forget_leads(
        &self,
        tx: &mut sqlx::Transaction<'_, Sqlite>,
        ids: &str,
        why: Forget,
        now_ms: i64,
    ) -> Result<Forgotten, StoreError> {
        // A duplicate's decision names the fingerprint that matched (the
        // email itself, or its blind index): only its kind stays.
        for r in sqlx::query(
            "SELECT id, decision FROM leads WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(ids)
        .fetch_all(&mut **tx)
        .await?
        {
            let id: String = r.get(0);
            let text = self.crypt.open(Column::LeadDecision, &id, r.get(1))?;
            let mut decision: Decision =
                serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if let Decision::Duplicate { matched, .. } = &mut decision
                && let Some(kind) = crate::pipeline::dedupe::fingerprint_kind(matched)
            {
                *matched = format!("{kind}:erased");
                let text = serde_json::to_string(&decision).expect("a decision serializes");
                sqlx::query("UPDATE leads SET decision = ?2 WHERE id = ?1")
                    .bind(&id)
                    .bind(self.crypt.seal(Column::LeadDecision, &id, text))
                    .execute(&mut **tx)
                    .await?;
            }
        }
        let normalized = serde_json::to_string(&NormalizedLead::default()).expect("serializes");
        sqlx::query(
            "UPDATE leads SET raw = '{}', normalized = ?2, merge = NULL, fingerprints = '',
                              erased_at = ?3, erased_by = ?4
             WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(ids)
        .bind(normalized)
        .bind(now_ms)
        .bind(why.as_str())
        .execute(&mut **tx)
        .await?;
        let reason = serde_json::json!({"reason": why.as_str(), "at_ms": now_ms}).to_string();
        let of_leads = "lead_id IN (SELECT value FROM json_each(?1))";
        let deliveries_stopped = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET state = 'dead', discarded = ?2, lease_owner = NULL, held = NULL,
                             lease_expires_at = NULL, finished_at = ?3, updated_at = ?3
             WHERE {of_leads} AND state IN ('pending', 'leased')"
        )))
        .bind(ids)
        .bind(&reason)
        .bind(now_ms)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        let dead_letters = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET discarded = ?2, updated_at = ?3
             WHERE {of_leads} AND state = 'dead' AND discarded IS NULL"
        )))
        .bind(ids)
        .bind(&reason)
        .bind(now_ms)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        let jobs = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET payload = ?2, last_error = NULL WHERE {of_leads}"
        )))
        .bind(ids)
        .bind(empty_payload())
        .execute(&mut **tx)
        .await?
        .rows_affected();
        let audit_entries = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE events SET detail = '{{}}' WHERE {of_leads}"
        )))
        .bind(ids)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        Ok(Forgotten {
            jobs,
            deliveries_stopped,
            dead_letters,
            audit_entries,
        })
    }
}

/// A table with sealed columns, for re-sealing passes.
struct SealedTable {
    table: &'static str,
    /// The column naming the row in the associated data.
    row: &'static str,
    columns: &'static [(&'static str, Column)],
    /// A column of space-separated fingerprints, blinded by the pass.
    fingerprints: Option<&'static str>,
}

/// Every table with sealed columns but `plugin_kv` (no rowid: its own
/// step, last), in the order a pass takes them.
const SEALED_TABLES: [SealedTable; 5] = [
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

/// A sealed table's statements: the select of a step, and one
/// conditional update per column (fingerprints last).
struct ResealSql {
    select: String,
    updates: Vec<String>,
}

static RESEAL_SQL: LazyLock<Vec<ResealSql>> = LazyLock::new(|| {
    SEALED_TABLES
        .iter()
        .map(|t| {
            let columns: Vec<&str> = t
                .columns
                .iter()
                .map(|c| c.0)
                .chain(t.fingerprints)
                .collect();
            ResealSql {
                select: format!(
                    "SELECT rowid, {}, {} FROM {} WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
                    t.row,
                    columns.join(", "),
                    t.table
                ),
                updates: columns
                    .iter()
                    .map(|c| {
                        format!(
                            "UPDATE {} SET {c} = ?1 WHERE rowid = ?2 AND {c} IS ?3",
                            t.table
                        )
                    })
                    .collect(),
            }
        })
        .collect()
});

impl SqliteStore {
    /// A re-sealing step over one [`SEALED_TABLES`] table.
    async fn reseal_rows(
        &self,
        keyring: &seal::Keyring,
        cursor: ResealCursor,
        limit: u32,
    ) -> Result<Resealed, StoreError> {
        let table = &SEALED_TABLES[cursor.table];
        let sql = &RESEAL_SQL[cursor.table];
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql.select.as_str()))
            .bind(cursor.after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut statements = Vec::new();
        let mut after = cursor.after;
        for r in &rows {
            let rowid: i64 = r.get(0);
            after = rowid;
            let id: String = r.get(1);
            for (i, (_, column)) in table.columns.iter().enumerate() {
                let Some(old) = r.get::<Option<String>, _>(2 + i) else {
                    continue;
                };
                if keyring.is_current(&old) {
                    continue;
                }
                let new = keyring.seal(*column, &id, &keyring.open(*column, &id, &old)?);
                statements.push((
                    sql.updates[i].as_str(),
                    args([new.into(), rowid.into(), old.into()])?,
                ));
            }
            if table.fingerprints.is_some() {
                let i = table.columns.len();
                let old: String = r.get(2 + i);
                let fps = || old.split(' ').filter(|f| !f.is_empty());
                if fps().any(|f| !seal::is_blind_fingerprint(f)) {
                    let new: Vec<String> =
                        fps().map(|f| keyring.blinder().fingerprint(f)).collect();
                    statements.push((
                        sql.updates[i].as_str(),
                        args([new.join(" ").into(), rowid.into(), old.clone().into()])?,
                    ));
                }
            }
        }
        let changed = statements.len() as u64;
        if !statements.is_empty() {
            self.transaction(statements).await?;
        }
        let next = if rows.len() < limit as usize {
            ResealCursor {
                table: cursor.table + 1,
                after: 0,
            }
        } else {
            ResealCursor {
                table: cursor.table,
                after,
            }
        };
        Ok(Resealed {
            next: Some(next),
            scanned: rows.len() as u64,
            changed,
        })
    }

    /// The re-sealing step over the plugins' key-value entries (few: each
    /// namespace is capped), all at once: plain keys blinded, values
    /// sealed again.
    async fn reseal_kv(&self, keyring: &seal::Keyring) -> Result<Resealed, StoreError> {
        let rows = sqlx::query("SELECT namespace, key, value FROM plugin_kv")
            .fetch_all(&self.pool)
            .await?;
        let mut statements = Vec::new();
        let mut changed = 0;
        for r in &rows {
            let (namespace, key, value): (String, String, Vec<u8>) = (r.get(0), r.get(1), r.get(2));
            let blind = if seal::is_blind_kv_key(&key) {
                key.clone()
            } else {
                keyring.blinder().kv_key(&namespace, &key)
            };
            let sealed = std::str::from_utf8(&value)
                .ok()
                .filter(|t| seal::is_sealed(t));
            if blind == key && sealed.is_some_and(|t| keyring.is_current(t)) {
                continue;
            }
            let plain = match sealed {
                Some(t) => keyring.open(Column::KvValue, &kv_row(&namespace, &key), t)?,
                None => value.clone(),
            };
            let new = keyring
                .seal(Column::KvValue, &kv_row(&namespace, &blind), &plain)
                .into_bytes();
            changed += 1;
            // A plain key whose blinded twin was written meanwhile (after
            // encryption came on) yields to it.
            statements.push((
                "UPDATE OR IGNORE plugin_kv SET key = ?1, value = ?2
                 WHERE namespace = ?3 AND key = ?4 AND value = ?5",
                args([
                    blind.clone().into(),
                    new.into(),
                    namespace.clone().into(),
                    key.clone().into(),
                    value.into(),
                ])?,
            ));
            if blind != key {
                statements.push((
                    "DELETE FROM plugin_kv WHERE namespace = ?1 AND key = ?2",
                    args([namespace.into(), key.into()])?,
                ));
            }
        }
        if !statements.is_empty() {
            self.transaction(statements).await?;
        }
        Ok(Resealed {
            next: None,
            scanned: rows.len() as u64,
            changed,
        })
    }

    /// Runs one write transaction on the writer task: `sql` begins
    /// (`BEGIN IMMEDIATE;`) and commits it itself, so the writer is taken
    /// once for the whole transaction. Returns the rows its statements
    /// return.
    async fn write(
        &self,
        sql: &'static str,
        args: SqliteArguments,
    ) -> Result<Vec<SqliteRow>, StoreError> {
        self.run(Work::Script(sql, args)).await
    }

    /// Runs `statements` in one transaction on the writer connection.
    async fn transaction(
        &self,
        statements: Vec<(&'static str, SqliteArguments)>,
    ) -> Result<(), StoreError> {
        self.run(Work::Transaction(statements)).await.map(drop)
    }

    /// Queues `work` for the writer task and waits for its rows.
    async fn run(&self, work: Work) -> Result<Vec<SqliteRow>, StoreError> {
        let (reply, answer) = oneshot::channel();
        let gone = || StoreError::Database(sqlx::Error::PoolClosed);
        self.writes
            .send(WriteCmd { work, reply })
            .await
            .map_err(|_| gone())?;
        Ok(answer.await.map_err(|_| gone())??)
    }

    async fn job_events(&self, job_id: &str) -> Result<Vec<Event>, StoreError> {
        sqlx::query(
            "SELECT lead_id, job_id, at, stage, event, detail FROM events WHERE job_id = ?1
             ORDER BY seq",
        )
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(|r| event_row(r, &self.crypt))
        .collect()
    }

    async fn dlq_event(
        &self,
        tx: &mut sqlx::Transaction<'_, Sqlite>,
        job_id: &str,
        now_ms: i64,
        event: EventKind,
        detail: serde_json::Value,
    ) -> Result<(), StoreError> {
        let lead_id: String = sqlx::query_scalar("SELECT lead_id FROM jobs WHERE id = ?1")
            .bind(job_id)
            .fetch_one(&mut **tx)
            .await?;
        let detail = self
            .crypt
            .seal(Column::EventDetail, &lead_id, detail.to_string());
        sqlx::query(
            "INSERT INTO events (lead_id, job_id, at, stage, event, detail)
             VALUES (?6, ?1, ?2, ?5, ?3, ?4)",
        )
        .bind(job_id)
        .bind(now_ms)
        .bind(event.as_str())
        .bind(detail)
        .bind(Stage::Dlq.as_str())
        .bind(lead_id)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Why a job cannot be replayed or discarded, if it cannot.
    async fn dlq_refusal(
        tx: &mut sqlx::Transaction<'_, Sqlite>,
        id: &str,
        check_later: bool,
    ) -> Result<Option<DlqStatus>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT state, discarded IS NOT NULL,
                    EXISTS (SELECT 1 FROM jobs e WHERE e.chain = j.chain AND e.seq > j.seq
                                                   AND e.state = 'delivered')
             FROM jobs j WHERE id = ?1",
        )
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        else {
            return Ok(Some(DlqStatus::NotFound));
        };
        let (state, discarded, later): (String, bool, bool) = (row.get(0), row.get(1), row.get(2));
        Ok(if state != "dead" || discarded {
            Some(DlqStatus::NotDead)
        } else if check_later && later {
            Some(DlqStatus::Superseded)
        } else {
            None
        })
    }
}

/// A stored priority class.
/// One transaction: the events (first, while the lease still tells which
/// jobs will apply), the results, then the next lease. Rows come back
/// tagged 'c' (a result applied) or 'l' (a job leased). Results and events
/// are applied only where the owner (?3) still holds the lease.
const COMPLETE_AND_LEASE: &str = "BEGIN IMMEDIATE;
    INSERT INTO events (lead_id, job_id, at, stage, event, detail)
    SELECT e.value->>'lead', e.value->>'job', ?2, ?8, e.value->>'ev',
           e.value->>'detail'
    FROM jsonb_each(jsonb(?4)) AS e JOIN jobs ON jobs.id = e.value->>'job'
    WHERE jobs.state = 'leased' AND jobs.lease_owner = ?3;
    UPDATE jobs SET state = r.value->>'st',
        next_attempt_at = COALESCE(r.value->>'next', jobs.next_attempt_at),
        attempts = jobs.attempts + (r.value->>'add'),
        last_error = COALESCE(r.value->>'err', jobs.last_error),
        crm_id = COALESCE(r.value->>'crm', jobs.crm_id),
        outcome = COALESCE(r.value->>'out', jobs.outcome),
        lease_owner = NULL, lease_expires_at = NULL, updated_at = ?2,
        finished_at = r.value->>'fin'
    FROM jsonb_each(jsonb(?1)) AS r
    WHERE jobs.id = r.value->>'id' AND jobs.state = 'leased'
      AND jobs.lease_owner = ?3
    RETURNING 'c', jobs.id;
    UPDATE jobs SET state = 'leased', lease_owner = ?3, lease_expires_at = ?5,
                    updated_at = ?2
    WHERE seq IN (
        SELECT seq FROM jobs j
        WHERE state = 'pending' AND destination = ?6 AND next_attempt_at <= ?2 AND held IS NULL
          AND (chain IS NULL OR NOT EXISTS (
              SELECT 1 FROM jobs e
              WHERE e.chain = j.chain AND e.seq < j.seq
                AND e.state IN ('pending', 'leased')))
        ORDER BY priority, next_attempt_at, seq
        LIMIT ?7)
    RETURNING 'l', id, seq, lead_id, idempotency_key, attempts, priority,
              payload, created_at;
    COMMIT;";

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

/// The results and their delivery events, as one JSON array text each
/// (`?1` and `?4` of [`COMPLETE_AND_LEASE`]).
fn completion_rows(
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
        }));
        let mut detail = with_adapter(adapter, c.detail);
        detail["attempt"] = (job.attempts + c.add).into();
        // Stored as text (sealed, or the JSON itself).
        let detail = crypt.seal(Column::EventDetail, &job.lead_id, detail.to_string());
        events.push(serde_json::json!({
            "lead": job.lead_id, "job": job.id, "ev": c.event.as_str(), "detail": detail,
        }));
    }
    (
        serde_json::Value::Array(rows).to_string(),
        serde_json::Value::Array(events).to_string(),
    )
}

/// Which results applied (in the order given) and the jobs leased (by
/// priority, then acceptance), from the rows of [`COMPLETE_AND_LEASE`].
fn completed_and_leased(
    results: &[(LeasedJob, JobResult)],
    rows: Vec<sqlx::sqlite::SqliteRow>,
    crypt: &Crypt,
) -> Result<(Vec<bool>, Vec<LeasedJob>), StoreError> {
    let mut done = std::collections::HashSet::new();
    let mut jobs = Vec::new();
    for r in rows {
        let id: String = r.get(1);
        if r.get::<&str, _>(0) == "c" {
            done.insert(id);
            continue;
        }
        jobs.push(LeasedJob {
            payload: crypt.open(Column::JobPayload, &id, r.get(7))?,
            id,
            seq: r.get(2),
            lead_id: r.get(3),
            idempotency_key: r.get(4),
            attempts: r.get::<i64, _>(5) as u32,
            priority: priority(r.get(6))?,
            created_at_ms: r.get(8),
        });
    }
    jobs.sort_by_key(|j| (j.priority, j.seq));
    let applied = results
        .iter()
        .map(|(job, _)| done.contains(&job.id))
        .collect();
    Ok((applied, jobs))
}

/// The row a plugin key-value entry's value is sealed for.
fn kv_row(namespace: &str, stored_key: &str) -> String {
    format!("{namespace}/{stored_key}")
}

fn priority(n: i64) -> Result<Priority, StoreError> {
    Priority::from_i64(n).ok_or_else(|| StoreError::Corrupt(format!("priority {n}")))
}

fn event_row(r: sqlx::sqlite::SqliteRow, crypt: &Crypt) -> Result<Event, StoreError> {
    let lead_id: String = r.get(0);
    let detail = crypt.open(Column::EventDetail, &lead_id, r.get(5))?;
    Ok(Event {
        lead_id,
        job_id: r.get(1),
        at_ms: r.get(2),
        stage: Stage::parse(r.get(3))?,
        event: EventKind::parse(r.get(4))?,
        detail: serde_json::from_str(&detail).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    })
}

fn job_view(r: sqlx::sqlite::SqliteRow, crypt: &Crypt) -> Result<JobView, StoreError> {
    let id: String = r.get(0);
    let payload = crypt.open(Column::JobPayload, &id, r.get(11))?;
    let payload = JobPayload::parse(&payload).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let last_error = r
        .get::<Option<String>, _>(9)
        .map(|e| crypt.open(Column::JobError, &id, e))
        .transpose()?;
    Ok(JobView {
        id,
        destination: r.get(1),
        state: JobState::parse(&r.get::<String, _>(2))?,
        priority: priority(r.get(3))?,
        attempts: r.get::<i64, _>(4) as u32,
        next_attempt_at_ms: r.get(5),
        sla_deadline_ms: r.get(6),
        crm_id: r.get(7),
        outcome: r.get(8),
        last_error,
        mapping_version: r.get(10),
        payload: payload.view(),
        created_at_ms: r.get(13),
        discarded: r
            .get::<Option<String>, _>(14)
            .map(|d| serde_json::from_str(&d).map_err(|e| StoreError::Corrupt(e.to_string())))
            .transpose()?,
        held: r
            .get::<Option<String>, _>(15)
            .map(|h| crate::pipeline::consent::Hold::parse(&h))
            .transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys every store of these tests seals with (a reopened store
    /// reads what the first wrote).
    static CRYPT: LazyLock<Crypt> = LazyLock::new(Crypt::ephemeral);
    use std::sync::Arc;

    fn lead(id: &str, person: &str, fps: &[&str], jobs: usize) -> NewLead {
        NewLead {
            id: id.into(),
            source: "test".into(),
            received_at_ms: 1_000,
            state: if id != person {
                LeadState::Duplicate
            } else {
                LeadState::Accepted
            },
            person_id: person.into(),
            decision: Decision::New,
            rules_version: 1,
            fp_version: 1,
            forms: StoredForms::new(
                &CRYPT,
                id,
                &serde_json::json!({"email": "A@B.com"}),
                &NormalizedLead {
                    email: Some("a@b.com".into()),
                    ..Default::default()
                },
            ),
            new_fingerprints: fps.iter().map(|s| s.to_string()).collect(),
            jobs: (0..jobs)
                .map(|n| NewJob {
                    id: format!("{id}:d{n}"),
                    destination: format!("d{n}"),
                    idempotency_key: format!("{person}/d{n}/v1"),
                    priority: Priority::P1,
                    sla_deadline_ms: 61_000,
                    payload: JobPayload::V1 {
                        properties: vec![("email".into(), "a@b.com".into())],
                    },
                    mapping_version: "m1".into(),
                    state: JobState::Pending,
                    last_error: None,
                    chain: format!("{person}/d{n}"),
                    held: None,
                })
                .collect(),
            merge: None,
            person: None,
            release: Vec::new(),
            stop_pending: false,
        }
    }

    async fn open(dir: &tempfile::TempDir) -> SqliteStore {
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        SqliteStore::open(&url, Durability::Full, CRYPT.clone())
            .await
            .unwrap()
    }

    /// A store holding two leads (L1, L2) of one job each, both leased by
    /// `owner` at 2,000 for 1,000 ms.
    async fn two_leased(dir: &tempfile::TempDir, owner: &str) -> (SqliteStore, Vec<LeasedJob>) {
        let store = open(dir).await;
        store
            .insert_leads(&[lead("L1", "L1", &[], 1), lead("L2", "L2", &[], 1)])
            .await
            .unwrap();
        let jobs = store.lease("d0", owner, 10, 1_000, 2_000).await.unwrap();
        assert_eq!(jobs.len(), 2);
        (store, jobs)
    }

    #[tokio::test]
    async fn a_failed_write_is_rolled_back_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = std::sync::Arc::new(open(&dir).await);
        store
            .insert_leads(&[lead("L1", "L1", &[], 1)])
            .await
            .unwrap();
        // The same lead id again: the whole group fails, nothing of it is
        // stored (L2 neither), and no transaction is left open.
        let err = store
            .insert_leads(&[lead("L2", "L2", &[], 1), lead("L1", "L1", &[], 1)])
            .await;
        assert!(err.is_err(), "{err:?}");
        assert!(store.lead("L2").await.unwrap().is_none());
        // Many writers at once, queued on the one connection.
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..20 {
            let store = store.clone();
            tasks.spawn(async move {
                let id = format!("M{n}");
                store.insert_leads(&[lead(&id, &id, &[], 1)]).await
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap().unwrap();
        }
        assert_eq!(store.outstanding_jobs().await.unwrap(), 21);
        let jobs = store.lease("d0", "w1", 100, 1_000, 2_000).await.unwrap();
        assert_eq!(jobs.len(), 21);
    }

    #[tokio::test]
    async fn a_completion_leases_the_next_batch_in_the_same_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let leads: Vec<NewLead> = (0..5)
            .map(|n| lead(&format!("L{n}"), &format!("L{n}"), &[], 1))
            .collect();
        store.insert_leads(&leads).await.unwrap();
        let first = store.lease("d0", "w1", 2, 1_000, 2_000).await.unwrap();
        assert_eq!(first.len(), 2);
        let done = JobResult::Delivered {
            crm_id: "9".into(),
            outcome: "created 9".into(),
        };
        let results: Vec<_> = first.iter().map(|j| (j.clone(), done.clone())).collect();
        let next = LeaseRequest {
            destination: "d0",
            limit: 2,
            lease_ms: 1_000,
        };
        let (applied, jobs) = store
            .complete_and_lease("w1", "a@1", &results, next, 2_100)
            .await
            .unwrap();
        assert_eq!(applied, vec![true, true]);
        assert_eq!(jobs.len(), 2);
        assert!(jobs.iter().all(|j| !first.iter().any(|f| f.id == j.id)));
        // A worker whose lease was taken over records nothing, and still
        // leases what is due.
        assert_eq!(store.reclaim_expired(3_200).await.unwrap(), 2);
        let stale: Vec<_> = jobs.iter().map(|j| (j.clone(), done.clone())).collect();
        let (applied, rest) = store
            .complete_and_lease("w1", "a@1", &stale, next, 3_300)
            .await
            .unwrap();
        assert_eq!(applied, vec![false, false]);
        assert_eq!(rest.len(), 2, "the returned jobs, leased again");
        let counts = store.counts().await.unwrap();
        assert_eq!((counts.jobs_delivered, counts.jobs_leased), (2, 2));
        let events = store.job_events(&first[0].id).await.unwrap();
        assert_eq!(events.last().unwrap().event, "delivered");
        assert!(
            store
                .job_events(&jobs[0].id)
                .await
                .unwrap()
                .iter()
                .all(|e| e.stage != "delivery")
        );
    }

    #[tokio::test]
    async fn fingerprints_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(&dir).await;
            store
                .insert_leads(&[
                    lead("L1", "L1", &["email:a@b.com"], 1),
                    lead("L2", "L1", &["phone:+1"], 0),
                ])
                .await
                .unwrap();
        }
        let store = open(&dir).await;
        let mut fps = store.load_fingerprints().await.unwrap();
        fps.sort();
        assert_eq!(
            fps,
            vec![
                ("email:a@b.com".to_string(), "L1".to_string()),
                ("phone:+1".to_string(), "L1".to_string())
            ]
        );
        let view = store.lead("L1").await.unwrap().unwrap();
        assert_eq!(view.raw["email"], "A@B.com", "the original is kept");
        assert_eq!(view.deliveries.len(), 1);
    }

    #[tokio::test]
    async fn a_renewed_lease_outlives_its_first_term_and_only_its_owner_renews() {
        let dir = tempfile::tempdir().unwrap();
        let (store, jobs) = two_leased(&dir, "w1").await;
        let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
        // Renewed at 2,600 for another 1,000 ms: still leased at 3,001.
        assert_eq!(
            store.renew_leases("w1", &ids, 1_000, 2_600).await.unwrap(),
            2
        );
        assert_eq!(store.reclaim_expired(3_001).await.unwrap(), 0);
        assert!(
            store
                .lease("d0", "w2", 10, 1_000, 3_001)
                .await
                .unwrap()
                .is_empty()
        );
        // Another worker cannot renew what it does not hold.
        assert_eq!(
            store.renew_leases("w2", &ids, 60_000, 3_100).await.unwrap(),
            0
        );
        // Without renewal the lease ends: the jobs come back.
        assert_eq!(store.reclaim_expired(3_601).await.unwrap(), 2);
        assert_eq!(
            store.renew_leases("w1", &ids, 1_000, 3_700).await.unwrap(),
            0
        );
        assert_eq!(
            store
                .lease("d0", "w2", 10, 1_000, 3_700)
                .await
                .unwrap()
                .len(),
            2
        );
    }

    #[tokio::test]
    async fn completion_needs_the_lease_and_expired_leases_come_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        store
            .insert_leads(&[lead("L1", "L1", &[], 1)])
            .await
            .unwrap();
        let jobs = store.lease("d0", "w1", 10, 1_000, 2_000).await.unwrap();
        assert_eq!(jobs.len(), 1);
        assert!(
            store
                .lease("d0", "w2", 10, 1_000, 2_000)
                .await
                .unwrap()
                .is_empty(),
            "leased once"
        );
        // The lease expires; another worker takes the job over.
        assert_eq!(store.reclaim_expired(3_001).await.unwrap(), 1);
        let again = store.lease("d0", "w2", 10, 1_000, 3_001).await.unwrap();
        assert_eq!(again.len(), 1);
        let done = JobResult::Delivered {
            crm_id: "9".into(),
            outcome: "created 9".into(),
        };
        // The first worker's late result is refused; the holder's is kept.
        let late = store
            .complete("w1", "a@1", &[(jobs[0].clone(), done.clone())], 3_500)
            .await
            .unwrap();
        assert_eq!(late, vec![false]);
        let ok = store
            .complete("w2", "a@1", &[(again[0].clone(), done)], 3_600)
            .await
            .unwrap();
        assert_eq!(ok, vec![true]);
        let counts = store.counts().await.unwrap();
        assert_eq!((counts.jobs_delivered, counts.jobs_leased), (1, 0));
        assert_eq!(store.outstanding_jobs().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_second_job_for_the_same_person_and_destination_is_not_made() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        store
            .insert_leads(&[lead("L1", "L1", &[], 1)])
            .await
            .unwrap();
        let mut replay = lead("L1b", "L1", &[], 1);
        replay.state = LeadState::Accepted;
        store.insert_leads(&[replay]).await.unwrap();
        assert_eq!(store.outstanding_jobs().await.unwrap(), 1);
        let mut other = lead("L2", "L2", &[], 1);
        other.source = "other".into();
        store.insert_leads(&[other]).await.unwrap();
        let mut by_source = store.outstanding_by_source().await.unwrap();
        by_source.sort();
        assert_eq!(
            by_source,
            vec![("other".to_string(), 1), ("test".to_string(), 1)]
        );
    }

    #[tokio::test]
    async fn a_webhook_delivery_is_taken_once_per_destination_within_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let d = [7u8; 32];
        assert!(store.remember_webhook("crm", &d, 1_000, 0).await.unwrap());
        assert!(!store.remember_webhook("crm", &d, 2_000, 0).await.unwrap());
        assert!(store.remember_webhook("other", &d, 2_000, 0).await.unwrap());
        assert!(
            store
                .remember_webhook("crm", &[8u8; 32], 2_000, 0)
                .await
                .unwrap()
        );
        // Past the window it is forgotten (and taken again).
        assert!(
            store
                .remember_webhook("crm", &d, 9_000, 5_000)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn p0_is_leased_before_older_p2() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let mut old = lead("L1", "L1", &[], 1);
        old.jobs[0].priority = Priority::P2;
        let mut urgent = lead("L2", "L2", &[], 1);
        urgent.jobs[0].priority = Priority::P0;
        urgent.received_at_ms = 1_500;
        store.insert_leads(&[old, urgent]).await.unwrap();
        let jobs = store.lease("d0", "w", 1, 1_000, 2_000).await.unwrap();
        assert_eq!(jobs[0].lead_id, "L2");
    }

    #[tokio::test]
    async fn jobs_of_one_person_go_out_in_acceptance_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let first = lead("L1", "L1", &[], 1);
        let mut update = lead("L2", "L1", &[], 1);
        update.jobs[0].idempotency_key = "L1/d0/v1/r1".into();
        // Even a more urgent update waits for the person's earlier job.
        update.jobs[0].priority = Priority::P0;
        let other = lead("L3", "L3", &[], 1);
        store.insert_leads(&[first, update, other]).await.unwrap();
        let ids = |jobs: &[LeasedJob]| jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>();
        let leased = store.lease("d0", "w", 10, 1_000, 2_000).await.unwrap();
        assert_eq!(ids(&leased), vec!["L1:d0", "L3:d0"]);
        assert!(
            store
                .lease("d0", "w", 10, 1_000, 2_000)
                .await
                .unwrap()
                .is_empty()
        );
        // L1 fails and waits for its retry: L2 still waits behind it.
        let retry = JobResult::Retry {
            next_attempt_at_ms: 5_000,
            error: "503".into(),
            count_attempt: true,
        };
        store
            .complete("w", "a@1", &[(leased[0].clone(), retry)], 2_100)
            .await
            .unwrap();
        assert!(
            store
                .lease("d0", "w", 10, 1_000, 2_500)
                .await
                .unwrap()
                .is_empty()
        );
        let again = store.lease("d0", "w", 10, 1_000, 5_000).await.unwrap();
        assert_eq!(ids(&again), vec!["L1:d0"]);
        let done = JobResult::Delivered {
            crm_id: "9".into(),
            outcome: "created 9".into(),
        };
        store
            .complete("w", "a@1", &[(again[0].clone(), done)], 5_100)
            .await
            .unwrap();
        let next = store.lease("d0", "w", 10, 1_000, 5_200).await.unwrap();
        assert_eq!(ids(&next), vec!["L2:d0"]);
    }

    #[tokio::test]
    async fn persons_keep_their_newest_revision() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        store
            .insert_leads(&[lead("L1", "L1", &[], 0)])
            .await
            .unwrap();
        assert!(matches!(
            store.person("L1").await.unwrap(),
            Some(StoredPerson::FirstLead { ref source, .. }) if source == "test"
        ));
        let with_person = |id: &str, rev: u32| {
            let mut l = lead(id, "L1", &[], 0);
            l.merge = Some(Vec::new());
            let mut person = Person::first(
                "L1",
                NormalizedLead::default(),
                &crate::pipeline::merge::LeadMeta {
                    lead_id: "L1",
                    source: "test",
                    at_ms: 1_000,
                },
            );
            person.revision = rev;
            l.person = Some(person);
            l
        };
        // Two revisions in one group: the last is kept.
        store
            .insert_leads(&[with_person("L2", 1), with_person("L3", 2)])
            .await
            .unwrap();
        // A stale revision never overwrites a newer one.
        store.insert_leads(&[with_person("L4", 1)]).await.unwrap();
        match store.person("L1").await.unwrap() {
            Some(StoredPerson::Merged(record)) => {
                assert_eq!(serde_json::from_str::<Person>(&record).unwrap().revision, 2)
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            store.person_leads("L1").await.unwrap(),
            vec!["L1", "L2", "L3", "L4"]
        );
        assert!(store.person("nobody").await.unwrap().is_none());
        // Several in one read: a merged person, a first lead, and nobody.
        store
            .insert_leads(&[lead("L9", "L9", &[], 0)])
            .await
            .unwrap();
        let found = store
            .persons(&["L1".into(), "L9".into(), "nobody".into()])
            .await
            .unwrap();
        assert_eq!(found.len(), 2);
        assert!(matches!(found["L1"], StoredPerson::Merged(_)));
        assert!(
            matches!(found["L9"], StoredPerson::FirstLead { ref source, .. } if source == "test")
        );
        let view = store.lead("L2").await.unwrap().unwrap();
        assert!(view.audit.iter().any(|e| e.event == "merged"));
    }

    #[tokio::test]
    async fn dead_letters_replay_once_and_discard_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let (store, jobs) = two_leased(&dir, "w").await;
        let dead: Vec<_> = jobs
            .into_iter()
            .map(|j| {
                (
                    j,
                    JobResult::Dead {
                        error: "400 bad".into(),
                    },
                )
            })
            .collect();
        store.complete("w", "a@1", &dead, 2_100).await.unwrap();
        assert_eq!(store.dead_letters(Some("d0"), 10).await.unwrap().len(), 2);
        assert!(
            store
                .dead_letters(Some("other"), 10)
                .await
                .unwrap()
                .is_empty()
        );
        let detail = store.job("L1:d0").await.unwrap().unwrap();
        assert_eq!(detail.person_id, "L1");
        assert_eq!(detail.events.len(), 1);
        assert_eq!(detail.events[0].event, "dead_lettered");

        let new_payload = JobPayload::V1 {
            properties: vec![("email".into(), "new@b.com".into())],
        };
        let replay = |id: &str, remapped: Option<(JobPayload, String)>| Replay {
            id: id.into(),
            remapped,
            adapter: "a@2".into(),
        };
        let out = store
            .replay(
                &[
                    replay("L1:d0", Some((new_payload.clone(), "m2".into()))),
                    replay("L1:d0", None),
                    replay("nope", None),
                ],
                3_000,
            )
            .await
            .unwrap();
        let statuses: Vec<DlqStatus> = out.iter().map(|o| o.status).collect();
        assert_eq!(
            statuses,
            vec![DlqStatus::Replayed, DlqStatus::NotDead, DlqStatus::NotFound]
        );
        assert_eq!(out[0].mapping_version.as_deref(), Some("m2"));
        let again = store.lease("d0", "w", 10, 1_000, 3_000).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(
            (
                again[0].attempts,
                JobPayload::parse(&again[0].payload).unwrap()
            ),
            (0, new_payload)
        );

        let out = store
            .discard(&["L2:d0".into()], "spam", 4_000)
            .await
            .unwrap();
        assert_eq!(out[0].status, DlqStatus::Discarded);
        assert!(store.dead_letters(None, 10).await.unwrap().is_empty());
        let detail = store.job("L2:d0").await.unwrap().unwrap();
        assert_eq!(detail.job.discarded.unwrap()["reason"], "spam");
        assert_eq!(detail.events.last().unwrap().event, "discarded");
        let out = store.replay(&[replay("L2:d0", None)], 5_000).await.unwrap();
        assert_eq!(out[0].status, DlqStatus::NotDead);
    }

    #[tokio::test]
    async fn an_old_payload_is_not_replayed_over_a_delivered_update() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let mut update = lead("L2", "L1", &[], 1);
        update.jobs[0].idempotency_key = "L1/d0/v1/r1".into();
        store
            .insert_leads(&[lead("L1", "L1", &[], 1), update])
            .await
            .unwrap();
        let first = store.lease("d0", "w", 10, 1_000, 2_000).await.unwrap();
        store
            .complete(
                "w",
                "a@1",
                &[(first[0].clone(), JobResult::Dead { error: "x".into() })],
                2_000,
            )
            .await
            .unwrap();
        let second = store.lease("d0", "w", 10, 1_000, 2_000).await.unwrap();
        assert_eq!(
            second[0].id, "L2:d0",
            "a dead job no longer holds its chain"
        );
        let done = JobResult::Delivered {
            crm_id: "9".into(),
            outcome: "updated 9".into(),
        };
        store
            .complete("w", "a@1", &[(second[0].clone(), done)], 2_000)
            .await
            .unwrap();
        let replay = |remapped| Replay {
            id: "L1:d0".into(),
            remapped,
            adapter: "a@1".into(),
        };
        let out = store.replay(&[replay(None)], 3_000).await.unwrap();
        assert_eq!(out[0].status, DlqStatus::Superseded);
        let out = store
            .replay(
                &[replay(Some((
                    JobPayload::V1 {
                        properties: Vec::new(),
                    },
                    "m2".into(),
                )))],
                3_000,
            )
            .await
            .unwrap();
        assert_eq!(out[0].status, DlqStatus::Replayed);
    }

    /// Every file of the store, as bytes.
    fn files_of(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.is_file())
            .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
            .collect()
    }

    fn find(files: &[(String, Vec<u8>)], needle: &str) -> Option<String> {
        files
            .iter()
            .find(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
            .map(|(name, _)| name.clone())
    }

    #[tokio::test]
    async fn plain_values_are_sealed_by_a_pass_and_a_rotation_seals_them_again() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let secrets = [
            "a@b.com",
            "A@B.com",
            "rt-secret-77",
            "kv-value-42",
            "refused-x9",
        ];
        // Written before encryption was on.
        {
            let plain = SqliteStore::open(&url, Durability::Full, Crypt::off())
                .await
                .unwrap();
            let mut l1 = lead("L1", "L1", &["email:a@b.com"], 1);
            l1.forms = StoredForms::new(
                &Crypt::off(),
                "L1",
                &serde_json::json!({"email": "A@B.com"}),
                &NormalizedLead {
                    email: Some("a@b.com".into()),
                    ..Default::default()
                },
            );
            plain.insert_leads(&[l1]).await.unwrap();
            assert!(
                plain
                    .kv_set("ns", "a@b.com", b"kv-value-42", None, 0, 10)
                    .await
                    .unwrap()
            );
            let token = StoredRefreshToken {
                refresh_token: "rt-secret-77".into(),
                configured_hash: "h".into(),
            };
            plain
                .set_oauth_refresh_token("d0", &token, 0)
                .await
                .unwrap();
            let jobs = plain.lease("d0", "w", 10, 1_000, 1_000).await.unwrap();
            let retry = JobResult::Retry {
                next_attempt_at_ms: 0,
                error: "refused-x9 for a@b.com".into(),
                count_attempt: true,
            };
            plain
                .complete("w", "a", &[(jobs[0].clone(), retry)], 1_000)
                .await
                .unwrap();
            plain.scrub().await.unwrap();
            assert!(
                find(&files_of(dir.path()), "rt-secret-77").is_some(),
                "plain before"
            );
        }
        let crypt = Crypt::from_key_file(&dir.path().join("keys")).unwrap();
        let sqlite = Arc::new(
            SqliteStore::open(&url, Durability::Full, crypt)
                .await
                .unwrap(),
        );
        let store: Arc<dyn Store> = sqlite.clone();
        // Readable before the pass (plain), and after it.
        let check = async |store: &Arc<dyn Store>| {
            let view = store.lead("L1").await.unwrap().unwrap();
            assert_eq!(view.raw["email"], "A@B.com");
            assert_eq!(
                view.deliveries[0].last_error.as_deref(),
                Some("refused-x9 for a@b.com")
            );
            assert_eq!(
                view.audit.last().unwrap().detail["error"],
                "refused-x9 for a@b.com"
            );
            assert_eq!(
                store.kv_get("ns", "a@b.com", 0).await.unwrap().as_deref(),
                Some(&b"kv-value-42"[..])
            );
            let token = store.oauth_refresh_token("d0").await.unwrap().unwrap();
            assert_eq!(token.refresh_token, "rt-secret-77");
        };
        check(&store).await;
        assert_eq!(store.sealed_under().await.unwrap(), None);
        let rotation = rotation::Rotation::start(store.clone()).await.unwrap();
        while !rotation.done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let pass = rotation.view().pass;
        assert!(pass.resealed >= 8, "{pass:?}");
        assert_eq!(store.sealed_under().await.unwrap().as_deref(), Some("k1"));
        check(&store).await;
        let files = files_of(dir.path());
        for secret in secrets {
            assert_eq!(find(&files, secret), None, "{secret} left on disk");
        }
        // The fingerprint is blinded, as ingest now makes it.
        let fps = store.load_fingerprints().await.unwrap();
        assert_eq!(fps[0].0, store.crypt().fingerprint("email:a@b.com".into()));

        // A rotation: a new key, every value sealed again under it.
        let view = rotation.rotate().unwrap();
        assert_eq!(view.current.as_deref(), Some("k2"));
        assert_eq!(view.keys, ["k1", "k2"]);
        while !rotation.done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        check(&store).await;
        let under_k2 = |sql: &'static str| {
            let pool = sqlite.pool.clone();
            async move {
                let values: Vec<String> = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
                assert!(!values.is_empty(), "{sql}");
                for v in values {
                    assert!(v.starts_with("lg1:k2:"), "{sql}: {v}");
                }
            }
        };
        under_k2("SELECT raw FROM leads UNION ALL SELECT normalized FROM leads UNION ALL SELECT decision FROM leads").await;
        under_k2("SELECT payload FROM jobs UNION ALL SELECT last_error FROM jobs").await;
        under_k2("SELECT detail FROM events").await;
        under_k2("SELECT refresh_token FROM oauth_tokens").await;
        under_k2("SELECT CAST(value AS TEXT) FROM plugin_kv").await;
        assert_eq!(store.sealed_under().await.unwrap().as_deref(), Some("k2"));
    }

    #[tokio::test]
    async fn retention_leaves_tombstones_and_takes_expired_dead_letters_out() {
        use crate::pipeline::merge::{LeadMeta, Person};
        use crate::store::retention::{Retention, run_once};
        const DAY: i64 = 86_400_000;
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir).await;
        let at = |mut l: NewLead, day: i64| {
            l.received_at_ms = day * DAY;
            l
        };
        let mut l2 = at(lead("L2", "L1", &[], 0), 2);
        let first = NormalizedLead {
            email: Some("a@b.com".into()),
            ..Default::default()
        };
        l2.person = Some(Person::first(
            "L1",
            first,
            &LeadMeta {
                lead_id: "L1",
                source: "test",
                at_ms: DAY,
            },
        ));
        store
            .insert_leads(&[
                at(lead("L1", "L1", &["email:a@b.com"], 1), 1),
                l2,
                at(lead("L3", "L3", &["email:c@d.com"], 1), 80),
            ])
            .await
            .unwrap();
        // L3's job is dead-lettered on day 85.
        let jobs = store.lease("d0", "w", 10, DAY, 85 * DAY).await.unwrap();
        let l3 = jobs.iter().find(|j| j.lead_id == "L3").unwrap().clone();
        let dead = JobResult::Dead {
            error: "refused c@d.com".into(),
        };
        store
            .complete("w", "a", &[(l3, dead)], 85 * DAY)
            .await
            .unwrap();
        let retention = Retention {
            raw_days: Some(30),
            leads_days: Some(60),
            dead_letters_days: Some(5),
        };
        assert!(retention.validate(30).is_ok());
        assert_eq!(retention.validate(60).unwrap_err().0, "leads_days");
        assert_eq!(retention.validate(0).unwrap_err().0, "leads_days");
        let sources = [("test".to_string(), retention)];
        let purged = run_once(&store, &sources, 100 * DAY).await.unwrap();
        assert_eq!(
            (
                purged.raw,
                purged.leads,
                purged.persons,
                purged.dead_letters
            ),
            (2, 2, 1, 1),
            "{purged:?}"
        );
        // Tombstones: ids, times, status and decision stay.
        let l1 = store.lead("L1").await.unwrap().unwrap();
        assert_eq!(l1.raw, serde_json::json!({}));
        assert!(l1.normalized.get("email").is_none(), "{:?}", l1.normalized);
        assert_eq!(l1.erased_by.as_deref(), Some("retention"));
        assert_eq!(l1.received_at_ms, DAY);
        assert_eq!(l1.deliveries[0].payload, serde_json::json!([]));
        assert!(store.person("L1").await.unwrap().is_none());
        // L3 is within its retention; only its dead letter went.
        let l3 = store.lead("L3").await.unwrap().unwrap();
        assert_eq!(l3.raw["email"], "A@B.com");
        assert!(l3.erased_at_ms.is_none());
        assert_eq!(
            l3.deliveries[0].discarded.as_ref().unwrap()["reason"],
            "retention"
        );
        assert_eq!(l3.deliveries[0].last_error, None);
        assert!(store.dead_letters(None, 10).await.unwrap().is_empty());
        // Nothing more to do.
        let again = run_once(&store, &sources, 100 * DAY).await.unwrap();
        assert_eq!(again, Default::default());
    }
}
