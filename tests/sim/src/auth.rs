//! Bearer-token auth: which tokens are accepted, which have expired (and when),
//! and HubSpot's 401 answers for each case.

use std::collections::HashMap;
use std::time::Instant;

use axum::http::{HeaderMap, header};

use crate::errors::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenState {
    Valid,
    Expired(Instant),
}

/// The portal's access tokens.
#[derive(Debug, Default)]
pub(crate) struct Tokens {
    tokens: HashMap<String, TokenState>,
}

impl Tokens {
    pub(crate) fn new(tokens: &[String]) -> Self {
        let mut this = Tokens::default();
        for token in tokens {
            this.add(token);
        }
        this
    }

    pub(crate) fn add(&mut self, token: &str) {
        self.tokens.insert(token.to_owned(), TokenState::Valid);
    }

    /// Every valid token expires now.
    pub(crate) fn expire_all(&mut self) {
        let now = Instant::now();
        for state in self.tokens.values_mut() {
            if *state == TokenState::Valid {
                *state = TokenState::Expired(now);
            }
        }
    }

    /// Checks the presented token; answers HubSpot's 401 when it is missing,
    /// unknown or expired.
    pub(crate) fn check<'t>(
        &self,
        presented: Option<&'t str>,
        now: Instant,
    ) -> Result<&'t str, ApiError> {
        let token = presented.ok_or_else(ApiError::invalid_authentication)?;
        match self.tokens.get(token) {
            Some(TokenState::Valid) => Ok(token),
            Some(TokenState::Expired(at)) => Err(ApiError::expired_authentication(
                now.saturating_duration_since(*at).as_secs(),
            )),
            None => Err(ApiError::invalid_authentication()),
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_parsing() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer abc"),
        );
        assert_eq!(bearer(&headers), Some("abc"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&headers), None);
    }

    #[test]
    fn expiry_and_renewal() {
        let mut tokens = Tokens::new(&["a".to_owned()]);
        let now = Instant::now();
        assert_eq!(tokens.check(Some("a"), now).unwrap(), "a");
        let err = tokens.check(Some("zzz"), now).unwrap_err();
        assert_eq!(err.body["category"], "INVALID_AUTHENTICATION");
        let err = tokens.check(None, now).unwrap_err();
        assert_eq!(err.status, axum::http::StatusCode::UNAUTHORIZED);

        tokens.expire_all();
        let later = Instant::now() + std::time::Duration::from_secs(7);
        let err = tokens.check(Some("a"), later).unwrap_err();
        assert_eq!(err.body["category"], "EXPIRED_AUTHENTICATION");
        assert_eq!(
            err.body["message"],
            "The OAuth token used to make this call expired 7 second(s) ago."
        );
        tokens.add("a");
        assert!(tokens.check(Some("a"), later).is_ok());
    }
}
