//! Dataverse's answers: the `{"error":{"code","message"}}` envelope with
//! the platform's hex codes and messages, the OData headers, and the
//! [`Answer`] a handler makes, which becomes either a whole HTTP response
//! or one part of a `$batch` answer.
//!
//! Where the messages come from (`shared/crm-apis.md` §4; Microsoft's
//! docs and the web service error code list, `powerapps-docs`
//! `developer/data-platform/includes/data-service-error-codes.md`):
//! `0x80040217` ObjectDoesNotExist "{table} With Id = {id} Does Not
//! Exist"; `0x80048d02` "A record with the specified key values does not
//! exist in {table} entity"; `0x80060892` DuplicateRecordEntityKey (412);
//! `0x80040333` DuplicateRecordsFound (500, documented as 500);
//! `0x80044331` the length error quoted in the `$batch` article;
//! `0x8004431a` an option value out of range; `0x80060890`
//! EntityKeyNotDefined; `0x80048d19` "Error identified in Payload …"
//! wrapping the OData reader's message (an unknown property, a wrong
//! type, unreadable JSON); `0x80060888` an unknown `$select`/`$filter`
//! column or a query syntax error; the three service protection codes
//! with the messages of the API limits article.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::schema::Table;

/// `Content-Type` of every JSON answer.
pub const JSON_TYPE: &str = "application/json; odata.metadata=minimal";
/// Where the `0x80048d19` message sends the reader.
const PAYLOAD_HELP: &str = "https://go.microsoft.com/fwlink/?linkid=2195293";

/// One Dataverse error: its status, hex code and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DvError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl DvError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> DvError {
        DvError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn body(&self) -> Value {
        json!({"error": {"code": self.code, "message": self.message}})
    }

    /// 404 `0x80040217`: no row with that id.
    pub fn not_found_id(table: Table, id: &str) -> DvError {
        DvError::new(
            StatusCode::NOT_FOUND,
            "0x80040217",
            format!("{} With Id = {id} Does Not Exist", table.logical_name()),
        )
    }

    /// 404 `0x80048d02`: no row with those alternate key values.
    pub fn not_found_key(table: Table) -> DvError {
        DvError::new(
            StatusCode::NOT_FOUND,
            "0x80048d02",
            format!(
                "A record with the specified key values does not exist in {} entity",
                table.logical_name()
            ),
        )
    }

    /// 400 `0x80048d19`: the OData reader refused the payload.
    pub fn payload(table: Table, inner: &str) -> DvError {
        DvError::new(
            StatusCode::BAD_REQUEST,
            "0x80048d19",
            format!(
                "Error identified in Payload provided by the user for Entity :'{}', For more information on this error please follow this help link {PAYLOAD_HELP}  ---->  InnerException : {inner}",
                table.entity_set()
            ),
        )
    }

    /// A body property the table does not have.
    pub fn unknown_property(table: Table, name: &str) -> DvError {
        DvError::payload(
            table,
            &format!(
                "Microsoft.OData.ODataException: The property '{name}' does not exist on type 'Microsoft.Dynamics.CRM.{}'. Make sure to only use property names that are defined by the type or mark the type as open type.",
                table.logical_name()
            ),
        )
    }

    /// `x@odata.bind` where `x` is no navigation property.
    pub fn undeclared_annotation(table: Table, name: &str) -> DvError {
        DvError::payload(
            table,
            &format!(
                "Microsoft.OData.ODataException: An undeclared property '{name}' which only has property annotations in the payload but no property value was found in the payload. In OData, only declared navigation properties and declared named streams can be represented as properties without values."
            ),
        )
    }

    /// A value the column's type cannot take.
    pub fn wrong_type(table: Table, literal: &str, edm: &str) -> DvError {
        DvError::payload(
            table,
            &format!(
                "Microsoft.OData.ODataException: Cannot convert the literal '{literal}' to the expected type '{edm}'."
            ),
        )
    }

    /// 400 `0x80044331`.
    pub fn too_long(table: Table, column: &str, max: usize) -> DvError {
        DvError::new(
            StatusCode::BAD_REQUEST,
            "0x80044331",
            format!(
                "A validation error occurred.  The length of the '{column}' attribute of the '{}' entity exceeded the maximum allowed length of '{max}'.",
                table.logical_name()
            ),
        )
    }

    /// 400 `0x8004431a`.
    pub fn out_of_range(table: Table, column: &str, value: &Value, allowed: &[i64]) -> DvError {
        let allowed: Vec<String> = allowed.iter().map(i64::to_string).collect();
        DvError::new(
            StatusCode::BAD_REQUEST,
            "0x8004431a",
            format!(
                "A validation error occurred. The value {value} of '{column}' on record of type '{}' is outside the valid range. Accepted Values: {}",
                table.logical_name(),
                allowed.join(",")
            ),
        )
    }

    /// 500 `0x80040333`: a duplicate detection rule matched (only with
    /// `MSCRM.SuppressDuplicateDetection: false`).
    pub fn duplicate_detected() -> DvError {
        DvError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "0x80040333",
            "A record was not created or updated because a duplicate of the current record already exists.",
        )
    }

    /// 412 `0x80060892`: another row holds these alternate key values.
    pub fn duplicate_key(key: &str, columns: &[String]) -> DvError {
        DvError::new(
            StatusCode::PRECONDITION_FAILED,
            "0x80060892",
            format!(
                "Entity Key {key} violated. A record with the same value for {} already exists. A duplicate record cannot be created. Select one or more unique values and try again.",
                columns.join(", ")
            ),
        )
    }

    /// 412: `If-None-Match: *` and the row exists.
    pub fn record_exists() -> DvError {
        DvError::new(
            StatusCode::PRECONDITION_FAILED,
            "0x80040237",
            "A record with matching key values already exists.",
        )
    }

    /// 412 `0x80060882`: `If-Match: W/"…"` names another version.
    pub fn version_mismatch() -> DvError {
        DvError::new(
            StatusCode::PRECONDITION_FAILED,
            "0x80060882",
            "The version of the existing record doesn't match the RowVersion property provided.",
        )
    }

    /// 400 `0x80060890`: the key predicate is no alternate key of the table.
    pub fn key_not_defined(table: Table) -> DvError {
        DvError::new(
            StatusCode::BAD_REQUEST,
            "0x80060890",
            format!(
                "The specified key attributes are not a defined key for the {} entity",
                table.logical_name()
            ),
        )
    }

    /// 400 `0x80060888`: a query names a column the table lacks.
    pub fn no_such_property(table: Table, name: &str) -> DvError {
        DvError::new(
            StatusCode::BAD_REQUEST,
            "0x80060888",
            format!(
                "Could not find a property named '{name}' on type 'Microsoft.Dynamics.CRM.{}'.",
                table.logical_name()
            ),
        )
    }

    /// 400 `0x80060888`: a query option that does not parse.
    pub fn syntax(position: usize, text: &str) -> DvError {
        DvError::new(
            StatusCode::BAD_REQUEST,
            "0x80060888",
            format!("Syntax error at position {position} in '{text}'."),
        )
    }

    /// 400 `0x80060888` for a key predicate or literal that does not parse.
    pub fn bad_query(message: impl Into<String>) -> DvError {
        DvError::new(StatusCode::BAD_REQUEST, "0x80060888", message)
    }

    /// 404 `0x0`: a URL segment that names nothing.
    pub fn segment(segment: &str) -> DvError {
        DvError::new(
            StatusCode::NOT_FOUND,
            "0x0",
            format!("Resource not found for the segment '{segment}'."),
        )
    }

    /// 405 for a verb the resource does not take.
    pub fn method(method: &str, resource: &str) -> DvError {
        DvError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "0x80060888",
            format!("The HTTP verb '{method}' is not supported on the resource '{resource}'."),
        )
    }

    /// 400 `0x0`: a `$batch` body that is no multipart batch.
    pub fn batch(message: impl Into<String>) -> DvError {
        DvError::new(StatusCode::BAD_REQUEST, "0x0", message)
    }

    /// 500 `0x80040216`: Dataverse's "unexpected error".
    pub fn unexpected() -> DvError {
        DvError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "0x80040216",
            "An unexpected error occurred.",
        )
    }
}

