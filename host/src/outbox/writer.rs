//! The outbox writer: the one task that owns the dedupe index. It takes
//! queued payloads in arrival order, decides each lead against the index,
//! merges a duplicate into its person's golden record (queuing an update
//! for every destination whose payload the merge changed), and hands the
//! group's rows to the committer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::committer::Group;
use super::jobs::{Merged, build_row};
use super::{Committed, Merging, OutboxError, PreparedLead, Reply};
use crate::pipeline::dedupe::{Decision, DedupeConfig, Deduper, Features, fingerprints};
use crate::pipeline::merge::{LeadMeta, Person, merge};
use crate::pipeline::normalize::NormalizedLead;
use crate::store::{Store, StoreError, load_person};

/// Golden records kept in the writer's memory: every person touched in
/// roughly the last `2 × PERSON_CACHE` leads (older ones are read back from
/// the store, where they are committed by then).
const PERSON_CACHE: usize = 50_000;

/// How often the writer drops dedupe records older than the window.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Most queued payloads taken in one go.
const MAX_PAYLOADS: usize = 256;

/// The writer's state.
pub(super) struct Writer {
    pub store: Arc<dyn Store>,
    pub index: Deduper,
    /// Most leads in one group.
    pub group_max: usize,
    pub merging: Merging,
    /// Set by the committer after a failed commit: groups decided with an
    /// older index are refused, and the writer reloads it first.
    pub min_epoch: Arc<AtomicU64>,
    pub persons: PersonCache,
    pub epoch: u64,
}

