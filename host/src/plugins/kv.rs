//! The plugins' key-value import (`leadgate:plugin/kv`), kept in the store.
//!
//! What an adapter remembers across calls must outlive the process: the
//! Pipedrive adapter notes each person it creates (Pipedrive's search index
//! shows a new person only seconds later), and a host killed right after
//! such a create would otherwise search, find nothing and create the person
//! a second time. Each destination has its own namespace, so two
//! destinations running the same adapter against two accounts never share
//! a key. The limits are the runtime's: [`KV_MAX_VALUE_BYTES`] per value,
//! [`KV_MAX_ENTRIES`] live keys per namespace.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use leadgate_runtime::{KV_MAX_ENTRIES, KV_MAX_VALUE_BYTES, KvStore};

use crate::store::Store;

/// A [`KvStore`] on the host's store.
pub struct StoreKv {
    store: Arc<dyn Store>,
}

impl StoreKv {
    pub fn new(store: Arc<dyn Store>) -> StoreKv {
        StoreKv { store }
    }
}

impl KvStore for StoreKv {
    fn get<'a>(&'a self, namespace: &'a str, key: &'a str) -> BoxFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            match self.store.kv_get(namespace, key, crate::now_ms()).await {
                Ok(value) => value,
                Err(e) => {
                    tracing::warn!(namespace, error = %e, "plugin kv read failed");
                    None
                }
            }
        })
    }

    fn set<'a>(
        &'a self,
        namespace: &'a str,
        key: &'a str,
        value: Vec<u8>,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if value.len() > KV_MAX_VALUE_BYTES {
                tracing::warn!(
                    namespace,
                    key,
                    bytes = value.len(),
                    "plugin kv value refused: too large"
                );
                return;
            }
            let now = crate::now_ms();
            let expires =
                ttl.map(|t| now.saturating_add(t.as_millis().min(i64::MAX as u128) as i64));
            match self
                .store
                .kv_set(namespace, key, &value, expires, now, KV_MAX_ENTRIES)
                .await
            {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(
                        namespace,
                        key,
                        max = KV_MAX_ENTRIES,
                        "plugin kv key refused: namespace full"
                    )
                }
                Err(e) => tracing::warn!(namespace, error = %e, "plugin kv write failed"),
            }
        })
    }

    fn delete<'a>(&'a self, namespace: &'a str, key: &'a str) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            if let Err(e) = self.store.kv_delete(namespace, key).await {
                tracing::warn!(namespace, error = %e, "plugin kv delete failed");
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys every store of a test seals with (a reopened store must
    /// read what the first wrote).
    static CRYPT: std::sync::LazyLock<crate::store::seal::Crypt> =
        std::sync::LazyLock::new(crate::store::seal::Crypt::ephemeral);

    async fn open(dir: &std::path::Path) -> Arc<dyn Store> {
        let url = format!("sqlite://{}", dir.join("kv.db").display());
        crate::store::open(&url, crate::store::Durability::Full, CRYPT.clone())
            .await
            .unwrap()
    }

    async fn kv() -> (tempfile::TempDir, StoreKv, Arc<dyn Store>) {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        (dir, StoreKv::new(store.clone()), store)
    }

    #[tokio::test]
    async fn values_survive_a_reopen_and_namespaces_are_apart() {
        let (dir, kv, store) = kv().await;
        kv.set("pipedrive-eu", "email:a@x.com", b"17".to_vec(), None)
            .await;
        kv.set("pipedrive-us", "email:a@x.com", b"99".to_vec(), None)
            .await;
        assert_eq!(
            kv.get("pipedrive-eu", "email:a@x.com").await,
            Some(b"17".to_vec())
        );
        drop((kv, store));
        let kv = StoreKv::new(open(dir.path()).await);
        assert_eq!(
            kv.get("pipedrive-eu", "email:a@x.com").await,
            Some(b"17".to_vec())
        );
        assert_eq!(
            kv.get("pipedrive-us", "email:a@x.com").await,
            Some(b"99".to_vec())
        );
        kv.set("pipedrive-eu", "email:a@x.com", b"18".to_vec(), None)
            .await;
        assert_eq!(
            kv.get("pipedrive-eu", "email:a@x.com").await,
            Some(b"18".to_vec())
        );
        kv.delete("pipedrive-eu", "email:a@x.com").await;
        assert_eq!(kv.get("pipedrive-eu", "email:a@x.com").await, None);
        assert_eq!(
            kv.get("pipedrive-us", "email:a@x.com").await,
            Some(b"99".to_vec())
        );
    }

    #[tokio::test]
    async fn entries_expire_and_a_full_namespace_refuses_new_keys() {
        let (_dir, kv, store) = kv().await;
        kv.set("d", "soon", b"x".to_vec(), Some(Duration::from_millis(1)))
            .await;
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(kv.get("d", "soon").await, None, "expired");
        let now = crate::now_ms();
        for i in 0..3 {
            assert!(
                store
                    .kv_set("d", &format!("k{i}"), b"v", None, now, 3)
                    .await
                    .unwrap()
            );
        }
        assert!(
            !store.kv_set("d", "k3", b"v", None, now, 3).await.unwrap(),
            "a fourth key is refused"
        );
        assert!(
            store.kv_set("d", "k1", b"new", None, now, 3).await.unwrap(),
            "an existing key may change"
        );
        assert!(
            store.kv_set("e", "k0", b"v", None, now, 3).await.unwrap(),
            "per namespace"
        );
        // Expired entries do not count against the limit.
        store
            .kv_set("d", "k2", b"v", Some(now - 1), now, 3)
            .await
            .unwrap();
        assert!(store.kv_set("d", "k3", b"v", None, now, 3).await.unwrap());
        kv.set("d", "big", vec![0; KV_MAX_VALUE_BYTES + 1], None)
            .await;
        assert_eq!(kv.get("d", "big").await, None, "too large");
    }
}
