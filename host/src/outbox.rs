//! Outbox: the durable hand-off between ingest and delivery.
//!
//! One writer task owns the dedupe index: it takes every queued request,
//! decides dedupe for each lead in arrival order and builds the rows (the
//! lead, its new fingerprints, one job per lead × destination). A committer
//! task writes each group in one transaction (one fsync for many requests)
//! while the writer already builds the next group. Only after the commit
//! does each request get its answer, so a 202 always means "stored".
//!
//! If a commit fails, nothing of that group is stored, but the writer may
//! already have decided the next group against it. Each group carries the
//! epoch of the index it was decided with; after a failure the committer
//! refuses groups of older epochs, and the writer reloads the index from
//! the store before deciding again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::{Notify, mpsc, oneshot};

use crate::dedupe::{Decision, DedupeConfig, Deduper, FINGERPRINT_VERSION, Features};
use crate::mapping::LeadFields;
use crate::merge::{LeadMeta, MergeConfig, Person, merge};
use crate::normalize::{NormalizedLead, RULES_VERSION};
use crate::plugins::Registry;
use crate::route::Route;
use crate::store::{JobState, NewJob, NewLead, PersonRow, Store, StoreError, StoredPerson};

/// Golden records kept in the writer's memory: every person touched in
/// roughly the last `2 × PERSON_CACHE` leads (older ones are read back from
/// the store, where they are committed by then).
const PERSON_CACHE: usize = 50_000;

/// How often the writer drops dedupe records older than the window.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// A lead that passed validation, serialized and mapped for each route by
/// the request handler (work done in parallel, off the writer's path).
#[derive(Debug)]
pub struct PreparedLead {
    pub id: String,
    pub source: String,
    pub received_at_ms: i64,
    /// The lead as posted (JSON).
    pub raw: String,
    /// The normalized lead (JSON).
    pub normalized: String,
    /// The normalized lead, for merging into its person.
    pub lead: NormalizedLead,
    pub fingerprints: Vec<String>,
    /// The lead's comparable form for the fuzzy dedupe tier.
    pub features: Features,
    pub routes: Vec<MappedRoute>,
}

/// One destination's payload for a lead, or why there is none.
#[derive(Debug)]
pub struct MappedRoute {
    pub route: Route,
    pub mapping_version: String,
    /// The CRM properties as JSON, or the mapping error.
    pub payload: Result<String, String>,
}

/// Maps fields for a route's destination with that destination's current
/// mapping (the plugin registry).
pub trait Renderer: Send + Sync {
    /// None when the destination is no longer configured.
    fn render(&self, fields: &dyn LeadFields, route: Route) -> Option<MappedRoute>;
}

impl Renderer for Registry {
    fn render(&self, fields: &dyn LeadFields, route: Route) -> Option<MappedRoute> {
        let dest = self.get(&route.destination)?;
        let payload = dest
            .mapping
            .render(fields, &dest.adapter.info().required_properties)
            .map(|props| serde_json::to_string(&props).expect("properties serialize"))
            .map_err(|e| e.to_string());
        Some(MappedRoute {
            payload,
            mapping_version: dest.mapping.version.clone(),
            route,
        })
    }
}

/// How the writer merges duplicates into their persons.
#[derive(Clone)]
pub struct Merging {
    pub config: MergeConfig,
    pub renderer: Arc<dyn Renderer>,
}

/// What merging a duplicate produced: the changes, the person's new
/// record and the updates for the destinations whose payload changed.
struct Merged {
    changes: String,
    person: PersonRow,
    updates: Vec<MappedRoute>,
}

/// A golden record in the writer's cache. Most persons never get a
/// duplicate, so a new lead is kept as it came and its record (provenance
/// for every field) is built only when a duplicate needs it.
enum Cached {
    First {
        lead: NormalizedLead,
        source: String,
        at_ms: i64,
    },
    Merged(Person),
}

/// The writer's golden records: two generations, the older dropped when
/// the newer fills up.
#[derive(Default)]
struct PersonCache {
    recent: std::collections::HashMap<String, Cached>,
    older: std::collections::HashMap<String, Cached>,
}

impl PersonCache {
    fn take(&mut self, id: &str) -> Option<Person> {
        let cached = self.recent.remove(id).or_else(|| self.older.remove(id))?;
        Some(match cached {
            Cached::Merged(person) => person,
            Cached::First {
                lead,
                source,
                at_ms,
            } => Person::first(
                id,
                lead,
                &LeadMeta {
                    lead_id: id,
                    source: &source,
                    at_ms,
                },
            ),
        })
    }

    fn put(&mut self, person: Person) {
        self.insert(person.id.clone(), Cached::Merged(person));
    }

