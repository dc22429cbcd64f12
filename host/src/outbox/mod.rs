//! Outbox: the durable hand-off between ingest and delivery.
//!
//! One [`writer`] task owns the dedupe index: it takes every queued
//! payload, decides dedupe for each lead in arrival order, merges
//! duplicates into their person and builds the rows (the lead, its new
//! fingerprints, one job per lead × destination: [`jobs`]). A [`committer`]
//! task writes the groups in one transaction (one fsync for many payloads);
//! the writer never waits for a commit: every group it builds meanwhile
//! goes into the next transaction. Only after the commit
//! does each payload get its answer, so an answer always means "stored".
//!
//! If a commit fails, nothing of that group is stored, but the writer may
//! already have decided the next group against it. Each group carries the
//! epoch of the index it was decided with; after a failure the committer
//! refuses groups of older epochs, and the writer reloads the index from
//! the store before deciding again.
//!
//! Dead letters go back into the queue through [`replay`].

pub mod committer;
pub mod jobs;
pub mod replay;
pub mod writer;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Notify, Semaphore, mpsc, oneshot, watch};

use crate::pipeline::dedupe::{Decision, DedupeConfig, Deduper, Features, ModelHandle};
use crate::pipeline::mapping::{MappedRoute, Renderer};
use crate::pipeline::merge::MergeConfig;
use crate::pipeline::normalize::NormalizedLead;
use crate::store::seal::Crypt;
use crate::store::{ErasureReceipt, Store, StoreError, StoredForms};

pub use jobs::{idempotency_key, revision_key};
pub use writer::load_index;

/// A lead that passed validation, routed and mapped for each destination
/// by ingest (work done in parallel, off the writer's path).
#[derive(Debug)]
pub struct PreparedLead {
    pub id: String,
    pub source: String,
    pub received_at_ms: i64,
    /// The lead as posted and normalized, as the store keeps them.
    pub forms: StoredForms,
    /// The normalized lead.
    pub lead: NormalizedLead,
    pub fingerprints: Vec<String>,
    /// The lead's comparable form for the fuzzy dedupe tier.
    pub features: Features,
    pub routes: Vec<MappedRoute>,
}

/// How the writer merges duplicates into their persons.
#[derive(Clone)]
pub struct Merging {
    pub config: MergeConfig,
    pub renderer: Arc<dyn Renderer>,
}

/// What the outbox did with a lead.
#[derive(Clone, Debug, Serialize)]
pub struct Committed {
    pub id: String,
    #[serde(flatten)]
    pub decision: Decision,
}

type Reply = oneshot::Sender<Result<Vec<Committed>, OutboxError>>;

/// An erasure waiting for its turn, and who waits for its receipt.
pub(crate) struct Erasure {
    pub person_id: String,
    /// The destinations whose adapter can delete records at its CRM.
    pub deletable: Vec<String>,
    pub reply: oneshot::Sender<Result<Option<ErasureReceipt>, OutboxError>>,
    /// Dedupe records the writer's index forgot.
    pub forgotten: u64,
}

/// What the writer takes, in arrival order.
pub(crate) enum Queued {
    Leads(Vec<PreparedLead>, Reply),
    /// A person to erase: after every lead queued before it, before any
    /// queued after it.
    Erase(Erasure),
    /// A person's consent withdrawal (answered as a lead: none when there
    /// is no such person).
    Withdraw(Withdrawal),
}

/// A consent withdrawal waiting for its turn.
pub(crate) struct Withdrawal {
    pub person_id: String,
    /// RFC 3339, UTC.
    pub at: String,
    pub reply: Reply,
}

/// A lead's fingerprints as `crypt` keeps them: the one form the index,
/// the store and the index's rebuild all use.
fn blinded_fingerprints(crypt: &Crypt, lead: &NormalizedLead) -> Vec<String> {
    crate::pipeline::dedupe::fingerprints(lead)
        .into_iter()
        .map(|fp| crypt.fingerprint(fp))
        .collect()
}

/// The source a withdrawal's lead is recorded under.
pub const WITHDRAWAL_SOURCE: &str = "leadgate:consent-withdrawal";

/// The handle ingest uses to commit leads.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Queued>,
    dedupe: Arc<DedupeConfig>,
    crypt: Crypt,
    work: Arc<Notify>,
    index: watch::Receiver<IndexState>,
    /// What the writer holds in memory.
    held: Arc<writer::Held>,
}

