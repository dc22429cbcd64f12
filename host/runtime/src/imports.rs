//! The host imports a plugin is granted: HTTP, crypto, log, clock and a
//! key-value store. They are implemented on [`CallState`], the data of the
//! fresh `Store` each call gets, against the plugin's [`Capabilities`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::Sha256;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::adapter::leadgate::plugin::{
    clock, crypto, http, kv, log,
    types::{self, HttpError, HttpRequest, HttpResponse},
};
use crate::capabilities::{CallSecrets, Capabilities, CapabilityError};
use crate::limits::Limiter;
use crate::outbound::{OutboundError, OutboundHttp, OutboundRequest};
use crate::types::RequestKind;

/// A plugin's private key-value store, namespaced (by destination: two
/// destinations running the same adapter never see each other's keys).
/// A store may refuse a value over [`KV_MAX_VALUE_BYTES`] or a new key in a
/// namespace holding [`KV_MAX_ENTRIES`] live ones; a refused `set` leaves
/// the store as it was.
pub trait KvStore: Send + Sync + 'static {
    fn get<'a>(&'a self, namespace: &'a str, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>>;
    fn set<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, ()>;
    fn delete<'a>(&'a self, namespace: &'a str, key: &'a str) -> BoxFuture<'a, ()>;
}

/// An in-process [`KvStore`]: values survive calls and plugin reloads, not
/// host restarts. The host uses a durable one (its store); this one serves
/// `leadgate plugin` runs and tests.
#[derive(Default)]
pub struct MemoryKv {
    entries: Mutex<HashMap<(String, String), KvEntry>>,
}

/// A value and when it expires.
type KvEntry = (Vec<u8>, Option<Instant>);

/// Most live entries one namespace may hold; a plugin cannot fill the
/// host's memory or disk through the key-value import.
pub const KV_MAX_ENTRIES: usize = 10_000;
/// Largest value a plugin may store.
pub const KV_MAX_VALUE_BYTES: usize = 64 << 10;

impl MemoryKv {
    fn get_now(&self, namespace: &str, key: &str) -> Option<Vec<u8>> {
        let mut entries = self.entries.lock();
        let k = (namespace.to_string(), key.to_string());
        match entries.get(&k) {
            Some((_, Some(expires))) if *expires <= Instant::now() => {
                entries.remove(&k);
                None
            }
            Some((value, _)) => Some(value.clone()),
            None => None,
        }
    }

    fn delete_now(&self, namespace: &str, key: &str) {
        self.entries
            .lock()
            .remove(&(namespace.to_string(), key.to_string()));
    }

    fn set_now(&self, namespace: &str, key: &str, value: Vec<u8>, ttl: Option<Duration>) {
        if value.len() > KV_MAX_VALUE_BYTES {
            return;
        }
        let mut entries = self.entries.lock();
        if entries.len() >= KV_MAX_ENTRIES {
            let now = Instant::now();
            entries.retain(|_, (_, exp)| exp.is_none_or(|e| e > now));
            if entries.len() >= KV_MAX_ENTRIES {
                return;
            }
        }
        let expires = ttl.map(|t| Instant::now() + t);
        entries.insert((namespace.to_string(), key.to_string()), (value, expires));
    }
}

impl KvStore for MemoryKv {
    fn get<'a>(&'a self, namespace: &'a str, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>> {
        Box::pin(std::future::ready(self.get_now(namespace, key)))
    }

    fn set<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, ()> {
        self.set_now(namespace, key, value, ttl);
        Box::pin(std::future::ready(()))
    }

    fn delete<'a>(&'a self, namespace: &'a str, key: &'a str) -> BoxFuture<'a, ()> {
        self.delete_now(namespace, key);
        Box::pin(std::future::ready(()))
    }
}

/// Counters kept per loaded plugin.
#[derive(Debug, Default)]
pub struct PluginCounters {
    pub calls: AtomicU64,
    pub call_failures: AtomicU64,
    pub call_micros: AtomicU64,
    pub http_requests: AtomicU64,
    pub http_denied: AtomicU64,
    pub http_failures: AtomicU64,
    pub http_micros: AtomicU64,
    /// Requests the destination's rate limiter answered 429 itself.
    pub http_throttled: AtomicU64,
}

/// Host services shared by every call of every plugin.
#[derive(Clone)]
pub struct HostServices {
    pub outbound: Arc<dyn OutboundHttp>,
    pub kv: Arc<dyn KvStore>,
    pub max_http_timeout: Duration,
    pub max_response_bytes: u64,
}

/// What one call's store knows about the plugin it runs.
pub(crate) struct CallContext {
    pub(crate) plugin: Arc<str>,
    pub(crate) capabilities: Arc<Capabilities>,
    pub(crate) services: HostServices,
    pub(crate) counters: Arc<PluginCounters>,
    /// Secrets the host obtained for this call alone (already merged into
    /// `capabilities`): a 401 answer marks them refused.
    pub(crate) call: Option<Arc<CallSecrets>>,
}

/// The data of one call's `Store`.
pub(crate) struct CallState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) cx: CallContext,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for CallState {}

