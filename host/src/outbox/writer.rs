//! The outbox writer: the one task that owns the dedupe index. It takes
//! queued payloads in arrival order, decides each lead against the index,
//! merges a duplicate into its person's golden record (queuing an update
//! for every destination whose payload the merge changed), and hands the
//! group's rows to the committer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::{Semaphore, mpsc, watch};

use super::committer::{Group, Sent};
use super::jobs::{Merged, build_row};
use super::{
    Committed, Erasure, IndexState, Merging, OutboxError, PreparedLead, Queued, Reply, Withdrawal,
};
use crate::metrics::WriterGauges;
use crate::pipeline::dedupe::{Decision, DedupeConfig, Deduper, Features, ModelHandle};
use crate::pipeline::merge::{LeadMeta, Person, merge};
use crate::pipeline::normalize::NormalizedLead;
use crate::store::{DedupeRecord, FeedItem, Store, StoreError, load_person, person_from_store};

/// Golden records kept in the writer's memory, per generation: every
/// person touched in the last `PERSON_CACHE` (or four groups') leads at
/// least. The cache must hold every person of the groups in flight (not
/// yet committed, so not in the store); older ones are read back from the
/// store, a group's in one read. A person takes ~3 KB here, so the cache
/// is sized to the groups in flight, not to what went by.
pub(super) const PERSON_CACHE: usize = 4_096;

/// Leads the writer may have sent to the committer and not yet seen
/// committed, in groups of `group_max`: one committing and one gathering.
/// With the group being built, the person cache must hold the persons of
/// `IN_FLIGHT_GROUPS + 1` groups (it holds four).
pub(super) const IN_FLIGHT_GROUPS: usize = 2;

/// The bound on leads in flight for groups of `group_max`, as the
/// semaphore that keeps it counts (at least one, at most `u32::MAX`).
pub(super) fn in_flight_bound(group_max: usize) -> u32 {
    IN_FLIGHT_GROUPS
        .saturating_mul(group_max)
        .clamp(1, u32::MAX as usize) as u32
}

/// With no payload for this long and no group in flight, the writer gives
/// its person cache back: a burst's golden records (~3 KB each, up to two
/// generations of them) would otherwise stay in memory until the next
/// burst. Persons are read back from the store when their next lead comes.
pub(super) const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_secs(1);

/// How often the writer drops dedupe records older than the window.
const PRUNE_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// Most queued payloads taken in one go.
const MAX_PAYLOADS: usize = 256;

/// On a store several hosts share: the dedupe turn is given back when
/// nothing arrived for this long (another host may be waiting for it)…
const TURN_IDLE: std::time::Duration = std::time::Duration::from_millis(20);
/// …or, when another host waits for it, after this long.
const TURN_SLICE: std::time::Duration = std::time::Duration::from_millis(100);

/// This host's dedupe turn on a store several hosts share: one host at a
/// time decides leads (so two hosts receiving the same person at once make
/// one person), and a host taking the turn first reads what the others
/// wrote since its last one into its index.
#[derive(Debug, Default)]
pub(super) struct Turn {
    /// Since when this host holds the turn.
    held_since: Option<std::time::Instant>,
    /// The store's feed position up to which the index knows everything
    /// (`None`: the index must be loaded whole).
    position: Option<i64>,
}

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
    /// What it holds, as last published.
    pub held: Arc<Held>,
    pub epoch: u64,
    /// `Some` on a store several hosts share.
    pub turn: Option<Turn>,
    /// Told when the index rebuilt at start-up is ready (or failed).
    pub index_state: watch::Sender<IndexState>,
}

/// What the writer holds in memory, as it published it after its last
/// group (or idle release): read by `/metrics` through
/// [`super::Outbox::gauges`].
#[derive(Debug, Default)]
pub struct Held {
    cached_persons: AtomicUsize,
    index_records: AtomicUsize,
    index_fingerprints: AtomicUsize,
    index_bytes: AtomicUsize,
}

