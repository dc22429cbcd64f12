//! The PostgreSQL store, for several hosts sharing the work: the same
//! tables as SQLite (migrations in `migrations/postgres`), with
//! PostgreSQL's own ways to the same guarantees. A group of leads goes in
//! as one statement per table (`INSERT … SELECT FROM UNNEST` of one array
//! per column, so the statement text is the same whatever the group's
//! size); leases are taken with `FOR UPDATE SKIP LOCKED`, so hosts leasing
//! at once never wait for each other nor take the same job; a result is
//! applied only where its worker still holds the lease, in the same
//! statement that records its event. Migrations take PostgreSQL's
//! advisory lock, so hosts starting together migrate once.

use std::str::FromStr;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicI64, Ordering};

use async_trait::async_trait;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Arguments, ConnectOptions, Postgres, Row};

use super::rows::{self, Col};
use super::seal::{Column, Crypt};
use super::sql::{
    Cells, Delivered, ERASURE_MAPPING, Forget, Forgotten, SEALED_TABLES, completed_and_leased,
    completion_rows, empty_normalized, empty_payload, erasure_at_crms, event_row, job_view,
    job_view_sql, kv_row, lead_view, leased_job, next_cursor, person_row, redacted_decision,
    resealed_kv,
};
use super::*;

/// Connections per host: delivery workers, ingest commits and reads share
/// them.
const POOL_SIZE: u32 = 16;

pub struct PgStore {
    pool: PgPool,
    crypt: Crypt,
    /// The connection holding the dedupe turn's advisory lock (a session
    /// lock: the session's end, even a cut one, gives the turn back).
    turn: tokio::sync::Mutex<Option<PgConnection>>,
    turn_options: PgConnectOptions,
    /// The advisory lock's two keys: leadgate's, and the schema's.
    turn_lock: (i32, i32),
    /// The token this host took with its last turn (0: never took one).
    fence: AtomicI64,
    /// Who holds the turn, as `dedupe_turn.holder` shows.
    host: String,
}

/// The first key of the dedupe turn's advisory lock ("lgtu").
const TURN_LOCK: i32 = 0x6c67_7475;

/// The feed's position: the last sequence number of a lead or an erasure.
const FEED_POSITION: &str = "SELECT GREATEST(COALESCE((SELECT max(seq) FROM leads), 0),
                                             COALESCE((SELECT max(seq) FROM erasures), 0))";

impl PgStore {
    /// Connects to `url` (`postgres://user@host/db`; `?options=-c
    /// search_path=…` picks a schema) and migrates.
    pub async fn open(
        url: &str,
        durability: Durability,
        crypt: Crypt,
    ) -> Result<PgStore, StoreError> {
        PgStore::connect(PgConnectOptions::from_str(url)?, durability, crypt).await
    }

    pub async fn connect(
        options: PgConnectOptions,
        durability: Durability,
        crypt: Crypt,
    ) -> Result<PgStore, StoreError> {
        let options = match durability {
            Durability::Full => options,
            // A commit returns before its WAL reaches the disk: a crash of
            // the database server's machine may lose the last commits, a
            // crash of the host loses nothing it acknowledged.
            Durability::Normal => options.options([("synchronous_commit", "off")]),
        };
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        // Hosts on other schemas of the same database do not share a turn.
        let schema: i32 = sqlx::query_scalar("SELECT hashtext(current_schema())")
            .fetch_one(&pool)
            .await?;
        Ok(PgStore {
            pool,
            crypt,
            turn: tokio::sync::Mutex::new(None),
            // The server notices a cut session within ~10 s (and gives the
            // turn to another host); a turn is not waited for forever.
            turn_options: options.options([
                ("tcp_keepalives_idle", "4"),
                ("tcp_keepalives_interval", "2"),
                ("tcp_keepalives_count", "3"),
                ("lock_timeout", "10s"),
            ]),
            turn_lock: (TURN_LOCK, schema),
            fence: AtomicI64::new(0),
            host: format!(
                "{}/{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into()),
                uuid::Uuid::now_v7().simple()
            ),
        })
    }

    /// Waits for the turn's lock on `conn`, then takes the next token.
    async fn take_turn_on(&self, conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
        sqlx::query("SELECT pg_advisory_lock($1, $2)")
            .bind(self.turn_lock.0)
            .bind(self.turn_lock.1)
            .execute(&mut *conn)
            .await?;
        sqlx::query_scalar(
            "UPDATE dedupe_turn SET token = token + 1, holder = $1, taken_at = $2
             WHERE id = 1 RETURNING token",
        )
        .bind(&self.host)
        .bind(crate::now_ms())
        .fetch_one(&mut *conn)
        .await
    }

    /// Fails with [`StoreError::Fenced`] when another host took the
    /// dedupe turn since this host's last (checked in the transaction
    /// that writes leads: the row lock orders it with the taking).
    async fn check_fence(&self, tx: &mut Tx<'_>) -> Result<(), StoreError> {
        let fence = self.fence.load(Ordering::Acquire);
        if fence == 0 {
            return Ok(());
        }
        let token: i64 = sqlx::query_scalar("SELECT token FROM dedupe_turn WHERE id = 1 FOR SHARE")
            .fetch_one(&mut **tx)
            .await?;
        if token != fence {
            return Err(StoreError::Fenced);
        }
        Ok(())
    }
}

/// The SQL type of each column of a multi-row insert.
#[derive(Clone, Copy)]
enum Ty {
    Text,
    Int,
}

