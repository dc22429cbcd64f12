//! The dedupe index survives a restart: leads committed through the real
//! outbox into a SQLite store, everything dropped, the store reopened and
//! the index rebuilt with `outbox::load_index` — the rebuilt index decides
//! follow-up leads (duplicate / possible / new, same persons, same scores)
//! exactly as an index that never restarted.

use std::sync::Arc;

use leadgate::outbox::{self, IndexState, Merging, Outbox, PreparedLead, StartIndex};
use leadgate::pipeline::dedupe::corpus::generate;
use leadgate::pipeline::dedupe::{Decision, DedupeConfig, Deduper, Features, fingerprints};
use leadgate::pipeline::mapping::{LeadFields, MappedRoute, Renderer};
use leadgate::pipeline::merge::MergeConfig;
use leadgate::pipeline::normalize::{NormalizeOptions, NormalizedLead, normalize};
use leadgate::pipeline::route::Route;
use leadgate::store::seal::Crypt;
use leadgate::store::{self, Durability};
use serde_json::Value;
use tokio::sync::Notify;

/// The keys every store of these tests seals with (a reopened store reads
/// what the first wrote).
static CRYPT: std::sync::LazyLock<Crypt> = std::sync::LazyLock::new(Crypt::ephemeral);

/// A lead's fingerprints as ingest hands them to the outbox: blinded.
fn blinded(lead: &NormalizedLead) -> Vec<String> {
    fingerprints(lead)
        .into_iter()
        .map(|fp| CRYPT.fingerprint(fp))
        .collect()
}

/// No destinations: the test is about dedupe, not delivery.
struct NoDestinations;

impl Renderer for NoDestinations {
    fn destinations(&self) -> Vec<String> {
        Vec::new()
    }

    fn render(&self, _fields: &dyn LeadFields, _route: Route) -> Option<MappedRoute> {
        None
    }
}

/// A lead as the ingest handler hands it to the outbox.
#[derive(Clone)]
struct Lead {
    id: String,
    raw: Value,
    lead: NormalizedLead,
    fingerprints: Vec<String>,
    features: Features,
    received_at_ms: i64,
}

impl Lead {
    fn prepared(&self) -> PreparedLead {
        PreparedLead {
            id: self.id.clone(),
            source: "web".into(),
            received_at_ms: self.received_at_ms,
            forms: leadgate::store::StoredForms::new(&CRYPT, &self.id, &self.raw, &self.lead),
            lead: self.lead.clone(),
            fingerprints: self.fingerprints.clone(),
            features: self.features.clone(),
            routes: Vec::new(),
        }
    }
}

/// The generated corpus (persons rendered as noisy leads), normalized as
/// the server does, received one second apart ending about now.
fn leads(config: &DedupeConfig) -> Vec<Lead> {
    let options = NormalizeOptions::with_region("US".parse().unwrap()).without_acceptance();
    let corpus = generate(20_260_101, 1_200);
    let start = leadgate::now_ms() - corpus.len() as i64 * 1_000;
    corpus
        .into_iter()
        .enumerate()
        .map(|(i, (mut raw, _))| {
            let id = raw
                .as_object_mut()
                .and_then(|o| o.remove("id"))
                .and_then(|v| v.as_str().map(str::to_string))
                .expect("the corpus gives ids");
            let lead = normalize(&raw, &options).unwrap_or_default();
            let received_at_ms = start + i as i64 * 1_000;
            Lead {
                fingerprints: blinded(&lead),
                features: Features::from_lead(&lead, config, received_at_ms),
                id,
                raw,
                lead,
                received_at_ms,
            }
        })
        .collect()
}

