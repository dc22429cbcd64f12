//! The OAuth 2.0 token endpoints of the CRMs that need one
//! (`shared/crm-apis.md` §2.1, §4.1, §5.1), on the simulator's port:
//!
//! - Salesforce, `POST /services/oauth2/token`: `refresh_token` grant; the
//!   answer carries `instance_url` (where to call the API) and no
//!   `expires_in` (a session lasts until it times out); a bad refresh
//!   token is `400 {"error":"invalid_grant",…}`.
//! - Microsoft Entra ID (Dynamics 365), `POST /{tenant}/oauth2/v2.0/token`:
//!   `client_credentials` and `refresh_token` grants; `expires_in` and
//!   `ext_expires_in`; errors carry `AADSTS` codes (`invalid_grant` 400,
//!   `invalid_client` 401).
//! - Zoho Accounts, `POST /oauth/v2/token`: parameters in the query string
//!   or the form body; `api_domain` and `expires_in: 3600`; a bad refresh
//!   token is `200 {"error":"invalid_code"}` (Zoho answers errors here
//!   with 200).
//!
//! Client credentials go in the form (`client_id`, `client_secret`) or in
//! `Authorization: Basic`. Refresh-token rotation can be turned on per
//! vendor: the answer then carries a new `refresh_token` and the old one
//! stops working. Access tokens expire, can be expired at once, and are
//! checked by [`OAuthState::access_valid`]. Every call is counted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use base64::Engine as _;
use serde::Serialize;
use serde_json::{Value, json};

use crate::Shared;
use crate::errors::json_response;

/// The client every vendor knows by default.
pub const DEFAULT_CLIENT_ID: &str = "sim-client";
pub const DEFAULT_CLIENT_SECRET: &str = "sim-client-secret";
/// A refresh token every vendor accepts until it is rotated or revoked.
pub const DEFAULT_REFRESH_TOKEN: &str = "sim-refresh-token";

/// Whose authorization server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Vendor {
    Salesforce,
    Entra,
    Zoho,
}

impl Vendor {
    /// Access-token lifetime: Entra's and Zoho's `expires_in`; Salesforce's
    /// session timeout (not sent).
    fn lifetime_ms(self) -> u64 {
        match self {
            Vendor::Salesforce => 2 * 3_600_000,
            Vendor::Entra => 3_599_000,
            Vendor::Zoho => 3_600_000,
        }
    }
}

#[derive(Debug)]
struct Access {
    vendor: Vendor,
    expires_at_ms: u64,
}

/// The authorization servers' state.
#[derive(Debug)]
pub(crate) struct OAuthState {
    clients: HashMap<String, String>,
    /// Live refresh tokens and their vendor (`None`: any vendor).
    refresh: HashMap<String, Option<Vendor>>,
    access: HashMap<String, Access>,
    rotate: BTreeMap<Vendor, bool>,
    calls: BTreeMap<Vendor, u64>,
    issued: u64,
}

impl Default for OAuthState {
    fn default() -> Self {
        OAuthState {
            clients: HashMap::from([(DEFAULT_CLIENT_ID.into(), DEFAULT_CLIENT_SECRET.into())]),
            refresh: HashMap::from([(DEFAULT_REFRESH_TOKEN.into(), None)]),
            access: HashMap::new(),
            rotate: BTreeMap::new(),
            calls: BTreeMap::new(),
            issued: 0,
        }
    }
}

impl OAuthState {
    /// Whether `token` is a live access token of `vendor`.
    pub fn access_valid(&self, vendor: Vendor, token: &str, now_ms: u64) -> bool {
        self.access
            .get(token)
            .is_some_and(|a| a.vendor == vendor && a.expires_at_ms > now_ms)
    }

    /// Whether `token` is a live access token of `vendor`; if so its
    /// lifetime starts again, as a Salesforce session's idle timeout
    /// restarts with every call.
    pub fn touch(&mut self, vendor: Vendor, token: &str, now_ms: u64) -> bool {
        match self.access.get_mut(token) {
            Some(a) if a.vendor == vendor && a.expires_at_ms > now_ms => {
                a.expires_at_ms = now_ms + vendor.lifetime_ms();
                true
            }
            _ => false,
        }
    }

    pub fn set_rotation(&mut self, vendor: Vendor, on: bool) {
        self.rotate.insert(vendor, on);
    }

