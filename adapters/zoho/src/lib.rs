//! leadgate's Zoho CRM adapter: Leads (or Contacts) upserted through the
//! v8 Records API, `POST {api-domain}/crm/v8/{Module}/upsert` with
//! `duplicate_check_fields: [Leadgate_Id]`, up to 100 records a call, each
//! with its own result.
//!
//! `Leadgate_Id` (a custom single-line field marked "Do not allow duplicate
//! values") holds leadgate's record key of the person ([`record_key`]), so
//! a person is one Zoho record however often it is updated. Each record's
//! result maps to an outcome:
//! - `SUCCESS`: created (`action: insert`) or updated (`action: update`);
//! - `DUPLICATE_DATA` (another unique field, Email where the layout makes
//!   it unique, holds the value): duplicate of the record Zoho names;
//! - `MANDATORY_NOT_FOUND`, `INVALID_DATA` and the other validation codes:
//!   rejected, naming Zoho's field (`details.api_name`);
//! - anything transient: retried.
//!
//! Zoho authenticates with `Authorization: Zoho-oauthtoken <token>`; the
//! host owns the OAuth token (refresh-token grant at the data centre's
//! accounts host) and hands the adapter the `api_domain` its answer names.
//! A 401 `INVALID_TOKEN` is a retry: the host renews the token and sends
//! the records again. A 429 (`TOO_MANY_REQUESTS`, the org's concurrency)
//! pauses the destination briefly; spent API credits pause it longer.
//!
//! After a batch is written the records are read back
//! (`GET …/{Module}?ids=…&fields=…`) and compared with what was sent.
//!
//! Destination configuration: `api-domain` (from the OAuth token answer;
//! set it only without OAuth), `api-version` (default `v8`), `module`
//! (`Leads` or `Contacts`, default `Leads`), `external-id-field` (default
//! `Leadgate_Id`), `readback-percent` (0–100, default 100).
//! Secrets: `access-token` (the host's OAuth token); for notifications,
//! `notification-token` (the watch channel's token; see `notification.rs`).

use std::collections::HashMap;

use leadgate_sdk::http::{Request, Response};
use leadgate_sdk::outcome::{
    CountsOnly, auth_expired, from_http_error, invalid, limit, misconfigured, rejected, retry,
};
use leadgate_sdk::prelude::*;
use leadgate_sdk::{batch, readback};
use serde::Deserialize;
use serde_json::{Map, Value, json};

mod notification;

pub struct Zoho;

const DEFAULT_API_VERSION: &str = "v8";
const DEFAULT_MODULE: &str = "Leads";
const DEFAULT_EXTERNAL_ID: &str = "Leadgate_Id";
/// Zoho's insert, update and upsert take at most 100 records a call.
const MAX_BATCH: u32 = 100;
/// The org's concurrency limit was hit: a short pause.
const CONCURRENCY_WAIT_MS: u64 = 2_000;
/// The org's daily API credits are spent (a rolling 24 hours): a long one.
const CREDITS_WAIT_MS: u64 = 15 * 60 * 1000;
const TIMEOUT_MS: u32 = 60_000;

