//! The front door every API request passes, in HubSpot's order: injected
//! latency, gateway faults (outage, 5xx burst), auth, an injected 429 storm,
//! then the real rate limits. Admitted requests get the rate-limit headers on
//! their answer; every answer is counted in the stats.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::errors::ApiError;
use crate::ratelimit::{Clock, Decision, RateHeaders};
use crate::{Shared, State as SimState};

enum Admission {
    Admitted(RateHeaders),
    Refused(Response),
}

impl SimState {
    fn admit(&mut self, token: Option<&str>, clock: Clock, search: bool) -> Admission {
        if let Some(error) = self.faults.take_gateway_error() {
            return Admission::Refused(error.into_response());
        }
        let token = match self.tokens.check(token, clock.now) {
            Ok(token) => token,
            Err(error) => return Admission::Refused(error.into_response()),
        };
        if let Some(error) = self.faults.take_rate_limit() {
            let mut headers = self.limiter.peek(token, clock, search);
            headers.remaining = 0;
            return Admission::Refused(with_headers(error, headers));
        }
        match self.limiter.check(token, clock, search) {
            Decision::Allowed(headers) => Admission::Admitted(headers),
            Decision::Limited {
                policy,
                retry_after,
                headers,
            } => Admission::Refused(with_headers(
                ApiError::rate_limited(policy, retry_after),
                headers,
            )),
        }
    }
}

fn with_headers(error: ApiError, headers: RateHeaders) -> Response {
    let mut response = error.into_response();
    headers.apply(response.headers_mut());
    response
}

/// axum middleware wrapping the HubSpot routes.
pub(crate) async fn gate(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let search =
        request.method() == Method::POST && request.uri().path().ends_with("/contacts/search");
    let token = crate::auth::bearer(request.headers());
    let (latency_ms, admission) = {
        let mut state = shared.lock();
        let latency_ms = state.faults.faults.latency_ms;
        (latency_ms, state.admit(token, Clock::now(), search))
    };
    let admitted = match admission {
        Admission::Refused(response) => Err(response),
        Admission::Admitted(headers) => Ok(move |h: &mut HeaderMap| headers.apply(h)),
    };
    pass(&shared, latency_ms, admitted, request, next).await
}

/// The end of every personality's gate: the injected latency, then the
/// request (with the admission's headers on its answer) or the refusal,
/// and the answer counted in the stats.
pub(crate) async fn pass(
    shared: &Shared,
    latency_ms: u64,
    admitted: Result<impl FnOnce(&mut HeaderMap), Response>,
    request: Request,
    next: Next,
) -> Response {
    let _in_flight = InFlight::enter(shared);
    if latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(latency_ms)).await;
    }
    let response = match admitted {
        Err(response) => response,
        Ok(add_headers) => {
            let mut response = next.run(request).await;
            add_headers(response.headers_mut());
            response
        }
    };
    shared.lock().stats.record(response.status().as_u16());
    response
}

/// Counts a request in flight until its answer is made or the client goes
/// away (the request's future is dropped).
struct InFlight<'a>(&'a Shared);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared) -> InFlight<'a> {
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(shared)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}
