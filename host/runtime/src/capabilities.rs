//! What a plugin is allowed to do: which hosts it may call and which
//! secrets the host may use on its behalf. An empty allow-list allows
//! nothing; a secret is only ever substituted by the host, never returned
//! to the guest.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::types::RequestKind;
use futures_util::future::BoxFuture;

/// Why a capability check refused a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    #[error("host {0:?} is not in the plugin's allow-list")]
    HostNotAllowed(String),
    #[error("secret {0:?} is not granted to the plugin")]
    SecretNotGranted(String),
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
}

/// Named secret values. `Debug` never prints a value.
#[derive(Clone, Default)]
pub struct Secrets(BTreeMap<String, Arc<str>>);

impl Secrets {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, name: impl Into<String>, value: impl Into<Arc<str>>) {
        self.0.insert(name.into(), value.into());
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|v| &**v)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Secrets the host obtained for one call only (an OAuth access token,
/// or none), and what the CRM made of the call: any answer 401 to a
/// request of the call marks them refused, so the host renews the token
/// whatever the adapter concludes; any answer at all marks the call
/// answered (the CRM was reached).
#[derive(Debug, Default)]
pub struct CallSecrets {
    secrets: Secrets,
    refused: AtomicBool,
    answered: AtomicBool,
}

impl CallSecrets {
    pub fn new(secrets: Secrets) -> Self {
        CallSecrets {
            secrets,
            refused: AtomicBool::new(false),
            answered: AtomicBool::new(false),
        }
    }

    /// Whether any request of the call got an HTTP answer (whatever its
    /// status). A failed call none of whose requests were answered (refused
    /// connections, timeouts) says the path from this host failed, not
    /// that the CRM did.
    pub fn answered(&self) -> bool {
        self.answered.load(Ordering::Acquire)
    }

    pub(crate) fn mark_answered(&self) {
        self.answered.store(true, Ordering::Release);
    }

    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// Whether the CRM answered 401 to a request of the call.
    pub fn refused(&self) -> bool {
        self.refused.load(Ordering::Acquire)
    }

    pub(crate) fn mark_refused(&self) {
        self.refused.store(true, Ordering::Release);
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl<K: Into<String>, V: Into<Arc<str>>> FromIterator<(K, V)> for Secrets {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Secrets(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

/// Checks an allow-list entry before it is used, so that an entry the
/// matcher cannot use is refused where it is written (configuration, the
/// command line) instead of silently matching nothing. An entry is a host
/// (`api.hubapi.com`), a leading wildcard for any subdomain
/// (`*.hubapi.com`), an IP address (`127.0.0.1`, `[::1]`), each optionally
/// with a port (`127.0.0.1:8080`); no scheme, path, query or user.
pub fn check_host_pattern(entry: &str) -> Result<(), String> {
    let e = entry.trim();
    if e.is_empty() {
        return Err("an empty host".into());
    }
    if let Some((scheme, rest)) = e.split_once("://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        return Err(format!(
            "{e:?} has a scheme ({scheme}://): write the host alone, as {host:?}"
        ));
    }
    if let Some(c) = e
        .chars()
        .find(|c| matches!(c, '/' | '?' | '#' | '@') || c.is_whitespace())
    {
        return Err(format!(
            "{e:?} holds {c:?}: write a host (and port) alone, with no path, query or user"
        ));
    }
    let (host, port) = if let Some(rest) = e.strip_prefix('[') {
        let (ip, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{e:?}: an IPv6 address needs its closing ]"))?;
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| format!("{e:?}: only :PORT may follow an IPv6 address"))?,
            ),
        };
        (format!("[{ip}]"), port)
    } else {
        match e.split_once(':') {
            Some((_, p)) if p.contains(':') => {
                return Err(format!("{e:?}: write an IPv6 address in brackets, [::1]"));
            }
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (e.to_string(), None),
        }
    };
    if let Some(p) = port
        && !p.parse::<u16>().is_ok_and(|n| n > 0)
    {
        return Err(format!(
            "{e:?}: the port {p:?} is not a number from 1 to 65535"
        ));
    }
    let bare = host.strip_prefix("*.").unwrap_or(&host);
    if bare.contains('*') {
        return Err(format!(
            "{e:?}: only a leading \"*.\" wildcard is supported (any subdomain)"
        ));
    }
    url::Host::parse(bare)
        .map(|_| ())
        .map_err(|err| format!("{e:?} is not a host name or IP address: {err}"))
}

/// One allow-list entry: `api.hubapi.com`, `*.hubapi.com` (any subdomain),
/// or `127.0.0.1:8080` (host and port).
#[derive(Clone, Debug, PartialEq, Eq)]
struct HostPattern {
    host: String,
    wildcard: bool,
    port: Option<u16>,
}