impl Adapter for Zoho {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            name: "zoho".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Zoho CRM Leads or Contacts, upserted by a unique Leadgate_Id field"
                .into(),
            max_batch_size: MAX_BATCH,
            upsert_key: DEFAULT_EXTERNAL_ID.into(),
            required_properties: vec!["Last_Name".into()],
            // Notifications (`actions/watch`), verified by the channel token.
            supports_webhooks: true,
            config_keys: vec![
                "api-domain".into(),
                "api-version".into(),
                "module".into(),
                "external-id-field".into(),
                "readback-percent".into(),
            ],
            secrets: vec![
                "access-token".into(),
                notification::NOTIFICATION_TOKEN.into(),
            ],
            default_hosts: vec![
                "www.zohoapis.com".into(),
                "www.zohoapis.eu".into(),
                "www.zohoapis.in".into(),
                "www.zohoapis.com.au".into(),
                "www.zohoapis.jp".into(),
                "www.zohoapis.ca".into(),
                "www.zohoapis.com.cn".into(),
                "www.zohoapis.sa".into(),
            ],
            rate_limits: vec![
                // Standard edition's base: 50,000 credits a rolling day; an
                // upsert of up to 100 records costs 1 credit per 10, so a
                // full call costs 10 and the day holds 5,000 of them (raise
                // it for larger editions in the destination's rate_limits).
                limit("daily", 5_000, 86_400_000).only(&[RequestKind::Write]),
            ],
            // Zoho's concurrency limit: 10 calls at once in Standard (15
            // Professional, 20 Enterprise, 25 Ultimate).
            max_concurrent: Some(10),
            auth: AuthScheme::Oauth2(vec![OauthGrant::RefreshToken]),
        }
    }

    fn push(batch: Vec<Delivery>, ctx: PushContext) -> Vec<DeliveryOutcome> {
        let settings = match Settings::of(&ctx) {
            Ok(s) => s,
            Err(e) => return batch::misconfigured(&batch, &e),
        };
        let (sendable, mut outcomes) =
            batch::one_per_record(&batch, |d| batch::external_id(d, &settings.external_id));
        if !sendable.is_empty() {
            let results = upsert(&settings, &sendable);
            for (d, o) in sendable.iter().zip(results) {
                outcomes.insert(d.id.clone(), o);
            }
            if readback::sampled(&sendable[0].id, settings.readback_percent) {
                read_back(&settings, &sendable, &mut outcomes);
            }
        }
        batch::in_order(&batch, outcomes, "Zoho")
    }

    /// `DELETE /{Module}?ids=…` for up to 100 records at once (to the
    /// recycle bin): 200 with one result per id, `SUCCESS` deleted,
    /// `INVALID_DATA` naming the id not found (Zoho's answer for an id it
    /// does not hold).
    fn erase(batch: Vec<ErasureRequest>, ctx: PushContext) -> Vec<ErasureOutcome> {
        erasure::with_settings(&batch, Settings::of(&ctx), |settings, plain| {
            plain
                .chunks(MAX_BATCH as usize)
                .flat_map(|chunk| delete(settings, chunk))
                .collect()
        })
    }

    fn verify_webhook(request: WebhookRequest) -> Result<WebhookReceipt, WebhookError> {
        notification::verify(&request)
    }
}

leadgate_sdk::export_adapter!(Zoho);

struct Settings {
    /// `{api_domain}/crm/{version}`
    base: String,
    module: String,
    external_id: String,
    readback_percent: u64,
}

impl Settings {
    fn of(ctx: &PushContext) -> Result<Settings, String> {
        let get = |key: &str| config(ctx, key);
        let domain = get("api-domain").ok_or(
            "no api-domain: give the destination an oauth section (the token answer names it) or set config.api-domain",
        )?;
        let version = batch::api_version(get("api-version"), DEFAULT_API_VERSION);
        let module = get("module").unwrap_or(DEFAULT_MODULE);
        if !batch::is_api_name(module) {
            return Err(format!("module {module:?} is not a module API name"));
        }
        let external_id = get("external-id-field").unwrap_or(DEFAULT_EXTERNAL_ID);
        if !batch::is_api_name(external_id) {
            return Err(format!(
                "external-id-field {external_id:?} is not a field API name"
            ));
        }
        Ok(Settings {
            base: format!("{}/crm/{version}", domain.trim_end_matches('/')),
            module: module.to_string(),
            external_id: external_id.to_string(),
            readback_percent: readback::percent(ctx),
        })
    }

    fn request(&self, method: &str, path: &str) -> Request {
        Request::new(method, format!("{}{path}", self.base))
            .header("authorization", "Zoho-oauthtoken {{secret:access-token}}")
            .header("accept", "application/json")
            .timeout_ms(TIMEOUT_MS)
    }
}