fn kind(d: &Decision) -> &'static str {
    match d {
        Decision::New => "new",
        Decision::Duplicate { .. } => "duplicate",
        Decision::Possible { .. } => "possible",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuilt_index_decides_as_one_that_never_restarted() {
    let config = DedupeConfig::default();
    let all = leads(&config);
    let (committed, follow_ups) = all.split_at(all.len() * 3 / 4);
    let (_dir, url) = new_store();

    // The index that never restarts decides what the outbox decides.
    let mut live = Deduper::new(config.clone());
    {
        let store = store::open(&url, Durability::Full, CRYPT.clone())
            .await
            .unwrap();
        // As a host starts: the outbox rebuilds its index from the store.
        let (outbox, task) = start_outbox(&store, from_store(&config));
        for batch in committed.chunks(50) {
            let answers = outbox
                .commit(batch.iter().map(Lead::prepared).collect())
                .await
                .unwrap();
            assert_eq!(answers.len(), batch.len());
            for (answer, lead) in answers.iter().zip(batch) {
                let v = live.decide(&lead.id, "web", &lead.fingerprints, lead.features.clone());
                assert_eq!(answer.id, lead.id);
                assert_eq!(answer.decision, v.decision, "{}", lead.id);
            }
        }
        drop(outbox);
        task.await.unwrap();
    }

    // Restart: a new store handle, the index rebuilt from what is stored.
    let mut rebuilt = rebuild(&url, &config).await;
    assert_eq!(rebuilt.len(), live.len(), "every stored lead is indexed");
    assert_eq!(rebuilt.fingerprint_count(), live.fingerprint_count());

    let mut kinds = std::collections::BTreeMap::<&str, usize>::new();
    for lead in follow_ups {
        let a = live.decide(&lead.id, "web", &lead.fingerprints, lead.features.clone());
        let b = rebuilt.decide(&lead.id, "web", &lead.fingerprints, lead.features.clone());
        assert_eq!(a.decision, b.decision, "{}", lead.id);
        assert_eq!(
            (&a.person_id, &a.matched_id, a.score, &a.added),
            (&b.person_id, &b.matched_id, b.score, &b.added),
            "{}",
            lead.id
        );
        *kinds.entry(kind(&a.decision)).or_default() += 1;
        if matches!(&a.decision, Decision::Duplicate { rule, .. } if rule == leadgate::pipeline::dedupe::fuzzy::FUZZY_RULE)
        {
            *kinds.entry("duplicate (fuzzy)").or_default() += 1;
        }
    }
    eprintln!("follow-ups: {kinds:?}");
    // The follow-ups exercise all three outcomes, the fuzzy tier included.
    for k in ["new", "duplicate", "duplicate (fuzzy)", "possible"] {
        assert!(kinds.get(k).copied().unwrap_or(0) > 5, "{kinds:?}");
    }
}

/// The dedupe index rebuilt from a store (with the bundled model).
async fn index_of(store: &dyn leadgate::store::Store, config: &DedupeConfig) -> Deduper {
    let model = leadgate::pipeline::dedupe::ModelHandle::bundled(&config.custom_fields);
    outbox::load_index(store, config, model).await.unwrap().0
}

/// A restart: a new store handle, the index rebuilt from what is stored.
async fn rebuild(url: &str, config: &DedupeConfig) -> Deduper {
    let store = store::open(url, Durability::Full, CRYPT.clone())
        .await
        .unwrap();
    index_of(&*store, config).await
}

const DAY: i64 = 86_400_000;

/// A lead of `raw`, received at `at`, as ingest hands it to the outbox.
fn lead_at(config: &DedupeConfig, id: &str, raw: Value, at: i64) -> Lead {
    let options = NormalizeOptions::with_region("US".parse().unwrap());
    let normalized = normalize(&raw, &options).unwrap();
    Lead {
        id: id.into(),
        fingerprints: blinded(&normalized),
        features: Features::from_lead(&normalized, config, at),
        lead: normalized,
        raw,
        received_at_ms: at,
    }
}

/// A new SQLite store's URL, in a folder that lives as long as the guard.
fn new_store() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/x.db", dir.path().display());
    (dir, url)
}

/// The index a host starts with: rebuilt from the store by the outbox.
fn from_store(config: &DedupeConfig) -> StartIndex {
    StartIndex::FromStore {
        config: Box::new(config.clone()),
        model: leadgate::pipeline::dedupe::ModelHandle::bundled(&config.custom_fields),
    }
}

/// The real outbox on `store`, deciding with `index`, without destinations.
fn start_outbox(
    store: &Arc<dyn leadgate::store::Store>,
    index: StartIndex,
) -> (Outbox, tokio::task::JoinHandle<()>) {
    let merging = Merging {
        config: MergeConfig::default(),
        renderer: Arc::new(NoDestinations),
    };
    Outbox::start(store.clone(), index, 64, merging, Arc::new(Notify::new()))
}

