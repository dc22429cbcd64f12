//! leadgate's Salesforce adapter: Leads (or Contacts) upserted by an
//! External ID field through the REST API's sObject Collections,
//! `PATCH /services/data/vNN.N/composite/sobjects/{object}/{field}` with
//! `allOrNone: false`: up to 200 records a call, each with its own result.
//!
//! The External ID value is leadgate's record key of the person
//! ([`record_key`]), so a person is one Salesforce record however often it
//! is updated. Each record's result maps to an outcome:
//! - success: created or updated (`created` in the answer);
//! - `DUPLICATES_DETECTED` (an active duplicate rule blocked a new record):
//!   duplicate of the matching record, found in the error's match results
//!   or, where Salesforce gives none, by its Email;
//! - `CANNOT_UPDATE_CONVERTED_LEAD`: the lead became a Contact; the update
//!   goes to that Contact instead, or is rejected with the reason;
//! - validation errors (`REQUIRED_FIELD_MISSING`, `INVALID_EMAIL_ADDRESS`,
//!   `INVALID_FIELD`, `STRING_TOO_LONG`, `FIELD_CUSTOM_VALIDATION_EXCEPTION`,
//!   …): rejected, naming Salesforce's field;
//! - `UNABLE_TO_LOCK_ROW` and the like: retried.
//!
//! Salesforce never answers 429: a spent daily allocation is a 403
//! `REQUEST_LIMIT_EXCEEDED`, which becomes a pause of the destination; the
//! `Sforce-Limit-Info: api-usage=N/M` header every answer carries is read
//! by the host's limiter. A 401 `INVALID_SESSION_ID` is a retry: the host,
//! which owns the OAuth token, renews it and sends the records again.
//!
//! After a batch is written, the records are read back
//! (`GET …/composite/sobjects/{object}?ids=…&fields=…`) and compared with
//! what was sent: a success that stored nothing, or something else,
//! becomes a retry with a `readback:` reason.
//!
//! Destination configuration: `instance-url` (from the OAuth token answer;
//! set it only without OAuth), `api-version` (default `v62.0`), `object`
//! (`Lead` or `Contact`, default `Lead`), `external-id-field` (default
//! `Leadgate_Id__c`), `allow-duplicates` (`true`: send
//! `Sforce-Duplicate-Rule-Header: allowSave=true`, so "Alert" duplicate
//! rules let the record in), `readback-percent` (0–100, default 100).
//! Secrets: `access-token` (the host's OAuth token); for notifications,
//! `organization-id` (outbound messages must come from this org; see
//! `outbound_message.rs`).

use std::collections::HashMap;

use leadgate_sdk::http::{Request, Response};
use leadgate_sdk::outcome::{
    auth_expired, forbidden, from_http_error, misconfigured, per_day, rejected, retry,
};
use leadgate_sdk::prelude::*;
use leadgate_sdk::{batch, readback};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

mod outbound_message;

pub struct Salesforce;

const DEFAULT_API_VERSION: &str = "v62.0";
const DEFAULT_OBJECT: &str = "Lead";
const DEFAULT_EXTERNAL_ID: &str = "Leadgate_Id__c";
/// sObject Collections take at most 200 records a call.
const MAX_BATCH: u32 = 200;
/// The daily allocation spent: wait this long before trying again (the
/// allocation is a rolling 24 hours; Salesforce does not say when room
/// comes back).
const DAILY_LIMIT_WAIT_MS: u64 = 15 * 60 * 1000;
/// Too many long-running requests at once: a short wait.
const CONCURRENT_LIMIT_WAIT_MS: u64 = 5_000;
const TIMEOUT_MS: u32 = 60_000;