/// Lead fields and their Contact names; Lead-only fields a Contact lacks.
const CONTACT_NAMES: [(&str, &str); 6] = [
    ("Designation", "Title"),
    ("Street", "Mailing_Street"),
    ("City", "Mailing_City"),
    ("State", "Mailing_State"),
    ("Zip_Code", "Mailing_Zip"),
    ("Country", "Mailing_Country"),
];
const LEAD_ONLY: [&str; 4] = ["Company", "Website", "Lead_Status", "Industry"];

/// The record's fields for `module` (Lead names moved for Contacts).
fn fields(d: &Delivery, module: &str, skip: &str) -> Map<String, Value> {
    if module.eq_ignore_ascii_case("Contacts") {
        batch::fields(d, skip, &CONTACT_NAMES, &LEAD_ONLY)
    } else {
        batch::fields(d, skip, &[], &[])
    }
}

/// One record's answer, or a top-level error (same keys).
#[derive(Clone, Debug, Default, Deserialize)]
struct ZohoResult {
    #[serde(default)]
    code: String,
    #[serde(default)]
    details: Value,
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    action: Option<String>,
}

#[derive(Deserialize)]
struct DataAnswer {
    #[serde(default)]
    data: Vec<ZohoResult>,
}

/// One upsert of `records` (at most 100); outcomes in order.
fn upsert(s: &Settings, records: &[&Delivery]) -> Vec<Outcome> {
    let data: Vec<Value> = records
        .iter()
        .map(|d| {
            let mut record = fields(d, &s.module, &s.external_id);
            record.insert(
                s.external_id.clone(),
                Value::String(batch::external_id(d, &s.external_id).to_string()),
            );
            Value::Object(record)
        })
        .collect();
    let body = json!({
        "data": data,
        "duplicate_check_fields": [s.external_id],
        // No workflow, approval or blueprint runs for a connector's writes.
        "trigger": [],
    });
    let all = |o: Outcome| records.iter().map(|_| o.clone()).collect();
    let response = match s
        .request("POST", &format!("/{}/upsert", s.module))
        .json(&body)
        .send()
    {
        Ok(r) => r,
        Err(e) => return all(from_http_error(&e)),
    };
    let status = response.status();
    // 200/201 all written, 207 mixed, 400 all refused: each record has its
    // own result in `data`, aligned with the input.
    let per_record = match status {
        200 | 201 | 202 | 207 | 400 => response.json::<DataAnswer>().ok().map(|a| a.data),
        _ => None,
    };
    match per_record {
        Some(results) if results.len() == records.len() => {
            results.iter().map(record_outcome).collect()
        }
        _ => all(call_failure(&response)),
    }
}

/// Deletes `records` in one call: one outcome each, in order.
fn delete(s: &Settings, records: &[&ErasureRequest]) -> Vec<EraseOutcome> {
    let ids: Vec<&str> = records.iter().map(|r| r.record_id.as_str()).collect();
    let all = |o: EraseOutcome| records.iter().map(|_| o.clone()).collect();
    let response = match s
        .request("DELETE", &format!("/{}?ids={}", s.module, ids.join(",")))
        .send()
    {
        Ok(r) => r,
        Err(e) => return all(erasure::refused(from_http_error(&e))),
    };
    let results = match response.status() {
        200 | 202 | 207 | 400 => response.json::<DataAnswer>().ok().map(|a| a.data),
        _ => None,
    };
    let Some(results) = results.filter(|r| r.len() == records.len()) else {
        return all(erasure::refused(call_failure(&response)));
    };
    results
        .iter()
        .map(|r| {
            if r.code == "SUCCESS" || r.status == "success" {
                erasure::deleted()
            } else if r.code == "INVALID_DATA" && r.details["id"].is_string() {
                erasure::not_found()
            } else {
                erasure::refused(refusal(r))
            }
        })
        .collect()
}