    /// A new person: its first lead.
    fn put_first(&mut self, id: &str, lead: NormalizedLead, source: &str, at_ms: i64) {
        let cached = Cached::First {
            lead,
            source: source.to_string(),
            at_ms,
        };
        self.insert(id.to_string(), cached);
    }

    fn insert(&mut self, id: String, cached: Cached) {
        if self.recent.len() >= PERSON_CACHE {
            // The older generation goes; its table's room is reused.
            std::mem::swap(&mut self.recent, &mut self.older);
            self.recent.clear();
        }
        self.recent.insert(id, cached);
    }

    fn clear(&mut self) {
        self.recent.clear();
        self.older.clear();
    }
}

/// A person as stored: its golden record, or its first lead.
pub async fn load_person(store: &dyn Store, id: &str) -> Result<Option<Person>, StoreError> {
    let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("person {id}: {e}"));
    Ok(match store.person(id).await? {
        None => None,
        Some(StoredPerson::Merged(json)) => Some(serde_json::from_str(&json).map_err(corrupt)?),
        Some(StoredPerson::FirstLead {
            source,
            received_at_ms,
            normalized,
        }) => Some(Person::first(
            id,
            serde_json::from_str(&normalized).map_err(corrupt)?,
            &LeadMeta {
                lead_id: id,
                source: &source,
                at_ms: received_at_ms,
            },
        )),
    })
}

/// Merges a duplicate into its person; updates for every route whose
/// payload the merge changed.
fn merge_duplicate(
    person: &mut Person,
    lead: &PreparedLead,
    normalized: &NormalizedLead,
    merging: &Merging,
) -> Option<Merged> {
    let before = person.clone();
    let changes = merge(
        person,
        normalized,
        &LeadMeta {
            lead_id: &lead.id,
            source: &lead.source,
            at_ms: lead.received_at_ms,
        },
        &merging.config,
    );
    if changes.is_empty() {
        return None;
    }
    let updates = lead
        .routes
        .iter()
        .filter_map(|r| {
            let after = merging.renderer.render(person, r.route.clone())?;
            let was = merging.renderer.render(&before, r.route.clone())?;
            (after.payload != was.payload).then_some(after)
        })
        .collect();
    Some(Merged {
        changes: serde_json::to_string(&changes).expect("changes serialize"),
        person: PersonRow {
            id: person.id.clone(),
            revision: person.revision,
            record: serde_json::to_string(&*person).expect("person serializes"),
        },
        updates,
    })
}

/// What the outbox did with a lead.
#[derive(Clone, Debug, Serialize)]
pub struct Committed {
    pub id: String,
    #[serde(flatten)]
    pub decision: Decision,
}

type Reply = oneshot::Sender<Result<Vec<Committed>, OutboxError>>;

/// The handle requests use to commit leads.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<(Vec<PreparedLead>, Reply)>,
    dedupe: Arc<DedupeConfig>,
    renderer: Arc<dyn Renderer>,
    work: Arc<Notify>,
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

struct Group {
    epoch: u64,
    rows: Vec<NewLead>,
    answers: Vec<(Reply, Vec<Committed>)>,
    made_jobs: bool,
}

impl Outbox {
    /// Starts the writer and the committer. `index` holds the stored
    /// leads (see [`load_index`]); `work` is notified after every commit
    /// that made jobs.
    /// The returned task ends when every `Outbox` handle is dropped and the
    /// queue is committed.
    pub fn start(
        store: Arc<dyn Store>,
        index: Deduper,
        group_max: usize,
        merging: Merging,
        work: Arc<Notify>,
    ) -> (Outbox, tokio::task::JoinHandle<()>) {
        let dedupe = Arc::new(index.config().clone());
        let renderer = merging.renderer.clone();
        let (tx, rx) = mpsc::channel(4096);
        // One group building while one commits.
        let (groups_tx, groups_rx) = mpsc::channel(1);
        let min_epoch = Arc::new(AtomicU64::new(0));
        let writer = tokio::spawn(writer(
            store.clone(),
            index,
            group_max,
            merging,
            rx,
            groups_tx,
            min_epoch.clone(),
        ));
        let committer = tokio::spawn(committer(store, groups_rx, min_epoch, work.clone()));
        let task = tokio::spawn(async move {
            let _ = writer.await;
            let _ = committer.await;
        });
        (
            Outbox {
                tx,
                dedupe,
                renderer,
                work,
            },
            task,
        )
    }

    /// Tells idle delivery workers there is new work (after a replay).
    pub fn wake_delivery(&self) {
        self.work.notify_waiters();
    }

    /// Maps a lead for its routes (what the request handlers use, so that
    /// merges and new leads map alike).
    pub fn render(&self, fields: &dyn LeadFields, routes: Vec<Route>) -> Vec<MappedRoute> {
        routes
            .into_iter()
            .filter_map(|r| self.renderer.render(fields, r))
            .collect()
    }

