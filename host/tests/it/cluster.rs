//! Several hosts on one PostgreSQL: three `leadgate serve` processes share
//! a store (a schema of their own on the test PostgreSQL) and one HubSpot
//! account in the simulator, which enforces HubSpot's real 190 requests per
//! rolling 10 s. Every person is posted twice at the same moment, to two
//! different hosts; a host is killed with SIGKILL mid-run and started
//! again. At the end every acknowledged lead is stored (read through
//! another host), the simulator holds exactly one record per person, and
//! it answered no 429: the three hosts kept to one quota together. (Each
//! host alone would send up to 190 per 10 s: without the shared quota the
//! simulator refuses the excess.)
//!
//! The suite runs a short version; a longer one:
//!
//! ```text
//! CLUSTER_PERSONS=2000 cargo test --release -p leadgate --test it cluster -- --nocapture
//! ```
//!
//! It needs PostgreSQL (`LEADGATE_TEST_POSTGRES`, default
//! `postgres://root@127.0.0.1:5432/test`) and fails saying so without it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use leadgate_sim::{Crm, SimConfig, Simulator};
use serde_json::{Value, json};

use crate::support::{Host, env_or, free_port, get_admin_json, letters, wait_drained, wait_ready};

const KEY: &str = "cluster-source-key-0001";

/// A schema of its own on the test PostgreSQL, and the store URL that
/// selects it.
async fn postgres_schema() -> (sqlx::PgPool, String, String) {
    let url = std::env::var("LEADGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".into());
    let pool = match sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&url)
        .await
    {
        Ok(pool) => pool,
        Err(e) => panic!(
            "PostgreSQL is not reachable at {url} ({e}): the several-hosts test needs it \
             (start it, or set LEADGATE_TEST_POSTGRES to another server)"
        ),
    };
    let schema = format!(
        "lgcluster_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&pool)
        .await
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let store = format!("{url}{sep}options=-c%20search_path%3D{schema}");
    (pool, schema, store)
}

struct Node {
    url: String,
    config: std::path::PathBuf,
    host: Option<Host>,
}

