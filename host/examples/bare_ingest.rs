//! The reference endpoint of `host/benches/wrk/run.sh`: only what any
//! ingest endpoint must do (read the body, parse it as JSON, answer 202),
//! served as the host serves (`axum::serve` on tokio's multi-threaded
//! runtime, with mimalloc). `leadgate serve` is loaded the same way right
//! after it, so the two differ only in what the host does with a lead.
//!
//!   cargo run --release -p leadgate --example bare_ingest -- 127.0.0.1:18090

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use axum::http::StatusCode;
use bytes::Bytes;

async fn accept(body: Bytes) -> (StatusCode, &'static str) {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(lead) => {
            std::hint::black_box(&lead);
            (StatusCode::ACCEPTED, "{\"accepted\":1}")
        }
        Err(_) => (StatusCode::BAD_REQUEST, "{\"error\":\"malformed_json\"}"),
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".into());
    let app = axum::Router::new().route("/v1/leads", axum::routing::post(accept));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("bare ingest endpoint on http://{listen}/v1/leads");
    axum::serve(listener, app).await
}
