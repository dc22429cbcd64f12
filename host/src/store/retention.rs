//! Retention per source: the leads as posted are removed after
//! `raw_days`, the leads themselves after `leads_days` (tombstones stay:
//! ids, times, source, status, dedupe decision; golden records go once all
//! of a person's leads have), dead letters after `dead_letters_days`
//! (taken out of the queue with their payloads). A task runs it hourly.
//!
//! A lead is only forgotten after the dedupe index has forgotten it:
//! `leads_days` must exceed `dedupe.window_days`.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Store, StoreError};

/// `[sources.NAME.retention]`: days each kind of data is kept (absent:
/// for ever).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    #[serde(default)]
    pub raw_days: Option<u32>,
    #[serde(default)]
    pub leads_days: Option<u32>,
    #[serde(default)]
    pub dead_letters_days: Option<u32>,
}

const DAY_MS: i64 = 86_400_000;

impl Retention {
    /// The key at fault and why.
    pub fn validate(&self, window_days: u32) -> Result<(), (&'static str, String)> {
        for (key, days) in [
            ("raw_days", self.raw_days),
            ("leads_days", self.leads_days),
            ("dead_letters_days", self.dead_letters_days),
        ] {
            if days == Some(0) {
                return Err((key, "at least 1 day (leave it out to keep for ever)".into()));
            }
        }
        if let Some(days) = self.leads_days
            && (window_days == 0 || days <= window_days)
        {
            return Err((
                "leads_days",
                format!(
                    "must exceed dedupe.window_days ({}): a lead is forgotten only after the dedupe index has let it go",
                    if window_days == 0 {
                        "0, for ever".to_string()
                    } else {
                        window_days.to_string()
                    }
                ),
            ));
        }
        Ok(())
    }

    /// The cutoffs at `now_ms`.
    pub fn cutoffs(&self, now_ms: i64) -> Cutoffs {
        let before = |days: Option<u32>| days.map(|d| now_ms - i64::from(d) * DAY_MS);
        Cutoffs {
            raw_before_ms: before(self.raw_days),
            leads_before_ms: before(self.leads_days),
            dead_letters_before_ms: before(self.dead_letters_days),
        }
    }
}

/// What a purge removes: data received (dead letters: finished) before
/// each time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cutoffs {
    pub raw_before_ms: Option<i64>,
    pub leads_before_ms: Option<i64>,
    pub dead_letters_before_ms: Option<i64>,
}

/// What a purge removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Purged {
    /// Leads whose form as posted went.
    pub raw: u64,
    /// Leads forgotten (tombstones left).
    pub leads: u64,
    /// Golden records deleted (every lead of the person forgotten).
    pub persons: u64,
    pub dead_letters: u64,
}

impl Purged {
    fn add(&mut self, other: Purged) {
        self.raw += other.raw;
        self.leads += other.leads;
        self.persons += other.persons;
        self.dead_letters += other.dead_letters;
    }

    fn is_empty(&self) -> bool {
        *self == Purged::default()
    }
}

/// Leads per purge step (one write transaction).
const STEP: u32 = 500;
/// How often the task runs.
const EVERY: Duration = Duration::from_secs(3600);

/// Purges every source's expired data now, step by step; the store's
/// files are scrubbed after anything was removed.
pub async fn run_once(
    store: &dyn Store,
    sources: &[(String, Retention)],
    now_ms: i64,
) -> Result<Purged, StoreError> {
    let mut all = Purged::default();
    for (source, retention) in sources {
        let cutoffs = retention.cutoffs(now_ms);
        loop {
            let step = store.purge(source, cutoffs, STEP, now_ms).await?;
            all.add(step);
            let full = [step.raw, step.leads, step.dead_letters]
                .iter()
                .any(|n| *n >= u64::from(STEP));
            if !full {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
    if !all.is_empty() {
        store.scrub().await?;
    }
    Ok(all)
}

/// Runs [`run_once`] now and hourly, for the sources with a retention.
pub fn spawn(
    store: Arc<dyn Store>,
    sources: Vec<(String, Retention)>,
) -> Option<tokio::task::JoinHandle<()>> {
    if sources.is_empty() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut every = tokio::time::interval(EVERY);
        loop {
            every.tick().await;
            match run_once(&*store, &sources, crate::now_ms()).await {
                Ok(p) if p.is_empty() => {}
                Ok(p) => tracing::info!(
                    raw = p.raw,
                    leads = p.leads,
                    persons = p.persons,
                    dead_letters = p.dead_letters,
                    "retention: expired personal data removed"
                ),
                Err(e) => {
                    tracing::warn!(error = %e, "retention purge failed; tried again in an hour")
                }
            }
        }
    }))
}
