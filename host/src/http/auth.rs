//! Who is calling: every bearer credential the host knows (sources' API
//! keys, admin tokens with their scopes), compared in constant time, and
//! the guard that puts a scope in front of a group of routes.
//!
//! A presented token is hashed (SHA-256) and its digest compared with
//! every known digest, all of them, with `subtle`: neither the answer's
//! timing nor its content says how much of a token was right. A source's
//! key only posts leads; an admin token only calls the admin API. No
//! token: 401 with `WWW-Authenticate: Bearer`; a credential without the
//! scope: 403 naming it.

use std::path::Path;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{ApiError, AppState, ErrorCode};
use crate::config::Scope;
use crate::pipeline::ingest::Source;

/// One admin token: its name (for logs), digest and scopes.
struct AdminToken {
    name: String,
    digest: [u8; 32],
    scopes: Vec<Scope>,
}

/// Who a credential belongs to.
pub enum Caller {
    Source(Arc<Source>),
    Admin { name: String, scopes: Vec<Scope> },
}

/// Every credential the host accepts.
#[derive(Default)]
pub struct Credentials {
    /// Every source, with the digest of its API key (none for a source
    /// fed by NATS alone).
    sources: Vec<(Option<[u8; 32]>, Arc<Source>)>,
    admins: Vec<AdminToken>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Credentials {
    /// A source, and the API key it posts over HTTP with, if any.
    pub fn add_source(&mut self, key: Option<&str>, source: Arc<Source>) {
        self.sources.push((key.map(digest), source));
    }

    pub fn add_admin(&mut self, name: &str, token: &str, scopes: Vec<Scope>) {
        self.admins.push(AdminToken {
            name: name.to_string(),
            digest: digest(token),
            scopes,
        });
    }

    /// Every source (each once).
    pub fn sources(&self) -> impl Iterator<Item = &Arc<Source>> {
        self.sources.iter().map(|(_, s)| s)
    }

    pub fn admin_count(&self) -> usize {
        self.admins.len()
    }

    /// The caller a token belongs to. Every known digest is compared,
    /// whichever matches.
    pub fn identify(&self, token: &str) -> Option<Caller> {
        let presented = digest(token);
        let mut found = None;
        for (d, source) in &self.sources {
            if let Some(d) = d
                && bool::from(d.ct_eq(&presented))
            {
                found = Some(Caller::Source(source.clone()));
            }
        }
        for admin in &self.admins {
            if bool::from(admin.digest.ct_eq(&presented)) {
                found = Some(Caller::Admin {
                    name: admin.name.clone(),
                    scopes: admin.scopes.clone(),
                });
            }
        }
        found
    }

    /// The source posting leads with these headers.
    pub fn source(&self, headers: &HeaderMap) -> Result<Arc<Source>, ApiError> {
        match self.identify(bearer(headers, "source API key")?) {
            Some(Caller::Source(source)) => Ok(source),
            Some(Caller::Admin { .. }) => Err(ApiError::new(
                ErrorCode::Forbidden,
                "an admin token cannot post leads; use a source's API key",
            )),
            None => Err(unauthorized("unknown API key")),
        }
    }

    /// Checks that the headers carry an admin token with `scope`.
    pub fn admin(&self, headers: &HeaderMap, scope: Scope) -> Result<String, ApiError> {
        match self.identify(bearer(headers, "admin token")?) {
            Some(Caller::Admin { name, scopes }) if scopes.contains(&scope) => Ok(name),
            Some(Caller::Admin { name, .. }) => Err(forbidden(
                scope,
                format!("token {name:?} lacks the scope {scope}"),
            )),
            Some(Caller::Source(_)) => Err(forbidden(
                scope,
                format!(
                    "a source's API key only posts leads; this needs an admin token with the scope {scope}"
                ),
            )),
            None => Err(unauthorized("unknown token")),
        }
    }
}

fn unauthorized(message: &str) -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, message)
}

fn forbidden(scope: Scope, message: String) -> ApiError {
    let mut err = ApiError::new(ErrorCode::Forbidden, message);
    err.details.insert("scope".into(), scope.to_string().into());
    err
}

/// The bearer token of a request (`what` names the credential expected).
fn bearer<'h>(headers: &'h HeaderMap, what: &str) -> Result<&'h str, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized(&format!("missing Authorization: Bearer <{what}>")))?;
    value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthorized(&format!("Authorization must be Bearer <{what}>")))
}

/// The guard in front of a group of routes: the request goes on only with
/// an admin token that has the group's scope.
pub async fn require(
    State((state, scope)): State<(Arc<AppState>, Scope)>,
    request: Request,
    next: Next,
) -> Response {
    match state.credentials.admin(request.headers(), scope) {
        Ok(_) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

/// The admin token the host generated (or generated before) at `path`:
/// read if the file exists (narrowed to its owner if others could read
/// it), else 32 random bytes written hex-encoded to a new file only the
/// owner can read. Never logged.
pub fn generated_token(path: &Path) -> std::io::Result<(String, bool)> {
    use std::io::Write;

    use crate::store::private;
    match std::fs::read_to_string(path) {
        Ok(token) => {
            private::narrow_to_owner("the admin token file", &[path])?;
            let token = token.trim().to_string();
            if token.len() < crate::config::MIN_ADMIN_TOKEN_LEN {
                return Err(std::io::Error::other(format!(
                    "{} holds no usable token (delete it to have a new one generated)",
                    path.display()
                )));
            }
            return Ok((token, false));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        private::private_dir(dir)?;
    }
    let bytes: [u8; 32] = rand::random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut file = private::create_private(path)?;
    file.write_all(format!("{token}\n").as_bytes())?;
    file.sync_all()?;
    Ok((token, true))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    fn credentials() -> Credentials {
        let mut c = Credentials::default();
        c.add_admin("reader", "read-token-0123456789", vec![Scope::Read]);
        c.add_admin("root", "root-token-0123456789", Scope::ALL.to_vec());
        c
    }

    #[test]
    fn a_token_opens_only_its_scopes() {
        let c = credentials();
        assert_eq!(
            c.admin(&headers("Bearer read-token-0123456789"), Scope::Read)
                .unwrap(),
            "reader"
        );
        let err = c
            .admin(&headers("Bearer read-token-0123456789"), Scope::Operate)
            .unwrap_err();
        assert_eq!(err.code, ErrorCode::Forbidden);
        assert_eq!(err.details["scope"], "operate");
        for scope in Scope::ALL {
            c.admin(&headers("bearer root-token-0123456789"), scope)
                .unwrap();
        }
    }

    #[test]
    fn no_wrong_or_malformed_token_is_an_admin() {
        let c = credentials();
        for auth in [
            "Bearer read-token-012345678",
            "Bearer read-token-01234567890",
            "Basic read-token-0123456789",
            "Bearer ",
            "read-token-0123456789",
        ] {
            let err = c.admin(&headers(auth), Scope::Read).unwrap_err();
            assert_eq!(err.code, ErrorCode::Unauthorized, "{auth}");
        }
        let err = c.admin(&HeaderMap::new(), Scope::Read).unwrap_err();
        assert_eq!(err.code, ErrorCode::Unauthorized);
    }

    #[test]
    fn the_generated_token_is_the_owners_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/admin-token");
        let (token, fresh) = generated_token(&path).unwrap();
        assert!(fresh);
        assert_eq!(token.len(), 64);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let (again, fresh) = generated_token(&path).unwrap();
        assert_eq!((again.as_str(), fresh), (token.as_str(), false));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "narrowed");
        }
    }
}
