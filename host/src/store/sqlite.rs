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

use super::rows::{self, Col};
use super::seal::{Column, Crypt};
use super::sql::{
    Cells, Delivered, ERASURE_MAPPING, Forget, Forgotten, SEALED_TABLES, completed_and_leased,
    completion_rows, empty_normalized, empty_payload, erasure_at_crms, event_row, job_view,
    job_view_sql, kv_row, lead_view, leased_job, next_cursor, person_row, redacted_decision,
    resealed_kv,
};
use super::*;

/// Every write goes through one connection (`writer`): SQLite takes one
/// writer at a time, and writers on several connections wait for each
/// other in SQLite's busy handler, which sleeps (1, 2, 5, 10 ms …) while
/// the cores idle. On one connection they queue in order instead. That
/// connection belongs to one task (`writer_loop`) that runs the queued
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

/// Most rows of the dedupe index's load taken from the channel at once.
const LOAD_BATCH: usize = 256;

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
            .pragma("secure_delete", "on")
            // A new store's pages are 8 KiB: a person's sealed golden
            // record (~2.5 KB) took a 4 KiB page of its own (two do not
            // fit), and 8 KiB pages hold three. At 100k leads the file is
            // 22% smaller (460 -> 359 MB), ingest no slower. A store made
            // with 4 KiB pages keeps them (only a VACUUM changes them).
            .page_size(8192);
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
            // Room for the dedupe index's load to read ahead of its
            // consumer (see `load_dedupe_records`).
            .connect_with(options.read_only(true).row_buffer_size(4 * LOAD_BATCH))
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

const EVENTS_OF_LEAD: &str = "SELECT lead_id, job_id, at, stage, event, detail FROM events
                              WHERE lead_id = ?1 ORDER BY seq";
