//! Encryption at rest: every column holding personal data is sealed with
//! XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`) under a data key,
//! and what the store must find by equality (dedupe fingerprints, plugin
//! key-value keys) is kept as a keyed hash (a blind index, HMAC-SHA-256
//! under a separate index key).
//!
//! A sealed value is text: `lg1:<key id>:<base64url(nonce ‖ ciphertext ‖ tag)>`,
//! with a fresh random 192-bit nonce per value and, as associated data, the
//! column and the row it belongs to (a ciphertext moved to another row or
//! column does not open). The key id travels with each value, so values
//! sealed under an older key keep opening while a rotation re-seals them
//! under the current one ([`Keyring::rotate`]). Rotating the data key never
//! touches the index key: the dedupe index stays valid.
//!
//! Keys come from the configuration (`[store.encryption]` `data_keys`,
//! `current`, `index_key`: values, `env:VAR` or `file:/path`, each 32
//! bytes in base64) or, for zero set-up, from a key file the host
//! generates (mode 0600) beside an SQLite store.
//!
//! Values written before encryption was on (no `lg1:` prefix) still read
//! as they are; the first start with encryption on re-seals them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::private;

/// The prefix of a sealed value.
const SEALED: &str = "lg1:";
/// The prefix of a blinded plugin key-value key.
const BLIND_KEY: &str = "lgk1:";
/// Between a fingerprint's kind and its blinded value (a plain one has
/// `:`).
pub const BLIND_FINGERPRINT: char = '#';
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("{column} of {row} is sealed under key {key:?}, which is not configured")]
    UnknownKey {
        column: &'static str,
        row: String,
        key: String,
    },
    #[error("{column} of {row} does not open: wrong key, or the value was altered or moved")]
    Forged { column: &'static str, row: String },
    #[error("{column} of {row} is sealed, and encryption is off (turn it on with its keys)")]
    EncryptionOff { column: &'static str, row: String },
    #[error("{key}: {reason}")]
    Config { key: String, reason: String },
    #[error("the key file {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
}

/// A column holding sealed values (its name is part of the associated
/// data).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    LeadRaw,
    LeadNormalized,
    LeadDecision,
    LeadMerge,
    JobPayload,
    JobError,
    EventDetail,
    PersonRecord,
    KvValue,
    RefreshToken,
}

impl Column {
    pub fn name(self) -> &'static str {
        match self {
            Column::LeadRaw => "leads.raw",
            Column::LeadNormalized => "leads.normalized",
            Column::LeadDecision => "leads.decision",
            Column::LeadMerge => "leads.merge",
            Column::JobPayload => "jobs.payload",
            Column::JobError => "jobs.last_error",
            Column::EventDetail => "events.detail",
            Column::PersonRecord => "persons.record",
            Column::KvValue => "plugin_kv.value",
            Column::RefreshToken => "oauth_tokens.refresh_token",
        }
    }
}

/// `[store.encryption]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct EncryptionConfig {
    /// Seal personal data at rest (on by default). Off: values are written
    /// in plain text (for a disk encrypted underneath, or to measure).
    pub enabled: bool,
    /// Where the generated keys are kept when `data_keys` is empty. Empty:
    /// `keys` beside an SQLite store.
    pub key_file: PathBuf,
    /// Data keys by id (32 bytes in base64: a value, `env:VAR` or
    /// `file:/path`); empty: the key file.
    pub data_keys: BTreeMap<String, String>,
    /// The id of the data key new values are sealed under.
    pub current: String,
    /// The blind-index key (32 bytes in base64, a value, `env:` or
    /// `file:`), with `data_keys`.
    pub index_key: String,
}

impl Default for EncryptionConfig {
    fn default() -> Self {
        EncryptionConfig {
            enabled: true,
            key_file: PathBuf::new(),
            data_keys: BTreeMap::new(),
            current: String::new(),
            index_key: String::new(),
        }
    }
}