impl Adapter for Salesforce {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            name: "salesforce".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Salesforce Leads or Contacts, upserted by an External ID field".into(),
            max_batch_size: MAX_BATCH,
            upsert_key: DEFAULT_EXTERNAL_ID.into(),
            required_properties: vec!["LastName".into()],
            // Outbound Messages (SOAP), identified by the org id.
            supports_webhooks: true,
            config_keys: vec![
                "instance-url".into(),
                "api-version".into(),
                "object".into(),
                "external-id-field".into(),
                "allow-duplicates".into(),
                "readback-percent".into(),
            ],
            secrets: vec![
                "access-token".into(),
                outbound_message::ORGANIZATION_ID.into(),
            ],
            default_hosts: vec!["*.salesforce.com".into(), "*.force.com".into()],
            rate_limits: vec![
                // Enterprise Edition's base allocation: 100,000 requests per
                // rolling 24 hours (plus 1,000 per licence: raise it in the
                // destination's rate_limits).
                per_day("daily", 100_000),
            ],
            // 25 long-running (over 20 s) requests at once in production
            // orgs; ordinary calls are not capped.
            max_concurrent: None,
            auth: AuthScheme::Oauth2(vec![OauthGrant::RefreshToken]),
        }
    }

    fn push(batch: Vec<Delivery>, ctx: PushContext) -> Vec<DeliveryOutcome> {
        let settings = match Settings::of(&ctx) {
            Ok(s) => s,
            Err(e) => return batch::misconfigured(&batch, &e),
        };
        // One External ID twice in a call is refused for both: the later
        // update goes in the next call.
        let (sendable, mut outcomes) =
            batch::one_per_record(&batch, |d| batch::external_id(d, &settings.external_id));
        if !sendable.is_empty() {
            let written = upsert(&settings, &sendable);
            for (d, result) in sendable.iter().zip(written) {
                let o = match result {
                    Written::Done(o) => o,
                    Written::Failed(errors) => settle_failure(&settings, d, &errors),
                };
                outcomes.insert(d.id.clone(), o);
            }
            if readback::sampled(&sendable[0].id, settings.readback_percent) {
                read_back(&settings, &sendable, &mut outcomes);
            }
        }
        batch::in_order(&batch, outcomes, "Salesforce")
    }

    fn verify_webhook(request: WebhookRequest) -> Result<WebhookReceipt, WebhookError> {
        outbound_message::verify(&request, clock::now_ms())
    }

    /// `DELETE /sobjects/{object}/{id}` per record: 204 deleted (to the
    /// recycle bin, which Salesforce empties after 15 days), 404
    /// `NOT_FOUND` or `ENTITY_IS_DELETED` not found.
    fn erase(batch: Vec<ErasureRequest>, ctx: PushContext) -> Vec<ErasureOutcome> {
        erasure::with_settings(&batch, Settings::of(&ctx), |settings, plain| {
            plain
                .iter()
                .map(|r| {
                    let path = format!("/sobjects/{}/{}", settings.object, r.record_id);
                    let answer = settings.request("DELETE", &path).send();
                    erasure::of_response(answer, call_failure)
                })
                .collect()
        })
    }
}

leadgate_sdk::export_adapter!(Salesforce);

/// The destination's settings.
struct Settings {
    /// `{instance}/services/data/vNN.N`
    base: String,
    object: String,
    external_id: String,
    allow_duplicates: bool,
    readback_percent: u64,
}

impl Settings {
    fn of(ctx: &PushContext) -> Result<Settings, String> {
        let get = |key: &str| config(ctx, key);
        let instance = get("instance-url").ok_or(
            "no instance-url: give the destination an oauth section (the token answer names it) or set config.instance-url",
        )?;
        let version = batch::api_version(get("api-version"), DEFAULT_API_VERSION);
        let object = get("object").unwrap_or(DEFAULT_OBJECT);
        if !batch::is_api_name(object) {
            return Err(format!("object {object:?} is not an sObject API name"));
        }
        let external_id = get("external-id-field").unwrap_or(DEFAULT_EXTERNAL_ID);
        if !batch::is_api_name(external_id) {
            return Err(format!(
                "external-id-field {external_id:?} is not a field API name"
            ));
        }
        Ok(Settings {
            base: format!("{}/services/data/{version}", instance.trim_end_matches('/')),
            object: object.to_string(),
            external_id: external_id.to_string(),
            allow_duplicates: get("allow-duplicates").is_some_and(|v| v == "true"),
            readback_percent: readback::percent(ctx),
        })
    }

