//! leadgate's HubSpot adapter: contacts upserted by email through
//! `POST /crm/v3/objects/contacts/batch/upsert`, with HubSpot's multi-status
//! partial failures, conflict, validation and rate-limit answers mapped to
//! leadgate outcomes, and v3 webhook signatures verified with a secret that
//! stays in the host.
//!
//! After a batch is written, the records are read back
//! (`POST /crm/v3/objects/contacts/batch/read`) and compared with what was
//! sent: a "success" that stored nothing, or not what was sent, becomes a
//! read-back-mismatch retry instead of a delivery.
//!
//! Destination configuration: `base-url` (default `https://api.hubapi.com`),
//! `readback-percent` (0–100, default 100: the share of written batches read
//! back, chosen by a stable hash of the first job's id; lower it under
//! heavy load).
//! Secrets: `access-token` (private-app or OAuth token), `client-secret`
//! (the app secret that signs webhooks).

use std::collections::HashMap;

use base64::Engine as _;
use leadgate_sdk::http::{Request, Response};
use leadgate_sdk::outcome::{
    CountsOnly, auth_expired, forbidden, from_http_error, held_back, invalid, limit, outcome,
    per_day, per_second, readback_mismatch, rejected, retry,
};
use leadgate_sdk::prelude::*;
use leadgate_sdk::readback;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

pub struct HubSpot;

const DEFAULT_BASE_URL: &str = "https://api.hubapi.com";
const UPSERT_PATH: &str = "/crm/v3/objects/contacts/batch/upsert";
const READ_PATH: &str = "/crm/v3/objects/contacts/batch/read";
const GDPR_DELETE_PATH: &str = "/crm/v3/objects/contacts/gdpr-delete";
/// When HubSpot throttles without saying for how long: its burst window.
const DEFAULT_THROTTLE_MS: u64 = 10_000;
/// Webhook signatures older than this are refused (HubSpot's own rule).
const WEBHOOK_MAX_AGE_MS: u64 = 5 * 60 * 1000;

impl Adapter for HubSpot {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            name: "hubspot".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "HubSpot CRM contacts, upserted by email".into(),
            max_batch_size: 100,
            upsert_key: "email".into(),
            required_properties: vec!["email".into()],
            supports_webhooks: true,
            config_keys: vec!["base-url".into(), "readback-percent".into()],
            secrets: vec!["access-token".into(), "client-secret".into()],
            default_hosts: vec!["api.hubapi.com".into()],
            rate_limits: vec![
                // Private app, Professional: 190 requests per rolling 10 s,
                // 650,000 a day; the search API has its own 5 per second.
                limit("burst", 190, 10_000),
                per_day("daily", 650_000),
                per_second("search", 5).only(&[RequestKind::Search]),
            ],
            max_concurrent: None,
            // A private app's token, or an OAuth app's access token (which
            // the host obtains when the destination has an `[oauth]`
            // section): either way the secret `access-token`.
            auth: AuthScheme::ApiKey("access-token".into()),
        }
    }

    fn push(batch: Vec<Delivery>, ctx: PushContext) -> Vec<DeliveryOutcome> {
        let base_url = config(&ctx, "base-url")
            .unwrap_or(DEFAULT_BASE_URL)
            .trim_end_matches('/');
        let url = format!("{base_url}{UPSERT_PATH}");
        let readback_percent = readback::percent(&ctx);

        // Sort the batch into records we can send now and the rest.
        let mut outcomes: HashMap<String, Outcome> = HashMap::new();
        let mut seen_emails: HashMap<String, ()> = HashMap::new();
        let mut sendable: Vec<&Delivery> = Vec::new();
        for d in &batch {
            match email_of(d) {
                None => {
                    outcomes.insert(
                        d.id.clone(),
                        invalid(
                            Some("email"),
                            "required",
                            "HubSpot upserts contacts by email; this record has none",
                        ),
                    );
                }
                Some(email) => {
                    if seen_emails.insert(email.to_lowercase(), ()).is_some() {
                        // HubSpot refuses a batch naming one id twice; the
                        // later update goes in the next call, in order.
                        outcomes.insert(
                            d.id.clone(),
                            held_back("another update of this contact is in the same batch"),
                        );
                    } else {
                        sendable.push(d);
                    }
                }
            }
        }

        if !sendable.is_empty() {
            for (id, o) in upsert(&url, &sendable) {
                outcomes.insert(id, o);
            }
            // Whole batches are sampled: one read call checks a batch, so
            // the share of calls saved is the share not read.
            if readback::sampled(&sendable[0].id, readback_percent) {
                read_back(&format!("{base_url}{READ_PATH}"), &sendable, &mut outcomes);
            }
        }

        batch
            .iter()
            .map(|d| {
                let o = outcomes
                    .remove(&d.id)
                    .unwrap_or_else(|| retry(None, "HubSpot's answer did not mention this record"));
                outcome(&d.id, o)
            })
            .collect()
    }

    /// HubSpot's GDPR delete, one contact per call (the API takes one):
    /// the contact and its associations are deleted for good, not moved
    /// to the recycling bin. 204 deleted, 404 not found.
    fn erase(batch: Vec<ErasureRequest>, ctx: PushContext) -> Vec<ErasureOutcome> {
        let base_url = config(&ctx, "base-url")
            .unwrap_or(DEFAULT_BASE_URL)
            .trim_end_matches('/');
        let url = format!("{base_url}{GDPR_DELETE_PATH}");
        erasure::plain_ids_only(&batch, |plain| {
            plain
                .iter()
                .map(|r| {
                    let answer = Request::post(&url)
                        .bearer_secret("access-token")
                        .json(&json!({ "objectId": r.record_id }))
                        .send();
                    // Not the upsert's reading: a CONFLICT here is no
                    // duplicate, and a gateway's HTML 5xx is transient.
                    erasure::of_response(answer, erasure::status_failure(DEFAULT_THROTTLE_MS))
                })
                .collect()
        })
    }

    fn verify_webhook(request: WebhookRequest) -> Result<WebhookReceipt, WebhookError> {
        verify_v3(&request)?;
        parse_events(&request.body).map(WebhookReceipt::events)
    }
}