    /// The dedupe configuration the writer decides with (for computing
    /// [`Features`] off the writer's path).
    pub fn dedupe_config(&self) -> &DedupeConfig {
        &self.dedupe
    }

    /// Commits `leads`; the answer comes after the transaction is durable.
    pub async fn commit(&self, leads: Vec<PreparedLead>) -> Result<Vec<Committed>, OutboxError> {
        if leads.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((leads, reply))
            .await
            .map_err(|_| OutboxError::Closed)?;
        answer.await.map_err(|_| OutboxError::Closed)?
    }
}

async fn writer(
    store: Arc<dyn Store>,
    mut index: Deduper,
    group_max: usize,
    merging: Merging,
    mut rx: mpsc::Receiver<(Vec<PreparedLead>, Reply)>,
    groups: mpsc::Sender<Group>,
    min_epoch: Arc<AtomicU64>,
) {
    let mut epoch = 0u64;
    let mut persons = PersonCache::default();
    let mut last_prune = std::time::Instant::now();
    let mut queue: Vec<(Vec<PreparedLead>, Reply)> = Vec::new();
    loop {
        if rx.recv_many(&mut queue, 256).await == 0 {
            return;
        }
        let mut total: usize = queue.iter().map(|(l, _)| l.len()).sum();
        while total < group_max {
            match rx.try_recv() {
                Ok(item) => {
                    total += item.0.len();
                    queue.push(item);
                }
                Err(_) => break,
            }
        }
        let required = min_epoch.load(Ordering::Acquire);
        if epoch < required {
            match load_index(&*store, index.config()).await {
                Ok(fresh) => {
                    index = fresh;
                    persons.clear();
                    epoch = required;
                }
                Err(e) => {
                    tracing::error!(error = %e, "reloading the dedupe index failed");
                    let e = OutboxError::Store(Arc::new(e));
                    for (_, reply) in queue.drain(..) {
                        let _ = reply.send(Err(e.clone()));
                    }
                    continue;
                }
            }
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            // Records older than the exact-match window can no longer
            // decide anything: give their memory back.
            let dropped = index.prune(crate::now_ms());
            if dropped > 0 {
                tracing::info!(records = dropped, "pruned the dedupe index to its window");
            }
            last_prune = std::time::Instant::now();
        }
        let mut group = Group {
            epoch,
            rows: Vec::with_capacity(total),
            answers: Vec::with_capacity(queue.len()),
            made_jobs: false,
        };
        let mut failed = None;
        for (leads, reply) in queue.drain(..) {
            let mut committed = Vec::with_capacity(leads.len());
            for mut lead in leads {
                let features = std::mem::take(&mut lead.features);
                let normalized = std::mem::take(&mut lead.lead);
                let verdict = index.decide(&lead.id, &lead.source, &lead.fingerprints, features);
                let decision = verdict.decision;
                let mut merged = None;
                if let Decision::Duplicate { person_id, .. } = &decision {
                    let person = match persons.take(person_id) {
                        Some(p) => Some(p),
                        None => match load_person(&*store, person_id).await {
                            Ok(p) => p,
                            Err(e) => {
                                failed.get_or_insert(e);
                                None
                            }
                        },
                    };
                    if let Some(mut person) = person {
                        merged = merge_duplicate(&mut person, &lead, &normalized, &merging);
                        persons.put(person);
                    }
                } else {
                    persons.put_first(&lead.id, normalized, &lead.source, lead.received_at_ms);
                }
                let row = build_row(lead, &decision, verdict.added, merged);
                group.made_jobs |= !row.jobs.is_empty();
                committed.push(Committed {
                    id: row.id.clone(),
                    decision,
                });
                group.rows.push(row);
            }
            group.answers.push((reply, committed));
        }
        if let Some(e) = failed {
            // A person could not be read: nothing of this group is stored,
            // and the index, which has already seen the group, is rebuilt.
            tracing::error!(error = %e, "reading a person for a merge failed");
            min_epoch.fetch_max(epoch + 1, Ordering::AcqRel);
            let e = OutboxError::Store(Arc::new(e));
            for (reply, _) in group.answers {
                let _ = reply.send(Err(e.clone()));
            }
            continue;
        }
        if groups.send(group).await.is_err() {
            return;
        }
    }
}

