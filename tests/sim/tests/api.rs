//! End-to-end tests of the simulator over real HTTP.

use std::time::{Duration, Instant};

use leadgate_sim::{FIRST_ID, Faults, SimConfig, SimHandle, Simulator};
use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

const V3: &str = "/crm/v3/objects/contacts";
const DATED: &str = "/crm/objects/2026-03/contacts";
const TOKEN: &str = "sim-token";

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|err| panic!("not JSON ({err}): {}", self.text))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn header_u64(&self, name: &str) -> u64 {
        self.header(name)
            .unwrap_or_else(|| panic!("missing header {name}"))
            .parse()
            .unwrap()
    }
}

/// A reqwest client. The workspace builds reqwest without a TLS crypto
/// provider, so one is installed first (plain HTTP still needs it).
fn client() -> Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::new()
}

struct Harness {
    sim: Simulator,
    client: Client,
}

impl Harness {
    async fn start() -> Harness {
        Self::with(SimConfig::default()).await
    }

    async fn with(config: SimConfig) -> Harness {
        let sim = Simulator::start(config).await.expect("simulator starts");
        Harness {
            sim,
            client: client(),
        }
    }

    fn handle(&self) -> SimHandle {
        self.sim.handle()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.sim.base_url(), path)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("request reaches the simulator");
        Reply {
            status: response.status(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.post_as(Some(TOKEN), path, body).await
    }

    async fn post_as(&self, token: Option<&str>, path: &str, body: Value) -> Reply {
        let mut request = self.client.post(self.url(path)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.send(self.client.get(self.url(path)).bearer_auth(TOKEN))
            .await
    }

    async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(
            self.client
                .patch(self.url(path))
                .bearer_auth(TOKEN)
                .json(&body),
        )
        .await
    }

    async fn control_post(&self, path: &str, body: Value) -> Reply {
        self.send(self.client.post(self.url(path)).json(&body))
            .await
    }

    async fn control_get(&self, path: &str) -> Reply {
        self.send(self.client.get(self.url(path))).await
    }
}

fn assert_uuid(value: &Value) {
    let text = value.as_str().expect("a string");
    assert_eq!(text.len(), 36, "{text}");
    assert_eq!(text.matches('-').count(), 4, "{text}");
}

fn assert_timestamp(value: &Value) {
    let text = value.as_str().expect("a string");
    assert_eq!(text.len(), 24, "{text}");
    assert!(text.ends_with('Z') && text.as_bytes()[19] == b'.', "{text}");
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
}

/// The JSON array HubSpot embeds in a validation error's message.
fn embedded_errors(body: &Value) -> Vec<Value> {
    let message = body["message"].as_str().unwrap();
    let array = message
        .strip_prefix("Property values were not valid: ")
        .unwrap_or_else(|| panic!("unexpected message {message}"));
    serde_json::from_str(array).unwrap()
}

fn upsert_input(email: &str, trace: &str, props: Value) -> Value {
    json!({"idProperty": "email", "id": email, "properties": props, "objectWriteTraceId": trace})
}

#[tokio::test]
async fn create_answers_201_then_409_naming_the_existing_id() {
    let h = Harness::start().await;
    let created = h
        .post(
            V3,
            json!({"properties": {"email": "Jane@Example.com", "firstname": "Jane", "lastname": "Doe"},
                   "associations": []}),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert!(
        created
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let body = created.json();
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(id, FIRST_ID.to_string());
    assert_eq!(body["properties"]["email"], "jane@example.com");
    assert_eq!(body["properties"]["firstname"], "Jane");
    assert_eq!(body["properties"]["hs_object_id"], id.as_str());
    assert_timestamp(&body["properties"]["createdate"]);
    assert_timestamp(&body["properties"]["lastmodifieddate"]);
    assert_timestamp(&body["createdAt"]);
    assert_timestamp(&body["updatedAt"]);
    assert_eq!(body["archived"], false);

    // same email, other case, other prefix
    let duplicate = h
        .post(DATED, json!({"properties": {"email": "JANE@example.COM"}}))
        .await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);
    let body = duplicate.json();
    assert_eq!(body["status"], "error");
    assert_eq!(body["category"], "CONFLICT");
    assert_eq!(
        body["message"],
        format!("Contact already exists. Existing ID: {id}")
    );
    assert_uuid(&body["correlationId"]);

    let second = h
        .post(V3, json!({"properties": {"email": "john@example.com"}}))
        .await;
    assert_eq!(second.json()["id"], (FIRST_ID + 1).to_string());

    let handle = h.handle();
    assert_eq!(handle.count_by_email("jane@EXAMPLE.com"), 1);
    assert_eq!(handle.contact_count(), 2);
    let stats = handle.stats();
    assert_eq!(stats.records_created, 2);
    assert_eq!(stats.by_status.get(&201), Some(&2));
    assert_eq!(stats.by_status.get(&409), Some(&1));
    assert_eq!(stats.requests_total, 3);
}

#[tokio::test]
async fn read_by_id_and_by_email_with_property_selection() {
    let h = Harness::start().await;
    let id = h
        .post(
            V3,
            json!({"properties": {"email": "ann@example.org", "firstname": "Ann", "city": "Bonn"}}),
        )
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // default property set: no city
    let read = h.get(&format!("{V3}/{id}")).await;
    assert_eq!(read.status, StatusCode::OK);
    let body = read.json();
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["properties"]["firstname"], "Ann");
    assert_eq!(body["properties"]["lastname"], Value::Null);
    assert!(body["properties"].get("city").is_none());

    let read = h
        .get(&format!(
            "{DATED}/ANN@example.org?idProperty=email&properties=city,phone"
        ))
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    let props = read.json()["properties"].clone();
    assert_eq!(props["city"], "Bonn");
    assert_eq!(props["phone"], Value::Null);
    assert_eq!(props["hs_object_id"], id.as_str());
    assert!(props.get("firstname").is_none());

    for missing in [
        format!("{V3}/999"),
        format!("{V3}/nobody@example.org?idProperty=email"),
        format!("{V3}/not-a-number"),
    ] {
        let reply = h.get(&missing).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{missing}");
        let body = reply.json();
        assert_eq!(body["category"], "OBJECT_NOT_FOUND");
        assert_eq!(
            body["message"],
            "Object not found.  objectId are usually numeric."
        );
    }
    let bad = h.get(&format!("{V3}/{id}?idProperty=firstname")).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.json()["category"], "VALIDATION_ERROR");
}

