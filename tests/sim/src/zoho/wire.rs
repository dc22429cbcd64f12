//! Zoho CRM's answer bodies (`shared/crm-apis.md` §5; Zoho's Insert,
//! Update, Upsert, Get and Search Records pages and status-codes page).
//!
//! Every error is `{"code","details","message","status":"error"}`: at the
//! top level for a whole-call error (auth, module, URL, method, limits), or
//! as one element of `data[]` for a record, aligned with the input. A
//! record that was written is `{"code":"SUCCESS","details":{id, times,
//! users},"message":"record added"|"record updated","status":"success"}`;
//! an upsert's adds `action` (`insert`/`update`) and `duplicate_field`
//! (the field that matched, `null` on insert).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::errors::json_response;

/// The org's one user: every record's owner, creator and modifier.
pub(crate) const USER_ID: &str = "5725767000000411001";
pub(crate) const USER_NAME: &str = "Sim Admin";
pub(crate) const USER_EMAIL: &str = "admin@sim.example";
const USER_ZUID: &str = "736078909";
/// The org's id and Zoho group id (what the SDKs key their token store by).
pub(crate) const ORG_ID: &str = "5725767000000000001";
pub(crate) const ORG_ZGID: &str = "736078911";

/// `{"name","id"}`: `Created_By` and `Modified_By`.
pub(crate) fn user() -> Value {
    json!({"name": USER_NAME, "id": USER_ID})
}

/// `Owner` as a record read gives it.
pub(crate) fn owner() -> Value {
    json!({"name": USER_NAME, "id": USER_ID, "email": USER_EMAIL})
}

/// One Zoho error.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ZohoError {
    /// The status of a whole-call answer made of this error alone.
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Map<String, Value>,
}