impl Held {
    pub fn gauges(&self) -> WriterGauges {
        WriterGauges {
            cached_persons: self.cached_persons.load(Ordering::Relaxed) as u64,
            index_records: self.index_records.load(Ordering::Relaxed) as u64,
            index_fingerprints: self.index_fingerprints.load(Ordering::Relaxed) as u64,
            index_bytes: self.index_bytes.load(Ordering::Relaxed) as u64,
        }
    }
}

/// Runs the writer until every outbox handle is gone and the queue is
/// empty.
pub(super) async fn run(
    mut writer: Writer,
    mut rx: mpsc::Receiver<Queued>,
    groups: mpsc::UnboundedSender<Sent>,
    in_flight: Arc<Semaphore>,
) {
    let mut last_prune = std::time::Instant::now();
    let mut queue: Vec<Queued> = Vec::new();
    let loading = *writer.index_state.borrow() == IndexState::Loading;
    if loading && !rebuild_at_start(&mut writer, &mut rx, &mut queue).await {
        return;
    }
    writer.publish();
    let bound = in_flight_bound(writer.group_max);
    loop {
        // (A queue not empty holds payloads that came while the index was
        // rebuilt.)
        if queue.is_empty() {
            let received = match writer.idle_after() {
                Some(after) => tokio::time::timeout(after, rx.recv_many(&mut queue, MAX_PAYLOADS))
                    .await
                    .ok(),
                None => Some(rx.recv_many(&mut queue, MAX_PAYLOADS).await),
            };
            match received {
                Some(0) => return,
                Some(_) => {}
                None => {
                    writer.idle(&in_flight, bound).await;
                    continue;
                }
            }
        }
        let mut total: usize = queue.iter().map(Queued::leads).sum();
        while total < writer.group_max {
            match rx.try_recv() {
                Ok(item) => {
                    total += item.leads();
                    queue.push(item);
                }
                Err(_) => break,
            }
        }
        if let Err(e) = writer.catch_up().await {
            tracing::error!(error = %e, "bringing the dedupe index up to date failed");
            let e = OutboxError::Store(Arc::new(e));
            for item in queue.drain(..) {
                item.refuse(e.clone());
            }
            continue;
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            writer.prune();
            last_prune = std::time::Instant::now();
        }
        // In arrival order: the leads before an erasure or a withdrawal
        // go as one group, then it, then the rest.
        let mut leads = Vec::new();
        for item in queue.drain(..) {
            let sent = match item {
                Queued::Leads(l, reply) => {
                    leads.push((l, reply));
                    continue;
                }
                Queued::Erase(erasure) => {
                    writer.send_group(&mut leads, &groups, &in_flight).await
                        && writer.erase(erasure, &groups, &in_flight).await
                }
                Queued::Withdraw(withdrawal) => {
                    writer.send_group(&mut leads, &groups, &in_flight).await
                        && writer.withdraw(withdrawal, &groups, &in_flight).await
                }
            };
            if !sent {
                return;
            }
        }
        if !writer.send_group(&mut leads, &groups, &in_flight).await {
            return;
        }
        writer.publish();
        if writer.turn_wanted().await {
            writer.end_turn(&in_flight, bound).await;
        }
    }
}

/// How long a start-up rebuild waits before trying an unreachable store
/// again.
const RELOAD_RETRY: std::time::Duration = std::time::Duration::from_secs(1);