impl HostPattern {
    fn parse(entry: &str) -> HostPattern {
        let entry = entry.trim().to_ascii_lowercase();
        let (host, port) = match entry.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => match p.parse() {
                Ok(port) => (h.to_string(), Some(port)),
                Err(_) => (entry.clone(), None),
            },
            _ => (entry.clone(), None),
        };
        match host.strip_prefix("*.") {
            Some(rest) => HostPattern {
                host: rest.to_string(),
                wildcard: true,
                port,
            },
            None => HostPattern {
                host,
                wildcard: false,
                port,
            },
        }
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        if self.port.is_some_and(|p| p != port) {
            return false;
        }
        if self.wildcard {
            host.len() > self.host.len()
                && host.ends_with(&self.host)
                && host.as_bytes()[host.len() - self.host.len() - 1] == b'.'
        } else {
            host == self.host
        }
    }
}

/// Paces a plugin's outbound requests: the host's model of the CRM's quota.
/// Shared by every call (and every worker) of one destination.
pub trait RequestGate: Send + Sync {
    /// Waits until a request of this kind may be sent, and counts it;
    /// `Err(ms)` when the wait would be longer than the gate is willing to
    /// hold a call (the host then answers the plugin 429 with that
    /// `Retry-After`, without calling the CRM).
    fn admit(&self, kind: RequestKind) -> BoxFuture<'_, Result<(), u64>>;

    /// What the CRM answered to an admitted call: its rate-limit headers
    /// and 429s correct the model, and the call is no longer in flight.
    fn observe(&self, kind: RequestKind, status: u16, headers: &[(String, String)]);

    /// An admitted call ended without an answer (refused connection,
    /// timeout): it is no longer in flight.
    fn failed(&self, kind: RequestKind);
}

/// The capabilities one plugin instance is granted.
#[derive(Clone, Default)]
pub struct Capabilities {
    hosts: Vec<HostPattern>,
    secrets: Secrets,
    gate: Option<Arc<dyn RequestGate>>,
    /// The key-value namespace (the host uses the destination's name);
    /// the plugin's name when unset.
    kv_namespace: Option<Arc<str>>,
}

impl fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capabilities")
            .field("hosts", &self.hosts)
            .field("secrets", &self.secrets)
            .field("gate", &self.gate.is_some())
            .field("kv_namespace", &self.kv_namespace)
            .finish()
    }
}

impl Capabilities {
    pub fn new<S: AsRef<str>>(allowed_hosts: &[S], secrets: Secrets) -> Self {
        Capabilities {
            hosts: allowed_hosts
                .iter()
                .map(|h| HostPattern::parse(h.as_ref()))
                .collect(),
            secrets,
            gate: None,
            kv_namespace: None,
        }
    }

    /// The same grants, with the key-value store namespaced by `namespace`.
    pub fn with_kv_namespace(mut self, namespace: &str) -> Self {
        self.kv_namespace = Some(namespace.into());
        self
    }

    /// The key-value namespace of a call of `plugin`.
    pub fn kv_namespace<'a>(&'a self, plugin: &'a str) -> &'a str {
        self.kv_namespace.as_deref().unwrap_or(plugin)
    }

    /// The same grants, with outbound requests paced by `gate`.
    pub fn with_gate(mut self, gate: Arc<dyn RequestGate>) -> Self {
        self.gate = Some(gate);
        self
    }

    pub fn gate(&self) -> Option<&Arc<dyn RequestGate>> {
        self.gate.as_ref()
    }

    /// The same grants with `extra` secrets too (an extra one wins over a
    /// granted secret of the same name).
    pub fn with_secrets(&self, extra: &Secrets) -> Capabilities {
        let mut out = self.clone();
        for (name, value) in &extra.0 {
            out.secrets.0.insert(name.clone(), value.clone());
        }
        out
    }

    /// No network, no secrets.
    pub fn none() -> Self {
        Self::default()
    }

    /// Parses `url` and checks its host against the allow-list.
    pub fn check_url(&self, url: &str) -> Result<url::Url, CapabilityError> {
        let parsed = url::Url::parse(url).map_err(|e| CapabilityError::InvalidUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(CapabilityError::InvalidUrl {
                url: url.to_string(),
                reason: format!("scheme {:?} is not http or https", parsed.scheme()),
            });
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| CapabilityError::InvalidUrl {
                url: url.to_string(),
                reason: "no host".into(),
            })?
            .to_ascii_lowercase();
        let port = parsed.port_or_known_default().unwrap_or(0);
        if self.hosts.iter().any(|p| p.matches(&host, port)) {
            Ok(parsed)
        } else {
            Err(CapabilityError::HostNotAllowed(host))
        }
    }

    /// The value of a granted secret.
    pub fn secret(&self, name: &str) -> Result<&str, CapabilityError> {
        self.secrets
            .get(name)
            .ok_or_else(|| CapabilityError::SecretNotGranted(name.to_string()))
    }