fn details(pairs: &[(&str, Value)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// `$.data[i].Field`.
pub(crate) fn json_path(index: usize, api_name: &str) -> String {
    format!("$.data[{index}].{api_name}")
}

impl ZohoError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: &str) -> ZohoError {
        ZohoError {
            status,
            code,
            message: message.to_owned(),
            details: Map::new(),
        }
    }

    pub(crate) fn with(mut self, pairs: &[(&str, Value)]) -> ZohoError {
        self.details.extend(details(pairs));
        self
    }

    pub(crate) fn body(&self) -> Value {
        json!({
            "code": self.code,
            "details": self.details,
            "message": self.message,
            "status": "error",
        })
    }

    /// 401 for an expired, revoked or unknown access token.
    pub(crate) fn invalid_token() -> ZohoError {
        ZohoError::new(
            StatusCode::UNAUTHORIZED,
            "INVALID_TOKEN",
            "invalid oauth token",
        )
    }

    /// 401 when no `Authorization: Zoho-oauthtoken …` header came.
    pub(crate) fn authentication_failure() -> ZohoError {
        ZohoError::new(
            StatusCode::UNAUTHORIZED,
            "AUTHENTICATION_FAILURE",
            "Authentication failed",
        )
    }

    /// 429: the org's concurrency limit, or its credits for the rolling
    /// 24 hours (Zoho's status-codes page gives both as 429
    /// `TOO_MANY_REQUESTS`; the message texts are the simulator's).
    pub(crate) fn too_many_requests(message: &str) -> ZohoError {
        ZohoError::new(StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_REQUESTS", message)
    }

    pub(crate) fn invalid_module(index: usize) -> ZohoError {
        ZohoError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_MODULE",
            "the module name given seems to be invalid",
        )
        .with(&[("resource_path_index", index.into())])
    }

    pub(crate) fn invalid_url_pattern() -> ZohoError {
        ZohoError::new(
            StatusCode::NOT_FOUND,
            "INVALID_URL_PATTERN",
            "Please check if the URL trying to access is a correct one",
        )
    }

    pub(crate) fn invalid_request_method() -> ZohoError {
        ZohoError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST_METHOD",
            "The http request method type is not a valid one",
        )
    }

    pub(crate) fn internal_error() -> ZohoError {
        ZohoError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "Internal Server Error",
        )
    }

    /// More than 100 records in one write.
    pub(crate) fn too_many_records(limit: usize) -> ZohoError {
        ZohoError::new(
            StatusCode::BAD_REQUEST,
            "LIMIT_EXCEEDED",
            "Record count exceeded",
        )
        .with(&[("limit", limit.into())])
    }

    /// A body that is not JSON (or not a JSON object).
    pub(crate) fn invalid_body() -> ZohoError {
        ZohoError::new(StatusCode::BAD_REQUEST, "INVALID_DATA", "body")
    }

    /// A body without `data` (or with an empty one).
    pub(crate) fn data_missing() -> ZohoError {
        ZohoError::new(
            StatusCode::BAD_REQUEST,
            "MANDATORY_NOT_FOUND",
            "required field not found",
        )
        .with(&[("api_name", "data".into()), ("json_path", "$.data".into())])
    }

    /// `data` that is not an array.
    pub(crate) fn data_not_array() -> ZohoError {
        ZohoError::new(StatusCode::BAD_REQUEST, "INVALID_DATA", "invalid data").with(&[
            ("expected_data_type", "jsonarray".into()),
            ("api_name", "data".into()),
            ("json_path", "$.data".into()),
        ])
    }

    pub(crate) fn required_param_missing(param: &str) -> ZohoError {
        ZohoError::new(
            StatusCode::BAD_REQUEST,
            "REQUIRED_PARAM_MISSING",
            "One of the expected parameter is missing",
        )
        .with(&[("param_name", param.into())])
    }

    /// A parameter whose value Zoho cannot use.
    pub(crate) fn invalid_param(param: &str, message: &str) -> ZohoError {
        ZohoError::new(StatusCode::BAD_REQUEST, "INVALID_DATA", message)
            .with(&[("param_name", param.into())])
    }

    /// A path id that is not a record id.
    pub(crate) fn invalid_path_id(index: usize) -> ZohoError {
        ZohoError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_DATA",
            "the id given seems to be invalid",
        )
        .with(&[("resource_path_index", index.into())])
    }

    // -- per-record errors ---------------------------------------------

    pub(crate) fn mandatory_not_found(index: usize, api_name: &str) -> ZohoError {
        ZohoError::new(
            StatusCode::BAD_REQUEST,
            "MANDATORY_NOT_FOUND",
            "required field not found",
        )
        .with(&[
            ("api_name", api_name.into()),
            ("json_path", json_path(index, api_name).into()),
        ])
    }

    /// `INVALID_DATA` for one field value; `extra` is
    /// `expected_data_type` or `maximum_length`.
    pub(crate) fn invalid_value(
        index: usize,
        api_name: &str,
        extra: Map<String, Value>,
    ) -> ZohoError {
        let mut error = ZohoError::new(StatusCode::BAD_REQUEST, "INVALID_DATA", "invalid data");
        error.details = extra;
        error.with(&[
            ("api_name", api_name.into()),
            ("json_path", json_path(index, api_name).into()),
        ])
    }

    /// An element of `data` that is not a JSON object.
    pub(crate) fn record_not_object(index: usize) -> ZohoError {
        ZohoError::new(StatusCode::BAD_REQUEST, "INVALID_DATA", "invalid data").with(&[
            ("expected_data_type", "jsonobject".into()),
            ("json_path", format!("$.data[{index}]").into()),
        ])
    }

    /// An update whose `id` is no record of the module.
    pub(crate) fn invalid_record_id(index: usize) -> ZohoError {
        ZohoError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_DATA",
            "the id given seems to be invalid",
        )
        .with(&[
            ("api_name", "id".into()),
            ("json_path", json_path(index, "id").into()),
        ])
    }

    /// A unique or duplicate-check field whose value another record of the
    /// module has.
    pub(crate) fn duplicate_data(
        index: usize,
        api_name: &str,
        module: &str,
        module_id: &str,
        existing_id: &str,
        more_records: bool,
    ) -> ZohoError {
        ZohoError::new(StatusCode::BAD_REQUEST, "DUPLICATE_DATA", "duplicate data").with(&[
            ("api_name", api_name.into()),
            ("json_path", json_path(index, api_name).into()),
            ("id", existing_id.into()),
            (
                "duplicate_record",
                json!({
                    "id": existing_id,
                    "module": {"api_name": module, "id": module_id},
                    "Owner": {"name": USER_NAME, "id": USER_ID, "zuid": USER_ZUID},
                }),
            ),
            ("more_records", more_records.into()),
        ])
    }

    /// Several fields of one record hold duplicate data.
    pub(crate) fn multiple_errors(errors: &[ZohoError]) -> ZohoError {
        ZohoError::new(
            StatusCode::BAD_REQUEST,
            "MULTIPLE_OR_MULTI_ERRORS",
            "Multiple errors in the request",
        )
        .with(&[(
            "errors",
            errors
                .iter()
                .map(ZohoError::body)
                .collect::<Vec<_>>()
                .into(),
        )])
    }

    /// `id` of `DELETE` that is no record of the module.
    pub(crate) fn not_deleted(id: &str) -> ZohoError {
        ZohoError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_DATA",
            "record not deleted",
        )
        .with(&[("id", id.into())])
    }
}

