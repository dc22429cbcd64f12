//! The fuzzy tier: blocking keys, a candidate index, pair scoring and the
//! decision, plus [`Deduper`], which runs the exact tier first.
//!
//! Blocking: each lead yields a few 64-bit keys (Soundex of its names, a
//! name token + the other name's initial, the email local part, the last
//! eight phone digits, postcode or company + surname code, date of birth,
//! configured custom attributes). A block is a linked list, newest record
//! first, and a lookup walks at most `max_block` entries per key, so a
//! decision costs O(keys × max_block) comparisons whatever the store size.
//!
//! Chaining: a lead is scored against records, and joins at most one
//! person (the best-scoring one). Persons are never merged with each other,
//! so two people bridged by an ambiguous lead stay two people.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::LazyLock;

use super::chunked::Chunked;
use super::compare::{compare, different_employers};
use super::config::DedupeConfig;
pub use super::features::{Features, Field};
use super::model::{Explanation, Model, ModelHandle, TermFrequencies};
use super::{Decision, FINGERPRINT_VERSION};

/// Rule name of fuzzy decisions, stored in the audit trail.
pub const FUZZY_RULE: &str = "fellegi-sunter-v1";

/// Company matching key: the normalizer's [`crate::pipeline::normalize::company_key`].
pub(crate) fn company_key(s: &str) -> Box<str> {
    crate::pipeline::normalize::company_key(s).into()
}

/// Free-mail providers: their domains say nothing about a company.
pub(super) const FREE_MAIL: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "outlook.com",
    "hotmail.com",
    "yahoo.com",
    "icloud.com",
    "aol.com",
    "live.com",
    "msn.com",
    "protonmail.com",
    "proton.me",
    "gmx.de",
    "gmx.net",
    "web.de",
    "mail.ru",
    "yandex.ru",
    "qq.com",
    "163.com",
    "hotmail.co.uk",
    "yahoo.co.uk",
    "btinternet.com",
    "me.com",
    "mail.com",
];

/// The 64-bit key of a blocking key's or fingerprint's parts.
pub(super) fn key(parts: &[&[u8]]) -> u64 {
    let mut h = foldhash::fast::FixedState::with_seed(0x1ead_9a7e).build_hasher();
    for p in parts {
        h.write(p);
        h.write_u8(0xff);
    }
    h.finish()
}

/// Canonical first name of a common nickname (lowercase).
pub fn nickname(first: &str) -> Option<&'static str> {
    const NICK: &[(&str, &str)] = &[
        ("bob", "robert"),
        ("rob", "robert"),
        ("bobby", "robert"),
        ("bill", "william"),
        ("will", "william"),
        ("billy", "william"),
        ("liam", "william"),
        ("jim", "james"),
        ("jimmy", "james"),
        ("mike", "michael"),
        ("mick", "michael"),
        ("dave", "david"),
        ("tom", "thomas"),
        ("tommy", "thomas"),
        ("chris", "christopher"),
        ("matt", "matthew"),
        ("dan", "daniel"),
        ("danny", "daniel"),
        ("joe", "joseph"),
        ("tony", "anthony"),
        ("steve", "steven"),
        ("andy", "andrew"),
        ("drew", "andrew"),
        ("alex", "alexander"),
        ("sam", "samuel"),
        ("ben", "benjamin"),
        ("nick", "nicholas"),
        ("ed", "edward"),
        ("ted", "edward"),
        ("rick", "richard"),
        ("dick", "richard"),
        ("greg", "gregory"),
        ("jeff", "jeffrey"),
        ("jon", "jonathan"),
        ("pete", "peter"),
        ("kate", "katherine"),
        ("katie", "katherine"),
        ("kathy", "katherine"),
        ("liz", "elizabeth"),
        ("beth", "elizabeth"),
        ("betty", "elizabeth"),
        ("lizzie", "elizabeth"),
        ("jenny", "jennifer"),
        ("jen", "jennifer"),
        ("sue", "susan"),
        ("meg", "margaret"),
        ("maggie", "margaret"),
        ("peggy", "margaret"),
        ("becky", "rebecca"),
        ("vicky", "victoria"),
        ("abby", "abigail"),
        ("mandy", "amanda"),
        ("pat", "patricia"),
        ("trish", "patricia"),
        ("debbie", "deborah"),
        ("cathy", "catherine"),
        ("jess", "jessica"),
        ("jo", "joanna"),
        ("ellie", "eleanor"),
        ("izzy", "isabelle"),
        ("bella", "isabelle"),
    ];
    static BY_NICKNAME: LazyLock<HashMap<&str, &str, foldhash::fast::RandomState>> =
        LazyLock::new(|| {
            let mut m = HashMap::default();
            for (n, c) in NICK {
                m.entry(*n).or_insert(*c);
            }
            m
        });
    BY_NICKNAME.get(first).copied()
}

/// `strsim::jaro_winkler`, computed on bytes for ASCII strings of up to 64
/// characters (the usual names, email local parts and company keys): the
/// same steps and the same floating-point operations, so the same result,
/// without the allocation and the `char` decoding.
pub(crate) fn jaro_winkler(a: &str, b: &str) -> f64 {
    match short_ascii(a, b) {
        Some((a, b)) => winkler(jaro_ascii(a, b), a, b),
        None => strsim::jaro_winkler(a, b),
    }
}

/// Both strings as bytes when both are ASCII of up to 64 characters (the
/// bit sets of `jaro_ascii`).
fn short_ascii<'a>(a: &'a str, b: &'a str) -> Option<(&'a [u8], &'a [u8])> {
    (a.is_ascii() && b.is_ascii() && a.len() <= 64 && b.len() <= 64)
        .then_some((a.as_bytes(), b.as_bytes()))
}

/// Winkler's step, as strsim takes it: a Jaro similarity above 0.7 is
/// raised by the common prefix (up to four letters).
fn winkler(sim: f64, a: &[u8], b: &[u8]) -> f64 {
    if sim > 0.7 {
        let prefix_length = a.iter().take(4).zip(b).take_while(|(x, y)| x == y).count();
        sim + 0.1 * prefix_length as f64 * (1.0 - sim)
    } else {
        sim
    }
}

