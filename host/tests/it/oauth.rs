//! The host's OAuth 2.0 token sources against the simulator's Salesforce,
//! Entra ID and Zoho token endpoints: one token call for fifty concurrent
//! deliveries, a rotated refresh token that survives a restart, a refused
//! grant that pauses instead of hammering the endpoint.

use std::sync::Arc;

use leadgate::config::{OAuthConfig, OAuthGrant};
use leadgate::delivery::oauth::{OAuthError, TokenSource};
use leadgate::store::{self, Durability, Store};
use leadgate_sim::{
    DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_REFRESH_TOKEN, SimConfig, SimHandle,
    Simulator, Vendor,
};

struct Fixture {
    sim: Simulator,
    store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn new() -> Fixture {
        let sim = Simulator::start(SimConfig::default()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/oauth.db", dir.path().display());
        let store = store::open(&url, Durability::Full, store::seal::Crypt::ephemeral())
            .await
            .unwrap();
        Fixture {
            sim,
            store,
            _dir: dir,
        }
    }

    fn handle(&self) -> SimHandle {
        self.sim.handle()
    }

    fn config(&self, grant: OAuthGrant, path: &str) -> OAuthConfig {
        OAuthConfig {
            grant,
            token_url: format!("{}{path}", self.sim.base_url()),
            client_id: DEFAULT_CLIENT_ID.into(),
            client_secret: DEFAULT_CLIENT_SECRET.into(),
            refresh_token: (grant == OAuthGrant::RefreshToken)
                .then(|| DEFAULT_REFRESH_TOKEN.to_string()),
            scope: None,
        }
    }

    fn source(&self, destination: &str, config: OAuthConfig) -> Arc<TokenSource> {
        Arc::new(TokenSource::new(destination, config, self.store.clone()).unwrap())
    }
}

/// Fifty deliveries at once, each asking for a token: every answer.
async fn fifty<F, Fut>(source: &Arc<TokenSource>, ask: F) -> Vec<String>
where
    F: Fn(Arc<TokenSource>) -> Fut,
    Fut: std::future::Future<Output = Result<leadgate::delivery::oauth::AccessToken, OAuthError>>
        + Send
        + 'static,
{
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        tasks.spawn(ask(source.clone()));
    }
    let mut tokens = Vec::new();
    while let Some(t) = tasks.join_next().await {
        tokens.push(t.unwrap().unwrap().token);
    }
    tokens
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_deliveries_cause_one_token_call_and_one_refresh() {
    let f = Fixture::new().await;
    let sim = f.handle();
    let source = f.source(
        "salesforce",
        f.config(OAuthGrant::RefreshToken, "/services/oauth2/token"),
    );

    let tokens = fifty(&source, |s| async move { s.token().await }).await;
    assert!(tokens.iter().all(|t| *t == tokens[0]), "one token for all");
    assert_eq!(sim.oauth_calls(Vendor::Salesforce), 1);
    assert!(sim.oauth_access_valid(Vendor::Salesforce, &tokens[0]));
    let first = source.token().await.unwrap();
    // Salesforce says where to call, and gives no lifetime.
    assert_eq!(
        first.instance_url.as_deref(),
        Some(f.sim.base_url().as_str())
    );
    assert_eq!(first.expires_at_ms, None);

    // The session times out; fifty deliveries get a 401 with that token.
    sim.expire_oauth_access_tokens();
    let generation = first.generation;
    let renewed = fifty(&source, move |s| async move { s.refused(generation).await }).await;
    assert!(
        renewed
            .iter()
            .all(|t| *t == renewed[0] && *t != first.token)
    );
    assert_eq!(sim.oauth_calls(Vendor::Salesforce), 2, "refreshed once");
    assert!(sim.oauth_access_valid(Vendor::Salesforce, &renewed[0]));
    assert_eq!(source.calls(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_refresh_token_is_kept_and_survives_a_restart() {
    let f = Fixture::new().await;
    let sim = f.handle();
    sim.set_oauth_rotation(Vendor::Zoho, true);
    let config = f.config(OAuthGrant::RefreshToken, "/oauth/v2/token");
    let token = f.source("zoho", config.clone()).token().await.unwrap();
    assert_eq!(token.api_domain.as_deref(), Some(f.sim.base_url().as_str()));
    let expires_in = token.expires_at_ms.unwrap() - leadgate::now_ms();
    assert!(
        (3_590_000..=3_600_000).contains(&expires_in),
        "{expires_in}"
    );
    // The configured token is dead now; the stored one is the live one.
    let live = sim.refresh_tokens(Vendor::Zoho);
    assert!(
        !live.contains(&DEFAULT_REFRESH_TOKEN.to_string()),
        "{live:?}"
    );
    let stored = f.store.oauth_refresh_token("zoho").await.unwrap().unwrap();
    assert_eq!(live, vec![stored.refresh_token.clone()]);

    // A restarted host (a new source over the same store) still gets in,
    // and keeps the next rotation too.
    let restarted = f.source("zoho", config.clone());
    let again = restarted.token().await.unwrap();
    assert!(sim.oauth_access_valid(Vendor::Zoho, &again.token));
    assert_eq!(sim.oauth_calls(Vendor::Zoho), 2);
    let stored_again = f.store.oauth_refresh_token("zoho").await.unwrap().unwrap();
    assert_ne!(stored_again.refresh_token, stored.refresh_token);
    assert_eq!(
        sim.refresh_tokens(Vendor::Zoho),
        vec![stored_again.refresh_token]
    );

    // A new authorization in the configuration replaces the stored token.
    sim.add_refresh_token("re-authorized", Some(Vendor::Zoho));
    let reauthorized = OAuthConfig {
        refresh_token: Some("re-authorized".into()),
        ..config
    };
    f.source("zoho", reauthorized).token().await.unwrap();
    assert!(
        !sim.refresh_tokens(Vendor::Zoho)
            .contains(&"re-authorized".to_string()),
        "the configured token was used (and rotated)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_grant_pauses_without_hammering_the_endpoint() {
    let f = Fixture::new().await;
    let sim = f.handle();
    for (vendor, path, code) in [
        (
            Vendor::Salesforce,
            "/services/oauth2/token",
            "invalid_grant",
        ),
        (Vendor::Zoho, "/oauth/v2/token", "invalid_code"),
        (
            Vendor::Entra,
            "/sim-tenant/oauth2/v2.0/token",
            "invalid_grant",
        ),
    ] {
        sim.revoke_refresh_tokens();
        let source = f.source(
            &format!("{vendor:?}"),
            f.config(OAuthGrant::RefreshToken, path),
        );
        for _ in 0..20 {
            match source.token().await {
                Err(OAuthError::Refused { code: c, .. }) => assert_eq!(c, code),
                other => panic!("{vendor:?}: {other:?}"),
            }
        }
        assert_eq!(
            sim.oauth_calls(vendor),
            1,
            "{vendor:?}: one call, then paused"
        );
        assert!(source.paused().is_some());

        // Fixed at the CRM and resumed: the next delivery gets a token.
        sim.add_refresh_token(DEFAULT_REFRESH_TOKEN, None);
        source.resume().await;
        assert!(source.token().await.is_ok(), "{vendor:?}");
        assert_eq!(sim.oauth_calls(vendor), 2);
    }

    // A wrong client secret is a refusal too.
    let bad = OAuthConfig {
        client_secret: "wrong".into(),
        ..f.config(OAuthGrant::RefreshToken, "/services/oauth2/token")
    };
    let err = f.source("bad", bad).token().await.unwrap_err();
    assert!(
        matches!(&err, OAuthError::Refused { code, .. } if code == "invalid_client"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamics_gets_an_application_token_from_entra_id() {
    let f = Fixture::new().await;
    let sim = f.handle();
    let path = "/contoso.onmicrosoft.com/oauth2/v2.0/token";
    let config = OAuthConfig {
        scope: Some("https://contoso.crm.dynamics.com/.default".into()),
        ..f.config(OAuthGrant::ClientCredentials, path)
    };
    let token = f.source("dynamics", config.clone()).token().await.unwrap();
    assert!(sim.oauth_access_valid(Vendor::Entra, &token.token));
    let expires_in = token.expires_at_ms.unwrap() - leadgate::now_ms();
    assert!(
        (3_590_000..=3_599_000).contains(&expires_in),
        "{expires_in}"
    );

    // Without the resource's /.default scope Entra ID refuses the grant.
    let unscoped = OAuthConfig {
        scope: None,
        ..config
    };
    let err = f.source("unscoped", unscoped).token().await.unwrap_err();
    assert!(
        matches!(&err, OAuthError::Refused { code, description, .. }
            if code == "invalid_scope" && description.starts_with("AADSTS1002012")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_token_endpoint_is_retried_later_not_paused() {
    let f = Fixture::new().await;
    let config = OAuthConfig {
        token_url: "http://127.0.0.1:9/services/oauth2/token".into(),
        ..f.config(OAuthGrant::RefreshToken, "")
    };
    let source = f.source("down", config);
    for _ in 0..2 {
        let err = source.token().await.unwrap_err();
        assert!(matches!(err, OAuthError::Unavailable { .. }), "{err}");
    }
    assert!(source.paused().is_none());
    // The second round came within the back-off: the same error, no call.
    assert_eq!(source.calls(), 1);
}

/// A host process killed with SIGKILL right after a refresh that rotated
/// the refresh token (the first write with the new access token has
/// reached the CRM) must come back with the rotated token: the one in its
/// configuration was spent by that refresh. Three rounds, each a fresh
/// process that must refresh (and rotate) again; then every lead is in
/// Salesforce once and the destination never paused.
#[tokio::test]
async fn a_rotated_refresh_token_survives_a_kill_9_right_after_the_refresh() {
    use std::time::{Duration, Instant};

    use crate::support::{
        Host, free_port, generated_admin_token, get_admin_json, host_config_with, wait_ready,
    };

    leadgate_runtime::outbound::install_crypto_provider();
    let f = Fixture::new().await;
    let sim = f.handle();
    sim.set_oauth_rotation(Vendor::Salesforce, true);
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let destination = format!(
        "[destinations.salesforce]\nadapter = \"salesforce\"\nmapping = \"salesforce.yaml\"\n\
         allowed_hosts = [\"127.0.0.1\"]\n\
         [destinations.salesforce.oauth]\ngrant = \"refresh_token\"\n\
         token_url = \"{}/services/oauth2/token\"\nclient_id = \"{DEFAULT_CLIENT_ID}\"\n\
         client_secret = \"{DEFAULT_CLIENT_SECRET}\"\nrefresh_token = \"{DEFAULT_REFRESH_TOKEN}\"\n",
        f.sim.base_url()
    );
    let config = dir.path().join("leadgate.toml");
    std::fs::write(
        &config,
        host_config_with(
            port,
            &dir.path().join("leadgate.db"),
            "oauth-kill-key-0001",
            "poll_ms = 10\nlinger_ms = 5",
            &destination,
        ),
    )
    .unwrap();
    let log = dir.path().join("host.log");
    let client = reqwest::Client::new();
    let post = |from: u32, n: u32| {
        let leads: Vec<serde_json::Value> = (from..from + n)
            .map(|i| {
                serde_json::json!({"email": format!("rotated.{i}@example.com"),
                    "first_name": "Rot", "last_name": format!("Ated{i}"),
                    "company": format!("Rotation {i} Ltd"), "phone": format!("+1415555{i:04}")})
            })
            .collect();
        let client = client.clone();
        let url = url.clone();
        async move {
            let r = client
                .post(format!("{url}/v1/leads"))
                .bearer_auth("oauth-kill-key-0001")
                .json(&leads)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
        }
    };
    let stored = |sim: &SimHandle| sim.salesforce_records("Lead").len();

    let rounds = 3u32;
    for round in 0..rounds {
        let calls = sim.oauth_calls(Vendor::Salesforce);
        let host = Host::spawn(&config, &log);
        wait_ready(&client, &url).await;
        let before = stored(&sim);
        post(round * 10, 10).await;
        // The moment the first write made with the new token lands.
        let started = Instant::now();
        while stored(&sim) == before {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "round {round}: nothing reached Salesforce; host log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        host.kill9();
        assert!(
            sim.oauth_calls(Vendor::Salesforce) > calls,
            "round {round}: the new process refreshed"
        );
        let live = sim.refresh_tokens(Vendor::Salesforce);
        assert_eq!(live.len(), 1, "rotation leaves one live token: {live:?}");
        assert_ne!(
            live[0], DEFAULT_REFRESH_TOKEN,
            "the configured one is spent"
        );
    }

    // A last process finishes the work with the token the store kept.
    let host = Host::spawn(&config, &log);
    wait_ready(&client, &url).await;
    post(rounds * 10, 5).await;
    let total = (rounds * 10 + 5) as usize;
    let started = Instant::now();
    loop {
        let records = sim.salesforce_records("Lead");
        let done = (0..total as u32).all(|i| {
            sim.salesforce_count_by_email("Lead", &format!("rotated.{i}@example.com")) == 1
        });
        if done {
            assert_eq!(records.len(), total, "one record per person");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{} of {total} leads in Salesforce; host log:\n{}",
            records.len(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let plugins = get_admin_json(
        &client,
        &generated_admin_token(&dir.path().join("leadgate.db")),
        &format!("{url}/v1/plugins"),
    )
    .await;
    let oauth = &plugins["plugins"][0]["oauth"];
    assert_eq!(oauth["paused"], false, "{plugins}");
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!log_text.contains("invalid_grant"), "{log_text}");
    host.terminate(Duration::from_secs(10)).await;
}