/// `INSERT INTO table (columns) SELECT … FROM UNNEST($1::text[], …) tail`,
/// rows kept in their order (identity columns follow it).
fn unnest_insert(table: &str, columns: &str, types: &[Ty], tail: &str) -> String {
    let arrays: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let ty = match t {
                Ty::Text => "text[]",
                Ty::Int => "int8[]",
            };
            format!("${}::{ty}", i + 1)
        })
        .collect();
    let names: Vec<String> = (0..types.len()).map(|i| format!("c{i}")).collect();
    format!(
        "INSERT INTO {table} ({columns})
         SELECT {names} FROM UNNEST({arrays}) WITH ORDINALITY AS t({names}, ord)
         ORDER BY ord {tail}",
        names = names.join(", "),
        arrays = arrays.join(", "),
    )
}

use Ty::{Int as I, Text as T};

const LEAD_TYPES: [Ty; 12] = [T, T, I, T, T, T, I, I, T, T, T, T];
const JOB_TYPES: [Ty; 17] = [T, T, T, T, T, I, I, T, T, I, T, I, I, I, T, T, T];
const PERSON_TYPES: [Ty; 4] = [T, I, T, I];

static LEAD_INSERT: LazyLock<String> =
    LazyLock::new(|| unnest_insert("leads", rows::LEAD_COLUMNS, &LEAD_TYPES, ""));
// A retried request cannot make a second job for the same person ×
// destination (ON CONFLICT on the idempotency key).
static JOB_INSERT: LazyLock<String> = LazyLock::new(|| {
    unnest_insert(
        "jobs",
        rows::JOB_COLUMNS,
        &JOB_TYPES,
        "ON CONFLICT (idempotency_key) DO NOTHING",
    )
});
static PERSON_UPSERT: LazyLock<String> = LazyLock::new(|| {
    unnest_insert(
        "persons",
        rows::PERSON_COLUMNS,
        &PERSON_TYPES,
        "ON CONFLICT (id) DO UPDATE SET revision = excluded.revision,
             record = excluded.record, updated_at = excluded.updated_at
         WHERE excluded.revision > persons.revision",
    )
});

/// The arguments of an [`unnest_insert`]: one array per column.
fn unnest_args<const W: usize>(
    types: &[Ty; W],
    rows: Vec<[Col; W]>,
) -> Result<PgArguments, StoreError> {
    let mut texts: Vec<Vec<Option<String>>> = vec![Vec::with_capacity(rows.len()); W];
    let mut ints: Vec<Vec<Option<i64>>> = vec![Vec::with_capacity(rows.len()); W];
    for row in rows {
        for (i, col) in row.into_iter().enumerate() {
            match (types[i], col) {
                (Ty::Text, Col::Text(t)) => texts[i].push(Some(t)),
                (Ty::Text, Col::Null) => texts[i].push(None),
                (Ty::Int, Col::Int(n)) => ints[i].push(Some(n)),
                (Ty::Int, Col::Null) => ints[i].push(None),
                (_, other) => {
                    return Err(StoreError::Corrupt(format!(
                        "column {i} of a new row: {other:?} where its table has another type"
                    )));
                }
            }
        }
    }
    let mut args = PgArguments::default();
    for (i, ty) in types.iter().enumerate() {
        match ty {
            Ty::Text => args.add(std::mem::take(&mut texts[i])),
            Ty::Int => args.add(std::mem::take(&mut ints[i])),
        }
        .map_err(|e| StoreError::Database(sqlx::Error::Encode(e)))?;
    }
    Ok(args)
}

/// Applies a group's results where their worker still holds the lease and
/// records each applied one's event, in one statement (`$1` results and
/// `$5` events as made by [`completion_rows`]); returns the ids applied.
const COMPLETE: &str = "WITH r AS (
        SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(id text, st text, next bigint,
            \"add\" bigint, err text, crm text, \"out\" text, fin bigint, tok bigint)
    ), done AS (
        UPDATE jobs SET state = r.st,
            next_attempt_at = COALESCE(r.next, jobs.next_attempt_at),
            attempts = jobs.attempts + r.\"add\",
            last_error = COALESCE(r.err, jobs.last_error),
            crm_id = COALESCE(r.crm, jobs.crm_id),
            outcome = COALESCE(r.\"out\", jobs.outcome),
            lease_owner = NULL, lease_expires_at = NULL, updated_at = $2,
            finished_at = r.fin
        FROM r
        WHERE jobs.id = r.id AND jobs.state = 'leased' AND jobs.lease_owner = $3
          AND jobs.lease_token = r.tok
        RETURNING jobs.id
    ), ev AS (
        INSERT INTO events (lead_id, job_id, at, stage, event, detail)
        SELECT e.lead, e.job, $2, $4, e.ev, e.detail
        FROM ROWS FROM (jsonb_to_recordset($5::jsonb)
                        AS (lead text, job text, ev text, detail text))
             WITH ORDINALITY AS e(lead, job, ev, detail, ord)
        JOIN done ON done.id = e.job
        ORDER BY e.ord
    )
    SELECT id FROM done";

/// Leases up to `$4` due jobs of destination `$3` for `$1` until `$5`
/// (`$2` now): by priority, then due time, then acceptance; a job waits
/// while an earlier one of its chain is pending or leased. Rows another
/// host is leasing are skipped, not waited for.
/// (The picked rows are a CTE: PostgreSQL runs a CTE once, where an `IN
/// (subquery … LIMIT)` may be run again per row and overshoot the limit.)
const LEASE: &str = "WITH picked AS (
        SELECT seq FROM jobs j
        WHERE state = 'pending' AND destination = $3 AND next_attempt_at <= $2 AND held IS NULL
          AND (chain IS NULL OR NOT EXISTS (
              SELECT 1 FROM jobs e
              WHERE e.chain = j.chain AND e.seq < j.seq
                AND e.state IN ('pending', 'leased')))
        ORDER BY priority, next_attempt_at, seq
        LIMIT $4
        FOR UPDATE SKIP LOCKED
    )
    UPDATE jobs SET state = 'leased', lease_owner = $1, lease_expires_at = $5, updated_at = $2,
                    lease_token = jobs.lease_token + 1
    FROM picked
    WHERE jobs.seq = picked.seq AND jobs.state = 'pending'
    RETURNING jobs.id, jobs.seq, jobs.lead_id, jobs.idempotency_key, jobs.attempts,
              jobs.priority, jobs.payload, jobs.created_at, jobs.lease_token";