/// Commits `leads` in one group through the real outbox into a new store
/// at `url` (SQLite or PostgreSQL; its index starts empty), and stops it;
/// the decisions.
async fn commit_all(url: &str, config: &DedupeConfig, leads: &[Lead]) -> Vec<Decision> {
    let store = store::open(url, Durability::Full, CRYPT.clone())
        .await
        .unwrap();
    let (outbox, task) = start_outbox(
        &store,
        StartIndex::Built(Box::new(Deduper::new(config.clone()))),
    );
    let answers = outbox
        .commit(leads.iter().map(Lead::prepared).collect())
        .await
        .unwrap();
    drop(outbox);
    task.await.unwrap();
    answers.into_iter().map(|a| a.decision).collect()
}

fn person_of(d: &Decision) -> Option<&str> {
    match d {
        Decision::Duplicate { person_id, .. } => Some(person_id),
        _ => None,
    }
}

/// A person first seen before the window who sent another lead inside it
/// is still a duplicate after a restart: the rebuilt index counts the
/// window from the person's last lead, as the live one does. A person seen
/// only before the window is not kept in memory at all.
#[tokio::test]
async fn a_person_active_inside_the_window_survives_a_restart() {
    let config = DedupeConfig {
        window_days: 30,
        ..DedupeConfig::default()
    };
    let now = leadgate::now_ms();
    let lead = |id: &str, email: &str, at: i64| {
        lead_at(&config, id, serde_json::json!({ "email": email }), at)
    };
    let (_dir, url) = new_store();
    let decisions = commit_all(
        &url,
        &config,
        &[
            lead("A1", "active@example.com", now - 40 * DAY),
            lead("Q1", "quiet@example.com", now - 40 * DAY),
            // 20 days after A1: a duplicate, which keeps A's email
            // fresh, though it adds no fingerprint of its own.
            lead("A2", "active@example.com", now - 20 * DAY),
        ],
    )
    .await;
    assert!(decisions[2].is_duplicate());
    let mut rebuilt = rebuild(&url, &config).await;
    let again = lead("A3", "active@example.com", now);
    let v = rebuilt.decide("A3", "web", &again.fingerprints, again.features.clone());
    assert_eq!(person_of(&v.decision), Some("A1"), "{:?}", v.decision);
    let quiet = lead("Q2", "quiet@example.com", now);
    let v = rebuilt.decide("Q2", "web", &quiet.fingerprints, quiet.features.clone());
    assert_eq!(v.decision, Decision::New, "the window has passed for Q");
}

/// A fingerprint whose window passed moves on to the next person who
/// brings it, and stays with that person after a restart, even while its
/// first owner is still active with other leads.
#[tokio::test]
async fn a_fingerprint_that_moved_on_stays_with_its_new_person_after_a_restart() {
    // The exact tier alone: the fuzzy tier would find the shared email
    // anyway.
    let config = DedupeConfig {
        window_days: 30,
        fuzzy: false,
        ..DedupeConfig::default()
    };
    let now = leadgate::now_ms();
    let lead = |id: &str, raw: Value, at: i64| lead_at(&config, id, raw, at);
    let (_dir, url) = new_store();
    let decisions = commit_all(
        &url,
        &config,
        &[
            lead(
                "A1",
                serde_json::json!({ "email": "shared@example.com", "phone": "+1 415 555 0101" }),
                now - 45 * DAY,
            ),
            // A is still active, by phone.
            lead(
                "A2",
                serde_json::json!({ "email": "a.new@example.com", "phone": "+1 415 555 0101" }),
                now - 20 * DAY,
            ),
            // The email's window passed for A: B is a new person and
            // takes it.
            lead(
                "B1",
                serde_json::json!({ "email": "shared@example.com" }),
                now - 10 * DAY,
            ),
        ],
    )
    .await;
    assert_eq!(person_of(&decisions[1]), Some("A1"), "{:?}", decisions[1]);
    assert_eq!(decisions[2], Decision::New);
    let mut rebuilt = rebuild(&url, &config).await;
    let c = lead(
        "C1",
        serde_json::json!({ "email": "shared@example.com" }),
        now,
    );
    let v = rebuilt.decide("C1", "web", &c.fingerprints, c.features.clone());
    assert_eq!(person_of(&v.decision), Some("B1"), "{:?}", v.decision);
}