impl IntoResponse for ZohoError {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body())
    }
}

/// The `details` of a written record.
pub(crate) fn written_details(id: &str, created: &str, modified: &str, added: bool) -> Value {
    let mut details = json!({
        "Modified_Time": modified,
        "Modified_By": user(),
        "Created_Time": created,
        "id": id,
        "Created_By": user(),
    });
    if added {
        details["$approval_state"] = "approved".into();
    }
    details
}

/// One record's outcome in a write answer.
#[derive(Clone, Debug)]
pub(crate) enum Outcome {
    Written {
        details: Value,
        added: bool,
        /// `Some` for an upsert: the field that matched (`None` on insert).
        upsert: Option<Option<String>>,
    },
    Failed(ZohoError),
    /// A `DELETE`d record.
    Deleted(String),
}

impl Outcome {
    fn entry(&self) -> Value {
        match self {
            Outcome::Written {
                details,
                added,
                upsert,
            } => {
                let mut entry = json!({
                    "code": "SUCCESS",
                    "details": details,
                    "message": if *added { "record added" } else { "record updated" },
                    "status": "success",
                });
                if let Some(field) = upsert {
                    entry["action"] = if *added { "insert" } else { "update" }.into();
                    entry["duplicate_field"] = field.clone().map_or(Value::Null, Value::String);
                }
                entry
            }
            Outcome::Deleted(id) => json!({
                "code": "SUCCESS",
                "details": {"id": id},
                "message": "record deleted",
                "status": "success",
            }),
            Outcome::Failed(error) => error.body(),
        }
    }

    pub(crate) fn is_ok(&self) -> bool {
        !matches!(self, Outcome::Failed(_))
    }
}

/// `{"data":[…]}` aligned with the input: `ok` (201 for an insert, 200
/// otherwise) when every record succeeded, 207 when some did, 400 when
/// none did.
pub(crate) fn write_answer(outcomes: &[Outcome], ok: StatusCode) -> Response {
    let succeeded = outcomes.iter().filter(|o| o.is_ok()).count();
    let status = if succeeded == outcomes.len() {
        ok
    } else if succeeded == 0 {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::MULTI_STATUS
    };
    let data: Vec<Value> = outcomes.iter().map(Outcome::entry).collect();
    json_response(status, &json!({ "data": data }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_and_success_shapes() {
        assert_eq!(
            ZohoError::invalid_token().body(),
            json!({"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token", "status": "error"})
        );
        assert_eq!(
            ZohoError::mandatory_not_found(1, "Last_Name").body(),
            json!({"code": "MANDATORY_NOT_FOUND", "details": {"api_name": "Last_Name", "json_path": "$.data[1].Last_Name"}, "message": "required field not found", "status": "error"})
        );
        let dup = ZohoError::duplicate_data(0, "Email", "Leads", "9", "42", false).body();
        assert_eq!(dup["details"]["duplicate_record"]["id"], "42");
        assert_eq!(
            dup["details"]["duplicate_record"]["module"]["api_name"],
            "Leads"
        );
        let upsert = Outcome::Written {
            details: written_details("1", "t", "t", false),
            added: false,
            upsert: Some(Some("Email".into())),
        }
        .entry();
        assert_eq!(upsert["action"], "update");
        assert_eq!(upsert["duplicate_field"], "Email");
        assert_eq!(upsert["message"], "record updated");
        assert!(upsert["details"].get("$approval_state").is_none());
        let insert = Outcome::Written {
            details: written_details("1", "t", "t", true),
            added: true,
            upsert: Some(None),
        }
        .entry();
        assert_eq!(insert["duplicate_field"], Value::Null);
        assert_eq!(insert["action"], "insert");
    }
}