leadgate_sdk::export_adapter!(HubSpot);

fn email_of(d: &Delivery) -> Option<&str> {
    d.properties
        .iter()
        .find(|p| p.name == "email")
        .map(|p| p.value.trim())
        .filter(|v| !v.is_empty())
}

/// One record of a batch upsert, serialized straight from the delivery
/// (no intermediate JSON tree: this runs for every record sent).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UpsertInput<'a> {
    id_property: &'static str,
    id: &'a str,
    properties: Properties<'a>,
    object_write_trace_id: &'a str,
}

/// A delivery's properties as a JSON object.
struct Properties<'a>(&'a [Property]);

impl Serialize for Properties<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|p| (&p.name, &p.value)))
    }
}

#[derive(Serialize)]
struct Inputs<T> {
    inputs: T,
}

/// One batch upsert; splits the batch when HubSpot refuses it whole.
fn upsert(url: &str, records: &[&Delivery]) -> Vec<(String, Outcome)> {
    let inputs: Vec<UpsertInput> = records
        .iter()
        .map(|d| UpsertInput {
            id_property: "email",
            id: email_of(d).unwrap_or_default(),
            properties: Properties(&d.properties),
            object_write_trace_id: &d.id,
        })
        .collect();
    let request = Request::post(url)
        .bearer_secret("access-token")
        .json(&Inputs { inputs })
        .timeout_ms(30_000);

    let response = match request.send() {
        Ok(r) => r,
        Err(e) => return all(records, from_http_error(&e)),
    };

    match response.status() {
        200 | 201 | 207 => {
            let read_url = format!("{}{READ_PATH}", url.trim_end_matches(UPSERT_PATH));
            read_batch_response(&response, records, &read_url)
        }
        429 => {
            let after = response
                .retry_after_ms()
                .or_else(|| {
                    response
                        .header("x-hubspot-ratelimit-interval-milliseconds")
                        .and_then(|v| v.trim().parse().ok())
                })
                .unwrap_or(DEFAULT_THROTTLE_MS);
            all(records, Outcome::RateLimited(after))
        }
        400 | 409 if records.len() > 1 => {
            // One bad record fails the whole call when HubSpot cannot key
            // errors back: send each record alone so the good ones land.
            records
                .iter()
                .flat_map(|d| upsert(url, std::slice::from_ref(d)))
                .collect()
        }
        400 | 409 | 422 => {
            let err = HubSpotError::parse(&response);
            all(records, err.into_outcome())
        }
        401 => {
            let err = HubSpotError::parse(&response);
            all(
                records,
                auth_expired(format!("HubSpot authentication failed: {}", err.message)),
            )
        }
        403 => {
            let err = HubSpotError::parse(&response);
            all(
                records,
                forbidden(
                    "forbidden",
                    format!("HubSpot refused access: {}", err.message),
                ),
            )
        }
        s if s >= 500 => all(
            records,
            retry(response.retry_after_ms(), format!("HubSpot answered {s}")),
        ),
        s => {
            let err = HubSpotError::parse(&response);
            all(
                records,
                rejected(
                    RejectionKind::Other,
                    None,
                    "unexpected_status",
                    format!("HubSpot answered {s}: {}", err.message),
                ),
            )
        }
    }
}

