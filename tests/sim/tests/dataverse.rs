//! The Dynamics 365 / Dataverse personality over real HTTP: the paths,
//! headers, JSON and multipart a Web API client (or the leadgate adapter)
//! sends and reads.

use std::time::Duration;

mod common;

use leadgate_sim::{
    Crm, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DataverseLimits, Faults, SimConfig, SimHandle,
    Simulator,
};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use common::Reply;

const TOKEN: &str = "sim-token";
const V: &str = "/api/data/v9.2";

/// Dataverse's error body.
trait DataverseError {
    fn error(&self) -> (String, String);
}

impl DataverseError for Reply {
    /// `{"error":{"code","message"}}`.
    #[track_caller]
    fn error(&self) -> (String, String) {
        let body = self.json();
        (
            body["error"]["code"].as_str().unwrap().to_owned(),
            body["error"]["message"].as_str().unwrap().to_owned(),
        )
    }
}

struct Dv {
    sim: Simulator,
    client: Client,
}

impl Dv {
    async fn start() -> Dv {
        Self::with(SimConfig::default()).await
    }

    async fn with(config: SimConfig) -> Dv {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Dv {
            sim: Simulator::start(config).await.expect("simulator starts"),
            client: Client::new(),
        }
    }

    fn handle(&self) -> SimHandle {
        self.sim.handle()
    }

    fn base(&self) -> String {
        self.sim.base_url()
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<String>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base()))
            .header("accept", "application/json")
            .header("odata-maxversion", "4.0")
            .header("odata-version", "4.0");
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        Reply::of(request).await
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        self.send(
            method,
            &format!("{V}{path}"),
            body.map(|b| b.to_string()),
            Some(TOKEN),
            headers,
        )
        .await
    }

    async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None, &[]).await
    }

    async fn post(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> Reply {
        self.call(Method::POST, path, Some(body), headers).await
    }

    async fn patch(&self, path: &str, body: Value, headers: &[(&str, &str)]) -> Reply {
        self.call(Method::PATCH, path, Some(body), headers).await
    }

    async fn batch(&self, boundary: &str, body: String, headers: &[(&str, &str)]) -> Reply {
        let content_type = format!("multipart/mixed; boundary=\"{boundary}\"");
        let mut all = vec![("content-type", content_type.as_str())];
        all.extend_from_slice(headers);
        let mut request = self
            .client
            .post(format!("{}{V}/$batch", self.base()))
            .bearer_auth(TOKEN)
            .header("accept", "application/json");
        for (name, value) in all {
            request = request.header(name, value);
        }
        let response = request.body(body).send().await.unwrap();
        Reply {
            status: response.status(),
            headers: response.headers().clone(),
            text: response.text().await.unwrap(),
        }
    }

    /// A token from the simulated Entra ID (client credentials).
    async fn entra_token(&self) -> String {
        let form = format!(
            "grant_type=client_credentials&client_id={DEFAULT_CLIENT_ID}&client_secret={DEFAULT_CLIENT_SECRET}&scope=https%3A%2F%2Forg.crm.dynamics.com%2F.default"
        );
        let response = self
            .client
            .post(format!(
                "{}/{}/oauth2/v2.0/token",
                self.base(),
                leadgate_sim::DATAVERSE_TENANT_ID
            ))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }
}

/// The GUID in `…/leads(<guid>)`.
fn id_in(url: &str) -> String {
    let open = url.rfind('(').unwrap();
    url[open + 1..url.len() - 1].to_owned()
}

fn is_guid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n)
}

#[tokio::test]
async fn create_answers_204_with_the_entity_url_and_reads_back() {
    let dv = Dv::start().await;
    let created = dv
        .post(
            "/leads",
            json!({"firstname": "Jane", "lastname": "Doe", "companyname": "Acme", "emailaddress1": "jane@example.com", "subject": "Inbound"}),
            &[],
        )
        .await
        .expect(StatusCode::NO_CONTENT);
    assert_eq!(created.text, "");
    assert_eq!(created.header("odata-version"), Some("4.0"));
    let url = created.header("odata-entityid").unwrap().to_owned();
    assert!(
        url.starts_with(&format!("{}{V}/leads(", dv.base())),
        "{url}"
    );
    let id = id_in(&url);
    assert!(is_guid(&id), "{id}");
    assert_eq!(
        created.header("x-ms-ratelimit-burst-remaining-xrm-requests"),
        Some("5999")
    );
    assert!(
        created
            .header("x-ms-ratelimit-time-remaining-xrm-requests")
            .is_some_and(|v| v.starts_with("1,")),
        "{:?}",
        created.headers
    );

    let read = dv
        .get(&format!("/leads({id})"))
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        read.header("content-type"),
        Some("application/json; odata.metadata=minimal")
    );
    let row = read.json();
    assert_eq!(
        row["@odata.context"],
        format!("{}{V}/$metadata#leads/$entity", dv.base())
    );
    assert!(row["@odata.etag"].as_str().unwrap().starts_with("W/\""));
    assert_eq!(row["leadid"], id.as_str());
    assert_eq!(row["fullname"], "Jane Doe");
    assert_eq!(row["jobtitle"], Value::Null, "unset columns read as null");
    assert!(row["createdon"].as_str().unwrap().ends_with('Z'));
    assert_eq!(row["createdon"], row["modifiedon"]);

    let some = dv
        .get(&format!("/leads({id})?$select=emailaddress1,lastname"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        some,
        json!({
            "@odata.context": format!("{}{V}/$metadata#leads(emailaddress1,lastname)/$entity", dv.base()),
            "@odata.etag": row["@odata.etag"],
            "emailaddress1": "jane@example.com",
            "lastname": "Doe",
            "leadid": id,
        })
    );
    let missing = dv
        .get("/leads(00000000-0000-0000-0000-000000000001)")
        .await
        .expect(StatusCode::NOT_FOUND)
        .error();
    assert_eq!(
        missing,
        (
            "0x80040217".to_owned(),
            "lead With Id = 00000000-0000-0000-0000-000000000001 Does Not Exist".to_owned()
        )
    );

    let h = dv.handle();
    let rows = h.dataverse_records("lead");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, id);
    assert_eq!(rows[0].table, "lead");
    assert_eq!(rows[0].fields["companyname"], "Acme");
    assert_eq!(
        h.dataverse_record("leads", &id).unwrap().email(),
        Some("jane@example.com")
    );
    assert_eq!(h.dataverse_count_by_email("lead", "JANE@example.com"), 1);
    assert_eq!(
        h.creates(Some(Crm::Dynamics), &["jane@example.com"], &[])
            .len(),
        1
    );
    assert_eq!(h.stats().records_created, 1);
}

