//! `crm-sim [--port N] [--token T]... [--burst N] [--webhook-secret S]`:
//! runs the CRM simulator (HubSpot, Pipedrive, a Standard Webhooks receiver)
//! on 127.0.0.1 until Ctrl-C.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use leadgate_sim::{SimConfig, Simulator};

const USAGE: &str = "usage: crm-sim [--port N] [--token T]... [--burst N] [--webhook-secret S]

Serves HubSpot's contacts API (/crm/v3/objects/contacts…), Pipedrive's v2
persons API (/api/v2/persons…) and a Standard Webhooks receiver
(POST /hooks/NAME), plus /_sim/* controls.

  --port N            port on 127.0.0.1 (default: any free port)
  --token T           accepted token (HubSpot bearer; Pipedrive x-api-token,
                      api_token or bearer); repeat for more (default: sim-token)
  --burst N           HubSpot requests per rolling 10 s window per token (default: 190)
  --webhook-secret S  whsec_… secret /hooks checks signatures with";

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<SimConfig, String> {
    let mut config = SimConfig::default();
    let mut port = 0u16;
    let mut tokens = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg, None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "--port" => {
                let text = value("--port")?;
                port = text.parse().map_err(|_| format!("bad port: {text}"))?;
            }
            "--token" => tokens.push(value("--token")?),
            "--burst" => {
                let text = value("--burst")?;
                config.burst_limit = text
                    .parse()
                    .map_err(|_| format!("bad burst limit: {text}"))?;
            }
            "--webhook-secret" => config.webhook_secret = value("--webhook-secret")?,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument: {other}")),
        }
    }
    config.addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    if !tokens.is_empty() {
        config.tokens = tokens;
    }
    Ok(config)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(message) if message.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("crm-sim: {message}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let sim = match Simulator::start(config).await {
        Ok(sim) => sim,
        Err(err) => {
            eprintln!("{err:#}");
            return ExitCode::FAILURE;
        }
    };
    println!("crm-sim listening on {}", sim.base_url());
    if let Err(err) = tokio::signal::ctrl_c().await {
        eprintln!("crm-sim: cannot wait for Ctrl-C: {err}");
    }
    sim.shutdown().await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn parses_flags() {
        let config = parse_args(args(&[
            "--port",
            "8081",
            "--token",
            "a",
            "--token=b",
            "--burst",
            "5",
        ]))
        .unwrap();
        assert_eq!(config.addr.port(), 8081);
        assert!(config.addr.ip().is_loopback());
        assert_eq!(config.tokens, vec!["a", "b"]);
        assert_eq!(config.burst_limit, 5);
    }

    #[test]
    fn defaults_and_errors() {
        let config = parse_args(args(&[])).unwrap();
        assert_eq!(config.addr.port(), 0);
        assert_eq!(config.tokens, vec!["sim-token"]);
        assert!(
            parse_args(args(&["--port"]))
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(
            parse_args(args(&["--port", "x"]))
                .unwrap_err()
                .contains("bad port")
        );
        assert!(
            parse_args(args(&["--bogus"]))
                .unwrap_err()
                .contains("unknown")
        );
    }
}
