//! Salesforce's error and result bodies (`shared/crm-apis.md` §2.2–§2.6).
//!
//! - A REST error is a JSON **array** of `{"message","errorCode"}` objects,
//!   with `fields` where Salesforce sends it (`REQUIRED_FIELD_MISSING`,
//!   `INVALID_EMAIL_ADDRESS`, `DUPLICATE_VALUE`, …) and `duplicateResult`
//!   on `DUPLICATES_DETECTED`.
//! - Inside an sObject Collections answer the same error is
//!   `{"statusCode","message","fields"}` (`statusCode`, not `errorCode`;
//!   `fields` always present), and a failed item carries no `id` unless it
//!   was an update rolled back by `allOrNone` — the shapes of the REST API
//!   guide's collection examples.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::errors::json_response;

/// The session expired, was revoked or never existed.
pub(crate) const INVALID_SESSION: &str = "Session expired or invalid";
/// `NOT_FOUND` for an unknown resource, object, record or External ID field.
pub(crate) const NOT_FOUND_MESSAGE: &str = "The requested resource does not exist";
/// The alert text of Salesforce's Standard Lead Duplicate Rule, which is
/// also what a Collections answer carries as the message.
pub(crate) const DUPLICATE_ALERT: &str = "Use one of these records?";
/// The message every record of a rolled-back `allOrNone` call gets.
pub(crate) const ROLLED_BACK: &str = "Record rolled back because not all records were valid and the request was using AllOrNone header";

/// One Salesforce error: a whole-call answer (with its HTTP status) or one
/// entry of a Collections item's `errors`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SfError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// `None`: the key is left out of a whole-call error (Salesforce omits
    /// it for `NOT_FOUND`, `INVALID_FIELD`, `INVALID_SESSION_ID`, …).
    pub fields: Option<Vec<String>>,
    /// The `duplicateResult` of a whole-call `DUPLICATES_DETECTED`.
    pub duplicate_result: Option<Value>,
}

impl SfError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: String) -> SfError {
        SfError {
            status,
            code,
            message,
            fields: None,
            duplicate_result: None,
        }
    }

    pub(crate) fn with_fields(mut self, fields: Vec<String>) -> SfError {
        self.fields = Some(fields);
        self
    }

    pub(crate) fn not_found() -> SfError {
        SfError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            NOT_FOUND_MESSAGE.to_owned(),
        )
    }

    pub(crate) fn json_parser(message: String) -> SfError {
        SfError::new(StatusCode::BAD_REQUEST, "JSON_PARSER_ERROR", message)
    }

    /// The object of a whole-call error array.
    pub(crate) fn top_level(&self) -> Value {
        let mut object = Map::new();
        if let Some(result) = &self.duplicate_result {
            object.insert("duplicateResult".into(), result.clone());
        }
        object.insert("errorCode".into(), self.code.into());
        object.insert("message".into(), self.message.clone().into());
        if let Some(fields) = &self.fields {
            object.insert("fields".into(), json!(fields));
        }
        Value::Object(object)
    }

    /// One entry of a Collections item's `errors`.
    pub(crate) fn per_record(&self) -> Value {
        json!({
            "statusCode": self.code,
            "message": self.message,
            "fields": self.fields.clone().unwrap_or_default(),
        })
    }

    pub(crate) fn rolled_back() -> SfError {
        SfError::new(
            StatusCode::BAD_REQUEST,
            "ALL_OR_NONE_OPERATION_ROLLED_BACK",
            ROLLED_BACK.to_owned(),
        )
        .with_fields(Vec::new())
    }
}

/// A whole-call error answer: the status of the first error, the array of
/// all of them.
pub(crate) fn errors_response(errors: &[SfError]) -> Response {
    let status = errors.first().map_or(StatusCode::BAD_REQUEST, |e| e.status);
    let body: Vec<Value> = errors.iter().map(SfError::top_level).collect();
    json_response(status, &body)
}

impl IntoResponse for SfError {
    fn into_response(self) -> Response {
        errors_response(std::slice::from_ref(&self))
    }
}

/// 401 for a missing, unknown, expired or revoked session.
pub(crate) fn invalid_session() -> Response {
    let mut response = json_response(
        StatusCode::UNAUTHORIZED,
        &json!([{"message": INVALID_SESSION, "errorCode": "INVALID_SESSION_ID"}]),
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Token"));
    response
}

/// 403 `REQUEST_LIMIT_EXCEEDED` with the limit's message: the org's daily
/// allocation ("TotalRequests Limit exceeded.") or the concurrent
/// long-running request limit.
pub(crate) fn limit_exceeded(message: &str) -> Response {
    json_response(
        StatusCode::FORBIDDEN,
        &json!([{"message": message, "errorCode": "REQUEST_LIMIT_EXCEEDED"}]),
    )
}

/// A SaveResult: `{"id","success":true,"errors":[]}`, with `created` for an
/// upsert.
pub(crate) fn saved(id: &str, created: Option<bool>) -> Value {
    let mut result = json!({"id": id, "success": true, "errors": []});
    if let Some(created) = created {
        result["created"] = created.into();
    }
    result
}

/// A failed Collections item: no `id` (unless the record existed and was
/// rolled back), `success:false`, the errors.
pub(crate) fn failed(id: Option<&str>, errors: &[SfError]) -> Value {
    let mut result = Map::new();
    if let Some(id) = id {
        result.insert("id".into(), id.into());
    }
    result.insert("success".into(), false.into());
    result.insert(
        "errors".into(),
        errors.iter().map(SfError::per_record).collect(),
    );
    Value::Object(result)
}

/// `attributes` of a record in a read or query answer.
pub(crate) fn attributes(object: &str, id: &str, version: &str) -> Value {
    json!({"type": object, "url": record_url(object, id, version)})
}

pub(crate) fn record_url(object: &str, id: &str, version: &str) -> String {
    format!("/services/data/v{version}/sobjects/{object}/{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_call_and_per_record_shapes() {
        let e = SfError::new(
            StatusCode::BAD_REQUEST,
            "REQUIRED_FIELD_MISSING",
            "Required fields are missing: [LastName]".into(),
        )
        .with_fields(vec!["LastName".into()]);
        assert_eq!(
            e.top_level(),
            json!({"message": "Required fields are missing: [LastName]", "errorCode": "REQUIRED_FIELD_MISSING", "fields": ["LastName"]})
        );
        assert_eq!(
            e.per_record(),
            json!({"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [LastName]", "fields": ["LastName"]})
        );
        let nf = SfError::not_found();
        assert_eq!(
            nf.top_level(),
            json!({"errorCode": "NOT_FOUND", "message": NOT_FOUND_MESSAGE})
        );
        assert_eq!(nf.per_record()["fields"], json!([]));
        assert_eq!(
            failed(None, &[SfError::rolled_back()]),
            json!({"success": false, "errors": [{"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": ROLLED_BACK, "fields": []}]})
        );
        assert_eq!(
            saved("00Q", Some(false)),
            json!({"id": "00Q", "success": true, "errors": [], "created": false})
        );
    }
}