/// A host's outbox starts before its index is rebuilt (the host listens
/// meanwhile): it says it is loading, and leads committed at once wait for
/// the index and are decided as an index that never restarted decides
/// them. A store it cannot read the leads of fails the rebuild: the state
/// says so and every lead is refused, none decided against an empty index.
#[tokio::test]
async fn leads_committed_while_the_index_loads_wait_for_it() {
    let config = DedupeConfig::default();
    let all = leads(&config);
    let (committed, follow_ups) = all.split_at(all.len() * 3 / 4);
    let (_dir, url) = new_store();
    let stored = commit_all(&url, &config, committed).await;
    let mut live = Deduper::new(config.clone());
    for (lead, decision) in committed.iter().zip(&stored) {
        let v = live.decide(&lead.id, "web", &lead.fingerprints, lead.features.clone());
        assert_eq!(&v.decision, decision, "{}", lead.id);
    }

    let store = store::open(&url, Durability::Full, CRYPT.clone())
        .await
        .unwrap();
    let (outbox, task) = start_outbox(&store, from_store(&config));
    // This runtime has one thread: the writer has not run yet.
    assert_eq!(outbox.index_state(), IndexState::Loading);
    let answers = outbox
        .commit(follow_ups.iter().map(Lead::prepared).collect())
        .await
        .unwrap();
    assert_eq!(outbox.index_state(), IndexState::Ready);
    let mut duplicates = 0;
    for (answer, lead) in answers.iter().zip(follow_ups) {
        let v = live.decide(&lead.id, "web", &lead.fingerprints, lead.features.clone());
        assert_eq!(answer.decision, v.decision, "{}", lead.id);
        duplicates += usize::from(matches!(v.decision, Decision::Duplicate { .. }));
    }
    assert!(duplicates > 5, "the follow-ups match stored persons");
    drop(outbox);
    task.await.unwrap();

    // Other keys: the stored leads cannot be opened.
    let unreadable = store::open(&url, Durability::Full, Crypt::ephemeral())
        .await
        .unwrap();
    let (outbox, task) = start_outbox(&unreadable, from_store(&config));
    let refused = outbox.commit(vec![follow_ups[0].prepared()]).await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(
        matches!(outbox.index_state(), IndexState::Failed(ref e) if !e.is_empty()),
        "{:?}",
        outbox.index_state()
    );
    // Later leads are refused too (the writer is gone), never decided.
    assert!(outbox.commit(vec![follow_ups[1].prepared()]).await.is_err());
    drop(outbox);
    task.await.unwrap();
}

/// On a store several hosts share, a host rebuilding its index does not
/// hold the dedupe turn: it becomes ready while another host holds it.
/// Its first turn reads what the others wrote after its load, so its
/// decisions are those of an index that saw every lead in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_rebuilding_on_a_shared_store_leaves_the_turn_to_the_others() {
    let config = DedupeConfig::default();
    let all = leads(&config);
    let (committed, rest) = all.split_at(all.len() / 2);
    let (during, after) = rest.split_at(rest.len() / 2);
    let schema = crate::support::postgres_schema("lg_restart").await;
    let url = schema.store_url(&leadgate::testing::postgres_url());
    let open = || async {
        store::open(&url, Durability::Full, CRYPT.clone())
            .await
            .unwrap()
    };
    let mut live = Deduper::new(config.clone());
    let mut expect = |leads: &[Lead], answers: Vec<outbox::Committed>| {
        for (answer, lead) in answers.iter().zip(leads) {
            let v = live.decide(&lead.id, "web", &lead.fingerprints, lead.features.clone());
            assert_eq!(answer.decision, v.decision, "{}", lead.id);
        }
    };
    // Host A writes the first half.
    let a_store = open().await;
    let (a, a_task) = start_outbox(
        &a_store,
        StartIndex::Built(Box::new(Deduper::new(config.clone()))),
    );
    expect(
        committed,
        a.commit(committed.iter().map(Lead::prepared).collect())
            .await
            .unwrap(),
    );

    // Another host holds the turn for as long as B loads.
    let holder = open().await;
    holder.take_turn().await.unwrap();
    let b_store = open().await;
    let (b, b_task) = start_outbox(&b_store, from_store(&config));
    let mut states = b.index_states();
    let ready = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        states.wait_for(|s| *s != IndexState::Loading),
    )
    .await
    .expect("B's index loads while another host holds the turn")
    .unwrap()
    .clone();
    assert_eq!(ready, IndexState::Ready);
    holder.end_turn().await.unwrap();
    drop(holder);

    // A writes more after B's load; B's first turn reads it.
    expect(
        during,
        a.commit(during.iter().map(Lead::prepared).collect())
            .await
            .unwrap(),
    );
    let answers = b
        .commit(after.iter().map(Lead::prepared).collect())
        .await
        .unwrap();
    let duplicates_of_during = answers
        .iter()
        .filter_map(|a| person_of(&a.decision))
        .filter(|p| during.iter().any(|l| l.id == *p))
        .count();
    expect(after, answers);
    assert!(
        duplicates_of_during > 0,
        "some of B's leads join persons A wrote after B's load"
    );
    for (outbox, task) in [(a, a_task), (b, b_task)] {
        drop(outbox);
        task.await.unwrap();
    }
    schema.drop_schema().await;
}

