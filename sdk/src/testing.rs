//! A native stand-in for the host, so adapters can be unit-tested with
//! `cargo test` without wasm. Install a [`TestHost`] for the current thread,
//! run the adapter's functions, inspect what it sent and logged.

use std::cell::RefCell;
use std::collections::HashMap;

use crate::bindings::leadgate::plugin::crypto::CryptoError;
use crate::bindings::leadgate::plugin::log::Level;
use crate::types::{HttpError, HttpRequest, HttpResponse};

type HttpHandler = Box<dyn FnMut(&HttpRequest) -> Result<HttpResponse, HttpError>>;

/// What the host would be, for one test.
pub struct TestHost {
    handler: HttpHandler,
    /// Requests the adapter sent, secret placeholders intact.
    pub requests: Vec<HttpRequest>,
    pub secrets: HashMap<String, String>,
    pub kv: HashMap<String, Vec<u8>>,
    pub logs: Vec<(Level, String)>,
    pub now_ms: u64,
}

impl TestHost {
    /// A host whose HTTP import answers with `handler`.
    pub fn new(
        handler: impl FnMut(&HttpRequest) -> Result<HttpResponse, HttpError> + 'static,
    ) -> Self {
        TestHost {
            handler: Box::new(handler),
            requests: Vec::new(),
            secrets: HashMap::new(),
            kv: HashMap::new(),
            logs: Vec::new(),
            now_ms: 1_700_000_000_000,
        }
    }

    pub fn with_secret(mut self, name: &str, value: &str) -> Self {
        self.secrets.insert(name.to_string(), value.to_string());
        self
    }

    pub(crate) fn http(&mut self, request: &HttpRequest) -> Result<HttpResponse, HttpError> {
        self.requests.push(request.clone());
        (self.handler)(request)
    }

    pub(crate) fn hmac_sha256(&mut self, name: &str, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        use hmac::{Hmac, Mac};
        let secret = self
            .secrets
            .get(name)
            .ok_or_else(|| CryptoError::SecretNotGranted(name.to_string()))?;
        // As the host does: a Standard Webhooks secret keys with its bytes.
        let key = secret
            .strip_prefix("whsec_")
            .and_then(|b64| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD.decode(b64).ok()
            })
            .unwrap_or_else(|| secret.as_bytes().to_vec());
        let mut mac =
            Hmac::<sha2::Sha256>::new_from_slice(&key).expect("HMAC takes keys of any length");
        mac.update(data);
        Ok(mac.finalize().into_bytes().to_vec())
    }

    pub(crate) fn secret_equals(&mut self, name: &str, value: &[u8]) -> Result<bool, CryptoError> {
        let secret = self
            .secrets
            .get(name)
            .ok_or_else(|| CryptoError::SecretNotGranted(name.to_string()))?;
        Ok(secret.as_bytes() == value)
    }
}

thread_local! {
    static HOST: RefCell<Option<TestHost>> = const { RefCell::new(None) };
}

/// Installs `host` for the current thread, replacing any previous one.
pub fn install(host: TestHost) {
    HOST.with(|h| *h.borrow_mut() = Some(host));
}

/// Removes and returns the current thread's host, to inspect it.
pub fn take() -> Option<TestHost> {
    HOST.with(|h| h.borrow_mut().take())
}

pub(crate) fn with_host<R>(f: impl FnOnce(&mut TestHost) -> R) -> R {
    HOST.with(|h| {
        let mut guard = h.borrow_mut();
        let host = guard
            .as_mut()
            .expect("no TestHost installed: call leadgate_sdk::testing::install first");
        f(host)
    })
}

/// A JSON response for a test handler.
pub fn json_response(status: u16, body: &serde_json::Value) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![crate::types::Header {
            name: "content-type".into(),
            value: "application/json".into(),
        }],
        body: serde_json::to_vec(body).expect("JSON"),
    }
}

/// Webhook events as `(kind, object id, property name, property value)`
/// rows, to compare with what a test expects in one `assert_eq!`.
pub fn event_rows(
    events: &[crate::types::CrmEvent],
) -> Vec<(&str, &str, Option<&str>, Option<&str>)> {
    events
        .iter()
        .map(|e| {
            (
                e.kind.as_str(),
                e.object_id.as_str(),
                e.property_name.as_deref(),
                e.property_value.as_deref(),
            )
        })
        .collect()
}