impl http::Host for CallState {
    async fn send(&mut self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let cx = &self.cx;
        let started = Instant::now();
        cx.counters.http_requests.fetch_add(1, Ordering::Relaxed);
        let request_kind = request.kind;
        let prepared = prepare(&cx.capabilities, &cx.services, request);
        let outbound = match prepared {
            Ok(r) => r,
            Err(e) => {
                cx.counters.http_denied.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(plugin = %cx.plugin, error = %e, "plugin http request refused");
                return Err(match e {
                    CapabilityError::HostNotAllowed(h) => HttpError::HostNotAllowed(h),
                    CapabilityError::SecretNotGranted(s) => HttpError::SecretNotGranted(s),
                    CapabilityError::InvalidUrl { url, reason } => {
                        HttpError::InvalidRequest(format!("{url}: {reason}"))
                    }
                });
            }
        };
        let kind = from_wit_kind(request_kind);
        let gate = cx.capabilities.gate().cloned();
        if let Some(gate) = &gate
            && let Err(wait_ms) = gate.admit(kind).await
        {
            // The CRM's quota is spent for longer than a call may wait: answer
            // as the CRM would, without spending a request on a sure 429.
            cx.counters.http_throttled.fetch_add(1, Ordering::Relaxed);
            return Ok(HttpResponse {
                status: 429,
                headers: vec![
                    types::Header {
                        name: "retry-after".into(),
                        value: wait_ms.div_ceil(1000).max(1).to_string(),
                    },
                    types::Header {
                        name: "x-leadgate-throttled".into(),
                        value: "local".into(),
                    },
                ],
                body: br#"{"error":"leadgate: the destination's rate limit is spent"}"#.to_vec(),
            });
        }
        let result = cx.services.outbound.send(outbound).await;
        if let Some(gate) = &gate {
            match &result {
                Ok(r) => gate.observe(kind, r.status, &r.headers),
                Err(_) => gate.failed(kind),
            }
        }
        if let (Ok(r), Some(call)) = (&result, &cx.call) {
            call.mark_answered();
            if r.status == 401 {
                call.mark_refused();
            }
        }
        cx.counters
            .http_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        match result {
            Ok(r) => Ok(HttpResponse {
                status: r.status,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(name, value)| types::Header { name, value })
                    .collect(),
                body: r.body,
            }),
            Err(e) => {
                cx.counters.http_failures.fetch_add(1, Ordering::Relaxed);
                Err(match e {
                    OutboundError::Timeout => HttpError::Timeout,
                    OutboundError::TooLarge(n) => HttpError::ResponseTooLarge(n),
                    OutboundError::Invalid(m) => HttpError::InvalidRequest(m),
                    OutboundError::Transport(m) => HttpError::Transport(cx.capabilities.redact(&m)),
                })
            }
        }
    }
}

pub(crate) fn from_wit_kind(kind: types::RequestKind) -> RequestKind {
    match kind {
        types::RequestKind::Write => RequestKind::Write,
        types::RequestKind::Read => RequestKind::Read,
        types::RequestKind::Search => RequestKind::Search,
    }
}

pub(crate) fn to_wit_kind(kind: RequestKind) -> types::RequestKind {
    match kind {
        RequestKind::Write => types::RequestKind::Write,
        RequestKind::Read => types::RequestKind::Read,
        RequestKind::Search => types::RequestKind::Search,
    }
}

/// Checks the URL against the allow-list and substitutes secrets.
fn prepare(
    caps: &Capabilities,
    services: &HostServices,
    request: HttpRequest,
) -> Result<OutboundRequest, CapabilityError> {
    let url = caps.check_url(&caps.substitute(&request.url)?)?;
    let headers = request
        .headers
        .into_iter()
        .map(|h| Ok((h.name, caps.substitute(&h.value)?)))
        .collect::<Result<Vec<_>, CapabilityError>>()?;
    let body = match std::str::from_utf8(&request.body) {
        Ok(text) if text.contains("{{secret:") => caps.substitute(text)?.into_bytes(),
        _ => request.body,
    };
    let timeout = request
        .timeout_ms
        .map(|ms| Duration::from_millis(ms.into()))
        .unwrap_or(services.max_http_timeout)
        .min(services.max_http_timeout);
    Ok(OutboundRequest {
        method: request.method,
        url,
        headers,
        body,
        timeout,
        max_response_bytes: services.max_response_bytes,
    })
}

impl crypto::Host for CallState {
    async fn hmac_sha256(
        &mut self,
        secret_name: String,
        data: Vec<u8>,
    ) -> Result<Vec<u8>, crypto::CryptoError> {
        let secret = self
            .cx
            .capabilities
            .secret(&secret_name)
            .map_err(|_| crypto::CryptoError::SecretNotGranted(secret_name.clone()))?;
        Ok(hmac_sha256(&hmac_key(secret), &data))
    }

    async fn constant_time_eq(&mut self, a: Vec<u8>, b: Vec<u8>) -> bool {
        constant_time_eq(&a, &b)
    }

