//! The host imports, wrapped for plain Rust. On `wasm32` they call the host;
//! elsewhere they call the [`crate::testing::TestHost`] installed by a test.

#[cfg(target_arch = "wasm32")]
use crate::bindings::leadgate::plugin as imports;

/// Outbound HTTP performed by the host.
pub mod http {
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    pub use crate::types::{Header, HttpError, HttpRequest, HttpResponse, RequestKind};

    /// Sends a raw request through the host.
    pub fn send(request: &HttpRequest) -> Result<HttpResponse, HttpError> {
        #[cfg(target_arch = "wasm32")]
        {
            super::imports::http::send(request)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::with_host(|h| h.http(request))
        }
    }

    /// A request builder. Its kind (what the host's quota windows count
    /// it as) is `read` for GET and HEAD and `write` for the rest until
    /// [`search`](Self::search) or [`kind`](Self::kind) says otherwise.
    #[derive(Clone, Debug)]
    pub struct Request(HttpRequest);

    impl Request {
        pub fn new(method: &str, url: impl Into<String>) -> Self {
            let kind = if method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD")
            {
                RequestKind::Read
            } else {
                RequestKind::Write
            };
            Request(HttpRequest {
                method: method.to_string(),
                url: url.into(),
                headers: Vec::new(),
                body: Vec::new(),
                timeout_ms: None,
                kind,
            })
        }

        /// Says what the request does at the CRM.
        pub fn kind(mut self, kind: RequestKind) -> Self {
            self.0.kind = kind;
            self
        }

        /// A query or search: counted by the CRM's search quota, if any.
        pub fn search(self) -> Self {
            self.kind(RequestKind::Search)
        }

        pub fn get(url: impl Into<String>) -> Self {
            Self::new("GET", url)
        }

        pub fn post(url: impl Into<String>) -> Self {
            Self::new("POST", url)
        }

        pub fn patch(url: impl Into<String>) -> Self {
            Self::new("PATCH", url)
        }

        pub fn delete(url: impl Into<String>) -> Self {
            Self::new("DELETE", url)
        }

        pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
            self.0.headers.push(Header {
                name: name.to_string(),
                value: value.into(),
            });
            self
        }

        /// `Authorization: Bearer <secret>`, the secret substituted by the host.
        pub fn bearer_secret(self, secret_name: &str) -> Self {
            self.header(
                "authorization",
                format!("Bearer {{{{secret:{secret_name}}}}}"),
            )
        }

        /// A JSON body and its content type.
        pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
            self.0.body = serde_json::to_vec(body).expect("serializing a JSON body");
            self.header("content-type", "application/json")
        }

        pub fn body(mut self, body: Vec<u8>) -> Self {
            self.0.body = body;
            self
        }

        pub fn timeout_ms(mut self, ms: u32) -> Self {
            self.0.timeout_ms = Some(ms);
            self
        }

        pub fn as_request(&self) -> &HttpRequest {
            &self.0
        }

        pub fn send(&self) -> Result<Response, HttpError> {
            send(&self.0).map(Response)
        }
    }

    /// A response with helpers for JSON and rate-limit hints.
    #[derive(Clone, Debug)]
    pub struct Response(pub HttpResponse);

    impl Response {
        pub fn status(&self) -> u16 {
            self.0.status
        }

        pub fn is_success(&self) -> bool {
            (200..300).contains(&self.0.status)
        }

        /// The first header with this name (case-insensitive).
        pub fn header(&self, name: &str) -> Option<&str> {
            self.0
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value.as_str())
        }

        pub fn body(&self) -> &[u8] {
            &self.0.body
        }

        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.body).into_owned()
        }

        pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
            serde_json::from_slice(&self.0.body)
        }

        /// `Retry-After` in milliseconds, when given in seconds.
        pub fn retry_after_ms(&self) -> Option<u64> {
            crate::outcome::parse_retry_after_secs(self.header("retry-after")?)
        }

        /// How long the CRM asks us to wait, from the headers CRMs use:
        /// `Retry-After` (seconds), else `X-RateLimit-Reset` /
        /// `RateLimit-Reset` (seconds until the window frees, or a Unix
        /// time in seconds, which is turned into a delay with the host's
        /// clock).
        pub fn throttle_hint_ms(&self) -> Option<u64> {
            if let Some(ms) = self.retry_after_ms() {
                return Some(ms);
            }
            let reset = self
                .header("x-ratelimit-reset")
                .or_else(|| self.header("ratelimit-reset"))?;
            let secs: u64 = reset.trim().parse().ok()?;
            // A value this large is a point in time, not a delay.
            if secs > 1_000_000_000 {
                let now_s = crate::clock::now_ms() / 1000;
                Some(secs.saturating_sub(now_s) * 1000)
            } else {
                Some(secs * 1000)
            }
        }

        /// `X-RateLimit-Remaining`: calls left in the current window.
        pub fn rate_limit_remaining(&self) -> Option<u64> {
            self.header("x-ratelimit-remaining")
                .or_else(|| self.header("ratelimit-remaining"))?
                .trim()
                .parse()
                .ok()
        }
    }
}