const EVENTS_OF_JOB: &str = "SELECT lead_id, job_id, at, stage, event, detail FROM events
                             WHERE job_id = ?1 ORDER BY seq";

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
        // Every lead of the group goes in or none does: its counts by
        // status in one statement (migration 0012 says why not a trigger).
        let duplicates = leads
            .iter()
            .filter(|l| l.state == LeadState::Duplicate)
            .count() as i64;
        statements.push((
            "INSERT INTO lead_counts (status, n) VALUES ('accepted', ?1), ('duplicate', ?2)
             ON CONFLICT (status) DO UPDATE SET n = n + excluded.n",
            args([(leads.len() as i64 - duplicates).into(), duplicates.into()])?,
        ));
        chunked(&JOB_INSERTS, rows.jobs, &mut statements)?;
        chunked(&PERSON_UPSERTS, rows.persons, &mut statements)?;
        self.transaction(statements).await?;
        Ok(())
    }

    async fn load_dedupe_records(
        &self,
        since_ms: i64,
        each: &mut (dyn FnMut(super::DedupeRecord) + Send),
    ) -> Result<i64, StoreError> {
        use futures_util::{FutureExt as _, StreamExt as _, TryStreamExt as _};
        let mut rows = sqlx::query(
            "SELECT id, person_id, received_at, normalized, fingerprints FROM leads
             WHERE received_at >= ?1 ORDER BY rowid",
        )
        .bind(since_ms)
        .fetch(&self.pool)
        // Asked again after its end, it says "ended" again.
        .fuse();
        // The rows come from the connection's own thread through a bounded
        // channel (`row_buffer_size`). Taken one at a time, each row would wake that
        // thread (the channel full) or this one (empty): two context
        // switches a row, a quarter of a rebuild's time. So this waits for
        // one row, takes every row already there, and works through them
        // while the connection's thread fills the channel again.
        let mut batch = Vec::with_capacity(LOAD_BATCH);
        while let Some(first) = rows.try_next().await? {
            batch.push(first);
            while batch.len() < LOAD_BATCH
                && let Some(next) = rows.try_next().now_or_never()
            {
                match next? {
                    Some(r) => batch.push(r),
                    None => break,
                }
            }
            for r in batch.drain(..) {
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
        }
        // One host writes this store: it has no feed.
        Ok(0)
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
        let mut done = std::collections::HashSet::new();
        let mut leased = Vec::new();
        for r in rows {
            // Tagged 'c' (a result applied) or 'l' (a job leased).
            if r.get::<&str, _>(0) == "c" {
                done.insert(r.text(1));
            } else {
                leased.push(leased_job(&r, 1, &self.crypt)?);
            }
        }
        Ok(completed_and_leased(results, done, leased))
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
        let jobs = sqlx::query(job_view_sql!("WHERE lead_id = ?1 ORDER BY seq"))
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| job_view(r, &self.crypt))
            .collect::<Result<Vec<_>, _>>()?;
        let stored = self.events(EVENTS_OF_LEAD, id).await?;
        lead_view(&row, jobs, stored, &self.crypt).map(Some)
    }

    async fn person(&self, id: &str) -> Result<Option<StoredPerson>, StoreError> {
        Ok(self.persons(&[id.to_string()]).await?.remove(id))
    }

    async fn persons(
        &self,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, StoredPerson>, StoreError> {
        let ids = serde_json::to_string(ids).expect("ids serialize");
        // An erased person is no person (its golden record went with it).
        let rows = sqlx::query(
            "SELECT l.id, p.record, l.source, l.received_at,
                    CASE WHEN p.record IS NULL THEN l.normalized END
             FROM json_each(?1) AS j JOIN leads l ON l.id = j.value
             LEFT JOIN persons p ON p.id = l.id
             WHERE p.id IS NOT NULL OR l.erased_at IS NULL",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| person_row(r, &self.crypt)).collect()
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
        let job = job_view(&row, &self.crypt)?;
        let person_id: String = sqlx::query_scalar("SELECT person_id FROM leads WHERE id = ?1")
            .bind(&lead_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(Some(JobDetail {
            events: self.events(EVENTS_OF_JOB, id).await?,
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
        deletable: &[String],
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
        // The records the person has in each CRM (deletions, of an
        // erasure before, aside).
        let delivered = sqlx::query(
            "SELECT destination, crm_id, MIN(lead_id), MIN(source) FROM jobs
             WHERE lead_id IN (SELECT id FROM leads WHERE person_id = ?1) AND crm_id IS NOT NULL
               AND mapping_version <> ?2
             GROUP BY destination, crm_id ORDER BY destination, crm_id",
        )
        .bind(person_id)
        .bind(ERASURE_MAPPING)
        .fetch_all(&mut *tx)
        .await?;
        let delivered = Delivered::from_rows(&delivered);
        let ids = serde_json::to_string(&receipt.leads).expect("ids serialize");
        let forgotten = self
            .forget_leads(&mut tx, &ids, Forget::Erasure, now_ms)
            .await?;
        // The deletions at the CRMs, queued after the person's deliveries
        // stopped.
        let (destinations, deletions) = erasure_at_crms(delivered, deletable, now_ms, &self.crypt);
        receipt.destinations = destinations;
        let mut statements = Vec::new();
        chunked(&JOB_INSERTS, deletions, &mut statements)?;
        for (text, args) in statements {
            sqlx::query_with(sqlx::AssertSqlSafe(text), args)
                .execute(&mut *tx)
                .await?;
        }
        receipt.jobs = forgotten.jobs;
        receipt.deliveries_stopped = forgotten.deliveries_stopped;
        receipt.dead_letters = forgotten.dead_letters;
        receipt.audit_entries = forgotten.audit_entries;
        // Plugins' expired entries (an adapter's memory of the person may
        // be among them) leave the file with the scrub below.
        sqlx::query("DELETE FROM plugin_kv WHERE expires_at IS NOT NULL AND expires_at <= ?1")
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        receipt.golden_record = sqlx::query("DELETE FROM persons WHERE id = ?1")
            .bind(person_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
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
            let reason = Forget::Retention.reason(now_ms);
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
        // Kept as rows change (migration 0012: jobs by triggers, leads by
        // `insert_leads`): a read is a few rows, not a scan of the tables.
        let leads = sqlx::query(
            "SELECT COALESCE(SUM(n), 0), COALESCE(SUM(IIF(status = 'duplicate', n, 0)), 0)
             FROM lead_counts",
        )
        .fetch_one(&self.pool)
        .await?;
        let mut counts = StoreCounts {
            leads: leads.get::<i64, _>(0) as u64,
            duplicates: leads.get::<i64, _>(1) as u64,
            ..Default::default()
        };
        for r in sqlx::query("SELECT destination, state, held, n FROM job_counts WHERE n > 0")
            .fetch_all(&self.pool)
            .await?
        {
            counts.add_jobs(
                r.text(0),
                JobState::parse(&r.text(1))?,
                r.get::<bool, _>(2),
                r.int(3) as u64,
            );
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
                Ok((lead, job_view(&r, &self.crypt)?))
            })
            .collect()
    }
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
        for r in sqlx::query(
            "SELECT id, decision FROM leads WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(ids)
        .fetch_all(&mut **tx)
        .await?
        {
            let id = r.text(0);
            if let Some(redacted) = redacted_decision(&self.crypt, &id, r.text(1))? {
                sqlx::query("UPDATE leads SET decision = ?2 WHERE id = ?1")
                    .bind(&id)
                    .bind(redacted)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        sqlx::query(
            "UPDATE leads SET raw = '{}', normalized = ?2, merge = NULL, fingerprints = '',
                              erased_at = ?3, erased_by = ?4
             WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(ids)
        .bind(empty_normalized())
        .bind(now_ms)
        .bind(why.as_str())
        .execute(&mut **tx)
        .await?;
        let reason = why.reason(now_ms);
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
            let columns = t.rewritten();
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
            let rowid = r.int(0);
            after = rowid;
            let values = (0..sql.updates.len()).map(|i| r.opt_text(2 + i)).collect();
            for (i, new, old) in table.resealed(keyring, &r.text(1), values)? {
                statements.push((
                    sql.updates[i].as_str(),
                    args([new.into(), rowid.into(), old.into()])?,
                ));
            }
        }
        let changed = statements.len() as u64;
        if !statements.is_empty() {
            self.transaction(statements).await?;
        }
        Ok(Resealed {
            next: Some(next_cursor(cursor.table, rows.len(), after, limit)),
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
            let Some((blind, new)) = resealed_kv(keyring, &namespace, &key, &value)? else {
                continue;
            };
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

    /// The audit entries `sql` selects for `id`, in order.
    async fn events(&self, sql: &'static str, id: &str) -> Result<Vec<Event>, StoreError> {
        sqlx::query(sql)
            .bind(id)
            .fetch_all(&self.pool)
            .await?
            .iter()
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

/// One transaction: the events (first, while the lease still tells which
/// jobs will apply), the results, then the next lease. Rows come back
/// tagged 'c' (a result applied) or 'l' (a job leased). Results and events
/// are applied only where the owner (?3) still holds the lease.
const COMPLETE_AND_LEASE: &str = "BEGIN IMMEDIATE;
    INSERT INTO events (lead_id, job_id, at, stage, event, detail)
    SELECT e.value->>'lead', e.value->>'job', ?2, ?8, e.value->>'ev',
           e.value->>'detail'
    FROM jsonb_each(jsonb(?4)) AS e JOIN jobs ON jobs.id = e.value->>'job'
    WHERE jobs.state = 'leased' AND jobs.lease_owner = ?3
      AND jobs.lease_token = e.value->>'tok';
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
      AND jobs.lease_owner = ?3 AND jobs.lease_token = r.value->>'tok'
    RETURNING 'c', jobs.id;
    UPDATE jobs SET state = 'leased', lease_owner = ?3, lease_expires_at = ?5,
                    updated_at = ?2, lease_token = lease_token + 1
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
              payload, created_at, lease_token;
    COMMIT;";
