//! Helpers for building outcomes and reading retry hints.

use crate::http::Response;
use crate::types::{
    DeliveryOutcome, HttpError, Outcome, RateLimit, Rejection, RejectionKind, RequestKind,
    RetryInfo, RetryKind,
};

/// One outcome for one delivery.
pub fn outcome(delivery_id: &str, outcome: Outcome) -> DeliveryOutcome {
    DeliveryOutcome {
        delivery_id: delivery_id.to_string(),
        outcome,
    }
}

/// A refusal for good, of the given kind.
pub fn rejected(
    kind: RejectionKind,
    field: Option<&str>,
    rule: &str,
    message: impl Into<String>,
) -> Outcome {
    Outcome::Rejected(Rejection {
        kind,
        field: field.map(str::to_string),
        rule: rule.to_string(),
        message: message.into(),
    })
}

/// A value the CRM refuses: `field` is the CRM's name for the property
/// (its API name), when the CRM says which.
pub fn invalid(field: Option<&str>, rule: &str, message: impl Into<String>) -> Outcome {
    rejected(RejectionKind::Validation, field, rule, message)
}

/// The record's state in the CRM forbids the write (converted, locked,
/// merged, deleted).
pub fn conflict(rule: &str, message: impl Into<String>) -> Outcome {
    rejected(RejectionKind::Conflict, None, rule, message)
}

/// The credential is valid but lacks the permission.
pub fn forbidden(rule: &str, message: impl Into<String>) -> Outcome {
    rejected(RejectionKind::Forbidden, None, rule, message)
}

/// The destination is misconfigured (`rule` says how).
pub fn misconfigured(rule: &str, message: impl Into<String>) -> Outcome {
    rejected(RejectionKind::Config, None, rule, message)
}

fn retry_of(kind: RetryKind, after_ms: Option<u64>, reason: impl Into<String>) -> Outcome {
    Outcome::Retry(RetryInfo {
        kind,
        after_ms,
        reason: reason.into(),
    })
}

/// A transient failure: try again after `after_ms` (the CRM's own wait)
/// or the host's backoff.
pub fn retry(after_ms: Option<u64>, reason: impl Into<String>) -> Outcome {
    retry_of(RetryKind::Transient, after_ms, reason)
}

/// Not tried this time: another record (an earlier one of the same
/// person) goes first. Due again at once; no attempt used.
pub fn held_back(reason: impl Into<String>) -> Outcome {
    retry_of(RetryKind::HeldBack, None, reason)
}

/// A write the CRM reported as done that a read-back found missing or
/// different (a silent no-op): `reason` says which record and what
/// differs.
pub fn readback_mismatch(reason: impl Into<String>) -> Outcome {
    retry_of(RetryKind::ReadbackMismatch, None, reason)
}

/// The CRM refused the credential (an expired or revoked token): the host
/// renews an OAuth token once and sends the record again.
pub fn auth_expired(reason: impl Into<String>) -> Outcome {
    retry_of(RetryKind::AuthExpired, None, reason)
}

/// The outcome of an HTTP error the host reported: a refusal by the
/// sandbox (host not allowed, secret not granted, bad request) is a
/// configuration problem retrying cannot fix; the rest are transient.
pub fn from_http_error(error: &HttpError) -> Outcome {
    match error {
        HttpError::HostNotAllowed(host) => misconfigured(
            "config",
            format!("host {host} is not allowed (add it to the destination's allowed_hosts)"),
        ),
        HttpError::SecretNotGranted(name) => misconfigured(
            "config",
            format!("secret {name} is not granted to the destination"),
        ),
        HttpError::InvalidRequest(m) => misconfigured("config", format!("invalid request: {m}")),
        HttpError::Timeout => retry(None, "timed out"),
        HttpError::ResponseTooLarge(n) => retry(None, format!("response too large ({n} bytes)")),
        HttpError::Transport(m) => retry(None, format!("transport: {m}")),
    }
}

/// The usual reading of a CRM's answer when it is not a success: 429 is
/// throttling (with the CRM's own wait), 401 an expired or rotated token
/// (auth expired: the host renews it), 403 a missing permission, 408, 425
/// and 5xx transient, 3xx a redirect the host does not follow, 409 and 412
/// a conflict with the record's state, 400 and 422 a validation refusal,
/// any other 4xx a refusal naming the status. `throttle_default_ms` is the
/// wait when a 429 names none.
/// Returns `None` for a 2xx: the adapter reads those itself.
pub fn from_status(response: &Response, throttle_default_ms: u64) -> Option<Outcome> {
    let status = response.status();
    let excerpt = || {
        let text = response.text();
        let mut end = text.len().min(300);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text[..end].to_string()
    };
    Some(match status {
        200..=299 => return None,
        429 => Outcome::RateLimited(response.throttle_hint_ms().unwrap_or(throttle_default_ms)),
        401 => auth_expired(format!("HTTP 401: {}", excerpt())),
        408 | 425 | 500..=599 => retry(
            response.retry_after_ms(),
            format!("HTTP {status}: {}", excerpt()),
        ),
        300..=399 => retry(None, format!("HTTP {status}: redirect not followed")),
        403 => forbidden("http_403", excerpt()),
        409 | 412 => conflict(&format!("http_{status}"), excerpt()),
        400 | 422 => invalid(None, &format!("http_{status}"), excerpt()),
        _ => rejected(
            RejectionKind::Other,
            None,
            &format!("http_{status}"),
            excerpt(),
        ),
    })
}

