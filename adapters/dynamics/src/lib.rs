//! leadgate's Microsoft Dynamics 365 adapter: leads (or contacts) upserted
//! in Dataverse through the Web API by an alternate key, a batch at a time
//! in one `$batch` request (`Prefer: odata.continue-on-error`, so each
//! record has its own answer and one bad record never holds up the rest).
//! The records are not put in a change set on purpose: a change set is
//! all or nothing, so one bad record would roll back every other one.
//!
//! A lookup is mapped as its navigation property bound to a row:
//! `parentaccountid@odata.bind: "/accounts(GUID)"` (Dataverse refuses a
//! row that does not exist); lookups are sent as they are and not read
//! back (they read as another column, `_parentaccountid_value`).
//!
//! Each record is `PATCH {org}/api/data/v9.2/leads(new_leadgateid='KEY')`
//! with `Prefer: return=representation`: 201 is a new row, 200 an updated
//! one. `new_leadgateid` (a text column defined as an alternate key on the
//! table) holds leadgate's record key of the person ([`record_key`]), so a
//! person is one row however often it is updated. Each part's answer maps
//! to an outcome:
//! - 200/201 (or 204 with `OData-EntityId`): updated / created;
//! - 500 `0x80040333` (a duplicate detection rule matched, when
//!   `duplicate-detection = "true"` asks Dataverse to apply them): the
//!   duplicate of the row with the same email;
//! - 412 (a precondition the row no longer meets): a conflict;
//! - 400 validation errors (`0x80060888` unknown column, `0x80044331` too
//!   long, `0x8004431a` bad option, …): rejected, naming the column the
//!   message names;
//! - 429 (service protection: 6,000 requests or 20 minutes of execution per
//!   5 minutes per user, 52 at once): throttled for its `Retry-After`;
//! - 5xx and a part the batch never reached: retried.
//!
//! The host owns the Entra ID token (client credentials, or a delegated
//! refresh token); a 401 is `auth-expired`: the host renews the token once
//! and sends the record again.
//!
//! After a batch is written the rows are read back by their keys
//! (`GET …/leads?$select=…&$filter=new_leadgateid eq '…' or …`) and
//! compared with what was sent.
//!
//! Destination configuration: `org-url` (`https://ORG.crm.dynamics.com`,
//! required), `api-version` (default `v9.2`), `table` (`leads` or
//! `contacts`, default `leads`), `alternate-key` (default
//! `new_leadgateid`), `duplicate-detection` (`true`: apply the org's
//! duplicate detection rules), `readback-percent` (0–100, default 100).
//! Secrets: `access-token` (the host's OAuth token); for notifications,
//! `webhook-key` (the service endpoint's key; see `webhook.rs`).

use std::collections::HashMap;

use leadgate_sdk::http::{Request, Response};
use leadgate_sdk::outcome::{
    auth_expired, conflict, forbidden, from_http_error, limit, misconfigured, rejected, retry,
};
use leadgate_sdk::prelude::*;
use leadgate_sdk::{batch, readback};
use serde_json::{Map, Value};

mod webhook;

pub struct Dynamics;

const DEFAULT_API_VERSION: &str = "v9.2";
const DEFAULT_TABLE: &str = "leads";
const DEFAULT_ALTERNATE_KEY: &str = "new_leadgateid";
/// Records per `$batch` (Dataverse takes up to 1,000 requests in one; a
/// smaller batch keeps one call's execution time, which service protection
/// also counts, modest).
const MAX_BATCH: u32 = 100;
/// A 429 without `Retry-After`.
const DEFAULT_THROTTLE_MS: u64 = 30_000;
const TIMEOUT_MS: u32 = 120_000;
/// Dataverse's "duplicate record" code (duplicate detection rules).
const DUPLICATE_DETECTED: &str = "0x80040333";

