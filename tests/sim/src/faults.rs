//! Fault injection: 429 storms, 5xx bursts shaped like a real gateway's,
//! added latency, outages and writes that report success but store nothing.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::errors::{ApiError, Policy, correlation_id, json_response};

/// Faults to inject into API requests. Set them with
/// [`crate::SimHandle::set_faults`] or `POST /_sim/faults` (which replaces the
/// current set). Counters go down as requests consume them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// The next N API requests answer 429 (TEN_SECONDLY_ROLLING, `Retry-After: 1`).
    pub rate_limit_next: u32,
    /// The next N API requests answer 502, 503, 500, 502, … with gateway-like bodies.
    pub error_5xx_next: u32,
    /// Added to every API request.
    pub latency_ms: u64,
    /// Every API request answers 503 until cleared.
    pub outage: bool,
    /// The next N write requests answer as if they succeeded but store nothing.
    pub fail_silently_next: u32,
}

/// A failure that happens before a request reaches the API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GatewayError {
    BadGateway,
    Unavailable,
    Internal,
    Outage,
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        match self {
            GatewayError::BadGateway => html(
                StatusCode::BAD_GATEWAY,
                "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n",
            ),
            GatewayError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
            )
                .into_response(),
            GatewayError::Internal => json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &serde_json::json!({
                    "status": "error",
                    "message": "internal error",
                    "correlationId": correlation_id(),
                }),
            ),
            GatewayError::Outage => html(
                StatusCode::SERVICE_UNAVAILABLE,
                "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n<hr><center>cloudflare</center>\r\n</body>\r\n</html>\r\n",
            ),
        }
    }
}

fn html(status: StatusCode, body: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, HeaderValue::from_static("text/html"))],
        body,
    )
        .into_response()
}

/// The faults in force plus the position of the 5xx rotation.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    pub faults: Faults,
    rotation: u8,
}

impl FaultState {
    pub(crate) fn set(&mut self, faults: Faults) {
        self.faults = faults;
        self.rotation = 0;
    }

    /// An outage, or the next error of a 5xx burst.
    pub(crate) fn take_gateway_error(&mut self) -> Option<GatewayError> {
        if self.faults.outage {
            return Some(GatewayError::Outage);
        }
        if self.faults.error_5xx_next == 0 {
            return None;
        }
        self.faults.error_5xx_next -= 1;
        let error = match self.rotation % 3 {
            0 => GatewayError::BadGateway,
            1 => GatewayError::Unavailable,
            _ => GatewayError::Internal,
        };
        self.rotation = self.rotation.wrapping_add(1);
        Some(error)
    }

    /// Whether this request is part of an injected 429 storm.
    pub(crate) fn take_rate_limit(&mut self) -> Option<ApiError> {
        if self.faults.rate_limit_next == 0 {
            return None;
        }
        self.faults.rate_limit_next -= 1;
        Some(ApiError::rate_limited(Policy::TenSecondlyRolling, 1))
    }

    /// Whether this write should be dropped while reporting success.
    pub(crate) fn take_silent_write(&mut self) -> bool {
        if self.faults.fail_silently_next == 0 {
            return false;
        }
        self.faults.fail_silently_next -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_rotates_and_runs_out() {
        let mut state = FaultState::default();
        state.set(Faults {
            error_5xx_next: 4,
            ..Faults::default()
        });
        let seen: Vec<_> = std::iter::from_fn(|| state.take_gateway_error()).collect();
        assert_eq!(
            seen,
            vec![
                GatewayError::BadGateway,
                GatewayError::Unavailable,
                GatewayError::Internal,
                GatewayError::BadGateway
            ]
        );
        assert_eq!(state.faults.error_5xx_next, 0);
    }

    #[test]
    fn outage_lasts_until_cleared() {
        let mut state = FaultState::default();
        state.set(Faults {
            outage: true,
            ..Faults::default()
        });
        for _ in 0..3 {
            assert_eq!(state.take_gateway_error(), Some(GatewayError::Outage));
        }
        state.set(Faults::default());
        assert_eq!(state.take_gateway_error(), None);
    }

    #[test]
    fn partial_fault_json_fills_defaults() {
        let faults: Faults = serde_json::from_str(r#"{"latency_ms": 20}"#).unwrap();
        assert_eq!(
            faults,
            Faults {
                latency_ms: 20,
                ..Faults::default()
            }
        );
    }
}