impl EncryptionConfig {
    /// Checks what can be checked before the keys are read.
    pub fn validate(&self) -> Result<(), SealError> {
        let key = |k: &str| format!("store.encryption.{k}");
        for id in self.data_keys.keys() {
            if !valid_key_id(id) {
                return Err(SealError::Config {
                    key: key(&format!("data_keys.{id}")),
                    reason: "a key id is 1 to 32 letters, digits, '-' or '_'".into(),
                });
            }
        }
        if self.data_keys.is_empty() {
            if !self.current.is_empty() || !self.index_key.is_empty() {
                return Err(SealError::Config {
                    key: key(if self.current.is_empty() {
                        "index_key"
                    } else {
                        "current"
                    }),
                    reason: "only with data_keys (the key file names its own)".into(),
                });
            }
        } else {
            if !self.data_keys.contains_key(&self.current) {
                return Err(SealError::Config {
                    key: key("current"),
                    reason: format!("must name one of data_keys, not {:?}", self.current),
                });
            }
            if self.index_key.is_empty() {
                return Err(SealError::Config {
                    key: key("index_key"),
                    reason: "required with data_keys".into(),
                });
            }
            if !self.key_file.as_os_str().is_empty() {
                return Err(SealError::Config {
                    key: key("key_file"),
                    reason: "either data_keys or a key file, not both".into(),
                });
            }
        }
        Ok(())
    }
}

fn valid_key_id(id: &str) -> bool {
    (1..=32).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The key file as written: ids and keys in base64.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    current: String,
    data_keys: BTreeMap<String, String>,
    index_key: String,
}

/// The data keys, current first.
struct DataKeys {
    current: String,
    ciphers: BTreeMap<String, XChaCha20Poly1305>,
}

/// Where the keys came from, and so what a rotation can do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySource {
    /// The configuration: a rotation re-seals under its `current` key.
    Config,
    /// A key file: a rotation adds a new key to it and re-seals under it.
    File(PathBuf),
}

/// The data keys and the blind-index key.
pub struct Keyring {
    keys: RwLock<Arc<DataKeys>>,
    blinder: Blinder,
    source: KeySource,
}

/// Keyed hashes for what must be found by equality.
#[derive(Clone)]
pub struct Blinder(Hmac<Sha256>);

impl std::fmt::Debug for Blinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Blinder(..)")
    }
}

impl Blinder {
    fn new(key: &[u8]) -> Blinder {
        Blinder(<Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length"))
    }

    fn digest(&self, parts: &[&[u8]]) -> String {
        let mut mac = self.0.clone();
        for p in parts {
            mac.update(&(p.len() as u64).to_le_bytes());
            mac.update(p);
        }
        // 128 bits: collisions stay out of reach at any store size.
        URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..16])
    }

    /// A dedupe fingerprint (`email:jane@example.com`) as its blind index
    /// (`email#…`): the kind stays readable, the value does not. A
    /// fingerprint already blinded is returned as it is.
    pub fn fingerprint(&self, fp: &str) -> String {
        match fp.split_once(':') {
            Some((kind, _)) if !kind.contains(BLIND_FINGERPRINT) => {
                format!("{kind}{BLIND_FINGERPRINT}{}", self.digest(&[fp.as_bytes()]))
            }
            _ => fp.to_string(),
        }
    }

    /// A plugin's key-value key as its blind index.
    pub fn kv_key(&self, namespace: &str, key: &str) -> String {
        format!(
            "{BLIND_KEY}{}",
            self.digest(&[b"kv", namespace.as_bytes(), key.as_bytes()])
        )
    }
}

/// Whether a stored fingerprint is a blind index.
pub fn is_blind_fingerprint(fp: &str) -> bool {
    fp.split(':')
        .next()
        .is_some_and(|k| k.contains(BLIND_FINGERPRINT))
}

fn decode_key(what: &str, text: &str) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let bytes = Zeroizing::new(
        STANDARD
            .decode(text.trim())
            .map_err(|_| SealError::Config {
                key: what.to_string(),
                reason: "not base64".into(),
            })?,
    );
    if bytes.len() != KEY_LEN {
        return Err(SealError::Config {
            key: what.to_string(),
            reason: format!("{} bytes; a key is {KEY_LEN}", bytes.len()),
        });
    }
    Ok(bytes)
}

fn new_key() -> String {
    let key = Zeroizing::new(rand::random::<[u8; KEY_LEN]>());
    STANDARD.encode(*key)
}

fn ciphers(
    keys: &BTreeMap<String, String>,
    what: impl Fn(&str) -> String,
) -> Result<BTreeMap<String, XChaCha20Poly1305>, SealError> {
    keys.iter()
        .map(|(id, text)| {
            let key = decode_key(&what(id), text)?;
            Ok((
                id.clone(),
                XChaCha20Poly1305::new_from_slice(&key).expect("32-byte key"),
            ))
        })
        .collect()
}

