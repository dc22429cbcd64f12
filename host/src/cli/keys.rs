//! `leadgate keys …`: the store's encryption keys on a running host,
//! through its HTTP API ([`crate::http::keys`], scope `admin`).

use std::time::Duration;

use clap::Subcommand;
use serde_json::Value;

use super::api::{Api, call};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// The data keys' ids, the current one and the re-sealing pass.
    Status,
    /// Make a new current data key (with generated keys; with configured
    /// keys, the configured `current`) and re-seal every stored value
    /// under it in the background while the host serves.
    Rotate {
        /// Wait until every value is re-sealed.
        #[arg(long)]
        wait: bool,
    },
}

/// Runs a `keys` command against a host's API.
pub async fn run(api: Api, command: KeysCommand) -> anyhow::Result<()> {
    let status = |api: &Api| call(api.client.get(api.url("/v1/keys")));
    match command {
        KeysCommand::Status => print(&status(&api).await?),
        KeysCommand::Rotate { wait } => {
            let mut view = call(api.client.post(api.url("/v1/keys/rotate"))).await?;
            println!(
                "rotated: new values are sealed under {}",
                view["current"].as_str().unwrap_or("?")
            );
            while wait && view["pass"]["state"] != "done" {
                tokio::time::sleep(Duration::from_millis(500)).await;
                view = status(&api).await?;
            }
            print(&view);
        }
    }
    Ok(())
}

fn print(view: &Value) {
    if view["encryption"] != true {
        println!("encryption at rest is off");
        return;
    }
    let keys: Vec<&str> = view["keys"]
        .as_array()
        .map(|k| k.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    println!(
        "current key {} ({}), keys: {}",
        view["current"].as_str().unwrap_or("?"),
        view["source"].as_str().unwrap_or("?"),
        keys.join(", ")
    );
    let pass = &view["pass"];
    println!(
        "re-sealing: {} ({} rows read, {} values re-sealed){}",
        pass["state"].as_str().unwrap_or("?"),
        pass["scanned"],
        pass["resealed"],
        pass["error"]
            .as_str()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    );
}
