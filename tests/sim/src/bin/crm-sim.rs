//! `crm-sim`: runs the CRM simulator (HubSpot, Pipedrive, Salesforce, Zoho,
//! Dynamics 365 / Dataverse, a Standard Webhooks receiver) on 127.0.0.1
//! until Ctrl-C. `crm-sim --help` lists the flags.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;

use clap::Parser;
use leadgate_sim::{SimConfig, Simulator};

/// Serves HubSpot's contacts API (/crm/v3/objects/contacts…), Pipedrive's
/// v2 persons API (/api/v2/persons…), Salesforce's REST API for Leads and
/// Contacts (/services/data/vNN.0/…, tokens from /services/oauth2/token),
/// Zoho CRM's Records API for Leads and Contacts (/crm/v2…v8/…, tokens
/// from /oauth/v2/token), the Dataverse Web API for leads and contacts
/// (/api/data/v9.2/…, tokens from /TENANT/oauth2/v2.0/token) and a
/// Standard Webhooks receiver (POST /hooks/NAME), plus /_sim/* controls,
/// on 127.0.0.1.
#[derive(Parser, Debug)]
#[command(name = "crm-sim", version)]
struct Args {
    /// Port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// An accepted token (HubSpot bearer; Pipedrive x-api-token, api_token
    /// or bearer; Salesforce and Dataverse bearer; Zoho Zoho-oauthtoken);
    /// repeat for more [default: sim-token].
    #[arg(long = "token", value_name = "T")]
    tokens: Vec<String>,
    /// HubSpot requests per rolling window per token [default: 190].
    #[arg(long, value_name = "N")]
    burst: Option<u32>,
    /// HubSpot's rolling window, in ms [default: 10000].
    #[arg(long, value_name = "MS")]
    burst_window_ms: Option<u64>,
    /// HubSpot requests per day per token [default: 1000000].
    #[arg(long, value_name = "N")]
    daily: Option<u32>,
    /// HubSpot CRM searches per second per token [default: 5].
    #[arg(long, value_name = "N")]
    search_per_sec: Option<u32>,
    /// Most inputs one HubSpot batch call may carry [default: 100].
    #[arg(long, value_name = "N")]
    max_batch: Option<usize>,
    /// Pipedrive requests per rolling window per token [default: 80].
    #[arg(long, value_name = "N")]
    pipedrive_burst: Option<u32>,
    /// Pipedrive's rolling window, in ms [default: 2000].
    #[arg(long, value_name = "MS")]
    pipedrive_window_ms: Option<u64>,
    /// Pipedrive searches per window per token [default: 10].
    #[arg(long, value_name = "N")]
    pipedrive_search: Option<u32>,
    /// Pipedrive writes per UTC day per token [default: 10000].
    #[arg(long, value_name = "N")]
    pipedrive_daily_writes: Option<u32>,
    /// How long a Pipedrive write takes to become searchable, in ms
    /// [default: 2000].
    #[arg(long, value_name = "MS")]
    pipedrive_search_lag_ms: Option<u64>,
    /// The whsec_… secret /hooks checks signatures with.
    #[arg(long, value_name = "S")]
    webhook_secret: Option<String>,
    /// Salesforce API requests per rolling 24 hours [default: 100000].
    #[arg(long, value_name = "N")]
    salesforce_daily_limit: Option<u32>,
    /// Zoho API credits per rolling 24 hours [default: 50000].
    #[arg(long, value_name = "N")]
    zoho_credits: Option<u32>,
    /// Zoho calls in flight at once [default: 10].
    #[arg(long, value_name = "N")]
    zoho_concurrency: Option<u32>,
    /// How long a written Zoho record takes to show up in /search, in ms
    /// [default: 0].
    #[arg(long, value_name = "MS")]
    zoho_search_lag_ms: Option<u64>,
    /// Dataverse requests per user per 5 minutes [default: 6000].
    #[arg(long, value_name = "N")]
    dataverse_requests: Option<u32>,
    /// Dataverse requests in flight at once per user [default: 52].
    #[arg(long, value_name = "N")]
    dataverse_concurrency: Option<u32>,
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
        let set = |slot: &mut u32, value: Option<u32>| *slot = value.unwrap_or(*slot);
        set(&mut config.burst_limit, self.burst);
        set(&mut config.daily_limit, self.daily);
        set(&mut config.search_limit_per_sec, self.search_per_sec);
        set(&mut config.pipedrive.burst, self.pipedrive_burst);
        set(&mut config.pipedrive.search, self.pipedrive_search);
        set(
            &mut config.pipedrive.daily_writes,
            self.pipedrive_daily_writes,
        );
        set(
            &mut config.salesforce_daily_limit,
            self.salesforce_daily_limit,
        );
        set(&mut config.zoho.daily_credits, self.zoho_credits);
        set(&mut config.zoho.concurrency, self.zoho_concurrency);
        set(&mut config.dataverse.requests, self.dataverse_requests);
        set(&mut config.dataverse.concurrent, self.dataverse_concurrency);
        config.zoho.search_lag_ms = self.zoho_search_lag_ms.unwrap_or(config.zoho.search_lag_ms);
        config.burst_window_ms = self.burst_window_ms.unwrap_or(config.burst_window_ms);
        config.max_batch = self.max_batch.unwrap_or(config.max_batch);
        config.pipedrive.window_ms = self
            .pipedrive_window_ms
            .unwrap_or(config.pipedrive.window_ms);
        config.pipedrive.search_lag_ms = self
            .pipedrive_search_lag_ms
            .unwrap_or(config.pipedrive.search_lag_ms);
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
    fn each_personality_s_limits_can_be_raised() {
        let config = parse_args(&[
            "--burst-window-ms",
            "1000",
            "--daily",
            "7",
            "--search-per-sec",
            "50",
            "--max-batch",
            "250",
            "--pipedrive-burst",
            "800",
            "--pipedrive-window-ms",
            "500",
            "--pipedrive-search",
            "100",
            "--pipedrive-daily-writes",
            "99",
            "--pipedrive-search-lag-ms",
            "0",
            "--salesforce-daily-limit",
            "250",
            "--zoho-credits",
            "300",
            "--zoho-concurrency",
            "3",
            "--zoho-search-lag-ms",
            "1500",
            "--dataverse-requests",
            "60",
            "--dataverse-concurrency",
            "4",
        ])
        .unwrap();
        assert_eq!(
            (config.dataverse.requests, config.dataverse.concurrent),
            (60, 4)
        );
        assert_eq!(config.salesforce_daily_limit, 250);
        assert_eq!(
            (
                config.zoho.daily_credits,
                config.zoho.concurrency,
                config.zoho.search_lag_ms
            ),
            (300, 3, 1500)
        );
        assert_eq!(
            (
                config.burst_window_ms,
                config.daily_limit,
                config.search_limit_per_sec,
                config.max_batch
            ),
            (1_000, 7, 50, 250)
        );
        let p = &config.pipedrive;
        assert_eq!(
            (
                p.burst,
                p.window_ms,
                p.search,
                p.daily_writes,
                p.search_lag_ms
            ),
            (800, 500, 100, 99, 0)
        );
        // Unset flags keep the real CRMs' limits.
        let defaults = parse_args(&[]).unwrap();
        assert_eq!(defaults.pipedrive, SimConfig::default().pipedrive);
        assert_eq!(defaults.burst_window_ms, 10_000);
        assert_eq!(defaults.salesforce_daily_limit, 100_000);
        assert_eq!(defaults.zoho, leadgate_sim::ZohoLimits::default());
        assert_eq!(defaults.dataverse, leadgate_sim::DataverseLimits::default());
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