impl Keyring {
    /// The keys `config` names, or the key file (`default_file` when the
    /// configuration names none), generated when missing. Returns whether
    /// the file was generated now.
    pub fn load(
        config: &EncryptionConfig,
        default_file: Option<PathBuf>,
        resolve: impl Fn(&str) -> Result<String, String>,
    ) -> Result<(Keyring, bool), SealError> {
        config.validate()?;
        if !config.data_keys.is_empty() {
            let mut texts = BTreeMap::new();
            for (id, value) in &config.data_keys {
                let text = resolve(value).map_err(|reason| SealError::Config {
                    key: format!("store.encryption.data_keys.{id}"),
                    reason,
                })?;
                texts.insert(id.clone(), text);
            }
            let index = resolve(&config.index_key).map_err(|reason| SealError::Config {
                key: "store.encryption.index_key".into(),
                reason,
            })?;
            let index = decode_key("store.encryption.index_key", &index)?;
            let ciphers = ciphers(&texts, |id| format!("store.encryption.data_keys.{id}"))?;
            return Ok((
                Keyring::new(config.current.clone(), ciphers, &index, KeySource::Config),
                false,
            ));
        }
        let path = if config.key_file.as_os_str().is_empty() {
            default_file.ok_or_else(|| SealError::Config {
                key: "store.encryption.key_file".into(),
                reason: "no data_keys and no key file (required with a store other than SQLite)"
                    .into(),
            })?
        } else {
            config.key_file.clone()
        };
        let (file, fresh) = read_or_generate(&path)?;
        let bad = |reason: String| SealError::KeyFile {
            path: path.clone(),
            reason,
        };
        if !file.data_keys.contains_key(&file.current) {
            return Err(bad(format!("current key {:?} is not in it", file.current)));
        }
        let ciphers = ciphers(&file.data_keys, |id| format!("data_keys.{id}"))
            .map_err(|e| bad(e.to_string()))?;
        let index = decode_key("index_key", &file.index_key).map_err(|e| bad(e.to_string()))?;
        Ok((
            Keyring::new(file.current, ciphers, &index, KeySource::File(path)),
            fresh,
        ))
    }

    /// Keys for this process only (tests and benchmarks).
    pub fn ephemeral() -> Keyring {
        let mut texts = BTreeMap::new();
        texts.insert("t1".to_string(), new_key());
        let index = rand::random::<[u8; KEY_LEN]>();
        Keyring::new(
            "t1".into(),
            ciphers(&texts, str::to_string).expect("fresh keys decode"),
            &index,
            KeySource::Config,
        )
    }

    fn new(
        current: String,
        ciphers: BTreeMap<String, XChaCha20Poly1305>,
        index: &[u8],
        source: KeySource,
    ) -> Keyring {
        Keyring {
            keys: RwLock::new(Arc::new(DataKeys { current, ciphers })),
            blinder: Blinder::new(index),
            source,
        }
    }