    /// Token calls received, per vendor.
    pub fn calls(&self, vendor: Vendor) -> u64 {
        self.calls.get(&vendor).copied().unwrap_or(0)
    }

    /// Every refresh token stops working (a revoked app).
    pub fn revoke_refresh_tokens(&mut self) {
        self.refresh.clear();
    }

    pub fn add_refresh_token(&mut self, token: &str, vendor: Option<Vendor>) {
        self.refresh.insert(token.into(), vendor);
    }

    /// Every access token issued so far expires now.
    pub fn expire_access_tokens(&mut self) {
        self.access.clear();
    }

    /// The live refresh tokens of `vendor` (those any vendor takes too).
    pub fn refresh_tokens(&self, vendor: Vendor) -> Vec<String> {
        let mut live: Vec<String> = self
            .refresh
            .iter()
            .filter(|(_, v)| v.is_none_or(|v| v == vendor))
            .map(|(t, _)| t.clone())
            .collect();
        live.sort();
        live
    }

    fn issue(&mut self, vendor: Vendor, now_ms: u64) -> String {
        self.issued += 1;
        let token = match vendor {
            Vendor::Salesforce => format!("00Dsim0000000001!AQ.{:016x}", self.issued),
            Vendor::Entra => format!("eyJ0eXAiOiJKV1QifQ.sim{:016x}.sig", self.issued),
            Vendor::Zoho => format!("1000.{:032x}", self.issued),
        };
        self.access.insert(
            token.clone(),
            Access {
                vendor,
                expires_at_ms: now_ms + vendor.lifetime_ms(),
            },
        );
        token
    }

    /// Checks the grant and issues; `Err` is the vendor's error code.
    fn grant(
        &mut self,
        vendor: Vendor,
        params: &HashMap<String, String>,
        basic: Option<(String, String)>,
        now_ms: u64,
    ) -> Result<Issued, &'static str> {
        *self.calls.entry(vendor).or_default() += 1;
        let (id, secret) = match basic {
            Some(pair) => (Some(pair.0), Some(pair.1)),
            None => (
                params.get("client_id").cloned(),
                params.get("client_secret").cloned(),
            ),
        };
        let Some(known) = id.as_ref().and_then(|id| self.clients.get(id)) else {
            return Err("invalid_client_id");
        };
        if secret.as_deref() != Some(known.as_str()) {
            return Err("invalid_client");
        }
        let grant = params.get("grant_type").map(String::as_str);
        let mut refresh_token = None;
        match (vendor, grant) {
            (_, Some("refresh_token")) => {
                let token = params.get("refresh_token").cloned().unwrap_or_default();
                match self.refresh.get(&token) {
                    Some(v) if v.is_none_or(|v| v == vendor) => {}
                    _ => return Err("invalid_grant"),
                }
                // Entra always rotates on a refresh; the others when asked.
                if vendor == Vendor::Entra || self.rotate.get(&vendor).copied().unwrap_or(false) {
                    self.refresh.remove(&token);
                    self.issued += 1;
                    let new = format!("sim-rt-{:016x}", self.issued);
                    self.refresh.insert(new.clone(), Some(vendor));
                    refresh_token = Some(new);
                }
            }
            (Vendor::Entra, Some("client_credentials")) => {
                if !params
                    .get("scope")
                    .is_some_and(|s| s.ends_with("/.default"))
                {
                    return Err("invalid_scope");
                }
            }
            _ => return Err("unsupported_grant_type"),
        }
        Ok(Issued {
            access_token: self.issue(vendor, now_ms),
            refresh_token,
        })
    }
}

struct Issued {
    access_token: String,
    refresh_token: Option<String>,
}

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/services/oauth2/token", post(salesforce))
        .route("/{tenant}/oauth2/v2.0/token", post(entra))
        .route("/oauth/v2/token", post(zoho))
}

/// The form body's and the query string's parameters (the body wins).
fn params(query: Option<&str>, body: &[u8]) -> HashMap<String, String> {
    let mut all: HashMap<String, String> = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect();
    all.extend(form_urlencoded::parse(body).into_owned());
    all
}

/// `Authorization: Basic base64(id:secret)`, if sent.
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_string(), secret.to_string()))
}