#[tokio::test]
async fn return_representation_answers_201_with_the_selected_columns() {
    let dv = Dv::start().await;
    let created = dv
        .post(
            "/contacts?$select=firstname,emailaddress1",
            json!({"firstname": "Jane", "lastname": "Doe", "emailaddress1": "jane@example.com"}),
            &[("prefer", "return=representation")],
        )
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(
        created.header("preference-applied"),
        Some("return=representation")
    );
    assert_eq!(created.header("odata-entityid"), None);
    let body = created.json();
    let id = body["contactid"].as_str().unwrap().to_owned();
    assert_eq!(
        body,
        json!({
            "@odata.context": format!("{}{V}/$metadata#contacts(firstname,emailaddress1)/$entity", dv.base()),
            "@odata.etag": body["@odata.etag"],
            "contactid": id,
            "emailaddress1": "jane@example.com",
            "firstname": "Jane",
        })
    );
    // A bad $select is refused before anything is written.
    let refused = dv
        .post(
            "/contacts?$select=nope",
            json!({"lastname": "Roe"}),
            &[("prefer", "return=representation")],
        )
        .await
        .expect(StatusCode::BAD_REQUEST)
        .error();
    assert_eq!(
        refused,
        (
            "0x80060888".to_owned(),
            "Could not find a property named 'nope' on type 'Microsoft.Dynamics.CRM.contact'."
                .to_owned()
        )
    );
    assert_eq!(dv.handle().dataverse_records("contact").len(), 1);
}

