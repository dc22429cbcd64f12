//! Helpers for building outcomes and reading retry hints.

use crate::http::Response;
use crate::types::{DeliveryOutcome, HttpError, Outcome, RateLimit, Rejection, RetryInfo};

/// One outcome for one delivery.
pub fn outcome(delivery_id: &str, outcome: Outcome) -> DeliveryOutcome {
    DeliveryOutcome {
        delivery_id: delivery_id.to_string(),
        outcome,
    }
}

pub fn rejected(field: Option<&str>, rule: &str, message: impl Into<String>) -> Outcome {
    Outcome::Rejected(Rejection {
        field: field.map(str::to_string),
        rule: rule.to_string(),
        message: message.into(),
    })
}

pub fn retry(after_ms: Option<u64>, reason: impl Into<String>) -> Outcome {
    Outcome::Retry(RetryInfo {
        after_ms,
        reason: reason.into(),
    })
}

/// How a retry's reason starts when a read-back found that a write the CRM
/// reported as done is missing or holds something else (see `retry-info`
/// in the WIT); the host counts those as read-back mismatches.
pub const READBACK_PREFIX: &str = "readback:";

/// A retry for a write the CRM reported as done that a read-back found
/// missing or different (a silent no-op): `reason` says which record and
/// what differs.
pub fn readback_mismatch(reason: impl AsRef<str>) -> Outcome {
    retry(None, format!("{READBACK_PREFIX} {}", reason.as_ref()))
}

/// The outcome of an HTTP error the host reported: a refusal by the
/// sandbox (host not allowed, secret not granted, bad request) is a
/// configuration problem retrying cannot fix; the rest are transient.
pub fn from_http_error(error: &HttpError) -> Outcome {
    match error {
        HttpError::HostNotAllowed(host) => rejected(
            None,
            "config",
            format!("host {host} is not allowed (add it to the destination's allowed_hosts)"),
        ),
        HttpError::SecretNotGranted(name) => rejected(
            None,
            "config",
            format!("secret {name} is not granted to the destination"),
        ),
        HttpError::InvalidRequest(m) => rejected(None, "config", format!("invalid request: {m}")),
        HttpError::Timeout => retry(None, "timed out"),
        HttpError::ResponseTooLarge(n) => retry(None, format!("response too large ({n} bytes)")),
        HttpError::Transport(m) => retry(None, format!("transport: {m}")),
    }
}

/// The usual reading of a CRM's answer when it is not a success: 429 is
/// throttling (with the CRM's own wait), 401 an expired or rotated token
/// (retry after the token is renewed), 408, 425 and 5xx transient, 3xx a
/// redirect the host does not follow, any other 4xx a refusal naming the
/// status. `throttle_default_ms` is the wait when a 429 names none.
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
        401 => retry(response.retry_after_ms(), "unauthorized: token rejected"),
        408 | 425 | 500..=599 => retry(
            response.retry_after_ms(),
            format!("HTTP {status}: {}", excerpt()),
        ),
        300..=399 => retry(None, format!("HTTP {status}: redirect not followed")),
        _ => rejected(None, &format!("http_{status}"), excerpt()),
    })
}

/// A rate limit the CRM enforces: `max_requests` per `window_ms`.
pub fn limit(name: &str, max_requests: u32, window_ms: u64) -> RateLimit {
    RateLimit {
        name: name.to_string(),
        max_requests,
        window_ms,
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
            Some(Outcome::Retry(_))
        ));
        match from_status(&response(422, &[]), 1000) {
            Some(Outcome::Rejected(r)) => {
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