/// A TCP proxy to the test PostgreSQL that can be cut (every connection
/// closed, new ones refused) and mended.
struct Cuttable {
    addr: std::net::SocketAddr,
    open: tokio::sync::watch::Sender<bool>,
}

impl Cuttable {
    async fn start(upstream: String) -> Cuttable {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, watch) = tokio::sync::watch::channel(true);
        tokio::spawn(async move {
            loop {
                let Ok((mut down, _)) = listener.accept().await else {
                    continue;
                };
                let mut watch = watch.clone();
                if !*watch.borrow() {
                    continue; // refused: dropped at once
                }
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = watch.wait_for(|open| !open) => {}
                    }
                });
            }
        });
        Cuttable { addr, open }
    }

    fn cut(&self) {
        self.open.send_replace(false);
    }

    fn mend(&self) {
        self.open.send_replace(true);
    }
}

/// A host whose store cannot be reached while it rebuilds its index keeps
/// trying (it says it is starting, and takes no decision) and is ready
/// once the store answers again, its index whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_waits_for_a_store_that_cannot_be_reached() {
    let config = DedupeConfig::default();
    let all = leads(&config);
    let (committed, follow_ups) = all.split_at(all.len() * 3 / 4);
    let schema = crate::support::postgres_schema("lg_restart").await;
    let server = leadgate::testing::postgres_url();
    let stored = commit_all(&schema.store_url(&server), &config, committed).await;
    let mut live = Deduper::new(config.clone());
    for (lead, decision) in committed.iter().zip(&stored) {
        let v = live.decide(&lead.id, "web", &lead.fingerprints, lead.features.clone());
        assert_eq!(&v.decision, decision, "{}", lead.id);
    }

    // The host's store, reached through a proxy that is cut as it starts.
    let upstream = reqwest::Url::parse(&server).unwrap();
    let proxy = Cuttable::start(format!(
        "{}:{}",
        upstream.host_str().unwrap(),
        upstream.port().unwrap_or(5432)
    ))
    .await;
    let mut through = upstream.clone();
    through.set_port(Some(proxy.addr.port())).unwrap();
    let through = schema.store_url(through.as_str());
    let store = store::open(&through, Durability::Full, CRYPT.clone())
        .await
        .unwrap();
    proxy.cut();
    let (outbox, task) = start_outbox(&store, from_store(&config));
    let posted = tokio::spawn({
        let outbox = outbox.clone();
        let leads: Vec<PreparedLead> = follow_ups.iter().map(Lead::prepared).collect();
        async move { outbox.commit(leads).await }
    });
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(
        outbox.index_state(),
        IndexState::Loading,
        "still starting while the store cannot be reached"
    );
    assert!(!posted.is_finished(), "no lead is decided meanwhile");
    proxy.mend();
    let answers = tokio::time::timeout(std::time::Duration::from_secs(90), posted)
        .await
        .expect("the leads are stored once the store answers")
        .unwrap()
        .unwrap();
    assert_eq!(outbox.index_state(), IndexState::Ready);
    for (answer, lead) in answers.iter().zip(follow_ups) {
        let v = live.decide(&lead.id, "web", &lead.fingerprints, lead.features.clone());
        assert_eq!(answer.decision, v.decision, "{}", lead.id);
    }
    drop(outbox);
    task.await.unwrap();
    schema.drop_schema().await;
}
