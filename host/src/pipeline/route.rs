//! Route: which destinations a lead goes to, with which priority and SLA.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Delivery priority; P0 jobs are always leased before P1 and P2.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub enum Priority {
    P0,
    #[default]
    P1,
    P2,
}

impl Priority {
    /// The delivery deadline counted from acceptance.
    pub fn sla(self) -> Duration {
        match self {
            Priority::P0 => Duration::from_secs(60),
            Priority::P1 => Duration::from_secs(5 * 60),
            Priority::P2 => Duration::from_secs(30 * 60),
        }
    }

    pub fn as_i64(self) -> i64 {
        self as i64
    }

    pub fn from_i64(n: i64) -> Option<Priority> {
        match n {
            0 => Some(Priority::P0),
            1 => Some(Priority::P1),
            2 => Some(Priority::P2),
            _ => None,
        }
    }

    pub fn parse(s: &str) -> Option<Priority> {
        match s {
            "P0" => Some(Priority::P0),
            "P1" => Some(Priority::P1),
            "P2" => Some(Priority::P2),
            _ => None,
        }
    }
}

/// One destination a lead goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub destination: String,
    pub priority: Priority,
    /// Deadline in ms since the epoch.
    pub sla_deadline_ms: i64,
}

/// Every configured destination, at the lead's priority if it names one,
/// else the source's.
pub fn route(
    destinations: &[String],
    source_priority: Priority,
    lead_priority: Option<&str>,
    accepted_at_ms: i64,
) -> Vec<Route> {
    let priority = lead_priority
        .and_then(Priority::parse)
        .unwrap_or(source_priority);
    destinations
        .iter()
        .map(|d| Route {
            destination: d.clone(),
            priority,
            sla_deadline_ms: accepted_at_ms + priority.sla().as_millis() as i64,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lead_priority_overrides_source() {
        let r = route(&["hubspot".into()], Priority::P2, Some("P0"), 1_000);
        assert_eq!(r[0].priority, Priority::P0);
        assert_eq!(r[0].sla_deadline_ms, 61_000);
        let r = route(&["hubspot".into()], Priority::P2, None, 0);
        assert_eq!(r[0].priority, Priority::P2);
    }
}
