//! How the CLI reaches a running host's admin API: its URL and the admin
//! token, from `--token`, `LEADGATE_TOKEN`, or the token the host
//! generated beside its store (found through the same configuration the
//! host was started with), and the one way an answer is read.

use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::Value;

use crate::config::Config;

/// Where the host is and how to authenticate to it.
#[derive(clap::Args, Clone, Debug)]
pub struct HostArgs {
    /// The host's base URL.
    #[arg(
        long,
        global = true,
        env = "LEADGATE_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// An admin token with the scope the command needs. Default: the
    /// token the host generated (`auth.token_file` of --config).
    #[arg(long, global = true, env = "LEADGATE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The host's configuration file, to find its generated token.
    #[arg(long, short, global = true, env = "LEADGATE_CONFIG")]
    pub config: Option<PathBuf>,
    /// A CA certificate (PEM) to trust for an HTTPS host with a
    /// certificate of its own.
    #[arg(long, global = true, env = "LEADGATE_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
}

/// A client of one host's admin API.
pub struct Api {
    pub server: String,
    pub client: reqwest::Client,
}

impl HostArgs {
    pub fn connect(&self) -> anyhow::Result<Api> {
        leadgate_runtime::outbound::install_crypto_provider();
        let token = match &self.token {
            Some(token) => token.clone(),
            None => self.generated_token()?,
        };
        let mut auth = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the token is not a valid header value")?;
        auth.set_sensitive(true);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, auth);
        let mut client = reqwest::Client::builder().default_headers(headers);
        if let Some(path) = &self.ca_cert {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            client = client.add_root_certificate(
                reqwest::Certificate::from_pem(&pem)
                    .with_context(|| format!("{} is not a PEM certificate", path.display()))?,
            );
        }
        Ok(Api {
            server: self.server.trim_end_matches('/').to_string(),
            client: client.build()?,
        })
    }

    fn generated_token(&self) -> anyhow::Result<String> {
        let config = Config::load(self.config.as_deref())?;
        let path = config
            .admin_token_file()
            .context("no --token, and the configuration has no file for a generated token")?;
        let token = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "no --token or LEADGATE_TOKEN, and the host's generated token at {} cannot be read \
                 (is this the host's configuration? see --config)",
                path.display()
            )
        })?;
        Ok(token.trim().to_string())
    }
}

impl Api {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server)
    }
}

/// Sends an API request to the host and reads its JSON answer; an error
/// answer becomes an error naming its code and message.
pub async fn call(request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
    let response = request
        .send()
        .await
        .context("reaching the leadgate host (is it running? see --server)")?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let error = &answer["error"];
        bail!(
            "{status}: {} {}",
            error["code"].as_str().unwrap_or("error"),
            error["message"].as_str().unwrap_or("")
        );
    }
    Ok(answer)
}
