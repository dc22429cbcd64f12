//! Network partitions. Two `leadgate serve` hosts share one PostgreSQL
//! schema and one simulated HubSpot account, each in a network namespace
//! of its own that the test creates (`ip netns`), joined to the test's
//! namespace by two veth pairs: the **store** link (PostgreSQL, and the
//! test's own calls to the host) and the **crm** link (the simulator).
//! Cutting a link sets its outside end down: packets are dropped, nothing
//! is refused, connections hang as they do when a network fails.
//!
//! - **Cut from PostgreSQL mid-delivery**: host A is cut while it holds
//!   leases and calls the CRM. Its leases expire and host B delivers those
//!   jobs; A's dedupe turn passes to B, which goes on taking leads. When A
//!   comes back it completes nothing it lost (each of those jobs has one
//!   `delivered` event, from B, before A came back) and doubles nothing
//!   (one CRM record, created once, per person), and it takes leads again.
//! - **Cut from the CRM only**: A keeps taking leads but cannot reach the
//!   CRM, and its circuit breaker opens; B delivers A's leads while A is
//!   cut, its own breaker closed throughout (A's unanswered calls are
//!   A's failure, not the CRM's: B is not told to stop).
//!
//! At the end every acknowledged lead is stored, one person per person,
//! one record per person in the CRM, nothing dead.
//!
//! PostgreSQL listens on loopback, which a namespace cannot reach: the
//! test forwards the store link's outside address to it. The server then
//! sees the forwarder, whose connections stay up through a cut, so the
//! forwarder watches the host's side with TCP keepalives (a few seconds)
//! and closes both sides when the host is gone: what the server's own
//! keepalives do when a host reaches it directly.
//!
//! It needs root, iproute2 and PostgreSQL (`LEADGATE_TEST_POSTGRES`,
//! default `postgres://root@127.0.0.1:5432/test`), and fails saying which
//! is missing.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::{Duration, Instant};

use leadgate_sim::{Faults, SimConfig, Simulator};
use serde_json::{Value, json};

use crate::support::{
    Host, assert_one_record_per_person, get_admin_json, hubspot_destination_at, letters,
    metrics_text, postgres_schema, shared_store_config, wait_drained,
};

const KEY: &str = "partition-source-key-01";
/// Every host listens on this port in its own namespace.
const PORT: u16 = 7000;