/// Rebuilds the index from the store before the first decision (the host
/// listens meanwhile): payloads that arrive wait in `queue`, at most
/// `MAX_PAYLOADS` of them (then in the channel, whose bound holds senders
/// back as it always does). False when
/// the writer must end: the rebuild failed (every payload is refused, and
/// the state says why) or every outbox handle is gone (a shutdown). A
/// store that cannot be reached is tried again every second meanwhile (the
/// host still says it is starting); any other failure is final.
async fn rebuild_at_start(
    writer: &mut Writer,
    rx: &mut mpsc::Receiver<Queued>,
    queue: &mut Vec<Queued>,
) -> bool {
    let loaded = {
        // Only the load: a shared store's turn is taken for the first
        // decision (the feed read then holds what others wrote meanwhile).
        let required = writer.min_epoch.load(Ordering::Acquire);
        let load = async {
            loop {
                match writer.reload(required).await {
                    Err(e) if e.is_unreachable() => {
                        tracing::warn!(error = %e, "the store cannot be reached to rebuild the dedupe index; trying again in 1 s");
                        tokio::time::sleep(RELOAD_RETRY).await;
                    }
                    loaded => return loaded,
                }
            }
        };
        tokio::pin!(load);
        loop {
            tokio::select! {
                loaded = &mut load => break Some(loaded),
                item = rx.recv(), if queue.len() < MAX_PAYLOADS => match item {
                    Some(item) => queue.push(item),
                    None => break None,
                },
            }
        }
    };
    match loaded {
        Some(Ok(())) => {
            writer.index_state.send_replace(IndexState::Ready);
            true
        }
        Some(Err(e)) => {
            tracing::error!(error = %e, "rebuilding the dedupe index from the store failed");
            writer
                .index_state
                .send_replace(IndexState::Failed(e.to_string()));
            // Nothing can be decided: every payload is refused (the handles
            // see the writer gone from here on).
            rx.close();
            let e = OutboxError::Store(Arc::new(e));
            while let Some(item) = rx.recv().await {
                queue.push(item);
            }
            for item in queue.drain(..) {
                item.refuse(e.clone());
            }
            false
        }
        None => {
            for item in queue.drain(..) {
                item.refuse(OutboxError::Closed);
            }
            false
        }
    }
}

impl Queued {
    fn leads(&self) -> usize {
        match self {
            Queued::Leads(l, _) => l.len(),
            Queued::Erase(_) => 0,
            Queued::Withdraw(_) => 1,
        }
    }

    fn refuse(self, e: OutboxError) {
        match self {
            Queued::Leads(_, reply) => {
                let _ = reply.send(Err(e));
            }
            Queued::Erase(erasure) => {
                let _ = erasure.reply.send(Err(e));
            }
            Queued::Withdraw(withdrawal) => {
                let _ = withdrawal.reply.send(Err(e));
            }
        }
    }
}

impl Writer {
    /// Decides `queue` as one group and sends it to the committer; false
    /// when the committer is gone.
    async fn send_group(
        &mut self,
        queue: &mut Vec<(Vec<PreparedLead>, Reply)>,
        groups: &mpsc::UnboundedSender<Sent>,
        in_flight: &Arc<Semaphore>,
    ) -> bool {
        if queue.is_empty() {
            return true;
        }
        let total = queue.iter().map(|(l, _)| l.len()).sum();
        match self.build_group(queue, total).await {
            Ok(group) => {
                let leads = group.rows.len() as u32;
                send(group, leads, groups, in_flight, self.group_max).await
            }
            Err((e, answers)) => {
                // A person could not be read: nothing of this group is
                // stored, and the index, which has already seen the group,
                // is rebuilt.
                tracing::error!(error = %e, "reading a person for a merge failed");
                self.min_epoch.fetch_max(self.epoch + 1, Ordering::AcqRel);
                let e = OutboxError::Store(Arc::new(e));
                for reply in answers {
                    let _ = reply.send(Err(e.clone()));
                }
                true
            }
        }
    }

    /// Forgets a person in the index and the cache at once (a lead after
    /// this is a new person), and sends the erasure to the committer,
    /// which erases the store after every group sent before.
    async fn erase(
        &mut self,
        mut erasure: Erasure,
        groups: &mpsc::UnboundedSender<Sent>,
        in_flight: &Arc<Semaphore>,
    ) -> bool {
        erasure.forgotten = self.index.forget_person(&erasure.person_id) as u64;
        self.persons.remove(&erasure.person_id);
        let group = Group {
            epoch: self.epoch,
            rows: Vec::new(),
            answers: Vec::new(),
            made_jobs: false,
            erasure: Some(erasure),
        };
        send(group, 1, groups, in_flight, self.group_max).await
    }