/// The dedupe index the writer starts with.
pub enum StartIndex {
    /// Built already (see [`load_index`]).
    Built(Box<Deduper>),
    /// Rebuilt from the store by the writer before it decides anything.
    /// Leads queued meanwhile wait for it (their answers come once they
    /// are stored, as always), and [`Outbox::index_state`] says
    /// [`IndexState::Loading`]. On a store several hosts share, the load
    /// does not take the dedupe turn (the others go on deciding); the
    /// first decision's turn reads what they wrote meanwhile.
    FromStore {
        config: Box<DedupeConfig>,
        model: ModelHandle,
    },
}

/// Whether the writer's dedupe index can decide leads yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IndexState {
    /// Being rebuilt from the store.
    Loading,
    Ready,
    /// The rebuild failed: the writer decides nothing and has stopped
    /// (the host cannot take leads; `leadgate serve` exits).
    Failed(String),
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("the store refused the write: {0}")]
    Store(Arc<StoreError>),
    #[error("not stored: an earlier write failed and dedupe decisions are being rebuilt")]
    Superseded,
    #[error("the outbox is shut down")]
    Closed,
}

impl Outbox {
    /// Starts the writer and the committer, with the index `index` (see
    /// [`StartIndex`]); `work` is notified after every commit that made
    /// jobs. The returned task ends when every `Outbox` handle is dropped
    /// and the queue is committed.
    pub fn start(
        store: Arc<dyn Store>,
        index: StartIndex,
        group_max: usize,
        merging: Merging,
        work: Arc<Notify>,
    ) -> (Outbox, tokio::task::JoinHandle<()>) {
        // An index to rebuild starts empty, one epoch behind the store: the
        // writer's catch-up loads it before the first decision.
        let (index, behind) = match index {
            StartIndex::Built(index) => (*index, false),
            StartIndex::FromStore { config, model } => (Deduper::with_model(*config, model), true),
        };
        let (index_state, index_seen) = watch::channel(if behind {
            IndexState::Loading
        } else {
            IndexState::Ready
        });
        let dedupe = Arc::new(index.config().clone());
        let crypt = store.crypt().clone();
        let (tx, rx) = mpsc::channel(4096);
        // The writer goes on deciding while a commit runs and sends each
        // group at once; the committer takes every group sent meanwhile
        // into its next transaction. Leads sent and not yet committed are
        // bounded (the writer's person cache holds all of them).
        let (groups_tx, groups_rx) = mpsc::unbounded_channel();
        let in_flight = Arc::new(Semaphore::new(writer::in_flight_bound(group_max) as usize));
        let persons = writer::PersonCache::new(writer::PERSON_CACHE.max(4 * group_max));
        let held = Arc::new(writer::Held::default());
        let min_epoch = Arc::new(AtomicU64::new(u64::from(behind)));
        let writer = tokio::spawn(writer::run(
            writer::Writer {
                store: store.clone(),
                index,
                group_max,
                merging,
                min_epoch: min_epoch.clone(),
                persons,
                held: held.clone(),
                epoch: 0,
                turn: store.shared().then(writer::Turn::default),
                index_state,
            },
            rx,
            groups_tx,
            in_flight,
        ));
        let committer = tokio::spawn(committer::run(store, groups_rx, min_epoch, work.clone()));
        let task = tokio::spawn(async move {
            let _ = writer.await;
            let _ = committer.await;
        });
        (
            Outbox {
                tx,
                dedupe,
                crypt,
                work,
                index: index_seen,
                held,
            },
            task,
        )
    }

    /// Whether the dedupe index is rebuilt yet (see [`StartIndex`]).
    pub fn index_state(&self) -> IndexState {
        self.index.borrow().clone()
    }

    /// What the writer held in memory after its last group: its cached
    /// golden records and its dedupe index.
    pub fn gauges(&self) -> crate::metrics::WriterGauges {
        self.held.gauges()
    }

    /// How many golden records the writer's cache held after its last
    /// group.
    #[cfg(test)]
    fn cached_persons(&self) -> usize {
        self.gauges().cached_persons as usize
    }

    /// The index's state as it changes.
    pub fn index_states(&self) -> watch::Receiver<IndexState> {
        self.index.clone()
    }

    /// Tells idle delivery workers there is new work (after a replay).
    pub fn wake_delivery(&self) {
        self.work.notify_waiters();
    }