impl Adapter for Dynamics {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            name: "dynamics".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description:
                "Microsoft Dynamics 365 (Dataverse) leads or contacts, upserted by an alternate key"
                    .into(),
            max_batch_size: MAX_BATCH,
            upsert_key: DEFAULT_ALTERNATE_KEY.into(),
            required_properties: vec!["lastname".into()],
            // Service-endpoint webhooks, verified by their key.
            supports_webhooks: true,
            config_keys: vec![
                "org-url".into(),
                "api-version".into(),
                "table".into(),
                "alternate-key".into(),
                "duplicate-detection".into(),
                "readback-percent".into(),
            ],
            secrets: vec!["access-token".into(), webhook::WEBHOOK_KEY.into()],
            default_hosts: vec!["*.dynamics.com".into()],
            rate_limits: vec![
                // Service protection, per user: 6,000 requests in a sliding
                // 5 minutes (a $batch counts as one).
                limit("burst", 6_000, 300_000),
            ],
            // Service protection: 52 requests at once per user.
            max_concurrent: Some(52),
            auth: AuthScheme::Oauth2(vec![
                OauthGrant::ClientCredentials,
                OauthGrant::RefreshToken,
            ]),
        }
    }

    fn push(batch: Vec<Delivery>, ctx: PushContext) -> Vec<DeliveryOutcome> {
        let settings = match Settings::of(&ctx) {
            Ok(s) => s,
            Err(e) => return batch::misconfigured(&batch, &e),
        };
        let (sendable, mut outcomes) = batch::one_per_record(&batch, record_key);
        if !sendable.is_empty() {
            let results = upsert(&settings, &sendable);
            for (d, o) in sendable.iter().zip(results) {
                let o = match o {
                    Part::Done(o) => o,
                    Part::Duplicate(message) => duplicate(&settings, d, message),
                };
                outcomes.insert(d.id.clone(), o);
            }
            if readback::sampled(&sendable[0].id, settings.readback_percent) {
                read_back(&settings, &sendable, &mut outcomes);
            }
        }
        batch::in_order(&batch, outcomes, "Dataverse")
    }

    fn verify_webhook(request: WebhookRequest) -> Result<WebhookReceipt, WebhookError> {
        webhook::verify(&request)
    }

    /// `DELETE /{table}({id})` per record: 204 deleted, 404 not found.
    fn erase(batch: Vec<ErasureRequest>, ctx: PushContext) -> Vec<ErasureOutcome> {
        erasure::with_settings(&batch, Settings::of(&ctx), |settings, plain| {
            plain
                .iter()
                .map(|r| {
                    let path = format!("/{}({})", settings.table, r.record_id);
                    let answer = settings.request("DELETE", &path).send();
                    erasure::of_response(answer, call_failure)
                })
                .collect()
        })
    }
}

leadgate_sdk::export_adapter!(Dynamics);

struct Settings {
    /// `{org}/api/data/v9.2`
    base: String,
    table: String,
    key: String,
    duplicate_detection: bool,
    readback_percent: u64,
}

impl Settings {
    fn of(ctx: &PushContext) -> Result<Settings, String> {
        let get = |key: &str| config(ctx, key);
        let org = get("org-url")
            .ok_or("no org-url: set config.org-url to https://ORG.crm.dynamics.com")?;
        let version = batch::api_version(get("api-version"), DEFAULT_API_VERSION);
        let table = get("table").unwrap_or(DEFAULT_TABLE);
        let key = get("alternate-key").unwrap_or(DEFAULT_ALTERNATE_KEY);
        for (name, v) in [("table", table), ("alternate-key", key)] {
            if !is_logical_name(v) {
                return Err(format!("{name} {v:?} is not a Dataverse logical name"));
            }
        }
        Ok(Settings {
            base: format!("{}/api/data/{version}", org.trim_end_matches('/')),
            table: table.to_string(),
            key: key.to_string(),
            duplicate_detection: get("duplicate-detection").is_some_and(|v| v == "true"),
            readback_percent: readback::percent(ctx),
        })
    }

    fn request(&self, method: &str, path: &str) -> Request {
        Request::new(method, format!("{}{path}", self.base))
            .bearer_secret("access-token")
            .header("accept", "application/json")
            .header("odata-maxversion", "4.0")
            .header("odata-version", "4.0")
            .timeout_ms(TIMEOUT_MS)
    }

    /// The id column of the table: `leads` → `leadid`.
    fn id_column(&self) -> String {
        format!("{}id", self.table.strip_suffix('s').unwrap_or(&self.table))
    }
}

/// Lowercase letters, digits and underscores.
fn is_logical_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// An OData string literal: quotes doubled.
fn odata_quote(v: &str) -> String {
    v.replace('\'', "''")
}