/// Runs the writer until every outbox handle is gone and the queue is
/// empty.
pub(super) async fn run(
    mut writer: Writer,
    mut rx: mpsc::Receiver<(Vec<PreparedLead>, Reply)>,
    groups: mpsc::Sender<Group>,
) {
    let mut last_prune = std::time::Instant::now();
    let mut queue: Vec<(Vec<PreparedLead>, Reply)> = Vec::new();
    loop {
        if rx.recv_many(&mut queue, MAX_PAYLOADS).await == 0 {
            return;
        }
        let mut total: usize = queue.iter().map(|(l, _)| l.len()).sum();
        while total < writer.group_max {
            match rx.try_recv() {
                Ok(item) => {
                    total += item.0.len();
                    queue.push(item);
                }
                Err(_) => break,
            }
        }
        if let Err(e) = writer.catch_up().await {
            tracing::error!(error = %e, "reloading the dedupe index failed");
            let e = OutboxError::Store(Arc::new(e));
            for (_, reply) in queue.drain(..) {
                let _ = reply.send(Err(e.clone()));
            }
            continue;
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            writer.prune();
            last_prune = std::time::Instant::now();
        }
        match writer.build_group(&mut queue, total).await {
            Ok(group) => {
                if groups.send(group).await.is_err() {
                    return;
                }
            }
            Err((e, answers)) => {
                // A person could not be read: nothing of this group is
                // stored, and the index, which has already seen the group,
                // is rebuilt.
                tracing::error!(error = %e, "reading a person for a merge failed");
                writer
                    .min_epoch
                    .fetch_max(writer.epoch + 1, Ordering::AcqRel);
                let e = OutboxError::Store(Arc::new(e));
                for reply in answers {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}

impl Writer {
    /// Reloads the index from the store if a failed commit left it ahead
    /// of what is stored.
    async fn catch_up(&mut self) -> Result<(), StoreError> {
        let required = self.min_epoch.load(Ordering::Acquire);
        if self.epoch < required {
            self.index = load_index(&*self.store, self.index.config()).await?;
            self.persons.clear();
            self.epoch = required;
        }
        Ok(())
    }

    /// Records older than the exact-match window can no longer decide
    /// anything: gives their memory back.
    fn prune(&mut self) {
        let dropped = self.index.prune(crate::now_ms());
        if dropped > 0 {
            tracing::info!(records = dropped, "pruned the dedupe index to its window");
        }
    }

    /// Decides every queued lead in order and builds the group's rows. On
    /// a failed read, the replies of the whole group come back with the
    /// error.
    async fn build_group(
        &mut self,
        queue: &mut Vec<(Vec<PreparedLead>, Reply)>,
        total: usize,
    ) -> Result<Group, (StoreError, Vec<Reply>)> {
        let mut group = Group {
            epoch: self.epoch,
            rows: Vec::with_capacity(total),
            answers: Vec::with_capacity(queue.len()),
            made_jobs: false,
        };
        let mut failed = None;
        for (leads, reply) in queue.drain(..) {
            let mut committed = Vec::with_capacity(leads.len());
            for lead in leads {
                match self.decide(lead).await {
                    Ok(row) => {
                        group.made_jobs |= !row.jobs.is_empty();
                        committed.push(Committed {
                            id: row.id.clone(),
                            decision: row.decision.clone(),
                        });
                        group.rows.push(row);
                    }
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
            group.answers.push((reply, committed));
        }
        match failed {
            None => Ok(group),
            Some(e) => Err((e, group.answers.into_iter().map(|(r, _)| r).collect())),
        }
    }

    /// One lead: its dedupe decision, its merge into a known person, and
    /// its row.
    async fn decide(
        &mut self,
        mut lead: PreparedLead,
    ) -> Result<crate::store::NewLead, StoreError> {
        let features = std::mem::take(&mut lead.features);
        let normalized = Arc::new(std::mem::take(&mut lead.lead));
        let verdict = self
            .index
            .decide(&lead.id, &lead.source, &lead.fingerprints, features);
        let decision = verdict.decision;
        let mut merged = None;
        if let Decision::Duplicate { person_id, .. } = &decision {
            let person = match self.persons.take(person_id) {
                Some(p) => Some(p),
                None => load_person(&*self.store, person_id).await?,
            };
            if let Some(mut person) = person {
                merged = merge_duplicate(&mut person, &lead, &normalized, &self.merging);
                self.persons.put(person);
            }
        } else {
            self.persons.put_first(
                &lead.id,
                normalized.clone(),
                &lead.source,
                lead.received_at_ms,
            );
        }
        Ok(build_row(lead, normalized, decision, verdict.added, merged))
    }
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
        changes,
        person: person.clone(),
        updates,
    })
}

/// A golden record in the writer's cache. Most persons never get a
/// duplicate, so a new lead is kept as it came and its record (provenance
/// for every field) is built only when a duplicate needs it.
enum Cached {
    First {
        lead: Arc<NormalizedLead>,
        source: String,
        at_ms: i64,
    },
    Merged(Box<Person>),
}

/// The writer's golden records: two generations, the older dropped when
/// the newer fills up.
#[derive(Default)]
pub(super) struct PersonCache {
    recent: HashMap<String, Cached>,
    older: HashMap<String, Cached>,
}

impl PersonCache {
    fn take(&mut self, id: &str) -> Option<Person> {
        let cached = self.recent.remove(id).or_else(|| self.older.remove(id))?;
        Some(match cached {
            Cached::Merged(person) => *person,
            Cached::First {
                lead,
                source,
                at_ms,
            } => Person::first(
                id,
                Arc::unwrap_or_clone(lead),
                &LeadMeta {
                    lead_id: id,
                    source: &source,
                    at_ms,
                },
            ),
        })
    }

    fn put(&mut self, person: Person) {
        self.insert(person.id.clone(), Cached::Merged(Box::new(person)));
    }

    /// A new person: its first lead.
    fn put_first(&mut self, id: &str, lead: Arc<NormalizedLead>, source: &str, at_ms: i64) {
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
        let lead = serde_json::from_str::<NormalizedLead>(&r.normalized).ok();
        // Every fingerprint the lead had, not only those it added: a
        // duplicate refreshes its person's fingerprints (the window counts
        // from the person's last lead), and so must the rebuilt index.
        if let Some(lead) = &lead {
            for fp in fingerprints(lead) {
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