    /// A consent withdrawal: a lead of the person that sets
    /// `consent_withdrawn_at`, merged into its golden record (no dedupe:
    /// the person is named). Its updates carry the withdrawal and go out
    /// whatever the hold; the person's jobs not yet sent are stopped.
    async fn withdraw(
        &mut self,
        w: Withdrawal,
        groups: &mpsc::UnboundedSender<Sent>,
        in_flight: &Arc<Semaphore>,
    ) -> bool {
        let person = match self.persons.take(&w.person_id) {
            Some(p) => Ok(Some(p)),
            None => load_person(&*self.store, &w.person_id).await,
        };
        let mut person = match person {
            Ok(Some(p)) => p,
            Ok(None) => {
                let _ = w.reply.send(Ok(Vec::new()));
                return true;
            }
            Err(e) => {
                let _ = w.reply.send(Err(OutboxError::Store(Arc::new(e))));
                return true;
            }
        };
        let now = crate::now_ms();
        let id = uuid::Uuid::now_v7().to_string();
        let raw = serde_json::json!({ "consent_withdrawn_at": w.at });
        let lead = NormalizedLead {
            consent_withdrawn_at: Some(w.at.clone()),
            ..Default::default()
        };
        let routes = crate::pipeline::route::route(
            &self.merging.renderer.destinations(),
            crate::pipeline::route::Priority::P1,
            None,
            now,
        );
        let prepared = PreparedLead {
            forms: crate::store::StoredForms::new(self.store.crypt(), &id, &raw, &lead),
            routes: self.merging.renderer.render_all(&lead, routes),
            id,
            source: super::WITHDRAWAL_SOURCE.into(),
            received_at_ms: now,
            fingerprints: Vec::new(),
            features: Features::default(),
            lead,
        };
        // Where the person was held, nothing was ever sent: nothing to
        // withdraw there either.
        let held_before: Vec<String> = prepared
            .routes
            .iter()
            .filter_map(|r| self.merging.renderer.render(&person, r.route.clone()))
            .filter(|m| m.hold.is_some())
            .map(|m| m.route.destination)
            .collect();
        let mut merged = merge_duplicate(&mut person, &prepared, &prepared.lead, &self.merging);
        if let Some(m) = &mut merged {
            m.updates
                .retain(|u| !held_before.contains(&u.route.destination));
            // The updates carry the withdrawal: they go whatever the hold.
            for update in &mut m.updates {
                update.hold = None;
            }
            m.release.clear();
        }
        let decision = Decision::Duplicate {
            person_id: person.id.clone(),
            matched: "consent-withdrawal".into(),
            rule: "operator".into(),
            score: None,
            explain: None,
        };
        self.persons.put(person);
        let mut row = build_row(prepared, decision, Vec::new(), merged);
        row.stop_pending = true;
        let group = Group {
            epoch: self.epoch,
            answers: vec![(
                w.reply,
                vec![Committed {
                    id: row.id.clone(),
                    decision: row.decision.clone(),
                }],
            )],
            made_jobs: !row.jobs.is_empty(),
            rows: vec![row],
            erasure: None,
        };
        send(group, 1, groups, in_flight, self.group_max).await
    }

    /// Brings the index up to date before deciding: reloaded from the
    /// store if a failed commit left it ahead of what is stored; on a
    /// shared store, the turn taken and what other hosts wrote since this
    /// host's last turn read in.
    ///
    /// A shared store's index is reloaded (at start, after a failed commit
    /// or a failed read of the feed) before the turn is taken, never under
    /// it: a load takes seconds at a million leads, and the other hosts go
    /// on deciding meanwhile. The load comes with the feed position of its
    /// snapshot, so the turn's read of the feed files exactly what the
    /// others wrote during the load.
    async fn catch_up(&mut self) -> Result<(), StoreError> {
        let required = self.min_epoch.load(Ordering::Acquire);
        let failed = self.epoch < required;
        let Some(turn) = &mut self.turn else {
            if failed {
                self.reload(required).await?;
            }
            return Ok(());
        };
        let known = turn.position.is_some();
        if turn.held_since.is_some() {
            if known && !failed {
                // Nobody else wrote since this host took the turn and read
                // the feed.
                return Ok(());
            }
            // The failed commit may have been fenced out, or the feed's
            // read failed: this turn is over, whatever the store still
            // thinks, and the index is reloaded outside it.
            turn.held_since = None;
            let _ = self.store.end_turn().await;
        }
        if failed || !known {
            self.reload(required).await?;
        }
        self.store.take_turn().await?;
        let config = self.index.config().clone();
        let crypt = self.store.crypt().clone();
        let (index, persons) = (&mut self.index, &mut self.persons);
        let Some(turn) = &mut self.turn else {
            unreachable!("a shared store's writer has a turn");
        };
        turn.held_since = Some(std::time::Instant::now());
        let after = turn.position.take().unwrap_or_default();
        let position = self
            .store
            .feed(after, &mut |item| match item {
                FeedItem::Lead(r) => {
                    // Another host merged into the person: the cached
                    // record is stale.
                    persons.remove(&r.person_id);
                    stored_record(&crypt, &config, r).file(index);
                }
                FeedItem::Erased { person_id } => {
                    persons.remove(&person_id);
                    index.forget_person(&person_id);
                }
            })
            .await?;
        // (A failed read leaves the position unknown: the next catch-up
        // reloads.)
        turn.position = Some(position);
        Ok(())
    }

