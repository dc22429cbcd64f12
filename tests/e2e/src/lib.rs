//! A test environment: the CRM simulator and a leadgate host wired to it,
//! each on its own loopback port, with a fresh SQLite store. The host loads
//! the real HubSpot adapter component built by this build.

use std::time::Duration;

use leadgate::app::RunningHost;
use leadgate::config::Config;
use leadgate_sim::{SimConfig, SimHandle, Simulator};
use reqwest::StatusCode;
use serde_json::Value;

pub const SCRAPER_KEY: &str = "test-scraper-key-0001";
pub const WEBFORM_KEY: &str = "test-webform-key-0002";
pub const WEBHOOK_SECRET: &str = "test-client-secret";
/// The admin token of the test host, with every scope.
pub const ADMIN_TOKEN: &str = "test-admin-token-0003-all-scopes";

pub struct TestEnv {
    pub sim: Simulator,
    pub host: RunningHost,
    /// A client with no credentials (sources and webhooks add their own).
    pub client: reqwest::Client,
    /// A client that sends [`ADMIN_TOKEN`] (the admin API).
    pub admin: reqwest::Client,
    dir: std::path::PathBuf,
}

impl TestEnv {
    /// Simulator with `sim` settings; host with the default test config
    /// plus `extra` TOML (later keys win), in which `{sim}` stands for the
    /// simulator's base URL.
    pub async fn start(sim: SimConfig, extra: &str) -> anyhow::Result<TestEnv> {
        leadgate_runtime::outbound::install_crypto_provider();
        let sim = Simulator::start(sim).await?;
        let dir = std::env::temp_dir().join(format!("leadgate-e2e-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir)?;
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\
             [store]\nurl = \"sqlite://{db}\"\n\
             [plugins]\ncache_dir = \"{cache}\"\n\
             [delivery]\npoll_ms = 10\nlinger_ms = 5\nbackoff_base_ms = 20\nbackoff_cap_ms = 200\n\
             [auth.tokens.test]\ntoken = \"{ADMIN_TOKEN}\"\nscopes = [\"read\", \"operate\", \"admin\"]\n\
             [sources.scraper]\napi_key = \"{SCRAPER_KEY}\"\ndefault_region = \"US\"\n\
             [sources.webform]\napi_key = \"{WEBFORM_KEY}\"\ndefault_region = \"GB\"\n\
             [destinations.hubspot]\nadapter = \"hubspot\"\nmapping = \"hubspot.yaml\"\nallowed_hosts = [\"127.0.0.1\"]\n\
             [destinations.hubspot.config]\nbase-url = \"{base}\"\n\
             [destinations.hubspot.secrets]\naccess-token = \"sim-token\"\nclient-secret = \"{WEBHOOK_SECRET}\"\n",
            db = dir.join("leadgate.db").display(),
            // One compiled-component cache for every test: the Python and
            // JavaScript components take seconds to compile.
            cache = std::env::temp_dir()
                .join("leadgate-e2e-plugin-cache")
                .display(),
            base = sim.base_url(),
        );
        let extra = extra.replace("{sim}", &sim.base_url());
        let config = Config::from_toml_layers(&[&toml, &extra])?;
        let host = leadgate::app::start(config).await?;
        // Ready as an orchestrator sees it (`/v1/health` answers 200).
        host.index_ready().await?;
        Ok(TestEnv {
            sim,
            host,
            client: reqwest::Client::new(),
            admin: admin_client(ADMIN_TOKEN),
            dir,
        })
    }

    pub async fn default() -> anyhow::Result<TestEnv> {
        Self::start(SimConfig::default(), "").await
    }

    pub fn sim(&self) -> SimHandle {
        self.sim.handle()
    }

    /// What `leadgate dlq …` is given to reach this host: its URL and the
    /// admin token.
    pub fn cli_api(&self) -> anyhow::Result<leadgate::cli::api::Api> {
        leadgate::cli::api::HostArgs {
            server: self.host.url(),
            token: Some(ADMIN_TOKEN.into()),
            config: None,
            ca_cert: None,
        }
        .connect()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.host.url())
    }

    /// Posts a body as a source; returns the status and the JSON answer.
    pub async fn post_leads(
        &self,
        key: Option<&str>,
        body: &str,
    ) -> anyhow::Result<(StatusCode, Value)> {
        let mut req = self
            .client
            .post(self.url("/v1/leads"))
            .header("content-type", "application/json")
            .body(body.to_string());
        if let Some(key) = key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let json = resp.json().await.unwrap_or(Value::Null);
        Ok((status, json))
    }