/// A rate limit the CRM enforces: `max_requests` of any kind per
/// `window_ms`.
pub fn limit(name: &str, max_requests: u32, window_ms: u64) -> RateLimit {
    RateLimit {
        name: name.to_string(),
        max_requests,
        window_ms,
        kinds: Vec::new(),
    }
}

/// The same window counting only requests of these kinds (a CRM's search
/// quota: `limit("search", 5, 1_000).only(&[RequestKind::Search])`).
pub trait CountsOnly {
    fn only(self, kinds: &[RequestKind]) -> RateLimit;
}

impl CountsOnly for RateLimit {
    fn only(mut self, kinds: &[RequestKind]) -> RateLimit {
        self.kinds = kinds.to_vec();
        self
    }
}

/// `max_requests` per second.
pub fn per_second(name: &str, max_requests: u32) -> RateLimit {
    limit(name, max_requests, 1_000)
}

/// `max_requests` per day.
pub fn per_day(name: &str, max_requests: u32) -> RateLimit {
    limit(name, max_requests, 86_400_000)
}

/// Parses a `Retry-After` header given in whole or fractional seconds.
pub fn parse_retry_after_secs(value: &str) -> Option<u64> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| (secs * 1000.0).ceil() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestHost, install};
    use crate::types::{Header, HttpResponse};

    fn response(status: u16, headers: &[(&str, &str)]) -> Response {
        Response(HttpResponse {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| Header {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            body: b"{\"error\":\"nope\"}".to_vec(),
        })
    }

    #[test]
    fn statuses_map_to_outcomes() {
        install(TestHost::new(|_| unreachable!()));
        assert_eq!(from_status(&response(201, &[]), 1000), None);
        assert_eq!(
            from_status(&response(429, &[("Retry-After", "3")]), 1000),
            Some(Outcome::RateLimited(3000))
        );
        assert_eq!(
            from_status(&response(429, &[("x-ratelimit-reset", "2")]), 1000),
            Some(Outcome::RateLimited(2000))
        );
        // a reset given as a Unix time becomes a delay from the host clock
        let at = (1_700_000_000_000u64 / 1000 + 5).to_string();
        assert_eq!(
            from_status(&response(429, &[("X-RateLimit-Reset", &at)]), 1000),
            Some(Outcome::RateLimited(5000))
        );
        assert_eq!(
            from_status(&response(429, &[]), 1000),
            Some(Outcome::RateLimited(1000))
        );
        assert!(matches!(
            from_status(&response(503, &[]), 1000),
            Some(Outcome::Retry(_))
        ));
        assert!(matches!(
            from_status(&response(401, &[]), 1000),
            Some(Outcome::Retry(RetryInfo {
                kind: RetryKind::AuthExpired,
                ..
            }))
        ));
        assert!(matches!(
            from_status(&response(403, &[]), 1000),
            Some(Outcome::Rejected(Rejection {
                kind: RejectionKind::Forbidden,
                ..
            }))
        ));
        assert!(matches!(
            from_status(&response(412, &[]), 1000),
            Some(Outcome::Rejected(Rejection {
                kind: RejectionKind::Conflict,
                ..
            }))
        ));
        match from_status(&response(422, &[]), 1000) {
            Some(Outcome::Rejected(r)) => {
                assert_eq!(r.kind, RejectionKind::Validation);
                assert_eq!(r.rule, "http_422");
                assert!(r.message.contains("nope"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sandbox_refusals_are_config_errors() {
        assert!(matches!(
            from_http_error(&HttpError::HostNotAllowed("evil.example".into())),
            Outcome::Rejected(Rejection { ref rule, .. }) if rule == "config"
        ));
        assert!(matches!(
            from_http_error(&HttpError::Timeout),
            Outcome::Retry(_)
        ));
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after_secs("2"), Some(2000));
        assert_eq!(parse_retry_after_secs(" 0.5 "), Some(500));
        assert_eq!(parse_retry_after_secs("-1"), None);
        assert_eq!(
            parse_retry_after_secs("Wed, 21 Oct 2015 07:28:00 GMT"),
            None
        );
    }
}