/// An upper bound of [`jaro_winkler`]`(a, b)`, from the letters the two
/// strings have in common (Jaro's matches are such letters) and their
/// common prefix, without the matching: a pair whose bound is below a
/// threshold is below it. Exact (the similarity itself) for anything but
/// ASCII strings of up to 64 characters.
pub(crate) fn jaro_winkler_bound(a: &str, b: &str) -> f64 {
    let Some((a, b)) = short_ascii(a, b) else {
        return strsim::jaro_winkler(a, b);
    };
    if a.is_empty() || b.is_empty() {
        return jaro_ascii(a, b);
    }
    // A match pairs a letter of `a` with the same letter of `b`: at most
    // as many as `a` has letters that occur in `b`, and the reverse (the
    // letters' sets as 64-bit masks, where two letters may share a bit,
    // which only loosens the bound).
    let mask = |s: &[u8]| s.iter().fold(0u64, |m, &c| m | 1 << (c & 63));
    let occurring =
        |s: &[u8], other: u64| s.iter().filter(|&&c| other & 1 << (c & 63) != 0).count();
    let shared = occurring(a, mask(b)).min(occurring(b, mask(a)));
    if shared == 0 {
        return 0.0;
    }
    // `jaro_ascii`'s operations with the most matches there can be and
    // no transposition: each term is at least the exact one's, and so is
    // the rounded result.
    let m = shared as f64;
    winkler(
        ((m / a.len() as f64) + (m / b.len() as f64) + 1.0) / 3.0,
        a,
        b,
    )
}

/// `strsim::generic_jaro` on at most 64 bytes a side (flags as bits).
fn jaro_ascii(a: &[u8], b: &[u8]) -> f64 {
    let (a_len, b_len) = (a.len(), b.len());
    if a_len == 0 && b_len == 0 {
        return 1.0;
    } else if a_len == 0 || b_len == 0 {
        return 0.0;
    }
    let search_range = (a_len.max(b_len) / 2).saturating_sub(1);
    let (mut a_flags, mut b_flags) = (0u64, 0u64);
    let mut matches = 0usize;
    for (i, &x) in a.iter().enumerate() {
        let min_bound = i.saturating_sub(search_range);
        let max_bound = b_len.min(i + search_range + 1);
        for (j, &y) in b.iter().enumerate().take(max_bound).skip(min_bound) {
            if x == y && b_flags & (1 << j) == 0 {
                a_flags |= 1 << i;
                b_flags |= 1 << j;
                matches += 1;
                break;
            }
        }
    }
    let mut transpositions = 0usize;
    if matches != 0 {
        let mut j = 0;
        for (i, &x) in a.iter().enumerate() {
            if a_flags & (1 << i) != 0 {
                while b_flags & (1 << j) == 0 {
                    j += 1;
                }
                if x != b[j] {
                    transpositions += 1;
                }
                j += 1;
            }
        }
    }
    transpositions /= 2;
    if matches == 0 {
        0.0
    } else {
        ((matches as f64 / a_len as f64)
            + (matches as f64 / b_len as f64)
            + ((matches - transpositions) as f64 / matches as f64))
            / 3.0
    }
}

struct Record {
    /// The person's index, or [`BURIED`].
    person: u32,
    lead: Id,
    features: Features,
}

/// The person of a buried record (forgotten or out of the window, its
/// features and id freed, its slot kept until the index is compacted);
/// also the record of a blocking entry of a forgotten record, which a
/// block's walk passes over without counting.
const BURIED: u32 = u32::MAX;

impl Record {
    fn is_buried(&self) -> bool {
        self.person == BURIED
    }
}

/// A lead or person id as the index holds it: a canonical (lowercase,
/// hyphenated) UUID, which is what ingest makes, in 16 bytes inline;
/// anything else as text. Shown, it is exactly the id it was made from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Id {
    Uuid([u8; 16]),
    Text(Box<str>),
}

impl Id {
    fn new(id: &str) -> Id {
        if id.len() == uuid::fmt::Hyphenated::LENGTH
            && let Ok(u) = uuid::Uuid::try_parse(id)
            && u.hyphenated().encode_lower(&mut [0; 36]) == id
        {
            return Id::Uuid(u.into_bytes());
        }
        Id::Text(id.into())
    }

    fn hash(&self) -> u64 {
        match self {
            Id::Uuid(b) => key(&[b]),
            Id::Text(t) => key(&[t.as_bytes()]),
        }
    }

    /// Heap bytes beyond the value itself.
    fn heap_bytes(&self) -> usize {
        match self {
            Id::Uuid(_) => 0,
            Id::Text(t) => t.len(),
        }
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Id::Uuid(b) => uuid::Uuid::from_bytes(*b).hyphenated().fmt(f),
            Id::Text(t) => f.write_str(t),
        }
    }
}

/// Block key → the block's newest entry in `Deduper::entries`. A slot
/// holds the key as two `u32`s and the entry: 12 bytes and a control byte,
/// where a `HashMap<u64, u32>`'s slot is padded to 16 (a million leads
/// file several million blocks, most of them of one lead).
#[derive(Default)]
struct Heads {
    table: hashbrown::HashTable<([u32; 2], u32)>,
    /// Keys are hashed again with this process's seed: [`key`]'s seed is
    /// fixed, and leads are what a poster chooses.
    state: foldhash::fast::RandomState,
}

fn split_key(k: u64) -> [u32; 2] {
    [(k >> 32) as u32, k as u32]
}

fn join_key(k: [u32; 2]) -> u64 {
    (u64::from(k[0]) << 32) | u64::from(k[1])
}

impl Heads {
    fn hash(&self, k: [u32; 2]) -> u64 {
        self.state.hash_one(k)
    }

    /// The newest entry of block `k`.
    fn get(&self, k: u64) -> Option<u32> {
        let want = split_key(k);
        self.table
            .find(self.hash(want), |(key, _)| *key == want)
            .map(|&(_, e)| e)
    }

    /// The newest entry of block `k`, to replace (`u32::MAX` in a new
    /// block).
    fn newest(&mut self, k: u64) -> &mut u32 {
        let want = split_key(k);
        let (state, table) = (&self.state, &mut self.table);
        let hash = state.hash_one(want);
        &mut table
            .entry(
                hash,
                |(key, _)| *key == want,
                |(key, _)| state.hash_one(*key),
            )
            .or_insert((want, u32::MAX))
            .into_mut()
            .1
    }

