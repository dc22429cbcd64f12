//! The one conversion boundary between `leadgate:plugin@0.1.0` and the
//! host's types (those of the current package, 0.2.0).
//!
//! A component built against 0.1.0 keeps working after a host upgrade:
//! its imports are served by delegating to the current ones, and what it
//! exports is read into the current types here, and nowhere else. What
//! 0.1.0 left to conventions becomes typed on the way in:
//!
//! | 0.1.0 | 0.2.0 |
//! | --- | --- |
//! | a request's kind, unsaid | `/search` in the path → search; GET/HEAD → read; else write |
//! | a rate-limit window named `search` | a window counting searches only |
//! | `retry { after-ms: some(0) }` | retry kind `held-back` |
//! | a retry reason starting `readback:` | retry kind `readback-mismatch` |
//! | `rejected` with rule `config` | rejection kind `config` |
//! | `rejected` naming a field | rejection kind `validation` |
//! | any other `rejected` | rejection kind `other` |
//! | no auth declaration | auth scheme `undeclared` |

use crate::bindings::adapter::exports::leadgate::plugin::adapter as now_adapter;
use crate::bindings::adapter::leadgate::plugin as now;
use crate::bindings::v0_1::adapter::exports::leadgate::plugin::adapter as wit;
use crate::bindings::v0_1::adapter::leadgate::plugin::{clock, crypto, http, kv, log, types};
use crate::imports::CallState;
use crate::types::*;

/// How a 0.1.0 adapter's retry reason starts when a read-back found the
/// write missing or different.
pub const READBACK_PREFIX: &str = "readback:";

impl types::Host for CallState {}

impl http::Host for CallState {
    async fn send(
        &mut self,
        request: types::HttpRequest,
    ) -> Result<types::HttpResponse, types::HttpError> {
        let path = url::Url::parse(&request.url)
            .map(|u| u.path().to_string())
            .unwrap_or_default();
        let kind = RequestKind::guess(&request.method, &path);
        let request = now::types::HttpRequest {
            method: request.method,
            url: request.url,
            headers: request
                .headers
                .into_iter()
                .map(|h| now::types::Header {
                    name: h.name,
                    value: h.value,
                })
                .collect(),
            body: request.body,
            timeout_ms: request.timeout_ms,
            kind: crate::imports::to_wit_kind(kind),
        };
        match now::http::Host::send(self, request).await {
            Ok(r) => Ok(types::HttpResponse {
                status: r.status,
                headers: r
                    .headers
                    .into_iter()
                    .map(|h| types::Header {
                        name: h.name,
                        value: h.value,
                    })
                    .collect(),
                body: r.body,
            }),
            Err(e) => Err(match e {
                now::types::HttpError::HostNotAllowed(h) => types::HttpError::HostNotAllowed(h),
                now::types::HttpError::SecretNotGranted(s) => types::HttpError::SecretNotGranted(s),
                now::types::HttpError::InvalidRequest(m) => types::HttpError::InvalidRequest(m),
                now::types::HttpError::Timeout => types::HttpError::Timeout,
                now::types::HttpError::ResponseTooLarge(n) => types::HttpError::ResponseTooLarge(n),
                now::types::HttpError::Transport(m) => types::HttpError::Transport(m),
            }),
        }
    }
}

impl crypto::Host for CallState {
    async fn hmac_sha256(
        &mut self,
        secret_name: String,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, crypto::CryptoError> {
        now::crypto::Host::hmac_sha256(self, secret_name, data)
            .await
            .map_err(|now::crypto::CryptoError::SecretNotGranted(s)| {
                crypto::CryptoError::SecretNotGranted(s)
            })
    }

    async fn constant_time_eq(&mut self, a: Vec<u8>, b: Vec<u8>) -> bool {
        crate::imports::constant_time_eq(&a, &b)
    }
}

impl log::Host for CallState {
    async fn log(&mut self, level: log::Level, message: String) {
        let level = match level {
            log::Level::Trace => now::log::Level::Trace,
            log::Level::Debug => now::log::Level::Debug,
            log::Level::Info => now::log::Level::Info,
            log::Level::Warn => now::log::Level::Warn,
            log::Level::Error => now::log::Level::Error,
        };
        now::log::Host::log(self, level, message).await
    }
}

impl clock::Host for CallState {
    async fn now_ms(&mut self) -> u64 {
        now::clock::Host::now_ms(self).await
    }
}

impl kv::Host for CallState {
    async fn get(&mut self, key: String) -> Option<Vec<u8>> {
        now::kv::Host::get(self, key).await
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) {
        now::kv::Host::set(self, key, value, ttl_ms).await
    }

