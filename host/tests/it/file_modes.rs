//! The files a running host writes hold personal data: the store, its
//! WAL and shared memory, the compiled-plugin cache. They are the owner's
//! alone (0600, folders 0700) whatever umask the host was started with,
//! and a store an older version left readable by others is narrowed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use crate::support::{Host, free_port, hubspot_destination, wait_ready};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test]
async fn the_store_and_the_plugin_cache_are_the_owners_alone() {
    leadgate_runtime::outbound::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    // An existing store left readable by everyone (an older version, a
    // copy made by hand).
    let db = dir.path().join("data").join("leadgate.db");
    std::fs::create_dir_all(db.parent().unwrap()).unwrap();
    std::fs::write(&db, b"").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let fresh = dir.path().join("fresh").join("store").join("leadgate.db");
    let cache = dir.path().join("plugin-cache");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let config = |db: &Path| {
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n\
             [store]\nurl = \"sqlite://{}\"\n\
             [plugins]\ncache_dir = \"{}\"\nhot_reload = false\n\
             [sources.test]\napi_key = \"file-modes-key-0001\"\n{}",
            db.display(),
            cache.display(),
            hubspot_destination("http://127.0.0.1:9")
        )
    };
    let client = reqwest::Client::new();
    for db in [&db, &fresh] {
        let path = dir.path().join("leadgate.toml");
        std::fs::write(&path, config(db)).unwrap();
        let host = Host::spawn(&path, &dir.path().join("host.log"));
        wait_ready(&client, &url).await;
        let answer = client
            .post(format!("{url}/v1/leads"))
            .bearer_auth("file-modes-key-0001")
            .json(&serde_json::json!({"email": "private@example.com"}))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 202);
        for file in ["", "-wal", "-shm"] {
            let file = std::path::PathBuf::from(format!("{}{file}", db.display()));
            assert_eq!(mode(&file), 0o600, "{}", file.display());
        }
        host.terminate(Duration::from_secs(10)).await;
    }
    assert_eq!(mode(fresh.parent().unwrap()), 0o700, "a folder it made");
    assert_eq!(mode(&cache), 0o700, "the plugin cache");
    let entries: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
    assert!(!entries.is_empty(), "the cache holds the compiled adapter");
    for entry in entries {
        let m = mode(&entry.path());
        assert_eq!(m & 0o077, 0, "{} is {m:o}", entry.path().display());
    }
    let log = std::fs::read_to_string(dir.path().join("host.log")).unwrap_or_default();
    assert!(log.contains("narrowed to 0600"), "{log}");
}
