//! Who may call what: every admin route × {no token, a source's key, a
//! `read`, an `operate` and an `admin` token, one with every scope} →
//! 401 / 403 naming the scope / 2xx; the open routes stay open and say
//! nothing; ingest takes only sources' keys; per-source rate limits; a
//! separate metrics address; HTTPS; slow and idle clients are cut off and
//! connections capped.

use std::time::{Duration, Instant};

use leadgate_e2e::{ADMIN_TOKEN, SCRAPER_KEY, TestEnv, WEBFORM_KEY};
use leadgate_sim::SimConfig;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const READ: &str = "reader-token-0123456789abcdef";
const OPERATE: &str = "operator-token-0123456789abcdef";
const ADMIN: &str = "admin-scope-token-0123456789abcdef";

fn tokens() -> String {
    format!(
        "[auth.tokens.reader]\ntoken = \"{READ}\"\nscopes = [\"read\"]\n\
         [auth.tokens.operator]\ntoken = \"{OPERATE}\"\nscopes = [\"operate\"]\n\
         [auth.tokens.keys]\ntoken = \"{ADMIN}\"\nscopes = [\"admin\"]\n\
         [delivery]\nmax_attempts = 1\n"
    )
}

/// A credential a caller may present.
#[derive(Clone, Copy, Debug)]
enum Caller {
    Nobody,
    Source,
    Reader,
    Operator,
    Admin,
    Root,
}

impl Caller {
    const ALL: [Caller; 6] = [
        Caller::Nobody,
        Caller::Source,
        Caller::Reader,
        Caller::Operator,
        Caller::Admin,
        Caller::Root,
    ];

    fn token(self) -> Option<&'static str> {
        match self {
            Caller::Nobody => None,
            Caller::Source => Some(SCRAPER_KEY),
            Caller::Reader => Some(READ),
            Caller::Operator => Some(OPERATE),
            Caller::Admin => Some(ADMIN),
            Caller::Root => Some(ADMIN_TOKEN),
        }
    }

    fn has(self, scope: &str) -> bool {
        match self {
            Caller::Nobody | Caller::Source => false,
            Caller::Reader => scope == "read",
            Caller::Operator => scope == "operate",
            Caller::Admin => scope == "admin",
            Caller::Root => true,
        }
    }
}