    fn request(&self, method: &str, path: &str) -> Request {
        let r = Request::new(method, format!("{}{path}", self.base))
            .bearer_secret("access-token")
            .header("accept", "application/json")
            .timeout_ms(TIMEOUT_MS);
        if self.allow_duplicates {
            r.header("sforce-duplicate-rule-header", "allowSave=true")
        } else {
            r
        }
    }
}

/// Lead address fields and their Contact names; Lead-only fields a Contact
/// does not have.
const CONTACT_NAMES: [(&str, &str); 5] = [
    ("Street", "MailingStreet"),
    ("City", "MailingCity"),
    ("State", "MailingState"),
    ("PostalCode", "MailingPostalCode"),
    ("Country", "MailingCountry"),
];
const LEAD_ONLY: [&str; 4] = ["Company", "Website", "Status", "Industry"];

/// The record's fields as Salesforce takes them for `object` (Lead names
/// moved to their Contact names for a Contact).
fn fields(d: &Delivery, object: &str, skip: &str) -> Map<String, Value> {
    if object.eq_ignore_ascii_case("Contact") {
        batch::fields(d, skip, &CONTACT_NAMES, &LEAD_ONLY)
    } else {
        batch::fields(d, skip, &[], &[])
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Collection {
    all_or_none: bool,
    records: Vec<Map<String, Value>>,
}

/// One record's result in a Collections answer.
#[derive(Deserialize)]
struct SaveResult {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    success: bool,
    #[serde(default)]
    created: Option<bool>,
    #[serde(default)]
    errors: Vec<SfError>,
}

/// A Salesforce error: `statusCode` in Collections results, `errorCode`
/// in a top-level answer.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SfError {
    #[serde(default, alias = "errorCode")]
    status_code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    fields: Vec<String>,
    #[serde(default)]
    duplicate_result: Option<Value>,
}

/// What the upsert call said of one record.
enum Written {
    Done(Outcome),
    /// Refused with these errors; what to do depends on which.
    Failed(Vec<SfError>),
}

/// One Collections upsert of `records` (at most 200), results in order.
fn upsert(s: &Settings, records: &[&Delivery]) -> Vec<Written> {
    let body = Collection {
        all_or_none: false,
        records: records
            .iter()
            .map(|d| {
                let mut record = Map::new();
                record.insert("attributes".into(), serde_json::json!({ "type": s.object }));
                record.extend(fields(d, &s.object, &s.external_id));
                record.insert(
                    s.external_id.clone(),
                    Value::String(batch::external_id(d, &s.external_id).to_string()),
                );
                record
            })
            .collect(),
    };
    let request = s
        .request(
            "PATCH",
            &format!("/composite/sobjects/{}/{}", s.object, s.external_id),
        )
        .json(&body);
    let all = |o: Outcome| records.iter().map(|_| Written::Done(o.clone())).collect();
    let response = match request.send() {
        Ok(r) => r,
        Err(e) => return all(from_http_error(&e)),
    };
    if response.status() != 200 {
        return all(call_failure(&response));
    }
    let results: Vec<SaveResult> = match response.json() {
        Ok(r) => r,
        Err(e) => {
            return all(retry(
                None,
                format!("Salesforce sent an unreadable Collections answer: {e}"),
            ));
        }
    };
    if results.len() != records.len() {
        return all(retry(
            None,
            format!(
                "Salesforce answered {} results for {} records",
                results.len(),
                records.len()
            ),
        ));
    }
    results
        .into_iter()
        .map(|r| match (r.success, r.id) {
            (true, Some(id)) if r.created == Some(false) => Written::Done(Outcome::Updated(id)),
            (true, Some(id)) => Written::Done(Outcome::Created(id)),
            (true, None) => Written::Done(retry(None, "Salesforce reported success without an id")),
            (false, _) => Written::Failed(r.errors),
        })
        .collect()
}

/// The outcome of a whole call that did not answer 200.
fn call_failure(response: &Response) -> Outcome {
    let status = response.status();
    let error = top_error(response);
    let says = |e: &SfError| format!("{}: {}", e.status_code, e.message);
    match status {
        401 => auth_expired(format!("Salesforce refused the session ({})", says(&error))),
        403 if error.status_code == "REQUEST_LIMIT_EXCEEDED" => {
            if error.message.contains("Concurrent") {
                Outcome::RateLimited(CONCURRENT_LIMIT_WAIT_MS)
            } else {
                Outcome::RateLimited(DAILY_LIMIT_WAIT_MS)
            }
        }
        403 => forbidden(
            &rule(&error.status_code, "forbidden"),
            format!("Salesforce refused access: {}", says(&error)),
        ),
        404 => misconfigured(
            "config",
            format!(
                "Salesforce has no such object or External ID field ({}): check object and external-id-field",
                says(&error)
            ),
        ),
        408 | 500..=599 => retry(
            response.retry_after_ms(),
            format!("Salesforce answered {status}: {}", says(&error)),
        ),
        400 => classify(&[error]),
        s => rejected(
            RejectionKind::Other,
            None,
            &format!("http_{s}"),
            format!("Salesforce answered {s}: {}", says(&error)),
        ),
    }
}

/// The first error of a top-level answer (a JSON array of errors).
fn top_error(response: &Response) -> SfError {
    response
        .json::<Vec<SfError>>()
        .ok()
        .and_then(|v| v.into_iter().next())
        .unwrap_or_else(|| SfError {
            status_code: String::new(),
            message: response.text().chars().take(300).collect(),
            ..SfError::default()
        })
}

/// `REQUIRED_FIELD_MISSING` → `required_field_missing`.
fn rule(code: &str, default: &str) -> String {
    if code.is_empty() {
        default.to_string()
    } else {
        code.to_ascii_lowercase()
    }
}

/// Errors that go away by themselves (`ALL_OR_NONE_OPERATION_ROLLED_BACK`:
/// this record was fine, another one failed the call). Everything else a
/// record meets is refused for good: a validation error, `DUPLICATE_VALUE`
/// (a unique field holds the value on another record),
/// `DUPLICATE_EXTERNAL_ID` (several records hold the External ID:
/// ambiguous until someone merges them).
const TRANSIENT: [&str; 4] = [
    "UNABLE_TO_LOCK_ROW",
    "REQUEST_RUNNING_TOO_LONG",
    "SERVER_UNAVAILABLE",
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
];

/// The outcome of a record's errors when no further call can settle them.
fn classify(errors: &[SfError]) -> Outcome {
    let Some(e) = errors.first() else {
        return retry(None, "Salesforce refused the record without saying why");
    };
    let message = format!("{}: {}", e.status_code, e.message);
    if TRANSIENT.contains(&e.status_code.as_str()) {
        return retry(None, message);
    }
    if e.status_code == "REQUEST_LIMIT_EXCEEDED" {
        return Outcome::RateLimited(DAILY_LIMIT_WAIT_MS);
    }
    rejected(
        rejection_kind(e),
        e.fields.first().map(String::as_str),
        &rule(&e.status_code, "refused"),
        message,
    )
}

/// Salesforce's status codes in leadgate's taxonomy.
fn rejection_kind(e: &SfError) -> RejectionKind {
    match e.status_code.as_str() {
        // A unique value or External ID another record holds, a record in
        // a state that forbids the write.
        "DUPLICATE_VALUE"
        | "DUPLICATE_EXTERNAL_ID"
        | "DUPLICATES_DETECTED"
        | "CANNOT_UPDATE_CONVERTED_LEAD"
        | "ENTITY_IS_DELETED"
        | "ENTITY_IS_LOCKED"
        | "ENTITY_IS_ARCHIVED_AND_NOT_ACCESSIBLE" => RejectionKind::Conflict,
        "INSUFFICIENT_ACCESS_OR_READONLY"
        | "INSUFFICIENT_ACCESS_ON_CROSS_REFERENCE_ENTITY"
        | "INSUFFICIENT_ACCESS" => RejectionKind::Forbidden,
        // A field or object the org does not have: the mapping's fault.
        "INVALID_FIELD" | "INVALID_TYPE" | "NOT_FOUND" | "INVALID_FIELD_FOR_INSERT_UPDATE" => {
            RejectionKind::Config
        }
        _ => RejectionKind::Validation,
    }
}

/// A refused record: a duplicate found, a converted lead followed to its
/// Contact, or the refusal itself.
fn settle_failure(s: &Settings, d: &Delivery, errors: &[SfError]) -> Outcome {
    let code = errors.first().map_or("", |e| e.status_code.as_str());
    match code {
        "DUPLICATES_DETECTED" => match duplicate_id(s, d, &errors[0]) {
            Some(id) => Outcome::DuplicateOf(id),
            None => classify(errors),
        },
        "CANNOT_UPDATE_CONVERTED_LEAD" => update_converted(s, d, &errors[0]),
        _ => classify(errors),
    }
}

/// The record a duplicate rule matched: from the error's match results
/// (single-record answers carry them; Collections answers do not), else
/// a record with the same Email, of the object or, for a Lead,
/// a Contact (Salesforce's standard lead rule matches both).
fn duplicate_id(s: &Settings, d: &Delivery, error: &SfError) -> Option<String> {
    let matched = error.duplicate_result.as_ref().and_then(|r| {
        r["matchResults"]
            .as_array()?
            .iter()
            .flat_map(|m| m["matchRecords"].as_array().into_iter().flatten())
            .find_map(|m| m["record"]["Id"].as_str().map(str::to_string))
    });
    if matched.is_some() {
        return matched;
    }
    let email = d
        .properties
        .iter()
        .find(|p| p.name == "Email" && !p.value.is_empty())?;
    let mut objects = vec![s.object.as_str()];
    if s.object.eq_ignore_ascii_case("Lead") {
        objects.push("Contact");
    }
    objects.into_iter().find_map(|object| {
        let soql = format!(
            "SELECT Id FROM {object} WHERE Email = '{}' LIMIT 1",
            soql_quote(&email.value)
        );
        query(s, &soql)?
            .first()
            .and_then(|r| r["Id"].as_str().map(str::to_string))
    })
}

/// A SOQL string literal's contents: backslashes and quotes escaped.
fn soql_quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out
}