/// Percent-encoding of a URL path segment or query value.
fn url_encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len() * 3);
    for b in v.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'~'
            | b'\''
            | b'('
            | b')'
            | b'='
            | b','
            | b'$' => out.push(b as char),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Lead-only columns a contact does not have.
const LEAD_ONLY: [&str; 3] = ["companyname", "subject", "leadqualitycode"];

/// The row's columns: empty values left out (an update never blanks what
/// the CRM holds), lead-only ones left out for contacts.
fn columns(d: &Delivery, s: &Settings) -> Map<String, Value> {
    let mut out = Map::new();
    for p in &d.properties {
        if p.value.is_empty() || p.name == s.key {
            continue;
        }
        if s.table == "contacts" && LEAD_ONLY.contains(&p.name.as_str()) {
            continue;
        }
        out.insert(p.name.clone(), Value::String(p.value.clone()));
    }
    out
}

/// What a read-back compares: the row's columns without its lookups
/// (`parentaccountid@odata.bind: "/accounts(…)"` is written through a
/// navigation property and read as another column, `_x_value`, under a
/// name the navigation property does not always give).
fn compared(d: &Delivery, s: &Settings) -> Map<String, Value> {
    let mut out = columns(d, s);
    out.retain(|name, _| !name.contains('@'));
    out
}

/// One part's answer.
enum Part {
    Done(Outcome),
    /// A duplicate detection rule refused the row.
    Duplicate(String),
}

