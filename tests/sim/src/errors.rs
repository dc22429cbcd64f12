//! HubSpot error bodies: every error the simulator answers is built here, so the
//! wire shapes (`status`, `message`, `correlationId`, `category`, the JSON array
//! inside validation messages, the 429 body) live in one place.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

/// The portal (account) id that appears in rate-limit group names.
pub(crate) const PORTAL_ID: u64 = 24_681_357;

/// Content type HubSpot uses for its JSON answers.
pub(crate) const JSON_UTF8: &str = "application/json;charset=utf-8";

/// A random UUID (v4 layout), as HubSpot uses for `correlationId`.
pub(crate) fn correlation_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .to_string()
}

/// 32 lowercase hex digits, like the `requestId` of a HubSpot 429.
pub(crate) fn request_id() -> String {
    uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .simple()
        .to_string()
}

/// A JSON response with HubSpot's content type.
pub(crate) fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8))],
            bytes,
        )
            .into_response(),
        Err(err) => {
            tracing::error!(%err, "could not serialise a response body");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// One problem with one property value, serialised exactly as HubSpot puts it
/// inside the `message` string of a validation error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PropError {
    pub name: String,
    pub code: &'static str,
    pub message: String,
}

impl PropError {
    pub(crate) fn new(name: &str, code: &'static str, message: String) -> Self {
        PropError {
            name: name.to_owned(),
            code,
            message,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PropErrorWire<'a> {
    is_valid: bool,
    message: &'a str,
    error: &'a str,
    name: &'a str,
    localized_error_message: &'a str,
}

/// `Property values were not valid: [...]` with the array JSON-encoded.
pub(crate) fn property_values_message(errors: &[PropError]) -> String {
    let wire: Vec<PropErrorWire<'_>> = errors
        .iter()
        .map(|e| PropErrorWire {
            is_valid: false,
            message: &e.message,
            error: e.code,
            name: &e.name,
            localized_error_message: &e.message,
        })
        .collect();
    let array = serde_json::to_string(&wire).unwrap_or_else(|_| "[]".to_owned());
    format!("Property values were not valid: {array}")
}

/// Why one input of a write failed. Becomes either a whole-call error or one
/// entry of a batch's `errors[]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum InputError {
    /// One or more property values are invalid (400 VALIDATION_ERROR).
    Properties(Vec<PropError>),
    /// The email belongs to another contact (409 CONFLICT).
    Conflict { existing_id: u64 },
    /// The record to update does not exist (404 OBJECT_NOT_FOUND).
    NotFound { id: String },
}

impl InputError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            InputError::Properties(_) => StatusCode::BAD_REQUEST,
            InputError::Conflict { .. } => StatusCode::CONFLICT,
            InputError::NotFound { .. } => StatusCode::NOT_FOUND,
        }
    }

    pub(crate) fn category(&self) -> &'static str {
        match self {
            InputError::Properties(_) => "VALIDATION_ERROR",
            InputError::Conflict { .. } => "CONFLICT",
            InputError::NotFound { .. } => "OBJECT_NOT_FOUND",
        }
    }

    pub(crate) fn message(&self) -> String {
        match self {
            InputError::Properties(errors) => property_values_message(errors),
            InputError::Conflict { existing_id } => {
                format!("Contact already exists. Existing ID: {existing_id}")
            }
            InputError::NotFound { .. } => OBJECT_NOT_FOUND_BATCH.to_owned(),
        }
    }

    /// The whole-call error a single-object endpoint (or a batch without
    /// trace ids) answers for this input.
    pub(crate) fn into_api_error(self) -> ApiError {
        match self {
            InputError::NotFound { .. } => ApiError::object_not_found(),
            other => ApiError::new(other.status(), other.category(), other.message()),
        }
    }

    /// One entry of a BatchResponse's `errors[]`. `context` is
    /// `{"objectWriteTraceId":[..]}` or `{"ids":[..]}`.
    pub(crate) fn batch_entry(&self, context: Value) -> Value {
        let details: Vec<Value> = match self {
            InputError::Properties(errors) => errors
                .iter()
                .map(|e| json!({"message": e.message, "code": e.code, "in": e.name}))
                .collect(),
            InputError::Conflict { .. } => {
                vec![json!({"message": self.message(), "code": "CONFLICT"})]
            }
            InputError::NotFound { id } => {
                vec![
                    json!({"message": format!("Object with id {id} not found"), "code": "OBJECT_NOT_FOUND"}),
                ]
            }
        };
        json!({
            "status": "error",
            "category": self.category(),
            "message": self.message(),
            "context": context,
            "errors": details,
        })
    }
}

