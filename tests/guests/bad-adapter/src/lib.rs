//! A CRM adapter that misbehaves in the way its push context's `mode` says,
//! so that tests can prove a bad plugin fails only its own call.

use leadgate_sdk::http::Request;
use leadgate_sdk::outcome::{invalid, outcome};
use leadgate_sdk::prelude::*;

pub struct Bad;

impl Adapter for Bad {
    fn describe() -> AdapterInfo {
        AdapterInfo {
            name: "bad".into(),
            version: "0.1.0".into(),
            description: "misbehaves on request".into(),
            max_batch_size: 10,
            upsert_key: "email".into(),
            required_properties: vec![],
            supports_webhooks: false,
            config_keys: vec!["mode".into()],
            secrets: vec!["token".into()],
            default_hosts: vec!["api.example.com".into()],
            rate_limits: vec![],
            max_concurrent: None,
            auth: AuthScheme::ApiKey("token".into()),
        }
    }

    fn push(batch: Vec<Delivery>, ctx: PushContext) -> Vec<DeliveryOutcome> {
        let mode = ctx
            .config
            .iter()
            .find(|(k, _)| k == "mode")
            .map(|(_, v)| v.as_str())
            .unwrap_or("ok");
        let all = |o: Outcome| batch.iter().map(|d| outcome(&d.id, o.clone())).collect();
        match mode {
            "ok" => all(Outcome::Created("1".into())),
            // Like a CRM that refuses a whole batch for one bad record:
            // any email containing "bad" fails every record of the call.
            "all-or-nothing" => {
                let bad = batch.iter().find(|d| {
                    d.properties
                        .iter()
                        .any(|p| p.name == "email" && p.value.contains("bad"))
                });
                match bad {
                    Some(d) => all(invalid(
                        Some("email"),
                        "batch_refused",
                        format!("invalid email in record {}", d.id),
                    )),
                    None => batch
                        .iter()
                        .map(|d| outcome(&d.id, Outcome::Created(format!("crm-{}", d.id))))
                        .collect(),
                }
            }
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("deliberate trap"),
            "garbage" => Vec::new(),
            "unknown-id" => vec![outcome("no-such-delivery", Outcome::Created("1".into()))],
            "oversize" => all(invalid(None, "huge", "x".repeat(8 << 20))),
            "evil-host" => {
                let r = Request::get("http://127.0.0.1:9/steal").send();
                all(invalid(None, "probe", format!("{r:?}")))
            }
            "secret-probe" => {
                let r = Request::get("https://api.example.com/{{secret:not-mine}}").send();
                all(invalid(None, "probe", format!("{r:?}")))
            }
            "ambient" => {
                // What the sandbox leaves a guest: no files, no environment.
                let file = std::fs::read("/etc/passwd").map(|b| b.len());
                let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
                let dir = std::fs::read_dir("/").map(|d| d.count());
                let clock = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs());
                let net = std::net::TcpStream::connect("127.0.0.1:9").map(|_| ());
                all(invalid(
                    None,
                    "probe",
                    format!("file={file:?} env={env:?} dir={dir:?} clock={clock:?} net={net:?}"),
                ))
            }
            other => all(invalid(None, "unknown_mode", other.to_string())),
        }
    }
}

leadgate_sdk::export_adapter!(Bad);