    /// Loads the index whole from the store, as of epoch `required`.
    async fn reload(&mut self, required: u64) -> Result<(), StoreError> {
        let model = self.index.model().clone();
        let (index, position) = load_index(&*self.store, self.index.config(), model).await?;
        self.index = index;
        self.persons.clear();
        self.epoch = required;
        if let Some(turn) = &mut self.turn {
            turn.position = Some(position);
        }
        Ok(())
    }

    /// How long the writer waits for payloads before [`Writer::idle`]:
    /// `TURN_IDLE` while it holds the dedupe turn, `IDLE_RELEASE` while
    /// its person cache holds someone; otherwise for as long as it takes.
    fn idle_after(&self) -> Option<std::time::Duration> {
        if self.holds_turn() {
            Some(TURN_IDLE)
        } else if !self.persons.is_empty() {
            Some(IDLE_RELEASE)
        } else {
            None
        }
    }

    /// Nothing arrived for [`Writer::idle_after`]: gives the turn back if
    /// it holds it, else the person cache if no group is in flight (the
    /// persons of groups not yet committed must stay).
    async fn idle(&mut self, in_flight: &Arc<Semaphore>, bound: u32) {
        if self.holds_turn() {
            self.end_turn(in_flight, bound).await;
        } else if in_flight.available_permits() == bound as usize {
            self.persons.release();
            self.publish();
        }
    }

    /// Publishes what the writer holds in memory (see [`Held`]).
    fn publish(&self) {
        let h = &self.held;
        h.cached_persons
            .store(self.persons.len(), Ordering::Relaxed);
        h.index_records.store(self.index.len(), Ordering::Relaxed);
        h.index_fingerprints
            .store(self.index.fingerprint_count(), Ordering::Relaxed);
        h.index_bytes
            .store(self.index.approx_bytes(), Ordering::Relaxed);
    }

    fn holds_turn(&self) -> bool {
        self.turn.as_ref().is_some_and(|t| t.held_since.is_some())
    }

    /// Whether to give the turn back now: held for a slice while another
    /// host waits for it.
    async fn turn_wanted(&self) -> bool {
        let Some(since) = self.turn.as_ref().and_then(|t| t.held_since) else {
            return false;
        };
        since.elapsed() >= TURN_SLICE && self.store.turn_wanted().await.unwrap_or(true)
    }

    /// Gives the turn back once every group sent in it is committed (the
    /// next host's catch-up reads them); the feed's position then is where
    /// this host's next turn reads from.
    async fn end_turn(&mut self, in_flight: &Arc<Semaphore>, bound: u32) {
        let Some(turn) = &mut self.turn else {
            return;
        };
        if turn.held_since.take().is_none() {
            return;
        }
        drop(in_flight.acquire_many(bound).await);
        turn.position = match self.store.feed_position().await {
            Ok(p) if self.epoch >= self.min_epoch.load(Ordering::Acquire) => Some(p),
            // A commit failed in this turn: the next one reloads.
            _ => None,
        };
        if let Err(e) = self.store.end_turn().await {
            tracing::warn!(error = %e, "giving the dedupe turn back failed (the session's end gives it back)");
        }
    }