#[tokio::test]
async fn patch_updates_and_refuses_taking_another_contacts_email() {
    let h = Harness::start().await;
    let a = h
        .post(V3, json!({"properties": {"email": "a@example.com"}}))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = h
        .post(V3, json!({"properties": {"email": "b@example.com"}}))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let updated = h
        .patch(
            &format!("{V3}/{a}"),
            json!({"properties": {"firstname": "Alma"}}),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK);
    let body = updated.json();
    assert_eq!(body["properties"]["firstname"], "Alma");
    assert_eq!(body["properties"]["email"], "a@example.com");

    let by_email = h
        .patch(
            &format!("{DATED}/b@example.com?idProperty=email"),
            json!({"properties": {"lastname": "Berg"}}),
        )
        .await;
    assert_eq!(by_email.status, StatusCode::OK);
    assert_eq!(by_email.json()["id"], b.as_str());

    let conflict = h
        .patch(
            &format!("{V3}/{b}"),
            json!({"properties": {"email": "A@example.com"}}),
        )
        .await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    assert_eq!(
        conflict.json()["message"],
        format!("Contact already exists. Existing ID: {a}")
    );

    let missing = h
        .patch(
            &format!("{V3}/1"),
            json!({"properties": {"firstname": "X"}}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);

    let stats = h.handle().stats();
    assert_eq!(stats.records_updated, 2);
    assert_eq!(h.handle().count_by_email("a@example.com"), 1);
}

#[tokio::test]
async fn batch_upsert_creates_then_updates_one_record_per_email() {
    let h = Harness::start().await;
    let path = format!("{V3}/batch/upsert");
    let first = h
        .post(
            &path,
            json!({"inputs": [
                upsert_input("jane@x.com", "r1", json!({"firstname": "Jane"})),
                upsert_input("joe@x.com", "r2", json!({"firstname": "Joe", "lifecyclestage": "lead"})),
            ]}),
        )
        .await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text);
    let body = first.json();
    assert_eq!(body["status"], "COMPLETE");
    assert_timestamp(&body["startedAt"]);
    assert_timestamp(&body["completedAt"]);
    let results = body["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(|r| r["new"] == true));
    assert_eq!(results[0]["properties"]["email"], "jane@x.com");
    let jane_id = results[0]["id"].clone();

    let second = h
        .post(
            &path,
            json!({"inputs": [
                upsert_input("JANE@x.com", "r3", json!({"lastname": "Doe"})),
                upsert_input("new@x.com", "r4", json!({})),
            ]}),
        )
        .await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.text);
    let results = second.json()["results"].as_array().unwrap().clone();
    assert_eq!(results[0]["new"], false);
    assert_eq!(results[0]["id"], jane_id);
    // merged, not replaced
    assert_eq!(results[0]["properties"]["firstname"], "Jane");
    assert_eq!(results[0]["properties"]["lastname"], "Doe");
    assert_eq!(results[1]["new"], true);

    let handle = h.handle();
    assert_eq!(handle.contact_count(), 3);
    for email in ["jane@x.com", "joe@x.com", "new@x.com"] {
        assert_eq!(handle.count_by_email(email), 1, "{email}");
    }
    let stats = handle.stats();
    assert_eq!((stats.records_created, stats.records_updated), (3, 1));
}

#[tokio::test]
async fn batch_upsert_rejects_duplicate_ids_and_bad_id_properties() {
    let h = Harness::start().await;
    let path = format!("{DATED}/batch/upsert");
    let duplicate = h
        .post(
            &path,
            json!({"inputs": [
                upsert_input("jane@x.com", "r1", json!({})),
                upsert_input("Jane@X.com", "r2", json!({})),
            ]}),
        )
        .await;
    assert_eq!(duplicate.status, StatusCode::BAD_REQUEST);
    let body = duplicate.json();
    assert_eq!(body["category"], "VALIDATION_ERROR");
    assert_eq!(
        body["message"],
        "Duplicate IDs found in batch input: [Jane@X.com]"
    );

    let bad_property = h
        .post(
            &path,
            json!({"inputs": [{"idProperty": "phone", "id": "123", "properties": {}}]}),
        )
        .await;
    assert_eq!(bad_property.status, StatusCode::BAD_REQUEST);
    assert!(
        bad_property.json()["message"]
            .as_str()
            .unwrap()
            .contains("phone")
    );

    // per-input validation: 207 with trace ids, whole-call 400 without
    let partial = h
        .post(
            &path,
            json!({"inputs": [
                upsert_input("ok@x.com", "good", json!({"firstname": "Ok"})),
                upsert_input("bad@", "broken", json!({})),
            ]}),
        )
        .await;
    assert_eq!(partial.status, StatusCode::MULTI_STATUS, "{}", partial.text);
    let body = partial.json();
    assert_eq!(body["numErrors"], 1);
    assert_eq!(body["results"][0]["properties"]["email"], "ok@x.com");
    assert_eq!(
        body["errors"][0]["context"]["objectWriteTraceId"][0],
        "broken"
    );
    assert_eq!(body["errors"][0]["category"], "VALIDATION_ERROR");

    let whole = h
        .post(
            &path,
            json!({"inputs": [
                {"idProperty": "email", "id": "ok2@x.com", "properties": {}},
                {"idProperty": "email", "id": "ok3@x.com", "properties": {"lifecyclestage": "hot"}},
            ]}),
        )
        .await;
    assert_eq!(whole.status, StatusCode::BAD_REQUEST);
    let errors = embedded_errors(&whole.json());
    assert_eq!(errors[0]["error"], "INVALID_OPTION");
    assert_eq!(h.handle().count_by_email("ok2@x.com"), 0);
    assert_eq!(h.handle().contact_count(), 1);
}

