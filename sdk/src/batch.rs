//! The pieces of `push` every upserting adapter repeats: one write per CRM
//! record in a call, the outcomes back in the batch's order, a record's
//! fields as the CRM takes them, the record's key.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::outcome::{self, held_back, outcome, retry};
use crate::types::{Delivery, DeliveryOutcome, Outcome};

/// Splits `batch` into the deliveries to send now, at most one per CRM
/// record (`key`), and held-back outcomes for the others: a CRM refuses a
/// call that names one record twice, so a later update of the same record
/// goes in the next call, in order (due at once, no attempt used).
pub fn one_per_record<'a>(
    batch: &'a [Delivery],
    key: impl Fn(&'a Delivery) -> &'a str,
) -> (Vec<&'a Delivery>, HashMap<String, Outcome>) {
    let mut seen: HashMap<&str, ()> = HashMap::new();
    let mut held = HashMap::new();
    let mut send = Vec::new();
    for d in batch {
        if seen.insert(key(d), ()).is_some() {
            held.insert(
                d.id.clone(),
                held_back("another update of this record is in the same batch"),
            );
        } else {
            send.push(d);
        }
    }
    (send, held)
}

/// One outcome per delivery of `batch`, in its order; a delivery the CRM's
/// answer left out is retried (`crm` names the CRM in the reason), never
/// taken as delivered.
pub fn in_order(
    batch: &[Delivery],
    mut outcomes: HashMap<String, Outcome>,
    crm: &str,
) -> Vec<DeliveryOutcome> {
    batch
        .iter()
        .map(|d| {
            let o = outcomes.remove(&d.id).unwrap_or_else(|| {
                retry(None, format!("{crm}'s answer did not mention this record"))
            });
            outcome(&d.id, o)
        })
        .collect()
}

/// Every delivery of `batch` refused for a configuration problem.
pub fn misconfigured(batch: &[Delivery], why: &str) -> Vec<DeliveryOutcome> {
    batch
        .iter()
        .map(|d| outcome(&d.id, outcome::misconfigured("config", why)))
        .collect()
}

/// The value of the mapping's property `name`, trimmed, if not empty.
pub fn property<'a>(d: &'a Delivery, name: &str) -> Option<&'a str> {
    d.properties
        .iter()
        .find(|p| p.name == name)
        .map(|p| p.value.trim())
        .filter(|v| !v.is_empty())
}

/// The key a record is upserted by: the mapping's own value of the field
/// `field`, else leadgate's key of the person ([`crate::record_key`]).
pub fn external_id<'a>(d: &'a Delivery, field: &str) -> &'a str {
    property(d, field).unwrap_or_else(|| crate::record_key(d))
}

/// A record's fields as a JSON object of strings: empty values left out
/// (an update never blanks a field the CRM holds), `skip` left out, each
/// name in `renamed` (from, to) under its new name, each in `dropped` left
/// out. Adapters use it to move a Lead mapping onto a Contact.
pub fn fields(
    d: &Delivery,
    skip: &str,
    renamed: &[(&str, &str)],
    dropped: &[&str],
) -> Map<String, Value> {
    let mut out = Map::new();
    for p in &d.properties {
        if p.value.is_empty() || p.name == skip || dropped.contains(&p.name.as_str()) {
            continue;
        }
        let name = renamed
            .iter()
            .find(|(from, _)| *from == p.name)
            .map_or(p.name.as_str(), |(_, to)| to);
        out.insert(name.to_string(), Value::String(p.value.clone()));
    }
    out
}

/// A CRM API name (`Lead`, `Leadgate_Id__c`, `new_leadgateid`): letters,
/// digits and underscores, starting with a letter.
pub fn is_api_name(s: &str) -> bool {
    s.as_bytes().first().is_some_and(u8::is_ascii_alphabetic)
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// An API version as the CRM's paths spell it: `62.0` → `v62.0`.
pub fn api_version(configured: Option<&str>, default: &str) -> String {
    let v = configured.unwrap_or(default);
    if v.starts_with('v') {
        v.to_string()
    } else {
        format!("v{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Property;

    fn d(id: &str, key: &str) -> Delivery {
        Delivery {
            id: id.into(),
            idempotency_key: key.into(),
            properties: vec![
                Property {
                    name: "City".into(),
                    value: "Oslo".into(),
                },
                Property {
                    name: "Company".into(),
                    value: "Acme".into(),
                },
                Property {
                    name: "Title".into(),
                    value: String::new(),
                },
            ],
        }
    }

    #[test]
    fn one_write_per_record_and_answers_in_order() {
        let batch = vec![d("1", "p/x/v1"), d("2", "p/x/v1/r2"), d("3", "q/x/v1")];
        let (send, held) = one_per_record(&batch, crate::record_key);
        assert_eq!(
            send.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(),
            ["1", "3"]
        );
        let mut outcomes = held;
        outcomes.insert("1".into(), Outcome::Created("a".into()));
        let out = in_order(&batch, outcomes, "Acme CRM");
        assert_eq!(out[0].outcome, Outcome::Created("a".into()));
        assert!(
            matches!(&out[1].outcome, Outcome::Retry(r) if r.kind == crate::types::RetryKind::HeldBack)
        );
        assert!(
            matches!(&out[2].outcome, Outcome::Retry(r) if r.reason == "Acme CRM's answer did not mention this record")
        );
    }

    #[test]
    fn fields_move_and_drop_and_skip_empty_values() {
        let f = fields(
            &d("1", "k"),
            "Leadgate_Id",
            &[("City", "MailingCity")],
            &["Company"],
        );
        assert_eq!(
            serde_json::Value::Object(f),
            serde_json::json!({"MailingCity": "Oslo"})
        );
        assert!(is_api_name("Leadgate_Id__c") && !is_api_name("_x") && !is_api_name("a-b"));
        assert_eq!(api_version(Some("62.0"), "v1"), "v62.0");
        assert_eq!(api_version(None, "v9.2"), "v9.2");
    }
}
