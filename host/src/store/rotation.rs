//! Re-sealing passes: after a data-key rotation, and on the first start
//! with encryption on over values written in plain text, every sealed
//! column is read in small steps and each value not under the current key
//! is sealed again under it (fingerprints and plugin keys blinded), through
//! the store's own writer while the host serves. A finished pass is
//! recorded in the store ([`Store::set_sealed_under`]); a pass cut short
//! (a crash, a stop) runs again at the next start.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use super::seal::{KeySource, SealError};
use super::{ResealCursor, Store, StoreError};

/// Rows per re-sealing step (one write transaction each).
const STEP_ROWS: u32 = 500;
/// A pause between steps, so that a pass over a large store leaves the
/// writer to ingest.
const STEP_PAUSE: Duration = Duration::from_millis(2);
/// How long a failed pass waits before it tries again.
const RETRY_AFTER: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PassState {
    /// Every value is under the current key (or encryption is off).
    #[default]
    Done,
    Running,
    /// The last step failed (`error`); it is tried again.
    Failed,
}

/// Where re-sealing stands.
#[derive(Clone, Debug, Default, Serialize, utoipa::ToSchema)]
pub struct PassStatus {
    pub state: PassState,
    /// The key the pass seals under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<i64>,
    /// Rows read so far in this pass.
    pub scanned: u64,
    /// Values sealed again (or blinded) so far in this pass.
    pub resealed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The store's keys as the admin API shows them (never their values).
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct KeysView {
    /// Whether personal data is sealed at rest.
    pub encryption: bool,
    /// `file` (generated keys, which a rotation adds to) or `config`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'static str>,
    /// The data key new values are sealed under.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Every data key's id.
    pub keys: Vec<String>,
    pub pass: PassStatus,
}

/// Runs re-sealing passes for one store.
pub struct Rotation {
    store: Arc<dyn Store>,
    status: Arc<Mutex<PassStatus>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Rotation {
    fn drop(&mut self) {
        if let Some(task) = self.task.lock().expect("rotation lock").take() {
            task.abort();
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error("encryption at rest is off: there is no key to rotate")]
    EncryptionOff,
    #[error(transparent)]
    Seal(#[from] SealError),
}

impl Rotation {
    /// Starts a pass when the store's values are not all under the
    /// current key (a rotation or a first start left them so).
    pub async fn start(store: Arc<dyn Store>) -> Result<Arc<Rotation>, StoreError> {
        let rotation = Arc::new(Rotation {
            status: Arc::new(Mutex::new(PassStatus::default())),
            task: Mutex::new(None),
            store: store.clone(),
        });
        match store.crypt().keyring() {
            None => store.set_sealed_under("").await?,
            Some(keyring) => {
                let current = keyring.current();
                let under = store.sealed_under().await?;
                if under.as_deref() != Some(current.as_str()) {
                    tracing::info!(
                        key = %current,
                        was = under.as_deref().unwrap_or("never recorded"),
                        "re-sealing the store's values under the current key, in the background"
                    );
                    rotation.spawn_pass();
                }
            }
        }
        Ok(rotation)
    }

    /// A new current data key (see [`super::seal::Keyring::rotate`]), and
    /// a pass that re-seals every value under it.
    pub fn rotate(&self) -> Result<KeysView, RotationError> {
        let keyring = self
            .store
            .crypt()
            .keyring()
            .ok_or(RotationError::EncryptionOff)?;
        let key = keyring.rotate()?;
        tracing::info!(%key, "data key rotated; re-sealing in the background");
        self.spawn_pass();
        Ok(self.view())
    }

    /// The keys and the pass.
    pub fn view(&self) -> KeysView {
        let pass = self.status.lock().expect("rotation lock").clone();
        match self.store.crypt().keyring() {
            None => KeysView {
                encryption: false,
                source: None,
                current: None,
                keys: Vec::new(),
                pass,
            },
            Some(k) => KeysView {
                encryption: true,
                source: Some(match k.source() {
                    KeySource::File(_) => "file",
                    KeySource::Config => "config",
                }),
                current: Some(k.current()),
                keys: k.key_ids(),
                pass,
            },
        }
    }

    /// Whether the last pass finished (tests and the CLI's `--wait`).
    pub fn done(&self) -> bool {
        self.status.lock().expect("rotation lock").state == PassState::Done
    }

    /// Starts a pass under the current key, ending the one running.
    fn spawn_pass(&self) {
        let mut task = self.task.lock().expect("rotation lock");
        if let Some(old) = task.take() {
            old.abort();
        }
        let Some(key) = self.store.crypt().keyring().map(|k| k.current()) else {
            return;
        };
        *self.status.lock().expect("rotation lock") = PassStatus {
            state: PassState::Running,
            key: Some(key.clone()),
            started_at_ms: Some(crate::now_ms()),
            ..PassStatus::default()
        };
        *task = Some(tokio::spawn(pass(
            self.store.clone(),
            self.status.clone(),
            key,
        )));
    }
}

/// One pass to its end; a failed step is retried after a pause.
async fn pass(store: Arc<dyn Store>, status: Arc<Mutex<PassStatus>>, key: String) {
    let mut cursor = Some(ResealCursor::default());
    while let Some(at) = cursor {
        match store.reseal(at, STEP_ROWS).await {
            Ok(step) => {
                let mut s = status.lock().expect("rotation lock");
                s.state = PassState::Running;
                s.error = None;
                s.scanned += step.scanned;
                s.resealed += step.changed;
                cursor = step.next;
            }
            Err(e) => {
                tracing::warn!(error = %e, "re-sealing step failed; trying again");
                {
                    let mut s = status.lock().expect("rotation lock");
                    s.state = PassState::Failed;
                    s.error = Some(e.to_string());
                }
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
        }
        tokio::time::sleep(STEP_PAUSE).await;
    }
    // The values as they were before the pass leave the files too.
    if let Err(e) = store.scrub().await {
        tracing::warn!(error = %e, "could not empty the write-ahead log after re-sealing");
    }
    if let Err(e) = store.set_sealed_under(&key).await {
        tracing::warn!(error = %e, "re-sealing finished but could not be recorded; it runs again at the next start");
    }
    let mut s = status.lock().expect("rotation lock");
    tracing::info!(%key, scanned = s.scanned, resealed = s.resealed, "re-sealing finished");
    s.state = PassState::Done;
    s.finished_at_ms = Some(crate::now_ms());
}