/// `GET /query?q=…`: the records, or None when the query failed.
fn query(s: &Settings, soql: &str) -> Option<Vec<Value>> {
    let url_query = form_encode(soql);
    let response = s
        .request("GET", &format!("/query?q={url_query}"))
        .search()
        .send()
        .ok()?;
    if response.status() != 200 {
        log::warn(&format!(
            "Salesforce query failed with {}: {}",
            response.status(),
            top_error(&response).message
        ));
        return None;
    }
    let body: Value = response.json().ok()?;
    body["records"].as_array().cloned()
}

/// Percent-encoding for a query string value.
fn form_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len() * 3);
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A Lead converted into a Contact cannot be updated: the update goes to
/// the Contact it became (its fields under their Contact names).
fn update_converted(s: &Settings, d: &Delivery, error: &SfError) -> Outcome {
    let refused = |why: String| {
        rejected(
            RejectionKind::Conflict,
            None,
            "cannot_update_converted_lead",
            format!("{}: {}; {why}", error.status_code, error.message),
        )
    };
    let soql = format!(
        "SELECT Id, ConvertedContactId FROM {} WHERE {} = '{}' LIMIT 1",
        s.object,
        s.external_id,
        soql_quote(batch::external_id(d, &s.external_id))
    );
    let Some(records) = query(s, &soql) else {
        return retry(None, "reading the converted lead failed");
    };
    let Some(contact) = records
        .first()
        .and_then(|r| r["ConvertedContactId"].as_str())
        .map(str::to_string)
    else {
        return refused("the converted lead names no Contact".into());
    };
    let body = Value::Object(fields(d, "Contact", &s.external_id));
    let response = match s
        .request("PATCH", &format!("/sobjects/Contact/{contact}"))
        .json(&body)
        .send()
    {
        Ok(r) => r,
        Err(e) => return from_http_error(&e),
    };
    match response.status() {
        200 | 204 => Outcome::Updated(contact),
        400 => classify(&[top_error(&response)]),
        _ => call_failure(&response),
    }
}