/// HMAC with secrets that stay in the host.
pub mod crypto {
    pub use crate::bindings::leadgate::plugin::crypto::CryptoError;

    pub fn hmac_sha256(secret_name: &str, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        #[cfg(target_arch = "wasm32")]
        {
            super::imports::crypto::hmac_sha256(secret_name, data)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::with_host(|h| h.hmac_sha256(secret_name, data))
        }
    }

    pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
        #[cfg(target_arch = "wasm32")]
        {
            super::imports::crypto::constant_time_eq(a, b)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            a == b
        }
    }

    /// Whether `value` equals the named secret (compared in the host, in
    /// constant time): for CRMs that authenticate notifications with a
    /// shared token or key instead of a signature.
    pub fn secret_equals(secret_name: &str, value: &[u8]) -> Result<bool, CryptoError> {
        #[cfg(target_arch = "wasm32")]
        {
            super::imports::crypto::secret_equals(secret_name, value)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::with_host(|h| h.secret_equals(secret_name, value))
        }
    }
}

/// Logging through the host's log.
pub mod log {
    pub use crate::bindings::leadgate::plugin::log::Level;

    pub fn log(level: Level, message: &str) {
        #[cfg(target_arch = "wasm32")]
        {
            super::imports::log::log(level, message)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::with_host(|h| h.logs.push((level, message.to_string())))
        }
    }

    pub fn debug(message: &str) {
        log(Level::Debug, message)
    }

    pub fn info(message: &str) {
        log(Level::Info, message)
    }

    pub fn warn(message: &str) {
        log(Level::Warn, message)
    }

    pub fn error(message: &str) {
        log(Level::Error, message)
    }
}

/// The host's clock.
pub mod clock {
    /// Milliseconds since the Unix epoch.
    pub fn now_ms() -> u64 {
        #[cfg(target_arch = "wasm32")]
        {
            super::imports::clock::now_ms()
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::with_host(|h| h.now_ms)
        }
    }
}

/// The destination's private key-value store: durable (values survive
/// calls, reloads and host restarts), at most 64 KiB a value and 10,000
/// live keys.
pub mod kv {
    pub fn get(key: &str) -> Option<Vec<u8>> {
        #[cfg(target_arch = "wasm32")]
        {
            super::imports::kv::get(key)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::with_host(|h| h.kv.get(key).cloned())
        }
    }

    pub fn set(key: &str, value: &[u8], ttl_ms: Option<u64>) {
        #[cfg(target_arch = "wasm32")]
        {
            super::imports::kv::set(key, value, ttl_ms)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            let _ = ttl_ms;
            crate::testing::with_host(|h| {
                h.kv.insert(key.to_string(), value.to_vec());
            })
        }
    }

    pub fn delete(key: &str) {
        #[cfg(target_arch = "wasm32")]
        {
            super::imports::kv::delete(key)
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            crate::testing::with_host(|h| {
                h.kv.remove(key);
            })
        }
    }
}