    /// Every block: its key and newest entry.
    fn iter(&self) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.table.iter().map(|&(k, e)| (join_key(k), e))
    }

    fn capacity(&self) -> usize {
        self.table.capacity()
    }

    fn shrink_to_fit(&mut self) {
        let state = &self.state;
        self.table.shrink_to_fit(|(key, _)| state.hash_one(*key));
    }
}

/// What [`Deduper::decide`] concluded for one lead.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub decision: Decision,
    /// The person the lead now belongs to (itself unless a duplicate).
    pub person_id: String,
    /// The best candidate's match weight (bits; none for exact matches).
    pub score: Option<f64>,
    /// Its match probability (1 for an exact match).
    pub probability: Option<f64>,
    /// The lead it matched, for duplicates and possible duplicates.
    pub matched_id: Option<String>,
    /// Fingerprints new to the index.
    pub added: Vec<String>,
}

/// Both tiers: exact fingerprints with a window, then fuzzy candidates.
pub struct Deduper {
    config: DedupeConfig,
    model: ModelHandle,
    /// Value frequencies of the indexed records.
    tf: TermFrequencies,
    persons: Vec<Id>,
    /// Indexes into `persons`, hashed by the id they point to (each id is
    /// held once).
    person_ix: hashbrown::HashTable<u32>,
    /// Fingerprint hash → (person, last seen ms).
    exact: HashMap<u64, (u32, i64), foldhash::fast::RandomState>,
    records: Chunked<Record>,
    /// Heap bytes the records' features and lead ids hold, and the
    /// persons' ids (kept up to date, for [`Deduper::approx_bytes`]).
    record_heap: usize,
    person_heap: usize,
    heads: Heads,
    /// (record or [`BURIED`], next entry or u32::MAX).
    entries: Chunked<(u32, u32)>,
    /// Records buried since the index was last compacted ([`Deduper::len`]
    /// does not count them).
    buried: usize,
    /// Every record before this one is buried: the last prune buried
    /// the records out of the window up to the first one inside it.
    pruned_to: usize,
    keys_buf: Vec<u64>,
    cand_buf: Vec<u32>,
    levels_buf: Vec<u8>,
}

impl Deduper {
    /// An empty index deciding with the bundled model.
    pub fn new(config: DedupeConfig) -> Self {
        let model = ModelHandle::bundled(&config.custom_fields);
        Self::with_model(config, model)
    }

    /// An empty index deciding with `model`.
    pub fn with_model(config: DedupeConfig, model: ModelHandle) -> Self {
        Deduper {
            config,
            model,
            tf: TermFrequencies::default(),
            persons: Vec::new(),
            person_ix: hashbrown::HashTable::new(),
            exact: HashMap::default(),
            records: Chunked::default(),
            record_heap: 0,
            person_heap: 0,
            heads: Heads::default(),
            entries: Chunked::default(),
            buried: 0,
            pruned_to: 0,
            keys_buf: Vec::new(),
            cand_buf: Vec::new(),
            levels_buf: Vec::new(),
        }
    }

    pub fn config(&self) -> &DedupeConfig {
        &self.config
    }

    /// The model decisions are made with (and its updates).
    pub fn model(&self) -> &ModelHandle {
        &self.model
    }