#[tokio::test]
async fn three_hosts_share_one_store_and_one_quota_and_make_one_record_per_person() {
    leadgate_runtime::outbound::install_crypto_provider();
    let persons = env_or("CLUSTER_PERSONS", 150);
    let (pool, schema, store_url) = postgres_schema().await;
    let dir = tempfile::tempdir().unwrap();
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let handle = sim.handle();
    let log = dir.path().join("hosts.log");
    let mut nodes: Vec<Node> = (0..3)
        .map(|n| {
            let port = free_port();
            let config = dir.path().join(format!("host{n}.toml"));
            std::fs::write(
                &config,
                format!(
                    "[server]\nlisten = \"127.0.0.1:{port}\"\n\
                     [store]\nurl = \"{store_url}\"\n\
                     [store.encryption]\nkey_file = \"{keys}\"\n\
                     [auth]\ntoken_file = \"{token}\"\n\
                     [plugins]\ncache_dir = \"{cache}\"\nhot_reload = false\nmax_memory_mb = 128\n\
                     [delivery]\nlease_ms = 2000\nlinger_ms = 5\npoll_ms = 20\n\
                     backoff_base_ms = 20\nbackoff_cap_ms = 500\nmax_attempts = 1000\n\
                     [sources.test]\napi_key = \"{KEY}\"\n\
                     [destinations.hubspot]\nadapter = \"hubspot\"\nmapping = \"hubspot.yaml\"\n\
                     batch_size = 1\nallowed_hosts = [\"127.0.0.1\"]\n\
                     [destinations.hubspot.config]\nbase-url = \"{crm}\"\n\
                     [destinations.hubspot.secrets]\naccess-token = \"sim-token\"\n",
                    keys = dir.path().join("keys").display(),
                    token = dir.path().join("admin-token").display(),
                    cache = std::env::temp_dir()
                        .join("leadgate-e2e-plugin-cache")
                        .display(),
                    crm = sim.base_url(),
                ),
            )
            .unwrap();
            Node {
                url: format!("http://127.0.0.1:{port}"),
                config,
                host: None,
            }
        })
        .collect();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    // One after the other: the first generates the shared keys and token.
    for node in &mut nodes {
        node.host = Some(Host::spawn(&node.config, &log));
        wait_ready(&client, &node.url).await;
    }
    let token = std::fs::read_to_string(dir.path().join("admin-token"))
        .unwrap()
        .trim()
        .to_string();

    // Every person twice at once, to two hosts; host 1 killed a third of
    // the way in and started again two thirds in. A copy a host did not
    // acknowledge goes to the next host.
    let started = Instant::now();
    let mut acknowledged: HashMap<String, usize> = HashMap::new();
    for p in 0..persons {
        if p == persons / 3 {
            nodes[1].host.take().unwrap().kill9();
        }
        if p == 2 * persons / 3 {
            nodes[1].host = Some(Host::spawn(&nodes[1].config, &log));
            wait_ready(&client, &nodes[1].url).await;
        }
        let lead = |copy: usize| {
            json!({
                "email": format!("person.{p}@example.com"),
                "first_name": "Kim",
                "last_name": format!("Tester{}", letters(p)),
                "phone": format!("+1 415 555 {:04}", p % 10_000),
                "company": if copy == 0 { Value::Null } else { json!("Acme") },
            })
        };
        let posts = (0..2).map(|copy| {
            let (client, lead) = (client.clone(), lead(copy));
            let targets: Vec<String> = (0..3)
                .map(|k| nodes[(p + copy + k) % 3].url.clone())
                .collect();
            async move {
                for url in targets {
                    if let Some(id) = post(&client, &url, &lead).await {
                        return id;
                    }
                }
                panic!("no host acknowledged person {p}");
            }
        });
        for id in futures_util::future::join_all(posts).await {
            acknowledged.insert(id, p);
        }
    }
    let posted = started.elapsed();

    // Drained, as any host sees the shared store.
    wait_drained(&client, &token, &nodes[2].url, Duration::from_secs(600)).await;
    let elapsed = started.elapsed();

    // Every acknowledged lead is stored (read through host 0, whichever
    // host took it), and delivered or merged.
    let mut persons_of: HashMap<usize, HashSet<String>> = HashMap::new();
    for (id, p) in &acknowledged {
        let view =
            get_admin_json(&client, &token, &format!("{}/v1/leads/{id}", nodes[0].url)).await;
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
        let email = format!("person.{p}@example.com");
        let creates = handle.creates(Some(Crm::Hubspot), &[&email], &[]);
        assert_eq!(
            creates.len(),
            1,
            "person {p} was created {} times",
            creates.len()
        );
    }
    assert_eq!(handle.contact_count(), persons);
    let stats = handle.stats();
    assert_eq!(
        stats.rate_limited, 0,
        "the hosts together went over HubSpot's quota: {stats:?}"
    );
    eprintln!(
        "cluster: {} leads for {persons} persons over 3 hosts (one killed and restarted), posted in \
         {posted:.1?}, drained in {elapsed:.1?}; simulator saw {stats:?}",
        acknowledged.len(),
    );
    for node in &mut nodes {
        if let Some(host) = node.host.take() {
            host.kill9();
        }
    }
    sim.shutdown().await;
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&pool)
        .await;
}

/// Posts one lead; its id, or None if the host did not acknowledge it.
async fn post(client: &reqwest::Client, url: &str, lead: &Value) -> Option<String> {
    let response = client
        .post(format!("{url}/v1/leads"))
        .bearer_auth(KEY)
        .json(lead)
        .send()
        .await
        .ok()?;
    if response.status() != reqwest::StatusCode::ACCEPTED {
        return None;
    }
    let answer: Value = response.json().await.ok()?;
    Some(answer["results"][0]["id"].as_str()?.to_string())
}