#[tokio::test]
async fn upsert_by_alternate_key_creates_then_updates_one_row() {
    let dv = Dv::start().await;
    // The key value "o'neil/x": quote doubled, slash percent-encoded.
    let path = "/leads(new_leadgateid='o''neil%2Fx')";
    let first = dv
        .patch(
            path,
            json!({"lastname": "O'Neil", "emailaddress1": "on@example.com"}),
            &[],
        )
        .await
        .expect(StatusCode::NO_CONTENT);
    let url = first.header("odata-entityid").unwrap().to_owned();
    let id = id_in(&url);
    let h = dv.handle();
    assert_eq!(
        h.dataverse_record("lead", &id)
            .unwrap()
            .text("new_leadgateid"),
        Some("o'neil/x")
    );

    let second = dv
        .patch(path, json!({"firstname": "Pat"}), &[])
        .await
        .expect(StatusCode::NO_CONTENT);
    assert_eq!(second.header("odata-entityid"), Some(url.as_str()));
    let rows = h.dataverse_records("lead");
    assert_eq!(rows.len(), 1, "one row for one key");
    assert_eq!(rows[0].text("fullname"), Some("Pat O'Neil"));
    assert_eq!(
        rows[0].email(),
        Some("on@example.com"),
        "an update keeps what it does not send"
    );

    // return=representation: 200 updated, 201 created ($select honoured).
    let updated = dv
        .patch(
            &format!("{path}?$select=leadid"),
            json!({"jobtitle": "CTO"}),
            &[("prefer", "return=representation")],
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(updated["leadid"], id.as_str());
    let created = dv
        .patch(
            "/leads(new_leadgateid='k2')?$select=leadid,new_leadgateid",
            json!({"lastname": "Two"}),
            &[("prefer", "return=representation")],
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    assert_eq!(created["new_leadgateid"], "k2");
    assert_eq!(h.dataverse_records("lead").len(), 2);
    assert_eq!(
        h.creates(Some(Crm::Dynamics), &["on@example.com"], &[])
            .len(),
        1
    );
    assert_eq!(h.stats().records_updated, 2);

    // By alternate key, GET works too; an unknown key value is 0x80048d02.
    let read = dv
        .get("/leads(new_leadgateid='k2')?$select=lastname")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(read["lastname"], "Two");
    let missing = dv
        .get("/leads(new_leadgateid='nope')")
        .await
        .expect(StatusCode::NOT_FOUND)
        .error();
    assert_eq!(
        missing,
        (
            "0x80048d02".to_owned(),
            "A record with the specified key values does not exist in lead entity".to_owned()
        )
    );
    // Upsert by primary key creates a row with that id.
    let chosen = "6b29fc40-ca47-1067-b31d-00dd010662da";
    dv.patch(
        &format!("/contacts({chosen})"),
        json!({"lastname": "Id"}),
        &[],
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    assert!(h.dataverse_record("contact", chosen).is_some());
}

#[tokio::test]
async fn if_match_updates_only_and_if_none_match_creates_only() {
    let dv = Dv::start().await;
    let h = dv.handle();
    let only_update = [("if-match", "*")];
    let missing = dv
        .patch(
            "/leads(new_leadgateid='a')",
            json!({"lastname": "A"}),
            &only_update,
        )
        .await
        .expect(StatusCode::NOT_FOUND)
        .error();
    assert_eq!(missing.0, "0x80048d02");
    let missing = dv
        .patch(
            "/leads(00000000-0000-0000-0000-00000000000a)",
            json!({"lastname": "A"}),
            &only_update,
        )
        .await
        .expect(StatusCode::NOT_FOUND)
        .error();
    assert_eq!(
        missing,
        (
            "0x80040217".to_owned(),
            "lead With Id = 00000000-0000-0000-0000-00000000000a Does Not Exist".to_owned()
        )
    );
    assert!(
        h.dataverse_records("lead").is_empty(),
        "If-Match: * never creates"
    );

    let only_create = [("if-none-match", "*")];
    dv.patch(
        "/leads(new_leadgateid='a')",
        json!({"lastname": "A"}),
        &only_create,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let exists = dv
        .patch(
            "/leads(new_leadgateid='a')",
            json!({"lastname": "B"}),
            &only_create,
        )
        .await
        .expect(StatusCode::PRECONDITION_FAILED)
        .error();
    assert_eq!(
        exists.1,
        "A record with matching key values already exists."
    );
    assert_eq!(h.dataverse_records("lead")[0].text("lastname"), Some("A"));
    dv.patch(
        "/leads(new_leadgateid='a')",
        json!({"lastname": "C"}),
        &only_update,
    )
    .await
    .expect(StatusCode::NO_CONTENT);

    // Optimistic concurrency with the row's ETag.
    let row = dv
        .get("/leads(new_leadgateid='a')")
        .await
        .expect(StatusCode::OK)
        .json();
    let etag = row["@odata.etag"].as_str().unwrap().to_owned();
    dv.patch(
        "/leads(new_leadgateid='a')",
        json!({"lastname": "D"}),
        &[("if-match", &etag)],
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let stale = dv
        .patch(
            "/leads(new_leadgateid='a')",
            json!({"lastname": "E"}),
            &[("if-match", &etag)],
        )
        .await
        .expect(StatusCode::PRECONDITION_FAILED)
        .error();
    assert_eq!(
        stale,
        (
            "0x80060882".to_owned(),
            "The version of the existing record doesn't match the RowVersion property provided."
                .to_owned()
        )
    );

    // A key the table does not define, until it is defined.
    let undefined = dv
        .patch(
            "/leads(emailaddress1='x@example.com')",
            json!({"lastname": "X"}),
            &[],
        )
        .await
        .expect(StatusCode::BAD_REQUEST)
        .error();
    assert_eq!(
        undefined,
        (
            "0x80060890".to_owned(),
            "The specified key attributes are not a defined key for the lead entity".to_owned()
        )
    );
    assert!(h.define_dataverse_alternate_key("lead", "emailaddress1"));
    dv.patch(
        "/leads(emailaddress1='x@example.com')",
        json!({"lastname": "X"}),
        &[],
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    assert_eq!(h.dataverse_count_by_email("lead", "x@example.com"), 1);
}

#[tokio::test]
async fn invalid_bodies_are_refused_with_dataverse_codes() {
    let dv = Dv::start().await;
    let unknown = dv
        .post("/leads", json!({"lastname": "Doe", "foo": "bar"}), &[])
        .await
        .expect(StatusCode::BAD_REQUEST)
        .error();
    assert_eq!(unknown.0, "0x80048d19");
    assert!(
        unknown
            .1
            .starts_with("Error identified in Payload provided by the user for Entity :'leads'"),
        "{}",
        unknown.1
    );
    assert!(unknown.1.contains(
        "The property 'foo' does not exist on type 'Microsoft.Dynamics.CRM.lead'. Make sure to only use property names that are defined by the type or mark the type as open type."
    ));
    let long = dv
        .post("/leads", json!({"lastname": "x".repeat(51)}), &[])
        .await
        .expect(StatusCode::BAD_REQUEST)
        .error();
    assert_eq!(
        long,
        (
            "0x80044331".to_owned(),
            "A validation error occurred.  The length of the 'lastname' attribute of the 'lead' entity exceeded the maximum allowed length of '50'.".to_owned()
        )
    );
    let wrong = dv
        .post("/leads", json!({"leadsourcecode": "Web"}), &[])
        .await
        .expect(StatusCode::BAD_REQUEST)
        .error();
    assert_eq!(wrong.0, "0x80048d19");
    assert!(
        wrong
            .1
            .ends_with("Cannot convert the literal 'Web' to the expected type 'Edm.Int32'.")
    );
    let range = dv
        .post("/leads", json!({"leadsourcecode": 42}), &[])
        .await
        .expect(StatusCode::BAD_REQUEST)
        .error();
    assert_eq!(range.0, "0x8004431a");
    let broken = dv
        .send(
            Method::POST,
            &format!("{V}/leads"),
            Some("{\"lastname\":".into()),
            Some(TOKEN),
            &[],
        )
        .await
        .expect(StatusCode::BAD_REQUEST)
        .error();
    assert_eq!(broken.0, "0x80048d19");
    let nowhere = dv
        .get("/accounts")
        .await
        .expect(StatusCode::NOT_FOUND)
        .error();
    assert_eq!(
        nowhere,
        (
            "0x0".to_owned(),
            "Resource not found for the segment 'accounts'.".to_owned()
        )
    );
    assert!(dv.handle().dataverse_records("lead").is_empty());
}

#[tokio::test]
async fn duplicate_detection_only_with_the_header_and_alternate_keys_are_unique() {
    let dv = Dv::start().await;
    let h = dv.handle();
    let body = json!({"lastname": "Doe", "emailaddress1": "dup@example.com"});
    dv.post("/leads", body.clone(), &[])
        .await
        .expect(StatusCode::NO_CONTENT);
    // Without the header Dataverse applies no rule: a second row.
    dv.post("/leads", body.clone(), &[])
        .await
        .expect(StatusCode::NO_CONTENT);
    assert_eq!(h.dataverse_count_by_email("lead", "dup@example.com"), 2);
    let detect = [("MSCRM.SuppressDuplicateDetection", "false")];
    let refused = dv
        .post(
            "/leads",
            json!({"lastname": "Doe", "emailaddress1": "DUP@example.com"}),
            &detect,
        )
        .await
        .expect(StatusCode::INTERNAL_SERVER_ERROR)
        .error();
    assert_eq!(
        refused,
        (
            "0x80040333".to_owned(),
            "A record was not created or updated because a duplicate of the current record already exists.".to_owned()
        )
    );
    assert_eq!(h.dataverse_count_by_email("lead", "dup@example.com"), 2);
    // Other tables are not compared; "true" suppresses.
    dv.post("/contacts", body.clone(), &detect)
        .await
        .expect(StatusCode::NO_CONTENT);
    dv.post(
        "/leads",
        body.clone(),
        &[("MSCRM.SuppressDuplicateDetection", "true")],
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    // An upsert that would make a duplicate is refused too.
    let upsert = dv
        .patch("/leads(new_leadgateid='k1')", body.clone(), &detect)
        .await
        .expect(StatusCode::INTERNAL_SERVER_ERROR)
        .error();
    assert_eq!(upsert.0, "0x80040333");

    // A second row with a taken alternate key value.
    dv.post(
        "/contacts",
        json!({"lastname": "K", "new_leadgateid": "key-1"}),
        &[],
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let taken = dv
        .post(
            "/contacts",
            json!({"lastname": "K2", "new_leadgateid": "KEY-1"}),
            &[],
        )
        .await
        .expect(StatusCode::PRECONDITION_FAILED)
        .error();
    assert_eq!(taken.0, "0x80060892");
    assert_eq!(
        taken.1,
        "Entity Key Leadgate Id violated. A record with the same value for new_leadgateid already exists. A duplicate record cannot be created. Select one or more unique values and try again."
    );
}

#[tokio::test]
async fn queries_filter_select_and_top() {
    let dv = Dv::start().await;
    for (i, email) in ["a@x.io", "b@x.io", "c@x.io"].iter().enumerate() {
        dv.post(
            "/leads",
            json!({"lastname": format!("L{i}"), "emailaddress1": email, "new_leadgateid": format!("k{i}")}),
            &[],
        )
        .await
        .expect(StatusCode::NO_CONTENT);
    }
    let filter = "emailaddress1%20eq%20'A@x.io'%20or%20new_leadgateid%20eq%20'k2'";
    let found = dv
        .get(&format!(
            "/leads?$select=emailaddress1,lastname&$filter={filter}"
        ))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        found["@odata.context"],
        format!("{}{V}/$metadata#leads(emailaddress1,lastname)", dv.base())
    );
    let rows = found["value"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["emailaddress1"], "a@x.io");
    assert_eq!(rows[1]["lastname"], "L2");
    assert!(rows[0]["leadid"].is_string() && rows[0]["@odata.etag"].is_string());
    assert!(rows[0].get("firstname").is_none());
    let top = dv
        .get("/leads?$select=lastname&$orderby=lastname%20desc&$top=1&$count=true")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(top["@odata.count"], 3);
    assert_eq!(top["value"].as_array().unwrap().len(), 1);
    assert_eq!(top["value"][0]["lastname"], "L2");
    let bad = dv
        .get("/leads?$filter=emailaddress1%20eqq%20'x'")
        .await
        .expect(StatusCode::BAD_REQUEST)
        .error();
    assert_eq!(bad.0, "0x80060888");
    let unknown = dv
        .get("/leads?$filter=nope%20eq%20'x'")
        .await
        .expect(StatusCode::BAD_REQUEST)
        .error();
    assert_eq!(
        unknown.1,
        "Could not find a property named 'nope' on type 'Microsoft.Dynamics.CRM.lead'."
    );
}

fn part(method: &str, url: &str, headers: &[&str], body: Option<&Value>) -> String {
    let mut out = format!(
        "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\n{method} {url} HTTP/1.1\r\n"
    );
    for h in headers {
        out.push_str(h);
        out.push_str("\r\n");
    }
    if let Some(body) = body {
        out.push_str("Content-Type: application/json; type=entry\r\n\r\n");
        out.push_str(&body.to_string());
        out.push_str("\r\n");
    } else {
        out.push_str("\r\n\r\n");
    }
    out
}

/// The `HTTP/1.1 NNN` status lines of a batch answer, in order.
fn statuses(text: &str) -> Vec<u16> {
    text.lines()
        .filter_map(|l| l.strip_prefix("HTTP/1.1 "))
        .map(|l| l[..3].parse().unwrap())
        .collect()
}

#[tokio::test]
async fn batch_change_set_rolls_back_and_continue_on_error_answers_every_part() {
    let dv = Dv::start().await;
    let h = dv.handle();
    let good = json!({"lastname": "Good", "emailaddress1": "good@example.com"});
    let bad = json!({"lastname": "Bad", "foo": 1});

    // A change set whose second request fails: nothing is kept, one error part.
    let body = format!(
        "--batch_A\r\nContent-Type: multipart/mixed; boundary=changeset_B\r\n\r\n\
         --changeset_B\r\nContent-ID: 1\r\n{}--changeset_B\r\nContent-ID: 2\r\n{}--changeset_B--\r\n\r\n--batch_A--\r\n",
        part("POST", &format!("{V}/leads"), &[], Some(&good)),
        part("POST", &format!("{V}/leads"), &[], Some(&bad)),
    );
    let reply = dv
        .batch("batch_A", body, &[("prefer", "odata.continue-on-error")])
        .await
        .expect(StatusCode::OK);
    let content_type = reply.header("content-type").unwrap().to_owned();
    assert!(
        content_type.starts_with("multipart/mixed; boundary=batchresponse_"),
        "{content_type}"
    );
    assert_eq!(statuses(&reply.text), vec![400], "{}", reply.text);
    assert!(!reply.text.contains("changesetresponse_"), "{}", reply.text);
    assert!(reply.text.contains("Content-ID: 2"), "{}", reply.text);
    assert!(reply.text.contains("\"code\":\"0x80048d19\""));
    assert!(
        h.dataverse_records("lead").is_empty(),
        "the change set was rolled back"
    );

    // A change set that succeeds answers inside changesetresponse_…
    let body = format!(
        "--batch_A\r\nContent-Type: multipart/mixed; boundary=changeset_C\r\n\r\n\
         --changeset_C\r\nContent-ID: 1\r\n{}--changeset_C\r\nContent-ID: 2\r\n{}--changeset_C--\r\n--batch_A--\r\n",
        part("POST", &format!("{}{V}/leads", dv.base()), &[], Some(&good)),
        part("PATCH", "$1", &[], Some(&json!({"firstname": "Via"}))),
    );
    let reply = dv.batch("batch_A", body, &[]).await.expect(StatusCode::OK);
    assert_eq!(statuses(&reply.text), vec![204, 204], "{}", reply.text);
    assert!(
        reply
            .text
            .contains("Content-Type: multipart/mixed; boundary=changesetresponse_")
    );
    assert!(
        reply
            .text
            .contains(&format!("OData-EntityId: {}{V}/leads(", dv.base()))
    );
    let rows = h.dataverse_records("lead");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].text("fullname"), Some("Via Good"));

    // Plain parts with continue-on-error: every part answered, in order.
    let body = format!(
        "--batch_D\r\n{}--batch_D\r\n{}--batch_D\r\n{}--batch_D\r\n{}--batch_D--\r\n",
        part("POST", "leads", &[], Some(&json!({"lastname": "One"}))),
        part("POST", "leads", &[], Some(&bad)),
        part(
            "PATCH",
            "leads(new_leadgateid='two')",
            &["Prefer: return=representation"],
            Some(&json!({"lastname": "Two"}))
        ),
        part(
            "GET",
            "leads?$select=lastname&$filter=new_leadgateid%20eq%20'two'",
            &[],
            None
        ),
    );
    let reply = dv
        .batch(
            "batch_D",
            body.clone(),
            &[("prefer", "odata.continue-on-error")],
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(
        reply.header("preference-applied"),
        Some("odata.continue-on-error")
    );
    assert_eq!(
        statuses(&reply.text),
        vec![204, 400, 201, 200],
        "{}",
        reply.text
    );
    assert!(reply.text.contains("\"new_leadgateid\":\"two\""));
    assert!(reply.text.contains("\"value\":[{\"@odata.etag\""));
    assert_eq!(h.dataverse_records("lead").len(), 3);

    // Without it, processing stops at the first failure.
    let reply = dv
        .batch("batch_D", body, &[])
        .await
        .expect(StatusCode::BAD_REQUEST);
    assert_eq!(statuses(&reply.text), vec![204, 400], "{}", reply.text);
    assert_eq!(
        h.dataverse_records("lead").len(),
        4,
        "the first part ran, the rest did not"
    );

    // A batch counts as one request.
    assert_eq!(h.stats().requests_total, 4);
}

#[tokio::test]
async fn the_adapters_batch_upserts_by_key_with_absolute_urls() {
    let dv = Dv::start().await;
    let base = format!("{}{V}", dv.base());
    let mut body = String::new();
    for (i, key) in ["p1%2Fdyn%2Fv1", "o''neil%2Fdyn%2Fv1"].iter().enumerate() {
        body.push_str(&format!(
            "--batch_leadgate_7\r\nContent-Type: application/http\r\nContent-Transfer-Encoding: binary\r\nContent-ID: {}\r\n\r\n\
             PATCH {base}/leads(new_leadgateid='{key}')?$select=leadid HTTP/1.1\r\nContent-Type: application/json; charset=utf-8\r\nPrefer: return=representation\r\nMSCRM.SuppressDuplicateDetection: false\r\n\r\n{}\r\n",
            i + 1,
            json!({"lastname": "Doe", "emailaddress1": format!("p{i}@x.com")})
        ));
    }
    body.push_str("--batch_leadgate_7--\r\n");
    let first = dv
        .batch(
            "batch_leadgate_7",
            body.clone(),
            &[("prefer", "odata.continue-on-error")],
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(statuses(&first.text), vec![201, 201], "{}", first.text);
    let again = dv
        .batch(
            "batch_leadgate_7",
            body,
            &[("prefer", "odata.continue-on-error")],
        )
        .await
        .expect(StatusCode::OK);
    assert_eq!(statuses(&again.text), vec![200, 200], "{}", again.text);
    let h = dv.handle();
    let keys: Vec<String> = h
        .dataverse_records("lead")
        .iter()
        .map(|r| r.text("new_leadgateid").unwrap().to_owned())
        .collect();
    assert_eq!(keys, ["p1/dyn/v1", "o'neil/dyn/v1"]);
    assert_eq!(h.creates(Some(Crm::Dynamics), &[], &[]).len(), 2);
}

#[tokio::test]
async fn a_batch_of_more_than_1000_requests_is_refused() {
    let dv = Dv::start().await;
    let mut body = String::new();
    for _ in 0..1001 {
        body.push_str("--b\r\n");
        body.push_str(&part("GET", "leads?$top=1", &[], None));
    }
    body.push_str("--b--\r\n");
    let (code, message) = dv
        .batch("b", body, &[])
        .await
        .expect(StatusCode::BAD_REQUEST)
        .error();
    assert_eq!(code, "0x0");
    assert!(message.contains("maximum number of '1000'"), "{message}");
}

#[tokio::test]
async fn service_protection_answers_429_with_retry_after() {
    let dv = Dv::start().await;
    let h = dv.handle();
    h.set_dataverse_request_limit(3);
    for remaining in ["2", "1", "0"] {
        let r = dv.get("/leads?$top=1").await.expect(StatusCode::OK);
        assert_eq!(
            r.header("x-ms-ratelimit-burst-remaining-xrm-requests"),
            Some(remaining)
        );
    }
    let refused = dv.get("/leads").await.expect(StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=300).contains(&retry), "{retry}");
    assert_eq!(
        refused.error(),
        (
            "0x80072322".to_owned(),
            "Number of requests exceeded the limit of 3 over time window of 300 seconds."
                .to_owned()
        )
    );
    assert_eq!(h.dataverse_requests_used(&format!("token:{TOKEN}")), 3);
    assert_eq!(h.stats().rate_limited, 1);

    // Concurrency: one at a time, and a slow answer holds its place.
    h.set_dataverse_limits(DataverseLimits {
        concurrent: 1,
        ..DataverseLimits::default()
    });
    h.set_faults(Faults {
        latency_ms: 400,
        ..Faults::default()
    });
    let (a, b) = tokio::join!(dv.get("/leads"), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        dv.get("/leads").await
    });
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(b.status, StatusCode::TOO_MANY_REQUESTS, "{}", b.text);
    assert_eq!(
        b.error(),
        (
            "0x80072326".to_owned(),
            "Number of concurrent requests exceeded the limit of 1.".to_owned()
        )
    );
    h.set_faults(Faults::default());

    // Combined execution time.
    h.set_dataverse_limits(DataverseLimits {
        execution_ms: 300,
        ..DataverseLimits::default()
    });
    let refused = dv.get("/leads").await.expect(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.error().0, "0x80072321");

    // An injected storm has the same shape.
    h.set_dataverse_limits(DataverseLimits::default());
    h.reset();
    h.set_faults(Faults {
        rate_limit_next: 1,
        ..Faults::default()
    });
    let storm = dv.get("/leads").await.expect(StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(storm.header("retry-after"), Some("1"));
    assert_eq!(storm.error().0, "0x80072322");
    dv.get("/leads").await.expect(StatusCode::OK);
}

#[tokio::test]
async fn entra_tokens_expire_with_a_401_challenge_and_a_new_token_works() {
    let dv = Dv::start().await;
    let h = dv.handle();
    let none = dv
        .send(Method::GET, &format!("{V}/leads"), None, None, &[])
        .await
        .expect(StatusCode::UNAUTHORIZED);
    assert_eq!(none.text, "");
    let challenge = none.header("www-authenticate").unwrap();
    assert!(
        challenge.starts_with(&format!(
            "Bearer authorization_uri={}/{}/oauth2/authorize",
            dv.base(),
            leadgate_sim::DATAVERSE_TENANT_ID
        )),
        "{challenge}"
    );

    let token = dv.entra_token().await;
    dv.send(
        Method::POST,
        &format!("{V}/leads"),
        Some(json!({"lastname": "T"}).to_string()),
        Some(&token),
        &[],
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    h.expire_oauth_access_tokens();
    let expired = dv
        .send(Method::GET, &format!("{V}/leads"), None, Some(&token), &[])
        .await
        .expect(StatusCode::UNAUTHORIZED);
    let challenge = expired.header("www-authenticate").unwrap();
    assert!(
        challenge.starts_with("Bearer error=invalid_token, error_description=\"The access token expired\", authorization_uri="),
        "{challenge}"
    );
    assert!(challenge.contains(&format!("resource_id={}/", dv.base())));
    let fresh = dv.entra_token().await;
    assert_ne!(fresh, token);
    let rows = dv
        .send(
            Method::GET,
            &format!("{V}/leads?$select=lastname"),
            None,
            Some(&fresh),
            &[],
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(rows["value"][0]["lastname"], "T");
    assert_eq!(h.dataverse_requests_used("entra"), 2);
}

#[tokio::test]
async fn faults_outages_and_silent_writes() {
    let dv = Dv::start().await;
    let h = dv.handle();
    h.set_faults(Faults {
        fail_silently_next: 1,
        ..Faults::default()
    });
    let silent = dv
        .post("/leads", json!({"lastname": "Ghost"}), &[])
        .await
        .expect(StatusCode::NO_CONTENT);
    let id = id_in(silent.header("odata-entityid").unwrap());
    assert!(
        h.dataverse_record("lead", &id).is_none(),
        "answered success, stored nothing"
    );
    assert_eq!(h.stats().writes_dropped, 1);
    assert!(h.creates(Some(Crm::Dynamics), &[], &[]).is_empty());
    dv.get(&format!("/leads({id})"))
        .await
        .expect(StatusCode::NOT_FOUND);

    h.set_faults(Faults {
        error_5xx_next: 3,
        ..Faults::default()
    });
    let statuses = [
        dv.get("/leads").await.status,
        dv.get("/leads").await.status,
        dv.get("/leads").await.status,
    ];
    assert_eq!(
        statuses,
        [
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::INTERNAL_SERVER_ERROR
        ]
    );
    h.set_faults(Faults::default());
    dv.get("/leads").await.expect(StatusCode::OK);
    h.set_faults(Faults {
        outage: true,
        ..Faults::default()
    });
    dv.get("/leads")
        .await
        .expect(StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn control_routes() {
    let dv = Dv::start().await;
    dv.post(
        "/contacts",
        json!({"lastname": "C", "emailaddress1": "c@x.io"}),
        &[],
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let client = &dv.client;
    let base = dv.base();
    let records: Value = client
        .get(format!(
            "{base}/_sim/dataverse/records?table=contact&email=C@x.io"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(records["count"], 1);
    assert_eq!(records["results"][0]["table"], "contact");
    let key = client
        .post(format!("{base}/_sim/dataverse/keys"))
        .json(&json!({"table": "contact", "columns": ["new_crmkey"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(key.status(), StatusCode::OK);
    dv.patch("/contacts(new_crmkey='z')", json!({"lastname": "Z"}), &[])
        .await
        .expect(StatusCode::NO_CONTENT);
    let limits: Value = client
        .post(format!("{base}/_sim/dataverse/limits"))
        .json(&json!({"requests": 10}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        limits,
        json!({"requests": 10, "window_ms": 300000, "execution_ms": 1200000, "concurrent": 52})
    );
    let creates: Value = client
        .get(format!("{base}/_sim/creates?crm=dynamics"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(creates["count"], 2);
}

#[tokio::test]
async fn create_multiple_and_upsert_multiple_are_all_or_nothing() {
    let dv = Dv::start().await;
    let h = dv.handle();
    let created = dv
        .post(
            "/contacts/Microsoft.Dynamics.CRM.CreateMultiple",
            json!({"Targets": [
                {"@odata.type": "Microsoft.Dynamics.CRM.contact", "lastname": "A"},
                {"@odata.type": "Microsoft.Dynamics.CRM.contact", "lastname": "B"},
            ]}),
            &[],
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(created["Ids"].as_array().unwrap().len(), 2);
    let failed = dv
        .post(
            "/contacts/Microsoft.Dynamics.CRM.CreateMultiple",
            json!({"Targets": [{"lastname": "C"}, {"lastname": "D", "foo": 1}]}),
            &[],
        )
        .await
        .expect(StatusCode::BAD_REQUEST)
        .error();
    assert_eq!(failed.0, "0x80048d19");
    assert_eq!(
        h.dataverse_records("contact").len(),
        2,
        "nothing of a failed call is kept"
    );
    let targets = json!({"Targets": [
        {"@odata.type": "Microsoft.Dynamics.CRM.lead", "@odata.id": "leads(new_leadgateid='k1')", "new_leadgateid": "k1", "lastname": "One"},
        {"@odata.type": "Microsoft.Dynamics.CRM.lead", "new_leadgateid": "k2", "lastname": "Two"},
    ]});
    let first = dv
        .post(
            "/leads/Microsoft.Dynamics.CRM.UpsertMultiple",
            targets.clone(),
            &[],
        )
        .await
        .expect(StatusCode::OK)
        .json();
    let again = dv
        .post("/leads/Microsoft.Dynamics.CRM.UpsertMultiple", targets, &[])
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(first["Ids"], again["Ids"]);
    assert_eq!(h.dataverse_records("lead").len(), 2);
    assert_eq!(h.stats().records_created, 4);
    assert_eq!(h.stats().records_updated, 2);
}

#[tokio::test]
async fn entity_definitions_name_the_entity_sets_keys_and_choices() {
    let dv = Dv::start().await;
    let found = dv
        .get("/EntityDefinitions?$select=LogicalName,EntitySetName,PrimaryIdAttribute&$filter=LogicalName%20eq%20'lead'")
        .await
        .expect(StatusCode::OK)
        .json();
    let value = found["value"].as_array().unwrap();
    assert_eq!(value.len(), 1);
    assert_eq!(value[0]["EntitySetName"], "leads");
    assert_eq!(value[0]["PrimaryIdAttribute"], "leadid");
    assert!(value[0]["MetadataId"].is_string());
    assert!(value[0].get("SchemaName").is_none());
    let choices = dv
        .get("/EntityDefinitions(LogicalName='lead')/Attributes/Microsoft.Dynamics.CRM.PicklistAttributeMetadata?$select=LogicalName&$expand=OptionSet($select=Options)")
        .await
        .expect(StatusCode::OK)
        .json();
    let source = choices["value"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["LogicalName"] == "leadsourcecode")
        .unwrap()
        .clone();
    assert_eq!(
        source["OptionSet"]["Options"][7]["Label"]["LocalizedLabels"][0]["Label"],
        "Web"
    );
    let keys = dv
        .get("/EntityDefinitions(LogicalName='contact')/Keys")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(keys["value"][0]["KeyAttributes"], json!(["new_leadgateid"]));
    assert_eq!(keys["value"][0]["EntityKeyIndexStatus"], "Active");
}

/// The lookups the store answers from its indexes (upsert by alternate
/// key, duplicate detection, the key check, `$filter` equality) follow
/// every change: a changed email or key value, a delete, a dropped write
/// rolled back, a key defined later, a reset.
#[tokio::test]
async fn lookups_follow_changed_deleted_and_rolled_back_rows() {
    let dv = Dv::start().await;
    let h = dv.handle();
    let detect = [("MSCRM.SuppressDuplicateDetection", "false")];
    let representation = [("Prefer", "return=representation")];
    let ids = |reply: Reply| -> Vec<String> {
        reply.expect(StatusCode::OK).json()["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["leadid"].as_str().unwrap().to_owned())
            .collect()
    };
    let filter = |text: &str| format!("/leads?$select=leadid&$filter={}", text.replace(' ', "%20"));
    let first = dv
        .patch(
            "/leads(new_leadgateid='k1')",
            json!({"lastname": "Doe", "emailaddress1": "a@x.io"}),
            &representation,
        )
        .await
        .expect(StatusCode::CREATED)
        .json()["leadid"]
        .as_str()
        .unwrap()
        .to_owned();

    // The email changes: duplicate detection and $filter follow it.
    dv.patch(
        &format!("/leads({first})"),
        json!({"emailaddress1": "b@x.io"}),
        &[],
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let refused = dv
        .post(
            "/leads",
            json!({"lastname": "B", "emailaddress1": "B@x.io"}),
            &detect,
        )
        .await
        .expect(StatusCode::INTERNAL_SERVER_ERROR)
        .error();
    assert_eq!(refused.0, "0x80040333");
    assert_eq!(
        ids(dv.get(&filter("emailaddress1 eq 'b@x.io'")).await),
        vec![first.clone()]
    );
    dv.post(
        "/leads",
        json!({"lastname": "F", "emailaddress1": "a@x.io"}),
        &detect,
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let fresh = ids(dv.get(&filter("emailaddress1 eq 'A@x.io'")).await);
    assert_eq!(fresh.len(), 1);
    assert_ne!(fresh[0], first);

    // The key value changes: the old one addresses nothing, the new one
    // the row.
    dv.patch(
        &format!("/leads({first})"),
        json!({"new_leadgateid": "k2"}),
        &[],
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    dv.get("/leads(new_leadgateid='k1')")
        .await
        .expect(StatusCode::NOT_FOUND);
    let k2 = dv
        .get("/leads(new_leadgateid='K2')")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(k2["leadid"], json!(first));

    // A write the fault injector drops is rolled back with its index
    // entries: the row keeps its email.
    h.set_faults(Faults {
        fail_silently_next: 1,
        ..Faults::default()
    });
    dv.patch(
        &format!("/leads({first})"),
        json!({"emailaddress1": "c@x.io"}),
        &[],
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    assert!(ids(dv.get(&filter("emailaddress1 eq 'c@x.io'")).await).is_empty());
    assert_eq!(
        ids(dv.get(&filter("emailaddress1 eq 'b@x.io'")).await),
        vec![first.clone()]
    );

    // Deleted, then upserted by the same key: a new row.
    dv.call(Method::DELETE, &format!("/leads({first})"), None, &[])
        .await
        .expect(StatusCode::NO_CONTENT);
    assert!(
        ids(dv
            .get(&filter(
                "new_leadgateid eq 'k2' or emailaddress1 eq 'b@x.io'"
            ))
            .await)
        .is_empty()
    );
    let again = dv
        .patch(
            "/leads(new_leadgateid='k2')",
            json!({"lastname": "Doe", "emailaddress1": "b@x.io"}),
            &representation,
        )
        .await
        .expect(StatusCode::CREATED)
        .json()["leadid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(again, first);

    // A key defined after rows hold values addresses them at once.
    assert!(h.define_dataverse_column("lead", "new_code", 20));
    dv.patch(&format!("/leads({again})"), json!({"new_code": "C-1"}), &[])
        .await
        .expect(StatusCode::NO_CONTENT);
    assert!(h.define_dataverse_alternate_key("lead", "new_code"));
    let by_code = dv
        .get("/leads(new_code='c-1')")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(by_code["leadid"], json!(again));
    let taken = dv
        .post("/leads", json!({"lastname": "T", "new_code": "c-1"}), &[])
        .await
        .expect(StatusCode::PRECONDITION_FAILED)
        .error();
    assert_eq!(taken.0, "0x80060892");

    // Reset: nothing is found, the key creates again.
    h.reset();
    assert!(ids(dv.get(&filter("emailaddress1 eq 'b@x.io'")).await).is_empty());
    dv.patch(
        "/leads(new_leadgateid='k2')",
        json!({"lastname": "Doe"}),
        &representation,
    )
    .await
    .expect(StatusCode::CREATED);
}