    /// Posts leads as a source and insists on a 202; returns the answer.
    pub async fn post_accepted(&self, key: &str, leads: &[Value]) -> anyhow::Result<Value> {
        let body = Value::Array(leads.to_vec()).to_string();
        let (status, answer) = self.post_leads(Some(key), &body).await?;
        anyhow::ensure!(status == StatusCode::ACCEPTED, "{status}: {answer}");
        Ok(answer)
    }

    /// GETs an admin API path with [`ADMIN_TOKEN`].
    pub async fn get_json(&self, path: &str) -> anyhow::Result<(StatusCode, Value)> {
        let resp = self.admin.get(self.url(path)).send().await?;
        let status = resp.status();
        Ok((status, resp.json().await.unwrap_or(Value::Null)))
    }

    /// A sample of `/metrics`: the value of the line whose name (with its
    /// labels, as written there) is `series`; None when there is none.
    pub async fn metric(&self, series: &str) -> anyhow::Result<Option<f64>> {
        let text = self
            .admin
            .get(self.url("/metrics"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        let prefix = format!("{series} ");
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok()))
    }

    /// Something for the admin API to show: one lead delivered and one
    /// dead letter (posted while the CRM was down, with `max_attempts = 1`
    /// in the host's configuration). Returns the lead's id and the dead
    /// letter's job id; `tag` makes the emails unique.
    pub async fn lead_and_dead_letter(&self, tag: &str) -> anyhow::Result<(String, String)> {
        let answer = self
            .post_accepted(
                SCRAPER_KEY,
                &[serde_json::json!({"email": format!("{tag}.1@example.com"), "first_name": "Ada"})],
            )
            .await?;
        let lead = answer["results"][0]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.drain(30).await?;
        self.sim().set_faults(leadgate_sim::Faults {
            outage: true,
            ..leadgate_sim::Faults::default()
        });
        self.post_accepted(
            SCRAPER_KEY,
            &[serde_json::json!({"email": format!("{tag}.2@example.com")})],
        )
        .await?;
        let counts = self.drain(30).await?;
        self.sim().set_faults(leadgate_sim::Faults::default());
        anyhow::ensure!(counts.jobs_dead == 1, "one dead letter: {counts:?}");
        let (_, list) = self.get_json("/v1/dead-letters").await?;
        let job = list["dead_letters"][0]["job"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Ok((lead, job))
    }

    /// Erases a person (`DELETE /v1/persons/{id}`) and insists on a 200;
    /// returns the receipt.
    pub async fn erase(&self, person_id: &str) -> anyhow::Result<Value> {
        let resp = self
            .admin
            .delete(self.url(&format!("/v1/persons/{person_id}")))
            .send()
            .await?;
        let status = resp.status();
        let receipt: Value = resp.json().await.unwrap_or(Value::Null);
        anyhow::ensure!(status == StatusCode::OK, "{status}: {receipt}");
        Ok(receipt)
    }

    /// Erases the person of the first lead of a post's `answer`, waits for
    /// its deletions at the CRMs, and checks that each was delivered with
    /// the outcome `deleted <crm id>`; returns the receipt and
    /// `destination`'s CRM ids.
    pub async fn erase_and_wait(
        &self,
        answer: &Value,
        destination: &str,
    ) -> anyhow::Result<(Value, Vec<String>)> {
        let person = answer["results"][0]["id"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no lead id in {answer}"))?;
        let receipt = self.erase(person).await?;
        let records = receipt["destinations"]
            .as_array()
            .and_then(|all| all.iter().find(|d| d["destination"] == destination))
            .ok_or_else(|| anyhow::anyhow!("no {destination} records in {receipt}"))?;
        let ids: Vec<String> = serde_json::from_value(records["crm_ids"].clone())?;
        let jobs: Vec<String> = serde_json::from_value(records["deletion_jobs"].clone())?;
        anyhow::ensure!(
            !ids.is_empty() && jobs.len() == ids.len(),
            "one deletion per record: {receipt}"
        );
        self.drain(60).await?;
        let (_, lead) = self.get_json(&format!("/v1/leads/{person}")).await?;
        for job in &jobs {
            let view = lead["deliveries"]
                .as_array()
                .and_then(|all| all.iter().find(|d| d["id"] == job.as_str()))
                .ok_or_else(|| anyhow::anyhow!("deletion {job} not among {lead}"))?;
            anyhow::ensure!(view["state"] == "delivered", "{view}");
            let crm_id = view["crm_id"].as_str().unwrap_or_default();
            anyhow::ensure!(
                ids.iter().any(|i| i == crm_id) && view["outcome"] == format!("deleted {crm_id}"),
                "{view}"
            );
        }
        Ok((receipt, ids))
    }

    /// Waits for the outbox to drain; fails the test after `secs`.
    pub async fn drain(&self, secs: u64) -> anyhow::Result<leadgate::store::StoreCounts> {
        let (drained, counts) = self
            .host
            .wait_until_drained(Duration::from_secs(secs))
            .await?;
        anyhow::ensure!(drained, "outbox did not drain in {secs} s: {counts:?}");
        Ok(counts)
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.host.shutdown().await?;
        self.sim.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

/// A client that sends `token` as its bearer token on every request.
pub fn admin_client(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("a header value"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("a client")
}

/// The shipped HubSpot mapping.
pub fn shipped_hubspot_mapping() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings/hubspot.yaml")
}

/// The shipped HubSpot mapping with another constant lifecycle stage: a
/// valid new mapping whose effect shows on every record it maps.
pub fn hubspot_mapping_with_stage(stage: &str) -> anyhow::Result<String> {
    let shipped = std::fs::read_to_string(shipped_hubspot_mapping())?;
    let changed = shipped.replace(
        "lifecyclestage:\n    value: lead",
        &format!("lifecyclestage:\n    value: {stage}"),
    );
    anyhow::ensure!(
        changed != shipped || stage == "lead",
        "the shipped mapping changed shape: no `lifecyclestage: value: lead`"
    );
    Ok(changed)
}

/// The `replayed` event of a dead letter's trail (`GET /v1/dead-letters/{id}`).
pub fn replayed_event(detail: &Value) -> &Value {
    detail["events"]
        .as_array()
        .and_then(|events| events.iter().find(|e| e["event"] == "replayed"))
        .unwrap_or_else(|| panic!("the replay is not in the trail: {detail}"))
}

impl TestEnv {
    /// A test environment whose HubSpot mapping is a copy of the shipped
    /// one in a folder of its own, hot reloaded (write to
    /// `dir/hubspot.yaml` to change it), with `extra` configuration.
    pub async fn with_mappings_dir(extra: &str) -> anyhow::Result<(TestEnv, tempfile::TempDir)> {
        let dir = tempfile::tempdir()?;
        std::fs::copy(shipped_hubspot_mapping(), dir.path().join("hubspot.yaml"))?;
        let config = format!(
            "{extra}\n[plugins]\nmappings_dir = \"{}\"\nhot_reload = true\n",
            dir.path().display()
        );
        Ok((TestEnv::start(SimConfig::default(), &config).await?, dir))
    }
}

/// Person `n` of a test's set: the email `{prefix}.{n}@example.com`, a
/// phone and a company of their own (so dedupe keeps any two apart), a
/// first name from a short list, last name "Tester", title "Engineer",
/// city Oslo.
pub fn distinct_person(prefix: &str, n: u32) -> Value {
    const FIRST: [&str; 5] = ["Ada", "Grace", "Alan", "Edsger", "Barbara"];
    serde_json::json!({
        "email": format!("{prefix}.{n}@example.com"),
        "first_name": FIRST[n as usize % FIRST.len()],
        "last_name": "Tester",
        "phone": format!("+1 415 555 {:04}", 1000 + n % 9000),
        "company": format!("{} {n} Holdings", prefix.to_uppercase()),
        "title": "Engineer",
        "city": "Oslo",
    })
}

/// The `oauth` section of `destination` for a refresh-token grant at the
/// simulator's `token_path`, with the simulator's default client and
/// refresh token (`{sim}` is filled in by [`TestEnv::start`]).
pub fn refresh_token_grant(destination: &str, token_path: &str) -> String {
    format!(
        "[destinations.{destination}.oauth]\ngrant = \"refresh_token\"\n\
         token_url = \"{{sim}}{token_path}\"\nclient_id = \"{}\"\n\
         client_secret = \"{}\"\nrefresh_token = \"{}\"\n",
        leadgate_sim::DEFAULT_CLIENT_ID,
        leadgate_sim::DEFAULT_CLIENT_SECRET,
        leadgate_sim::DEFAULT_REFRESH_TOKEN
    )
}
