//! A CRM that refuses a whole batch for one bad record: the host splits
//! the batch, the good records go through, and only the bad ones are
//! dead-lettered, each with its own error. The `bad` test adapter plays
//! that CRM (`mode = "all-or-nothing"`).

use leadgate_e2e::{SCRAPER_KEY, TestEnv};
use leadgate_sim::SimConfig;
use serde_json::{Value, json};

#[tokio::test]
async fn a_batch_refused_whole_is_split_down_to_the_bad_records() -> anyhow::Result<()> {
    let plugins = tempfile_dir()?;
    let bundled = leadgate::config::Config::load(None)?.plugins_dir();
    std::fs::copy(bundled.join("hubspot.wasm"), plugins.join("hubspot.wasm"))?;
    std::fs::copy(leadgate_test_guests::BAD_ADAPTER, plugins.join("bad.wasm"))?;
    let extra = format!(
        "[plugins]\ndir = \"{}\"\n\
         [destinations.strict]\nadapter = \"bad\"\nmapping = \"webhook.yaml\"\n\
         allowed_hosts = [\"api.example.com\"]\n\
         [destinations.strict.config]\nmode = \"all-or-nothing\"\n\
         [destinations.strict.secrets]\ntoken = \"t\"\n",
        plugins.display()
    );
    let env = TestEnv::start(SimConfig::default(), &extra).await?;
    let leads: Vec<Value> = (0..10)
        .map(|n| {
            let email = if n == 3 || n == 8 {
                format!("bad.{n}@example.com")
            } else {
                format!("good.{n}@example.com")
            };
            json!({ "email": email })
        })
        .collect();
    let answer = env.post_accepted(SCRAPER_KEY, &leads).await?;
    env.drain(30).await?;
    let mut dead = Vec::new();
    for (n, r) in answer["results"].as_array().unwrap().iter().enumerate() {
        let id = r["id"].as_str().unwrap();
        let (_, view) = env.get_json(&format!("/v1/leads/{id}")).await?;
        let job = view["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|j| j["destination"] == "strict")
            .unwrap()
            .clone();
        if job["state"] == "dead" {
            let error = job["last_error"].as_str().unwrap().to_string();
            assert!(
                error.contains(&format!("{id}:strict")),
                "its own error: {error}"
            );
            dead.push(n);
        } else {
            assert_eq!(job["state"], "delivered", "{job}");
        }
    }
    assert_eq!(dead, vec![3, 8]);
    // The other destination was not affected.
    assert_eq!(env.sim().contact_count(), 10);
    env.stop().await?;
    let _ = std::fs::remove_dir_all(&plugins);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("leadgate-split-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