/// Builds the dedupe index from the store: every stored lead's
/// fingerprints and, for the fuzzy tier, its features.
pub async fn load_index(store: &dyn Store, config: &DedupeConfig) -> Result<Deduper, StoreError> {
    // Persons whose last lead is older than the window can no longer be
    // matched: their leads stay in the store but not in memory.
    let since = match config.window_days {
        0 => i64::MIN,
        days => crate::now_ms() - i64::from(days) * 86_400_000,
    };
    let records = store.load_dedupe_records(since).await?;
    let mut index = Deduper::new(config.clone());
    for mut r in records {
        let lead = serde_json::from_str::<crate::normalize::NormalizedLead>(&r.normalized).ok();
        // Every fingerprint the lead had, not only those it added: a
        // duplicate refreshes its person's fingerprints (the window counts
        // from the person's last lead), and so must the rebuilt index.
        if let Some(lead) = &lead {
            for fp in crate::dedupe::fingerprints(lead) {
                if !r.fingerprints.contains(&fp) {
                    r.fingerprints.push(fp);
                }
            }
        }
        let features = lead
            .filter(|_| config.fuzzy)
            .map(|lead| Features::from_lead(&lead, config, r.received_at_ms));
        index.insert_stored(
            &r.id,
            &r.person_id,
            &r.fingerprints,
            features,
            r.received_at_ms,
        );
    }
    Ok(index)
}

async fn committer(
    store: Arc<dyn Store>,
    mut groups: mpsc::Receiver<Group>,
    min_epoch: Arc<AtomicU64>,
    work: Arc<Notify>,
) {
    while let Some(group) = groups.recv().await {
        if group.epoch < min_epoch.load(Ordering::Acquire) {
            for (reply, _) in group.answers {
                let _ = reply.send(Err(OutboxError::Superseded));
            }
            continue;
        }
        match store.insert_leads(&group.rows).await {
            Ok(()) => {
                for (reply, committed) in group.answers {
                    let _ = reply.send(Ok(committed));
                }
                if group.made_jobs {
                    work.notify_waiters();
                }
            }
            Err(e) => {
                tracing::error!(error = %e, leads = group.rows.len(), "outbox commit failed");
                min_epoch.fetch_max(group.epoch + 1, Ordering::AcqRel);
                let e = OutboxError::Store(Arc::new(e));
                for (reply, _) in group.answers {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

fn build_row(
    lead: PreparedLead,
    decision: &Decision,
    new_fingerprints: Vec<String>,
    merged: Option<Merged>,
) -> NewLead {
    let (duplicate, person_id) = match decision {
        // A possible duplicate is a new person, flagged for review.
        Decision::New | Decision::Possible { .. } => (false, lead.id.clone()),
        Decision::Duplicate { person_id, .. } => (true, person_id.clone()),
    };
    // A new person's first jobs, or a merged person's updates.
    let (routes, revision, merge, person) = match merged {
        _ if !duplicate => (lead.routes, 0, None, None),
        None => (Vec::new(), 0, None, None),
        Some(m) => (
            m.updates,
            m.person.revision,
            Some(m.changes),
            Some(m.person),
        ),
    };
    let mut jobs = Vec::with_capacity(routes.len());
    for mapped in routes {
        let (state, payload, last_error) = match mapped.payload {
            Ok(props) => (JobState::Pending, props, None),
            Err(e) => (
                JobState::Dead,
                "[]".to_string(),
                Some(format!("mapping: {e}")),
            ),
        };
        let destination = mapped.route.destination;
        jobs.push(NewJob {
            idempotency_key: revision_key(&person_id, &destination, revision),
            chain: format!("{person_id}/{destination}"),
            id: format!("{}:{destination}", lead.id),
            destination,
            priority: mapped.route.priority.as_i64(),
            sla_deadline_ms: mapped.route.sla_deadline_ms,
            payload,
            mapping_version: mapped.mapping_version,
            state,
            last_error,
        });
    }
    NewLead {
        merge,
        person,
        decision: serde_json::to_string(decision).expect("decision serializes"),
        normalized: lead.normalized,
        id: lead.id,
        source: lead.source,
        received_at_ms: lead.received_at_ms,
        duplicate,
        person_id,
        rules_version: RULES_VERSION,
        fp_version: FINGERPRINT_VERSION,
        raw: lead.raw,
        new_fingerprints,
        jobs,
    }
}

/// One key per person × destination: a retry, a replay or a crash can never
/// make a second job, or a second CRM record, for the same person.
pub fn idempotency_key(person_id: &str, destination: &str) -> String {
    format!("{person_id}/{destination}/v1")
}

/// The key of a person's job for one revision of its golden record: the
/// first delivery keeps [`idempotency_key`], each merge that changed the
/// payload gets its own (`…/v1/r2`), so an update is made once.
pub fn revision_key(person_id: &str, destination: &str, revision: u32) -> String {
    let key = idempotency_key(person_id, destination);
    match revision {
        0 => key,
        r => format!("{key}/r{r}"),
    }
}
