//! What the tests that run `leadgate serve` as its own process share: a
//! port, the process, and waiting for it to answer.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A test's size knob: the environment variable `name` as a number, or
/// `default`.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub use leadgate::testing::letters;

/// A free loopback port (the host is restarted on the same one).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `leadgate serve`.
pub struct Host {
    child: Child,
}

impl Host {
    /// Starts the binary with `config`, its log appended to `log`.
    pub fn spawn(config: &std::path::Path, log: &std::path::Path) -> Host {
        Host::spawn_with_env(config, log, &[])
    }

    /// The same, with environment variables set for the process.
    pub fn spawn_with_env(
        config: &std::path::Path,
        log: &std::path::Path,
        env: &[(&str, &str)],
    ) -> Host {
        Host::start(
            Command::new(env!("CARGO_BIN_EXE_leadgate")),
            config,
            log,
            env,
        )
    }

    /// Starts the binary in the network namespace `netns` (`ip netns
    /// exec` runs it in place: the child is the host itself).
    pub fn spawn_in(netns: &str, config: &std::path::Path, log: &std::path::Path) -> Host {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", netns, env!("CARGO_BIN_EXE_leadgate")]);
        Host::start(command, config, log, &[])
    }

    fn start(
        mut command: Command,
        config: &std::path::Path,
        log: &std::path::Path,
        env: &[(&str, &str)],
    ) -> Host {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = command
            .args(["serve", "--config"])
            .arg(config)
            .env("LEADGATE_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting leadgate serve");
        Host { child }
    }

    pub fn kill9(mut self) {
        self.kill_now();
    }