    async fn delete(&mut self, key: String) {
        now::kv::Host::delete(self, key).await
    }
}

/// A 0.1.0 adapter's self-description, read as a 0.2.0 one: a window
/// named `search` counts searches; no concurrency cap; the auth scheme
/// undeclared.
pub(crate) fn info(i: wit::AdapterInfo) -> AdapterInfo {
    let current = now_adapter::AdapterInfo {
        name: i.name,
        version: i.version,
        description: i.description,
        max_batch_size: i.max_batch_size,
        upsert_key: i.upsert_key,
        required_properties: i.required_properties,
        supports_webhooks: i.supports_webhooks,
        config_keys: i.config_keys,
        secrets: i.secrets,
        default_hosts: i.default_hosts,
        rate_limits: i
            .rate_limits
            .into_iter()
            .map(|r| now_adapter::RateLimit {
                kinds: if r.name.eq_ignore_ascii_case("search") {
                    vec![now::types::RequestKind::Search]
                } else {
                    vec![]
                },
                name: r.name,
                max_requests: r.max_requests,
                window_ms: r.window_ms,
            })
            .collect(),
        max_concurrent: None,
        auth: now_adapter::AuthScheme::None,
    };
    AdapterInfo {
        auth: AuthScheme::Undeclared,
        ..crate::plugin::from_wit_info(current)
    }
}

/// A 0.1.0 adapter's outcome, its conventions typed.
pub(crate) fn outcome(o: wit::Outcome) -> Outcome {
    match o {
        wit::Outcome::Created(id) => Outcome::Created(id),
        wit::Outcome::Updated(id) => Outcome::Updated(id),
        wit::Outcome::DuplicateOf(id) => Outcome::DuplicateOf(id),
        wit::Outcome::Rejected(r) => Outcome::Rejected(Rejection {
            kind: if r.rule == "config" {
                RejectionKind::Config
            } else if r.field.is_some() {
                RejectionKind::Validation
            } else {
                RejectionKind::Other
            },
            field: r.field,
            rule: r.rule,
            message: r.message,
        }),
        wit::Outcome::Retry(r) => {
            let (kind, reason) = if r.after_ms == Some(0) {
                (RetryKind::HeldBack, r.reason)
            } else if let Some(rest) = r.reason.strip_prefix(READBACK_PREFIX) {
                (RetryKind::ReadbackMismatch, rest.trim_start().to_string())
            } else {
                (RetryKind::Transient, r.reason)
            };
            Outcome::Retry {
                kind,
                after_ms: r.after_ms.filter(|_| kind != RetryKind::HeldBack),
                reason,
            }
        }
        wit::Outcome::RateLimited(ms) => Outcome::RateLimited { after_ms: ms },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(after_ms: Option<u64>, reason: &str) -> wit::Outcome {
        wit::Outcome::Retry(wit::RetryInfo {
            after_ms,
            reason: reason.into(),
        })
    }

    #[test]
    fn conventions_of_0_1_become_kinds() {
        assert_eq!(
            outcome(retry(
                Some(0),
                "an earlier record of this person goes first"
            )),
            Outcome::Retry {
                kind: RetryKind::HeldBack,
                after_ms: None,
                reason: "an earlier record of this person goes first".into()
            }
        );
        assert_eq!(
            outcome(retry(None, "readback: contact 7 holds another email")),
            Outcome::Retry {
                kind: RetryKind::ReadbackMismatch,
                after_ms: None,
                reason: "contact 7 holds another email".into()
            }
        );
        assert_eq!(
            outcome(retry(Some(2000), "HTTP 503")),
            Outcome::Retry {
                kind: RetryKind::Transient,
                after_ms: Some(2000),
                reason: "HTTP 503".into()
            }
        );
        let rejected = |field: Option<&str>, rule: &str| match outcome(wit::Outcome::Rejected(
            wit::Rejection {
                field: field.map(str::to_string),
                rule: rule.into(),
                message: "m".into(),
            },
        )) {
            Outcome::Rejected(r) => r.kind,
            other => panic!("{other:?}"),
        };
        assert_eq!(rejected(None, "config"), RejectionKind::Config);
        assert_eq!(
            rejected(Some("email"), "invalid_email"),
            RejectionKind::Validation
        );
        assert_eq!(rejected(None, "http_403"), RejectionKind::Other);
    }

    #[test]
    fn a_window_named_search_counts_searches() {
        let i = info(wit::AdapterInfo {
            name: "old".into(),
            version: "1.0.0".into(),
            description: String::new(),
            max_batch_size: 0,
            upsert_key: "email".into(),
            required_properties: vec![],
            supports_webhooks: false,
            config_keys: vec![],
            secrets: vec!["access-token".into()],
            default_hosts: vec![],
            rate_limits: vec![
                wit::RateLimit {
                    name: "burst".into(),
                    max_requests: 190,
                    window_ms: 10_000,
                },
                wit::RateLimit {
                    name: "Search".into(),
                    max_requests: 5,
                    window_ms: 1_000,
                },
            ],
        });
        assert_eq!(i.max_batch_size, 1);
        assert_eq!(i.auth, AuthScheme::Undeclared);
        assert!(i.rate_limits[0].kinds.is_empty());
        assert_eq!(i.rate_limits[1].kinds, vec![RequestKind::Search]);
        assert_eq!(
            RequestKind::guess("POST", "/crm/v3/objects/contacts/search"),
            RequestKind::Search
        );
        assert_eq!(
            RequestKind::guess("GET", "/crm/v3/objects/contacts/1"),
            RequestKind::Read
        );
        assert_eq!(
            RequestKind::guess("PATCH", "/crm/v3/objects/contacts/1"),
            RequestKind::Write
        );
    }
}