/// This server's own base URL, as the caller reached it.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

fn grant(
    shared: &Shared,
    vendor: Vendor,
    query: Option<String>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Issued, &'static str> {
    let params = params(query.as_deref(), body);
    shared
        .lock()
        .oauth
        .grant(vendor, &params, basic(headers), crate::now_ms())
}

async fn salesforce(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match grant(&shared, Vendor::Salesforce, query, &headers, &body) {
        Ok(issued) => {
            let base = base_url(&headers);
            let mut answer = json!({
                "access_token": issued.access_token,
                "signature": "c2ltLXNpZ25hdHVyZQ==",
                "scope": "api refresh_token",
                "instance_url": base,
                "id": format!("{base}/id/00Dsim0000000001AAA/005sim0000000001AAA"),
                "token_type": "Bearer",
                "issued_at": crate::now_ms().to_string(),
            });
            if let Some(rt) = issued.refresh_token {
                answer["refresh_token"] = rt.into();
            }
            json_response(StatusCode::OK, &answer)
        }
        Err(code) => {
            let description = match code {
                "invalid_grant" => "expired access/refresh token",
                "invalid_client_id" => "client identifier invalid",
                "invalid_client" => "invalid client credentials",
                _ => "grant type not supported",
            };
            json_response(
                StatusCode::BAD_REQUEST,
                &json!({"error": code, "error_description": description}),
            )
        }
    }
}

async fn entra(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match grant(&shared, Vendor::Entra, query, &headers, &body) {
        Ok(issued) => {
            let mut answer = json!({
                "token_type": "Bearer",
                "expires_in": Vendor::Entra.lifetime_ms() / 1000,
                "ext_expires_in": Vendor::Entra.lifetime_ms() / 1000,
                "access_token": issued.access_token,
            });
            if let Some(rt) = issued.refresh_token {
                answer["refresh_token"] = rt.into();
                answer["scope"] = "https://sim.crm.dynamics.com/user_impersonation".into();
            }
            json_response(StatusCode::OK, &answer)
        }
        Err(code) => {
            let (status, error, aadsts, text) = match code {
                "invalid_grant" => (
                    StatusCode::BAD_REQUEST,
                    "invalid_grant",
                    70000,
                    "The provided value for the 'refresh_token' is not valid.",
                ),
                "invalid_client_id" => (
                    StatusCode::BAD_REQUEST,
                    "unauthorized_client",
                    700016,
                    "Application was not found in the directory.",
                ),
                "invalid_client" => (
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    7000215,
                    "Invalid client secret provided.",
                ),
                "invalid_scope" => (
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    1002012,
                    "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.",
                ),
                _ => (
                    StatusCode::BAD_REQUEST,
                    "unsupported_grant_type",
                    70003,
                    "The app requested an unsupported grant type.",
                ),
            };
            let trace = uuid::Uuid::now_v7();
            json_response(
                status,
                &json!({
                    "error": error,
                    "error_description": format!("AADSTS{aadsts}: {text} Trace ID: {trace} Tenant: {tenant}"),
                    "error_codes": [aadsts],
                    "timestamp": time::OffsetDateTime::now_utc()
                        .format(&time::format_description::well_known::Rfc3339)
                        .unwrap_or_default(),
                    "trace_id": trace.to_string(),
                    "correlation_id": uuid::Uuid::now_v7().to_string(),
                }),
            )
        }
    }
}

async fn zoho(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer: Value = match grant(&shared, Vendor::Zoho, query, &headers, &body) {
        Ok(issued) => {
            let mut answer = json!({
                "access_token": issued.access_token,
                "scope": "ZohoCRM.modules.ALL ZohoCRM.settings.ALL",
                "api_domain": base_url(&headers),
                "token_type": "Bearer",
                "expires_in": Vendor::Zoho.lifetime_ms() / 1000,
            });
            if let Some(rt) = issued.refresh_token {
                answer["refresh_token"] = rt.into();
            }
            answer
        }
        // Zoho answers a refused grant with 200 and an error field.
        Err("invalid_grant") => json!({"error": "invalid_code"}),
        Err("invalid_client_id" | "invalid_client") => json!({"error": "invalid_client"}),
        Err(_) => json!({"error": "unsupported_grant_type"}),
    };
    json_response(StatusCode::OK, &answer)
}
