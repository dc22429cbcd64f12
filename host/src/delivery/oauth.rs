//! OAuth 2.0, owned by the host: a destination's access token, obtained
//! with its configured grant, cached, refreshed before it expires and once
//! when the CRM refuses it, and never shown to the adapter.
//!
//! - Single flight: the token lives behind one async lock, so fifty
//!   deliveries that find it expired cause one call to the token endpoint;
//!   the others wait and take the new token.
//! - Where to call: what the token answer says (Salesforce `instance_url`,
//!   Zoho `api_domain`) is kept with the token.
//! - Rotation: a refresh token that comes back in the answer replaces the
//!   old one in the store before the access token is handed out, so a
//!   crash right after the refresh does not lose the only valid token. The
//!   stored one is used instead of the configured one until the
//!   configuration names another (a new authorization).
//! - Refusal: `invalid_grant`, `invalid_client` and the like pause the
//!   source ([`OAuthError::Refused`]): no more calls to the token endpoint
//!   (a revoked token is not retried thousands of times) until
//!   [`TokenSource::resume`], while the destination's jobs wait.
//! - Outage: after a failed token call the source answers the same error
//!   for a while (5 s, doubling to 5 min) instead of calling again for
//!   every delivery round.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Mutex;

use crate::config::{OAuthConfig, OAuthGrant, resolve_secret};
use crate::store::{Store, StoreError, StoredRefreshToken};

/// A token this close to its expiry is refreshed before use.
const REFRESH_MARGIN_MS: i64 = 60_000;
/// Longest wait for the token endpoint.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(30);
/// After a failed token call, no other for this long (doubling with each
/// failure in a row, up to `UNAVAILABLE_MAX_MS`).
const UNAVAILABLE_FIRST_MS: i64 = 5_000;
const UNAVAILABLE_MAX_MS: i64 = 300_000;

/// An access token and where it says to call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessToken {
    pub token: String,
    /// Milliseconds since the epoch; `None` when the answer gave no
    /// lifetime (Salesforce: valid until the CRM refuses it).
    pub expires_at_ms: Option<i64>,
    /// Salesforce's `instance_url`.
    pub instance_url: Option<String>,
    /// Zoho's `api_domain`.
    pub api_domain: Option<String>,
    /// Counts the tokens this source obtained; a caller refused with
    /// token `n` asks for a token newer than `n`.
    pub generation: u64,
}

/// Why there is no token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// The authorization server refused the grant (`invalid_grant`,
    /// `invalid_client`, …): the destination waits for a configuration
    /// fix or a resume; no more token calls until then.
    #[error("OAuth grant refused by {url}: {code}: {description}")]
    Refused {
        url: String,
        code: String,
        description: String,
    },
    /// The token endpoint could not be reached or failed (5xx, timeout,
    /// an answer that is not a token): try again later.
    #[error("OAuth token endpoint {url} unavailable: {reason}")]
    Unavailable { url: String, reason: String },
    /// The store could not keep a rotated refresh token; the access token
    /// that came with it is not used.
    #[error("keeping the rotated refresh token failed: {0}")]
    Store(String),
    /// The configuration's secrets cannot be read.
    #[error("OAuth configuration: {0}")]
    Config(String),
}

impl From<StoreError> for OAuthError {
    fn from(e: StoreError) -> Self {
        OAuthError::Store(e.to_string())
    }
}

/// One destination's token source.
pub struct TokenSource {
    destination: String,
    config: OAuthConfig,
    http: reqwest::Client,
    store: Arc<dyn Store>,
    state: Mutex<State>,
    /// Set while the grant is refused (read without waiting for a token
    /// call, for the status pages).
    refused: std::sync::Mutex<Option<OAuthError>>,
    calls: AtomicU64,
}

#[derive(Default)]
struct State {
    token: Option<AccessToken>,
    generation: u64,
    /// The last failure of the token endpoint, answered until the time
    /// (ms) it holds, and how many failed in a row.
    unavailable: Option<(OAuthError, i64, u32)>,
}

