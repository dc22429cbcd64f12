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

/// The same outcome for every request (a destination misconfigured).
pub fn all(batch: &[ErasureRequest], o: EraseOutcome) -> Vec<ErasureOutcome> {
    batch.iter().map(|r| outcome(r, o.clone())).collect()
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
/// deleted, 404 and 410 not found, any other status as `failure` reads
/// the CRM's error (the adapter's own reading of a failed call, or
/// [`from_status`]); an HTTP error as [`from_http_error`].
pub fn of_response(
    response: Result<Response, HttpError>,
    failure: impl FnOnce(&Response) -> Outcome,
) -> EraseOutcome {
    match response {
        Err(e) => refused(from_http_error(&e)),
        Ok(r) if (200..300).contains(&r.status()) => deleted(),
        Ok(r) if r.status() == 404 || r.status() == 410 => not_found(),
        Ok(r) => refused(failure(&r)),
    }
}

/// [`from_status`] as a failure reader: 429 waits `throttle_default_ms`
/// when the CRM names no wait.
pub fn status_failure(throttle_default_ms: u64) -> impl FnOnce(&Response) -> Outcome {
    move |r| {
        from_status(r, throttle_default_ms)
            .unwrap_or_else(|| crate::outcome::retry(None, "a success read as a failure"))
    }
}

/// The usual frame of [`Adapter::erase`](crate::Adapter::erase): the
/// destination's `settings` as the adapter reads them from the context
/// (an error refuses every request as misconfigured), and `erase` called
/// with them for the requests whose record id is [plain](is_plain_id).
pub fn with_settings<S>(
    batch: &[ErasureRequest],
    settings: Result<S, String>,
    erase: impl FnOnce(&S, &[&ErasureRequest]) -> Vec<EraseOutcome>,
) -> Vec<ErasureOutcome> {
    match settings {
        Ok(settings) => plain_ids_only(batch, |plain| erase(&settings, plain)),
        Err(e) => all(batch, refused(crate::outcome::misconfigured("config", e))),
    }
}

/// Whether a record id is safe to put in a URL path as it is (letters,
/// digits, `-` and `_`): every CRM's ids are; anything else is refused
/// rather than escaped into another resource.
pub fn is_plain_id(id: &str) -> bool {
    !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Each request whose record id is not [plain](is_plain_id) gets its
/// refusal; `erase` gets the rest and answers for them.
pub fn plain_ids_only(
    batch: &[ErasureRequest],
    erase: impl FnOnce(&[&ErasureRequest]) -> Vec<EraseOutcome>,
) -> Vec<ErasureOutcome> {
    let plain: Vec<&ErasureRequest> = batch.iter().filter(|r| is_plain_id(&r.record_id)).collect();
    let mut answers = erase(&plain).into_iter();
    batch
        .iter()
        .map(|r| {
            let o = if is_plain_id(&r.record_id) {
                answers.next().unwrap_or_else(|| {
                    refused(crate::outcome::retry(
                        None,
                        "the adapter gave no answer for this record",
                    ))
                })
            } else {
                refused(crate::outcome::invalid(
                    None,
                    "record_id",
                    format!("{:?} is not a CRM record id", r.record_id),
                ))
            };
            outcome(r, o)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{TestHost, install};
    use crate::types::{HttpResponse, RejectionKind};

    fn response(status: u16) -> Result<Response, HttpError> {
        Ok(Response(HttpResponse {
            status,
            headers: vec![],
            body: b"{\"message\":\"nope\"}".to_vec(),
        }))
    }

    fn request(id: &str, record: &str) -> ErasureRequest {
        ErasureRequest {
            id: id.into(),
            record_id: record.into(),
        }
    }

    #[test]
    fn a_delete_answer_reads_as_deleted_not_found_or_the_crms_failure() {
        install(TestHost::new(|_| unreachable!()));
        let failure = status_failure(1000);
        assert_eq!(of_response(response(204), failure), EraseOutcome::Deleted);
        assert_eq!(
            of_response(response(404), status_failure(1000)),
            EraseOutcome::NotFound
        );
        assert_eq!(
            of_response(response(410), status_failure(1000)),
            EraseOutcome::NotFound
        );
        assert_eq!(
            of_response(response(429), status_failure(1000)),
            EraseOutcome::RateLimited(1000)
        );
        assert!(matches!(
            of_response(response(403), status_failure(1000)),
            EraseOutcome::Rejected(r) if r.kind == RejectionKind::Forbidden
        ));
        assert!(matches!(
            of_response(response(503), status_failure(1000)),
            EraseOutcome::Retry(_)
        ));
        assert!(matches!(
            of_response(Err(HttpError::Timeout), status_failure(1000)),
            EraseOutcome::Retry(_)
        ));
        // The adapter's own reading of a failure wins.
        let own = |_: &Response| crate::outcome::conflict("locked", "the record is locked");
        assert!(matches!(
            of_response(response(400), own),
            EraseOutcome::Rejected(r) if r.rule == "locked"
        ));
    }

    #[test]
    fn an_id_that_is_not_plain_is_refused_without_a_call() {
        let batch = [
            request("e1", "901"),
            request("e2", "../deals/7"),
            request("e3", "00Q5g00000AbCdE"),
        ];
        let mut sent = Vec::new();
        let out = plain_ids_only(&batch, |plain| {
            sent = plain.iter().map(|r| r.record_id.clone()).collect();
            plain.iter().map(|_| deleted()).collect()
        });
        assert_eq!(sent, ["901", "00Q5g00000AbCdE"]);
        let ids: Vec<&str> = out.iter().map(|o| o.erasure_id.as_str()).collect();
        assert_eq!(ids, ["e1", "e2", "e3"]);
        assert_eq!(out[0].outcome, EraseOutcome::Deleted);
        assert!(matches!(
            &out[1].outcome,
            EraseOutcome::Rejected(r) if r.rule == "record_id"
        ));
        assert_eq!(out[2].outcome, EraseOutcome::Deleted);
        assert!(!is_plain_id("") && !is_plain_id("a b") && is_plain_id("a-b_9"));
    }
}