#[async_trait]
impl Store for PgStore {
    fn crypt(&self) -> &Crypt {
        &self.crypt
    }

    async fn insert_leads(&self, leads: &[NewLead]) -> Result<(), StoreError> {
        if leads.is_empty() {
            return Ok(());
        }
        let rows = rows::new_rows(leads, &self.crypt);
        let mut tx = self.pool.begin().await?;
        self.check_fence(&mut tx).await?;
        // Before the new jobs: a held job goes ahead of the update of its
        // chain that this group may add.
        for l in leads.iter().filter(|l| l.stop_pending) {
            let stopped =
                serde_json::json!({"reason": "consent withdrawn", "at_ms": l.received_at_ms});
            sqlx::query(
                "UPDATE jobs SET state = 'dead', discarded = $2, held = NULL,
                                 finished_at = $3, updated_at = $3
                 WHERE state = 'pending'
                   AND lead_id IN (SELECT id FROM leads WHERE person_id = $1)",
            )
            .bind(&l.person_id)
            .bind(stopped.to_string())
            .bind(l.received_at_ms)
            .execute(&mut *tx)
            .await?;
        }
        let release: Vec<&String> = leads.iter().flat_map(|l| &l.release).collect();
        if !release.is_empty() {
            let now = leads.iter().map(|l| l.received_at_ms).max().unwrap_or(0);
            sqlx::query(
                "UPDATE jobs SET held = NULL, next_attempt_at = $1, updated_at = $1
                 WHERE held IS NOT NULL AND state = 'pending' AND chain = ANY($2)",
            )
            .bind(now)
            .bind(release)
            .execute(&mut *tx)
            .await?;
        }
        let inserts = [
            (LEAD_INSERT.as_str(), unnest_args(&LEAD_TYPES, rows.leads)?),
            (JOB_INSERT.as_str(), unnest_args(&JOB_TYPES, rows.jobs)?),
            (
                PERSON_UPSERT.as_str(),
                unnest_args(&PERSON_TYPES, rows.persons)?,
            ),
        ];
        for (sql, args) in inserts {
            sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn load_dedupe_records(
        &self,
        since_ms: i64,
        each: &mut (dyn FnMut(super::DedupeRecord) + Send),
    ) -> Result<i64, StoreError> {
        use futures_util::TryStreamExt as _;
        // One snapshot for the position and the rows: what commits after it
        // is in the feed after the position, and only there. (Leads and
        // erasures are written under the dedupe turn, by one committer at
        // a time, so the feed's sequence is their commit order.)
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let position: i64 = sqlx::query_scalar(FEED_POSITION)
            .fetch_one(&mut *tx)
            .await?;
        let mut rows = sqlx::query(
            "SELECT id, person_id, received_at, normalized, fingerprints FROM leads
             WHERE received_at >= $1 ORDER BY seq",
        )
        .bind(since_ms)
        .fetch(&mut *tx);
        while let Some(r) = rows.try_next().await? {
            let id = r.text(0);
            each(super::DedupeRecord {
                normalized: self.crypt.open(Column::LeadNormalized, &id, r.text(3))?,
                id,
                person_id: r.text(1),
                received_at_ms: r.int(2),
                fingerprints: r
                    .text(4)
                    .split(' ')
                    .filter(|f| !f.is_empty())
                    .map(String::from)
                    .collect(),
            });
        }
        drop(rows);
        tx.commit().await?;
        Ok(position)
    }

    async fn load_fingerprints(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT person_id, fingerprints FROM leads WHERE fingerprints != '' ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let person = r.text(0);
            for fp in r.text(1).split(' ').filter(|f| !f.is_empty()) {
                out.push((fp.to_string(), person.clone()));
            }
        }
        Ok(out)
    }

    async fn reclaim_expired(&self, now_ms: i64) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE jobs SET state = 'pending', lease_owner = NULL, lease_expires_at = NULL,
                             updated_at = $1
             WHERE state = 'leased' AND lease_expires_at <= $1",
        )
        .bind(now_ms)
        .execute(&self.pool)
        .await?
        .rows_affected())
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
        Ok(sqlx::query(
            "UPDATE jobs SET lease_expires_at = $3
             WHERE state = 'leased' AND lease_owner = $1 AND id = ANY($2)",
        )
        .bind(owner)
        .bind(ids)
        .bind(now_ms.saturating_add(lease_ms))
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn complete_and_lease(
        &self,
        owner: &str,
        adapter: &str,
        results: &[(LeasedJob, JobResult)],
        next: LeaseRequest<'_>,
        now_ms: i64,
    ) -> Result<(Vec<bool>, Vec<LeasedJob>), StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut done = std::collections::HashSet::new();
        if !results.is_empty() {
            let (rows, events) = completion_rows(adapter, results, now_ms, &self.crypt);
            let applied: Vec<String> = sqlx::query_scalar(COMPLETE)
                .bind(rows)
                .bind(now_ms)
                .bind(owner)
                .bind(Stage::Delivery.as_str())
                .bind(events)
                .fetch_all(&mut *tx)
                .await?;
            done.extend(applied);
        }
        let mut leased = Vec::new();
        if next.limit > 0 {
            for r in sqlx::query(LEASE)
                .bind(owner)
                .bind(now_ms)
                .bind(next.destination)
                .bind(i64::from(next.limit))
                .bind(now_ms.saturating_add(next.lease_ms))
                .fetch_all(&mut *tx)
                .await?
            {
                leased.push(leased_job(&r, 0, &self.crypt)?);
            }
        }
        tx.commit().await?;
        Ok(completed_and_leased(results, done, leased))
    }

    async fn lead(&self, id: &str) -> Result<Option<LeadView>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT id, source, received_at, status, person_id, decision, rules_version,
                    fp_version, raw, normalized, merge, erased_at, erased_by
             FROM leads WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let jobs = sqlx::query(job_view_sql!("WHERE lead_id = $1 ORDER BY seq"))
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
        // An erased person is no person (its golden record went with it).
        let rows = sqlx::query(
            "SELECT l.id, p.record, l.source, l.received_at,
                    CASE WHEN p.record IS NULL THEN l.normalized END
             FROM leads l LEFT JOIN persons p ON p.id = l.id
             WHERE l.id = ANY($1) AND (p.id IS NOT NULL OR l.erased_at IS NULL)",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| person_row(r, &self.crypt)).collect()
    }

    async fn person_leads(&self, id: &str) -> Result<Vec<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT id FROM leads WHERE person_id = $1 ORDER BY seq")
                .bind(id)
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn job(&self, id: &str) -> Result<Option<JobDetail>, StoreError> {
        let Some(row) = sqlx::query(job_view_sql!("WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let lead_id = row.text(12);
        let job = job_view(&row, &self.crypt)?;
        let person_id: String = sqlx::query_scalar("SELECT person_id FROM leads WHERE id = $1")
            .bind(&lead_id)
            .fetch_one(&self.pool)
            .await?;
        let events = self.events(EVENTS_OF_JOB, id).await?;
        Ok(Some(JobDetail {
            events,
            lead_id,
            person_id,
            job,
        }))
    }

    async fn replay(&self, replays: &[Replay], now_ms: i64) -> Result<Vec<DlqOutcome>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut out = Vec::with_capacity(replays.len());
        for r in replays {
            if let Some(refusal) = dlq_refusal(&mut tx, &r.id, r.remapped.is_none()).await? {
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
                "UPDATE jobs SET state = 'pending', attempts = 0, next_attempt_at = $2,
                     lease_owner = NULL, lease_expires_at = NULL, finished_at = NULL,
                     updated_at = $2, payload = COALESCE($3, payload),
                     mapping_version = COALESCE($4, mapping_version)
                 WHERE id = $1 RETURNING mapping_version",
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
        let mut tx = self.pool.begin().await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let status = match dlq_refusal(&mut tx, id, false).await? {
                Some(refusal) => refusal,
                None => {
                    let detail = serde_json::json!({"reason": reason, "at_ms": now_ms});
                    sqlx::query("UPDATE jobs SET discarded = $2, updated_at = $3 WHERE id = $1")
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
            "SELECT key, value FROM plugin_kv WHERE namespace = $1 AND key IN ($2, $4)
                 AND (expires_at IS NULL OR expires_at > $3)
             ORDER BY key = $2 DESC LIMIT 1",
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
        Ok(Some(self.crypt.open_bytes(
            Column::KvValue,
            &kv_row(namespace, &row.text(0)),
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
        let mut tx = self.pool.begin().await?;
        // One writer per namespace at a time, on every host: the cap holds.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("leadgate/kv/{namespace}"))
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM plugin_kv WHERE namespace = $1 AND expires_at <= $2")
            .bind(namespace)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        let stored = sqlx::query(
            "INSERT INTO plugin_kv (namespace, key, value, expires_at)
             SELECT $1, $2, $3, $4
             WHERE EXISTS (SELECT 1 FROM plugin_kv WHERE namespace = $1 AND key = $2)
                OR (SELECT COUNT(*) FROM plugin_kv WHERE namespace = $1) < $5
             ON CONFLICT (namespace, key) DO UPDATE
                 SET value = excluded.value, expires_at = excluded.expires_at",
        )
        .bind(namespace)
        .bind(key)
        .bind(value)
        .bind(expires_at_ms)
        .bind(max_entries as i64)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        tx.commit().await?;
        Ok(stored)
    }

    async fn kv_delete(&self, namespace: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM plugin_kv WHERE namespace = $1 AND key IN ($2, $3)")
            .bind(namespace)
            .bind(self.crypt.kv_key(namespace, key))
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn remember_webhook(
        &self,
        destination: &str,
        digest: &[u8],
        now_ms: i64,
        forget_before_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM webhook_receipts WHERE received_at < $1")
            .bind(forget_before_ms)
            .execute(&mut *tx)
            .await?;
        let new = sqlx::query(
            "INSERT INTO webhook_receipts (destination, digest, received_at) VALUES ($1, $2, $3)
             ON CONFLICT (destination, digest) DO NOTHING",
        )
        .bind(destination)
        .bind(digest)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            > 0;
        tx.commit().await?;
        Ok(new)
    }

    async fn oauth_refresh_token(
        &self,
        destination: &str,
    ) -> Result<Option<StoredRefreshToken>, StoreError> {
        sqlx::query(
            "SELECT refresh_token, configured_hash FROM oauth_tokens WHERE destination = $1",
        )
        .bind(destination)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| {
            Ok(StoredRefreshToken {
                refresh_token: self
                    .crypt
                    .open(Column::RefreshToken, destination, r.text(0))?,
                configured_hash: r.text(1),
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
        sqlx::query(
            "INSERT INTO oauth_tokens (destination, refresh_token, configured_hash, updated_at)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (destination) DO UPDATE SET refresh_token = excluded.refresh_token,
                 configured_hash = excluded.configured_hash, updated_at = excluded.updated_at",
        )
        .bind(destination)
        .bind(self.crypt.seal(
            Column::RefreshToken,
            destination,
            token.refresh_token.clone(),
        ))
        .bind(&token.configured_hash)
        .bind(now_ms)
        .execute(&self.pool)
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
        sqlx::query(
            "INSERT INTO store_meta (key, value) VALUES ('sealed_under', $1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .execute(&self.pool)
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

    async fn erase_person(
        &self,
        person_id: &str,
        now_ms: i64,
        deletable: &[String],
    ) -> Result<Option<ErasureReceipt>, StoreError> {
        let mut tx = self.pool.begin().await?;
        self.check_fence(&mut tx).await?;
        let leads: Vec<String> =
            sqlx::query_scalar("SELECT id FROM leads WHERE person_id = $1 ORDER BY seq")
                .bind(person_id)
                .fetch_all(&mut *tx)
                .await?;
        if leads.is_empty() {
            return Ok(None);
        }
        // The records the person has in each CRM (deletions, of an
        // erasure before, aside).
        let delivered = sqlx::query(
            "SELECT destination, crm_id, MIN(lead_id), MIN(source) FROM jobs
             WHERE lead_id = ANY($1) AND crm_id IS NOT NULL AND mapping_version <> $2
             GROUP BY destination, crm_id ORDER BY destination, crm_id",
        )
        .bind(&leads)
        .bind(ERASURE_MAPPING)
        .fetch_all(&mut *tx)
        .await?;
        let delivered = Delivered::from_rows(&delivered);
        let forgotten = self
            .forget_leads(&mut tx, &leads, Forget::Erasure, now_ms)
            .await?;
        // The deletions at the CRMs, queued after the person's deliveries
        // stopped.
        let (destinations, deletions) = erasure_at_crms(delivered, deletable, now_ms, &self.crypt);
        if !deletions.is_empty() {
            let (sql, args) = (JOB_INSERT.as_str(), unnest_args(&JOB_TYPES, deletions)?);
            sqlx::query_with(sqlx::AssertSqlSafe(sql), args)
                .execute(&mut *tx)
                .await?;
        }
        // Plugins' expired entries (an adapter's memory of the person may
        // be among them) go too.
        sqlx::query("DELETE FROM plugin_kv WHERE expires_at IS NOT NULL AND expires_at <= $1")
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        let golden_record = sqlx::query("DELETE FROM persons WHERE id = $1")
            .bind(person_id)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            > 0;
        let receipt = ErasureReceipt {
            person_id: person_id.to_string(),
            erased_at_ms: now_ms,
            leads,
            destinations,
            jobs: forgotten.jobs,
            deliveries_stopped: forgotten.deliveries_stopped,
            dead_letters: forgotten.dead_letters,
            audit_entries: forgotten.audit_entries,
            golden_record,
            ..Default::default()
        };
        let summary = serde_json::to_string(&receipt).expect("receipt serializes");
        sqlx::query(
            "INSERT INTO events (lead_id, job_id, at, stage, event, detail)
             VALUES ($1, NULL, $2, $3, $4, $5)",
        )
        .bind(person_id)
        .bind(now_ms)
        .bind(Stage::Privacy.as_str())
        .bind(EventKind::Erased.as_str())
        .bind(&summary)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO erasures (person_id, erased_at, receipt) VALUES ($1, $2, $3)
             ON CONFLICT (person_id) DO UPDATE SET erased_at = excluded.erased_at,
                 receipt = excluded.receipt, seq = nextval('feed_seq')",
        )
        .bind(person_id)
        .bind(now_ms)
        .bind(&summary)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut receipt = receipt;
        receipt.scrubbed = self.scrub().await.is_ok();
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
        let mut tx = self.pool.begin().await?;
        if let Some(before) = cutoffs.raw_before_ms {
            purged.raw = sqlx::query(
                "UPDATE leads SET raw = '{}', raw_purged_at = $3
                 WHERE seq IN (SELECT seq FROM leads
                               WHERE source = $1 AND received_at < $2
                                 AND raw_purged_at IS NULL AND erased_at IS NULL
                               LIMIT $4)",
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
                 WHERE source = $1 AND received_at < $2 AND erased_at IS NULL LIMIT $3",
            )
            .bind(source)
            .bind(before)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?;
            if !rows.is_empty() {
                let ids: Vec<String> = rows.iter().map(|r| r.text(0)).collect();
                let persons: Vec<String> = rows.iter().map(|r| r.text(1)).collect();
                self.forget_leads(&mut tx, &ids, Forget::Retention, now_ms)
                    .await?;
                purged.leads = rows.len() as u64;
                purged.persons = sqlx::query(
                    "DELETE FROM persons WHERE id = ANY($1)
                       AND NOT EXISTS (SELECT 1 FROM leads
                                       WHERE person_id = persons.id AND erased_at IS NULL)",
                )
                .bind(persons)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            }
        }
        if let Some(before) = cutoffs.dead_letters_before_ms {
            purged.dead_letters = sqlx::query(
                "UPDATE jobs SET discarded = $3, payload = $4, last_error = NULL, updated_at = $5
                 WHERE seq IN (SELECT seq FROM jobs
                               WHERE state = 'dead' AND discarded IS NULL AND source = $1
                                 AND finished_at < $2
                               LIMIT $6)",
            )
            .bind(source)
            .bind(before)
            .bind(Forget::Retention.reason(now_ms))
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

    /// PostgreSQL's files are the database server's: an old row version
    /// stays in its table until vacuum reuses the space, and in its WAL
    /// (and any WAL archive or backup) as long as the server keeps them.
    /// Nothing a client can empty; the operator's retention of WAL and
    /// backups bounds it.
    async fn scrub(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn shared(&self) -> bool {
        true
    }

    async fn take_turn(&self) -> Result<(), StoreError> {
        let mut slot = self.turn.lock().await;
        loop {
            // A session kept from an earlier turn may have been cut since:
            // it is tried once, then a new one.
            let kept = slot.is_some();
            let conn = match slot.as_mut() {
                Some(conn) => conn,
                None => slot.insert(self.turn_options.connect().await?),
            };
            match self.take_turn_on(conn).await {
                Ok(token) => {
                    self.fence.store(token, Ordering::Release);
                    return Ok(());
                }
                Err(e) => {
                    // Whatever the session holds goes with it.
                    *slot = None;
                    if !kept {
                        return Err(e.into());
                    }
                }
            }
        }
    }

    async fn end_turn(&self) -> Result<(), StoreError> {
        let mut slot = self.turn.lock().await;
        let Some(conn) = slot.as_mut() else {
            return Ok(());
        };
        let released = sqlx::query("SELECT pg_advisory_unlock($1, $2)")
            .bind(self.turn_lock.0)
            .bind(self.turn_lock.1)
            .execute(&mut *conn)
            .await;
        if let Err(e) = released {
            *slot = None;
            return Err(e.into());
        }
        Ok(())
    }

    async fn turn_wanted(&self) -> Result<bool, StoreError> {
        // pg_locks shows the keys as unsigned 32-bit oids.
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM pg_locks
                            WHERE locktype = 'advisory' AND NOT granted
                              AND classid::bigint = $1 AND objid::bigint = $2
                              AND database = (SELECT oid FROM pg_database
                                              WHERE datname = current_database()))",
        )
        .bind(i64::from(self.turn_lock.0 as u32))
        .bind(i64::from(self.turn_lock.1 as u32))
        .fetch_one(&self.pool)
        .await?)
    }

    async fn feed_position(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(FEED_POSITION)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn feed(
        &self,
        after: i64,
        each: &mut (dyn FnMut(FeedItem) + Send),
    ) -> Result<i64, StoreError> {
        use futures_util::TryStreamExt as _;
        let mut rows = sqlx::query(
            "SELECT seq, id, person_id, received_at, normalized, fingerprints
             FROM leads WHERE seq > $1
             UNION ALL
             SELECT seq, NULL, person_id, erased_at, NULL, NULL FROM erasures WHERE seq > $1
             ORDER BY 1",
        )
        .bind(after)
        .fetch(&self.pool);
        let mut last = after;
        while let Some(r) = rows.try_next().await? {
            last = r.int(0);
            let Some(id) = r.opt_text(1) else {
                each(FeedItem::Erased {
                    person_id: r.text(2),
                });
                continue;
            };
            each(FeedItem::Lead(DedupeRecord {
                normalized: self.crypt.open(Column::LeadNormalized, &id, r.text(4))?,
                person_id: r.text(2),
                received_at_ms: r.int(3),
                fingerprints: r
                    .text(5)
                    .split(' ')
                    .filter(|f| !f.is_empty())
                    .map(String::from)
                    .collect(),
                id,
            }));
        }
        Ok(last)
    }

    async fn heartbeat(
        &self,
        host: &str,
        now_ms: i64,
        since_ms: i64,
    ) -> Result<Vec<HostSeen>, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO hosts (host, first_seen, last_seen) VALUES ($1, $2, $2)
             ON CONFLICT (host) DO UPDATE SET last_seen = excluded.last_seen",
        )
        .bind(host)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM hosts WHERE last_seen < $1")
            .bind(now_ms - 3_600_000)
            .execute(&mut *tx)
            .await?;
        let hosts = sqlx::query(
            "SELECT host, first_seen, last_seen FROM hosts WHERE last_seen >= $1 ORDER BY host",
        )
        .bind(since_ms)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        // The count deltas the hosts' writes added since the last fold.
        if let Err(e) = sqlx::query("SELECT fold_counts()")
            .execute(&self.pool)
            .await
        {
            tracing::warn!(error = %e, "folding the store's counts failed");
        }
        Ok(hosts
            .iter()
            .map(|r| HostSeen {
                host: r.text(0),
                first_seen_ms: r.int(1),
                last_seen_ms: r.int(2),
            })
            .collect())
    }

    async fn pauses(&self, publish: &[Pause], now_ms: i64) -> Result<Vec<Pause>, StoreError> {
        if !publish.is_empty() {
            let destinations: Vec<&str> = publish.iter().map(|p| p.destination.as_str()).collect();
            let kinds: Vec<&str> = publish.iter().map(|p| p.kind.as_str()).collect();
            let untils: Vec<i64> = publish.iter().map(|p| p.until_ms).collect();
            sqlx::query(
                "INSERT INTO destination_pauses (destination, kind, until_ms)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::int8[])
                 ON CONFLICT (destination, kind) DO UPDATE SET until_ms = excluded.until_ms
                 WHERE excluded.until_ms > destination_pauses.until_ms",
            )
            .bind(destinations)
            .bind(kinds)
            .bind(untils)
            .execute(&self.pool)
            .await?;
        }
        sqlx::query(
            "SELECT destination, kind, until_ms FROM destination_pauses WHERE until_ms > $1",
        )
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            Ok(Pause {
                destination: r.text(0),
                kind: PauseKind::parse(&r.text(1))?,
                until_ms: r.int(2),
            })
        })
        .collect()
    }

    async fn outstanding_jobs(&self) -> Result<u64, StoreError> {
        // A held job's next attempt is at i64::MAX: not work to do.
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT COUNT(*) FROM jobs
                     WHERE state = 'pending' AND next_attempt_at < 9223372036854775807)
                  + (SELECT COUNT(*) FROM jobs WHERE state = 'leased')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(n as u64)
    }

    async fn outstanding_by_source(&self) -> Result<Vec<(String, u64)>, StoreError> {
        // A held job waits for consent, not for delivery: not backlog.
        let rows = sqlx::query(
            "SELECT COALESCE(source, ''), COUNT(*) FROM jobs
             WHERE state IN ('pending', 'leased') AND held IS NULL GROUP BY source",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| (r.text(0), r.int(1) as u64)).collect())
    }

    async fn counts(&self) -> Result<StoreCounts, StoreError> {
        // Kept by triggers as deltas (migration 0003): folded first, so a
        // read sums about one row per group, in one snapshot.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT fold_counts()")
            .execute(&mut *tx)
            .await?;
        let leads = sqlx::query(
            "SELECT COALESCE(SUM(n), 0)::BIGINT,
                    COALESCE(SUM(n) FILTER (WHERE status = 'duplicate'), 0)::BIGINT
             FROM lead_counts",
        )
        .fetch_one(&mut *tx)
        .await?;
        let mut counts = StoreCounts {
            leads: leads.int(0) as u64,
            duplicates: leads.int(1) as u64,
            ..Default::default()
        };
        let jobs = sqlx::query(
            "SELECT destination, state, held, SUM(n)::BIGINT FROM job_counts
             GROUP BY destination, state, held HAVING SUM(n) > 0",
        )
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        for r in jobs {
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
            "WHERE state = 'dead' AND discarded IS NULL
               AND ($2::text IS NULL OR destination = $2)
             ORDER BY seq DESC LIMIT $1"
        ))
        .bind(i64::from(limit))
        .bind(destination)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.text(12), job_view(r, &self.crypt)?)))
            .collect()
    }
}

type Tx<'a> = sqlx::Transaction<'a, Postgres>;

const EVENTS_OF_LEAD: &str = "SELECT lead_id, job_id, at, stage, event, detail FROM events
                              WHERE lead_id = $1 ORDER BY seq";
const EVENTS_OF_JOB: &str = "SELECT lead_id, job_id, at, stage, event, detail FROM events
                             WHERE job_id = $1 ORDER BY seq";

/// Why a job cannot be replayed or discarded, if it cannot. Locks the
/// job: two operators acting on it at once (from any host) take turns.
async fn dlq_refusal(
    tx: &mut Tx<'_>,
    id: &str,
    check_later: bool,
) -> Result<Option<DlqStatus>, StoreError> {
    let Some(row) = sqlx::query(
        "SELECT state, discarded IS NOT NULL, chain, seq FROM jobs WHERE id = $1 FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(Some(DlqStatus::NotFound));
    };
    let (state, discarded): (String, bool) = (row.get(0), row.get(1));
    if state != "dead" || discarded {
        return Ok(Some(DlqStatus::NotDead));
    }
    if check_later {
        let later: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE chain = $1 AND seq > $2
                                                  AND state = 'delivered')",
        )
        .bind(row.get::<Option<String>, _>(2))
        .bind(row.int(3))
        .fetch_one(&mut **tx)
        .await?;
        if later {
            return Ok(Some(DlqStatus::Superseded));
        }
    }
    Ok(None)
}

/// A sealed table's statements for a re-sealing step: the select, and
/// one conditional update per column (fingerprints last).
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
                    "SELECT seq, {}, {} FROM {} WHERE seq > $1 ORDER BY seq LIMIT $2",
                    t.row,
                    columns.join(", "),
                    t.table
                ),
                updates: columns
                    .iter()
                    .map(|c| {
                        format!(
                            "UPDATE {} SET {c} = $1 WHERE seq = $2 AND {c} IS NOT DISTINCT FROM $3",
                            t.table
                        )
                    })
                    .collect(),
            }
        })
        .collect()
});

