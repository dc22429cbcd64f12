//! Deleting records at the CRM ([`Adapter::erase`](crate::Adapter::erase)):
//! one outcome per request, and the usual reading of a CRM's answer to a
//! DELETE.

use crate::http::Response;
use crate::outcome::{from_http_error, from_status};
use crate::types::{EraseOutcome, ErasureOutcome, ErasureRequest, HttpError, Outcome};

/// The outcome of one deletion.
pub fn outcome(request: &ErasureRequest, outcome: EraseOutcome) -> ErasureOutcome {
    ErasureOutcome {
        erasure_id: request.id.clone(),
        outcome,
    }
}

/// The CRM deleted the record.
pub fn deleted() -> EraseOutcome {
    EraseOutcome::Deleted
}

/// The CRM holds no such record: nothing to delete.
pub fn not_found() -> EraseOutcome {
    EraseOutcome::NotFound
}

/// A delivery's refusal, retry or throttle, as a deletion's. A write
/// (`created`, `updated`, `duplicate-of`) means nothing for a deletion and
/// reads as a transient failure naming it.
pub fn refused(outcome: Outcome) -> EraseOutcome {
    match outcome {
        Outcome::Rejected(r) => EraseOutcome::Rejected(r),
        Outcome::Retry(r) => EraseOutcome::Retry(r),
        Outcome::RateLimited(ms) => EraseOutcome::RateLimited(ms),
        other => EraseOutcome::Retry(crate::types::RetryInfo {
            kind: crate::types::RetryKind::Transient,
            after_ms: None,
            reason: format!("not a deletion\'s outcome: {other:?}"),
        }),
    }
}

/// The usual reading of a CRM's answer to a DELETE of one record: 2xx
/// deleted, 404 and 410 not found, anything else as
/// [`from_status`](crate::outcome::from_status) reads it (429 throttled,
/// 401 auth expired, 5xx transient, 4xx refused); an HTTP error as
/// [`from_http_error`](crate::outcome::from_http_error).
/// `throttle_default_ms` is the wait when a 429 names none.
pub fn of_response(
    response: Result<Response, HttpError>,
    throttle_default_ms: u64,
) -> EraseOutcome {
    match response {
        Err(e) => refused(from_http_error(&e)),
        Ok(r) if (200..300).contains(&r.status()) => deleted(),
        Ok(r) if r.status() == 404 || r.status() == 410 => not_found(),
        Ok(r) => {
            refused(from_status(&r, throttle_default_ms).expect("a status outside 2xx is read"))
        }
    }
}