    fn kill_now(&mut self) {
        // Child::kill sends SIGKILL (a no-op error once it has exited).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM and waits for the process to end (at most `limit`,
    /// then SIGKILL and a failed test).
    pub async fn terminate(mut self, limit: Duration) -> ExitStatus {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a child's pid and a signal number.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM");
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if started.elapsed() > limit {
                self.kill_now();
                panic!("leadgate serve did not exit within {limit:?} of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A host is never left running: a test that fails (panics) before it
/// kills its host would otherwise leave the process behind, using CPU
/// until the machine restarts.
impl Drop for Host {
    fn drop(&mut self) {
        self.kill_now();
    }
}

/// Runs the `leadgate` CLI (without the token and configuration of the
/// environment the tests run in, plus `env`): whether it succeeded, and
/// what it printed.
pub fn leadgate(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_leadgate"))
        .args(args)
        .env_remove("LEADGATE_TOKEN")
        .env_remove("LEADGATE_CONFIG")
        .envs(env.iter().copied())
        .output()
        .expect("running leadgate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every file under `dir` (its folders too), but `skip`.
pub fn files_under(dir: &std::path::Path, skip: &[&std::path::Path]) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if !skip.contains(&path.as_path()) {
                out.push(path);
            }
        }
    }
    out
}

/// The files under `dir` whose bytes hold `needle`, and which.
pub fn files_holding(dir: &std::path::Path, needles: &[String]) -> Vec<String> {
    let mut found = Vec::new();
    for file in files_under(dir, &[]) {
        let bytes = std::fs::read(&file).unwrap();
        for needle in needles {
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(format!("{} holds {needle}", file.display()));
            }
        }
    }
    found
}

/// Posts one lead with a source's key and returns its result (the answer
/// must be a 202).
pub async fn post_lead(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    lead: serde_json::Value,
) -> serde_json::Value {
    let answer = client
        .post(format!("{url}/v1/leads"))
        .bearer_auth(key)
        .json(&lead)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 202);
    answer.json::<serde_json::Value>().await.unwrap()["results"][0].clone()
}

/// Posts leads with a source's key: the answer's status and body.
pub async fn post_batch(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    leads: &[serde_json::Value],
) -> (u16, serde_json::Value) {
    let answer = client
        .post(format!("{url}/v1/leads"))
        .bearer_auth(key)
        .json(&leads)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap())
}

/// Waits until the host answers `/v1/health`.
pub async fn wait_ready(client: &reqwest::Client, url: &str) {
    let started = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{url}/v1/health")).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the host did not come up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The admin token a host with no token configured generated beside its
/// store `db` (what `leadgate dlq` reads), once the host is up.
pub fn generated_admin_token(db: &std::path::Path) -> String {
    let path = db.parent().unwrap().join("admin-token");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the generated admin token at {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// GETs an admin API `url` with `token`, and reads the JSON answer.
pub async fn get_admin_json(client: &reqwest::Client, token: &str, url: &str) -> serde_json::Value {
    let response = client.get(url).bearer_auth(token).send().await.unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

/// Waits until the store behind the admin API at `url` has no job pending
/// or leased (at most `limit`), and asserts none is dead.
pub async fn wait_drained(client: &reqwest::Client, token: &str, url: &str, limit: Duration) {
    let started = Instant::now();
    loop {
        let stats = get_admin_json(client, token, &format!("{url}/v1/stats")).await;
        let store = &stats["store"];
        if store["jobs_pending"] == 0 && store["jobs_leased"] == 0 {
            assert_eq!(store["jobs_dead"], 0, "{stats}");
            return;
        }
        assert!(started.elapsed() < limit, "not drained: {stats}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A host configuration: one source (`test`, API key `key`), the SQLite
/// store at `db`, the HubSpot adapter delivering to the simulator at `crm`,
/// and the `[delivery]` lines given.
pub fn host_config(
    port: u16,
    db: &std::path::Path,
    key: &str,
    crm: &str,
    delivery: &str,
) -> String {
    host_config_with(port, db, key, delivery, &hubspot_destination(crm))
}

/// The HubSpot destination of [`host_config`].
pub fn hubspot_destination(crm: &str) -> String {
    hubspot_destination_at(crm, "127.0.0.1", "")
}

/// A HubSpot destination at `crm` (a base URL on `host`), with the
/// `extra` lines in its table (`batch_size = 1`).
pub fn hubspot_destination_at(crm: &str, host: &str, extra: &str) -> String {
    format!(
        "[destinations.hubspot]\nadapter = \"hubspot\"\nmapping = \"hubspot.yaml\"\n\
         allowed_hosts = [\"{host}\"]\n{extra}\
         [destinations.hubspot.config]\nbase-url = \"{crm}\"\n\
         [destinations.hubspot.secrets]\naccess-token = \"sim-token\"\n"
    )
}

/// The configuration of one of several hosts sharing the store at `store`
/// (keys and the admin token in `dir`, generated by the first host), one
/// source `test` with API key `key`, listening on `listen`, with the lines
/// given under `[plugins]` and `[delivery]`, and `destinations`.
pub fn shared_store_config(
    listen: &str,
    store: &str,
    dir: &std::path::Path,
    key: &str,
    plugins: &str,
    delivery: &str,
    destinations: &str,
) -> String {
    format!(
        "[server]\nlisten = \"{listen}\"\n\
         [store]\nurl = \"{store}\"\n\
         [store.encryption]\nkey_file = \"{keys}\"\n\
         [auth]\ntoken_file = \"{token}\"\n\
         [plugins]\ncache_dir = \"{cache}\"\nhot_reload = false\nmax_memory_mb = 128\n{plugins}\
         [delivery]\n{delivery}\
         [sources.test]\napi_key = \"{key}\"\n\
         {destinations}",
        keys = dir.join("keys").display(),
        token = dir.join("admin-token").display(),
        cache = std::env::temp_dir()
            .join("leadgate-e2e-plugin-cache")
            .display(),
    )
}

/// The host's `/metrics` text (with `token`, where it asks for one).
pub async fn metrics_text(client: &reqwest::Client, url: &str, token: Option<&str>) -> String {
    let mut request = client.get(format!("{url}/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().text().await.unwrap()
}

/// A host configuration as [`host_config`], with the `destinations` given
/// (TOML tables) instead of HubSpot.
pub fn host_config_with(
    port: u16,
    db: &std::path::Path,
    key: &str,
    delivery: &str,
    destinations: &str,
) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\
         [store]\nurl = \"sqlite://{db}\"\n\
         [plugins]\ncache_dir = \"{cache}\"\nhot_reload = false\nmax_memory_mb = 128\n\
         [delivery]\n{delivery}\n\
         [sources.test]\napi_key = \"{key}\"\n\
         {destinations}",
        db = db.display(),
        cache = std::env::temp_dir()
            .join("leadgate-e2e-plugin-cache")
            .display(),
    )
}

/// A schema of its own on the test PostgreSQL (`leadgate::testing`), or
/// the test fails naming the server it could not reach.
pub async fn postgres_schema(prefix: &str) -> leadgate::testing::TestSchema {
    leadgate::testing::TestSchema::create(prefix)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// What a run over several hosts must end with: every acknowledged lead
/// (its id, and the number of its person) is stored, as the admin API at
/// `url` reads it; each person is one person; and the simulator created
/// each person's HubSpot record (by `email(p)`) once, `persons` records in
/// all.
pub async fn assert_one_record_per_person(
    client: &reqwest::Client,
    token: &str,
    url: &str,
    acknowledged: &std::collections::HashMap<String, usize>,
    persons: usize,
    crm: &leadgate_sim::SimHandle,
    email: impl Fn(usize) -> String,
) {
    let mut persons_of: std::collections::HashMap<usize, std::collections::HashSet<String>> =
        std::collections::HashMap::new();
    for (id, p) in acknowledged {
        let view = get_admin_json(client, token, &format!("{url}/v1/leads/{id}")).await;
        assert!(view["status"].is_string(), "acknowledged lead {id}: {view}");
        persons_of
            .entry(*p)
            .or_default()
            .insert(view["person_id"].as_str().unwrap().to_string());
    }
    for p in 0..persons {
        let ids = &persons_of[&p];
        assert_eq!(
            ids.len(),
            1,
            "person {p} became {} persons: {ids:?}",
            ids.len()
        );
        let creates = crm.creates(Some(leadgate_sim::Crm::Hubspot), &[&email(p)], &[]);
        assert_eq!(
            creates.len(),
            1,
            "person {p} was created {} times",
            creates.len()
        );
    }
    assert_eq!(crm.contact_count(), persons);
}