    /// Records older than the exact-match window can no longer decide
    /// anything: gives their memory back.
    fn prune(&mut self) {
        let dropped = self.index.prune(crate::now_ms());
        if dropped > 0 {
            tracing::info!(records = dropped, "pruned the dedupe index to its window");
        }
    }

    /// Decides every queued lead in order and builds the group's rows:
    /// first every dedupe decision, then one read of the persons the
    /// group's duplicates join that are not cached, then the merges and
    /// rows in arrival order. On a failed read, the replies of the whole
    /// group come back with the error.
    async fn build_group(
        &mut self,
        queue: &mut Vec<(Vec<PreparedLead>, Reply)>,
        total: usize,
    ) -> Result<Group, (StoreError, Vec<Reply>)> {
        let mut decided = Vec::with_capacity(queue.len());
        let mut wanted = Vec::new();
        for (leads, reply) in queue.drain(..) {
            let leads: Vec<Decided> = leads.into_iter().map(|l| self.decide(l)).collect();
            for d in &leads {
                if let Decision::Duplicate { person_id, .. } = &d.decision
                    && !self.persons.contains(person_id)
                {
                    wanted.push(person_id.clone());
                }
            }
            decided.push((leads, reply));
        }
        let mut stored = match self.read_persons(&wanted).await {
            Ok(stored) => stored,
            Err(e) => return Err((e, decided.into_iter().map(|(_, r)| r).collect())),
        };
        let mut group = Group {
            epoch: self.epoch,
            rows: Vec::with_capacity(total),
            answers: Vec::with_capacity(decided.len()),
            made_jobs: false,
            erasure: None,
        };
        let mut failed = None;
        for (leads, reply) in decided {
            let mut committed = Vec::with_capacity(leads.len());
            for lead in leads {
                match self.merge(lead, &mut stored).await {
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

    /// One lead's dedupe decision; a new person's first lead goes into the
    /// cache at once, so a duplicate later in the group finds it.
    fn decide(&mut self, mut lead: PreparedLead) -> Decided {
        let features = std::mem::take(&mut lead.features);
        let normalized = Arc::new(std::mem::take(&mut lead.lead));
        let verdict = self
            .index
            .decide(&lead.id, &lead.source, &lead.fingerprints, features);
        if !matches!(verdict.decision, Decision::Duplicate { .. }) {
            self.persons.put_first(
                &lead.id,
                normalized.clone(),
                &lead.source,
                lead.received_at_ms,
            );
        }
        Decided {
            lead,
            normalized,
            decision: verdict.decision,
            added: verdict.added,
        }
    }

    /// The stored persons `ids` (committed ones: persons of groups in
    /// flight are always cached), in one read.
    async fn read_persons(&self, ids: &[String]) -> Result<HashMap<String, Person>, StoreError> {
        if ids.is_empty() {
            return Ok(HashMap::new());
        }
        let stored = self.store.persons(ids).await?;
        stored
            .into_iter()
            .map(|(id, p)| Ok((id.clone(), person_from_store(&id, p)?)))
            .collect()
    }

    /// A decided lead's merge into its person (a duplicate), and its row.
    async fn merge(
        &mut self,
        d: Decided,
        stored: &mut HashMap<String, Person>,
    ) -> Result<crate::store::NewLead, StoreError> {
        let mut merged = None;
        if let Decision::Duplicate { person_id, .. } = &d.decision {
            let person = match self.persons.take(person_id) {
                Some(p) => Some(p),
                None => match stored.remove(person_id) {
                    Some(p) => Some(p),
                    // Evicted since the decisions (a very large group).
                    None => load_person(&*self.store, person_id).await?,
                },
            };
            if let Some(mut person) = person {
                merged = merge_duplicate(&mut person, &d.lead, &d.normalized, &self.merging);
                self.persons.put(person);
            }
        }
        Ok(build_row(d.lead, d.decision, d.added, merged))
    }
}

/// A lead with its dedupe decision, waiting for its merge.
struct Decided {
    lead: PreparedLead,
    normalized: Arc<NormalizedLead>,
    decision: Decision,
    /// The fingerprints the lead added to the index.
    added: Vec<String>,
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
    let consent_changed = changes.iter().any(|c| c.group == "consent");
    let mut release = Vec::new();
    let mut updates = Vec::new();
    for r in &lead.routes {
        let Some(after) = merging.renderer.render(person, r.route.clone()) else {
            continue;
        };
        // Consent arrived: what waited for it at this destination goes.
        if consent_changed && after.hold.is_none() {
            release.push(super::jobs::chain(&person.id, &r.route.destination));
        }
        let was = merging.renderer.render(&before, r.route.clone());
        if was.is_some_and(|was| was.payload != after.payload) {
            updates.push(after);
        }
    }
    Some(Merged {
        changes,
        person: person.clone(),
        updates,
        release,
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
/// the newer fills up, and both when the writer is idle
/// ([`IDLE_RELEASE`]).
pub(super) struct PersonCache {
    recent: HashMap<String, Cached>,
    older: HashMap<String, Cached>,
    per_generation: usize,
}

impl PersonCache {
    /// A cache that keeps every person of the last `per_generation`
    /// insertions at least.
    pub fn new(per_generation: usize) -> PersonCache {
        PersonCache {
            recent: HashMap::new(),
            older: HashMap::new(),
            per_generation,
        }
    }

    /// Persons held (a person in both generations counts twice).
    fn len(&self) -> usize {
        self.recent.len() + self.older.len()
    }

    fn is_empty(&self) -> bool {
        self.recent.is_empty() && self.older.is_empty()
    }

    /// Drops every person and the tables' room.
    fn release(&mut self) {
        self.recent = HashMap::new();
        self.older = HashMap::new();
    }

    fn contains(&self, id: &str) -> bool {
        self.recent.contains_key(id) || self.older.contains_key(id)
    }

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
        if self.recent.len() >= self.per_generation {
            // The older generation goes, dropped off the writer's path:
            // thousands of golden records and first leads, a few
            // allocations each, freed in one go held every payload queued
            // behind it for milliseconds.
            let fresh = HashMap::with_capacity(self.per_generation);
            let older =
                std::mem::replace(&mut self.older, std::mem::replace(&mut self.recent, fresh));
            drop_aside(older);
        }
        self.recent.insert(id, cached);
    }

    fn clear(&mut self) {
        self.recent.clear();
        self.older.clear();
    }

    fn remove(&mut self, id: &str) {
        self.recent.remove(id);
        self.older.remove(id);
    }
}

/// Drops `value` on a blocking thread of the runtime, if there is one.
pub(super) fn drop_aside<T: Send + 'static>(value: T) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => drop(runtime.spawn_blocking(move || drop(value))),
        Err(_) => drop(value),
    }
}

/// Sends a group holding `leads` of the bound on leads in flight (waiting
/// while it is used up); false when the committer is gone.
async fn send(
    group: Group,
    leads: u32,
    groups: &mpsc::UnboundedSender<Sent>,
    in_flight: &Arc<Semaphore>,
    group_max: usize,
) -> bool {
    let leads = leads.clamp(1, in_flight_bound(group_max));
    let Ok(permit) = in_flight.clone().acquire_many_owned(leads).await else {
        return false;
    };
    groups.send((group, permit)).is_ok()
}

/// Records of the index's rebuild handed to its indexing thread at once.
const INDEX_CHUNK: usize = 512;

/// A stored lead read back for the index: its fingerprints (every one it
/// had) and, for the fuzzy tier, its features.
struct StoredRecord {
    id: String,
    person_id: String,
    fingerprints: Vec<String>,
    features: Option<Features>,
    received_at_ms: i64,
}

impl StoredRecord {
    /// Adds the record to the index.
    fn file(self, index: &mut Deduper) {
        index.insert_stored(
            &self.id,
            &self.person_id,
            &self.fingerprints,
            self.features,
            self.received_at_ms,
        );
    }
}

/// Builds the dedupe index from the store: every stored lead's
/// fingerprints and, for the fuzzy tier, its features.
///
/// Two stages at once: this task reads the leads and prepares each
/// (opens it, parses it, recomputes its fingerprints and features), and a
/// blocking thread files the prepared records into the index in store
/// order, a chunk at a time. Filing takes about half what preparing takes,
/// so the chunks waiting for it stay few.
///
/// Returns the index and the store's feed position it is as of (see
/// [`Store::load_dedupe_records`]).
pub async fn load_index(
    store: &dyn Store,
    config: &DedupeConfig,
    model: ModelHandle,
) -> Result<(Deduper, i64), StoreError> {
    // Leads received before the window can no longer be matched: they stay
    // in the store but not in memory.
    let started = std::time::Instant::now();
    let since = config.window_start_ms(crate::now_ms());
    let mut index = Deduper::with_model(config.clone(), model);
    let (chunks, filed) = std::sync::mpsc::channel::<Vec<StoredRecord>>();
    let indexer = tokio::task::spawn_blocking(move || {
        for chunk in filed {
            for r in chunk {
                r.file(&mut index);
            }
        }
        index
    });
    let crypt = store.crypt();
    let mut chunk = Vec::with_capacity(INDEX_CHUNK);
    let position = store
        .load_dedupe_records(since, &mut |r| {
            chunk.push(stored_record(crypt, config, r));
            if chunk.len() == INDEX_CHUNK {
                // The indexer only stops when this sender is dropped.
                let _ = chunks.send(std::mem::replace(
                    &mut chunk,
                    Vec::with_capacity(INDEX_CHUNK),
                ));
            }
        })
        .await?;
    let _ = chunks.send(chunk);
    drop(chunks);
    let index = match indexer.await {
        Ok(index) => index,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Never started: the runtime is shutting down.
        Err(_) => return Err(StoreError::Database(sqlx::Error::WorkerCrashed)),
    };
    tracing::info!(
        leads = index.len(),
        fingerprints = index.fingerprint_count(),
        ms = started.elapsed().as_millis() as u64,
        "dedupe index loaded"
    );
    Ok((index, position))
}

/// A stored lead as the index takes it.
fn stored_record(
    crypt: &crate::store::seal::Crypt,
    config: &DedupeConfig,
    mut r: DedupeRecord,
) -> StoredRecord {
    let lead = serde_json::from_str::<NormalizedLead>(&r.normalized).ok();
    // Every fingerprint the lead had, not only those it added: a
    // duplicate refreshes its person's fingerprints (the window counts
    // from the person's last lead), and so must the rebuilt index.
    if let Some(lead) = &lead {
        for fp in super::blinded_fingerprints(crypt, lead) {
            if !r.fingerprints.contains(&fp) {
                r.fingerprints.push(fp);
            }
        }
    }
    let features = lead
        .filter(|_| config.fuzzy)
        .map(|lead| Features::from_lead(&lead, config, r.received_at_ms));
    StoredRecord {
        id: r.id,
        person_id: r.person_id,
        fingerprints: r.fingerprints,
        features,
        received_at_ms: r.received_at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Puts the first leads of persons `p{i}`; returns the first one's lead.
    fn fill(cache: &mut PersonCache, ids: std::ops::Range<usize>) -> Arc<NormalizedLead> {
        let first = Arc::new(NormalizedLead::default());
        for i in ids {
            let lead = if i == 0 {
                first.clone()
            } else {
                Arc::new(NormalizedLead::default())
            };
            cache.put_first(&format!("p{i}"), lead, "web", 0);
        }
        first
    }

    fn held(cache: &PersonCache) -> Vec<usize> {
        (0..10)
            .filter(|i| cache.contains(&format!("p{i}")))
            .collect()
    }

    #[test]
    fn a_full_generation_sends_the_older_one_away() {
        let mut cache = PersonCache::new(2);
        let first = fill(&mut cache, 0..7);
        assert_eq!(held(&cache), [4, 5, 6]);
        assert_eq!(cache.len(), 3);
        // No runtime: dropped at once.
        assert_eq!(Arc::strong_count(&first), 1);
    }

    #[tokio::test]
    async fn the_older_generation_is_freed_off_the_writer() {
        let mut cache = PersonCache::new(2);
        let first = fill(&mut cache, 0..7);
        assert_eq!(held(&cache), [4, 5, 6]);
        // Dropped on a blocking thread, soon.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while Arc::strong_count(&first) > 1 {
            assert!(std::time::Instant::now() < deadline, "never freed");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}
