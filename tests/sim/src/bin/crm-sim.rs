//! `crm-sim`: runs the CRM simulator (HubSpot, Pipedrive, a Standard
//! Webhooks receiver) on 127.0.0.1 until Ctrl-C. `crm-sim --help` lists the
//! flags.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use clap::Parser;
use leadgate_sim::{SimConfig, Simulator};

/// Serves HubSpot's contacts API (/crm/v3/objects/contacts…), Pipedrive's
/// v2 persons API (/api/v2/persons…) and a Standard Webhooks receiver
/// (POST /hooks/NAME), plus /_sim/* controls, on 127.0.0.1.
#[derive(Parser, Debug)]
#[command(name = "crm-sim", version)]
struct Args {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// An accepted token (HubSpot bearer; Pipedrive x-api-token, api_token
    /// or bearer); repeat for more [default: sim-token].
    #[arg(long = "token", value_name = "T")]
    tokens: Vec<String>,
    /// HubSpot requests per rolling 10 s window per token [default: 190].
    #[arg(long, value_name = "N")]
    burst: Option<u32>,
    /// The whsec_… secret /hooks checks signatures with.
    #[arg(long, value_name = "S")]
    webhook_secret: Option<String>,
}

impl Args {
    fn config(self) -> SimConfig {
        let mut config = SimConfig {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            ..SimConfig::default()
        };
        if !self.tokens.is_empty() {
            config.tokens = self.tokens;
        }
        if let Some(burst) = self.burst {
            config.burst_limit = burst;
        }
        if let Some(secret) = self.webhook_secret {
            config.webhook_secret = secret;
        }
        config
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let config = Args::parse().config();
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
    use clap::error::ErrorKind;

    use super::*;

    fn parse_args(list: &[&str]) -> Result<SimConfig, clap::Error> {
        let argv = std::iter::once("crm-sim").chain(list.iter().copied());
        Args::try_parse_from(argv).map(Args::config)
    }

    #[test]
    fn parses_flags() {
        let config = parse_args(&[
            "--port",
            "8081",
            "--token",
            "a",
            "--token=b",
            "--burst",
            "5",
        ])
        .unwrap();
        assert_eq!(config.addr.port(), 8081);
        assert!(config.addr.ip().is_loopback());
        assert_eq!(config.tokens, vec!["a", "b"]);
        assert_eq!(config.burst_limit, 5);
    }

    #[test]
    fn defaults_and_errors() {
        let config = parse_args(&[]).unwrap();
        assert_eq!(config.addr.port(), 0);
        assert_eq!(config.tokens, vec!["sim-token"]);
        assert_eq!(config.burst_limit, SimConfig::default().burst_limit);
        assert_eq!(
            parse_args(&["--port"]).unwrap_err().kind(),
            ErrorKind::InvalidValue
        );
        assert_eq!(
            parse_args(&["--port", "x"]).unwrap_err().kind(),
            ErrorKind::ValueValidation
        );
        assert_eq!(
            parse_args(&["--bogus"]).unwrap_err().kind(),
            ErrorKind::UnknownArgument
        );
    }

    #[test]
    fn the_flags_are_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