    /// The dedupe configuration the writer decides with (for computing
    /// [`Features`] off the writer's path).
    pub fn dedupe_config(&self) -> &DedupeConfig {
        &self.dedupe
    }

    /// A lead's dedupe fingerprints as the index and the store keep them
    /// (blinded when the store seals personal data).
    pub fn fingerprints(&self, lead: &NormalizedLead) -> Vec<String> {
        blinded_fingerprints(&self.crypt, lead)
    }

    /// A lead's forms as the store keeps them (sealed when it seals).
    pub fn stored_forms(&self, id: &str, raw: &Value, lead: &NormalizedLead) -> StoredForms {
        StoredForms::new(&self.crypt, id, raw, lead)
    }

    /// Commits `leads`; the answer comes after the transaction is durable.
    pub async fn commit(&self, leads: Vec<PreparedLead>) -> Result<Vec<Committed>, OutboxError> {
        if leads.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Queued::Leads(leads, reply))
            .await
            .map_err(|_| OutboxError::Closed)?;
        answer.await.map_err(|_| OutboxError::Closed)?
    }

    /// Records that a person withdrew consent, in its turn among the
    /// queued leads: a lead of the person (source
    /// [`WITHDRAWAL_SOURCE`]) that sets `consent_withdrawn_at`, merged as
    /// any duplicate; its updates (for destinations whose mapping sends the
    /// withdrawal) go out, the person's jobs not yet sent are stopped, and
    /// later ones are held (`consent_withdrawn`). Returns the lead's id;
    /// None when there is no such person.
    pub async fn withdraw(
        &self,
        person_id: &str,
        at: String,
    ) -> Result<Option<String>, OutboxError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Queued::Withdraw(Withdrawal {
                person_id: person_id.to_string(),
                at,
                reply,
            }))
            .await
            .map_err(|_| OutboxError::Closed)?;
        let committed = answer.await.map_err(|_| OutboxError::Closed)??;
        Ok(committed.into_iter().next().map(|c| c.id))
    }

    /// Erases a person (the right to erasure) in its turn among the
    /// queued leads: the writer forgets it in the dedupe index and its
    /// cache, then the committer erases it from the store after every
    /// lead decided before. A lead of the same person queued after it is
    /// a new person. None when no lead has that person.
    /// Each record the person has at a destination of `deletable` gets a
    /// deletion job.
    pub async fn erase(
        &self,
        person_id: &str,
        deletable: Vec<String>,
    ) -> Result<Option<ErasureReceipt>, OutboxError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Queued::Erase(Erasure {
                person_id: person_id.to_string(),
                deletable,
                reply,
                forgotten: 0,
            }))
            .await
            .map_err(|_| OutboxError::Closed)?;
        answer.await.map_err(|_| OutboxError::Closed)?
    }
}

#[cfg(test)]
mod tests {
    //! The outbox on a real SQLite store, with the shipped HubSpot mapping:
    //! what one person's leads become in the queue.

    use super::*;
    use crate::pipeline::mapping::{LeadFields, Mapping};
    use crate::pipeline::normalize::{NormalizeOptions, normalize};
    use crate::pipeline::route::{Priority, Route, route};
    use crate::store::{Durability, JobState};

    /// One destination, `hubspot`, with the shipped mapping.
    struct HubSpot(Mapping);

    impl Renderer for HubSpot {
        fn destinations(&self) -> Vec<String> {
            vec!["hubspot".into()]
        }

        fn render(&self, fields: &dyn LeadFields, route: Route) -> Option<MappedRoute> {
            Some(MappedRoute {
                hold: None,
                payload: self.0.render(fields, &[]),
                mapping_version: self.0.version.clone(),
                route,
            })
        }
    }