#[tokio::test]
async fn a_host_cut_from_the_store_or_the_crm_loses_nothing_and_doubles_nothing() {
    leadgate_runtime::outbound::install_crypto_provider();
    sweep_namespaces();
    let nets = [Netns::create(0), Netns::create(1)];

    // PostgreSQL through a forwarder on each host's store link.
    let server = leadgate::testing::postgres_url();
    let parsed = reqwest::Url::parse(&server).expect("LEADGATE_TEST_POSTGRES is a URL");
    let upstream = tokio::net::lookup_host((
        parsed.host_str().unwrap_or("127.0.0.1"),
        parsed.port().unwrap_or(5432),
    ))
    .await
    .expect("the PostgreSQL host resolves")
    .next()
    .unwrap();
    let mut store_urls = Vec::new();
    for net in &nets {
        let listener = tokio::net::TcpListener::bind((net.store.outside, 0))
            .await
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(forward(listener, upstream));
        let mut url = parsed.clone();
        url.set_host(Some(&net.store.outside.to_string())).unwrap();
        url.set_port(Some(port)).unwrap();
        store_urls.push(url.to_string());
    }
    let test_schema = postgres_schema("lgpart").await;
    let store_urls: Vec<String> = store_urls
        .iter()
        .map(|url| test_schema.store_url(url))
        .collect();
    let (pool, schema) = (test_schema.pool.clone(), test_schema.name.clone());

    // The CRM, on every address of the test's namespace, slow enough that
    // a host is cut while calls are in flight.
    let sim = Simulator::start(SimConfig {
        addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let handle = sim.handle();
    handle.set_faults(Faults {
        latency_ms: 150,
        ..Faults::default()
    });
    let sim_port = sim.addr().port();

    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("hosts.log");
    let configs: Vec<std::path::PathBuf> = (0..2)
        .map(|n| {
            let crm = nets[n].crm.outside;
            let config = dir.path().join(format!("host{n}.toml"));
            std::fs::write(
                &config,
                shared_store_config(
                    &format!("0.0.0.0:{PORT}"),
                    &store_urls[n],
                    dir.path(),
                    KEY,
                    "http_timeout_ms = 2000\n",
                    "lease_ms = 3000\nlinger_ms = 5\npoll_ms = 20\nconcurrency = 2\n\
                     backoff_base_ms = 50\nbackoff_cap_ms = 1000\nmax_attempts = 1000\n\
                     breaker_failures = 2\n",
                    &hubspot_destination_at(
                        &format!("http://{crm}:{sim_port}"),
                        &crm.to_string(),
                        "batch_size = 1\n",
                    ),
                ),
            )
            .unwrap();
            config
        })
        .collect();
    let urls: Vec<String> = nets
        .iter()
        .map(|net| format!("http://{}:{PORT}", net.store.inside))
        .collect();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    // One after the other: the first generates the shared keys and token.
    let mut hosts = Vec::new();
    for n in 0..2 {
        hosts.push(Host::spawn_in(&nets[n].name, &configs[n], &log));
        crate::support::wait_ready(&client, &urls[n]).await;
    }
    let token = std::fs::read_to_string(dir.path().join("admin-token"))
        .unwrap()
        .trim()
        .to_string();
    let (a, b) = (0, 1);
    let mut run = Run {
        client: client.clone(),
        urls: urls.clone(),
        acknowledged: HashMap::new(),
    };

    // Both hosts take leads and deliver: every person posted to both at
    // once (as two copies from two sources would be).
    for p in 0..40 {
        run.post_pair(p).await;
    }
    // Cut A from PostgreSQL while it holds leases.
    let leased_by_a = loop {
        let owners = leased(&pool, &schema).await;
        let hosts_leasing: HashSet<&str> = owners.values().map(|o| host_of(o)).collect();
        if hosts_leasing.len() == 2 {
            break owners;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    nets[a].cut(Link::Store);
    let cut_at = Instant::now();
    let seen = heartbeats(&pool, &schema).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let now = heartbeats(&pool, &schema).await;
    let a_id = seen
        .iter()
        .find(|(host, last)| now.get(*host) == Some(last))
        .map(|(host, _)| host.clone())
        .expect("host A stopped its heartbeats when cut from the store");
    let lost: Vec<String> = leased_by_a
        .iter()
        .filter(|(_, owner)| host_of(owner) == a_id)
        .map(|(job, _)| job.clone())
        .collect();
    assert!(!lost.is_empty(), "A held no lease when it was cut");

    // B goes on: new persons, and persons A took before the cut.
    for p in 40..60 {
        run.post(b, p, 0).await;
    }
    for p in 0..10 {
        run.post(b, p, 2).await;
    }
    // A's leases expire and B delivers their jobs, while A is still cut.
    let limit = Instant::now() + Duration::from_secs(90);
    loop {
        let states = job_states(&pool, &schema, &lost).await;
        if states.values().all(|s| s == "delivered") {
            break;
        }
        assert!(
            Instant::now() < limit,
            "jobs A lost were not delivered by B within 90 s: {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let healed_ms = leadgate::now_ms();
    nets[a].heal(Link::Store);
    eprintln!(
        "partition: A cut from the store for {:.1?} holding {} leases; B delivered them",
        cut_at.elapsed(),
        lost.len()
    );
    // A comes back: its heartbeat runs again and it takes leads.
    let limit = Instant::now() + Duration::from_secs(120);
    while heartbeats(&pool, &schema).await.get(&a_id).copied() < Some(healed_ms) {
        assert!(Instant::now() < limit, "A did not come back to the store");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for p in 40..50 {
        run.post(a, p, 3).await;
    }
    for p in 60..70 {
        run.post(a, p, 0).await;
    }
    wait_drained(&client, &token, &urls[b], Duration::from_secs(120)).await;

    // Nothing A lost was completed again: one `delivered` each, from B,
    // before A came back.
    let delivered = delivery_events(&pool, &schema, &lost).await;
    for job in &lost {
        let events = &delivered[job];
        assert_eq!(
            events.iter().filter(|(e, _)| e == "delivered").count(),
            1,
            "job {job} A lost: {events:?}"
        );
        assert!(
            events.iter().all(|(_, at)| *at < healed_ms),
            "job {job} A lost was completed after A came back: {events:?}"
        );
    }

    // Cut A from the CRM only: A still takes leads, its calls time out and
    // its circuit breaker opens; B delivers A's leads all along (A's
    // unanswered calls say nothing of the CRM, so B's breaker stays
    // closed: it is not told of A's opening).
    nets[a].cut(Link::Crm);
    let crm_cut = Instant::now();
    // New persons to A until its breaker opens. B takes some of A's jobs
    // (every job A's two workers cannot take while their calls hang for
    // the 2 s timeout, and any B leases first), so how many posts it takes
    // varies: the bound is time, with persons 70..90 to spend.
    let limit = Instant::now() + Duration::from_secs(60);
    let mut next = 70;
    while breaker(&client, &token, &urls[a]).await["times_opened"] == 0 {
        if Instant::now() >= limit || next == 90 {
            let logged = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = logged.lines().rev().take(40).collect();
            panic!(
                "A's breaker did not open while A was cut from the CRM ({} posts to A in \
                 {:.1?}); A's breaker: {}; the hosts' log, newest first:\n{}",
                next - 70,
                crm_cut.elapsed(),
                breaker(&client, &token, &urls[a]).await,
                tail.join("\n")
            );
        }
        run.post(a, next, 0).await;
        next += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let posts_to_open = next - 70;
    for p in next..90 {
        run.post(a, p, 0).await;
    }
    for p in 60..65 {
        run.post(a, p, 4).await;
    }
    wait_drained(&client, &token, &urls[b], Duration::from_secs(60)).await;
    let (a_breaker, b_breaker) = (
        breaker(&client, &token, &urls[a]).await,
        breaker(&client, &token, &urls[b]).await,
    );
    assert_eq!(
        b_breaker["times_opened"], 0,
        "B stopped for A's cut: {b_breaker}"
    );
    eprintln!(
        "partition: A cut from the CRM; its breaker opened after {posts_to_open} posts; its \
         leads delivered by B in {:.1?}; A's breaker {a_breaker}",
        crm_cut.elapsed()
    );
    nets[a].heal(Link::Crm);
    for p in 90..100 {
        run.post_pair(p).await;
    }
    wait_drained(&client, &token, &urls[a], Duration::from_secs(120)).await;

    // Every acknowledged lead stored (read through B), one person each,
    // one CRM record each, created once.
    let persons = 100;
    assert_one_record_per_person(
        &client,
        &token,
        &urls[b],
        &run.acknowledged,
        persons,
        &handle,
        email,
    )
    .await;
    let metrics = metrics_text(&client, &urls[a], Some(&token)).await;
    let lost_results: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("leadgate_delivery_lease_lost_total"))
        .collect();
    eprintln!(
        "partition: {} leads for {persons} persons; A's results refused after it lost leases: \
         {lost_results:?}; simulator saw {:?}",
        run.acknowledged.len(),
        handle.stats()
    );
    drop(hosts);
    sim.shutdown().await;
    test_schema.drop_schema().await;
}

/// A host's circuit breaker for the CRM, as `GET /v1/plugins` shows it.
async fn breaker(client: &reqwest::Client, token: &str, url: &str) -> Value {
    get_admin_json(client, token, &format!("{url}/v1/plugins")).await["plugins"][0]["breaker"]
        .clone()
}

/// The leads posted and the person each acknowledged one is.
struct Run {
    client: reqwest::Client,
    urls: Vec<String>,
    acknowledged: HashMap<String, usize>,
}

impl Run {
    /// Person `p` to both hosts at once (copies 0 and 1).
    async fn post_pair(&mut self, p: usize) {
        let (first, second) = futures_util::future::join(
            post(&self.client, &self.urls[0], &lead(p, 0)),
            post(&self.client, &self.urls[1], &lead(p, 1)),
        )
        .await;
        for id in [first, second] {
            self.acknowledged.insert(id, p);
        }
    }

    /// Copy `copy` of person `p` to host `n`.
    async fn post(&mut self, n: usize, p: usize, copy: usize) {
        let id = post(&self.client, &self.urls[n], &lead(p, copy)).await;
        self.acknowledged.insert(id, p);
    }
}

fn email(p: usize) -> String {
    format!("person.{p}@example.com")
}

/// A copy of person `p`: the same email and name, other details.
fn lead(p: usize, copy: usize) -> Value {
    json!({
        "email": email(p),
        "first_name": "Kim",
        "last_name": format!("Tester{}", letters(p)),
        "phone": format!("+1 415 555 {:04}", p),
        "company": format!("Company {}", letters(copy)),
    })
}

/// Posts a lead until a host acknowledges it (a host waiting for the
/// dedupe turn that another host's cut session still holds answers 503
/// for a while); its id.
async fn post(client: &reqwest::Client, url: &str, lead: &Value) -> String {
    let limit = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = client
            .post(format!("{url}/v1/leads"))
            .bearer_auth(KEY)
            .json(lead)
            .send()
            .await;
        let refused = match answer {
            Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => {
                let body: Value = r.json().await.unwrap();
                return body["results"][0]["id"].as_str().unwrap().to_string();
            }
            Ok(r) => r.status().to_string(),
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < limit,
            "{url} did not take {lead} within 60 s: {refused}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The host of a lease owner (`<host>-<destination>-<worker>`).
fn host_of(owner: &str) -> &str {
    owner.split('-').next().unwrap_or(owner)
}

/// Leased jobs and their owners.
async fn leased(pool: &sqlx::PgPool, schema: &str) -> HashMap<String, String> {
    sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(format!(
        "SELECT id, lease_owner FROM {schema}.jobs WHERE state = 'leased'"
    )))
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

/// Each host's last heartbeat.
async fn heartbeats(pool: &sqlx::PgPool, schema: &str) -> HashMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(format!(
        "SELECT host, last_seen FROM {schema}.hosts"
    )))
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

async fn job_states(pool: &sqlx::PgPool, schema: &str, ids: &[String]) -> HashMap<String, String> {
    sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(format!(
        "SELECT id, state FROM {schema}.jobs WHERE id = ANY($1)"
    )))
    .bind(ids)
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

/// The delivery events of each job: (event, at).
async fn delivery_events(
    pool: &sqlx::PgPool,
    schema: &str,
    ids: &[String],
) -> HashMap<String, Vec<(String, i64)>> {
    let mut out: HashMap<String, Vec<(String, i64)>> = HashMap::new();
    for (job, event, at) in
        sqlx::query_as::<_, (String, String, i64)>(sqlx::AssertSqlSafe(format!(
            "SELECT job_id, event, at FROM {schema}.events
             WHERE stage = 'delivery' AND job_id = ANY($1) ORDER BY seq"
        )))
        .bind(ids)
        .fetch_all(pool)
        .await
        .unwrap()
    {
        out.entry(job).or_default().push((event, at));
    }
    out
}

/// Forwards connections accepted on `listener` to `upstream`, watching the
/// accepted side with TCP keepalives and a user timeout: when the host
/// behind it is cut off, both sides close within seconds.
async fn forward(listener: tokio::net::TcpListener, upstream: SocketAddr) {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(1))
        .with_interval(Duration::from_secs(1))
        .with_retries(3);
    loop {
        let Ok((mut down, _)) = listener.accept().await else {
            continue;
        };
        let socket = socket2::SockRef::from(&down);
        socket.set_tcp_keepalive(&keepalive).unwrap();
        socket
            .set_tcp_user_timeout(Some(Duration::from_secs(4)))
            .unwrap();
        tokio::spawn(async move {
            if let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await {
                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
            }
        });
    }
}

#[derive(Clone, Copy, Debug)]
enum Link {
    Store,
    Crm,
}

/// One end pair of a veth link: the device in the test's namespace and
/// the two addresses of its /30.
struct Veth {
    outside_dev: String,
    outside: Ipv4Addr,
    inside: Ipv4Addr,
}

/// A host's network namespace with its two links.
struct Netns {
    name: String,
    store: Veth,
    crm: Veth,
}

/// Namespaces of this test are `lgpart-<pid>-<n>`.
const NETNS_PREFIX: &str = "lgpart-";

impl Netns {
    /// Creates namespace `n` of this process and its links, or fails the
    /// test saying why.
    fn create(n: usize) -> Netns {
        let pid = std::process::id();
        let name = format!("{NETNS_PREFIX}{pid}-{n}");
        ip(&["netns", "add", &name]).unwrap_or_else(|e| {
            panic!(
                "cannot create the network namespace {name} ({e}): the partition test needs \
                 root and iproute2 (`ip netns`), and fails rather than pass without them"
            )
        });
        let netns = Netns {
            store: Veth::create(&name, pid, n, 0),
            crm: Veth::create(&name, pid, n, 1),
            name,
        };
        ip(&["-n", &netns.name, "link", "set", "lo", "up"]).unwrap();
        netns
    }

    fn link(&self, link: Link) -> &Veth {
        match link {
            Link::Store => &self.store,
            Link::Crm => &self.crm,
        }
    }

    /// Cuts the link: its outside end goes down, and packets either way
    /// are dropped (connections hang; nothing is refused).
    fn cut(&self, link: Link) {
        ip(&["link", "set", &self.link(link).outside_dev, "down"]).unwrap();
    }

    fn heal(&self, link: Link) {
        ip(&["link", "set", &self.link(link).outside_dev, "up"]).unwrap();
    }
}

impl Veth {
    /// Link `k` of namespace `n`: 10.231.(2n+k).x/30, `.x+1` outside and
    /// `.x+2` inside, x from the pid (two test runs at once stay apart).
    fn create(netns: &str, pid: u32, n: usize, k: usize) -> Veth {
        let outside_dev = format!("lgp{}{n}{k}", pid % 100_000);
        let inside_dev = format!("lgq{}{n}{k}", pid % 100_000);
        let (third, base) = ((n * 2 + k) as u8, ((pid % 63) * 4) as u8);
        let outside = Ipv4Addr::new(10, 231, third, base + 1);
        let inside = Ipv4Addr::new(10, 231, third, base + 2);
        let steps: [&[&str]; 6] = [
            &[
                "link",
                "add",
                &outside_dev,
                "type",
                "veth",
                "peer",
                "name",
                &inside_dev,
            ],
            &["link", "set", &inside_dev, "netns", netns],
            &["addr", "add", &format!("{outside}/30"), "dev", &outside_dev],
            &["link", "set", &outside_dev, "up"],
            &[
                "-n",
                netns,
                "addr",
                "add",
                &format!("{inside}/30"),
                "dev",
                &inside_dev,
            ],
            &["-n", netns, "link", "set", &inside_dev, "up"],
        ];
        for step in steps {
            ip(step).unwrap_or_else(|e| panic!("ip {}: {e}", step.join(" ")));
        }
        Veth {
            outside_dev,
            outside,
            inside,
        }
    }
}

/// Deleting the namespace deletes its veth pairs.
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// Deletes namespaces left by runs of this test that ended without
/// cleaning up (their process is gone).
fn sweep_namespaces() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(pid) = name
            .strip_prefix(NETNS_PREFIX)
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}
