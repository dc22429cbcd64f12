//! Outbound HTTP performed by the host for its plugins.
//!
//! The plugin's `http.send` import arrives here after the capability check
//! and secret substitution. The trait keeps the wasm glue testable with a
//! fake; [`ReqwestOutbound`] is the real client: no redirects (a redirect
//! could leave the allow-list), a timeout per request, a cap on response
//! size.

use std::time::Duration;

use futures_util::future::BoxFuture;

/// A request after capability checks and secret substitution.
#[derive(Clone, Debug)]
pub struct OutboundRequest {
    pub method: String,
    pub url: url::Url,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout: Duration,
    pub max_response_bytes: u64,
}

#[derive(Clone, Debug)]
pub struct OutboundResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("request timed out")]
    Timeout,
    #[error("response larger than {0} bytes")]
    TooLarge(u64),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("transport error: {0}")]
    Transport(String),
}

/// Performs HTTP requests for plugins.
pub trait OutboundHttp: Send + Sync + 'static {
    fn send(
        &self,
        request: OutboundRequest,
    ) -> BoxFuture<'_, Result<OutboundResponse, OutboundError>>;
}

/// The production client.
#[derive(Clone)]
pub struct ReqwestOutbound {
    client: reqwest::Client,
}

impl ReqwestOutbound {
    pub fn new() -> anyhow::Result<Self> {
        install_crypto_provider();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("leadgate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(ReqwestOutbound { client })
    }
}

impl OutboundHttp for ReqwestOutbound {
    fn send(
        &self,
        request: OutboundRequest,
    ) -> BoxFuture<'_, Result<OutboundResponse, OutboundError>> {
        Box::pin(async move {
            let method = reqwest::Method::from_bytes(request.method.as_bytes())
                .map_err(|_| OutboundError::Invalid(format!("method {:?}", request.method)))?;
            let mut builder = self
                .client
                .request(method, request.url)
                .timeout(request.timeout);
            for (name, value) in &request.headers {
                builder = builder.header(name.as_str(), value.as_str());
            }
            if !request.body.is_empty() {
                builder = builder.body(request.body);
            }
            let mut response = builder.send().await.map_err(classify)?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let limit = request.max_response_bytes;
            if response.content_length().is_some_and(|len| len > limit) {
                return Err(OutboundError::TooLarge(limit));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(classify)? {
                if (body.len() + chunk.len()) as u64 > limit {
                    return Err(OutboundError::TooLarge(limit));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(OutboundResponse {
                status,
                headers,
                body,
            })
        })
    }
}

fn classify(e: reqwest::Error) -> OutboundError {
    if e.is_timeout() {
        OutboundError::Timeout
    } else if e.is_builder() {
        OutboundError::Invalid(e.to_string())
    } else {
        OutboundError::Transport(e.to_string())
    }
}

/// Installs the process-wide TLS crypto provider (ring) that reqwest's
/// rustls needs; harmless when one is already installed.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