/// A token endpoint's answer: a token, or an error (Zoho sends its errors
/// with status 200).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<serde_json::Value>,
    instance_url: Option<String>,
    api_domain: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Error codes that no retry can fix.
fn is_refusal(code: &str) -> bool {
    matches!(
        code,
        "invalid_grant"
            | "invalid_client"
            | "invalid_client_id"
            | "unauthorized_client"
            | "invalid_code"
            | "invalid_scope"
            | "unsupported_grant_type"
            | "access_denied"
            | "inactive_user"
            | "inactive_org"
    )
}

impl TokenSource {
    pub fn new(
        destination: &str,
        config: OAuthConfig,
        store: Arc<dyn Store>,
    ) -> Result<TokenSource, OAuthError> {
        config
            .validate(&format!("destinations.{destination}.oauth"))
            .map_err(|e| OAuthError::Config(e.to_string()))?;
        leadgate_runtime::outbound::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(TOKEN_TIMEOUT)
            .build()
            .map_err(|e| OAuthError::Config(e.to_string()))?;
        Ok(TokenSource {
            destination: destination.to_string(),
            config,
            http,
            store,
            state: Mutex::new(State::default()),
            refused: std::sync::Mutex::new(None),
            calls: AtomicU64::new(0),
        })
    }

    fn refusal(&self) -> Option<OAuthError> {
        self.refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_refusal(&self, refusal: Option<OAuthError>) {
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = refusal;
    }

    /// A token valid for at least another minute as far as its lifetime
    /// says: the cached one, or a new one (one call at a time).
    pub async fn token(&self) -> Result<AccessToken, OAuthError> {
        let mut state = self.state.lock().await;
        if let Some(refused) = self.refusal() {
            return Err(refused);
        }
        if let Some(token) = &state.token
            && token
                .expires_at_ms
                .is_none_or(|at| at - REFRESH_MARGIN_MS > crate::now_ms())
        {
            return Ok(token.clone());
        }
        self.obtain(&mut state).await
    }

    /// The CRM refused token `generation` (a 401): a newer token. Only the
    /// first caller refused with a generation calls the endpoint; the
    /// others get what it obtained.
    pub async fn refused(&self, generation: u64) -> Result<AccessToken, OAuthError> {
        let mut state = self.state.lock().await;
        if let Some(refused) = self.refusal() {
            return Err(refused);
        }
        if let Some(token) = &state.token
            && token.generation > generation
        {
            return Ok(token.clone());
        }
        self.obtain(&mut state).await
    }

    /// Lets a refused source call the token endpoint again (after the
    /// configuration was fixed, or the operator asked).
    pub async fn resume(&self) {
        let mut state = self.state.lock().await;
        self.set_refusal(None);
        state.token = None;
        state.unavailable = None;
    }

    /// Why the source is paused, if it is.
    pub fn paused(&self) -> Option<OAuthError> {
        self.refusal()
    }

    /// Calls made to the token endpoint.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The refresh token to use: the stored descendant of the configured
    /// one, else the configured one.
    async fn refresh_token(&self) -> Result<(String, String), OAuthError> {
        let configured = self
            .config
            .refresh_token
            .as_deref()
            .map(resolve_secret)
            .transpose()
            .map_err(OAuthError::Config)?
            .ok_or_else(|| OAuthError::Config("no refresh_token configured".into()))?;
        let configured_hash = crate::sha256_hex(configured.as_bytes(), 32);
        let stored = self.store.oauth_refresh_token(&self.destination).await?;
        Ok(match stored {
            Some(s) if s.configured_hash == configured_hash => (s.refresh_token, configured_hash),
            _ => (configured, configured_hash),
        })
    }

    /// A new token, unless the endpoint failed moments ago (then that
    /// failure again).
    async fn obtain(&self, state: &mut State) -> Result<AccessToken, OAuthError> {
        let now = crate::now_ms();
        if let Some((e, until, _)) = &state.unavailable
            && now < *until
        {
            return Err(e.clone());
        }
        let result = self.call_endpoint(state).await;
        match &result {
            Err(e @ (OAuthError::Unavailable { .. } | OAuthError::Store(_))) => {
                let failures = state.unavailable.as_ref().map_or(0, |u| u.2) + 1;
                let wait = (UNAVAILABLE_FIRST_MS << (failures - 1).min(16)).min(UNAVAILABLE_MAX_MS);
                tracing::warn!(destination = %self.destination, error = %e, retry_in_ms = wait, "no OAuth access token");
                state.unavailable = Some((e.clone(), crate::now_ms() + wait, failures));
            }
            _ => state.unavailable = None,
        }
        result
    }

    async fn call_endpoint(&self, state: &mut State) -> Result<AccessToken, OAuthError> {
        let url = self.config.token_url.clone();
        let secret = resolve_secret(&self.config.client_secret).map_err(OAuthError::Config)?;
        let mut form = vec![
            ("client_id", self.config.client_id.clone()),
            ("client_secret", secret),
        ];
        let mut lineage = None;
        match self.config.grant {
            OAuthGrant::RefreshToken => {
                let (token, configured_hash) = self.refresh_token().await?;
                form.push(("grant_type", "refresh_token".into()));
                form.push(("refresh_token", token));
                lineage = Some(configured_hash);
            }
            OAuthGrant::ClientCredentials => {
                form.push(("grant_type", "client_credentials".into()));
            }
        }
        if let Some(scope) = &self.config.scope {
            form.push(("scope", scope.clone()));
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let unavailable = |reason: String| OAuthError::Unavailable {
            url: url.clone(),
            reason,
        };
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&form)
            .finish();
        let response = self
            .http
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| unavailable(e.without_url().to_string()))?;
        let answer: Option<TokenAnswer> = serde_json::from_slice(&body).ok();
        if let Some(code) = answer.as_ref().and_then(|a| a.error.clone())
            && (status.is_client_error() || status.is_success())
        {
            let description = answer
                .as_ref()
                .and_then(|a| a.error_description.clone())
                .unwrap_or_default();
            if is_refusal(&code) {
                let refused = OAuthError::Refused {
                    url: url.clone(),
                    code,
                    description,
                };
                tracing::error!(destination = %self.destination, error = %refused, "OAuth grant refused; the destination waits for a fix or a resume");
                self.set_refusal(Some(refused.clone()));
                state.token = None;
                return Err(refused);
            }
            return Err(unavailable(format!("{status}: {code}: {description}")));
        }
        let Some(answer) = answer.filter(|a| status.is_success() && a.access_token.is_some())
        else {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            return Err(unavailable(format!("{status}: {text}")));
        };
        // A rotated refresh token is kept before anything is used.
        if let (Some(new), Some(configured_hash)) = (&answer.refresh_token, lineage) {
            self.store
                .set_oauth_refresh_token(
                    &self.destination,
                    &StoredRefreshToken {
                        refresh_token: new.clone(),
                        configured_hash,
                    },
                    crate::now_ms(),
                )
                .await?;
        }
        let expires_in_s = answer.expires_in.as_ref().and_then(|v| match v {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        });
        state.generation += 1;
        // A refresh answer without them keeps where the last token said
        // to call (losing Salesforce's instance_url on a refresh would
        // send every call to the wrong host).
        let previous = state.token.take();
        let token = AccessToken {
            token: answer.access_token.unwrap_or_default(),
            expires_at_ms: expires_in_s.map(|s| crate::now_ms() + s * 1000),
            instance_url: answer
                .instance_url
                .or_else(|| previous.as_ref().and_then(|p| p.instance_url.clone())),
            api_domain: answer
                .api_domain
                .or_else(|| previous.as_ref().and_then(|p| p.api_domain.clone())),
            generation: state.generation,
        };
        state.token = Some(token.clone());
        Ok(token)
    }
}
