//! The front door every API request passes, in HubSpot's order: injected
//! latency, gateway faults (outage, 5xx burst), auth, an injected 429 storm,
//! then the real rate limits. Admitted requests get the rate-limit headers on
//! their answer; every answer is counted in the stats.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
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
            } => {
                self.stats.over_quota += 1;
                Admission::Refused(with_headers(
                    ApiError::rate_limited(policy, retry_after),
                    headers,
                ))
            }
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
    let path = request.uri().path();
    let search = request.method() == Method::POST && path.ends_with("/contacts/search");
    // Reads by POST (search, batch read) are not writes.
    let write = request.method() != Method::GET && !search && !path.ends_with("/batch/read");
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
    pass(&shared, write, latency_ms, admitted, request, next).await
}

/// The end of every personality's gate: the request (with the admission's
/// headers on its answer) or the refusal, then the injected latency, and
/// the answer counted in the stats.
///
/// As on a real CRM, a request that arrived whole is carried out even if
/// its client goes away (a timeout, a kill -9): it runs in a task of its
/// own, and the latency delays the answer, not the write. So a client that
/// gives up on a slow answer must assume the write happened: the case
/// that makes a second record when an adapter retries a create blindly.
pub(crate) async fn pass(
    shared: &Arc<Shared>,
    write: bool,
    latency_ms: u64,
    admitted: Result<impl FnOnce(&mut HeaderMap) + Send + 'static, Response>,
    request: Request,
    next: Next,
) -> Response {
    pass_holding(shared, write, latency_ms, admitted, request, next, ()).await
}

/// [`pass`], keeping `hold` alive until the answer is counted (after the
/// injected latency): a personality with a concurrency limit holds its
/// slot in it, so a slow answer keeps its call in flight.
pub(crate) async fn pass_holding<H: Send + 'static>(
    shared: &Arc<Shared>,
    write: bool,
    latency_ms: u64,
    admitted: Result<impl FnOnce(&mut HeaderMap) + Send + 'static, Response>,
    request: Request,
    next: Next,
    hold: H,
) -> Response {
    let shared = shared.clone();
    let work = tokio::spawn(async move {
        let _hold = hold;
        let _in_flight = InFlight::enter(&shared, write);
        let response = match admitted {
            Err(response) => response,
            Ok(add_headers) => {
                let mut response = next.run(request).await;
                add_headers(response.headers_mut());
                response
            }
        };
        if latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(latency_ms)).await;
        }
        shared.lock().stats.record(response.status().as_u16());
        response
    });
    work.await
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Counts a request (and a write) in flight until its answer is made.
struct InFlight<'a>(&'a Shared, bool);

impl<'a> InFlight<'a> {
    fn enter(shared: &'a Shared, write: bool) -> InFlight<'a> {
        shared.in_flight.fetch_add(1, Ordering::AcqRel);
        if write {
            shared.in_flight_writes.fetch_add(1, Ordering::AcqRel);
        }
        InFlight(shared, write)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        if self.1 {
            self.0.in_flight_writes.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