/// What one operation answers, before it becomes a response or a part.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<Value>,
}

impl Answer {
    pub fn json(status: StatusCode, body: Value) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: Some(body),
        }
    }

    pub fn empty(status: StatusCode) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: None,
        }
    }

    pub fn with(mut self, name: &'static str, value: impl Into<String>) -> Answer {
        self.headers.push((name, value.into()));
        self
    }

    pub fn is_success(&self) -> bool {
        self.status.is_success()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body text (compact JSON, as Dataverse sends it).
    pub fn body_text(&self) -> String {
        self.body.as_ref().map(Value::to_string).unwrap_or_default()
    }

    /// As a whole HTTP response.
    pub fn into_response(self) -> Response {
        let mut response = match &self.body {
            Some(body) => (
                self.status,
                [(header::CONTENT_TYPE, HeaderValue::from_static(JSON_TYPE))],
                body.to_string(),
            )
                .into_response(),
            None => self.status.into_response(),
        };
        let headers = response.headers_mut();
        headers.insert("odata-version", HeaderValue::from_static("4.0"));
        for (name, value) in self.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(&value),
            ) {
                headers.append(name, value);
            }
        }
        response
    }
}

impl From<DvError> for Answer {
    fn from(error: DvError) -> Answer {
        Answer::json(error.status, error.body())
    }
}

impl IntoResponse for DvError {
    fn into_response(self) -> Response {
        Answer::from(self).into_response()
    }
}

/// `W/"123"`.
pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// `{base}/api/data/v9.2/leads(guid)`.
pub fn entity_url(base: &str, version: &str, table: Table, id: &str) -> String {
    format!("{base}/api/data/{version}/{}({id})", table.entity_set())
}

/// `1,234,567`: how the service protection messages print numbers.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The 401 of a missing, unknown or expired token: no body, and
/// `WWW-Authenticate` naming the authority to get a token from.
pub fn unauthorized(base: &str, tenant: &str, presented: bool) -> Response {
    let authority =
        format!("authorization_uri={base}/{tenant}/oauth2/authorize, resource_id={base}/");
    let challenge = if presented {
        format!(
            "Bearer error=invalid_token, error_description=\"The access token expired\", {authority}"
        )
    } else {
        format!("Bearer {authority}")
    };
    let mut response = StatusCode::UNAUTHORIZED.into_response();
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
        .headers_mut()
        .insert("odata-version", HeaderValue::from_static("4.0"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_messages() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(6000), "6,000");
        assert_eq!(thousands(1_200_000), "1,200,000");
        let e = DvError::unknown_property(Table::Lead, "foo");
        assert_eq!(e.code, "0x80048d19");
        assert!(
            e.message.starts_with(
                "Error identified in Payload provided by the user for Entity :'leads'"
            )
        );
        assert!(
            e.message.contains(
                "The property 'foo' does not exist on type 'Microsoft.Dynamics.CRM.lead'."
            )
        );
        assert_eq!(
            DvError::not_found_id(Table::Contact, "x").message,
            "contact With Id = x Does Not Exist"
        );
        let a = Answer::from(DvError::duplicate_detected());
        assert_eq!(a.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(a.body.unwrap()["error"]["code"], "0x80040333");
    }
}