/// Message HubSpot uses for ids missing from a batch read or update.
pub(crate) const OBJECT_NOT_FOUND_BATCH: &str = "Could not get some CONTACT objects, they may be deleted or not exist. Check that ids are valid.";

const NOT_AUTHENTICATED: &str = "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview";

/// An error answer: status, JSON body and extra headers.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub body: Value,
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// `{"status":"error","message":..,"correlationId":..,"category":..}`.
    pub(crate) fn new(status: StatusCode, category: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: json!({
                "status": "error",
                "message": message.into(),
                "correlationId": correlation_id(),
                "category": category,
            }),
            retry_after: None,
        }
    }

    pub(crate) fn validation(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
    }

    pub(crate) fn invalid_authentication() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTHENTICATION",
            NOT_AUTHENTICATED,
        )
    }

    pub(crate) fn expired_authentication(seconds_ago: u64) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "EXPIRED_AUTHENTICATION",
            format!("The OAuth token used to make this call expired {seconds_ago} second(s) ago."),
        )
    }

    pub(crate) fn object_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            "Object not found.  objectId are usually numeric.",
        )
    }

    /// Unknown path under the API.
    pub(crate) fn route_not_found(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "OBJECT_NOT_FOUND",
            format!("Unable to route {method} url: {path}"),
        )
    }

    /// Body that could not be parsed: Jackson's wording with serde's detail.
    pub(crate) fn invalid_json(err: &serde_json::Error) -> Self {
        let text = err.to_string();
        // serde_json appends " at line L column C"; HubSpot puts the position first.
        let detail = match text.rfind(" at line ") {
            Some(pos) => &text[..pos],
            None => text.as_str(),
        };
        Self::validation(format!(
            "Invalid input JSON on line {}, column {}: {}",
            err.line(),
            err.column(),
            detail
        ))
    }

    pub(crate) fn batch_too_large(max: usize) -> Self {
        Self::validation(format!(
            "The maximum number of inputs supported in a batch request is {max}. Please reduce the number of items and try again"
        ))
    }

    /// A 429 in HubSpot's rate-limit shape (no `category`; `errorType`, `policyName`).
    pub(crate) fn rate_limited(policy: Policy, retry_after: u64) -> Self {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            body: json!({
                "status": "error",
                "message": policy.message(),
                "errorType": "RATE_LIMIT",
                "correlationId": correlation_id(),
                "policyName": policy.name(),
                "groupName": policy.group_name(),
                "requestId": request_id(),
            }),
            retry_after: Some(retry_after.max(1)),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = json_response(self.status, &self.body);
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Which HubSpot rate-limit policy refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Policy {
    /// The burst limit per rolling ten seconds.
    TenSecondlyRolling,
    /// The daily quota.
    Daily,
    /// The CRM search API's per-second limit.
    Secondly,
}

impl Policy {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Policy::TenSecondlyRolling => "TEN_SECONDLY_ROLLING",
            Policy::Daily => "DAILY",
            Policy::Secondly => "SECONDLY",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Policy::TenSecondlyRolling => "You have reached your ten_secondly_rolling limit.",
            Policy::Daily => "You have reached your daily limit.",
            Policy::Secondly => "You have reached your secondly limit.",
        }
    }

    fn group_name(self) -> String {
        match self {
            Policy::TenSecondlyRolling => format!("publicapi:private-app:{PORTAL_ID}"),
            Policy::Daily => format!("publicapi:private-app-daily:{PORTAL_ID}"),
            Policy::Secondly => format!("publicapi:crm-search-secondly:{PORTAL_ID}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_message_embeds_a_json_array() {
        let errors = vec![PropError::new(
            "email",
            "INVALID_EMAIL",
            "Email address jane@ is invalid".into(),
        )];
        let message = property_values_message(&errors);
        let array = message
            .strip_prefix("Property values were not valid: ")
            .unwrap();
        let parsed: Value = serde_json::from_str(array).unwrap();
        assert_eq!(parsed[0]["isValid"], false);
        assert_eq!(parsed[0]["error"], "INVALID_EMAIL");
        assert_eq!(parsed[0]["name"], "email");
        assert_eq!(parsed[0]["message"], "Email address jane@ is invalid");
    }

    #[test]
    fn invalid_json_puts_position_first() {
        let err = serde_json::from_str::<Value>("{\"a\": }").unwrap_err();
        let api = ApiError::invalid_json(&err);
        let message = api.body["message"].as_str().unwrap();
        assert!(
            message.starts_with("Invalid input JSON on line 1, column 7: "),
            "{message}"
        );
        assert!(!message.contains(" at line "), "{message}");
        assert_eq!(api.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn correlation_ids_are_uuids() {
        let id = correlation_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4');
        assert_eq!(request_id().len(), 32);
    }
}
