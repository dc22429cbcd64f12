//! The Zoho CRM personality over real HTTP: the paths, headers and JSON a
//! Zoho client (the official SDKs, an adapter) uses.

mod common;

use leadgate_sim::{
    Crm, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_REFRESH_TOKEN, Faults, SimConfig,
    SimHandle, Simulator, Vendor, ZohoLimits,
};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use common::Reply;

const TOKEN: &str = "sim-token";
const V: &str = "/crm/v8";

struct Zoho {
    sim: Simulator,
    client: Client,
}

impl Zoho {
    async fn start() -> Zoho {
        Self::with(SimConfig::default()).await
    }

    async fn with(config: SimConfig) -> Zoho {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Zoho {
            sim: Simulator::start(config).await.expect("simulator starts"),
            client: Client::new(),
        }
    }

    fn handle(&self) -> SimHandle {
        self.sim.handle()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sim.base_url())
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        Reply::of(request).await
    }

    async fn call_as(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        auth: Option<&str>,
    ) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        let auth = format!("Zoho-oauthtoken {TOKEN}");
        self.call_as(method, &format!("{V}{path}"), body, Some(&auth))
            .await
    }

    async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn put(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PUT, path, Some(body)).await
    }

    /// Inserts one lead and returns its id.
    async fn lead(&self, email: &str) -> String {
        let reply = self
            .post(
                "/Leads",
                json!({"data": [{"Last_Name": "Doe", "First_Name": "Jane", "Company": "Acme", "Email": email}]}),
            )
            .await
            .expect(StatusCode::CREATED);
        reply.json()["data"][0]["details"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A fresh access token from Zoho Accounts (parameters in the query
    /// string, as Zoho documents the refresh).
    async fn oauth_token(&self) -> String {
        let url = self.url(&format!(
            "/oauth/v2/token?refresh_token={DEFAULT_REFRESH_TOKEN}&client_id={DEFAULT_CLIENT_ID}&client_secret={DEFAULT_CLIENT_SECRET}&grant_type=refresh_token"
        ));
        let response = self.client.post(url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["expires_in"], 3600);
        assert_eq!(body["api_domain"], json!(self.sim.base_url()));
        body["access_token"].as_str().unwrap().to_owned()
    }
}

fn lead(last: &str, email: &str) -> Value {
    json!({"Last_Name": last, "Company": "Acme", "Email": email})
}

#[tokio::test]
async fn insert_answers_201_and_the_record_reads_back() {
    let z = Zoho::start().await;
    let reply = z
        .post(
            "/Leads",
            json!({"data": [{"First_Name": "Jane", "Last_Name": "Doe", "Company": "Acme", "Email": "jane@example.com", "Phone": "+1 415 555 0100", "Leadgate_Id": "lg-1", "Not_A_Field": "x"}], "trigger": ["workflow"]}),
        )
        .await
        .expect(StatusCode::CREATED);
    assert!(
        reply
            .header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let body = reply.json();
    let entry = &body["data"][0];
    assert_eq!(entry["code"], "SUCCESS");
    assert_eq!(entry["message"], "record added");
    assert_eq!(entry["status"], "success");
    let details = &entry["details"];
    let id = details["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 19);
    assert!(id.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(details["Created_Time"], details["Modified_Time"]);
    assert_eq!(details["Created_By"]["name"], "Sim Admin");
    assert_eq!(details["$approval_state"], "approved");
    assert!(entry.get("action").is_none(), "only upserts say action");

    let read = z
        .get(&format!("/Leads/{id}"))
        .await
        .expect(StatusCode::OK)
        .json();
    let record = &read["data"][0];
    assert_eq!(record["id"], json!(id));
    assert_eq!(record["Email"], "jane@example.com");
    assert_eq!(record["Full_Name"], "Jane Doe");
    assert_eq!(record["Owner"]["id"], details["Created_By"]["id"]);
    assert!(record["Created_Time"].as_str().unwrap().ends_with("+00:00"));
    assert_eq!(
        record["Designation"],
        Value::Null,
        "unset fields read as null"
    );
    assert!(
        record.get("Not_A_Field").is_none(),
        "unknown keys are ignored"
    );
    let some = z
        .get(&format!("/Leads/{id}?fields=Email,Last_Name"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        some["data"][0],
        json!({"id": id, "Email": "jane@example.com", "Last_Name": "Doe"})
    );

    let h = z.handle();
    assert_eq!(h.zoho_count_by_email("Leads", "JANE@example.com"), 1);
    assert_eq!(
        h.zoho_record(&id).unwrap().text("Leadgate_Id"),
        Some("lg-1")
    );
    let creates = h.creates(Some(Crm::Zoho), &["jane@example.com"], &[]);
    assert_eq!(creates.len(), 1);
    assert_eq!(creates[0].phones, ["+1 415 555 0100"]);
    assert_eq!(h.stats().records_created, 1);

    // A contact: another module, same email allowed.
    let contact = z
        .post(
            "/Contacts",
            json!({"data": [{"Last_Name": "Doe", "Email": "jane@example.com", "Mailing_City": "Oslo"}]}),
        )
        .await
        .expect(StatusCode::CREATED);
    let contact_id = contact.json()["data"][0]["details"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(h.zoho_records("contacts").len(), 1);
    // A lead id read as a contact is no content.
    let wrong = z.get(&format!("/Contacts/{id}")).await;
    assert_eq!(wrong.status, StatusCode::NO_CONTENT);
    assert!(wrong.text.is_empty());
    z.get(&format!("/Contacts/{contact_id}"))
        .await
        .expect(StatusCode::OK);
}

#[tokio::test]
async fn upsert_inserts_then_updates_the_same_record() {
    let z = Zoho::start().await;
    let first = z
        .post(
            "/Leads/upsert",
            json!({"data": [lead("Doe", "jane@example.com")]}),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    let entry = &first["data"][0];
    assert_eq!(entry["action"], "insert");
    assert_eq!(entry["duplicate_field"], Value::Null);
    assert_eq!(entry["message"], "record added");
    let id = entry["details"]["id"].as_str().unwrap().to_owned();

    let second = z
        .post(
            "/Leads/upsert",
            json!({"data": [{"Last_Name": "Doe-Smith", "Email": "JANE@example.com", "City": "Oslo"}]}),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    let entry = &second["data"][0];
    assert_eq!(entry["code"], "SUCCESS");
    assert_eq!(entry["action"], "update");
    assert_eq!(entry["duplicate_field"], "Email");
    assert_eq!(entry["message"], "record updated");
    assert_eq!(entry["details"]["id"], json!(id));
    assert!(entry["details"].get("$approval_state").is_none());

    let h = z.handle();
    assert_eq!(h.zoho_records("Leads").len(), 1, "no second record");
    let record = h.zoho_record(&id).unwrap();
    assert_eq!(record.text("Last_Name"), Some("Doe-Smith"));
    assert_eq!(
        record.text("Company"),
        Some("Acme"),
        "untouched fields stay"
    );
    assert_eq!(record.text("City"), Some("Oslo"));
    assert_eq!(
        h.creates(Some(Crm::Zoho), &["jane@example.com"], &[]).len(),
        1
    );
    assert_eq!(h.stats().records_updated, 1);
}

#[tokio::test]
async fn upsert_by_a_unique_field_and_its_collisions() {
    let z = Zoho::start().await;
    let h = z.handle();
    // Keyed by Leadgate_Id: a changed email updates the same record.
    let by_key = |email: &str| json!({"data": [{"Last_Name": "Doe", "Email": email, "Leadgate_Id": "lg-1"}], "duplicate_check_fields": ["Leadgate_Id"]});
    let first = z
        .post("/Leads/upsert", by_key("a@x.io"))
        .await
        .expect(StatusCode::OK)
        .json();
    let id = first["data"][0]["details"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let second = z
        .post("/Leads/upsert", by_key("b@x.io"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(second["data"][0]["action"], "update");
    assert_eq!(second["data"][0]["duplicate_field"], "Leadgate_Id");
    assert_eq!(h.zoho_record(&id).unwrap().email(), Some("b@x.io"));

    // Without duplicate_check_fields Email comes first, then the unique
    // fields: a record whose email is another's and whose key is taken
    // by a third is refused on the key.
    let other = z.lead("c@x.io").await;
    let clash = z
        .post(
            "/Leads/upsert",
            json!({"data": [{"Last_Name": "Roe", "Email": "c@x.io", "Leadgate_Id": "lg-1"}]}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    let error = &clash["data"][0];
    assert_eq!(error["code"], "DUPLICATE_DATA");
    assert_eq!(error["status"], "error");
    assert_eq!(error["details"]["api_name"], "Leadgate_Id");
    assert_eq!(error["details"]["json_path"], "$.data[0].Leadgate_Id");
    assert_eq!(error["details"]["duplicate_record"]["id"], json!(id));
    assert_ne!(id, other);

    // A field that is not a duplicate-check field may not be asked for.
    let bad = z
        .post(
            "/Leads/upsert",
            json!({"data": [lead("Doe", "d@x.io")], "duplicate_check_fields": ["City"]}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(bad["code"], "INVALID_DATA");
    assert_eq!(bad["details"]["json_path"], "$.duplicate_check_fields[0]");

    // A field defined unique later joins the check.
    assert!(h.define_zoho_field("Leads", "Crm_Key", true));
    assert!(!h.define_zoho_field("Deals", "Crm_Key", true));
    let keyed = z
        .post(
            "/Leads/upsert",
            json!({"data": [{"Last_Name": "K", "Crm_Key": "k1"}], "duplicate_check_fields": ["Crm_Key"]}),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(keyed["data"][0]["action"], "insert");
    let again = z
        .post(
            "/Leads/upsert",
            json!({"data": [{"Last_Name": "K2", "Crm_Key": "K1"}], "duplicate_check_fields": ["Crm_Key"]}),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(again["data"][0]["duplicate_field"], "Crm_Key");
}

#[tokio::test]
async fn partial_failure_is_207_with_errors_naming_the_field() {
    let z = Zoho::start().await;
    let reply = z
        .post(
            "/Leads",
            json!({"data": [
                lead("Ok", "ok@x.io"),
                {"First_Name": "No", "Email": "no-last@x.io"},
                {"Last_Name": "Bad", "Email": "not-an-email"},
                {"Last_Name": 42},
                {"Last_Name": "x".repeat(81)},
            ]}),
        )
        .await
        .expect(StatusCode::MULTI_STATUS);
    let data = reply.json()["data"].as_array().unwrap().clone();
    assert_eq!(data.len(), 5, "one entry per input record");
    assert_eq!(data[0]["code"], "SUCCESS");
    assert_eq!(
        data[1],
        json!({"code": "MANDATORY_NOT_FOUND", "details": {"api_name": "Last_Name", "json_path": "$.data[1].Last_Name"}, "message": "required field not found", "status": "error"})
    );
    assert_eq!(
        data[2],
        json!({"code": "INVALID_DATA", "details": {"api_name": "Email", "json_path": "$.data[2].Email", "expected_data_type": "email"}, "message": "invalid data", "status": "error"})
    );
    assert_eq!(data[3]["details"]["expected_data_type"], "text");
    assert_eq!(data[4]["details"]["maximum_length"], 80);
    let h = z.handle();
    assert_eq!(h.zoho_records("Leads").len(), 1);

    // All failed: 400, still the per-record array.
    let all_bad = z
        .post(
            "/Leads",
            json!({"data": [{"First_Name": "A"}, {"First_Name": "B"}]}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(all_bad["data"].as_array().unwrap().len(), 2);
    assert_eq!(
        all_bad["data"][1]["details"]["json_path"],
        "$.data[1].Last_Name"
    );

    // Company is mandatory only with the standard layout named.
    let layout = z
        .post(
            "/Leads",
            json!({"data": [{"Last_Name": "L", "Layout": {"id": "5725767000000091055"}}]}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(layout["data"][0]["details"]["api_name"], "Company");
}

#[tokio::test]
async fn duplicate_email_on_insert_names_the_existing_record() {
    let z = Zoho::start().await;
    let existing = z.lead("jane@example.com").await;
    let reply = z
        .post(
            "/Leads",
            json!({"data": [lead("Again", "Jane@Example.com")]}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    let error = &reply["data"][0];
    assert_eq!(error["code"], "DUPLICATE_DATA");
    assert_eq!(error["message"], "duplicate data");
    let details = &error["details"];
    assert_eq!(details["api_name"], "Email");
    assert_eq!(details["json_path"], "$.data[0].Email");
    assert_eq!(details["id"], json!(existing));
    assert_eq!(details["duplicate_record"]["id"], json!(existing));
    assert_eq!(details["duplicate_record"]["module"]["api_name"], "Leads");
    assert!(details["duplicate_record"]["Owner"]["id"].is_string());
    assert_eq!(
        z.handle().zoho_count_by_email("Leads", "jane@example.com"),
        1
    );

    // Two records of one call with one email: the second is the duplicate
    // of the first.
    let pair = z
        .post(
            "/Leads",
            json!({"data": [lead("A", "pair@x.io"), lead("B", "pair@x.io")]}),
        )
        .await
        .expect(StatusCode::MULTI_STATUS)
        .json();
    let first_id = &pair["data"][0]["details"]["id"];
    assert_eq!(
        pair["data"][1]["details"]["duplicate_record"]["id"],
        *first_id
    );

    // Updating a record to another's email is refused too.
    let other = z.lead("other@x.io").await;
    let update = z
        .put(
            &format!("/Leads/{other}"),
            json!({"data": [{"Email": "jane@example.com"}]}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(update["data"][0]["code"], "DUPLICATE_DATA");
}

#[tokio::test]
async fn updates_by_id_in_the_body_and_in_the_path() {
    let z = Zoho::start().await;
    let a = z.lead("a@x.io").await;
    let b = z.lead("b@x.io").await;
    let reply = z
        .put(
            "/Leads",
            json!({"data": [
                {"id": a, "City": "Oslo"},
                {"id": "5725767000999999999", "City": "Rome"},
                {"City": "Paris"},
                {"id": b.parse::<u64>().unwrap(), "Last_Name": null},
            ]}),
        )
        .await
        .expect(StatusCode::MULTI_STATUS)
        .json();
    let data = &reply["data"];
    assert_eq!(data[0]["message"], "record updated");
    assert_eq!(data[0]["details"]["id"], json!(a));
    assert_eq!(data[1]["code"], "INVALID_DATA");
    assert_eq!(data[1]["message"], "the id given seems to be invalid");
    assert_eq!(data[1]["details"]["json_path"], "$.data[1].id");
    assert_eq!(data[2]["code"], "MANDATORY_NOT_FOUND");
    assert_eq!(data[2]["details"]["api_name"], "id");
    assert_eq!(data[3]["code"], "MANDATORY_NOT_FOUND");
    assert_eq!(data[3]["details"]["api_name"], "Last_Name");

    let one = z
        .put(
            &format!("/Leads/{b}"),
            json!({"data": [{"Designation": "CTO"}]}),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(one["data"][0]["details"]["id"], json!(b));
    assert_eq!(
        z.handle().zoho_record(&b).unwrap().text("Designation"),
        Some("CTO")
    );
    let missing = z
        .put(
            "/Leads/5725767000999999999",
            json!({"data": [{"City": "x"}]}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(missing["code"], "INVALID_DATA");
    assert_eq!(missing["details"]["resource_path_index"], 1);
}

#[tokio::test]
async fn whole_call_errors() {
    let z = Zoho::start().await;
    let many: Vec<Value> = (0..101).map(|i| lead("N", &format!("n{i}@x.io"))).collect();
    let reply = z
        .post("/Leads", json!({ "data": many }))
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(reply["code"], "LIMIT_EXCEEDED");
    assert_eq!(reply["status"], "error");
    assert_eq!(reply["details"]["limit"], 100);
    assert!(z.handle().zoho_records("Leads").is_empty());

    let module = z
        .post("/Deals", json!({"data": [{"Deal_Name": "x"}]}))
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(
        module,
        json!({"code": "INVALID_MODULE", "details": {"resource_path_index": 0}, "message": "the module name given seems to be invalid", "status": "error"})
    );

    let auth = format!("Zoho-oauthtoken {TOKEN}");
    let malformed = z
        .send(
            z.client
                .post(z.url("/crm/v8/Leads"))
                .header("authorization", &auth)
                .header("content-type", "application/json")
                .body("{\"data\": [ {"),
        )
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(malformed["code"], "INVALID_DATA");
    let no_data = z
        .post("/Leads", json!({"records": []}))
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(no_data["code"], "MANDATORY_NOT_FOUND");
    assert_eq!(no_data["details"]["api_name"], "data");

    let url = z
        .get("/Leads/1/2/3")
        .await
        .expect(StatusCode::NOT_FOUND)
        .json();
    assert_eq!(url["code"], "INVALID_URL_PATTERN");
    let method = z
        .call(Method::PATCH, "/Leads", Some(json!({})))
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(method["code"], "INVALID_REQUEST_METHOD");
    let list = z.get("/Leads").await.expect(StatusCode::BAD_REQUEST).json();
    assert_eq!(list["code"], "REQUIRED_PARAM_MISSING");
    assert_eq!(list["details"]["param_name"], "fields");
    let bad_id = z
        .get("/Leads/abc")
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(bad_id["message"], "the id given seems to be invalid");
    z.get("/Leads/5725767000999999999")
        .await
        .expect(StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn reads_lists_and_searches() {
    let z = Zoho::start().await;
    let jane = z.lead("jane@example.com").await;
    let mary = z
        .post(
            "/Leads",
            json!({"data": [{"Last_Name": "Major", "Company": "ABC Inc", "Email": "mary.jane@example.com", "Mobile": "+47 22 33 44 55"}]}),
        )
        .await
        .expect(StatusCode::CREATED)
        .json()["data"][0]["details"]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let list = z
        .get("/Leads?fields=Email,Last_Name&per_page=1")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(list["data"][0]["id"], json!(mary), "newest first");
    assert_eq!(list["info"]["more_records"], true);
    assert_eq!(list["info"]["per_page"], 1);
    let by_ids = z
        .get(&format!("/Leads?ids={jane}"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(by_ids["data"].as_array().unwrap().len(), 1);
    z.get("/Contacts?fields=Email")
        .await
        .expect(StatusCode::NO_CONTENT);

    let by_email = z
        .get("/Leads/search?email=JANE@example.com")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(by_email["data"].as_array().unwrap().len(), 1);
    assert_eq!(by_email["data"][0]["id"], json!(jane));
    assert_eq!(by_email["info"]["count"], 1);
    assert_eq!(by_email["info"]["more_records"], false);

    // `equals` behaves like contains, as Zoho documents.
    let criteria = z
        .get("/Leads/search?criteria=(Email:equals:jane@example.com)")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(criteria["data"].as_array().unwrap().len(), 2);
    let both = z
        .get("/Leads/search?criteria=((Email:equals:jane@example.com)and(Company:starts_with:ABC))")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(both["data"][0]["id"], json!(mary));
    let phone = z
        .get("/Leads/search?phone=4722334455&fields=Mobile")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        phone["data"][0],
        json!({"id": mary, "Mobile": "+47 22 33 44 55"})
    );
    let word = z
        .get("/Leads/search?word=abc")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(word["data"].as_array().unwrap().len(), 1);

    let none = z.get("/Leads/search?email=nobody@example.com").await;
    assert_eq!(none.status, StatusCode::NO_CONTENT);
    assert!(none.text.is_empty());
    let missing = z
        .get("/Leads/search")
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(missing["code"], "EXPECTED_PARAM_MISSING");
    let invalid = z
        .get("/Leads/search?criteria=(Nope:equals:x)")
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(invalid["code"], "INVALID_QUERY");

    // The search index can lag behind writes.
    z.handle().set_zoho_search_lag_ms(60_000);
    z.lead("late@example.com").await;
    z.get("/Leads/search?email=late@example.com")
        .await
        .expect(StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn credits_run_out_with_429() {
    let z = Zoho::start().await;
    let h = z.handle();
    // 25 records cost 3 credits; the read 1.
    let records: Vec<Value> = (0..25).map(|i| lead("N", &format!("n{i}@x.io"))).collect();
    z.post("/Leads", json!({ "data": records }))
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(h.zoho_credits_used(), 3);
    z.get("/Leads?fields=Email").await.expect(StatusCode::OK);
    assert_eq!(h.zoho_credits(), (4, 50_000));

    h.set_zoho_credits(6);
    let half = z
        .get("/Leads/search?email=n1@x.io")
        .await
        .expect(StatusCode::OK);
    assert_eq!(half.header("x-api-credits-remaining"), Some("1"));
    z.get("/Leads/search?email=n2@x.io")
        .await
        .expect(StatusCode::OK);
    let spent = z
        .get("/Leads/search?email=n3@x.io")
        .await
        .expect(StatusCode::TOO_MANY_REQUESTS);
    let body = spent.json();
    assert_eq!(body["code"], "TOO_MANY_REQUESTS");
    assert_eq!(body["status"], "error");
    assert_eq!(spent.header("x-api-credits-remaining"), Some("0"));
    assert_eq!(h.zoho_credits_used(), 6, "refused calls cost nothing");
    assert_eq!(h.stats().rate_limited, 1);

    // Over control routes too.
    let limits = z
        .send(
            z.client
                .post(z.url("/_sim/zoho/limits"))
                .json(&json!({"daily_credits": 1000})),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(limits["daily_credits"], 1000);
    assert_eq!(limits["credits_used"], 6);
    z.get("/Leads/search?email=n3@x.io")
        .await
        .expect(StatusCode::OK);
    h.reset();
    assert_eq!(h.zoho_credits_used(), 0);
}

#[tokio::test]
async fn concurrency_limit_answers_429() {
    let z = Zoho::with(SimConfig {
        zoho: ZohoLimits {
            concurrency: 2,
            ..ZohoLimits::default()
        },
        ..SimConfig::default()
    })
    .await;
    z.handle().set_faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    });
    let (a, b, c) = tokio::join!(
        z.get("/Leads?fields=Email"),
        z.get("/Leads?fields=Email"),
        z.get("/Leads?fields=Email")
    );
    let replies = [a, b, c];
    let mut statuses: Vec<u16> = replies.iter().map(|r| r.status.as_u16()).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [204, 204, 429]);
    let refused = replies
        .iter()
        .find(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .unwrap();
    assert_eq!(refused.json()["code"], "TOO_MANY_REQUESTS");
    // The slots are given back.
    z.handle().set_faults(Faults::default());
    z.get("/Leads?fields=Email")
        .await
        .expect(StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn expired_oauth_token_is_401_until_refreshed() {
    let z = Zoho::start().await;
    let token = z.oauth_token().await;
    assert!(token.starts_with("1000."));
    let auth = format!("Zoho-oauthtoken {token}");
    z.call_as(
        Method::POST,
        "/crm/v8/Leads",
        Some(json!({"data": [lead("Doe", "jane@example.com")]})),
        Some(&auth),
    )
    .await
    .expect(StatusCode::CREATED);

    let h = z.handle();
    h.expire_oauth_access_tokens();
    assert!(!h.oauth_access_valid(Vendor::Zoho, &token));
    let expired = z
        .call_as(Method::GET, "/crm/v8/Leads?fields=Email", None, Some(&auth))
        .await
        .expect(StatusCode::UNAUTHORIZED);
    assert_eq!(
        expired.json(),
        json!({"code": "INVALID_TOKEN", "details": {}, "message": "invalid oauth token", "status": "error"})
    );
    assert_eq!(h.zoho_credits_used(), 1, "a refused call costs no credit");

    let fresh = z.oauth_token().await;
    assert_ne!(fresh, token);
    let reply = z
        .call_as(
            Method::GET,
            "/crm/v8/Leads?fields=Email",
            None,
            Some(&format!("Zoho-oauthtoken {fresh}")),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(reply.json()["data"][0]["Email"], "jane@example.com");
    assert_eq!(h.oauth_calls(Vendor::Zoho), 2);

    // A token of another vendor is no Zoho token.
    h.revoke_refresh_tokens();
    let again = z
        .send(z.client.post(z.url(&format!(
            "/oauth/v2/token?refresh_token={DEFAULT_REFRESH_TOKEN}&client_id={DEFAULT_CLIENT_ID}&client_secret={DEFAULT_CLIENT_SECRET}&grant_type=refresh_token"
        ))))
        .await
        .expect(StatusCode::OK);
    assert_eq!(again.json()["error"], "invalid_code");
}

#[tokio::test]
async fn bearer_and_missing_auth_are_refused() {
    let z = Zoho::start().await;
    let token = z.oauth_token().await;
    for auth in [
        Some(format!("Bearer {token}")),
        None,
        Some("Zoho-oauthtoken ".into()),
    ] {
        let reply = z
            .call_as(
                Method::GET,
                "/crm/v8/Leads?fields=Email",
                None,
                auth.as_deref(),
            )
            .await
            .expect(StatusCode::UNAUTHORIZED);
        assert_eq!(
            reply.json(),
            json!({"code": "AUTHENTICATION_FAILURE", "details": {}, "message": "Authentication failed", "status": "error"}),
            "{auth:?}"
        );
    }
    let unknown = z
        .call_as(
            Method::GET,
            "/crm/v8/Leads?fields=Email",
            None,
            Some("Zoho-oauthtoken 1000.nope"),
        )
        .await
        .expect(StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.json()["code"], "INVALID_TOKEN");
    // Older versions take the same token.
    z.call_as(
        Method::GET,
        "/crm/v2/Leads",
        None,
        Some(&format!("Zoho-oauthtoken {token}")),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    assert_eq!(z.handle().stats().by_status.get(&401), Some(&4));
}

#[tokio::test]
async fn faults_apply_to_zoho() {
    let z = Zoho::start().await;
    let h = z.handle();
    h.set_faults(Faults {
        error_5xx_next: 3,
        ..Faults::default()
    });
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let reply = z.get("/Leads?fields=Email").await;
        if reply.status == StatusCode::INTERNAL_SERVER_ERROR {
            assert_eq!(
                reply.json(),
                json!({"code": "INTERNAL_ERROR", "details": {}, "message": "Internal Server Error", "status": "error"})
            );
        }
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(statuses, [502, 503, 500]);

    h.set_faults(Faults {
        rate_limit_next: 1,
        ..Faults::default()
    });
    let storm = z
        .get("/Leads?fields=Email")
        .await
        .expect(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(storm.json()["code"], "TOO_MANY_REQUESTS");

    h.set_faults(Faults {
        fail_silently_next: 1,
        ..Faults::default()
    });
    let ghost = z.lead("ghost@x.io").await;
    assert!(h.zoho_record(&ghost).is_none(), "the write was dropped");
    assert_eq!(h.stats().writes_dropped, 1);
    assert!(h.creates(Some(Crm::Zoho), &[], &[]).is_empty());
    let real = z.lead("ghost@x.io").await;
    assert_ne!(real, ghost);
    assert_eq!(h.creates(Some(Crm::Zoho), &["ghost@x.io"], &[]).len(), 1);

    h.set_faults(Faults {
        outage: true,
        ..Faults::default()
    });
    z.get("/Leads?fields=Email")
        .await
        .expect(StatusCode::SERVICE_UNAVAILABLE);
    h.set_faults(Faults::default());
    let stats = h.stats();
    assert_eq!(stats.server_errors, 4);
    assert_eq!(stats.records_created, 1);
}

#[tokio::test]
async fn sdk_metadata_and_deletes() {
    let z = Zoho::start().await;
    let fields = z
        .get("/settings/fields?module=Leads")
        .await
        .expect(StatusCode::OK)
        .json();
    let fields = fields["fields"].as_array().unwrap();
    let field = |name: &str| {
        fields
            .iter()
            .find(|f| f["api_name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(field("Last_Name")["system_mandatory"], true);
    assert_eq!(field("Email")["data_type"], "email");
    assert_eq!(field("Owner")["data_type"], "ownerlookup");
    assert_eq!(
        field("Leadgate_Id")["unique"],
        json!({"casesensitive": false})
    );
    assert_eq!(field("Leadgate_Id")["custom_field"], true);
    assert!(
        !field("Lead_Source")["pick_list_values"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let missing = z
        .get("/settings/fields")
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(missing["code"], "REQUIRED_PARAM_MISSING");
    let modules = z
        .get("/settings/modules")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(modules["modules"][0]["api_name"], "Leads");
    let users = z
        .get("/users?type=CurrentUser")
        .await
        .expect(StatusCode::OK)
        .json();
    assert!(users["users"][0]["email"].is_string());
    let org = z.get("/org").await.expect(StatusCode::OK).json();
    assert!(org["org"][0]["zgid"].is_string());

    let a = z.lead("a@x.io").await;
    let b = z.lead("b@x.io").await;
    let reply = z
        .call(
            Method::DELETE,
            &format!("/Leads?ids={a},5725767000999999999"),
            None,
        )
        .await
        .expect(StatusCode::MULTI_STATUS)
        .json();
    assert_eq!(reply["data"][0]["message"], "record deleted");
    assert_eq!(reply["data"][1]["code"], "INVALID_DATA");
    z.call(Method::DELETE, &format!("/Leads/{b}"), None)
        .await
        .expect(StatusCode::OK);
    assert!(z.handle().zoho_records("Leads").is_empty());
    // The control route lists records; the create log keeps the creates.
    let listed = z
        .send(z.client.get(z.url("/_sim/zoho/records?module=Leads")))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(listed["count"], 0);
    let creates = z
        .send(z.client.get(z.url("/_sim/creates?crm=zoho")))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(creates["count"], 2);
    let defined = z
        .send(
            z.client
                .post(z.url("/_sim/zoho/fields"))
                .json(&json!({"module": "Contacts", "api_name": "External_Key", "unique": true})),
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(defined.json()["ok"], true);
}

#[tokio::test]
async fn hubspot_paths_under_crm_v3_stay_hubspot() {
    let z = Zoho::start().await;
    let reply = z
        .send(
            z.client
                .get(z.url("/crm/v3/objects/contactz/1/x"))
                .bearer_auth(TOKEN),
        )
        .await
        .expect(StatusCode::NOT_FOUND);
    assert_eq!(reply.json()["category"], "OBJECT_NOT_FOUND");
    // …while Zoho's v3 is Zoho's.
    let zoho = z
        .call_as(
            Method::GET,
            "/crm/v3/Leads/search?email=x@y.io",
            None,
            Some(&format!("Zoho-oauthtoken {TOKEN}")),
        )
        .await;
    assert_eq!(zoho.status, StatusCode::NO_CONTENT);
}

/// The lookups the store answers from its indexes (the duplicate check, an
/// upsert's match, searches by email and criteria) follow every change: a
/// changed email or unique value, a delete, a field made unique later, a
/// reset.
#[tokio::test]
async fn lookups_follow_changed_and_deleted_records() {
    let z = Zoho::start().await;
    let h = z.handle();
    let ids = |reply: Reply| -> Vec<String> {
        if reply.status == StatusCode::NO_CONTENT {
            return Vec::new();
        }
        reply.expect(StatusCode::OK).json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let upsert = |email: &str, key: &str| json!({"data": [{"Last_Name": "Doe", "Email": email, "Leadgate_Id": key}], "duplicate_check_fields": ["Leadgate_Id"]});
    let first = z
        .post("/Leads/upsert", upsert("a@x.io", "k1"))
        .await
        .expect(StatusCode::OK)
        .json()["data"][0]["details"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A criteria search first, so its index exists before the changes.
    assert_eq!(
        ids(z.get("/Leads/search?criteria=(Email:equals:a@x.io)").await),
        vec![first.clone()]
    );

    // The email changes: the duplicate check and both searches follow.
    z.put(
        &format!("/Leads/{first}"),
        json!({"data": [{"Email": "b@x.io"}]}),
    )
    .await
    .expect(StatusCode::OK);
    let clash = z
        .post("/Leads", json!({"data": [lead("B", "B@X.io")]}))
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(
        clash["data"][0]["details"]["duplicate_record"]["id"],
        json!(first)
    );
    assert_eq!(
        ids(z.get("/Leads/search?email=b@x.io").await),
        vec![first.clone()]
    );
    assert_eq!(
        ids(z.get("/Leads/search?criteria=(Email:equals:b@x.io)").await),
        vec![first.clone()]
    );
    assert!(ids(z.get("/Leads/search?email=a@x.io").await).is_empty());
    assert!(ids(z.get("/Leads/search?criteria=(Email:equals:a@x.io)").await).is_empty());
    let fresh = z.lead("a@x.io").await;
    assert_eq!(
        ids(z.get("/Leads/search?email=A@x.io").await),
        vec![fresh.clone()]
    );

    // The unique value changes: the old one is free, the new one matches.
    z.put(
        &format!("/Leads/{first}"),
        json!({"data": [{"Leadgate_Id": "k2"}]}),
    )
    .await
    .expect(StatusCode::OK);
    let moved = z
        .post("/Leads/upsert", upsert("b@x.io", "K2"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(moved["data"][0]["action"], "update");
    assert_eq!(moved["data"][0]["details"]["id"], json!(first));
    let freed = z
        .post("/Leads/upsert", upsert("k1@x.io", "k1"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(freed["data"][0]["action"], "insert");

    // Deleted, then upserted by the same key and email: a new record.
    z.call(Method::DELETE, &format!("/Leads/{first}"), None)
        .await
        .expect(StatusCode::OK);
    assert!(ids(z.get("/Leads/search?email=b@x.io").await).is_empty());
    assert!(ids(z.get("/Leads/search?criteria=(Leadgate_Id:in:k2,k9)").await).is_empty());
    let again = z
        .post("/Leads/upsert", upsert("b@x.io", "k2"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(again["data"][0]["action"], "insert");
    let again = again["data"][0]["details"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(again, first);
    assert_eq!(
        ids(z
            .get("/Leads/search?criteria=((Email:equals:b@x.io)and(Leadgate_Id:in:k2))")
            .await),
        vec![again.clone()]
    );

    // A field made unique after records hold values checks them at once.
    z.put(
        &format!("/Leads/{fresh}"),
        json!({"data": [{"Phone": "+1 555 0100"}]}),
    )
    .await
    .expect(StatusCode::OK);
    assert!(h.define_zoho_field("Leads", "Phone", true));
    let clash = z
        .post(
            "/Leads",
            json!({"data": [{"Last_Name": "P", "Phone": "+1 555 0100"}]}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(clash["data"][0]["details"]["api_name"], "Phone");
    assert_eq!(
        clash["data"][0]["details"]["duplicate_record"]["id"],
        json!(fresh)
    );

    // Reset: nothing is found, the values are free again.
    h.reset();
    assert!(ids(z.get("/Leads/search?email=a@x.io").await).is_empty());
    assert!(ids(z.get("/Leads/search?criteria=(Email:equals:b@x.io)").await).is_empty());
    let after = z
        .post("/Leads/upsert", upsert("b@x.io", "k2"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(after["data"][0]["action"], "insert");
}