#[tokio::test]
async fn every_admin_route_asks_for_its_scope() -> anyhow::Result<()> {
    let env = TestEnv::start(SimConfig::default(), &tokens()).await?;
    let (lead, job) = env.lead_and_dead_letter("access").await?;
    let routes: Vec<(Method, String, Option<Value>, &str)> = vec![
        (Method::GET, format!("/v1/leads/{lead}"), None, "read"),
        (Method::GET, format!("/v1/persons/{lead}"), None, "read"),
        (Method::GET, "/v1/dead-letters".into(), None, "read"),
        (Method::GET, format!("/v1/dead-letters/{job}"), None, "read"),
        (Method::GET, "/v1/plugins".into(), None, "read"),
        (Method::GET, "/v1/stats".into(), None, "read"),
        (Method::GET, "/metrics".into(), None, "read"),
        (
            Method::POST,
            "/v1/dead-letters/replay".into(),
            Some(json!({"ids": [job]})),
            "operate",
        ),
        (
            Method::POST,
            "/v1/dead-letters/discard".into(),
            Some(json!({"ids": [job], "reason": "access test"})),
            "operate",
        ),
        (
            Method::POST,
            "/v1/destinations/hubspot/resume".into(),
            None,
            "operate",
        ),
        (Method::GET, "/v1/keys".into(), None, "admin"),
        (Method::POST, "/v1/keys/rotate".into(), None, "admin"),
        (
            Method::POST,
            format!("/v1/persons/{lead}/consent"),
            Some(json!({"withdrawn": true})),
            "admin",
        ),
        // Last: it erases the lead the routes above read.
        (Method::DELETE, format!("/v1/persons/{lead}"), None, "admin"),
    ];
    let mut checked = 0;
    for (method, path, body, scope) in &routes {
        for caller in Caller::ALL {
            let mut request = env.client.request(method.clone(), env.url(path));
            if let Some(token) = caller.token() {
                request = request.bearer_auth(token);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request.send().await?;
            let status = response.status();
            let challenge = response.headers().get("www-authenticate").cloned();
            let text = response.text().await?;
            let what = format!("{method} {path} as {caller:?}: {status} {text}");
            match caller {
                Caller::Nobody => {
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
                    assert!(challenge.is_some(), "{what}: no WWW-Authenticate");
                }
                _ if !caller.has(scope) => {
                    assert_eq!(status, StatusCode::FORBIDDEN, "{what}");
                    let body: Value = serde_json::from_str(&text)?;
                    assert_eq!(body["error"]["code"], "forbidden", "{what}");
                    assert_eq!(body["error"]["scope"], *scope, "{what}");
                    assert!(
                        body["error"]["message"].as_str().unwrap().contains(scope),
                        "{what}"
                    );
                }
                _ => assert!(status.is_success(), "{what}"),
            }
            // Nothing a refused caller gets names a lead's data.
            if !status.is_success() {
                assert!(!text.contains("access."), "{what}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, routes.len() * Caller::ALL.len());

    // A wrong token of the right shape is nobody.
    let wrong = env
        .client
        .get(env.url("/v1/stats"))
        .bearer_auth("reader-token-0123456789abcdeF")
        .send()
        .await?;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    env.stop().await
}

#[tokio::test]
async fn the_open_routes_say_nothing_and_ingest_takes_only_source_keys() -> anyhow::Result<()> {
    let env = TestEnv::start(SimConfig::default(), &tokens()).await?;
    env.post_accepted(SCRAPER_KEY, &[json!({"email": "open.1@example.com"})])
        .await?;
    env.drain(30).await?;
    let health = env.client.get(env.url("/v1/health")).send().await?;
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.json::<Value>().await?, json!({"status": "ok"}));

    for token in [ADMIN_TOKEN, READ] {
        let (status, answer) = env
            .post_leads(Some(token), r#"{"email": "open.2@example.com"}"#)
            .await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert_eq!(answer["error"]["code"], "forbidden");
    }
    let (status, _) = env
        .post_leads(None, r#"{"email": "open.2@example.com"}"#)
        .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // An unknown route is a plain 404 whatever the caller.
    let missing = env.client.get(env.url("/v1/nothing")).send().await?;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    env.stop().await
}

#[tokio::test]
async fn a_source_over_its_rate_limit_gets_429_and_others_go_on() -> anyhow::Result<()> {
    let env = TestEnv::start(
        SimConfig::default(),
        "[server]\nmax_leads_per_request = 20\n\
         [sources.scraper]\nrate_limit = { leads_per_second = 2, burst = 20 }\n",
    )
    .await?;
    let batch = |from: u32, n: u32| -> Vec<Value> {
        (from..from + n)
            .map(|i| json!({"email": format!("rate.{i}@example.com")}))
            .collect()
    };
    env.post_accepted(SCRAPER_KEY, &batch(0, 20)).await?;
    let (status, answer) = env
        .post_leads(Some(SCRAPER_KEY), &Value::Array(batch(20, 5)).to_string())
        .await?;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    assert_eq!(answer["error"]["code"], "rate_limited");
    assert_eq!(answer["error"]["leads_per_second"], 2);
    // 5 leads at 2/s: 3 s (rounded up).
    assert_eq!(answer["error"]["retry_after_s"], 3, "{answer}");
    // The same through the header.
    let response = env
        .client
        .post(env.url("/v1/leads"))
        .bearer_auth(SCRAPER_KEY)
        .body(json!({"email": "rate.99@example.com"}).to_string())
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response.headers()["retry-after"].to_str()?.parse()?;
    assert!((1..=3).contains(&retry), "{retry}");
    // Another source is not slowed by it.
    env.post_accepted(WEBFORM_KEY, &batch(100, 20)).await?;
    let counts = env.drain(30).await?;
    assert_eq!(counts.leads, 40, "nothing refused was stored: {counts:?}");
    assert_eq!(
        env.metric("leadgate_ingest_rate_limited_total").await?,
        Some(2.0)
    );
    env.stop().await
}

#[tokio::test]
async fn metrics_on_their_own_address_need_no_token_there() -> anyhow::Result<()> {
    let env = TestEnv::start(
        SimConfig::default(),
        "[server]\nmetrics_listen = \"127.0.0.1:0\"\n",
    )
    .await?;
    let addr = env.host.metrics_addr.expect("a metrics address");
    let open = env
        .client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await?;
    assert_eq!(open.status(), StatusCode::OK);
    assert!(
        open.text()
            .await?
            .contains("leadgate_ingest_requests_total")
    );
    // Nothing else is served there.
    let other = env
        .client
        .get(format!("http://{addr}/v1/stats"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?;
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
    // On the API's address /metrics still asks for a token.
    let guarded = env.client.get(env.url("/metrics")).send().await?;
    assert_eq!(guarded.status(), StatusCode::UNAUTHORIZED);
    env.stop().await
}

#[tokio::test]
async fn https_serves_ingest_admin_and_webhooks_when_a_certificate_is_configured()
-> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])?;
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem())?;
    std::fs::write(&key_path, cert.signing_key.serialize_pem())?;
    let env = TestEnv::start(
        SimConfig::default(),
        &format!(
            "[server]\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
            cert_path.display(),
            key_path.display()
        ),
    )
    .await?;
    assert!(env.host.url().starts_with("https://"));
    let ca = reqwest::Certificate::from_pem(cert.cert.pem().as_bytes())?;
    let client = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()?;
    let ingest = client
        .post(env.url("/v1/leads"))
        .bearer_auth(SCRAPER_KEY)
        .body(json!({"email": "tls.1@example.com"}).to_string())
        .send()
        .await?;
    assert_eq!(ingest.status(), StatusCode::ACCEPTED);
    assert_eq!(ingest.version(), reqwest::Version::HTTP_11);
    let stats = client
        .get(env.url("/v1/stats"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await?;
    assert_eq!(stats.status(), StatusCode::OK);
    // The webhook route answers over TLS too (a forged body is refused).
    let webhook = client
        .post(env.url("/v1/webhooks/hubspot"))
        .body("[]")
        .send()
        .await?;
    assert_eq!(webhook.status(), StatusCode::UNAUTHORIZED);
    // Plain HTTP on the TLS port gets no answer.
    let plain = env
        .client
        .get(format!("http://{}/v1/health", env.host.addr))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "{plain:?}");
    // A client that does not trust the certificate gets nothing either.
    assert!(env.client.get(env.url("/v1/health")).send().await.is_err());
    env.drain(30).await?;
    env.stop().await
}

/// Reads from a raw connection until the server closes it (or `limit`).
async fn closed_within(stream: &mut tokio::net::TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off_and_connections_capped() -> anyhow::Result<()> {
    let env = TestEnv::start(
        SimConfig::default(),
        "[server]\nmax_connections = 2\nheader_read_timeout_ms = 1000\nrequest_timeout_ms = 2000\n",
    )
    .await?;
    let addr = env.host.addr;
    // Two clients hold every connection: one sends half a request's
    // headers, one sends nothing.
    let mut slow = tokio::net::TcpStream::connect(addr).await?;
    slow.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n")
        .await?;
    let mut silent = tokio::net::TcpStream::connect(addr).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A third client waits: nothing more is accepted at the cap...
    let started = Instant::now();
    let third = tokio::spawn({
        let client = env.client.clone();
        let url = env.url("/v1/health");
        async move { client.get(url).send().await.map(|r| r.status()) }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!third.is_finished(), "served past the connection cap");
    // ...until the header deadline closes the two.
    assert!(closed_within(&mut slow, Duration::from_secs(5)).await);
    assert!(closed_within(&mut silent, Duration::from_secs(5)).await);
    assert_eq!(third.await??, StatusCode::OK);
    assert!(started.elapsed() < Duration::from_secs(5));

    // A body sent a byte at a time is cut off by the request deadline.
    let mut dribble = tokio::net::TcpStream::connect(addr).await?;
    dribble
        .write_all(
            format!(
                "POST /v1/leads HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SCRAPER_KEY}\r\n\
                 Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await?;
    let started = Instant::now();
    let mut answer = Vec::new();
    while started.elapsed() < Duration::from_secs(6) {
        if dribble.write_all(b" ").await.is_err() {
            break;
        }
        let mut buf = [0u8; 512];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(300), dribble.read(&mut buf)).await
        {
            answer.extend_from_slice(&buf[..n]);
            if n == 0 || answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    }
    drop(dribble);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(6));
    env.stop().await
}
