//! Several hosts delivering to one CRM account keep, together, under its
//! quota. Every second each host writes its heartbeat to the shared store
//! and reads who else is there; every window of every destination's
//! limiter, and the CRM's cap on requests in flight, is cut into as many
//! parts as hosts seen lately, one part each (quota slices: no request
//! waits for the database, and a host cut from it keeps to its part). A
//! CRM's "stop until" that one host was told (a 429's `Retry-After`, a
//! quota header at zero) is published and holds for every host, and so
//! does a circuit breaker's opening: every host stops calling the CRM
//! until the opening host's probe.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::plugins::Registry;
use crate::store::{HostSeen, Pause, PauseKind, Store, StoredEnum};

/// How often a host says it is alive and reads the others.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A host not seen for this long is gone.
pub const ALIVE_MS: i64 = 5_000;

/// This host's part of a destination's quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Share {
    /// How many parts the quota is cut into.
    pub parts: u32,
    /// A host that joined others sends nothing before then.
    pub joining_until_ms: Option<i64>,
}

/// How a quota whose requests stay in the CRM's view for `settle_ms` (its
/// longest rolling window) is shared, seen from `me` at `now_ms`: cut among
/// every host alive and every host gone for less than `settle_ms` (the CRM
/// still counts its last requests). A host that joined while others were
/// there waits, before using its part, until they have seen it (two
/// heartbeats) and what they sent at their larger parts has left the CRM's
/// windows.
pub fn share(hosts: &[HostSeen], me: &str, now_ms: i64, settle_ms: i64) -> Share {
    let counted: Vec<&HostSeen> = hosts
        .iter()
        .filter(|h| h.host == me || h.last_seen_ms >= now_ms - ALIVE_MS - settle_ms)
        .collect();
    let mine = counted.iter().find(|h| h.host == me);
    let parts = counted.len() as u32 + u32::from(mine.is_none());
    let joining_until_ms = mine.and_then(|m| {
        let others_before = counted
            .iter()
            .any(|h| (h.first_seen_ms, &h.host) < (m.first_seen_ms, &m.host));
        let until = m.first_seen_ms + 2 * HEARTBEAT.as_millis() as i64 + settle_ms;
        (others_before && until > now_ms).then_some(until)
    });
    Share {
        parts,
        joining_until_ms,
    }
}

/// The longest a heartbeat or a pause exchange may take (shorter than
/// [`super::STORE_CALL`]: a host whose heartbeat lapses is counted gone).
const EXCHANGE_CALL: std::time::Duration = std::time::Duration::from_secs(5);

/// Keeps this host's parts and the shared pauses up to date until
/// stopped.
pub async fn run(
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    host: String,
    mut stopped: watch::Receiver<bool>,
) {
    // The pauses this host last published or adopted.
    let mut known: HashMap<(String, PauseKind), i64> = HashMap::new();
    loop {
        let now = crate::now_ms();
        let destinations: Vec<_> = registry
            .names()
            .iter()
            .filter_map(|name| registry.get(name))
            .collect();
        let settle =
            |d: &crate::plugins::Destination| d.limiter.longest_window().as_millis() as i64;
        let longest = destinations.iter().map(|d| settle(d)).max().unwrap_or(0);
        let beat = store.heartbeat(&host, now, now - ALIVE_MS - longest);
        match super::within(EXCHANGE_CALL, beat).await {
            Ok(hosts) => {
                for d in &destinations {
                    let s = share(&hosts, &host, now, settle(d));
                    d.limiter.set_shares(s.parts, s.joining_until_ms);
                }
            }
            // Cut from the store: the last parts hold.
            Err(e) => tracing::warn!(error = %e, "heartbeat to the shared store failed"),
        }
        // What this host found (and has not told yet), and what the
        // others found, adopted.
        let publish: Vec<Pause> = destinations
            .iter()
            .flat_map(|d| {
                let quota = d.limiter.blocked_until_ms().map(|u| (PauseKind::Quota, u));
                let breaker = d.breaker.open_until_ms().map(|u| (PauseKind::Breaker, u));
                quota
                    .into_iter()
                    .chain(breaker)
                    .map(|(kind, until_ms)| Pause {
                        destination: d.name.clone(),
                        kind,
                        until_ms,
                    })
            })
            .filter(|p| {
                known
                    .get(&(p.destination.clone(), p.kind))
                    .is_none_or(|k| *k < p.until_ms)
            })
            .collect();
        match super::within(EXCHANGE_CALL, store.pauses(&publish, now)).await {
            Ok(running) => {
                for p in &publish {
                    known.insert((p.destination.clone(), p.kind), p.until_ms);
                }
                for p in running {
                    let key = (p.destination.clone(), p.kind);
                    if known.get(&key).is_some_and(|k| *k >= p.until_ms) {
                        continue;
                    }
                    if let Some(d) = destinations.iter().find(|d| d.name == p.destination) {
                        tracing::info!(destination = %p.destination, kind = p.kind.as_str(), until_ms = p.until_ms, "paused: another host found the CRM needs it");
                        match p.kind {
                            PauseKind::Quota => d.limiter.block_until_ms(p.until_ms),
                            PauseKind::Breaker => d.breaker.open_until(p.until_ms, now),
                        }
                    }
                    known.insert(key, p.until_ms);
                }
            }
            Err(e) => tracing::warn!(error = %e, "sharing pauses through the store failed"),
        }
        tokio::select! {
            _ = stopped.changed() => return,
            _ = tokio::time::sleep(HEARTBEAT) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(host: &str, first: i64, last: i64) -> HostSeen {
        HostSeen {
            host: host.into(),
            first_seen_ms: first,
            last_seen_ms: last,
        }
    }

    #[test]
    fn the_quota_is_cut_among_the_hosts_there_and_those_just_gone() {
        let settle = 10_000;
        // Alone: the whole quota at once.
        let alone = share(&[seen("a", 0, 100_000)], "a", 100_000, settle);
        assert_eq!(
            alone,
            Share {
                parts: 1,
                joining_until_ms: None
            }
        );
        // B joins at 100 s: A's part halves at once; B waits until A has
        // seen it and A's requests at the whole quota left the window.
        let hosts = [seen("a", 0, 101_000), seen("b", 100_000, 101_000)];
        assert_eq!(share(&hosts, "a", 101_000, settle).parts, 2);
        assert_eq!(share(&hosts, "a", 101_000, settle).joining_until_ms, None);
        assert_eq!(
            share(&hosts, "b", 101_000, settle),
            Share {
                parts: 2,
                joining_until_ms: Some(112_000)
            }
        );
        assert_eq!(share(&hosts, "b", 112_000, settle).joining_until_ms, None);
        // A dies at 120 s: still counted until its last requests left the
        // CRM's window (alive timeout + settle), then B has it all.
        let hosts = [seen("a", 0, 120_000), seen("b", 100_000, 134_000)];
        assert_eq!(share(&hosts, "b", 134_000, settle).parts, 2);
        assert_eq!(share(&hosts, "b", 135_001, settle).parts, 1);
        // A heartbeat that did not come back: this host still counts.
        assert_eq!(share(&[seen("a", 0, 1_000)], "b", 2_000, settle).parts, 2);
    }
}