/// The `$batch` of upserts; one answer per record, in order.
fn upsert(s: &Settings, records: &[&Delivery]) -> Vec<Part> {
    let boundary = format!(
        "batch_leadgate_{:02}",
        readback::stable_percent(&records[0].id)
    );
    let mut body = String::new();
    for (i, d) in records.iter().enumerate() {
        let path = format!(
            "{}/{}({}='{}')?$select={}",
            s.base,
            s.table,
            s.key,
            url_encode(&odata_quote(record_key(d))),
            s.id_column()
        );
        let json = Value::Object(columns(d, s)).to_string();
        body.push_str(&format!(
            "--{boundary}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {}\r\n\r\n\
             PATCH {path} HTTP/1.1\r\nContent-Type: application/json; charset=utf-8\r\nPrefer: return=representation\r\n",
            i + 1
        ));
        if s.duplicate_detection {
            body.push_str("MSCRM.SuppressDuplicateDetection: false\r\n");
        }
        body.push_str(&format!("\r\n{json}\r\n"));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    let request = s
        .request("POST", "/$batch")
        .header(
            "content-type",
            format!("multipart/mixed; boundary=\"{boundary}\""),
        )
        .header("prefer", "odata.continue-on-error")
        .body(body.into_bytes());
    let all = |o: Outcome| records.iter().map(|_| Part::Done(o.clone())).collect();
    let response = match request.send() {
        Ok(r) => r,
        Err(e) => return all(from_http_error(&e)),
    };
    if response.status() != 200 {
        return all(call_failure(&response));
    }
    let Some(parts) = batch_parts(&response) else {
        return all(retry(None, "Dataverse sent an unreadable $batch answer"));
    };
    let mut out: Vec<Part> = parts.iter().map(|p| part_outcome(s, p)).collect();
    // Parts the batch never reached (it stopped early): sent again later.
    while out.len() < records.len() {
        out.push(Part::Done(retry(
            None,
            "Dataverse stopped the batch before this record",
        )));
    }
    out.truncate(records.len());
    out
}

/// One HTTP answer inside a `$batch` answer.
#[derive(Debug, Default)]
struct HttpPart {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpPart {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The parts of a `multipart/mixed` `$batch` answer, in order (a change
/// set's parts inline).
fn batch_parts(response: &Response) -> Option<Vec<HttpPart>> {
    let boundary = boundary_of(response.header("content-type")?)?;
    let text = String::from_utf8_lossy(response.body()).into_owned();
    let mut out = Vec::new();
    parse_multipart(&text, &boundary, &mut out);
    Some(out)
}

fn boundary_of(content_type: &str) -> Option<String> {
    content_type.split(';').find_map(|p| {
        p.trim()
            .strip_prefix("boundary=")
            .map(|b| b.trim_matches('"').to_string())
    })
}

fn parse_multipart(text: &str, boundary: &str, out: &mut Vec<HttpPart>) {
    let delimiter = format!("--{boundary}");
    for chunk in text.split(delimiter.as_str()).skip(1) {
        if chunk.starts_with("--") {
            break;
        }
        // The part's own headers, then its content.
        let Some((head, content)) = split_blank(chunk) else {
            continue;
        };
        let content_type = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case("content-type")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default();
        if content_type.starts_with("multipart/mixed") {
            if let Some(inner) = boundary_of(&content_type) {
                parse_multipart(content, &inner, out);
            }
            continue;
        }
        if let Some(part) = parse_http(content) {
            out.push(part);
        }
    }
}

/// The text before and after the first blank line.
fn split_blank(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start_matches(['\r', '\n']);
    if let Some(i) = s.find("\r\n\r\n") {
        return Some((&s[..i], &s[i + 4..]));
    }
    s.find("\n\n").map(|i| (&s[..i], &s[i + 2..]))
}

/// `HTTP/1.1 204 No Content`, headers, blank line, body.
fn parse_http(content: &str) -> Option<HttpPart> {
    let (head, body) = split_blank(content).unwrap_or((content.trim(), ""));
    let mut lines = head.lines();
    let status: u16 = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    Some(HttpPart {
        status,
        headers,
        body: body.trim().to_string(),
    })
}

/// The GUID in `…/leads(GUID)`.
fn entity_id(url: &str) -> Option<String> {
    let open = url.rfind('(')?;
    let id = url[open + 1..].trim_end_matches(')');
    (!id.contains('=')).then(|| id.to_string())
}

/// `{"error":{"code","message"}}`.
fn error_of(body: &str) -> (String, String) {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    (
        v["error"]["code"].as_str().unwrap_or_default().to_string(),
        v["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| body.chars().take(300).collect()),
    )
}

/// The column a Dataverse error message names (`property 'x'`,
/// `'x' attribute`).
fn column_in(message: &str) -> Option<String> {
    for marker in ["property '", "the '", "attribute '"] {
        if let Some(i) = message.find(marker) {
            let rest = &message[i + marker.len()..];
            if let Some(end) = rest.find('\'') {
                return Some(rest[..end].to_string());
            }
        }
    }
    None
}

fn part_outcome(s: &Settings, p: &HttpPart) -> Part {
    let id = || {
        let body: Value = serde_json::from_str(&p.body).unwrap_or(Value::Null);
        body[s.id_column()]
            .as_str()
            .map(str::to_string)
            .or_else(|| p.header("odata-entityid").and_then(entity_id))
    };
    Part::Done(match p.status {
        201 => match id() {
            Some(id) => Outcome::Created(id),
            None => retry(None, "Dataverse created a row without naming it"),
        },
        200 | 204 => match id() {
            Some(id) => Outcome::Updated(id),
            None => retry(None, "Dataverse wrote a row without naming it"),
        },
        _ => {
            let (code, message) = error_of(&p.body);
            if code == DUPLICATE_DETECTED {
                return Part::Duplicate(message);
            }
            status_outcome(p.status, p.header("retry-after"), &code, &message)
        }
    })
}

/// The outcome of an error answer, a part's or the whole call's.
fn status_outcome(status: u16, retry_after: Option<&str>, code: &str, message: &str) -> Outcome {
    let says = format!("{code}: {message}");
    // (Seconds in the header; the SDK's parser answers milliseconds.)
    let after_ms = retry_after.and_then(leadgate_sdk::outcome::parse_retry_after_secs);
    match status {
        401 => auth_expired(format!("Dataverse refused the token ({says})")),
        429 => Outcome::RateLimited(after_ms.unwrap_or(DEFAULT_THROTTLE_MS)),
        408 | 500..=599 => retry(after_ms, format!("Dataverse answered {status}: {says}")),
        403 => forbidden("forbidden", format!("Dataverse refused access: {says}")),
        404 => misconfigured(
            "config",
            format!(
                "Dataverse has no such table or alternate key ({says}): check table and alternate-key"
            ),
        ),
        412 => conflict(
            "precondition_failed",
            format!("Dataverse refused the write to the row as it is now: {says}"),
        ),
        _ => rejected(
            // An unknown column (0x80048d19): the mapping names a column
            // the table does not have.
            if code == "0x80048d19" {
                RejectionKind::Config
            } else {
                RejectionKind::Validation
            },
            column_in(message).as_deref(),
            if code.is_empty() { "refused" } else { code },
            format!("Dataverse answered {status}: {says}"),
        ),
    }
}

fn call_failure(response: &Response) -> Outcome {
    let (code, message) = error_of(&response.text());
    let message = if response.status() == 401 {
        response
            .header("www-authenticate")
            .map(str::to_string)
            .unwrap_or(message)
    } else {
        message
    };
    status_outcome(
        response.status(),
        response.header("retry-after"),
        &code,
        &message,
    )
}

/// A duplicate detection rule refused the row: the row with the same email
/// is the record, else the refusal stands.
fn duplicate(s: &Settings, d: &Delivery, message: String) -> Outcome {
    let refused = || conflict("duplicate_detected", message.clone());
    let Some(email) = d
        .properties
        .iter()
        .find(|p| p.name == "emailaddress1" && !p.value.is_empty())
    else {
        return refused();
    };
    let id = s.id_column();
    let path = format!(
        "/{}?$select={id}&$filter={}&$top=1",
        s.table,
        url_encode(&format!("emailaddress1 eq '{}'", odata_quote(&email.value)))
    );
    match s.request("GET", &path).search().send() {
        Ok(r) if r.status() == 200 => r
            .json::<Value>()
            .ok()
            .and_then(|v| v["value"][0][id.as_str()].as_str().map(str::to_string))
            .map_or_else(refused, Outcome::DuplicateOf),
        Ok(r) => retry(
            None,
            format!("looking up the duplicate failed: {}", r.status()),
        ),
        Err(e) => from_http_error(&e),
    }
}

/// Reads back the rows `outcomes` says were written (by their keys) and
/// turns each one missing, or not holding what was sent, into a retry. A
/// failed read leaves the outcomes alone.
fn read_back(s: &Settings, records: &[&Delivery], outcomes: &mut HashMap<String, Outcome>) {
    let written = readback::written(records, outcomes);
    if written.is_empty() {
        return;
    }
    let id_column = s.id_column();
    let mut names: Vec<String> = written
        .iter()
        .flat_map(|(d, _)| compared(d, s).into_iter().map(|(k, _)| k))
        .collect();
    names.push(id_column.clone());
    names.push(s.key.clone());
    names.sort_unstable();
    names.dedup();
    let filter = written
        .iter()
        .map(|(d, _)| format!("{} eq '{}'", s.key, odata_quote(record_key(d))))
        .collect::<Vec<_>>()
        .join(" or ");
    let path = format!(
        "/{}?$select={}&$filter={}",
        s.table,
        names.join(","),
        url_encode(&filter)
    );
    let rows: Vec<Value> = match s.request("GET", &path).send() {
        Ok(r) if r.status() == 200 => match r.json::<Value>() {
            Ok(v) => v["value"].as_array().cloned().unwrap_or_default(),
            Err(_) => {
                log::warn("read-back skipped: unreadable answer");
                return;
            }
        },
        Ok(r) => {
            log::warn(&format!(
                "read-back skipped: Dataverse answered {}",
                r.status()
            ));
            return;
        }
        Err(e) => {
            log::warn(&format!("read-back skipped: {e}"));
            return;
        }
    };
    let by_id: HashMap<&str, &Value> = rows
        .iter()
        .filter_map(|r| Some((r[id_column.as_str()].as_str()?, r)))
        .collect();
    readback::judge(
        &written,
        &by_id,
        |d| compared(d, s),
        "emailaddress1",
        &format!("Dataverse {} row", s.table),
        outcomes,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadgate_sdk::testing::{self, TestHost};
    use leadgate_sdk::types::{Header, HttpResponse};
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
                p("lastname", "Doe"),
                p("emailaddress1", email),
                p("companyname", "Acme"),
                p("address1_city", "Oslo"),
            ],
        }
    }

    fn ctx(readback: &str) -> PushContext {
        PushContext {
            destination: "dynamics".into(),
            config: vec![
                ("org-url".into(), "https://acme.crm4.dynamics.com".into()),
                ("readback-percent".into(), readback.into()),
            ],
            attempt: 1,
        }
    }

    fn multipart(parts: &[&str]) -> HttpResponse {
        let b = "batchresponse_5f0c";
        let mut body = String::new();
        for p in parts {
            body.push_str(&format!(
                "--{b}\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n{p}\r\n"
            ));
        }
        body.push_str(&format!("--{b}--\r\n"));
        HttpResponse {
            status: 200,
            headers: vec![Header {
                name: "Content-Type".into(),
                value: format!("multipart/mixed; boundary={b}"),
            }],
            body: body.into_bytes(),
        }
    }

    #[test]
    fn a_lookup_is_bound_and_not_read_back() {
        testing::install(TestHost::new(|req| {
            if req.method == "POST" {
                let body = String::from_utf8(req.body.clone()).unwrap();
                assert!(
                    body.contains(r#""parentaccountid@odata.bind":"/accounts(00000000-0000-0000-0000-0000000000aa)""#),
                    "{body}"
                );
                return Ok(multipart(&[
                    "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n\r\n{\"leadid\":\"00000000-0000-0000-0000-000000000001\"}",
                ]));
            }
            // The read-back selects columns, not navigation properties.
            assert!(!req.url.contains("odata.bind"), "{}", req.url);
            Ok(HttpResponse {
                status: 200,
                headers: vec![],
                body: json!({"value": [{"leadid": "00000000-0000-0000-0000-000000000001",
                    "new_leadgateid": "p1/dyn/v1", "lastname": "Doe", "emailaddress1": "a@x.com",
                    "companyname": "Acme", "address1_city": "Oslo",
                    "_parentaccountid_value": "00000000-0000-0000-0000-0000000000aa"}]})
                .to_string()
                .into_bytes(),
            })
        }));
        let mut d = delivery("1", "p1/dyn/v1", "a@x.com");
        d.properties.push(Property {
            name: "parentaccountid@odata.bind".into(),
            value: "/accounts(00000000-0000-0000-0000-0000000000aa)".into(),
        });
        let out = Dynamics::push(vec![d], ctx("100"));
        assert_eq!(
            out[0].outcome,
            Outcome::Created("00000000-0000-0000-0000-000000000001".into())
        );
    }

    #[test]
    fn a_batch_upserts_each_person_by_its_key_and_reads_each_answer() {
        testing::install(TestHost::new(|req| {
            assert_eq!(req.method, "POST");
            assert_eq!(
                req.url,
                "https://acme.crm4.dynamics.com/api/data/v9.2/$batch"
            );
            let body = String::from_utf8(req.body.clone()).unwrap();
            assert!(body.contains(
                "PATCH https://acme.crm4.dynamics.com/api/data/v9.2/leads(new_leadgateid='p1%2Fdyn%2Fv1')?$select=leadid HTTP/1.1"
            ), "{body}");
            assert!(body.contains("'o''neil%2Fdyn%2Fv1'"), "{body}");
            let prefer = req.headers.iter().find(|h| h.name == "prefer").unwrap();
            assert_eq!(prefer.value, "odata.continue-on-error");
            Ok(multipart(&[
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"leadid\":\"00000000-0000-0000-0000-000000000001\"}",
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\r\n{\"error\":{\"code\":\"0x80044331\",\"message\":\"A validation error occurred. The length of the 'lastname' attribute of the 'lead' entity exceeded the maximum allowed length of '50'.\"}}",
                "HTTP/1.1 201 Created\r\nOData-EntityId: https://acme.crm4.dynamics.com/api/data/v9.2/leads(00000000-0000-0000-0000-000000000003)\r\n\r\n{\"leadid\":\"00000000-0000-0000-0000-000000000003\"}",
            ]))
        }));
        let out = Dynamics::push(
            vec![
                delivery("1", "p1/dyn/v1/r2", "a@x.com"),
                delivery("2", "o'neil/dyn/v1", "b@x.com"),
                delivery("3", "p3/dyn/v1", "c@x.com"),
            ],
            ctx("0"),
        );
        assert_eq!(
            out[0].outcome,
            Outcome::Updated("00000000-0000-0000-0000-000000000001".into())
        );
        assert!(
            matches!(&out[1].outcome, Outcome::Rejected(r)
                if r.field.as_deref() == Some("lastname") && r.rule == "0x80044331"),
            "{:?}",
            out[1].outcome
        );
        assert_eq!(
            out[2].outcome,
            Outcome::Created("00000000-0000-0000-0000-000000000003".into())
        );
    }

    #[test]
    fn a_detected_duplicate_is_the_row_with_its_email() {
        testing::install(TestHost::new(|req| {
            if req.method == "POST" {
                return Ok(multipart(&[
                    "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\r\n{\"error\":{\"code\":\"0x80040333\",\"message\":\"A record was not created or updated because a duplicate of the current record already exists.\"}}",
                ]));
            }
            assert!(
                req.url
                    .contains("/leads?$select=leadid&$filter=emailaddress1%20eq%20'a%40x.com'"),
                "{}",
                req.url
            );
            Ok(leadgate_sdk::testing::json_response(
                200,
                &json!({"value":[{"leadid":"00000000-0000-0000-0000-0000000000aa"}]}),
            ))
        }));
        let mut c = ctx("0");
        c.config.push(("duplicate-detection".into(), "true".into()));
        let out = Dynamics::push(vec![delivery("1", "p1/dyn/v1", "a@x.com")], c);
        assert_eq!(
            out[0].outcome,
            Outcome::DuplicateOf("00000000-0000-0000-0000-0000000000aa".into())
        );
    }

    #[test]
    fn throttling_tokens_and_an_early_stop() {
        testing::install(TestHost::new(|_| {
            Ok(HttpResponse {
                status: 429,
                headers: vec![Header {
                    name: "Retry-After".into(),
                    value: "7".into(),
                }],
                body: br#"{"error":{"code":"0x80072322","message":"Number of requests exceeded the limit of 6000 over time window of 300 seconds."}}"#.to_vec(),
            })
        }));
        let out = Dynamics::push(vec![delivery("1", "p1/dyn/v1", "a@x.com")], ctx("0"));
        assert_eq!(out[0].outcome, Outcome::RateLimited(7_000));

        testing::install(TestHost::new(|_| {
            Ok(HttpResponse {
                status: 401,
                headers: vec![Header {
                    name: "WWW-Authenticate".into(),
                    value:
                        "Bearer error=invalid_token, error_description=\"The access token expired\""
                            .into(),
                }],
                body: vec![],
            })
        }));
        let out = Dynamics::push(vec![delivery("1", "p1/dyn/v1", "a@x.com")], ctx("0"));
        assert!(matches!(&out[0].outcome, Outcome::Retry(r) if r.reason.contains("expired")));

        // The batch stopped after the first part: the second goes again.
        testing::install(TestHost::new(|_| {
            Ok(multipart(&[
                "HTTP/1.1 204 No Content\r\nOData-EntityId: https://acme.crm4.dynamics.com/api/data/v9.2/leads(00000000-0000-0000-0000-000000000001)\r\n\r\n",
            ]))
        }));
        let out = Dynamics::push(
            vec![
                delivery("1", "p1/dyn/v1", "a@x.com"),
                delivery("2", "p2/dyn/v1", "b@x.com"),
            ],
            ctx("0"),
        );
        assert_eq!(
            out[0].outcome,
            Outcome::Updated("00000000-0000-0000-0000-000000000001".into())
        );
        assert!(matches!(&out[1].outcome, Outcome::Retry(_)));
    }

    #[test]
    fn change_set_answers_are_read_inline() {
        let text = "--batchresponse_1\r\nContent-Type: multipart/mixed; boundary=changesetresponse_2\r\n\r\n\
            --changesetresponse_2\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\nOData-EntityId: x/leads(a)\r\n\r\n\r\n\
            --changesetresponse_2\r\nContent-Type: application/http\r\n\r\nHTTP/1.1 204 No Content\r\nOData-EntityId: x/leads(b)\r\n\r\n\r\n\
            --changesetresponse_2--\r\n--batchresponse_1--\r\n";
        let mut out = Vec::new();
        parse_multipart(text, "batchresponse_1", &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].header("odata-entityid"), Some("x/leads(b)"));
        assert_eq!(entity_id("x/leads(b)"), Some("b".into()));
    }
}
