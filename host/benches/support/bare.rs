//! The bare ingest endpoint's handler, the reference both the ingest bench
//! (in its process) and `host/examples/bare_ingest.rs` (for wrk) measure the
//! host against: parse the body as JSON and answer 202.

use axum::http::StatusCode;
use bytes::Bytes;

pub async fn accept(body: Bytes) -> (StatusCode, &'static str) {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(lead) => {
            std::hint::black_box(&lead);
            (StatusCode::ACCEPTED, "{\"accepted\":1}")
        }
        Err(_) => (StatusCode::BAD_REQUEST, "{\"error\":\"malformed_json\"}"),
    }
}
