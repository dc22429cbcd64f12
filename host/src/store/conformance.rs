//! The store's contract, run against every store: SQLite in a temporary
//! folder, and PostgreSQL in a schema of its own per test (on
//! `LEADGATE_TEST_POSTGRES`, default `postgres://root@127.0.0.1:5432/test`).
//! Where PostgreSQL cannot be reached its tests fail saying so: they never
//! pass without it.

use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use super::seal::Crypt;
use super::*;

/// Runs each named test (an `async fn(Backend)`) once per store.
macro_rules! each_store {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Backend::Sqlite).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Backend::Postgres).await
            })*
        }
    };
}

each_store!(
    a_failed_write_is_rolled_back_and_the_writer_goes_on,
    a_completion_leases_the_next_batch_in_the_same_write,
    fingerprints_survive_a_restart,
    the_dedupe_records_are_the_leads_of_the_window_in_arrival_order,
    a_renewed_lease_outlives_its_first_term_and_only_its_owner_renews,
    completion_needs_the_lease_and_expired_leases_come_back,
    a_second_job_for_the_same_person_and_destination_is_not_made,
    a_webhook_delivery_is_taken_once_per_destination_within_the_window,
    p0_is_leased_before_older_p2,
    jobs_of_one_person_go_out_in_acceptance_order,
    persons_keep_their_newest_revision,
    dead_letters_replay_once_and_discard_with_a_reason,
    an_old_payload_is_not_replayed_over_a_delivered_update,
    plain_values_are_sealed_by_a_pass_and_a_rotation_seals_them_again,
    retention_leaves_tombstones_and_takes_expired_dead_letters_out,
    an_erasure_queues_a_deletion_per_crm_record_where_the_adapter_can_delete,
    the_kept_counts_agree_with_the_tables_after_every_write,
);

/// A host that lost the dedupe turn (its session cut, another host took
/// the turn) can write no lead and erase no person: its writes are fenced
/// out, and the other host's go in.
#[tokio::test]
async fn postgres_a_host_that_lost_the_turn_is_fenced_out() {
    let fx = Fixture::new(Backend::Postgres).await;
    let (a, b) = (fx.open().await, fx.open().await);
    a.take_turn().await.unwrap();
    a.insert_leads(&[lead("L1", "L1", &["email:a@b.com"], 1)])
        .await
        .unwrap();
    // A's turn session is cut (as a partition or a crash would).
    let pool = postgres().await;
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l
         WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = $1
           AND l.objid::bigint = (hashtext($2)::bigint & 4294967295)",
    )
    .bind(i64::from(0x6c67_7475_u32))
    .bind(fx.schema.as_deref().unwrap())
    .fetch_all(&pool)
    .await
    .unwrap();
    assert!(!cut.is_empty(), "A's turn session was found");
    tokio::time::timeout(Duration::from_secs(10), b.take_turn())
        .await
        .expect("B takes the turn once A's session is gone")
        .unwrap();
    let fenced = a.insert_leads(&[lead("L2", "L2", &[], 1)]).await;
    assert!(matches!(fenced, Err(StoreError::Fenced)), "{fenced:?}");
    assert!(matches!(
        a.erase_person("L1", 2_000, &[]).await,
        Err(StoreError::Fenced)
    ));
    b.insert_leads(&[lead("L3", "L3", &[], 1)]).await.unwrap();
    // B follows the feed: what A wrote in its turn, then B's own.
    let mut seen = Vec::new();
    b.feed(0, &mut |item| {
        if let FeedItem::Lead(r) = item {
            seen.push(r.id)
        }
    })
    .await
    .unwrap();
    assert_eq!(seen, ["L1", "L3"]);
    assert!(a.lead("L2").await.unwrap().is_none());
    b.end_turn().await.unwrap();
    // A takes a new turn (a new session) and writes again.
    a.take_turn().await.unwrap();
    a.insert_leads(&[lead("L2", "L2", &[], 1)]).await.unwrap();
    a.end_turn().await.unwrap();
}