/// One record's result.
fn record_outcome(r: &ZohoResult) -> Outcome {
    let id = r.details["id"].as_str().map(str::to_string);
    if r.code == "SUCCESS" || r.status == "success" {
        return match (id, r.action.as_deref()) {
            (Some(id), Some("update")) => Outcome::Updated(id),
            (Some(id), _) => Outcome::Created(id),
            (None, _) => retry(None, "Zoho reported success without an id"),
        };
    }
    if r.code == "DUPLICATE_DATA"
        && let Some(existing) = r.details["duplicate_record"]["id"]
            .as_str()
            .or_else(|| r.details["id"].as_str())
    {
        return Outcome::DuplicateOf(existing.to_string());
    }
    refusal(r)
}

/// Errors that pass by themselves.
const TRANSIENT: [&str; 3] = ["INTERNAL_ERROR", "UNABLE_TO_PROCESS", "LOCKED"];

fn refusal(r: &ZohoResult) -> Outcome {
    let message = format!("{}: {}", r.code, r.message);
    match r.code.as_str() {
        "TOO_MANY_REQUESTS" => Outcome::RateLimited(CONCURRENCY_WAIT_MS),
        "LIMIT_REACHED" | "API_LIMIT_EXCEEDED" => Outcome::RateLimited(CREDITS_WAIT_MS),
        code if TRANSIENT.contains(&code) => retry(None, message),
        "" => retry(None, "Zoho refused the record without saying why"),
        code => rejected(
            rejection_kind(code),
            r.details["api_name"].as_str(),
            &code.to_ascii_lowercase(),
            message,
        ),
    }
}

/// Zoho's record error codes in leadgate's taxonomy.
fn rejection_kind(code: &str) -> RejectionKind {
    match code {
        "NO_PERMISSION" | "OAUTH_SCOPE_MISMATCH" | "FEATURE_NOT_SUPPORTED" => {
            RejectionKind::Forbidden
        }
        // A field or module the org does not have: the mapping's fault.
        "INVALID_MODULE" | "INVALID_URL_PATTERN" | "NOT_SUPPORTED" => RejectionKind::Config,
        "RECORD_LOCKED" | "CANNOT_PERFORM_ACTION" | "RECORD_NOT_FOUND" | "DUPLICATE_DATA" => {
            RejectionKind::Conflict
        }
        _ => RejectionKind::Validation,
    }
}

/// The outcome of a whole call without per-record results.
fn call_failure(response: &Response) -> Outcome {
    let status = response.status();
    let error: ZohoResult = response.json().unwrap_or_else(|_| ZohoResult {
        message: response.text().chars().take(300).collect(),
        ..ZohoResult::default()
    });
    let says = format!("{}: {}", error.code, error.message);
    match status {
        401 => auth_expired(format!("Zoho refused the token ({says})")),
        429 => Outcome::RateLimited(response.retry_after_ms().unwrap_or(CONCURRENCY_WAIT_MS)),
        408 | 500..=599 => retry(
            response.retry_after_ms(),
            format!("Zoho answered {status}: {says}"),
        ),
        400 if error.code == "LIMIT_EXCEEDED" => misconfigured(
            "limit_exceeded",
            format!("Zoho refused the batch size: {says}"),
        ),
        400..=499 => match refusal(&error) {
            Outcome::Rejected(r) if r.rule.is_empty() => invalid(
                None,
                &format!("http_{status}"),
                format!("Zoho answered {status}: {says}"),
            ),
            other => other,
        },
        s => retry(None, format!("Zoho answered {s}: {says}")),
    }
}