impl PgStore {
    /// Removes the personal data of the leads `ids` in `tx` (see the
    /// SQLite store's `forget_leads`: the same tombstones).
    async fn forget_leads(
        &self,
        tx: &mut Tx<'_>,
        ids: &[String],
        why: Forget,
        now_ms: i64,
    ) -> Result<Forgotten, StoreError> {
        for r in sqlx::query("SELECT id, decision FROM leads WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(&mut **tx)
            .await?
        {
            let id = r.text(0);
            if let Some(redacted) = redacted_decision(&self.crypt, &id, r.text(1))? {
                sqlx::query("UPDATE leads SET decision = $2 WHERE id = $1")
                    .bind(&id)
                    .bind(redacted)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        sqlx::query(
            "UPDATE leads SET raw = '{}', normalized = $2, merge = NULL, fingerprints = '',
                              erased_at = $3, erased_by = $4
             WHERE id = ANY($1)",
        )
        .bind(ids)
        .bind(empty_normalized())
        .bind(now_ms)
        .bind(why.as_str())
        .execute(&mut **tx)
        .await?;
        let reason = why.reason(now_ms);
        let deliveries_stopped = sqlx::query(
            "UPDATE jobs SET state = 'dead', discarded = $2, lease_owner = NULL, held = NULL,
                             lease_expires_at = NULL, finished_at = $3, updated_at = $3
             WHERE lead_id = ANY($1) AND state IN ('pending', 'leased')",
        )
        .bind(ids)
        .bind(&reason)
        .bind(now_ms)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        let dead_letters = sqlx::query(
            "UPDATE jobs SET discarded = $2, updated_at = $3
             WHERE lead_id = ANY($1) AND state = 'dead' AND discarded IS NULL",
        )
        .bind(ids)
        .bind(&reason)
        .bind(now_ms)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        let jobs =
            sqlx::query("UPDATE jobs SET payload = $2, last_error = NULL WHERE lead_id = ANY($1)")
                .bind(ids)
                .bind(empty_payload())
                .execute(&mut **tx)
                .await?
                .rows_affected();
        let audit_entries = sqlx::query("UPDATE events SET detail = '{}' WHERE lead_id = ANY($1)")
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
        let mut tx = self.pool.begin().await?;
        let mut changed = 0;
        let mut after = cursor.after;
        for r in &rows {
            let seq = r.int(0);
            after = seq;
            let values = (0..sql.updates.len()).map(|i| r.opt_text(2 + i)).collect();
            for (i, new, old) in table.resealed(keyring, &r.text(1), values)? {
                // Conditional: a value written meanwhile wins.
                sqlx::query(sqlx::AssertSqlSafe(sql.updates[i].as_str()))
                    .bind(new)
                    .bind(seq)
                    .bind(old)
                    .execute(&mut *tx)
                    .await?;
                changed += 1;
            }
        }
        tx.commit().await?;
        Ok(Resealed {
            next: Some(next_cursor(cursor.table, rows.len(), after, limit)),
            scanned: rows.len() as u64,
            changed,
        })
    }

    /// The re-sealing step over the plugins' key-value entries, all at
    /// once: plain keys blinded, values sealed again.
    async fn reseal_kv(&self, keyring: &seal::Keyring) -> Result<Resealed, StoreError> {
        let rows = sqlx::query("SELECT namespace, key, value FROM plugin_kv")
            .fetch_all(&self.pool)
            .await?;
        let mut tx = self.pool.begin().await?;
        let mut changed = 0;
        for r in &rows {
            let (namespace, key, value): (String, String, Vec<u8>) = (r.get(0), r.get(1), r.get(2));
            let Some((blind, new)) = resealed_kv(keyring, &namespace, &key, &value)? else {
                continue;
            };
            changed += 1;
            if blind == key {
                sqlx::query(
                    "UPDATE plugin_kv SET value = $1 WHERE namespace = $2 AND key = $3
                                                      AND value = $4",
                )
                .bind(new)
                .bind(&namespace)
                .bind(&key)
                .bind(&value)
                .execute(&mut *tx)
                .await?;
                continue;
            }
            // A plain key whose blinded twin was written meanwhile (after
            // encryption came on) yields to it.
            sqlx::query(
                "INSERT INTO plugin_kv (namespace, key, value, expires_at)
                 SELECT namespace, $1, $2, expires_at FROM plugin_kv
                 WHERE namespace = $3 AND key = $4 AND value = $5
                 ON CONFLICT (namespace, key) DO NOTHING",
            )
            .bind(&blind)
            .bind(new)
            .bind(&namespace)
            .bind(&key)
            .bind(&value)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM plugin_kv WHERE namespace = $1 AND key = $2 AND value = $3")
                .bind(&namespace)
                .bind(&key)
                .bind(&value)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(Resealed {
            next: None,
            scanned: rows.len() as u64,
            changed,
        })
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
        tx: &mut Tx<'_>,
        job_id: &str,
        now_ms: i64,
        event: EventKind,
        detail: serde_json::Value,
    ) -> Result<(), StoreError> {
        let lead_id: String = sqlx::query_scalar("SELECT lead_id FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_one(&mut **tx)
            .await?;
        let detail = self
            .crypt
            .seal(Column::EventDetail, &lead_id, detail.to_string());
        sqlx::query(
            "INSERT INTO events (lead_id, job_id, at, stage, event, detail)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(lead_id)
        .bind(job_id)
        .bind(now_ms)
        .bind(Stage::Dlq.as_str())
        .bind(event.as_str())
        .bind(detail)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }
}
