//! The reference endpoint of `host/benches/wrk/run.sh`: only what any
//! ingest endpoint must do (read the body, parse it as JSON, answer 202),
//! served as the host serves (`axum::serve` on tokio's multi-threaded
//! runtime, with mimalloc). `leadgate serve` is loaded the same way right
//! after it, so the two differ only in what the host does with a lead.
//!
//!   cargo run --release -p leadgate --example bare_ingest -- 127.0.0.1:18090

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "../benches/support/bare.rs"]
mod bare;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".into());
    let app = axum::Router::new().route("/v1/leads", axum::routing::post(bare::accept));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("bare ingest endpoint on http://{listen}/v1/leads");
    axum::serve(listener, app).await
}