/// A host loads its dedupe index without the turn while another writes:
/// the load's position is where the feed takes over, so every lead is
/// read by the load or by the feed after it, never by both, never by
/// neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_load_and_the_feed_after_it_read_each_lead_once() {
    let fx = Fixture::new(Backend::Postgres).await;
    let (writer, reader) = (fx.open().await, fx.open().await);
    writer.take_turn().await.unwrap();
    let first: Vec<NewLead> = (0..2_000)
        .map(|i| lead(&format!("A{i}"), "A0", &[], 0))
        .collect();
    for group in first.chunks(500) {
        writer.insert_leads(group).await.unwrap();
    }
    // One lead per transaction, as fast as they go, until told to stop.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writing = tokio::spawn({
        let (writer, stop) = (writer.clone(), stop.clone());
        async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                writer
                    .insert_leads(&[lead(&format!("B{n}"), "A0", &[], 0)])
                    .await
                    .unwrap();
                n += 1;
            }
            n
        }
    });
    let mut loads = Vec::new();
    for _ in 0..8 {
        let mut ids = Vec::new();
        let position = reader
            .load_dedupe_records(i64::MIN, &mut |r| ids.push(r.id))
            .await
            .unwrap();
        loads.push((position, ids));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writing.await.unwrap();
    writer.end_turn().await.unwrap();
    let total = first.len() + written;
    let mut grew = false;
    for (position, loaded) in &loads {
        let mut fed = Vec::new();
        reader
            .feed(*position, &mut |item| {
                if let FeedItem::Lead(r) = item {
                    fed.push(r.id)
                }
            })
            .await
            .unwrap();
        let loaded_set: std::collections::HashSet<&String> = loaded.iter().collect();
        let both: Vec<&String> = fed.iter().filter(|id| loaded_set.contains(id)).collect();
        assert!(both.is_empty(), "read by the load and the feed: {both:?}");
        assert_eq!(loaded.len() + fed.len(), total, "every lead read once");
        grew |= loaded.len() > first.len() && !fed.is_empty();
    }
    assert!(grew, "the writer wrote during the loads ({written} leads)");
}

/// Hosts sharing a PostgreSQL store see each other's heartbeats, and a
/// pause one host publishes holds for all (a later one wins).
#[tokio::test]
async fn postgres_hosts_see_each_other_and_share_pauses() {
    let fx = Fixture::new(Backend::Postgres).await;
    let (a, b) = (fx.open().await, fx.open().await);
    a.heartbeat("a", 1_000, 0).await.unwrap();
    let seen = b.heartbeat("b", 2_000, 0).await.unwrap();
    let hosts: Vec<(&str, i64, i64)> = seen
        .iter()
        .map(|h| (h.host.as_str(), h.first_seen_ms, h.last_seen_ms))
        .collect();
    assert_eq!(hosts, [("a", 1_000, 1_000), ("b", 2_000, 2_000)]);
    a.heartbeat("a", 3_000, 0).await.unwrap();
    // Only the hosts seen since the given time.
    let seen = b.heartbeat("b", 4_000, 2_500).await.unwrap();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].first_seen_ms, 1_000, "first seen stays");
    let seen = b.heartbeat("b", 5_000, 3_500).await.unwrap();
    assert_eq!(seen.len(), 1, "a is no longer seen");

    let pause = |kind, until_ms| Pause {
        destination: "hubspot".into(),
        kind,
        until_ms,
    };
    a.pauses(&[pause(PauseKind::Quota, 10_000)], 1_000)
        .await
        .unwrap();
    b.pauses(
        &[
            pause(PauseKind::Quota, 8_000),
            pause(PauseKind::Breaker, 9_000),
        ],
        1_000,
    )
    .await
    .unwrap();
    let mut running = a.pauses(&[], 1_000).await.unwrap();
    running.sort_by_key(|p| p.until_ms);
    assert_eq!(
        running,
        [
            pause(PauseKind::Breaker, 9_000),
            pause(PauseKind::Quota, 10_000)
        ]
    );
    assert_eq!(a.pauses(&[], 9_500).await.unwrap().len(), 1, "over ones go");
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