/// Reads back the records `outcomes` says were written and turns each one
/// that is missing, or does not hold what was sent, into a retry. A failed
/// read leaves the outcomes alone: the write's own answer stands.
fn read_back(url: &str, records: &[&Delivery], outcomes: &mut HashMap<String, Outcome>) {
    let written: Vec<(&Delivery, String)> = records
        .iter()
        .filter_map(|d| match outcomes.get(&d.id) {
            Some(Outcome::Created(id) | Outcome::Updated(id)) => Some((*d, id.clone())),
            _ => None,
        })
        .collect();
    if written.is_empty() {
        return;
    }
    let mut names: Vec<&str> = written
        .iter()
        .flat_map(|(d, _)| d.properties.iter().map(|p| p.name.as_str()))
        .collect();
    // A contact matched on a secondary email keeps its primary one.
    if names.contains(&"email") {
        names.push("hs_additional_emails");
    }
    names.sort_unstable();
    names.dedup();
    let inputs: Vec<Value> = written.iter().map(|(_, id)| json!({ "id": id })).collect();
    let response = match Request::post(url)
        .kind(RequestKind::Read)
        .bearer_secret("access-token")
        .json(&json!({ "properties": names, "inputs": inputs }))
        .timeout_ms(30_000)
        .send()
    {
        Ok(r) if matches!(r.status(), 200 | 207) => r,
        Ok(r) => {
            log::warn(&format!(
                "read-back skipped: HubSpot answered {}",
                r.status()
            ));
            return;
        }
        Err(e) => {
            log::warn(&format!("read-back skipped: {e}"));
            return;
        }
    };
    let Ok(body) = response.json::<BatchResponse<AllProperties>>() else {
        log::warn("read-back skipped: unreadable answer");
        return;
    };
    let stored: HashMap<&str, &HashMap<String, Option<String>>> = body
        .results
        .iter()
        .map(|r| (r.id.as_str(), &r.properties))
        .collect();
    for (d, id) in written {
        let verdict = match stored.get(id.as_str()) {
            None => Some(format!(
                "HubSpot reported contact {id} written, but it does not exist (a silent no-op)"
            )),
            Some(props) => {
                let differ: Vec<&str> = d
                    .properties
                    .iter()
                    .filter(|p| {
                        let held = props.get(&p.name).and_then(|v| v.as_deref());
                        if p.name == "email" {
                            let secondary =
                                props.get("hs_additional_emails").and_then(|v| v.as_deref());
                            return !held
                                .into_iter()
                                .chain(additional_emails(secondary))
                                .any(|e| e.eq_ignore_ascii_case(&p.value));
                        }
                        held != Some(p.value.as_str())
                    })
                    .map(|p| p.name.as_str())
                    .collect();
                (!differ.is_empty()).then(|| {
                    format!(
                        "contact {id} does not hold what was sent ({}); HubSpot reported success",
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

fn all(records: &[&Delivery], o: Outcome) -> Vec<(String, Outcome)> {
    records.iter().map(|d| (d.id.clone(), o.clone())).collect()
}

/// A batch answer; `P` is what is kept of each object's properties.
#[derive(Deserialize)]
#[serde(bound = "P: Deserialize<'de> + Default")]
struct BatchResponse<P> {
    #[serde(default)]
    results: Vec<SimpleObject<P>>,
    #[serde(default)]
    errors: Vec<BatchError>,
}

#[derive(Deserialize)]
#[serde(bound = "P: Deserialize<'de> + Default")]
struct SimpleObject<P> {
    id: String,
    #[serde(default)]
    new: Option<bool>,
    #[serde(default)]
    properties: P,
}

/// An upsert's answer echoes every property; matching it to the batch
/// needs only the emails (the rest is skipped, not stored).
#[derive(Default, Deserialize)]
struct EmailOnly {
    #[serde(default)]
    email: Option<String>,
    /// A contact's secondary emails, `;`-separated (what a merge leaves of
    /// the merged contact's address): HubSpot's upsert by email matches
    /// them too, and then answers with the contact's primary email.
    #[serde(default)]
    hs_additional_emails: Option<String>,
}

impl EmailOnly {
    /// The primary email and the secondary ones, lowercased.
    fn all(&self) -> impl Iterator<Item = String> + '_ {
        self.email
            .iter()
            .map(String::as_str)
            .chain(additional_emails(self.hs_additional_emails.as_deref()))
            .map(str::to_lowercase)
    }
}

/// The addresses of `hs_additional_emails` (`a@x.com;b@y.com`).
fn additional_emails(value: Option<&str>) -> impl Iterator<Item = &str> {
    value
        .unwrap_or_default()
        .split(';')
        .map(str::trim)
        .filter(|e| !e.is_empty())
}

/// What a read-back compares: every property read.
type AllProperties = HashMap<String, Option<String>>;

#[derive(Deserialize)]
struct BatchError {
    #[serde(default)]
    category: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    context: HashMap<String, Vec<String>>,
}

fn read_batch_response(
    response: &Response,
    records: &[&Delivery],
    read_url: &str,
) -> Vec<(String, Outcome)> {
    let body: BatchResponse<EmailOnly> = match response.json() {
        Ok(b) => b,
        Err(e) => {
            return all(
                records,
                retry(
                    None,
                    format!("HubSpot sent an unreadable batch response: {e}"),
                ),
            );
        }
    };
    let by_email: HashMap<String, &str> = records
        .iter()
        .filter_map(|d| Some((email_of(d)?.to_lowercase(), d.id.as_str())))
        .collect();
    let mut out = Vec::with_capacity(records.len());
    let mut unmatched = Vec::new();
    for result in body.results {
        // By the primary email, or by a secondary one: a contact HubSpot
        // matched on `hs_additional_emails` is the same person, and its
        // answer names the primary email.
        let matched: Vec<&str> = result
            .properties
            .all()
            .filter_map(|e| by_email.get(&e).copied())
            .collect();
        if matched.is_empty() {
            unmatched.push(result.id);
            continue;
        }
        for delivery in matched {
            let o = if result.new.unwrap_or(false) {
                Outcome::Created(result.id.clone())
            } else {
                Outcome::Updated(result.id.clone())
            };
            out.push((delivery.to_string(), o));
        }
    }
    if !unmatched.is_empty() {
        out.extend(match_by_reading(read_url, &unmatched, &by_email));
    }
    for error in body.errors {
        let err = HubSpotError {
            category: error.category,
            message: error.message,
        };
        for trace in error
            .context
            .get("objectWriteTraceId")
            .into_iter()
            .flatten()
        {
            out.push((trace.clone(), err.clone().into_outcome()));
        }
    }
    out
}

/// Contacts an upsert answered for that matched no email of the batch
/// (an answer that leaves out `hs_additional_emails`): read back with
/// their secondary emails and matched by those. A record still unmatched
/// is left out, and so retried.
fn match_by_reading(
    read_url: &str,
    contacts: &[String],
    by_email: &HashMap<String, &str>,
) -> Vec<(String, Outcome)> {
    let inputs: Vec<Value> = contacts.iter().map(|id| json!({ "id": id })).collect();
    let body = Request::post(read_url)
        .kind(RequestKind::Read)
        .bearer_secret("access-token")
        .json(&json!({ "properties": ["email", "hs_additional_emails"], "inputs": inputs }))
        .timeout_ms(30_000)
        .send()
        .ok()
        .filter(|r| matches!(r.status(), 200 | 207))
        .and_then(|r| r.json::<BatchResponse<EmailOnly>>().ok());
    let Some(body) = body else {
        log::warn("reading unmatched contacts failed; their records are retried");
        return Vec::new();
    };
    body.results
        .iter()
        .filter(|c| contacts.contains(&c.id))
        .flat_map(|c| {
            c.properties
                .all()
                .filter_map(|e| by_email.get(&e).copied())
                .map(|delivery| (delivery.to_string(), Outcome::Updated(c.id.clone())))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// HubSpot's error envelope.
#[derive(Clone, Debug, Deserialize)]
struct HubSpotError {
    #[serde(default)]
    category: String,
    #[serde(default)]
    message: String,
}

impl HubSpotError {
    fn parse(response: &Response) -> HubSpotError {
        response.json().unwrap_or_else(|_| HubSpotError {
            category: String::new(),
            message: response.text().chars().take(500).collect(),
        })
    }

    fn into_outcome(self) -> Outcome {
        if self.category == "CONFLICT"
            && let Some(id) = existing_id(&self.message)
        {
            return Outcome::DuplicateOf(id);
        }
        if self.category == "VALIDATION_ERROR"
            && let Some((field, rule, message)) = property_error(&self.message)
        {
            return invalid(Some(&field), &rule, message);
        }
        let rule = if self.category.is_empty() {
            "rejected".to_string()
        } else {
            self.category.to_ascii_lowercase()
        };
        let kind = match self.category.as_str() {
            "VALIDATION_ERROR" | "INVALID_EMAIL" | "PROPERTY_DOESNT_EXIST" => {
                RejectionKind::Validation
            }
            "CONFLICT" | "OBJECT_ALREADY_EXISTS" => RejectionKind::Conflict,
            "MISSING_SCOPES" | "FORBIDDEN" => RejectionKind::Forbidden,
            _ => RejectionKind::Other,
        };
        rejected(kind, None, &rule, self.message)
    }
}

/// "Contact already exists. Existing ID: 37765128953" → "37765128953".
fn existing_id(message: &str) -> Option<String> {
    let rest = message.split("Existing ID:").nth(1)?.trim();
    let id: String = rest.chars().take_while(char::is_ascii_digit).collect();
    (!id.is_empty()).then_some(id)
}

/// HubSpot puts property errors as a JSON array inside the message string:
/// `Property values were not valid: [{"name":"email","error":"INVALID_EMAIL",…}]`.
fn property_error(message: &str) -> Option<(String, String, String)> {
    let start = message.find('[')?;
    let items: Vec<Value> = serde_json::from_str(&message[start..]).ok()?;
    let first = items.first()?;
    let field = first.get("name")?.as_str()?.to_string();
    let rule = first
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("INVALID")
        .to_ascii_lowercase();
    let text = first
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or(message)
        .to_string();
    Some((field, rule, text))
}

/// HubSpot's v3 signature: base64(HMAC-SHA256(client secret, method + URI +
/// body + timestamp)), timestamp in ms and at most five minutes old.
fn verify_v3(request: &WebhookRequest) -> Result<(), WebhookError> {
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.trim())
    };
    let signature = header("x-hubspot-signature-v3").ok_or(WebhookError::BadSignature)?;
    let timestamp = header("x-hubspot-request-timestamp")
        .ok_or_else(|| WebhookError::Malformed("missing X-HubSpot-Request-Timestamp".into()))?;
    let ts: u64 = timestamp.parse().map_err(|_| {
        WebhookError::Malformed("X-HubSpot-Request-Timestamp is not a number".into())
    })?;
    if clock::now_ms().abs_diff(ts) > WEBHOOK_MAX_AGE_MS {
        return Err(WebhookError::StaleTimestamp);
    }
    let mut source = Vec::with_capacity(request.body.len() + request.url.len() + 32);
    source.extend_from_slice(request.method.as_bytes());
    source.extend_from_slice(request.url.as_bytes());
    source.extend_from_slice(&request.body);
    source.extend_from_slice(timestamp.as_bytes());
    let mac = crypto::hmac_sha256("client-secret", &source)
        .map_err(|_| WebhookError::Malformed("client-secret is not granted".into()))?;
    let expected = base64::engine::general_purpose::STANDARD.encode(mac);
    if crypto::constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
        Ok(())
    } else {
        Err(WebhookError::BadSignature)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct HubSpotEvent {
    subscription_type: String,
    object_id: Value,
    #[serde(default)]
    occurred_at: u64,
    #[serde(default)]
    property_name: Option<String>,
    #[serde(default)]
    property_value: Option<String>,
}

fn parse_events(body: &[u8]) -> Result<Vec<CrmEvent>, WebhookError> {
    let events: Vec<HubSpotEvent> =
        serde_json::from_slice(body).map_err(|e| WebhookError::Malformed(e.to_string()))?;
    Ok(events
        .into_iter()
        .map(|e| CrmEvent {
            kind: e.subscription_type,
            object_id: match e.object_id {
                Value::String(s) => s,
                other => other.to_string(),
            },
            occurred_at_ms: e.occurred_at,
            property_name: e.property_name,
            property_value: e.property_value,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadgate_sdk::testing::{self, TestHost, json_response};

    fn delivery(id: &str, email: &str) -> Delivery {
        Delivery {
            id: id.into(),
            idempotency_key: format!("key-{id}"),
            properties: vec![
                Property {
                    name: "email".into(),
                    value: email.into(),
                },
                Property {
                    name: "firstname".into(),
                    value: "Jane".into(),
                },
            ],
        }
    }

    fn ctx() -> PushContext {
        PushContext {
            destination: "hubspot".into(),
            config: vec![
                ("base-url".into(), "http://127.0.0.1:9".into()),
                ("readback-percent".into(), "0".into()),
            ],
            attempt: 1,
        }
    }

    #[test]
    fn a_contact_matched_on_a_secondary_email_is_the_same_person() {
        testing::install(TestHost::new(|req| {
            if req.url.ends_with("/batch/upsert") {
                // HubSpot matched b@x.com on contact 12's hs_additional_emails
                // and answers with its primary email, leaving the secondary
                // ones out.
                return Ok(json_response(
                    200,
                    &json!({"status":"COMPLETE","results":[
                        {"id":"11","new":true,"properties":{"email":"a@x.com"}},
                        {"id":"12","new":false,"properties":{"email":"bea@old.example"}}]}),
                ));
            }
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            let ids: Vec<&str> = body["inputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap())
                .collect();
            if body["properties"] == json!(["email", "hs_additional_emails"]) {
                assert_eq!(ids, ["12"], "only the unmatched contact is read");
            }
            Ok(json_response(
                200,
                &json!({"status":"COMPLETE","results":[
                    {"id":"11","properties":{"email":"a@x.com","firstname":"A"}},
                    {"id":"12","properties":{"email":"bea@old.example",
                        "hs_additional_emails":"x@y.example;B@x.com","firstname":"B"}}]}),
            ))
        }));
        let mut ctx = ctx();
        ctx.config.push(("readback-percent".into(), "100".into()));
        let with_name = |id: &str, email: &str, name: &str| {
            let mut d = delivery(id, email);
            d.properties[1].value = name.into();
            d
        };
        let out = HubSpot::push(
            vec![
                with_name("1", "a@x.com", "A"),
                with_name("2", "b@x.com", "B"),
            ],
            ctx,
        );
        assert_eq!(out[0].outcome, Outcome::Created("11".into()));
        assert_eq!(
            out[1].outcome,
            Outcome::Updated("12".into()),
            "and its read-back holds the email as a secondary one"
        );
    }

    #[test]
    fn a_write_that_did_not_stick_is_retried_after_the_read_back() {
        testing::install(TestHost::new(|req| {
            if req.url.ends_with("/batch/upsert") {
                return Ok(json_response(
                    200,
                    &json!({"status":"COMPLETE","results":[
                        {"id":"11","new":true,"properties":{"email":"a@x.com"}},
                        {"id":"12","new":false,"properties":{"email":"b@x.com"}},
                        {"id":"13","new":false,"properties":{"email":"c@x.com"}}]}),
                ));
            }
            assert!(req.url.ends_with("/crm/v3/objects/contacts/batch/read"));
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            assert_eq!(
                body["properties"],
                json!(["email", "firstname", "hs_additional_emails"])
            );
            assert_eq!(body["inputs"].as_array().unwrap().len(), 3);
            // 11 was never stored; 12 holds another email; 13 is right.
            Ok(json_response(
                207,
                &json!({"status":"COMPLETE","results":[
                    {"id":"12","properties":{"email":"old@x.com","firstname":"Jane"}},
                    {"id":"13","properties":{"email":"C@x.com","firstname":"Jane"}}],
                    "errors":[{"status":"error","category":"OBJECT_NOT_FOUND","message":"not found",
                               "context":{"ids":["11"]}}]}),
            ))
        }));
        let mut ctx = ctx();
        ctx.config[1].1 = "100".into();
        let out = HubSpot::push(
            vec![
                delivery("1", "a@x.com"),
                delivery("2", "b@x.com"),
                delivery("3", "c@x.com"),
            ],
            ctx,
        );
        for (o, needle) in [
            (&out[0].outcome, "does not exist"),
            (&out[1].outcome, "(email)"),
        ] {
            match o {
                Outcome::Retry(r) => assert!(
                    r.kind == RetryKind::ReadbackMismatch && r.reason.contains(needle),
                    "{}",
                    r.reason
                ),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(out[2].outcome, Outcome::Updated("13".into()));
    }

    /// HubSpot has answered COMPLETE with fewer results than inputs: a
    /// record it does not mention is not taken as delivered.
    #[test]
    fn a_record_a_complete_answer_leaves_out_is_retried() {
        testing::install(TestHost::new(|req| {
            assert!(req.url.ends_with("/batch/upsert"));
            Ok(json_response(
                200,
                &json!({"status":"COMPLETE","results":[
                    {"id":"21","new":true,"properties":{"email":"a@x.com"}}]}),
            ))
        }));
        let out = HubSpot::push(
            vec![delivery("1", "a@x.com"), delivery("2", "b@x.com")],
            ctx(),
        );
        assert_eq!(out[0].outcome, Outcome::Created("21".into()));
        match &out[1].outcome {
            Outcome::Retry(r) => assert!(r.reason.contains("did not mention"), "{}", r.reason),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn read_back_samples_batches_by_job_id() {
        let ids: Vec<u64> = (0..1000)
            .map(|n| readback::stable_percent(&format!("job-{n}")))
            .collect();
        let under_10 = ids.iter().filter(|p| **p < 10).count();
        assert!((50..150).contains(&under_10), "{under_10}");
        assert_eq!(
            readback::stable_percent("job-1"),
            readback::stable_percent("job-1")
        );
    }

    #[test]
    fn upsert_maps_new_and_existing_records() {
        testing::install(TestHost::new(|req| {
            assert_eq!(
                req.url,
                "http://127.0.0.1:9/crm/v3/objects/contacts/batch/upsert"
            );
            let auth = req
                .headers
                .iter()
                .find(|h| h.name == "authorization")
                .unwrap();
            assert_eq!(
                auth.value, "Bearer {{secret:access-token}}",
                "the guest never holds the token"
            );
            Ok(json_response(
                200,
                &json!({"status":"COMPLETE","results":[
                    {"id":"11","new":true,"properties":{"email":"a@x.com"}},
                    {"id":"12","new":false,"properties":{"email":"b@x.com"}}]}),
            ))
        }));
        let out = HubSpot::push(
            vec![delivery("1", "a@x.com"), delivery("2", "B@x.com")],
            ctx(),
        );
        assert_eq!(out[0].outcome, Outcome::Created("11".into()));
        assert_eq!(out[1].outcome, Outcome::Updated("12".into()));
    }

    #[test]
    fn multi_status_errors_are_keyed_by_trace_id() {
        testing::install(TestHost::new(|_| {
            Ok(json_response(
                207,
                &json!({"status":"COMPLETE","results":[{"id":"11","new":true,"properties":{"email":"a@x.com"}}],
                "numErrors":1,"errors":[{"status":"error","category":"VALIDATION_ERROR",
                "message":"Property values were not valid: [{\"isValid\":false,\"message\":\"Email address bad@ is invalid\",\"error\":\"INVALID_EMAIL\",\"name\":\"email\"}]",
                "context":{"objectWriteTraceId":["2"]}}]}),
            ))
        }));
        let out = HubSpot::push(vec![delivery("1", "a@x.com"), delivery("2", "bad@")], ctx());
        assert_eq!(out[0].outcome, Outcome::Created("11".into()));
        assert_eq!(
            out[1].outcome,
            invalid(
                Some("email"),
                "invalid_email",
                "Email address bad@ is invalid"
            )
        );
    }

    #[test]
    fn rate_limit_uses_retry_after() {
        testing::install(TestHost::new(|_| {
            let mut r = json_response(429, &json!({"status":"error","errorType":"RATE_LIMIT"}));
            r.headers.push(Header {
                name: "Retry-After".into(),
                value: "3".into(),
            });
            Ok(r)
        }));
        let out = HubSpot::push(vec![delivery("1", "a@x.com")], ctx());
        assert_eq!(out[0].outcome, Outcome::RateLimited(3000));
    }

    #[test]
    fn whole_call_failure_is_split_per_record() {
        testing::install(TestHost::new(|req| {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            let inputs = body["inputs"].as_array().unwrap();
            if inputs.len() > 1 {
                return Ok(json_response(
                    400,
                    &json!({"status":"error","category":"VALIDATION_ERROR","message":"bad batch"}),
                ));
            }
            let email = inputs[0]["id"].as_str().unwrap();
            if email == "bad@" {
                Ok(json_response(
                    400,
                    &json!({"status":"error","category":"VALIDATION_ERROR",
                    "message":"Property values were not valid: [{\"isValid\":false,\"message\":\"Email address bad@ is invalid\",\"error\":\"INVALID_EMAIL\",\"name\":\"email\"}]"}),
                ))
            } else {
                Ok(json_response(
                    200,
                    &json!({"status":"COMPLETE","results":[{"id":"7","new":true,"properties":{"email":email}}]}),
                ))
            }
        }));
        let out = HubSpot::push(vec![delivery("1", "a@x.com"), delivery("2", "bad@")], ctx());
        assert_eq!(out[0].outcome, Outcome::Created("7".into()));
        assert!(
            matches!(&out[1].outcome, Outcome::Rejected(r) if r.field.as_deref() == Some("email"))
        );
        assert_eq!(testing::take().unwrap().requests.len(), 3);
    }

    #[test]
    fn conflict_yields_existing_id() {
        let err = HubSpotError {
            category: "CONFLICT".into(),
            message: "Contact already exists. Existing ID: 37765128953".into(),
        };
        assert_eq!(
            err.into_outcome(),
            Outcome::DuplicateOf("37765128953".into())
        );
    }

    #[test]
    fn same_email_twice_in_a_batch_defers_the_second() {
        testing::install(TestHost::new(|_| {
            Ok(json_response(
                200,
                &json!({"status":"COMPLETE","results":[{"id":"1","new":true,"properties":{"email":"a@x.com"}}]}),
            ))
        }));
        let out = HubSpot::push(
            vec![delivery("1", "a@x.com"), delivery("2", "A@x.com")],
            ctx(),
        );
        assert_eq!(out[0].outcome, Outcome::Created("1".into()));
        assert!(matches!(out[1].outcome, Outcome::Retry(_)));
    }

    #[test]
    fn missing_email_is_rejected_without_a_call() {
        testing::install(TestHost::new(|_| panic!("no call expected")));
        let mut d = delivery("1", "");
        d.properties.retain(|p| p.name != "email");
        let out = HubSpot::push(vec![d], ctx());
        assert!(matches!(&out[0].outcome, Outcome::Rejected(r) if r.rule == "required"));
    }

    #[test]
    fn webhook_v3_signature() {
        let body = br#"[{"eventId":1,"subscriptionType":"contact.creation","objectId":512,"occurredAt":1700000000000}]"#;
        let ts = "1700000000000";
        let url = "https://leadgate.example/v1/webhooks/hubspot";
        let mut source = b"POST".to_vec();
        source.extend_from_slice(url.as_bytes());
        source.extend_from_slice(body);
        source.extend_from_slice(ts.as_bytes());
        testing::install(TestHost::new(|_| unreachable!()).with_secret("client-secret", "shh"));
        let sig = base64::engine::general_purpose::STANDARD
            .encode(crypto::hmac_sha256("client-secret", &source).unwrap());
        let request = |sig: &str, ts: &str| WebhookRequest {
            method: "POST".into(),
            url: url.into(),
            headers: vec![
                Header {
                    name: "X-HubSpot-Signature-v3".into(),
                    value: sig.into(),
                },
                Header {
                    name: "X-HubSpot-Request-Timestamp".into(),
                    value: ts.into(),
                },
            ],
            body: body.to_vec(),
        };
        let events = HubSpot::verify_webhook(request(&sig, ts)).unwrap().events;
        assert_eq!(events[0].kind, "contact.creation");
        assert_eq!(events[0].object_id, "512");
        assert_eq!(
            HubSpot::verify_webhook(request("AAAA", ts)),
            Err(WebhookError::BadSignature)
        );
        assert_eq!(
            HubSpot::verify_webhook(request(&sig, "1690000000000")),
            Err(WebhookError::StaleTimestamp)
        );
    }
}