/// Reads back the records `outcomes` says were written and turns each one
/// missing, or not holding what was sent, into a retry. A failed read
/// leaves the outcomes alone.
fn read_back(s: &Settings, records: &[&Delivery], outcomes: &mut HashMap<String, Outcome>) {
    let written = readback::written(records, outcomes);
    if written.is_empty() {
        return;
    }
    let mut names: Vec<String> = written
        .iter()
        .flat_map(|(d, _)| {
            fields(d, &s.module, &s.external_id)
                .into_iter()
                .map(|(k, _)| k)
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    let ids: Vec<&str> = written.iter().map(|(_, id)| id.as_str()).collect();
    let path = format!(
        "/{}?ids={}&fields={}",
        s.module,
        ids.join(","),
        names.join(",")
    );
    let stored: Vec<Value> = match s.request("GET", &path).send() {
        // 204: none of them exists.
        Ok(r) if r.status() == 204 => Vec::new(),
        Ok(r) if r.status() == 200 => match r.json::<Value>() {
            Ok(v) => v["data"].as_array().cloned().unwrap_or_default(),
            Err(_) => {
                log::warn("read-back skipped: unreadable answer");
                return;
            }
        },
        Ok(r) => {
            log::warn(&format!("read-back skipped: Zoho answered {}", r.status()));
            return;
        }
        Err(e) => {
            log::warn(&format!("read-back skipped: {e}"));
            return;
        }
    };
    let by_id: HashMap<&str, &Value> = stored
        .iter()
        .filter_map(|r| Some((r["id"].as_str()?, r)))
        .collect();
    readback::judge(
        &written,
        &by_id,
        |d| fields(d, &s.module, &s.external_id),
        "Email",
        &format!("Zoho {} record", s.module),
        outcomes,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadgate_sdk::testing::{self, TestHost, json_response};

    fn delivery(id: &str, key: &str, email: &str) -> Delivery {
        let p = |name: &str, value: &str| Property {
            name: name.into(),
            value: value.into(),
        };
        Delivery {
            id: id.into(),
            idempotency_key: key.into(),
            properties: vec![
                p("Last_Name", "Doe"),
                p("Email", email),
                p("Company", "Acme"),
                p("City", "Oslo"),
            ],
        }
    }

    fn ctx(readback: &str) -> PushContext {
        PushContext {
            destination: "zoho".into(),
            config: vec![
                ("api-domain".into(), "https://www.zohoapis.eu".into()),
                ("readback-percent".into(), readback.into()),
            ],
            attempt: 1,
        }
    }

    fn success(id: &str, action: &str) -> Value {
        json!({"code":"SUCCESS","duplicate_field": if action == "update" { json!("Leadgate_Id") } else { Value::Null },
               "action": action, "details": {"id": id, "Modified_Time":"2026-12-04T10:00:00+00:00"},
               "message": if action == "update" { "record updated" } else { "record added" }, "status":"success"})
    }

    #[test]
    fn upserts_by_the_persons_record_key_and_maps_each_result() {
        testing::install(TestHost::new(|req| {
            assert_eq!(req.method, "POST");
            assert_eq!(req.url, "https://www.zohoapis.eu/crm/v8/Leads/upsert");
            let auth = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("authorization"))
                .unwrap();
            assert_eq!(auth.value, "Zoho-oauthtoken {{secret:access-token}}");
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            assert_eq!(body["duplicate_check_fields"], json!(["Leadgate_Id"]));
            assert_eq!(body["trigger"], json!([]));
            assert_eq!(body["data"][0]["Leadgate_Id"], "p1/zoho/v1");
            Ok(json_response(
                207,
                &json!({"data":[
                    success("5725767000000524157", "update"),
                    {"code":"MANDATORY_NOT_FOUND","details":{"api_name":"Company","json_path":"$.data[1].Company"},
                     "message":"required field not found","status":"error"},
                    {"code":"DUPLICATE_DATA","details":{"api_name":"Email","json_path":"$.data[2].Email",
                        "duplicate_record":{"id":"5725767000000411001","module":{"api_name":"Leads","id":"5725767000000002175"}}},
                     "message":"duplicate data","status":"error"},
                    success("5725767000000524160", "insert"),
                ]}),
            ))
        }));
        let out = Zoho::push(
            vec![
                delivery("1", "p1/zoho/v1/r3", "a@x.com"),
                delivery("2", "p2/zoho/v1", "b@x.com"),
                delivery("3", "p3/zoho/v1", "c@x.com"),
                delivery("4", "p4/zoho/v1", "d@x.com"),
            ],
            ctx("0"),
        );
        assert_eq!(
            out[0].outcome,
            Outcome::Updated("5725767000000524157".into())
        );
        assert_eq!(
            out[1].outcome,
            Outcome::Rejected(Rejection {
                kind: RejectionKind::Validation,
                field: Some("Company".into()),
                rule: "mandatory_not_found".into(),
                message: "MANDATORY_NOT_FOUND: required field not found".into(),
            })
        );
        assert_eq!(
            out[2].outcome,
            Outcome::DuplicateOf("5725767000000411001".into())
        );
        assert_eq!(
            out[3].outcome,
            Outcome::Created("5725767000000524160".into())
        );
    }

    #[test]
    fn tokens_throttling_and_outages_map_to_their_kinds() {
        let answer = |status: u16, body: Value| {
            testing::install(TestHost::new(move |_| Ok(json_response(status, &body))));
            Zoho::push(vec![delivery("1", "p1/zoho/v1", "a@x.com")], ctx("0"))
                .remove(0)
                .outcome
        };
        assert!(matches!(
            answer(
                401,
                json!({"code":"INVALID_TOKEN","details":{},"message":"invalid oauth token","status":"error"})
            ),
            Outcome::Retry(_)
        ));
        assert_eq!(
            answer(
                429,
                json!({"code":"TOO_MANY_REQUESTS","details":{},"message":"too many requests","status":"error"})
            ),
            Outcome::RateLimited(CONCURRENCY_WAIT_MS)
        );
        assert!(matches!(answer(500, json!({})), Outcome::Retry(_)));
        assert!(matches!(
            answer(400, json!({"code":"INVALID_MODULE","details":{},"message":"the module name given seems to be invalid","status":"error"})),
            Outcome::Rejected(r) if r.rule == "invalid_module"
        ));
    }

    #[test]
    fn a_write_that_did_not_stick_is_retried_after_the_read_back() {
        testing::install(TestHost::new(|req| {
            if req.method == "POST" {
                return Ok(json_response(
                    201,
                    &json!({"data":[success("11", "insert"), success("12", "insert")]}),
                ));
            }
            assert!(
                req.url
                    .ends_with("/crm/v8/Leads?ids=11,12&fields=City,Company,Email,Last_Name"),
                "{}",
                req.url
            );
            Ok(json_response(
                200,
                &json!({"data":[{"id":"11","City":"Oslo","Company":"Acme","Email":"A@x.com","Last_Name":"Doe"}]}),
            ))
        }));
        let out = Zoho::push(
            vec![
                delivery("1", "p1/zoho/v1", "a@x.com"),
                delivery("2", "p2/zoho/v1", "b@x.com"),
            ],
            ctx("100"),
        );
        assert_eq!(out[0].outcome, Outcome::Created("11".into()));
        assert!(
            matches!(&out[1].outcome, Outcome::Retry(r) if r.kind == RetryKind::ReadbackMismatch),
            "{:?}",
            out[1].outcome
        );
    }

    #[test]
    fn a_contact_gets_its_own_field_names() {
        let mut d = delivery("1", "p1/zoho/v1", "a@x.com");
        d.properties.push(Property {
            name: "Designation".into(),
            value: "CTO".into(),
        });
        let f = fields(&d, "Contacts", "Leadgate_Id");
        assert_eq!(f["Mailing_City"], "Oslo");
        assert_eq!(f["Title"], "CTO");
        assert!(!f.contains_key("Company") && !f.contains_key("City"));
    }
}