    /// Replaces every `{{secret:NAME}}` in `text` with the granted secret.
    pub fn substitute(&self, text: &str) -> Result<String, CapabilityError> {
        const OPEN: &str = "{{secret:";
        if !text.contains(OPEN) {
            return Ok(text.to_string());
        }
        let mut out = String::with_capacity(text.len() + 32);
        let mut rest = text;
        while let Some(start) = rest.find(OPEN) {
            out.push_str(&rest[..start]);
            let after = &rest[start + OPEN.len()..];
            let Some(end) = after.find("}}") else {
                out.push_str(&rest[start..]);
                return Ok(out);
            };
            out.push_str(self.secret(after[..end].trim())?);
            rest = &after[end + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }

    /// Replaces every granted secret's value in `text` with `[redacted]`, for
    /// logs and error messages that might echo a request back.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for name in self.secrets.names() {
            if let Some(v) = self.secrets.get(name).filter(|v| v.len() >= 4) {
                out = out.replace(v, "[redacted]");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(hosts: &[&str]) -> Capabilities {
        Capabilities::new(hosts, [("token", "s3cret-value")].into_iter().collect())
    }

    #[test]
    fn call_secrets_join_the_grants_for_one_call() {
        let base = caps(&["api.example.com"]);
        let extra: Secrets = [("access-token", "t0ken-for-one-call")]
            .into_iter()
            .collect();
        let call = base.with_secrets(&extra);
        assert_eq!(
            call.substitute("Bearer {{secret:access-token}} {{secret:token}}")
                .unwrap(),
            "Bearer t0ken-for-one-call s3cret-value"
        );
        assert_eq!(call.redact("echo t0ken-for-one-call"), "echo [redacted]");
        // The destination's own grants are untouched.
        assert!(base.substitute("{{secret:access-token}}").is_err());
        let flag = CallSecrets::new(extra);
        assert!(!flag.refused());
        flag.mark_refused();
        assert!(flag.refused());
    }

    #[test]
    fn empty_allow_list_allows_nothing() {
        let c = Capabilities::none();
        assert_eq!(
            c.check_url("https://api.hubapi.com/x"),
            Err(CapabilityError::HostNotAllowed("api.hubapi.com".into()))
        );
    }

    #[test]
    fn exact_host_matches_any_port_unless_port_given() {
        let c = caps(&["api.hubapi.com", "127.0.0.1:8080"]);
        assert!(c.check_url("https://api.hubapi.com/crm").is_ok());
        assert!(c.check_url("https://API.HubAPI.com:8443/crm").is_ok());
        assert!(c.check_url("http://127.0.0.1:8080/").is_ok());
        assert_eq!(
            c.check_url("http://127.0.0.1:9090/"),
            Err(CapabilityError::HostNotAllowed("127.0.0.1".into()))
        );
        assert!(c.check_url("https://evil.example/api.hubapi.com").is_err());
        assert!(c.check_url("https://api.hubapi.com.evil.example/").is_err());
    }

    #[test]
    fn entries_the_matcher_cannot_use_are_refused() {
        for good in [
            "api.hubapi.com",
            "*.hubapi.com",
            "127.0.0.1",
            "127.0.0.1:8080",
            "[::1]",
            "[::1]:443",
            "LOCALHOST",
        ] {
            assert_eq!(check_host_pattern(good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("https://api.hubapi.com", "\"api.hubapi.com\""),
            ("api.hubapi.com/crm", "no path"),
            ("api.hubapi.com:http", "port"),
            ("api.hubapi.com:0", "port"),
            ("api.*.com", "leading"),
            ("*", "leading"),
            ("::1", "brackets"),
            ("", "empty"),
            ("user@host", "user"),
            ("exa mple.com", "no path"),
        ] {
            let e = check_host_pattern(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn wildcard_matches_subdomains_only() {
        let c = caps(&["*.hubapi.com"]);
        assert!(c.check_url("https://api.hubapi.com/").is_ok());
        assert!(c.check_url("https://hubapi.com/").is_err());
        assert!(c.check_url("https://xhubapi.com/").is_err());
    }

    #[test]
    fn non_http_schemes_are_refused() {
        let c = caps(&["api.hubapi.com"]);
        assert!(matches!(
            c.check_url("file:///etc/passwd"),
            Err(CapabilityError::InvalidUrl { .. })
        ));
        assert!(matches!(
            c.check_url("not a url"),
            Err(CapabilityError::InvalidUrl { .. })
        ));
    }

    #[test]
    fn substitutes_granted_secrets_only() {
        let c = caps(&[]);
        assert_eq!(
            c.substitute("Bearer {{secret:token}}").unwrap(),
            "Bearer s3cret-value"
        );
        assert_eq!(
            c.substitute("a {{secret: token }} b {{secret:token}}")
                .unwrap(),
            "a s3cret-value b s3cret-value"
        );
        assert_eq!(c.substitute("no placeholders").unwrap(), "no placeholders");
        assert_eq!(
            c.substitute("{{secret:other}}"),
            Err(CapabilityError::SecretNotGranted("other".into()))
        );
        assert_eq!(
            c.substitute("{{secret:unclosed").unwrap(),
            "{{secret:unclosed"
        );
    }

    #[test]
    fn debug_and_redact_hide_values() {
        let c = caps(&[]);
        assert!(!format!("{c:?}").contains("s3cret-value"));
        assert_eq!(c.redact("token=s3cret-value;"), "token=[redacted];");
    }
}
