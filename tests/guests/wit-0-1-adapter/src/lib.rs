//! A CRM adapter written against `leadgate:plugin@0.1.0` with nothing but
//! `wit-bindgen` (no leadgate SDK), the way a third party built one before
//! 0.2.0: it upserts HubSpot contacts by email and speaks 0.1.0's
//! conventions, which the host's conversion boundary types:
//!
//! - a second record of one email in a batch is held back with
//!   `retry { after-ms: some(0) }`;
//! - a write HubSpot reported done that a read-back does not find is a
//!   retry whose reason starts with `readback:`;
//! - a rate-limit window named `search` (HubSpot's search API, which this
//!   adapter never calls);
//! - requests say no kind.

#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use std::collections::HashMap;

use serde_json::{Value, json};

wit_bindgen::generate!({
    world: "crm-adapter",
    path: "../../../wit/v0.1.0",
    generate_all,
});

use exports::leadgate::plugin::adapter::{
    AdapterInfo, CrmEvent, Delivery, DeliveryOutcome, Guest, Outcome, PushContext, RateLimit,
    Rejection, RetryInfo, WebhookError, WebhookRequest,
};
use leadgate::plugin::http;
use leadgate::plugin::types::{Header, HttpRequest};

struct LegacyHubSpot;

fn retry(after_ms: Option<u64>, reason: &str) -> Outcome {
    Outcome::Retry(RetryInfo {
        after_ms,
        reason: reason.to_string(),
    })
}

fn email_of(d: &Delivery) -> Option<String> {
    d.properties
        .iter()
        .find(|p| p.name == "email" && !p.value.is_empty())
        .map(|p| p.value.to_lowercase())
}

fn call(url: String, body: &Value) -> Result<(u16, Value), Outcome> {
    let request = HttpRequest {
        method: "POST".into(),
        url,
        headers: vec![
            Header {
                name: "authorization".into(),
                value: "Bearer {{secret:access-token}}".into(),
            },
            Header {
                name: "content-type".into(),
                value: "application/json".into(),
            },
        ],
        body: body.to_string().into_bytes(),
        timeout_ms: Some(30_000),
    };
    match http::send(&request) {
        Ok(r) => Ok((
            r.status,
            serde_json::from_slice(&r.body).unwrap_or(Value::Null),
        )),
        Err(e) => Err(retry(None, &format!("transport: {e:?}"))),
    }
}

/// Contact ids by lowercased email from a batch answer.
fn ids_by_email(answer: &Value) -> HashMap<String, (String, bool)> {
    answer["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let email = r["properties"]["email"].as_str()?.to_lowercase();
            let id = r["id"].as_str()?.to_string();
            Some((email, (id, r["new"].as_bool().unwrap_or(false))))
        })
        .collect()
}

impl Guest for LegacyHubSpot {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            name: "hubspot-legacy".into(),
            version: "0.1.0".into(),
            description: "HubSpot contacts by email, built for WIT 0.1.0".into(),
            max_batch_size: 10,
            upsert_key: "email".into(),
            required_properties: vec!["email".into()],
            supports_webhooks: false,
            config_keys: vec!["base-url".into()],
            secrets: vec!["access-token".into()],
            default_hosts: vec!["api.hubapi.com".into()],
            rate_limits: vec![
                RateLimit {
                    name: "burst".into(),
                    max_requests: 190,
                    window_ms: 10_000,
                },
                RateLimit {
                    name: "search".into(),
                    max_requests: 5,
                    window_ms: 1_000,
                },
            ],
        }
    }

    fn push(batch: Vec<Delivery>, ctx: PushContext) -> Vec<DeliveryOutcome> {
        let base = ctx
            .config
            .iter()
            .find(|(k, _)| k == "base-url")
            .map(|(_, v)| v.trim_end_matches('/').to_string())
            .unwrap_or_else(|| "https://api.hubapi.com".into());
        let mut outcomes: HashMap<String, Outcome> = HashMap::new();
        let mut seen = HashMap::new();
        let mut send = Vec::new();
        for d in &batch {
            match email_of(d) {
                None => {
                    outcomes.insert(
                        d.id.clone(),
                        Outcome::Rejected(Rejection {
                            field: Some("email".into()),
                            rule: "required".into(),
                            message: "no email".into(),
                        }),
                    );
                }
                Some(email) if seen.insert(email.clone(), ()).is_some() => {
                    outcomes.insert(
                        d.id.clone(),
                        retry(Some(0), "another update of this contact is in the batch"),
                    );
                }
                Some(email) => send.push((d, email)),
            }
        }
        if !send.is_empty() {
            let inputs: Vec<Value> = send
                .iter()
                .map(|(d, email)| {
                    let properties: serde_json::Map<String, Value> = d
                        .properties
                        .iter()
                        .map(|p| (p.name.clone(), Value::String(p.value.clone())))
                        .collect();
                    json!({"idProperty": "email", "id": email, "properties": properties})
                })
                .collect();
            let written = match call(
                format!("{base}/crm/v3/objects/contacts/batch/upsert"),
                &json!({ "inputs": inputs }),
            ) {
                Ok((200 | 201 | 207, answer)) => Ok(ids_by_email(&answer)),
                Ok((429, _)) => Err(Outcome::RateLimited(10_000)),
                Ok((s, _)) if s >= 500 => Err(retry(None, &format!("HubSpot answered {s}"))),
                Ok((s, answer)) => Err(Outcome::Rejected(Rejection {
                    field: None,
                    rule: format!("http_{s}"),
                    message: answer["message"].as_str().unwrap_or_default().to_string(),
                })),
                Err(o) => Err(o),
            };
            // Read the written contacts back: a "success" that stored
            // nothing is a retry, marked the 0.1.0 way.
            let stored = match &written {
                Ok(ids) if !ids.is_empty() => {
                    let inputs: Vec<Value> =
                        ids.values().map(|(id, _)| json!({ "id": id })).collect();
                    call(
                        format!("{base}/crm/v3/objects/contacts/batch/read"),
                        &json!({ "properties": ["email"], "inputs": inputs }),
                    )
                    .ok()
                    .filter(|(s, _)| matches!(s, 200 | 207))
                    .map(|(_, answer)| ids_by_email(&answer))
                }
                _ => None,
            };
            for (d, email) in send {
                let outcome = match &written {
                    Err(o) => o.clone(),
                    Ok(ids) => match ids.get(&email) {
                        None => retry(None, "HubSpot's answer did not mention this contact"),
                        Some((id, _))
                            if stored.as_ref().is_some_and(|s| !s.contains_key(&email)) =>
                        {
                            retry(
                                None,
                                &format!(
                                    "readback: contact {id} was reported written but is not there"
                                ),
                            )
                        }
                        Some((id, true)) => Outcome::Created(id.clone()),
                        Some((id, false)) => Outcome::Updated(id.clone()),
                    },
                };
                outcomes.insert(d.id.clone(), outcome);
            }
        }
        batch
            .iter()
            .map(|d| DeliveryOutcome {
                delivery_id: d.id.clone(),
                outcome: outcomes.remove(&d.id).expect("one outcome per delivery"),
            })
            .collect()
    }

    fn verify_webhook(_request: WebhookRequest) -> Result<Vec<CrmEvent>, WebhookError> {
        Err(WebhookError::Unsupported)
    }
}

// Export symbols only in the component: a native build (`cargo check
// --workspace`) has no use for them and its linker rejects their names.
#[cfg(target_arch = "wasm32")]
export!(LegacyHubSpot);
