//! Hot reload: one task watches the plugin and mapping folders, debounces
//! the changes and reloads what they touch ([`Registry::reload_paths`]).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Registry;

impl Registry {
    /// Watches the plugin and mapping folders until the returned handle is
    /// dropped.
    pub fn watch(self: &Arc<Self>) -> anyhow::Result<WatchHandle> {
        use notify::{RecursiveMode, Watcher};
        let (tx, mut rx) = mpsc::unbounded_channel::<PathBuf>();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                if let Ok(event) = res
                    && !matches!(event.kind, notify::EventKind::Access(_))
                {
                    for path in event.paths {
                        let _ = tx.send(path);
                    }
                }
            })?;
        for dir in [&self.plugins_dir, &self.mappings_dir] {
            watcher
                .watch(dir, RecursiveMode::NonRecursive)
                .map_err(|e| anyhow::anyhow!("watching {}: {e}", dir.display()))?;
        }
        let registry = Arc::clone(self);
        let task = tokio::spawn(async move {
            // Debounce: act once the folder has been quiet for a moment, so
            // a file written in several steps is read whole.
            const QUIET: Duration = Duration::from_millis(200);
            while let Some(first) = rx.recv().await {
                let mut changed = BTreeSet::from([first]);
                loop {
                    match tokio::time::timeout(QUIET, rx.recv()).await {
                        Ok(Some(path)) => {
                            changed.insert(path);
                        }
                        Ok(None) => return,
                        Err(_) => break,
                    }
                }
                changed.retain(|p| {
                    !p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                });
                if !changed.is_empty() {
                    registry.reload_paths(&changed).await;
                }
            }
        });
        Ok(WatchHandle {
            _watcher: watcher,
            task,
        })
    }
}

/// Keeps the folder watcher alive.
pub struct WatchHandle {
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}