    pub fn blinder(&self) -> &Blinder {
        &self.blinder
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    fn keys(&self) -> Arc<DataKeys> {
        self.keys.read().expect("key lock").clone()
    }

    /// The id of the key new values are sealed under.
    pub fn current(&self) -> String {
        self.keys().current.clone()
    }

    /// Every data key's id.
    pub fn key_ids(&self) -> Vec<String> {
        self.keys().ciphers.keys().cloned().collect()
    }

    /// Makes a new current data key: with a key file, a fresh key written
    /// to it first (the file is replaced whole, 0600); with configured
    /// keys, the configured current one (nothing to add). Returns its id.
    pub fn rotate(&self) -> Result<String, SealError> {
        let KeySource::File(path) = &self.source else {
            return Ok(self.current());
        };
        let mut keys = self.keys.write().expect("key lock");
        // The file as it is: a missing one is never made again here (it
        // would hold none of the keys the store is sealed under).
        let mut file = read_key_file(path)?;
        let id = (1..)
            .map(|n| format!("k{n}"))
            .find(|id| !file.data_keys.contains_key(id))
            .expect("a free id");
        let text = new_key();
        file.data_keys.insert(id.clone(), text.clone());
        file.current = id.clone();
        write_key_file(path, &file)?;
        let mut ciphers = keys.ciphers.clone();
        ciphers.extend(self::ciphers(
            &BTreeMap::from([(id.clone(), text)]),
            str::to_string,
        )?);
        *keys = Arc::new(DataKeys {
            current: id.clone(),
            ciphers,
        });
        Ok(id)
    }

    /// Seals `plain` for `column` of `row`.
    pub fn seal(&self, column: Column, row: &str, plain: &[u8]) -> String {
        let keys = self.keys();
        let cipher = &keys.ciphers[&keys.current];
        let nonce: [u8; NONCE_LEN] = rand::random();
        let aad = aad(column, row);
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 seals any length a row holds");
        let mut out = String::with_capacity(
            SEALED.len() + keys.current.len() + 1 + (NONCE_LEN + sealed.len()) * 4 / 3 + 4,
        );
        out.push_str(SEALED);
        out.push_str(&keys.current);
        out.push(':');
        let mut bytes = Vec::with_capacity(NONCE_LEN + sealed.len());
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        URL_SAFE_NO_PAD.encode_string(&bytes, &mut out);
        out
    }

    /// Opens a stored value of `column` of `row`: a sealed one under any
    /// configured key, or one written before encryption was on as it is.
    pub fn open(&self, column: Column, row: &str, stored: &str) -> Result<Vec<u8>, SealError> {
        let Some((key, body)) = parse(stored) else {
            return Ok(stored.as_bytes().to_vec());
        };
        let keys = self.keys();
        let Some(cipher) = keys.ciphers.get(key) else {
            return Err(SealError::UnknownKey {
                column: column.name(),
                row: row.to_string(),
                key: key.to_string(),
            });
        };
        let forged = || SealError::Forged {
            column: column.name(),
            row: row.to_string(),
        };
        let bytes = URL_SAFE_NO_PAD.decode(body).map_err(|_| forged())?;
        if bytes.len() < NONCE_LEN {
            return Err(forged());
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad(column, row),
                },
            )
            .map_err(|_| forged())
    }

    /// Whether `stored` is sealed under the current key (a rotation leaves
    /// such values alone).
    pub fn is_current(&self, stored: &str) -> bool {
        parse(stored).is_some_and(|(key, _)| key == self.keys().current)
    }
}

/// The key id and body of a sealed value.
fn parse(stored: &str) -> Option<(&str, &str)> {
    stored.strip_prefix(SEALED)?.split_once(':')
}

/// Whether a stored value is sealed.
pub fn is_sealed(stored: &str) -> bool {
    parse(stored).is_some()
}

/// Whether a stored plugin key is a blind index.
pub fn is_blind_kv_key(key: &str) -> bool {
    key.starts_with(BLIND_KEY)
}

fn aad(column: Column, row: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(column.name().len() + 1 + row.len());
    aad.extend_from_slice(column.name().as_bytes());
    aad.push(0);
    aad.extend_from_slice(row.as_bytes());
    aad
}

fn read_key_file(path: &Path) -> Result<KeyFile, SealError> {
    let bad = |reason: String| SealError::KeyFile {
        path: path.to_path_buf(),
        reason,
    };
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?);
    private::narrow_to_owner("the key file", &[path]).map_err(|e| bad(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| bad(e.to_string()))
}