/// The keys every store of these tests seals with (a reopened store reads
/// what the first wrote).
static CRYPT: LazyLock<Crypt> = LazyLock::new(Crypt::ephemeral);

/// The PostgreSQL the tests use.
pub(crate) use crate::testing::postgres_url;

/// Connects to the test PostgreSQL, or fails the test saying why.
pub(crate) async fn postgres() -> sqlx::PgPool {
    crate::testing::postgres(2)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A schema of its own for one test: `lgtest_<pid>_<n>`. Schemas left by
/// test processes that are gone are dropped first.
pub(crate) async fn fresh_schema() -> String {
    crate::testing::TestSchema::create("lgtest")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .name
}

/// Connection options for `schema` of the test PostgreSQL.
pub(crate) fn schema_options(schema: &str) -> sqlx::postgres::PgConnectOptions {
    sqlx::postgres::PgConnectOptions::from_str(&postgres_url())
        .unwrap()
        .options([("search_path", schema)])
}

/// Where one test's store lives.
pub(crate) struct Fixture {
    backend: Backend,
    pub dir: tempfile::TempDir,
    schema: Option<String>,
}

impl Fixture {
    pub(crate) async fn new(backend: Backend) -> Fixture {
        Fixture {
            backend,
            dir: tempfile::tempdir().unwrap(),
            schema: match backend {
                Backend::Sqlite => None,
                Backend::Postgres => Some(fresh_schema().await),
            },
        }
    }

    /// The store (again, after a first open: what it wrote is there).
    pub(crate) async fn open(&self) -> Arc<dyn Store> {
        self.open_with(CRYPT.clone()).await
    }

    pub(crate) async fn open_with(&self, crypt: Crypt) -> Arc<dyn Store> {
        match &self.schema {
            None => Arc::new(
                SqliteStore::open(&self.sqlite_url(), Durability::Full, crypt)
                    .await
                    .unwrap(),
            ),
            Some(schema) => Arc::new(
                PgStore::connect(schema_options(schema), Durability::Full, crypt)
                    .await
                    .unwrap(),
            ),
        }
    }

    fn sqlite_url(&self) -> String {
        format!("sqlite://{}", self.dir.path().join("t.db").display())
    }

    /// The texts a query returns, read straight from the database.
    pub(crate) async fn texts(&self, sql: &'static str) -> Vec<String> {
        match &self.schema {
            None => {
                let pool = sqlx::SqlitePool::connect(&self.sqlite_url()).await.unwrap();
                sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap()
            }
            Some(schema) => {
                let pool = sqlx::PgPool::connect_with(schema_options(schema))
                    .await
                    .unwrap();
                sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap()
            }
        }
    }

    /// The counts the store keeps (what `/v1/stats` and `/metrics` read)
    /// are the tables counted row by row.
    pub(crate) async fn counts_agree(&self, store: &dyn Store) -> StoreCounts {
        let kept = store.counts().await.unwrap();
        let mut counted = StoreCounts::default();
        for row in self
            .texts("SELECT status || ' ' || COUNT(*) FROM leads GROUP BY status")
            .await
        {
            let (status, n) = row.split_once(' ').unwrap();
            let n: u64 = n.parse().unwrap();
            counted.leads += n;
            if status == "duplicate" {
                counted.duplicates += n;
            }
        }
        let jobs = self
            .texts(
                "SELECT destination || ' ' || state || ' '
                        || CASE WHEN held IS NULL THEN 0 ELSE 1 END || ' ' || COUNT(*)
                 FROM jobs GROUP BY destination, state, CASE WHEN held IS NULL THEN 0 ELSE 1 END",
            )
            .await;
        for row in jobs {
            let [destination, state, held, n] = row.split(' ').collect::<Vec<_>>()[..] else {
                panic!("{row}")
            };
            counted.add_jobs(
                destination.into(),
                JobState::parse(state).unwrap(),
                held == "1",
                n.parse().unwrap(),
            );
        }
        assert_eq!(kept, counted, "the kept counts, then the tables counted");
        kept
    }

    /// Every file of an SQLite store, as bytes (`None` for PostgreSQL: its
    /// files are the server's).
    pub(crate) fn files(&self) -> Option<Vec<(String, Vec<u8>)>> {
        (self.backend == Backend::Sqlite).then(|| {
            std::fs::read_dir(self.dir.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.is_file())
                .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
                .collect()
        })
    }
}

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

/// Delivered: the CRM created record `crm_id`.
fn created(crm_id: &str) -> JobResult {
    JobResult::Delivered {
        crm_id: crm_id.into(),
        outcome: format!("created {crm_id}"),
    }
}

/// A 503 to try again at `at_ms`.
fn retry_at(at_ms: i64) -> JobResult {
    JobResult::Retry {
        next_attempt_at_ms: at_ms,
        error: "503".into(),
        count_attempt: true,
    }
}

/// A store holding two leads (L1, L2) of one job each, both leased by
/// `owner` at 2,000 for 1,000 ms.
async fn two_leased(fx: &Fixture, owner: &str) -> (Arc<dyn Store>, Vec<LeasedJob>) {
    let store = fx.open().await;
    store
        .insert_leads(&[lead("L1", "L1", &[], 1), lead("L2", "L2", &[], 1)])
        .await
        .unwrap();
    let jobs = store.lease("d0", owner, 10, 1_000, 2_000).await.unwrap();
    assert_eq!(jobs.len(), 2);
    (store, jobs)
}

async fn a_failed_write_is_rolled_back_and_the_writer_goes_on(b: Backend) {
    let fx = Fixture::new(b).await;
    let store = fx.open().await;
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

async fn a_completion_leases_the_next_batch_in_the_same_write(b: Backend) {
    let fx = Fixture::new(b).await;
    let store = fx.open().await;
    let leads: Vec<NewLead> = (0..5)
        .map(|n| lead(&format!("L{n}"), &format!("L{n}"), &[], 1))
        .collect();
    store.insert_leads(&leads).await.unwrap();
    let first = store.lease("d0", "w1", 2, 1_000, 2_000).await.unwrap();
    assert_eq!(first.len(), 2);
    let done = created("9");
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
    let events = store.job(&first[0].id).await.unwrap().unwrap().events;
    assert_eq!(events.last().unwrap().event, "delivered");
    assert!(
        store
            .job(&jobs[0].id)
            .await
            .unwrap()
            .unwrap()
            .events
            .iter()
            .all(|e| e.stage != "delivery")
    );
}

/// An erasure queues one deletion job per CRM record at each destination
/// whose adapter can delete (in its transaction, after the person's
/// deliveries stopped) and names the rest as not deleted, and takes the
/// plugins' expired key-value entries out of the store; an erasure
/// again queues the records' deletion again (a `not found` is harmless),
/// never one of a deletion.
async fn an_erasure_queues_a_deletion_per_crm_record_where_the_adapter_can_delete(b: Backend) {
    let fx = Fixture::new(b).await;
    let store = fx.open().await;
    // L1 and its duplicate L2 (one person) go to d0 and d1; L3 is another.
    store
        .insert_leads(&[
            lead("L1", "L1", &["email:a@b.com"], 2),
            lead("L3", "L3", &["email:c@d.com"], 1),
        ])
        .await
        .unwrap();
    let leased = store.lease("d0", "w", 10, 60_000, 1_500).await.unwrap();
    let leased_d1 = store.lease("d1", "w", 10, 60_000, 1_500).await.unwrap();
    let done = |crm: &str| JobResult::Delivered {
        crm_id: crm.into(),
        outcome: format!("created {crm}"),
    };
    let results: Vec<_> = leased
        .iter()
        .map(|j| {
            (
                j.clone(),
                done(if j.lead_id == "L1" { "901" } else { "903" }),
            )
        })
        .chain(leased_d1.iter().map(|j| (j.clone(), done("801"))))
        .collect();
    store.complete("w", "a@1", &results, 1_600).await.unwrap();
    // An adapter's memory: one entry expired by the erasure, one not.
    for (key, expires) in [("old@b.com", 1_900), ("new@b.com", 5_000)] {
        let set = store.kv_set("d0", key, b"901", Some(expires), 1_700, 10);
        assert!(set.await.unwrap());
    }

    let receipt = store
        .erase_person("L1", 2_000, &["d0".to_string()])
        .await
        .unwrap()
        .expect("a person");
    let by_dest: Vec<(&str, Vec<&str>, usize)> = receipt
        .destinations
        .iter()
        .map(|d| {
            let ids = d.crm_ids.iter().map(String::as_str).collect();
            (d.destination.as_str(), ids, d.deletion_jobs.len())
        })
        .collect();
    assert_eq!(by_dest, [("d0", vec!["901"], 1), ("d1", vec!["801"], 0)]);
    assert_eq!(
        receipt.destinations[1].note.as_deref(),
        Some(sql::NOT_DELETED_AT_CRM)
    );
    // Expired entries are gone from the store (read as of before they
    // expired), the live one stays.
    assert_eq!(store.kv_get("d0", "old@b.com", 1_800).await.unwrap(), None);
    assert!(
        store
            .kv_get("d0", "new@b.com", 1_800)
            .await
            .unwrap()
            .is_some()
    );
    // The deletion is leased like a delivery, its payload the CRM id.
    let deletions = store.lease("d0", "w", 10, 60_000, 2_100).await.unwrap();
    assert_eq!(deletions.len(), 1, "{deletions:?}");
    assert_eq!(deletions[0].id, receipt.destinations[0].deletion_jobs[0]);
    assert_eq!(
        JobPayload::parse(&deletions[0].payload).unwrap(),
        JobPayload::Erase {
            record_id: "901".into()
        }
    );
    assert!(
        store
            .lease("d1", "w", 10, 60_000, 2_100)
            .await
            .unwrap()
            .is_empty()
    );
    let deleted = JobResult::Delivered {
        crm_id: "901".into(),
        outcome: "deleted 901".into(),
    };
    store
        .complete("w", "a@1", &[(deletions[0].clone(), deleted)], 2_200)
        .await
        .unwrap();
    // Erased again: the deletion is not a record of the person's.
    let again = store
        .erase_person("L1", 3_000, &["d0".to_string()])
        .await
        .unwrap()
        .expect("the tombstones");
    assert_eq!(again.destinations[0].crm_ids, ["901"]);
    assert_eq!(again.destinations[0].deletion_jobs.len(), 1);
    assert_eq!(
        store
            .lease("d0", "w", 10, 60_000, 3_100)
            .await
            .unwrap()
            .len(),
        1,
        "one more deletion of the one record, none of the deletion"
    );
    fx.counts_agree(&*store).await;
}

async fn fingerprints_survive_a_restart(b: Backend) {
    let fx = Fixture::new(b).await;
    {
        let store = fx.open().await;
        store
            .insert_leads(&[
                lead("L1", "L1", &["email:a@b.com"], 1),
                lead("L2", "L1", &["phone:+1"], 0),
            ])
            .await
            .unwrap();
    }
    let store = fx.open().await;
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

/// What the dedupe index is rebuilt from: the leads received at or after
/// the window's start, opened, in the order they were stored (more of them
/// than the SQLite store takes from its reader at once).
async fn the_dedupe_records_are_the_leads_of_the_window_in_arrival_order(b: Backend) {
    let fx = Fixture::new(b).await;
    let store = fx.open().await;
    // Received times out of order: arrival is the order of the writes.
    let leads: Vec<NewLead> = (0..1_500)
        .map(|i| {
            let mut l = lead(&format!("L{i:04}"), "L0000", &[], 0);
            l.received_at_ms = (i * 7_919) % 1_000;
            l.new_fingerprints = vec![format!("email:{i}@b.com"), format!("phone:+{i}")];
            l
        })
        .collect();
    for group in leads.chunks(400) {
        store.insert_leads(group).await.unwrap();
    }
    for since in [i64::MIN, 500] {
        let mut read = Vec::new();
        store
            .load_dedupe_records(since, &mut |r| read.push(r))
            .await
            .unwrap();
        let want: Vec<&NewLead> = leads.iter().filter(|l| l.received_at_ms >= since).collect();
        assert_eq!(read.len(), want.len(), "since {since}");
        for (r, l) in read.iter().zip(&want) {
            assert_eq!(
                (&r.id, &r.person_id, r.received_at_ms, &r.fingerprints),
                (&l.id, &l.person_id, l.received_at_ms, &l.new_fingerprints)
            );
            let normalized: NormalizedLead = serde_json::from_str(&r.normalized).unwrap();
            assert_eq!(normalized.email.as_deref(), Some("a@b.com"), "opened");
        }
    }
}

async fn a_renewed_lease_outlives_its_first_term_and_only_its_owner_renews(b: Backend) {
    let fx = Fixture::new(b).await;
    let (store, jobs) = two_leased(&fx, "w1").await;
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

async fn completion_needs_the_lease_and_expired_leases_come_back(b: Backend) {
    let fx = Fixture::new(b).await;
    let store = fx.open().await;
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
    let done = created("9");
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

    // Fencing is by lease, not only by owner: a worker cut off until its
    // lease expired, that leased the same job again, cannot complete the
    // new lease with the old call's result; it can with the new one's.
    store
        .insert_leads(&[lead("L2", "L2", &[], 2)])
        .await
        .unwrap();
    let first = store.lease("d0", "w1", 10, 1_000, 4_000).await.unwrap();
    assert_eq!(store.reclaim_expired(5_001).await.unwrap(), 1);
    let second = store.lease("d0", "w1", 10, 1_000, 5_001).await.unwrap();
    assert_eq!(second[0].id, first[0].id);
    assert!(second[0].lease_token > first[0].lease_token);
    let failed = JobResult::Dead {
        error: "an old call's answer".into(),
    };
    let stale = store
        .complete("w1", "a@1", &[(first[0].clone(), failed)], 5_100)
        .await
        .unwrap();
    assert_eq!(stale, vec![false], "the old lease's result is refused");
    let job = store.job(&first[0].id).await.unwrap().unwrap();
    assert!(job.events.iter().all(|e| e.stage != "delivery"));
    let done = created("10");
    let ok = store
        .complete("w1", "a@1", &[(second[0].clone(), done)], 5_200)
        .await
        .unwrap();
    assert_eq!(ok, vec![true]);
}

async fn a_second_job_for_the_same_person_and_destination_is_not_made(b: Backend) {
    let fx = Fixture::new(b).await;
    let store = fx.open().await;
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

async fn a_webhook_delivery_is_taken_once_per_destination_within_the_window(b: Backend) {
    let fx = Fixture::new(b).await;
    let store = fx.open().await;
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

async fn p0_is_leased_before_older_p2(b: Backend) {
    let fx = Fixture::new(b).await;
    let store = fx.open().await;
    let mut old = lead("L1", "L1", &[], 1);
    old.jobs[0].priority = Priority::P2;
    let mut urgent = lead("L2", "L2", &[], 1);
    urgent.jobs[0].priority = Priority::P0;
    urgent.received_at_ms = 1_500;
    store.insert_leads(&[old, urgent]).await.unwrap();
    let jobs = store.lease("d0", "w", 1, 1_000, 2_000).await.unwrap();
    assert_eq!(jobs[0].lead_id, "L2");
}

async fn jobs_of_one_person_go_out_in_acceptance_order(b: Backend) {
    let fx = Fixture::new(b).await;
    let store = fx.open().await;
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
    store
        .complete("w", "a@1", &[(leased[0].clone(), retry_at(5_000))], 2_100)
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
    let done = created("9");
    store
        .complete("w", "a@1", &[(again[0].clone(), done)], 5_100)
        .await
        .unwrap();
    let next = store.lease("d0", "w", 10, 1_000, 5_200).await.unwrap();
    assert_eq!(ids(&next), vec!["L2:d0"]);
}

async fn persons_keep_their_newest_revision(b: Backend) {
    let fx = Fixture::new(b).await;
    let store = fx.open().await;
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
    assert!(matches!(found["L9"], StoredPerson::FirstLead { ref source, .. } if source == "test"));
    let view = store.lead("L2").await.unwrap().unwrap();
    assert!(view.audit.iter().any(|e| e.event == "merged"));
}

async fn dead_letters_replay_once_and_discard_with_a_reason(b: Backend) {
    let fx = Fixture::new(b).await;
    let (store, jobs) = two_leased(&fx, "w").await;
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

async fn an_old_payload_is_not_replayed_over_a_delivered_update(b: Backend) {
    let fx = Fixture::new(b).await;
    let store = fx.open().await;
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

fn find(files: &[(String, Vec<u8>)], needle: &str) -> Option<String> {
    files
        .iter()
        .find(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
        .map(|(name, _)| name.clone())
}

async fn plain_values_are_sealed_by_a_pass_and_a_rotation_seals_them_again(b: Backend) {
    let fx = Fixture::new(b).await;
    let secrets = [
        "a@b.com",
        "A@B.com",
        "rt-secret-77",
        "kv-value-42",
        "refused-x9",
    ];
    // Written before encryption was on.
    {
        let plain = fx.open_with(Crypt::off()).await;
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
        if let Some(files) = fx.files() {
            assert!(find(&files, "rt-secret-77").is_some(), "plain before");
        }
    }
    let crypt = Crypt::from_key_file(&fx.dir.path().join("keys")).unwrap();
    let store = fx.open_with(crypt).await;
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
    if let Some(files) = fx.files() {
        for secret in secrets {
            assert_eq!(find(&files, secret), None, "{secret} left on disk");
        }
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
    let under_k2 = async |sql: &'static str| {
        let values = fx.texts(sql).await;
        assert!(!values.is_empty(), "{sql}");
        for v in values {
            assert!(v.starts_with("lg1:k2:"), "{sql}: {v}");
        }
    };
    under_k2("SELECT raw FROM leads UNION ALL SELECT normalized FROM leads UNION ALL SELECT decision FROM leads").await;
    under_k2("SELECT payload FROM jobs UNION ALL SELECT last_error FROM jobs").await;
    under_k2("SELECT detail FROM events").await;
    under_k2("SELECT refresh_token FROM oauth_tokens").await;
    under_k2(match b {
        Backend::Sqlite => "SELECT CAST(value AS TEXT) FROM plugin_kv",
        Backend::Postgres => "SELECT convert_from(value, 'UTF8') FROM plugin_kv",
    })
    .await;
    assert_eq!(store.sealed_under().await.unwrap().as_deref(), Some("k2"));
}

async fn retention_leaves_tombstones_and_takes_expired_dead_letters_out(b: Backend) {
    use crate::pipeline::merge::{LeadMeta, Person};
    use crate::store::retention::{Retention, run_once};
    const DAY: i64 = 86_400_000;
    let fx = Fixture::new(b).await;
    let store = fx.open().await;
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
    let purged = run_once(store.as_ref(), &sources, 100 * DAY).await.unwrap();
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
    let again = run_once(store.as_ref(), &sources, 100 * DAY).await.unwrap();
    assert_eq!(again, Default::default());
    fx.counts_agree(&*store).await;
}

/// The counts `/v1/stats` and every `/metrics` scrape read are kept as the
/// rows change, not counted on each read: after every kind of write (a
/// job not made twice, leases, each result, a reclaim, a replay, a
/// discard, a hold released, pending jobs stopped, writers and reads at
/// once) they agree with the tables counted row by row.
async fn the_kept_counts_agree_with_the_tables_after_every_write(b: Backend) {
    use crate::pipeline::consent::Hold;
    let fx = Fixture::new(b).await;
    let store = fx.open().await;
    assert_eq!(fx.counts_agree(&*store).await, StoreCounts::default());

    // L2 is L1's duplicate: its jobs have L1's keys and are not made. L3
    // waits for consent.
    let mut held = lead("L3", "L3", &[], 1);
    held.jobs[0].held = Some(Hold::ConsentMissing);
    store
        .insert_leads(&[lead("L1", "L1", &[], 2), lead("L2", "L1", &[], 2), held])
        .await
        .unwrap();
    let c = fx.counts_agree(&*store).await;
    assert_eq!(
        (c.leads, c.duplicates, c.jobs_pending, c.jobs_held),
        (3, 1, 2, 1)
    );

    let leased = store.lease("d0", "w", 10, 1_000, 2_000).await.unwrap();
    assert_eq!(leased.len(), 1, "the held job is not leased");
    fx.counts_agree(&*store).await;
    store
        .complete("w", "a@1", &[(leased[0].clone(), retry_at(2_100))], 2_050)
        .await
        .unwrap();
    fx.counts_agree(&*store).await;
    let leased = store.lease("d0", "w", 10, 1_000, 2_200).await.unwrap();
    let dead = JobResult::Dead {
        error: "400".into(),
    };
    store
        .complete("w", "a@1", &[(leased[0].clone(), dead)], 2_300)
        .await
        .unwrap();
    assert_eq!(fx.counts_agree(&*store).await.jobs_dead, 1);
    let replay = Replay {
        id: leased[0].id.clone(),
        remapped: None,
        adapter: "a@1".into(),
    };
    store.replay(&[replay], 2_400).await.unwrap();
    fx.counts_agree(&*store).await;
    let leased = store.lease("d0", "w", 10, 1_000, 2_500).await.unwrap();
    let done = created("7");
    store
        .complete("w", "a@1", &[(leased[0].clone(), done)], 2_600)
        .await
        .unwrap();
    assert_eq!(fx.counts_agree(&*store).await.jobs_delivered, 1);

    // d1's job: leased, its lease expires, reclaimed.
    assert_eq!(
        store.lease("d1", "w", 10, 100, 3_000).await.unwrap().len(),
        1
    );
    assert_eq!(fx.counts_agree(&*store).await.jobs_leased, 1);
    assert_eq!(store.reclaim_expired(4_000).await.unwrap(), 1);
    fx.counts_agree(&*store).await;

    // L4 brings L3's consent; L5 withdraws L1's (its pending job stops).
    let mut consent = lead("L4", "L3", &[], 0);
    consent.release = vec!["L3/d0".into()];
    let mut withdrawn = lead("L5", "L1", &[], 0);
    withdrawn.stop_pending = true;
    store.insert_leads(&[consent, withdrawn]).await.unwrap();
    let c = fx.counts_agree(&*store).await;
    assert_eq!((c.jobs_held, c.jobs_pending, c.jobs_dead), (0, 1, 1));
    store
        .discard(&["L1:d1".into()], "spam", 5_000)
        .await
        .unwrap();
    fx.counts_agree(&*store).await;

    // Writers, leases and reads at once (PostgreSQL folds its deltas on
    // each read, beside the writes).
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..6 {
        let store = store.clone();
        tasks.spawn(async move {
            for n in 0..10 {
                let id = format!("C{t}x{n}");
                store.insert_leads(&[lead(&id, &id, &[], 2)]).await.unwrap();
                store.counts().await.unwrap();
                if n % 3 == 0 {
                    store.lease("d1", &id, 2, 1_000, 6_000).await.unwrap();
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let c = fx.counts_agree(&*store).await;
    assert_eq!(c.leads, 65);
    assert_eq!(c.jobs_pending + c.jobs_leased + c.jobs_held, 121);
}
