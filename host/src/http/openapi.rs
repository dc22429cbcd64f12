//! The API's contract: an OpenAPI 3.1 document generated from the
//! handlers' `#[utoipa::path]` annotations (every route, its parameters,
//! the credential and scope it asks for, each answer and the one error
//! body), served at `GET /openapi.json` without a token (it holds no data).
//! A lead's schema derives from [`LeadField`], the one list of fields.

use axum::Json;
use axum::response::IntoResponse;
use utoipa::OpenApi;
use utoipa::openapi::schema::{AdditionalProperties, ArrayBuilder, ObjectBuilder, OneOfBuilder};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{RefOr, Schema, Type};

use super::{consent, destinations, dlq, erasure, keys, leads, read, webhooks};
use crate::pipeline::field::LeadField;

/// The shape of every error answer.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // Documents the wire format of `ApiError`.
pub struct ErrorAnswer {
    error: ErrorDetail,
}

/// One error: its code (one HTTP status each), a message for people, the
/// request field at fault, and further facts by code (`scope` for
/// `forbidden`, `retry_after_s`, `limit`, …).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ErrorDetail {
    code: super::ErrorCode,
    message: String,
    field: Option<String>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "leadgate",
        description = "A local CRM connector: ingest, clean, dedupe and deliver leads. \
                       Sources post leads with their API key; the admin API asks for an admin \
                       token with a scope (read, operate, admin), named in each operation's \
                       security requirement."
    ),
    paths(
        leads::post_leads,
        read::lead,
        read::person,
        read::plugins,
        read::stats,
        read::metrics,
        read::health,
        dlq::list,
        dlq::show,
        dlq::replay,
        dlq::discard,
        destinations::resume,
        keys::keys,
        keys::rotate,
        erasure::erase,
        consent::withdraw,
        webhooks::receive,
        openapi_json,
    ),
    components(schemas(ErrorAnswer, ErrorDetail)),
    modifiers(&Components),
    tags(
        (name = "ingest", description = "Posting leads (a source's API key)"),
        (name = "read", description = "Reading leads, persons, dead letters, plugins, stats (scope read)"),
        (name = "operate", description = "Acting on dead letters and destinations (scope operate)"),
        (name = "admin", description = "The store's keys and erasure (scope admin)"),
        (name = "webhooks", description = "CRM notifications, verified by the destination's adapter"),
        (name = "meta", description = "Health and this document"),
    )
)]
pub struct ApiDoc;

/// The security schemes and the lead schemas.
struct Components;

impl utoipa::Modify for Components {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "source_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A source's API key (`sources.NAME.api_key`): posts leads only.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An admin token (`auth.tokens.NAME`, or the generated one); each \
                         operation names the scope it needs. Without a token: 401; without the \
                         scope: 403 naming it.",
                    ))
                    .build(),
            ),
        );
    }
}

/// What `POST /v1/leads` takes, for the document: one lead or an array.
pub struct LeadPayloadDoc;

impl utoipa::PartialSchema for LeadPayloadDoc {
    fn schema() -> RefOr<Schema> {
        let lead = || RefOr::Ref(utoipa::openapi::Ref::from_schema_name("Lead"));
        RefOr::T(Schema::OneOf(
            OneOfBuilder::new()
                .item(lead())
                .item(ArrayBuilder::new().items(lead()).min_items(Some(1)).build())
                .description(Some(
                    "One lead, or an array of one lead or more (also accepted as NDJSON, one \
                     lead per line). A source with a transform plugin posts its own format instead.",
                ))
                .build(),
        ))
    }
}

impl utoipa::ToSchema for LeadPayloadDoc {
    fn name() -> std::borrow::Cow<'static, str> {
        "LeadPayload".into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        schemas.push(("Lead".into(), RefOr::T(lead_schema())));
    }
}

/// A lead as posted: the known fields (strings), any other key a custom
/// attribute.
fn lead_schema() -> Schema {
    let text = || {
        ObjectBuilder::new().schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::String,
            Type::Null,
        ]))
    };
    let mut lead = ObjectBuilder::new()
        .description(Some(
            "A lead. Every field is optional; a source's acceptance rule (default: an email or a \
             phone) decides which must be there. Other keys are kept as custom attributes.",
        ))
        .additional_properties(Some(AdditionalProperties::FreeForm(true)));
    for field in LeadField::posted() {
        lead = lead.property(field.posted_name().expect("a posted field"), text());
    }
    lead = lead.property(
        "consent",
        ObjectBuilder::new()
            .description(Some(
                "The consent given, the same as the flat consent_* fields: `basis` (a GDPR \
                 art. 6 lawful basis), `given_at` (RFC 3339 or a date), `text`, `version`, \
                 `collected_by`, `withdrawn_at`.",
            ))
            .property("basis", text())
            .property("given_at", text())
            .property("text", text())
            .property("version", text())
            .property("collected_by", text())
            .property("withdrawn_at", text())
            .additional_properties(Some(AdditionalProperties::FreeForm(false))),
    );
    Schema::Object(lead.build())
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json"))
)]
pub async fn openapi_json() -> axum::response::Response {
    Json(ApiDoc::openapi()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_document_with_its_credential() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        for (path, method, scheme, scope) in [
            ("/v1/leads", "post", "source_key", None),
            ("/v1/leads/{id}", "get", "admin_token", Some("read")),
            ("/v1/persons/{id}", "get", "admin_token", Some("read")),
            ("/v1/dead-letters", "get", "admin_token", Some("read")),
            ("/v1/dead-letters/{id}", "get", "admin_token", Some("read")),
            (
                "/v1/dead-letters/replay",
                "post",
                "admin_token",
                Some("operate"),
            ),
            (
                "/v1/dead-letters/discard",
                "post",
                "admin_token",
                Some("operate"),
            ),
            ("/v1/plugins", "get", "admin_token", Some("read")),
            ("/v1/stats", "get", "admin_token", Some("read")),
            ("/metrics", "get", "admin_token", Some("read")),
            (
                "/v1/destinations/{name}/resume",
                "post",
                "admin_token",
                Some("operate"),
            ),
        ] {
            let op = &paths[path][method];
            assert!(op.is_object(), "{method} {path} is documented");
            let security = &op["security"][0][scheme];
            assert!(security.is_array(), "{method} {path}: {op}");
            if let Some(scope) = scope {
                assert_eq!(security[0], scope, "{method} {path}");
                assert!(op["responses"]["401"].is_object(), "{method} {path}");
                assert!(op["responses"]["403"].is_object(), "{method} {path}");
            }
        }
        for open in ["/v1/health", "/v1/webhooks/{destination}", "/openapi.json"] {
            assert!(paths.contains_key(open), "{open}");
        }
        let lead = &doc["components"]["schemas"]["Lead"]["properties"];
        assert!(
            lead["email"].is_object() && lead["name"].is_object(),
            "{lead}"
        );
    }
}
