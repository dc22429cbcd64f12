//! Read-back, shared by adapters: after a CRM reports records written,
//! read them again and turn each one that is missing, or does not hold
//! what was sent, into a read-back-mismatch retry (a silent no-op is
//! not a delivery). The adapter does the CRM's read call; this module
//! chooses which batches to read, which records to look for and judges
//! what came back.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::outcome::readback_mismatch;
use crate::types::{Delivery, Outcome, PushContext};

/// 0–99 from a job id, the same every time (FNV-1a).
pub fn stable_percent(id: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h % 100
}

/// The share of written batches to read back: the destination's
/// `readback-percent` (0–100), default 100.
pub fn percent(ctx: &PushContext) -> u64 {
    crate::config(ctx, "readback-percent")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(100)
        .min(100)
}

/// Whether the batch whose first job is `first_id` is read back. Whole
/// batches are sampled (one read call checks a batch), chosen by a stable
/// hash of the job id so a retry makes the same choice.
pub fn sampled(first_id: &str, percent: u64) -> bool {
    stable_percent(first_id) < percent
}

/// The records of `records` that `outcomes` says were written, with their
/// CRM ids.
pub fn written<'a>(
    records: &[&'a Delivery],
    outcomes: &HashMap<String, Outcome>,
) -> Vec<(&'a Delivery, String)> {
    records
        .iter()
        .filter_map(|d| match outcomes.get(&d.id) {
            Some(Outcome::Created(id) | Outcome::Updated(id)) => Some((*d, id.clone())),
            _ => None,
        })
        .collect()
}

/// The names of the fields in `sent` that `held` (the record as read, a
/// JSON object) does not hold as sent; `email` is compared without case
/// (CRMs lowercase addresses).
pub fn differing(sent: &Map<String, Value>, held: &Value, email: &str) -> Vec<String> {
    sent.iter()
        .filter(|(name, sent)| {
            let sent = sent.as_str().unwrap_or_default();
            match held[name.as_str()].as_str() {
                Some(v) if name.as_str() == email => !v.eq_ignore_ascii_case(sent),
                Some(v) => v != sent,
                None => true,
            }
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Judges a read-back: each of `written` that `held` (records read, by
/// CRM id) lacks, or that does not hold `sent(delivery)`, becomes a
/// read-back retry in `outcomes`. `what` names the record kind in the
/// reasons ("Salesforce Lead"), `email` the field compared without case.
pub fn judge(
    written: &[(&Delivery, String)],
    held: &HashMap<&str, &Value>,
    sent: impl Fn(&Delivery) -> Map<String, Value>,
    email: &str,
    what: &str,
    outcomes: &mut HashMap<String, Outcome>,
) {
    for (d, id) in written {
        let verdict = match held.get(id.as_str()) {
            None => Some(format!(
                "{what} {id} was reported written, but it does not exist (a silent no-op)"
            )),
            Some(record) => {
                let differ = differing(&sent(d), record, email);
                (!differ.is_empty()).then(|| {
                    format!(
                        "{what} {id} does not hold what was sent ({}); the CRM reported success",
                        differ.join(", ")
                    )
                })
            }
        };
        if let Some(reason) = verdict {
            outcomes.insert(d.id.clone(), readback_mismatch(reason));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_record_missing_or_different_is_a_readback_retry() {
        let d = |id: &str| Delivery {
            id: id.into(),
            idempotency_key: format!("k-{id}"),
            properties: vec![],
        };
        let (a, b, c) = (d("a"), d("b"), d("c"));
        let written = vec![
            (&a, "1".to_string()),
            (&b, "2".to_string()),
            (&c, "3".to_string()),
        ];
        let r2 = json!({"Email": "X@Y.COM", "City": "Oslo"});
        let r3 = json!({"Email": "x@y.com", "City": "Bergen"});
        let held: HashMap<&str, &Value> = [("2", &r2), ("3", &r3)].into_iter().collect();
        let sent = |_: &Delivery| {
            json!({"Email": "x@y.com", "City": "Oslo"})
                .as_object()
                .unwrap()
                .clone()
        };
        let mut outcomes = HashMap::new();
        judge(&written, &held, sent, "Email", "Lead", &mut outcomes);
        let reason = |id: &str| match &outcomes[id] {
            Outcome::Retry(r) if r.kind == crate::types::RetryKind::ReadbackMismatch => {
                r.reason.clone()
            }
            other => panic!("{other:?}"),
        };
        assert!(reason("a").contains("Lead 1 was reported written, but it does not exist"));
        assert!(!outcomes.contains_key("b"), "email compared without case");
        assert!(reason("c").contains("(City)"));
    }
}