fn read_or_generate(path: &Path) -> Result<(KeyFile, bool), SealError> {
    match std::fs::metadata(path) {
        Ok(_) => Ok((read_key_file(path)?, false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let file = KeyFile {
                current: "k1".into(),
                data_keys: BTreeMap::from([("k1".to_string(), new_key())]),
                index_key: new_key(),
            };
            write_key_file(path, &file)?;
            Ok((file, true))
        }
        Err(e) => Err(SealError::KeyFile {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// Writes the key file whole: a new 0600 file beside it, synced, renamed
/// over it.
fn write_key_file(path: &Path, file: &KeyFile) -> Result<(), SealError> {
    use std::io::Write as _;
    let bad = |e: std::io::Error| SealError::KeyFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    if let Some(dir) = path.parent() {
        private::private_dir(dir).map_err(bad)?;
    }
    let text = Zeroizing::new(serde_json::to_string_pretty(file).expect("key file serializes"));
    let tmp = path.with_extension(format!("new-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let mut out = private::create_private(&tmp).map_err(bad)?;
    out.write_all(text.as_bytes()).map_err(bad)?;
    out.sync_all().map_err(bad)?;
    std::fs::rename(&tmp, path).map_err(bad)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(bad)?;
    }
    Ok(())
}

/// What the store seals with: a keyring, or nothing (encryption off).
#[derive(Clone, Default)]
pub struct Crypt(Option<Arc<Keyring>>);

impl Crypt {
    pub fn new(keyring: Arc<Keyring>) -> Crypt {
        Crypt(Some(keyring))
    }

    /// Encryption off: values are written as they are.
    pub fn off() -> Crypt {
        Crypt(None)
    }

    /// The keys of a key file (a store a host wrote with generated keys),
    /// generated if missing.
    pub fn from_key_file(path: &Path) -> Result<Crypt, SealError> {
        let (keyring, _) = Keyring::load(
            &EncryptionConfig::default(),
            Some(path.to_path_buf()),
            |v| Ok(v.to_string()),
        )?;
        Ok(Crypt::new(Arc::new(keyring)))
    }

    /// Encryption on with keys for this process only (tests).
    pub fn ephemeral() -> Crypt {
        Crypt::new(Arc::new(Keyring::ephemeral()))
    }

    pub fn keyring(&self) -> Option<&Arc<Keyring>> {
        self.0.as_ref()
    }

    /// `plain` as stored in `column` of `row`.
    pub fn seal(&self, column: Column, row: &str, plain: String) -> String {
        match &self.0 {
            Some(k) => k.seal(column, row, plain.as_bytes()),
            None => plain,
        }
    }

    /// Bytes as stored in `column` of `row`.
    pub fn seal_bytes(&self, column: Column, row: &str, plain: &[u8]) -> Vec<u8> {
        match &self.0 {
            Some(k) => k.seal(column, row, plain).into_bytes(),
            None => plain.to_vec(),
        }
    }

    /// A stored text of `column` of `row`, opened.
    pub fn open(&self, column: Column, row: &str, stored: String) -> Result<String, SealError> {
        match &self.0 {
            Some(k) if is_sealed(&stored) => {
                let plain = k.open(column, row, &stored)?;
                String::from_utf8(plain).map_err(|_| SealError::Forged {
                    column: column.name(),
                    row: row.to_string(),
                })
            }
            None if is_sealed(&stored) => Err(SealError::EncryptionOff {
                column: column.name(),
                row: row.to_string(),
            }),
            _ => Ok(stored),
        }
    }

    /// Stored bytes of `column` of `row`, opened.
    pub fn open_bytes(
        &self,
        column: Column,
        row: &str,
        stored: Vec<u8>,
    ) -> Result<Vec<u8>, SealError> {
        let sealed = std::str::from_utf8(&stored).ok().filter(|s| is_sealed(s));
        match (&self.0, sealed) {
            (Some(k), Some(text)) => k.open(column, row, text),
            (None, Some(_)) => Err(SealError::EncryptionOff {
                column: column.name(),
                row: row.to_string(),
            }),
            _ => Ok(stored),
        }
    }

    /// A fingerprint as stored and indexed.
    pub fn fingerprint(&self, fp: String) -> String {
        match &self.0 {
            Some(k) => k.blinder.fingerprint(&fp),
            None => fp,
        }
    }

    /// A plugin key-value key as stored.
    pub fn kv_key(&self, namespace: &str, key: &str) -> String {
        match &self.0 {
            Some(k) => k.blinder.kv_key(namespace, key),
            None => key.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_in_their_place() {
        let k = Keyring::ephemeral();
        let sealed = k.seal(Column::LeadRaw, "L1", b"jane@example.com");
        assert!(sealed.starts_with("lg1:t1:"));
        assert!(!sealed.contains("jane"));
        assert_eq!(
            k.open(Column::LeadRaw, "L1", &sealed).unwrap(),
            b"jane@example.com"
        );
        // Another row, another column, another key, a flipped byte.
        assert!(matches!(
            k.open(Column::LeadRaw, "L2", &sealed),
            Err(SealError::Forged { .. })
        ));
        assert!(k.open(Column::LeadNormalized, "L1", &sealed).is_err());
        assert!(
            Keyring::ephemeral()
                .open(Column::LeadRaw, "L1", &sealed)
                .is_err()
        );
        let mut tampered = sealed.clone().into_bytes();
        let last = tampered.len() - 3;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert!(k.open(Column::LeadRaw, "L1", &tampered).is_err());
        // Two seals of one value differ (fresh nonces).
        assert_ne!(sealed, k.seal(Column::LeadRaw, "L1", b"jane@example.com"));
        // What was written before encryption reads as it is.
        assert_eq!(k.open(Column::LeadRaw, "L1", "{}").unwrap(), b"{}");
    }

    #[test]
    fn blind_indexes_are_stable_keyed_and_keep_the_kind() {
        let crypt = Crypt::ephemeral();
        let a = crypt.fingerprint("email:jane@example.com".into());
        assert!(a.starts_with("email#"), "{a}");
        assert!(!a.contains("jane"));
        assert!(is_blind_fingerprint(&a));
        assert!(!is_blind_fingerprint("email:jane@example.com"));
        assert_eq!(a, crypt.fingerprint("email:jane@example.com".into()));
        assert_eq!(a, crypt.fingerprint(a.clone()), "blinding is idempotent");
        assert_ne!(a, crypt.fingerprint("email:june@example.com".into()));
        assert_ne!(
            a,
            Crypt::ephemeral().fingerprint("email:jane@example.com".into())
        );
        let key = crypt.kv_key("hubspot", "jane@example.com");
        assert!(is_blind_kv_key(&key) && !key.contains("jane"));
        assert_ne!(key, crypt.kv_key("pipedrive", "jane@example.com"));
        assert_eq!(
            Crypt::off().fingerprint("email:x@y.z".into()),
            "email:x@y.z"
        );
    }

    #[test]
    fn a_key_file_is_generated_private_and_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/keys");
        let config = EncryptionConfig::default();
        let (k, fresh) = Keyring::load(&config, Some(path.clone()), |v| Ok(v.into())).unwrap();
        assert!(fresh);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let old = k.seal(Column::PersonRecord, "P", b"x");
        assert_eq!(k.current(), "k1");
        assert_eq!(k.rotate().unwrap(), "k2");
        assert!(!k.is_current(&old));
        // A key file gone is not made again by a rotation.
        let kept = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(k.rotate().is_err());
        std::fs::write(&path, kept).unwrap();
        let new = k.seal(Column::PersonRecord, "P", b"y");
        assert!(new.starts_with("lg1:k2:") && k.is_current(&new));
        // A restart reads both keys back, k2 current.
        let (again, fresh) = Keyring::load(&config, Some(path), |v| Ok(v.into())).unwrap();
        assert!(!fresh);
        assert_eq!(again.current(), "k2");
        assert_eq!(again.open(Column::PersonRecord, "P", &old).unwrap(), b"x");
        assert_eq!(again.open(Column::PersonRecord, "P", &new).unwrap(), b"y");
        assert_eq!(
            again.blinder().fingerprint("phone:+1"),
            k.blinder().fingerprint("phone:+1"),
            "rotation keeps the index key"
        );
    }

    #[test]
    fn configured_keys_are_checked_by_name() {
        let key = STANDARD.encode([7u8; 32]);
        let mut c = EncryptionConfig {
            data_keys: BTreeMap::from([("a".to_string(), key.clone())]),
            current: "b".into(),
            index_key: key.clone(),
            ..Default::default()
        };
        let err = |c: &EncryptionConfig| {
            Keyring::load(c, None, |v| Ok(v.into()))
                .err()
                .unwrap()
                .to_string()
        };
        assert!(err(&c).contains("store.encryption.current"), "{}", err(&c));
        c.current = "a".into();
        c.data_keys
            .insert("short".into(), STANDARD.encode([1u8; 16]));
        assert!(err(&c).contains("data_keys.short: 16 bytes"), "{}", err(&c));
        c.data_keys.remove("short");
        c.data_keys.insert("bad id".into(), key.clone());
        assert!(err(&c).contains("data_keys.bad id"));
        c.data_keys.remove("bad id");
        let (k, _) = Keyring::load(&c, None, |v| Ok(v.into())).unwrap();
        assert_eq!(k.current(), "a");
        assert_eq!(k.rotate().unwrap(), "a", "configured keys are not invented");
        let none = EncryptionConfig::default();
        assert!(err(&none).contains("key_file"));
    }

    #[test]
    fn with_encryption_off_a_sealed_value_is_refused_by_name() {
        let sealed = Crypt::ephemeral().seal(Column::JobPayload, "J", "[]".into());
        let e = Crypt::off()
            .open(Column::JobPayload, "J", sealed)
            .unwrap_err();
        assert!(e.to_string().contains("jobs.payload of J"), "{e}");
    }
}