#[tokio::test]
async fn batch_create_partial_failure_with_trace_ids_is_207() {
    let h = Harness::start().await;
    let existing = h
        .post(V3, json!({"properties": {"email": "taken@x.com"}}))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let reply = h
        .post(
            &format!("{V3}/batch/create"),
            json!({"inputs": [
                {"properties": {"email": "fresh@x.com"}, "objectWriteTraceId": "t1"},
                {"properties": {"email": "taken@x.com"}, "objectWriteTraceId": "t2"},
                {"properties": {"email": "broken@"}, "objectWriteTraceId": "t3"},
                {"properties": {"email": "other@x.com", "firstname": "O"}, "objectWriteTraceId": "t4"},
            ]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::MULTI_STATUS, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["status"], "COMPLETE");
    assert_eq!(body["numErrors"], 2);
    let results = body["results"].as_array().unwrap();
    let emails: Vec<&str> = results
        .iter()
        .map(|r| r["properties"]["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, vec!["fresh@x.com", "other@x.com"]);
    assert!(results.iter().all(|r| r.get("new").is_none()));

    let errors = body["errors"].as_array().unwrap();
    assert_eq!(errors[0]["status"], "error");
    assert_eq!(errors[0]["category"], "CONFLICT");
    assert_eq!(errors[0]["context"]["objectWriteTraceId"], json!(["t2"]));
    assert_eq!(
        errors[0]["message"],
        format!("Contact already exists. Existing ID: {existing}")
    );
    assert_eq!(errors[1]["category"], "VALIDATION_ERROR");
    assert_eq!(errors[1]["context"]["objectWriteTraceId"], json!(["t3"]));
    assert_eq!(embedded_errors(&errors[1])[0]["error"], "INVALID_EMAIL");
    assert_eq!(errors[1]["errors"][0]["in"], "email");

    assert_eq!(h.handle().contact_count(), 3);
    assert_eq!(h.handle().count_by_email("taken@x.com"), 1);
}

#[tokio::test]
async fn batch_create_without_trace_ids_fails_whole_call_on_first_error() {
    let h = Harness::start().await;
    let first = h
        .post(V3, json!({"properties": {"email": "one@x.com"}}))
        .await
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    h.post(V3, json!({"properties": {"email": "two@x.com"}}))
        .await;
    let path = format!("{V3}/batch/create");
    let reply = h
        .post(
            &path,
            json!({"inputs": [
                {"properties": {"email": "new@x.com"}},
                {"properties": {"email": "one@x.com"}},
                {"properties": {"email": "two@x.com"}},
            ]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CONFLICT);
    let body = reply.json();
    assert_eq!(body["category"], "CONFLICT");
    assert_eq!(
        body["message"],
        format!("Contact already exists. Existing ID: {first}")
    );
    assert!(body.get("results").is_none());
    assert_eq!(h.handle().count_by_email("new@x.com"), 0);

    // trace ids that are not unique do not enable multi-status either
    let reply = h
        .post(
            &path,
            json!({"inputs": [
                {"properties": {"email": "new@x.com"}, "objectWriteTraceId": "same"},
                {"properties": {"email": "bad@"}, "objectWriteTraceId": "same"},
            ]}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(h.handle().count_by_email("new@x.com"), 0);
    assert_eq!(h.handle().contact_count(), 2);

    // all good: 201
    let ok = h
        .post(
            &path,
            json!({"inputs": [{"properties": {"email": "new@x.com"}}, {"properties": {"email": "newer@x.com"}}]}),
        )
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    assert_eq!(ok.json()["results"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn validation_errors_carry_a_json_array_in_the_message() {
    let h = Harness::start().await;
    let reply = h
        .post(
            V3,
            json!({"properties": {
                "email": "jane@",
                "favourite_colour": "teal",
                "lifecyclestage": "prospect",
                "city": "Bonn ",
                "firstname": "Jane"
            }}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let body = reply.json();
    assert_eq!(body["status"], "error");
    assert_eq!(body["category"], "VALIDATION_ERROR");
    assert_uuid(&body["correlationId"]);
    let errors = embedded_errors(&body);
    let by_name = |name: &str| {
        errors
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no error for {name}: {errors:?}"))
            .clone()
    };
    let email = by_name("email");
    assert_eq!(email["isValid"], false);
    assert_eq!(email["error"], "INVALID_EMAIL");
    assert_eq!(email["message"], "Email address jane@ is invalid");
    assert_eq!(
        by_name("favourite_colour")["error"],
        "PROPERTY_DOESNT_EXIST"
    );
    assert_eq!(by_name("lifecyclestage")["error"], "INVALID_OPTION");
    assert_eq!(by_name("city")["error"], "LEADING_TRAILING_WHITESPACE");
    assert_eq!(errors.len(), 4);
    assert_eq!(h.handle().contact_count(), 0);

    for bad_email in ["jane doe@x.com", "jane@x", "@x.com"] {
        let reply = h
            .post(V3, json!({"properties": {"email": bad_email}}))
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{bad_email}");
        assert_eq!(embedded_errors(&reply.json())[0]["error"], "INVALID_EMAIL");
    }

    // a custom property defined at run time is accepted
    h.control_post("/_sim/properties", json!({"name": "shoe_size"}))
        .await;
    let reply = h
        .post(
            V3,
            json!({"properties": {"email": "s@x.com", "shoe_size": 44}}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
    assert_eq!(reply.json()["properties"]["shoe_size"], "44");
}

#[tokio::test]
async fn malformed_json_and_unknown_routes() {
    let h = Harness::start().await;
    let reply = h
        .send(
            h.client
                .post(h.url(V3))
                .bearer_auth(TOKEN)
                .header("content-type", "application/json")
                .body("{\"properties\": {\"email\": }"),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    let body = reply.json();
    assert_eq!(body["category"], "VALIDATION_ERROR");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with("Invalid input JSON on line 1, column 26: "),
        "{message}"
    );

    let missing_field = h.post(&format!("{V3}/batch/create"), json!({})).await;
    assert_eq!(missing_field.status, StatusCode::BAD_REQUEST);
    assert!(
        missing_field.json()["message"]
            .as_str()
            .unwrap()
            .contains("inputs")
    );

    let unknown = h.get("/crm/v3/objects/contactz/1/x").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let body = unknown.json();
    assert_eq!(body["status"], "error");
    assert_uuid(&body["correlationId"]);
    // API answers, even errors, carry the rate-limit headers
    assert_eq!(unknown.header_u64("x-hubspot-ratelimit-max"), 190);
    assert_eq!(h.handle().stats().by_status.get(&404), Some(&1));
}

#[tokio::test]
async fn missing_unknown_and_expired_tokens_answer_401() {
    let h = Harness::start().await;
    let body = json!({"properties": {"email": "a@x.com"}});

    let missing = h.post_as(None, V3, body.clone()).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    let json = missing.json();
    assert_eq!(json["category"], "INVALID_AUTHENTICATION");
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .starts_with("Authentication credentials not found")
    );
    assert_uuid(&json["correlationId"]);

    let unknown = h.post_as(Some("nope"), V3, body.clone()).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.json()["category"], "INVALID_AUTHENTICATION");

    h.handle().expire_tokens();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let expired = h.post(V3, body.clone()).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    let json = expired.json();
    assert_eq!(json["category"], "EXPIRED_AUTHENTICATION");
    let message = json["message"].as_str().unwrap();
    assert!(
        message.starts_with("The OAuth token used to make this call expired ")
            && message.ends_with(" second(s) ago."),
        "{message}"
    );
    let seconds: u64 = message
        .trim_start_matches("The OAuth token used to make this call expired ")
        .trim_end_matches(" second(s) ago.")
        .parse()
        .unwrap();
    assert!(seconds >= 1, "{message}");
    assert_eq!(h.handle().contact_count(), 0);

    // a fresh token over the control route works; the old one stays expired
    let added = h
        .control_post("/_sim/tokens", json!({"token": "fresh"}))
        .await;
    assert_eq!(added.status, StatusCode::OK);
    let ok = h.post_as(Some("fresh"), V3, body.clone()).await;
    assert_eq!(ok.status, StatusCode::CREATED);
    assert_eq!(
        h.post(V3, body.clone()).await.status,
        StatusCode::UNAUTHORIZED
    );

    // and expiring over HTTP
    let expired = h.control_post("/_sim/expire-tokens", json!({})).await;
    assert_eq!(expired.status, StatusCode::OK);
    let reply = h.post_as(Some("fresh"), V3, body).await;
    assert_eq!(reply.json()["category"], "EXPIRED_AUTHENTICATION");
    assert_eq!(h.handle().stats().by_status.get(&401), Some(&5));
}

#[tokio::test]
async fn burst_limit_answers_429_with_headers_and_the_window_recovers() {
    let h = Harness::with(SimConfig {
        burst_limit: 4,
        burst_window_ms: 1_000,
        ..SimConfig::default()
    })
    .await;
    for i in 0..4u64 {
        let reply = h
            .post(V3, json!({"properties": {"email": format!("u{i}@x.com")}}))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED);
        assert_eq!(reply.header_u64("x-hubspot-ratelimit-max"), 4);
        assert_eq!(reply.header_u64("x-hubspot-ratelimit-remaining"), 3 - i);
        assert_eq!(
            reply.header_u64("x-hubspot-ratelimit-interval-milliseconds"),
            1_000
        );
        assert_eq!(reply.header_u64("x-hubspot-ratelimit-daily"), 1_000_000);
        assert_eq!(
            reply.header_u64("x-hubspot-ratelimit-daily-remaining"),
            999_999 - i
        );
        assert!(reply.header("x-hubspot-ratelimit-secondly").is_some());
        assert!(
            reply
                .header("x-hubspot-ratelimit-secondly-remaining")
                .is_some()
        );
    }
    let limited = h
        .post(V3, json!({"properties": {"email": "over@x.com"}}))
        .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.header_u64("retry-after"), 1);
    assert_eq!(limited.header_u64("x-hubspot-ratelimit-remaining"), 0);
    assert_eq!(limited.header_u64("x-hubspot-ratelimit-max"), 4);
    let body = limited.json();
    assert_eq!(body["status"], "error");
    assert_eq!(
        body["message"],
        "You have reached your ten_secondly_rolling limit."
    );
    assert_eq!(body["errorType"], "RATE_LIMIT");
    assert_eq!(body["policyName"], "TEN_SECONDLY_ROLLING");
    assert!(
        body["groupName"]
            .as_str()
            .unwrap()
            .starts_with("publicapi:private-app:")
    );
    assert_uuid(&body["correlationId"]);
    assert_eq!(body["requestId"].as_str().unwrap().len(), 32);
    // a refused request writes nothing and uses no quota
    assert_eq!(h.handle().count_by_email("over@x.com"), 0);
    assert_eq!(
        limited.header_u64("x-hubspot-ratelimit-daily-remaining"),
        999_996
    );

    // the control routes are not limited
    for _ in 0..10 {
        assert_eq!(h.control_get("/_sim/stats").await.status, StatusCode::OK);
    }

    tokio::time::sleep(Duration::from_millis(1_050)).await;
    let again = h
        .post(V3, json!({"properties": {"email": "over@x.com"}}))
        .await;
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(again.header_u64("x-hubspot-ratelimit-remaining"), 3);

    let stats = h.handle().stats();
    assert_eq!(stats.rate_limited, 1);
    assert_eq!(stats.records_created, 5);
    assert_eq!(stats.requests_total, 6);
}

#[tokio::test]
async fn daily_quota_and_search_secondly_limit() {
    let h = Harness::with(SimConfig {
        daily_limit: 3,
        search_limit_per_sec: 2,
        ..SimConfig::default()
    })
    .await;
    let search = json!({"filterGroups": [], "limit": 1});
    let path = format!("{V3}/search");
    assert_eq!(h.post(&path, search.clone()).await.status, StatusCode::OK);
    let second = h.post(&path, search.clone()).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(second.header_u64("x-hubspot-ratelimit-secondly"), 2);
    assert_eq!(
        second.header_u64("x-hubspot-ratelimit-secondly-remaining"),
        0
    );
    let third = h.post(&path, search.clone()).await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(third.json()["policyName"], "SECONDLY");
    assert_eq!(third.header_u64("retry-after"), 1);

    assert_eq!(
        h.get(&format!("{V3}/1")).await.status,
        StatusCode::NOT_FOUND
    );
    let daily = h.get(&format!("{V3}/1")).await;
    assert_eq!(daily.status, StatusCode::TOO_MANY_REQUESTS);
    let body = daily.json();
    assert_eq!(body["policyName"], "DAILY");
    assert_eq!(body["message"], "You have reached your daily limit.");
    assert_eq!(daily.header_u64("x-hubspot-ratelimit-daily-remaining"), 0);
    let retry_after = daily.header_u64("retry-after");
    assert!((1..=86_400).contains(&retry_after), "{retry_after}");
}

#[tokio::test]
async fn injected_5xx_burst_rotates_gateway_errors() {
    let h = Harness::start().await;
    h.handle().set_faults(Faults {
        error_5xx_next: 3,
        ..Faults::default()
    });
    let body = json!({"properties": {"email": "a@x.com"}});
    let first = h.post(V3, body.clone()).await;
    assert_eq!(first.status, StatusCode::BAD_GATEWAY);
    assert!(
        first
            .header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(first.text.contains("502 Bad Gateway"));
    let second = h.post(V3, body.clone()).await;
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE);
    let third = h.post(V3, body.clone()).await;
    assert_eq!(third.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(third.json()["status"], "error");
    assert_eq!(h.handle().contact_count(), 0);
    assert_eq!(h.post(V3, body).await.status, StatusCode::CREATED);
    let stats = h.handle().stats();
    assert_eq!(stats.server_errors, 3);
    assert_eq!(stats.records_created, 1);
    assert_eq!(h.handle().faults().error_5xx_next, 0);
}

#[tokio::test]
async fn injected_429_storm_outage_and_latency_over_http() {
    let h = Harness::start().await;
    let set = h
        .control_post("/_sim/faults", json!({"rate_limit_next": 2}))
        .await;
    assert_eq!(set.status, StatusCode::OK);
    assert_eq!(set.json()["rate_limit_next"], 2);
    let body = json!({"properties": {"email": "a@x.com"}});
    for _ in 0..2 {
        let reply = h.post(V3, body.clone()).await;
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(reply.header_u64("retry-after"), 1);
        assert_eq!(reply.header_u64("x-hubspot-ratelimit-remaining"), 0);
        assert_eq!(reply.json()["policyName"], "TEN_SECONDLY_ROLLING");
    }
    assert_eq!(h.post(V3, body.clone()).await.status, StatusCode::CREATED);

    h.control_post("/_sim/faults", json!({"outage": true}))
        .await;
    for _ in 0..3 {
        let reply = h.get(&format!("{V3}/{FIRST_ID}")).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    }
    h.control_post("/_sim/faults", json!({"latency_ms": 150}))
        .await;
    let started = Instant::now();
    let reply = h.get(&format!("{V3}/{FIRST_ID}")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(150));
    let faults = h.control_get("/_sim/faults").await.json();
    assert_eq!(faults["latency_ms"], 150);
    assert_eq!(faults["outage"], false);

    let stats = h.handle().stats();
    assert_eq!(stats.rate_limited, 2);
    assert_eq!(stats.server_errors, 3);
    assert_eq!(stats.records_created, 1);
}

#[tokio::test]
async fn silently_failing_writes_answer_success_but_store_nothing() {
    let h = Harness::start().await;
    h.handle().set_faults(Faults {
        fail_silently_next: 2,
        ..Faults::default()
    });
    let created = h
        .post(V3, json!({"properties": {"email": "ghost@x.com"}}))
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let ghost_id = created.json()["id"].as_str().unwrap().to_owned();
    let batch = h
        .post(
            &format!("{V3}/batch/upsert"),
            json!({"inputs": [upsert_input("g1@x.com", "a", json!({})), upsert_input("g2@x.com", "b", json!({}))]}),
        )
        .await;
    assert_eq!(batch.status, StatusCode::OK);
    assert_eq!(batch.json()["results"].as_array().unwrap().len(), 2);
    assert_eq!(h.handle().contact_count(), 0);
    assert_eq!(
        h.get(&format!("{V3}/{ghost_id}")).await.status,
        StatusCode::NOT_FOUND
    );
    // the fault is used up: the next write sticks
    let real = h
        .post(V3, json!({"properties": {"email": "ghost@x.com"}}))
        .await;
    assert_eq!(real.status, StatusCode::CREATED);
    assert_eq!(h.handle().count_by_email("ghost@x.com"), 1);
    let stats = h.handle().stats();
    assert_eq!((stats.writes_dropped, stats.records_created), (3, 1));
}

#[tokio::test]
async fn search_by_email_with_paging() {
    let h = Harness::start().await;
    let inputs: Vec<Value> = (0..12)
        .map(|i| {
            upsert_input(
                &format!("p{i}@x.com"),
                &format!("t{i}"),
                json!({"company": if i % 2 == 0 { "Acme" } else { "Initech" }, "firstname": format!("P{i}")}),
            )
        })
        .collect();
    h.post(&format!("{V3}/batch/upsert"), json!({"inputs": inputs}))
        .await;
    let path = format!("{DATED}/search");
    let reply = h
        .post(
            &path,
            json!({"filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ", "value": "P3@X.COM"}]}],
                   "properties": ["email", "company"], "limit": 10}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["total"], 1);
    assert_eq!(body["results"][0]["properties"]["email"], "p3@x.com");
    assert_eq!(body["results"][0]["properties"]["company"], "Initech");
    assert!(body["results"][0]["properties"].get("firstname").is_none());
    assert!(body.get("paging").is_none());

    let none = h
        .post(
            &path,
            json!({"filterGroups": [{"filters": [{"propertyName": "email", "operator": "EQ", "value": "nobody@x.com"}]}]}),
        )
        .await
        .json();
    assert_eq!(none["total"], 0);
    assert_eq!(none["results"], json!([]));

    let acme = json!({"filterGroups": [{"filters": [{"propertyName": "company", "operator": "EQ", "value": "acme"}]}], "limit": 4});
    let page1 = h.post(&path, acme.clone()).await.json();
    assert_eq!(page1["total"], 6);
    assert_eq!(page1["results"].as_array().unwrap().len(), 4);
    assert_eq!(page1["paging"]["next"]["after"], "4");
    let mut next = acme;
    next["after"] = json!("4");
    let page2 = h.post(&path, next).await.json();
    assert_eq!(page2["results"].as_array().unwrap().len(), 2);
    assert!(page2.get("paging").is_none());

    let bad = h
        .post(
            &path,
            json!({"filterGroups": [{"filters": [{"propertyName": "email", "operator": "LIKE", "value": "x"}]}]}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn more_than_100_inputs_are_rejected() {
    let h = Harness::start().await;
    // one shape every batch endpoint accepts (unknown fields are ignored)
    let inputs: Vec<Value> = (0..101)
        .map(|i| {
            let email = format!("n{i}@x.com");
            json!({"id": email, "idProperty": "email", "properties": {"email": email},
                   "objectWriteTraceId": format!("t{i}")})
        })
        .collect();
    for endpoint in ["batch/create", "batch/upsert", "batch/update", "batch/read"] {
        let reply = h
            .post(&format!("{V3}/{endpoint}"), json!({"inputs": inputs}))
            .await;
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{endpoint}: {}",
            reply.text
        );
        let body = reply.json();
        assert_eq!(body["category"], "VALIDATION_ERROR", "{endpoint}");
        assert_eq!(
            body["message"],
            "The maximum number of inputs supported in a batch request is 100. Please reduce the number of items and try again",
            "{endpoint}"
        );
    }
    assert_eq!(h.handle().contact_count(), 0);

    let hundred = &inputs[..100];
    let ok = h
        .post(&format!("{V3}/batch/create"), json!({"inputs": hundred}))
        .await;
    assert_eq!(ok.status, StatusCode::CREATED);
    assert_eq!(h.handle().contact_count(), 100);
}

#[tokio::test]
async fn batch_read_and_update_report_missing_ids() {
    let h = Harness::start().await;
    let created = h
        .post(
            &format!("{V3}/batch/create"),
            json!({"inputs": [{"properties": {"email": "r1@x.com", "city": "Ulm"}}, {"properties": {"email": "r2@x.com"}}]}),
        )
        .await
        .json();
    let id1 = created["results"][0]["id"].as_str().unwrap().to_owned();
    let id2 = created["results"][1]["id"].as_str().unwrap().to_owned();

    let read = h
        .post(
            &format!("{V3}/batch/read"),
            json!({"inputs": [{"id": id1}, {"id": "1"}], "properties": ["city"]}),
        )
        .await;
    assert_eq!(read.status, StatusCode::MULTI_STATUS);
    let body = read.json();
    assert_eq!(body["results"][0]["properties"]["city"], "Ulm");
    assert_eq!(body["numErrors"], 1);
    assert_eq!(body["errors"][0]["category"], "OBJECT_NOT_FOUND");
    assert_eq!(body["errors"][0]["context"]["ids"], json!(["1"]));

    let by_email = h
        .post(
            &format!("{DATED}/batch/read"),
            json!({"idProperty": "email", "inputs": [{"id": "R2@x.com"}], "properties": []}),
        )
        .await;
    assert_eq!(by_email.status, StatusCode::OK);
    assert_eq!(by_email.json()["results"][0]["id"], id2.as_str());

    let update = h
        .post(
            &format!("{V3}/batch/update"),
            json!({"inputs": [{"id": id1, "properties": {"city": "Köln"}}, {"id": id2, "properties": {"firstname": "Ro"}}]}),
        )
        .await;
    assert_eq!(update.status, StatusCode::OK);
    assert_eq!(update.json()["results"][0]["properties"]["city"], "Köln");

    let partial = h
        .post(
            &format!("{V3}/batch/update"),
            json!({"inputs": [{"id": id1, "properties": {"city": "Bonn"}}, {"id": "42", "properties": {"city": "Bonn"}}]}),
        )
        .await;
    assert_eq!(partial.status, StatusCode::MULTI_STATUS);
    let body = partial.json();
    assert_eq!(body["results"].as_array().unwrap().len(), 1);
    assert_eq!(body["errors"][0]["category"], "OBJECT_NOT_FOUND");
    assert_eq!(body["errors"][0]["context"]["ids"], json!(["42"]));

    let duplicate = h
        .post(
            &format!("{V3}/batch/update"),
            json!({"inputs": [{"id": id1, "properties": {}}, {"id": id1, "properties": {}}]}),
        )
        .await;
    assert_eq!(duplicate.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        duplicate.json()["message"],
        format!("Duplicate IDs found in batch input: [{id1}]")
    );
}

#[tokio::test]
async fn control_routes_report_and_reset() {
    let h = Harness::start().await;
    h.post(
        V3,
        json!({"properties": {"email": "c@x.com", "firstname": "C"}}),
    )
    .await;
    h.post(V3, json!({"properties": {"email": "c@x.com"}}))
        .await;

    let stats = h.control_get("/_sim/stats").await;
    assert_eq!(stats.status, StatusCode::OK);
    let body = stats.json();
    assert_eq!(body["contacts"], 1);
    assert_eq!(body["requests_total"], 2);
    assert_eq!(body["by_status"]["201"], 1);
    assert_eq!(body["by_status"]["409"], 1);
    assert_eq!(body["records_created"], 1);

    let found = h.control_get("/_sim/contacts?email=C%40X.com").await.json();
    assert_eq!(found["count"], 1);
    assert_eq!(found["results"][0]["properties"]["firstname"], "C");
    assert_eq!(found["results"][0]["id"], FIRST_ID.to_string());
    let contacts: Vec<leadgate_sim::Contact> =
        serde_json::from_value(found["results"].clone()).unwrap();
    assert_eq!(contacts[0].email(), Some("c@x.com"));
    assert_eq!(contacts, h.handle().contacts());

    let none = h.control_get("/_sim/contacts?email=zz@x.com").await.json();
    assert_eq!(none["count"], 0);

    // The create log counts creates: an upsert of c@x.com updates, one of
    // a second address for the same person creates a second record.
    h.post(
        &format!("{V3}/batch/upsert"),
        json!({"inputs": [
            {"idProperty": "email", "id": "c@x.com", "properties": {"phone": "+1 415 555 0100"}},
            {"idProperty": "email", "id": "c.other@x.com", "properties": {"phone": "+1 415 555 0100"}},
        ]}),
    )
    .await;
    let creates = h
        .control_get("/_sim/creates?crm=hubspot&email=c@x.com,c.other@x.com")
        .await
        .json();
    assert_eq!(creates["count"], 2, "{creates}");
    assert_eq!(creates["results"][0]["emails"], json!(["c@x.com"]));
    assert_eq!(creates["results"][0]["id"], FIRST_ID.to_string());
    assert_eq!(creates["results"][1]["phones"], json!(["+1 415 555 0100"]));
    let by_phone = h
        .control_get("/_sim/creates?phone=%2B14155550100")
        .await
        .json();
    assert_eq!(by_phone["count"], 1, "{by_phone}");
    assert_eq!(
        h.handle()
            .creates(Some(leadgate_sim::Crm::Pipedrive), &["c@x.com"], &[]),
        []
    );
    assert_eq!(
        h.control_get("/_sim/creates?crm=freshsales").await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(h.control_get("/_sim/stats").await.json()["in_flight"], 0);

    let bad = h
        .control_post("/_sim/faults", json!({"outage": "yes"}))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    h.handle().set_faults(Faults {
        latency_ms: 5,
        ..Faults::default()
    });
    let reset = h.control_post("/_sim/reset", json!({})).await;
    assert_eq!(reset.status, StatusCode::OK);
    let handle = h.handle();
    assert_eq!(handle.contact_count(), 0);
    assert_eq!(handle.stats(), leadgate_sim::SimStats::default());
    assert_eq!(handle.faults(), Faults::default());
    assert_eq!(h.control_get("/_sim/stats").await.json()["contacts"], 0);
    assert_eq!(h.control_get("/_sim/creates").await.json()["count"], 0);
}

#[tokio::test]
async fn batches_of_100_upserts_update_every_record() {
    let h = Harness::with(SimConfig {
        burst_limit: u32::MAX,
        ..SimConfig::default()
    })
    .await;
    let path = format!("{V3}/batch/upsert");
    let batch = |round: usize| {
        let inputs: Vec<Value> = (0..100)
            .map(|i| {
                upsert_input(
                    &format!("lead{i}@example.com"),
                    &format!("r{round}-{i}"),
                    json!({"firstname": format!("Lead{i}"), "lastname": "Test", "company": "Acme",
                           "phone": "+4930123456", "lifecyclestage": "lead", "leadgate_id": format!("lg-{round}-{i}")}),
                )
            })
            .collect::<Vec<_>>();
        json!({ "inputs": inputs })
    };
    // warm up
    assert_eq!(h.post(&path, batch(0)).await.status, StatusCode::OK);
    let rounds = 20;
    let bodies: Vec<Value> = (1..=rounds).map(batch).collect();
    let started = Instant::now();
    for body in bodies {
        let reply = h.post(&path, body).await;
        assert_eq!(reply.status, StatusCode::OK);
    }
    // A figure to read, not a bound (speed belongs in benchmarks).
    let per_batch = started.elapsed() / rounds as u32;
    eprintln!("batch upsert of 100 over HTTP: {per_batch:?} per call");
    assert_eq!(h.handle().contact_count(), 100);
    assert_eq!(h.handle().stats().records_updated, 100 * rounds as u64);
}

#[tokio::test]
async fn shutdown_and_drop_stop_the_server() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let url = format!("{}/_sim/stats", sim.base_url());
    let http = client();
    assert_eq!(
        http.get(&url).send().await.unwrap().status(),
        StatusCode::OK
    );
    sim.shutdown().await;
    assert!(client().get(&url).send().await.is_err());

    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let url = format!("{}/_sim/stats", sim.base_url());
    drop(sim);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(client().get(&url).send().await.is_err());
}

#[tokio::test]
async fn the_binary_prints_its_address_and_serves() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_crm-sim"))
        .args(["--token", "bin-token", "--burst", "7"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("crm-sim starts");
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("crm-sim prints in time")
        .unwrap()
        .unwrap();
    let base = line
        .strip_prefix("crm-sim listening on ")
        .unwrap_or_else(|| panic!("unexpected line {line}"));
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    let reply = client()
        .post(format!("{base}{V3}"))
        .bearer_auth("bin-token")
        .json(&json!({"properties": {"email": "bin@x.com"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::CREATED);
    assert_eq!(reply.headers()["x-hubspot-ratelimit-max"], "7");
    child.kill().await.unwrap();
}

/// Pipedrive's `GET /api/v2/persons`: pages in id order, an opaque
/// `next_cursor` until the last page, `ids` and `sort_direction` filters,
/// limits checked.
#[tokio::test]
async fn pipedrive_lists_persons_page_by_page() {
    let h = Harness::start().await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let r = h
            .post(
                "/api/v2/persons",
                json!({"name": format!("Person {i}"), "emails": [{"value": format!("p{i}@example.com"), "primary": true}]}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        ids.push(r.json()["data"]["id"].as_u64().unwrap());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v2/persons?limit=3&cursor={c}"),
            None => "/api/v2/persons?limit=3".to_string(),
        };
        let r = h.get(&path).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let body = r.json();
        assert_eq!(body["success"], true);
        pages += 1;
        for p in body["data"].as_array().unwrap() {
            seen.push(p["id"].as_u64().unwrap());
            assert!(
                p["emails"][0]["value"]
                    .as_str()
                    .unwrap()
                    .ends_with("@example.com")
            );
        }
        match body["additional_data"]["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!((pages, &seen), (3, &ids));

    let r = h.get("/api/v2/persons?sort_direction=desc&limit=2").await;
    let first: Vec<u64> = r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_u64().unwrap())
        .collect();
    assert_eq!(first, vec![ids[6], ids[5]]);

    let r = h
        .get(&format!("/api/v2/persons?ids={},{}", ids[1], ids[4]))
        .await;
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 2);
    assert!(r.json()["additional_data"]["next_cursor"].is_null());

    for bad in [
        "limit=0",
        "limit=501",
        "cursor=nonsense",
        "sort_direction=up",
    ] {
        let r = h.get(&format!("/api/v2/persons?{bad}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
        assert_eq!(r.json()["success"], false);
    }
}

#[tokio::test]
async fn gdpr_delete_removes_for_good_by_id_or_email() {
    let h = Harness::start().await;
    let make = async |email: &str| {
        let reply = h
            .post(
                V3,
                json!({"properties": {"email": email}, "associations": []}),
            )
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.text);
        reply.json()["id"].as_str().unwrap().to_owned()
    };
    let (one, two) = (make("one@example.com").await, make("two@example.com").await);
    let gdpr = format!("{V3}/gdpr-delete");
    let by_id = h.post(&gdpr, json!({"objectId": one})).await;
    assert_eq!(by_id.status, StatusCode::NO_CONTENT, "{}", by_id.text);
    assert!(by_id.text.is_empty(), "no body");
    assert!(h.handle().contact(&one).is_none());
    assert_eq!(
        h.get(&format!("{V3}/{one}")).await.status,
        StatusCode::NOT_FOUND
    );
    // Again: the id is gone.
    let again = h.post(&gdpr, json!({"objectId": one})).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{}", again.text);
    assert_eq!(again.json()["category"], "OBJECT_NOT_FOUND");
    // By email; an unknown email is still 204 (HubSpot blocklists it).
    let by_email = h
        .post(
            &gdpr,
            json!({"objectId": "TWO@example.com", "idProperty": "email"}),
        )
        .await;
    assert_eq!(by_email.status, StatusCode::NO_CONTENT, "{}", by_email.text);
    assert!(h.handle().contact(&two).is_none());
    let unknown = h
        .post(
            &gdpr,
            json!({"objectId": "nobody@example.com", "idProperty": "email"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NO_CONTENT);
    let bad = h
        .post(&gdpr, json!({"objectId": "x", "idProperty": "firstname"}))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
    let unauthenticated = h.post_as(None, &gdpr, json!({"objectId": two})).await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
}