    async fn secret_equals(
        &mut self,
        secret_name: String,
        value: Vec<u8>,
    ) -> Result<bool, crypto::CryptoError> {
        let secret = self
            .cx
            .capabilities
            .secret(&secret_name)
            .map_err(|_| crypto::CryptoError::SecretNotGranted(secret_name.clone()))?;
        Ok(constant_time_eq(secret.as_bytes(), &value))
    }
}

/// Equality in time independent of where the bytes differ (only their
/// lengths show).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The HMAC key a secret stands for: a Standard Webhooks secret
/// (`whsec_<base64>`) keys with its decoded bytes, as the reference
/// libraries do; any other secret with its UTF-8 bytes.
pub fn hmac_key(secret: &str) -> std::borrow::Cow<'_, [u8]> {
    use base64::Engine as _;
    secret
        .strip_prefix("whsec_")
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .map_or(
            std::borrow::Cow::Borrowed(secret.as_bytes()),
            std::borrow::Cow::Owned,
        )
}

/// HMAC-SHA256, also used by the host's own webhook code and tests.
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

impl log::Host for CallState {
    async fn log(&mut self, level: log::Level, message: String) {
        const MAX: usize = 4096;
        let mut message = message;
        if message.len() > MAX {
            let mut cut = MAX;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
        }
        // A CRM's error quotes the email or phone it refused.
        let message = crate::mask::mask_pii(&message);
        let plugin = &*self.cx.plugin;
        match level {
            log::Level::Trace => tracing::trace!(target: "plugin", plugin, "{message}"),
            log::Level::Debug => tracing::debug!(target: "plugin", plugin, "{message}"),
            log::Level::Info => tracing::info!(target: "plugin", plugin, "{message}"),
            log::Level::Warn => tracing::warn!(target: "plugin", plugin, "{message}"),
            log::Level::Error => tracing::error!(target: "plugin", plugin, "{message}"),
        }
    }
}

impl clock::Host for CallState {
    async fn now_ms(&mut self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

impl kv::Host for CallState {
    async fn get(&mut self, key: String) -> Option<Vec<u8>> {
        let namespace = self.cx.capabilities.kv_namespace(&self.cx.plugin);
        self.cx.services.kv.get(namespace, &key).await
    }

    async fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) {
        let namespace = self.cx.capabilities.kv_namespace(&self.cx.plugin);
        let ttl = ttl_ms.map(Duration::from_millis);
        self.cx.services.kv.set(namespace, &key, value, ttl).await
    }

    async fn delete(&mut self, key: String) {
        let namespace = self.cx.capabilities.kv_namespace(&self.cx.plugin);
        self.cx.services.kv.delete(namespace, &key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn standard_webhooks_secrets_key_with_their_decoded_bytes() {
        assert_eq!(&*hmac_key("whsec_aGVsbG8="), b"hello");
        assert_eq!(&*hmac_key("plain-secret"), b"plain-secret");
        // not base64 after the prefix: the text itself
        assert_eq!(&*hmac_key("whsec_!!"), b"whsec_!!");
    }

    #[test]
    fn kv_namespaces_and_ttl() {
        let kv = MemoryKv::default();
        kv.set_now("a", "k", b"1".to_vec(), None);
        kv.set_now("b", "k", b"2".to_vec(), Some(Duration::from_millis(0)));
        assert_eq!(kv.get_now("a", "k").as_deref(), Some(&b"1"[..]));
        assert_eq!(kv.get_now("b", "k"), None, "expired entry is gone");
        kv.delete_now("a", "k");
        assert_eq!(kv.get_now("a", "k"), None);
    }

    #[test]
    fn prepare_substitutes_and_checks() {
        struct Never;
        impl OutboundHttp for Never {
            fn send(
                &self,
                _: OutboundRequest,
            ) -> futures_util::future::BoxFuture<
                '_,
                Result<crate::outbound::OutboundResponse, OutboundError>,
            > {
                unreachable!()
            }
        }
        let services = HostServices {
            outbound: Arc::new(Never),
            kv: Arc::new(MemoryKv::default()),
            max_http_timeout: Duration::from_secs(10),
            max_response_bytes: 1024,
        };
        let caps = Capabilities::new(&["127.0.0.1"], [("token", "abc123")].into_iter().collect());
        let req = HttpRequest {
            method: "POST".into(),
            url: "http://127.0.0.1:1/x".into(),
            headers: vec![types::Header {
                name: "authorization".into(),
                value: "Bearer {{secret:token}}".into(),
            }],
            body: b"{\"t\":\"{{secret:token}}\"}".to_vec(),
            timeout_ms: Some(60_000),
            kind: types::RequestKind::Write,
        };
        let out = prepare(&caps, &services, req.clone()).unwrap();
        assert_eq!(out.headers[0].1, "Bearer abc123");
        assert_eq!(out.body, b"{\"t\":\"abc123\"}");
        assert_eq!(
            out.timeout,
            Duration::from_secs(10),
            "clamped to the host maximum"
        );

        let denied = HttpRequest {
            url: "http://10.0.0.1/".into(),
            ..req
        };
        assert_eq!(
            prepare(&caps, &services, denied).unwrap_err(),
            CapabilityError::HostNotAllowed("10.0.0.1".into())
        );
    }
}