/// Reads back the records `outcomes` says were written to the object and
/// turns each one missing, or not holding what was sent, into a retry. A
/// failed read leaves the outcomes alone.
fn read_back(s: &Settings, records: &[&Delivery], outcomes: &mut HashMap<String, Outcome>) {
    let written = readback::written(records, outcomes);
    if written.is_empty() {
        return;
    }
    let mut names: Vec<String> = written
        .iter()
        .flat_map(|(d, _)| {
            fields(d, &s.object, &s.external_id)
                .into_iter()
                .map(|(k, _)| k)
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    names.retain(|n| n != "Id");
    names.insert(0, "Id".into());
    let ids: Vec<&str> = written.iter().map(|(_, id)| id.as_str()).collect();
    let path = format!(
        "/composite/sobjects/{}?ids={}&fields={}",
        s.object,
        ids.join(","),
        names.join(",")
    );
    let response = match s.request("GET", &path).send() {
        Ok(r) if r.status() == 200 => r,
        Ok(r) => {
            log::warn(&format!(
                "read-back skipped: Salesforce answered {}",
                r.status()
            ));
            return;
        }
        Err(e) => {
            log::warn(&format!("read-back skipped: {e}"));
            return;
        }
    };
    let Ok(stored) = response.json::<Vec<Value>>() else {
        log::warn("read-back skipped: unreadable answer");
        return;
    };
    let by_id: HashMap<&str, &Value> = stored
        .iter()
        .filter_map(|r| Some((r["Id"].as_str()?, r)))
        .collect();
    readback::judge(
        &written,
        &by_id,
        |d| fields(d, &s.object, &s.external_id),
        "Email",
        &format!("Salesforce {}", s.object),
        outcomes,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadgate_sdk::testing::{self, TestHost, json_response};
    use serde_json::json;

    fn delivery(id: &str, key: &str, email: &str) -> Delivery {
        let p = |name: &str, value: &str| Property {
            name: name.into(),
            value: value.into(),
        };
        Delivery {
            id: id.into(),
            idempotency_key: key.into(),
            properties: vec![
                p("LastName", "Doe"),
                p("Email", email),
                p("Company", "Acme"),
                p("City", "Oslo"),
            ],
        }
    }

    fn ctx(readback: &str) -> PushContext {
        PushContext {
            destination: "salesforce".into(),
            config: vec![
                (
                    "instance-url".into(),
                    "https://acme.my.salesforce.com".into(),
                ),
                ("readback-percent".into(), readback.into()),
            ],
            attempt: 1,
        }
    }

    #[test]
    fn upserts_by_the_persons_record_key_and_maps_each_result() {
        testing::install(TestHost::new(|req| {
            assert_eq!(req.method, "PATCH");
            assert_eq!(
                req.url,
                "https://acme.my.salesforce.com/services/data/v62.0/composite/sobjects/Lead/Leadgate_Id__c"
            );
            let auth = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("authorization"))
                .unwrap();
            assert_eq!(auth.value, "Bearer {{secret:access-token}}");
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            assert_eq!(body["allOrNone"], false);
            let records = body["records"].as_array().unwrap();
            assert_eq!(records[0]["attributes"]["type"], "Lead");
            // An update's revision suffix is not part of the record's key.
            assert_eq!(records[0]["Leadgate_Id__c"], "p1/sf/v1");
            assert_eq!(records[1]["Leadgate_Id__c"], "p2/sf/v1");
            Ok(json_response(
                200,
                &json!([
                    {"id":"00Q000000000001AAA","success":true,"errors":[],"created":false},
                    {"id":null,"success":false,"errors":[{"statusCode":"REQUIRED_FIELD_MISSING",
                        "message":"Required fields are missing: [Company]","fields":["Company"]}]},
                    {"id":"00Q000000000003AAA","success":true,"errors":[],"created":true},
                ]),
            ))
        }));
        let out = Salesforce::push(
            vec![
                delivery("1", "p1/sf/v1/r2", "a@x.com"),
                delivery("2", "p2/sf/v1", "b@x.com"),
                delivery("3", "p3/sf/v1", "c@x.com"),
            ],
            ctx("0"),
        );
        assert_eq!(
            out[0].outcome,
            Outcome::Updated("00Q000000000001AAA".into())
        );
        assert_eq!(
            out[1].outcome,
            Outcome::Rejected(Rejection {
                kind: RejectionKind::Validation,
                field: Some("Company".into()),
                rule: "required_field_missing".into(),
                message: "REQUIRED_FIELD_MISSING: Required fields are missing: [Company]".into(),
            })
        );
        assert_eq!(
            out[2].outcome,
            Outcome::Created("00Q000000000003AAA".into())
        );
    }

    #[test]
    fn one_record_twice_in_a_batch_waits_for_the_next_call() {
        testing::install(TestHost::new(|req| {
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            assert_eq!(body["records"].as_array().unwrap().len(), 1);
            Ok(json_response(
                200,
                &json!([{"id":"00Q1","success":true,"errors":[],"created":true}]),
            ))
        }));
        let out = Salesforce::push(
            vec![
                delivery("1", "p1/sf/v1", "a@x.com"),
                delivery("2", "p1/sf/v1/r2", "a@x.com"),
            ],
            ctx("0"),
        );
        assert_eq!(out[0].outcome, Outcome::Created("00Q1".into()));
        assert!(matches!(&out[1].outcome, Outcome::Retry(r) if r.kind == RetryKind::HeldBack));
    }

    #[test]
    fn a_blocked_duplicate_is_the_record_its_email_finds() {
        testing::install(TestHost::new(|req| {
            if req.method == "PATCH" {
                return Ok(json_response(
                    200,
                    &json!([{"success":false,"errors":[{"statusCode":"DUPLICATES_DETECTED",
                        "message":"Use one of these records?","fields":[]}]}]),
                ));
            }
            assert!(
                req.url.contains(
                    "/query?q=SELECT+Id+FROM+Lead+WHERE+Email+%3D+%27o%5C%27neil%40x.com%27"
                ),
                "{}",
                req.url
            );
            Ok(json_response(
                200,
                &json!({"totalSize":1,"done":true,"records":[{"attributes":{"type":"Lead"},"Id":"00Q9"}]}),
            ))
        }));
        let out = Salesforce::push(vec![delivery("1", "p1/sf/v1", "o'neil@x.com")], ctx("0"));
        assert_eq!(out[0].outcome, Outcome::DuplicateOf("00Q9".into()));
    }

    #[test]
    fn a_converted_lead_updates_its_contact() {
        testing::install(TestHost::new(|req| {
            if req.method == "PATCH" && req.url.contains("/composite/") {
                return Ok(json_response(
                    200,
                    &json!([{"success":false,"errors":[{"statusCode":"CANNOT_UPDATE_CONVERTED_LEAD",
                        "message":"cannot reference converted lead","fields":[]}]}]),
                ));
            }
            if req.method == "GET" {
                return Ok(json_response(
                    200,
                    &json!({"totalSize":1,"done":true,"records":[{"Id":"00Q1","ConvertedContactId":"0035"}]}),
                ));
            }
            assert!(req.url.ends_with("/sobjects/Contact/0035"));
            let body: Value = serde_json::from_slice(&req.body).unwrap();
            assert_eq!(body["MailingCity"], "Oslo");
            assert!(body.get("Company").is_none() && body.get("City").is_none());
            Ok(json_response(204, &Value::Null))
        }));
        let out = Salesforce::push(vec![delivery("1", "p1/sf/v1", "a@x.com")], ctx("0"));
        assert_eq!(out[0].outcome, Outcome::Updated("0035".into()));
    }

    #[test]
    fn limits_sessions_and_outages_map_to_their_kinds() {
        let answer = |status: u16, body: Value| {
            testing::install(TestHost::new(move |_| Ok(json_response(status, &body))));
            Salesforce::push(vec![delivery("1", "p1/sf/v1", "a@x.com")], ctx("0"))
                .remove(0)
                .outcome
        };
        assert_eq!(
            answer(
                403,
                json!([{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}])
            ),
            Outcome::RateLimited(DAILY_LIMIT_WAIT_MS)
        );
        assert!(matches!(
            answer(
                401,
                json!([{"message":"Session expired or invalid","errorCode":"INVALID_SESSION_ID"}])
            ),
            Outcome::Retry(_)
        ));
        assert!(matches!(answer(503, json!([])), Outcome::Retry(_)));
        assert!(matches!(
            answer(404, json!([{"errorCode":"NOT_FOUND","message":"Provided external ID field does not exist or is not accessible: X"}])),
            Outcome::Rejected(r) if r.rule == "config"
        ));
    }

    #[test]
    fn a_write_that_did_not_stick_is_retried_after_the_read_back() {
        testing::install(TestHost::new(|req| {
            if req.method == "PATCH" {
                return Ok(json_response(
                    200,
                    &json!([
                        {"id":"00Q1","success":true,"errors":[],"created":true},
                        {"id":"00Q2","success":true,"errors":[],"created":true},
                    ]),
                ));
            }
            assert!(
                req.url.ends_with(
                    "/composite/sobjects/Lead?ids=00Q1,00Q2&fields=Id,City,Company,Email,LastName"
                ),
                "{}",
                req.url
            );
            Ok(json_response(
                200,
                &json!([
                    {"attributes":{"type":"Lead"},"Id":"00Q1","City":"Oslo","Company":"Acme","Email":"A@x.com","LastName":"Doe"},
                    null,
                ]),
            ))
        }));
        let out = Salesforce::push(
            vec![
                delivery("1", "p1/sf/v1", "a@x.com"),
                delivery("2", "p2/sf/v1", "b@x.com"),
            ],
            ctx("100"),
        );
        assert_eq!(out[0].outcome, Outcome::Created("00Q1".into()));
        assert!(
            matches!(&out[1].outcome, Outcome::Retry(r) if r.kind == RetryKind::ReadbackMismatch),
            "{:?}",
            out[1].outcome
        );
    }

    #[test]
    fn no_instance_url_is_a_configuration_error() {
        testing::install(TestHost::new(|_| unreachable!("nothing is sent")));
        let mut c = ctx("0");
        c.config.remove(0);
        let out = Salesforce::push(vec![delivery("1", "p1/sf/v1", "a@x.com")], c);
        assert!(matches!(&out[0].outcome, Outcome::Rejected(r) if r.rule == "config"));
    }
}