    struct Fixture {
        _dir: Option<tempfile::TempDir>,
        store: Arc<dyn Store>,
        outbox: Outbox,
        renderer: Arc<HubSpot>,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("outbox.db").display());
        let store = crate::store::open(&url, Durability::Full, Crypt::ephemeral())
            .await
            .unwrap();
        let mut f = host(store).await;
        f._dir = Some(dir);
        f
    }

    /// A host's outbox on `store` (its index loaded as the host does).
    async fn host(store: Arc<dyn Store>) -> Fixture {
        let mapping = Mapping::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../mappings/hubspot.yaml"),
        )
        .unwrap();
        let renderer = Arc::new(HubSpot(mapping));
        let index = StartIndex::FromStore {
            config: Box::default(),
            model: ModelHandle::bundled(&[]),
        };
        let (outbox, _task) = Outbox::start(
            store.clone(),
            index,
            64,
            Merging {
                config: MergeConfig::default(),
                renderer: renderer.clone(),
            },
            Arc::new(Notify::new()),
        );
        Fixture {
            _dir: None,
            store,
            outbox,
            renderer,
        }
    }

    /// Two hosts on one PostgreSQL receive the same persons at the same
    /// moment, many times over: each person is one person (one lead new,
    /// the other its duplicate), with one job to create it; and what one
    /// host merged, the other merges on top of.
    #[tokio::test]
    async fn two_hosts_receiving_the_same_person_at_once_make_one_person() {
        use crate::store::conformance::{fresh_schema, schema_options};
        let schema = fresh_schema().await;
        let crypt = Crypt::ephemeral();
        let open = async || {
            let store = crate::store::PgStore::connect(
                schema_options(&schema),
                Durability::Normal,
                crypt.clone(),
            )
            .await
            .unwrap();
            Arc::new(store) as Arc<dyn Store>
        };
        let (a, b) = (
            Arc::new(host(open().await).await),
            Arc::new(host(open().await).await),
        );
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..40 {
            for (name, f) in [("a", a.clone()), ("b", b.clone())] {
                tasks.spawn(async move {
                    let raw = serde_json::json!({"email": format!("p{n}@example.com")});
                    let lead = f.prepared(&format!("{name}{n}"), raw);
                    f.outbox.commit(vec![lead]).await.unwrap()
                });
            }
        }
        let mut new = 0;
        while let Some(answers) = tasks.join_next().await {
            new += usize::from(answers.unwrap()[0].decision == Decision::New);
        }
        assert_eq!(new, 40, "one new person per email");
        let counts = a.store.counts().await.unwrap();
        assert_eq!((counts.leads, counts.duplicates), (80, 40));
        assert_eq!(counts.jobs_pending, 40, "one job per person");
        // A merges a phone into p0; B then adds a name on top of it.
        let first = a.store.lead("a0").await.unwrap().unwrap().person_id;
        let with_phone = serde_json::json!({"email": "p0@example.com", "phone": "+1 415 555 0100"});
        let answers = a
            .outbox
            .commit(vec![a.prepared("a100", with_phone)])
            .await
            .unwrap();
        assert!(answers[0].decision.is_duplicate());
        let with_name = serde_json::json!({"email": "p0@example.com", "first_name": "Pia"});
        let answers = b
            .outbox
            .commit(vec![b.prepared("b100", with_name)])
            .await
            .unwrap();
        let Decision::Duplicate { person_id, .. } = &answers[0].decision else {
            panic!("{answers:?}");
        };
        assert_eq!(person_id, &first);
        let update = b.jobs("b100").await;
        assert_eq!(
            property(&update[0].1, "phone"),
            Some("+14155550100"),
            "{update:?}"
        );
        assert_eq!(property(&update[0].1, "firstname"), Some("Pia"));
    }

    impl Fixture {
        /// A lead prepared as ingest does.
        fn prepared(&self, id: &str, raw: Value) -> PreparedLead {
            let options = NormalizeOptions::with_region("US".parse().unwrap());
            let lead = normalize(&raw, &options).unwrap();
            let now = crate::now_ms();
            let routes = route(&self.renderer.destinations(), Priority::P1, None, now);
            PreparedLead {
                id: id.into(),
                source: "web".into(),
                received_at_ms: now,
                fingerprints: self.outbox.fingerprints(&lead),
                features: Features::from_lead(&lead, self.outbox.dedupe_config(), now),
                routes: self.renderer.render_all(&lead, routes),
                forms: self.outbox.stored_forms(id, &raw, &lead),
                lead,
            }
        }

        /// The lead's jobs: state and payload.
        async fn jobs(&self, lead: &str) -> Vec<(JobState, Value)> {
            let view = self.store.lead(lead).await.unwrap().expect("stored");
            view.deliveries
                .into_iter()
                .map(|j| (j.state, j.payload))
                .collect()
        }
    }

    /// A property of a job's payload (`[[name, value], …]`).
    fn property<'a>(payload: &'a Value, name: &str) -> Option<&'a str> {
        payload
            .as_array()?
            .iter()
            .find(|p| p[0] == name)
            .and_then(|p| p[1].as_str())
    }

    #[tokio::test]
    async fn a_duplicate_that_adds_a_field_queues_one_update_and_a_repeat_queues_none() {
        let f = fixture().await;
        let first = serde_json::json!({"email": "Ada@Example.com", "first_name": "Ada"});
        let second = serde_json::json!({"email": "ada@example.com", "phone": "+1 415 555 0100"});
        let answers = f
            .outbox
            .commit(vec![
                f.prepared("l1", first.clone()),
                f.prepared("l2", second),
            ])
            .await
            .unwrap();
        // Answered only once stored: both leads are readable now.
        assert_eq!(answers[0].decision, Decision::New);
        let Decision::Duplicate { person_id, .. } = &answers[1].decision else {
            panic!("the second copy is a duplicate: {:?}", answers[1]);
        };
        assert_eq!(person_id, "l1");
        let created = f.jobs("l1").await;
        assert_eq!(created.len(), 1, "one job for the new person");
        assert_eq!(created[0].0, JobState::Pending);
        assert_eq!(property(&created[0].1, "email"), Some("ada@example.com"));
        assert_eq!(property(&created[0].1, "phone"), None);
        // The merge added the phone: the person's record goes out again.
        let update = f.jobs("l2").await;
        assert_eq!(update.len(), 1, "one update job: {update:?}");
        assert_eq!(property(&update[0].1, "phone"), Some("+14155550100"));
        assert_eq!(
            property(&update[0].1, "firstname"),
            Some("Ada"),
            "the whole golden record"
        );

        // The same lead again (a client's retry) changes nothing: no job.
        let answers = f
            .outbox
            .commit(vec![f.prepared("l3", first)])
            .await
            .unwrap();
        assert!(answers[0].decision.is_duplicate());
        assert_eq!(f.jobs("l3").await, vec![], "nothing new to deliver");
        let counts = f.store.counts().await.unwrap();
        assert_eq!((counts.leads, counts.jobs_pending), (3, 2));
    }

    /// After a burst the writer gives its golden records back (they would
    /// otherwise stay in memory until the next burst), and the person's
    /// next duplicate merges into the record read back from the store.
    #[tokio::test]
    async fn an_idle_writer_gives_its_persons_back_and_merges_later_from_the_store() {
        let f = fixture().await;
        let answers = f
            .outbox
            .commit(vec![
                f.prepared(
                    "l1",
                    serde_json::json!({"email": "ada@example.com", "first_name": "Ada"}),
                ),
                f.prepared(
                    "l2",
                    serde_json::json!({"email": "ada@example.com", "phone": "+1 415 555 0100"}),
                ),
            ])
            .await
            .unwrap();
        assert!(answers[1].decision.is_duplicate(), "{:?}", answers[1]);
        assert!(
            f.outbox.cached_persons() > 0,
            "the burst's person is cached"
        );
        let idle = std::time::Instant::now();
        while f.outbox.cached_persons() > 0 {
            assert!(
                idle.elapsed() < writer::IDLE_RELEASE * 10,
                "still {} persons cached after {:?} idle",
                f.outbox.cached_persons(),
                idle.elapsed()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }

        let answers = f
            .outbox
            .commit(vec![f.prepared(
                "l3",
                serde_json::json!({"phone": "(415) 555-0100", "company": "Analytical Engines"}),
            )])
            .await
            .unwrap();
        let Decision::Duplicate { person_id, .. } = &answers[0].decision else {
            panic!("the third lead is the same person: {:?}", answers[0]);
        };
        assert_eq!(person_id, "l1");
        // The update carries the whole record: what the first two leads
        // gave (read back from the store) and the company.
        let update = f.jobs("l3").await;
        assert_eq!(update.len(), 1, "one update job: {update:?}");
        let payload = &update[0].1;
        assert_eq!(property(payload, "company"), Some("Analytical Engines"));
        assert_eq!(property(payload, "firstname"), Some("Ada"));
        assert_eq!(property(payload, "email"), Some("ada@example.com"));
        assert_eq!(property(payload, "phone"), Some("+14155550100"));
        let person = crate::store::load_person(&*f.store, "l1")
            .await
            .unwrap()
            .expect("stored");
        assert_eq!(person.leads, 3, "{person:?}");
    }
}