    /// Records indexed by the fuzzy tier.
    pub fn len(&self) -> usize {
        self.records.len() - self.buried
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Exact fingerprints indexed.
    pub fn fingerprint_count(&self) -> usize {
        self.exact.len()
    }

    fn person(&mut self, id: &str) -> u32 {
        let id = Id::new(id);
        let hash = id.hash();
        let persons = &self.persons;
        if let Some(&p) = self.person_ix.find(hash, |&p| persons[p as usize] == id) {
            return p;
        }
        let p = self.persons.len() as u32;
        self.person_heap += id.heap_bytes();
        self.persons.push(id);
        let persons = &self.persons;
        self.person_ix
            .insert_unique(hash, p, |&p| persons[p as usize].hash());
        p
    }

    fn window_ok(&self, then_ms: i64, now_ms: i64) -> bool {
        self.config.window_days == 0
            || now_ms.saturating_sub(then_ms) <= self.config.window_days as i64 * 86_400_000
    }

    /// Adds a stored lead (at start-up): its fingerprints and, if given,
    /// its features.
    pub fn insert_stored(
        &mut self,
        lead_id: &str,
        person_id: &str,
        fps: &[String],
        features: Option<Features>,
        received_at_ms: i64,
    ) {
        let p = self.person(person_id);
        for fp in fps {
            let e = self
                .exact
                .entry(key(&[fp.as_bytes()]))
                .or_insert((p, received_at_ms));
            // As in `decide`: only the owner's own leads refresh it.
            if e.0 == p {
                e.1 = e.1.max(received_at_ms);
            }
        }
        if let Some(f) = features
            && self.config.fuzzy
        {
            self.index_record(lead_id, p, f);
        }
    }

    fn index_record(&mut self, lead_id: &str, person: u32, features: Features) {
        let mut keys = std::mem::take(&mut self.keys_buf);
        features.blocking_keys(&mut keys);
        self.index_with_keys(lead_id, person, features, &keys);
        self.keys_buf = keys;
    }

    /// Indexes a record under its blocking keys (`features.blocking_keys`).
    fn index_with_keys(&mut self, lead_id: &str, person: u32, features: Features, keys: &[u64]) {
        let r = self.records.len() as u32;
        for k in keys {
            let e = self.entries.len() as u32;
            let head = self.heads.newest(*k);
            self.entries.push((r, *head));
            *head = e;
        }
        self.tf.add(&features);
        let lead = Id::new(lead_id);
        self.record_heap += lead.heap_bytes() + features.heap_bytes();
        self.records.push(Record {
            person,
            lead,
            features,
        });
    }

    /// Decides for one lead and records it in the index.
    pub fn decide(
        &mut self,
        lead_id: &str,
        source: &str,
        fps: &[String],
        features: Features,
    ) -> Verdict {
        let now = features.received_at_ms();
        // The blocking keys, for the lookup and for indexing the lead.
        let mut keys = std::mem::take(&mut self.keys_buf);
        if self.config.fuzzy {
            features.blocking_keys(&mut keys);
        }
        // Tier 1: exact fingerprints inside the window.
        let mut exact_hit = None;
        for fp in fps {
            if let Some(&(p, seen)) = self.exact.get(&key(&[fp.as_bytes()]))
                && self.window_ok(seen, now)
            {
                exact_hit = Some((fp.clone(), p));
                break;
            }
        }
        let mut verdict = if let Some((fp, p)) = exact_hit {
            let kind = super::fingerprint_kind(&fp).unwrap_or("fp").to_string();
            let person_id = self.persons[p as usize].to_string();
            Verdict {
                decision: Decision::Duplicate {
                    person_id: person_id.clone(),
                    matched: fp,
                    rule: format!("exact-{kind}-v{FINGERPRINT_VERSION}"),
                    score: None,
                    explain: None,
                },
                matched_id: Some(person_id.clone()),
                person_id,
                score: None,
                probability: Some(1.0),
                added: Vec::new(),
            }
        } else if self.config.fuzzy {
            self.fuzzy(lead_id, source, &features, &keys)
        } else {
            Verdict {
                decision: Decision::New,
                person_id: lead_id.to_string(),
                score: None,
                probability: None,
                matched_id: None,
                added: Vec::new(),
            }
        };
        let p = self.person(&verdict.person_id);
        let window_ms = self.config.window_days as i64 * 86_400_000;
        for fp in fps {
            let k = key(&[fp.as_bytes()]);
            match self.exact.get_mut(&k) {
                Some(e) if e.0 == p => e.1 = e.1.max(now),
                Some(e) if window_ms == 0 || now.saturating_sub(e.1) <= window_ms => {}
                Some(e) => *e = (p, now), // expired: the fingerprint moves on
                None => {
                    self.exact.insert(k, (p, now));
                    verdict.added.push(fp.clone());
                }
            }
        }
        if self.config.fuzzy {
            self.index_with_keys(lead_id, p, features, &keys);
        }
        self.keys_buf = keys;
        verdict
    }

    fn fuzzy(&mut self, lead_id: &str, source: &str, f: &Features, keys: &[u64]) -> Verdict {
        let mut cands = std::mem::take(&mut self.cand_buf);
        cands.clear();
        for k in keys {
            let Some(head) = self.heads.get(*k) else {
                continue;
            };
            let mut e = head;
            let mut n = 0;
            while e != u32::MAX && n < self.config.max_block {
                let (r, next) = self.entries[e as usize];
                // A forgotten record's entry is passed over, as if the
                // block had been filed without it. A block lists its
                // records newest first, and every record before
                // `pruned_to` is buried: the rest of the block is too.
                if r != BURIED {
                    if (r as usize) < self.pruned_to {
                        break;
                    }
                    cands.push(r);
                    n += 1;
                }
                e = next;
            }
        }
        // Score the candidates that share the most blocking keys, at most
        // `max_candidates` of them.
        cands.sort_unstable();
        let mut counted: Vec<(u32, u32)> = Vec::with_capacity(cands.len());
        for &r in &cands {
            match counted.last_mut() {
                Some((last, n)) if *last == r => *n += 1,
                _ => counted.push((r, 1)),
            }
        }
        let limit = self.config.max_candidates.max(1);
        if counted.len() > limit {
            counted.select_nth_unstable_by(limit - 1, |a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
            counted.truncate(limit);
        }
        let mut best: Option<(f64, u32)> = None;
        let mut levels = std::mem::take(&mut self.levels_buf);
        let model = self.model.current().clone();
        let tf = self.tf.of_lead(f);
        for &(r, _) in &counted {
            let rec = &self.records[r as usize];
            if rec.is_buried() || !self.window_ok(rec.features.received_at_ms(), f.received_at_ms())
            {
                continue;
            }
            compare(f, &rec.features, &mut levels);
            let s = model.score(f, &rec.features, &levels, &tf, None);
            if best.is_none_or(|(b, _)| s > b) {
                best = Some((s, r));
            }
        }
        self.cand_buf = cands;
        let new = |score: Option<f64>| Verdict {
            decision: Decision::New,
            person_id: lead_id.to_string(),
            score,
            probability: score.map(super::model::probability),
            matched_id: None,
            added: Vec::new(),
        };
        let Some((s, r)) = best else {
            self.levels_buf = levels;
            return new(None);
        };
        let (match_p, possible_p) = self.config.thresholds(source);
        if s < Model::weight_of(possible_p) {
            self.levels_buf = levels;
            return new(Some(s));
        }
        let rec = &self.records[r as usize];
        let mut explain = Explanation::default();
        compare(f, &rec.features, &mut levels);
        model.score(f, &rec.features, &levels, &tf, Some(&mut explain));
        self.levels_buf = levels;
        let person_id = self.persons[rec.person as usize].to_string();
        let matched = rec.lead.to_string();
        let probability = Some(explain.probability);
        // Two people at two employers never merge, whatever the weight.
        if s >= Model::weight_of(match_p) && !different_employers(f, &rec.features) {
            Verdict {
                decision: Decision::Duplicate {
                    person_id: person_id.clone(),
                    matched: matched.clone(),
                    rule: FUZZY_RULE.to_string(),
                    score: Some(s),
                    explain: Some(explain.into()),
                },
                person_id,
                score: Some(s),
                probability,
                matched_id: Some(matched),
                added: Vec::new(),
            }
        } else {
            Verdict {
                decision: Decision::Possible {
                    person_id,
                    matched: matched.clone(),
                    rule: FUZZY_RULE.to_string(),
                    score: s,
                    explain: explain.into(),
                },
                person_id: lead_id.to_string(),
                score: Some(s),
                probability,
                matched_id: Some(matched),
                added: Vec::new(),
            }
        }
    }

    /// Forgets what the window no longer lets decide: fuzzy records
    /// received, and exact fingerprints last seen, more than `window_days`
    /// before `now_ms` (`window_days = 0`: nothing expires). The records
    /// are buried (their features freed, their slots kept), and once the
    /// buried are a quarter of the index it is compacted: the block
    /// chains rebuilt without them (same order, no holes) and persons
    /// nothing refers to any more forgotten. Either way the index decides
    /// as the one the kept records alone would have built. Returns the
    /// number of records dropped.
    pub fn prune(&mut self, now_ms: i64) -> usize {
        if self.config.window_days == 0 {
            return 0;
        }
        let window_ms = self.config.window_days as i64 * 86_400_000;
        let live = |then_ms: i64| now_ms.saturating_sub(then_ms) <= window_ms;
        self.exact.retain(|_, (_, seen)| live(*seen));
        // Records are filed in the order their leads came, so the expired
        // ones are the oldest: they are buried from the last prune's place
        // up to the first record inside the window. (One filed out of
        // order, older than a record before it, is passed over by the
        // decisions, which read the window, and goes at the next
        // compaction.)
        let mut dropped = 0;
        while self.pruned_to < self.records.len() {
            let r = &self.records[self.pruned_to];
            if !r.is_buried() {
                if live(r.features.received_at_ms()) {
                    break;
                }
                // Its entries stay: they are at the end of their blocks,
                // where a block's walk stops (see `fuzzy`).
                self.bury(self.pruned_to, false);
                dropped += 1;
            }
            self.pruned_to += 1;
        }
        self.compact_if_worth_it();
        dropped
    }

    /// Forgets a person (an erasure): its fingerprints and the records of
    /// its leads, as if they had never been indexed. Returns the records
    /// dropped. The records are buried where they are (and their blocking
    /// entries marked), not the whole index rebuilt: a million-lead index
    /// took seconds to rebuild, with every lead posted meanwhile waiting.
    pub fn forget_person(&mut self, person_id: &str) -> usize {
        let id = Id::new(person_id);
        let persons = &self.persons;
        let Ok(slot) = self
            .person_ix
            .find_entry(id.hash(), |&p| persons[p as usize] == id)
        else {
            return 0;
        };
        let (p, _) = slot.remove();
        self.person_heap -= self.persons[p as usize].heap_bytes();
        self.persons[p as usize] = Id::Text(Box::default());
        self.exact.retain(|_, (person, _)| *person != p);
        let of_person: Vec<usize> = self
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.person == p)
            .map(|(i, _)| i)
            .collect();
        for &r in &of_person {
            self.bury(r, true);
        }
        self.compact_if_worth_it();
        of_person.len()
    }

    /// Buries record `r`: frees its features and id, takes its values out
    /// of the term frequencies and, with `entries`, marks its blocking
    /// entries so that a block's walk passes them over.
    fn bury(&mut self, r: usize, entries: bool) {
        let record = &mut self.records[r];
        if record.is_buried() {
            return;
        }
        record.person = BURIED;
        let features = std::mem::replace(&mut record.features, Features::none());
        let lead = std::mem::replace(&mut record.lead, Id::Text(Box::default()));
        self.record_heap -= lead.heap_bytes() + features.heap_bytes();
        self.tf.remove(&features);
        self.buried += 1;
        if !entries {
            return;
        }
        let mut keys = Vec::new();
        features.blocking_keys(&mut keys);
        for k in keys {
            let mut e = self.heads.get(k).unwrap_or(u32::MAX);
            while e != u32::MAX {
                let entry = &mut self.entries[e as usize];
                if entry.0 == r as u32 {
                    entry.0 = BURIED;
                    break;
                }
                e = entry.1;
            }
        }
    }

    /// Rebuilds the index without its buried records once they are a
    /// quarter of it.
    fn compact_if_worth_it(&mut self) {
        if self.buried > 0 && self.buried * 4 >= self.records.len() {
            self.compact();
        }
    }

    /// Rebuilds the index without its buried records: records, persons
    /// and blocking entries renumbered in their old order, so that it is
    /// the index the kept records alone would have built.
    fn compact(&mut self) {
        let keep: Vec<bool> = self.records.iter().map(|r| !r.is_buried()).collect();

        // Persons still referred to, renumbered in their old order.
        let mut person_map = vec![u32::MAX; self.persons.len()];
        for r in self.records.iter().zip(&keep).filter(|(_, k)| **k) {
            person_map[r.0.person as usize] = 0;
        }
        for (p, _) in self.exact.values() {
            person_map[*p as usize] = 0;
        }
        let mut persons = Vec::new();
        for (old, slot) in person_map.iter_mut().enumerate() {
            if *slot == 0 {
                *slot = persons.len() as u32;
                persons.push(std::mem::replace(
                    &mut self.persons[old],
                    Id::Text(Box::default()),
                ));
            }
        }
        persons.shrink_to_fit();
        let mut person_ix = hashbrown::HashTable::with_capacity(persons.len());
        for (i, id) in persons.iter().enumerate() {
            person_ix.insert_unique(id.hash(), i as u32, |&p| persons[p as usize].hash());
        }
        for (p, _) in self.exact.values_mut() {
            *p = person_map[*p as usize];
        }
        self.exact.shrink_to_fit();

        // Records kept, renumbered in order.
        let mut record_map = vec![u32::MAX; self.records.len()];
        let mut records = Chunked::default();
        for (old, (mut r, k)) in std::mem::take(&mut self.records)
            .into_iter()
            .zip(&keep)
            .enumerate()
        {
            if *k {
                record_map[old] = records.len() as u32;
                r.person = person_map[r.person as usize];
                records.push(r);
            }
        }

        // Each entry's block key, from walking the chains; then the kept
        // entries re-linked in their old order (a chain stays newest first).
        let mut entry_key = vec![0u64; self.entries.len()];
        for (k, head) in self.heads.iter() {
            let mut e = head;
            while e != u32::MAX {
                entry_key[e as usize] = k;
                e = self.entries[e as usize].1;
            }
        }
        let mut entries = Chunked::default();
        let mut heads = Heads::default();
        for (e, &(r, _)) in self.entries.iter().enumerate() {
            if r == BURIED || !keep[r as usize] {
                continue;
            }
            let head = heads.newest(entry_key[e]);
            entries.push((record_map[r as usize], *head));
            *head = (entries.len() - 1) as u32;
        }
        heads.shrink_to_fit();

        self.person_heap = persons.iter().map(Id::heap_bytes).sum();
        self.record_heap = records
            .iter()
            .map(|r| r.lead.heap_bytes() + r.features.heap_bytes())
            .sum();
        self.persons = persons;
        self.person_ix = person_ix;
        self.records = records;
        self.entries = entries;
        self.heads = heads;
        self.tf = TermFrequencies::default();
        for r in self.records.iter() {
            self.tf.add(&r.features);
        }
        self.buried = 0;
        self.pruned_to = 0;
    }

    /// The records' and persons' heap bytes counted afresh (what
    /// `record_heap` and `person_heap` keep up to date).
    #[cfg(test)]
    fn heap_recounted(&self) -> (usize, usize) {
        (
            self.records
                .iter()
                .map(|r| r.lead.heap_bytes() + r.features.heap_bytes())
                .sum(),
            self.persons.iter().map(Id::heap_bytes).sum(),
        )
    }

    /// Rough heap bytes held by the index (records, features, blocks,
    /// fingerprints), for the memory-per-lead figure and `/metrics`.
    /// Reads kept-up counts and capacities, never the records.
    pub fn approx_bytes(&self) -> usize {
        let persons = self.person_heap
            + self.persons.capacity() * std::mem::size_of::<Id>()
            + self.person_ix.capacity() * 5;
        self.records.capacity() * std::mem::size_of::<Record>()
            + self.record_heap
            + persons
            + self.entries.capacity() * 8
            + self.heads.capacity() * 13
            + self.exact.capacity() * 25
            + self.tf.approx_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::normalize::NormalizedLead;

    /// A corpus lead as the index takes it: id, fingerprints, features.
    type Prepared = (String, Vec<String>, Features);

    #[test]
    fn ids_show_exactly_as_they_came() {
        let uuid = "01932c07-a1b2-7c3d-8e4f-0123456789ab";
        assert!(matches!(Id::new(uuid), Id::Uuid(_)));
        for id in [
            uuid,
            "01932C07-A1B2-7C3D-8E4F-0123456789AB",
            "01932c07a1b27c3d8e4f0123456789ab",
            "L1",
            "",
        ] {
            assert_eq!(Id::new(id).to_string(), id);
        }
        assert_ne!(Id::new(uuid), Id::new(&uuid.to_uppercase()));
        let mut index = Deduper::new(DedupeConfig::default());
        let (a, b) = (index.person(uuid), index.person("L1"));
        assert_ne!(a, b);
        assert_eq!((index.person(uuid), index.person("L1")), (a, b));
    }

    fn lead(first: &str, last: &str, email: &str, company: &str) -> NormalizedLead {
        let s = |v: &str| (!v.is_empty()).then(|| v.to_string());
        NormalizedLead {
            first_name: s(first),
            last_name: s(last),
            email: s(email),
            company: s(company),
            ..Default::default()
        }
    }

    fn decide(d: &mut Deduper, id: &str, l: &NormalizedLead) -> Verdict {
        let f = Features::from_lead(l, d.config(), 0);
        d.decide(id, "test", &super::super::fingerprints(l), f)
    }

    #[test]
    fn typo_and_nickname_with_same_company_merge() {
        let mut d = Deduper::new(DedupeConfig::default());
        let a = decide(
            &mut d,
            "L1",
            &lead("Robert", "Johnson", "rj@acme.com", "Acme Inc"),
        );
        assert_eq!(a.decision, Decision::New);
        let b = decide(&mut d, "L2", &lead("Bob", "Jonson", "", "ACME"));
        assert!(b.decision.is_duplicate(), "{b:?}");
        assert_eq!(b.person_id, "L1");
        let c = decide(&mut d, "L3", &lead("Johnson", "Robert", "", "Acme Ltd"));
        assert!(c.decision.is_duplicate(), "{c:?}");
    }

    /// Seen in a run of 3,000 distinct B2B persons: a nickname, the same
    /// surname and alike company names joined two people at two firms.
    #[test]
    fn a_nickname_at_another_employer_is_another_person() {
        let mut d = Deduper::new(DedupeConfig::default());
        decide(
            &mut d,
            "L1",
            &lead(
                "Elizabeth",
                "Mitchell",
                "elizabeth.mitchell@firm214.example",
                "Firm 214 Holdings",
            ),
        );
        let b = decide(
            &mut d,
            "L2",
            &lead(
                "Betty",
                "Mitchell",
                "betty.mitchell@firm2192.example",
                "Firm 2192 Holdings",
            ),
        );
        assert_eq!(b.decision, Decision::New, "{b:?}");
        // The same names and different employers, without the nickname.
        let c = decide(
            &mut d,
            "L3",
            &lead(
                "Elizabeth",
                "Mitchell",
                "emitchell@globex.example",
                "Globex Partners",
            ),
        );
        assert_eq!(c.decision, Decision::New, "{c:?}");
        // The same person at the same employer under her nickname merges.
        let e = decide(
            &mut d,
            "L4",
            &lead("Betty", "Mitchell", "", "Firm 214 Holdings"),
        );
        assert!(e.decision.is_duplicate(), "{e:?}");
        assert_eq!(e.person_id, "L1");
    }

    #[test]
    fn same_name_at_another_company_is_not_a_duplicate() {
        let mut d = Deduper::new(DedupeConfig::default());
        decide(
            &mut d,
            "L1",
            &lead("Anna", "Smith", "anna@acme.com", "Acme"),
        );
        let b = decide(
            &mut d,
            "L2",
            &lead("Anna", "Smith", "asmith@globex.com", "Globex"),
        );
        assert_eq!(b.decision, Decision::New, "{b:?}");
        assert_eq!(b.person_id, "L2");
    }

    #[test]
    fn shared_email_is_exact() {
        let mut d = Deduper::new(DedupeConfig::default());
        decide(&mut d, "L1", &lead("Anna", "Smith", "anna@acme.com", ""));
        let b = decide(&mut d, "L2", &lead("", "", "anna@acme.com", ""));
        assert!(
            matches!(b.decision, Decision::Duplicate { ref rule, .. } if rule == "exact-email-v2")
        );
    }

    #[test]
    fn window_expires_exact_matches() {
        let mut d = Deduper::new(DedupeConfig {
            window_days: 1,
            fuzzy: false,
            ..Default::default()
        });
        let l = lead("A", "B", "a@b.com", "");
        let f = Features::from_lead(&l, d.config(), 0);
        d.decide("L1", "s", &super::super::fingerprints(&l), f);
        let mut f = Features::from_lead(&l, d.config(), 0);
        f.set_received_at_ms(3 * 86_400_000);
        let v = d.decide("L2", "s", &super::super::fingerprints(&l), f);
        assert_eq!(v.decision, Decision::New);
    }

    #[test]
    fn numbered_test_persons_stay_apart() {
        let leads: Vec<serde_json::Value> = (0..60)
            .map(|n| serde_json::json!({"id": format!("L{n}"), "email": format!("reload.{n}@example.com"), "name": format!("Reload Person{n}")}))
            .collect();
        let out = crate::cli::dedupe::dedupe_values(&leads, &DedupeConfig::default());
        for o in &out {
            assert_eq!(o.decision, "new", "{o:?}");
        }
    }

    #[test]
    fn ascii_jaro_winkler_is_strsims() {
        let mut rng = crate::pipeline::dedupe::corpus::Rng::new(5);
        let word = |rng: &mut crate::pipeline::dedupe::corpus::Rng, alphabet: &[u8]| -> String {
            let n = rng.below(70);
            (0..n).map(|_| *rng.pick(alphabet) as char).collect()
        };
        for i in 0..20_000 {
            let alphabet: &[u8] = if i % 2 == 0 {
                b"ab"
            } else {
                b"abcdefghij klmn"
            };
            let a = word(&mut rng, alphabet);
            let b = if i % 3 == 0 {
                // A near copy: a few edits.
                let mut b = a.clone().into_bytes();
                for _ in 0..rng.below(3) {
                    if !b.is_empty() {
                        let k = rng.below(b.len());
                        b[k] = *rng.pick(alphabet);
                    }
                }
                String::from_utf8(b).unwrap()
            } else {
                word(&mut rng, alphabet)
            };
            assert_eq!(
                jaro_winkler(&a, &b).to_bits(),
                strsim::jaro_winkler(&a, &b).to_bits(),
                "{a:?} {b:?}"
            );
        }
        for (a, b) in [
            ("martha", "marhta"),
            ("dwayne", "duane"),
            ("", ""),
            ("a", ""),
            ("jose", "josé"),
            ("robert", "rupert"),
        ] {
            assert_eq!(
                jaro_winkler(a, b).to_bits(),
                strsim::jaro_winkler(a, b).to_bits()
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn the_jaro_winkler_bound_is_never_below_it(
            a in "[a-e é]{0,12}|[a-z]{0,70}",
            b in "[a-e é]{0,12}|[a-z]{0,70}",
        ) {
            proptest::prop_assert!(jaro_winkler_bound(&a, &b) >= jaro_winkler(&a, &b));
        }
    }

    #[test]
    fn the_jaro_winkler_bound_tells_unalike_names() {
        assert!(jaro_winkler_bound("lovelace", "hopper") < 0.8);
        assert!(jaro_winkler_bound("ada", "torvalds") < 0.8);
        assert_eq!(jaro_winkler_bound("martha", "martha"), 1.0);
        assert!(jaro_winkler_bound("martha", "marhta") >= jaro_winkler("martha", "marhta"));
    }

    const DAY: i64 = 86_400_000;

    /// A copy of `f` received at `t`.
    fn at(f: &Features, t: i64) -> Features {
        let mut f = f.clone();
        f.set_received_at_ms(t);
        f
    }

    /// A prune's case: `pruned` decided every lead, the first `1/old_part`
    /// of them 60 days before the prune (out of its 30-day window), the
    /// next ones 20 days before; `fresh` holds only those recent ones, as
    /// they were decided. The rest are queries. Also: how many were old.
    fn prune_case(seed: u64, old_part: usize) -> (Deduper, Deduper, Vec<Prepared>, usize) {
        let cfg = DedupeConfig {
            window_days: 30,
            ..Default::default()
        };
        let leads = crate::pipeline::dedupe::corpus::prepared(seed, 900, "", &cfg);
        let (old, rest) = leads.split_at(leads.len() / old_part);
        let (recent, queries) = rest.split_at(rest.len() / 2);
        let mut pruned = Deduper::new(cfg.clone());
        for (i, (id, fps, f)) in old.iter().enumerate() {
            pruned.decide(id, "s", fps, at(f, i as i64));
        }
        let mut fresh = Deduper::new(cfg.clone());
        for (i, (id, fps, f)) in recent.iter().enumerate() {
            let t = 40 * DAY + i as i64;
            let v = pruned.decide(id, "s", fps, at(f, t));
            fresh.insert_stored(id, &v.person_id, fps, Some(at(f, t)), t);
        }
        (pruned, fresh, queries.to_vec(), old.len())
    }

    /// Asks both indexes about every query at `now`: the same verdicts.
    /// Returns how many were new, duplicates and possible duplicates.
    fn decide_alike(
        a: &mut Deduper,
        b: &mut Deduper,
        queries: &[Prepared],
        now: i64,
    ) -> [usize; 3] {
        let mut kinds = [0; 3];
        for (i, (id, fps, f)) in queries.iter().enumerate() {
            let t = now + i as i64;
            let a = a.decide(id, "s", fps, at(f, t));
            let b = b.decide(id, "s", fps, at(f, t));
            assert_eq!(a.decision, b.decision, "{id}");
            assert_eq!(
                (&a.person_id, &a.matched_id, a.score, &a.added),
                (&b.person_id, &b.matched_id, b.score, &b.added),
                "{id}"
            );
            kinds[match a.decision {
                Decision::New => 0,
                Decision::Duplicate { .. } => 1,
                Decision::Possible { .. } => 2,
            }] += 1;
        }
        kinds
    }

    #[test]
    fn prune_leaves_the_index_the_kept_records_would_build() {
        let (mut pruned, mut fresh, queries, old) = prune_case(21, 3);
        let (records, fingerprints, bytes) = (
            pruned.len(),
            pruned.fingerprint_count(),
            pruned.approx_bytes(),
        );
        let now = 60 * DAY;
        assert_eq!(pruned.prune(now), old);
        assert_eq!(pruned.len(), records - old);
        assert_eq!(pruned.len(), fresh.len());
        assert!(pruned.fingerprint_count() < fingerprints);
        assert_eq!(pruned.fingerprint_count(), fresh.fingerprint_count());
        assert!(
            pruned.approx_bytes() * 10 < bytes * 8,
            "{} of {bytes} bytes",
            pruned.approx_bytes()
        );
        assert_eq!(pruned.prune(now), 0, "nothing more to drop");
        let kinds = decide_alike(&mut pruned, &mut fresh, &queries, now);
        assert!(kinds.iter().all(|&n| n > 0), "{kinds:?}");
    }

    #[test]
    fn a_forgotten_person_matches_nothing_and_others_are_untouched() {
        let cfg = DedupeConfig::default();
        let (leads, mut index, persons) = indexed(22, &cfg);
        // A person with several leads, and everyone else.
        let (gone, of_gone) = persons
            .iter()
            .find(|(_, leads)| leads.len() >= 2)
            .map(|(p, l)| (p.clone(), l.clone()))
            .expect("a person with duplicates");
        let mut kept = Deduper::new(cfg.clone());
        for (i, (id, fps, f)) in leads.iter().enumerate() {
            if !of_gone.contains(&i) {
                let v = index_person(&persons, i);
                kept.insert_stored(id, &v, fps, Some(f.clone()), f.received_at_ms());
            }
        }
        let heap = |d: &Deduper| (d.record_heap, d.person_heap);
        assert_eq!(heap(&index), index.heap_recounted());
        assert_eq!(index.forget_person(&gone), of_gone.len());
        assert_eq!(index.forget_person(&gone), 0, "already gone");
        assert_eq!(heap(&index), index.heap_recounted());
        assert_eq!(heap(&index).0, heap(&kept).0, "the kept records' bytes");
        assert_eq!(index.len(), kept.len());
        assert_eq!(index.fingerprint_count(), kept.fingerprint_count());
        // The person's leads, sent again, find nobody of theirs.
        for &i in &of_gone {
            let (id, fps, f) = &leads[i];
            let again = format!("{id}-again");
            let v = index.decide(&again, "s", fps, f.clone());
            assert_ne!(v.person_id, gone, "{:?}", v.decision);
            let w = kept.decide(&again, "s", fps, f.clone());
            assert_eq!(v.decision, w.decision);
        }
    }

    /// A prune that drops a few records buries them (no rebuild); the
    /// index decides as one the kept records alone would have built.
    #[test]
    fn a_small_prune_buries_and_decides_as_the_kept_records_would() {
        let (mut pruned, mut fresh, queries, old) = prune_case(23, 10);
        let records = pruned.records.len();
        let now = 60 * DAY;
        assert_eq!(pruned.prune(now), old);
        assert_eq!(pruned.records.len(), records, "buried, not rebuilt");
        assert_eq!(pruned.len(), fresh.len());
        assert_eq!(pruned.fingerprint_count(), fresh.fingerprint_count());
        assert_eq!(pruned.record_heap, fresh.record_heap);
        assert_eq!(pruned.prune(now), 0, "nothing more to drop");
        decide_alike(&mut pruned, &mut fresh, &queries, now);
    }

    /// Forgotten persons' records are buried where they are while they
    /// are under a quarter of the index, which meanwhile decides as one
    /// built without those persons (blocks small enough that a buried
    /// entry counted would hide a live one); the forgetting that makes
    /// them a quarter compacts it.
    #[test]
    fn forgotten_persons_are_buried_then_compacted() {
        let cfg = DedupeConfig {
            max_block: 2,
            ..Default::default()
        };
        let (leads, mut index, persons) = indexed(24, &cfg);
        let total = index.len();
        let (mut gone, mut rest) = (Vec::new(), persons.iter());
        for (p, of) in rest.by_ref() {
            assert_eq!(index.forget_person(p), of.len());
            gone.extend(of.iter().copied());
            if (gone.len() + 8) * 4 >= total {
                break;
            }
        }
        assert_eq!(index.records.len() - index.len(), gone.len(), "buried");
        let mut kept = Deduper::new(cfg.clone());
        for (i, (id, fps, f)) in leads.iter().enumerate() {
            if !gone.contains(&i) {
                let p = index_person(&persons, i);
                kept.insert_stored(id, &p, fps, Some(f.clone()), f.received_at_ms());
            }
        }
        assert_eq!(index.len(), kept.len());
        assert_eq!(index.fingerprint_count(), kept.fingerprint_count());
        assert_eq!(index.record_heap, kept.record_heap);
        let heap = |d: &Deduper| (d.record_heap, d.person_heap);
        assert_eq!(heap(&index), index.heap_recounted());
        for (i, (id, fps, f)) in leads.iter().enumerate().step_by(3) {
            let again = format!("{id}-again");
            let v = index.decide(&again, "s", fps, f.clone());
            let w = kept.decide(&again, "s", fps, f.clone());
            assert_eq!(v.decision, w.decision, "{i}");
            assert_eq!((v.score, &v.matched_id), (w.score, &w.matched_id), "{i}");
        }
        // Over a quarter: compacted.
        let before = index.len();
        let mut more = 0;
        for (p, of) in rest {
            // With the leads sent again that joined it.
            let dropped = index.forget_person(p);
            assert!(dropped >= of.len(), "{dropped}");
            more += dropped;
            if index.records.len() == index.len() {
                break;
            }
        }
        assert_eq!(index.records.len(), index.len(), "compacted");
        assert_eq!(index.len(), before - more);
        assert_eq!(heap(&index), index.heap_recounted());
    }

    /// A corpus of 400 persons decided in order by a new index: the
    /// leads, the index, and each person's leads (by their place).
    fn indexed(seed: u64, cfg: &DedupeConfig) -> (Vec<Prepared>, Deduper, Persons) {
        let leads = crate::pipeline::dedupe::corpus::prepared(seed, 400, "", cfg);
        let mut index = Deduper::new(cfg.clone());
        let mut persons = Persons::new();
        for (i, (id, fps, f)) in leads.iter().enumerate() {
            let v = index.decide(id, "s", fps, f.clone());
            persons.entry(v.person_id).or_default().push(i);
        }
        (leads, index, persons)
    }

    type Persons = std::collections::BTreeMap<String, Vec<usize>>;

    /// The person lead `i` joined, from `persons`.
    fn index_person(persons: &Persons, i: usize) -> String {
        persons
            .iter()
            .find(|(_, l)| l.contains(&i))
            .map(|(p, _)| p.clone())
            .unwrap()
    }

    #[test]
    fn without_a_window_nothing_is_pruned() {
        let cfg = DedupeConfig {
            window_days: 0,
            ..Default::default()
        };
        let mut d = Deduper::new(cfg.clone());
        for (id, fps, f) in crate::pipeline::dedupe::corpus::prepared(4, 50, "", &cfg) {
            d.decide(&id, "s", &fps, f);
        }
        let n = d.len();
        assert_eq!(d.prune(i64::MAX), 0);
        assert_eq!(d.len(), n);
    }

    #[test]
    fn blocking_keys_survive_a_name_swap() {
        let cfg = DedupeConfig::default();
        let mut k1 = Vec::new();
        let mut k2 = Vec::new();
        Features::from_lead(&lead("Anna", "Smith", "", ""), &cfg, 0).blocking_keys(&mut k1);
        Features::from_lead(&lead("Smith", "Anna", "", ""), &cfg, 0).blocking_keys(&mut k2);
        assert_eq!(k1, k2);
    }
}
