//! The Salesforce personality over real HTTP: the paths, headers and JSON
//! a Salesforce client (simple-salesforce, jsforce, an adapter) uses.

mod common;

use leadgate_sim::{
    Crm, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_REFRESH_TOKEN, DuplicateRuleAction,
    Faults, SimConfig, SimHandle, Simulator,
};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use common::Reply;

const TOKEN: &str = "sim-token";
/// simple-salesforce's default API version.
const V: &str = "/services/data/v59.0";

struct Sf {
    sim: Simulator,
    client: Client,
}

impl Sf {
    async fn start() -> Sf {
        Self::with(SimConfig::default()).await
    }

    async fn with(config: SimConfig) -> Sf {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Sf {
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

    async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Reply::of(request).await
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call_with(method, path, body, Some(TOKEN), &[]).await
    }

    async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, &format!("{V}{path}"), None).await
    }

    async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, &format!("{V}{path}"), Some(body))
            .await
    }

    async fn patch(&self, path: &str, body: Value) -> Reply {
        self.call(Method::PATCH, &format!("{V}{path}"), Some(body))
            .await
    }

    async fn lead(&self, email: &str) -> String {
        let reply = self
            .post(
                "/sobjects/Lead/",
                json!({"FirstName": "Jane", "LastName": "Doe", "Company": "Acme", "Email": email}),
            )
            .await
            .expect(StatusCode::CREATED);
        reply.json()["id"].as_str().unwrap().to_owned()
    }

    /// A fresh access token from the Salesforce token endpoint.
    async fn oauth_token(&self) -> String {
        let form = format!(
            "grant_type=refresh_token&refresh_token={DEFAULT_REFRESH_TOKEN}&client_id={DEFAULT_CLIENT_ID}&client_secret={DEFAULT_CLIENT_SECRET}"
        );
        let response = self
            .client
            .post(self.url("/services/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert!(
            body.get("expires_in").is_none(),
            "Salesforce sends no expires_in"
        );
        body["access_token"].as_str().unwrap().to_owned()
    }
}

fn upsert_records(records: Value, all_or_none: bool) -> Value {
    json!({"allOrNone": all_or_none, "records": records})
}

#[tokio::test]
async fn create_read_and_upsert_created_then_updated() {
    let sf = Sf::start().await;
    // simple-salesforce: sf.Lead.create → POST …/sobjects/Lead/ (trailing slash).
    let created = sf
        .post(
            "/sobjects/Lead/",
            json!({"FirstName": "Jane", "LastName": "Doe", "Company": "Acme", "Email": "jane@example.com"}),
        )
        .await
        .expect(StatusCode::CREATED);
    let body = created.json();
    let id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(body, json!({"id": id, "success": true, "errors": []}));
    assert_eq!(id.len(), 18);
    assert!(id.starts_with("00Q"));
    assert_eq!(
        created.header("sforce-limit-info"),
        Some("api-usage=1/100000")
    );

    // sf.Lead.get(id)
    let read = sf
        .get(&format!("/sobjects/Lead/{id}"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        read["attributes"],
        json!({"type": "Lead", "url": format!("{V}/sobjects/Lead/{id}")})
    );
    assert_eq!(read["Id"], json!(id));
    assert_eq!(read["Status"], "Open - Not Contacted");
    assert_eq!(read["IsConverted"], false);
    assert_eq!(read["Title"], Value::Null, "unset fields read as null");
    let some = sf
        .get(&format!("/sobjects/Lead/{id}?fields=email,LastName"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        some,
        json!({"attributes": read["attributes"], "Id": id, "Email": "jane@example.com", "LastName": "Doe"})
    );

    // sf.Lead.upsert('Leadgate_Id__c/lg-1', {...}): no match → 201 created.
    let up = sf
        .patch(
            "/sobjects/Lead/Leadgate_Id__c/lg-1",
            json!({"LastName": "Roe", "Company": "Beta", "Email": "rita@example.com"}),
        )
        .await
        .expect(StatusCode::CREATED)
        .json();
    assert_eq!(up["created"], true);
    assert_eq!(up["success"], true);
    let lg1 = up["id"].as_str().unwrap().to_owned();
    // Same value, other case: the one match is updated → 200 created:false.
    let again = sf
        .patch(
            "/sobjects/Lead/leadgate_id__c/LG-1",
            json!({"Title": "CTO"}),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        again,
        json!({"id": lg1, "success": true, "errors": [], "created": false})
    );
    // sf.Lead.get_by_custom_id('Leadgate_Id__c', 'lg-1')
    let by_ext = sf
        .get("/sobjects/Lead/Leadgate_Id__c/lg-1")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        (by_ext["Id"].as_str(), by_ext["Title"].as_str()),
        (Some(lg1.as_str()), Some("CTO"))
    );
    sf.get("/sobjects/Lead/Leadgate_Id__c/nope")
        .await
        .expect(StatusCode::NOT_FOUND);

    // PATCH by id → 204 no body.
    let patched = sf
        .patch(
            &format!("/sobjects/Lead/{id}"),
            json!({"phone": "+1 415 555 0100"}),
        )
        .await
        .expect(StatusCode::NO_CONTENT);
    assert!(patched.text.is_empty());
    let stored = sf.handle().salesforce_record(&id).unwrap();
    assert_eq!(stored.text("Phone"), Some("+1 415 555 0100"));
    // 15-character ids work too.
    sf.get(&format!("/sobjects/Lead/{}", &id[..15]))
        .await
        .expect(StatusCode::OK);

    let h = sf.handle();
    assert_eq!(h.salesforce_records("Lead").len(), 2);
    assert_eq!(h.salesforce_count_by_email("lead", "JANE@example.com"), 1);
    assert_eq!(
        h.creates(Some(Crm::Salesforce), &["jane@example.com"], &[])
            .len(),
        1
    );
    assert_eq!(
        h.creates(Some(Crm::Salesforce), &["rita@example.com"], &[])
            .len(),
        1
    );
    let stats = h.stats();
    assert_eq!((stats.records_created, stats.records_updated), (2, 2));
}

#[tokio::test]
async fn upsert_path_and_body_rules() {
    let sf = Sf::start().await;
    // The External ID field may not be repeated in the body.
    let e = sf
        .patch(
            "/sobjects/Contact/External_Id__c/X1",
            json!({"LastName": "Doe", "External_Id__c": "X1"}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(
        e,
        json!([{"errorCode": "INVALID_FIELD", "message": "The External_Id__c field should not be specified in the sobject data."}])
    );
    // A field that is not an External ID (Email is not) is not a resource.
    let e = sf
        .patch(
            "/sobjects/Contact/Email/jane@example.com",
            json!({"LastName": "Doe"}),
        )
        .await
        .expect(StatusCode::NOT_FOUND)
        .json();
    assert_eq!(
        e,
        json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}])
    );
    // Unknown field, required fields, bad email: Salesforce's 400 arrays.
    let e = sf
        .post(
            "/sobjects/Lead",
            json!({"LastName": "Doe", "Company": "A", "Foo__c": 1}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(
        e,
        json!([{"errorCode": "INVALID_FIELD", "message": "No such column 'Foo__c' on sobject of type Lead"}])
    );
    let e = sf
        .post(
            "/sobjects/Lead",
            json!({"FirstName": "Jo", "Email": "not-an-email"}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(
        e,
        json!([
            {"errorCode": "INVALID_EMAIL_ADDRESS", "message": "Email: invalid email address: not-an-email", "fields": ["Email"]},
            {"errorCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [LastName, Company]", "fields": ["LastName", "Company"]},
        ])
    );
    // Blanking a required field on update fails too.
    let id = sf.lead("jane@example.com").await;
    let e = sf
        .patch(&format!("/sobjects/Lead/{id}"), json!({"LastName": ""}))
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(e[0]["errorCode"], "REQUIRED_FIELD_MISSING");
    // A unique External ID value belongs to one record.
    sf.patch(
        "/sobjects/Lead/External_Id__c/E1",
        json!({"LastName": "A", "Company": "C"}),
    )
    .await
    .expect(StatusCode::CREATED);
    let e = sf
        .patch(
            &format!("/sobjects/Lead/{id}"),
            json!({"External_Id__c": "e1"}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(e[0]["errorCode"], "DUPLICATE_VALUE");
    assert!(e[0]["message"].as_str().unwrap().starts_with(
        "duplicate value found: External_Id__c duplicates value on record with id: 00Q"
    ));
    // updateOnly: no create.
    sf.patch(
        "/sobjects/Lead/External_Id__c/E9?updateOnly=true",
        json!({"Title": "x"}),
    )
    .await
    .expect(StatusCode::NOT_FOUND);
    // A non-unique External ID shared by two records: 300 with their URLs.
    assert!(
        sf.handle()
            .define_salesforce_external_id("Lead", "Crm_Key__c", false)
    );
    let a = sf.lead("a@example.com").await;
    let b = sf.lead("b@example.com").await;
    for lead in [&a, &b] {
        sf.patch(
            &format!("/sobjects/Lead/{lead}"),
            json!({"Crm_Key__c": "K"}),
        )
        .await
        .expect(StatusCode::NO_CONTENT);
    }
    let choices = sf
        .patch("/sobjects/Lead/Crm_Key__c/K", json!({"Title": "x"}))
        .await
        .expect(StatusCode::MULTIPLE_CHOICES)
        .json();
    assert_eq!(
        choices,
        json!([
            format!("{V}/sobjects/Lead/{a}"),
            format!("{V}/sobjects/Lead/{b}")
        ])
    );
    // Ids: wrong object, not an id, no such record.
    let e = sf
        .get(&format!("/sobjects/Contact/{a}"))
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(e[0]["errorCode"], "MALFORMED_ID");
    let e = sf
        .get("/sobjects/Lead/bogus")
        .await
        .expect(StatusCode::NOT_FOUND)
        .json();
    assert_eq!(
        e[0]["message"],
        "Provided external ID field does not exist or is not accessible: bogus"
    );
    sf.get("/sobjects/Lead/00Q5S000000ZZZZAAA")
        .await
        .expect(StatusCode::NOT_FOUND);
    sf.get("/sobjects/Account/001000000000000AAA")
        .await
        .expect(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn collections_upsert_reports_each_record_in_order() {
    let sf = Sf::start().await;
    let existing = sf
        .patch(
            "/sobjects/Lead/Leadgate_Id__c/p-1",
            json!({"LastName": "One", "Company": "C"}),
        )
        .await
        .expect(StatusCode::CREATED)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let lead = |ext: &str, extra: Value| {
        let mut r = json!({"attributes": {"type": "Lead"}, "Leadgate_Id__c": ext, "LastName": "L", "Company": "C"});
        for (k, v) in extra.as_object().unwrap() {
            r[k] = v.clone();
        }
        r
    };
    let records = json!([
        lead("p-1", json!({"Title": "updated"})),
        lead("p-2", json!({"Email": "p2@example.com"})),
        lead("p-3", json!({"LastName": null})),
        lead("p-4", json!({"Email": "bad@"})),
        lead("p-5", json!({})),
        lead("P-5", json!({})),
        {"attributes": {"type": "Lead"}, "LastName": "NoKey", "Company": "C"},
    ]);
    // sf.restful('composite/sobjects/Lead/Leadgate_Id__c', method='PATCH', json=...)
    let reply = sf
        .patch(
            "/composite/sobjects/Lead/Leadgate_Id__c",
            upsert_records(records, false),
        )
        .await
        .expect(StatusCode::OK);
    let results = reply.json();
    let results = results.as_array().unwrap();
    assert_eq!(results.len(), 7);
    assert_eq!(
        results[0],
        json!({"id": existing, "success": true, "errors": [], "created": false})
    );
    assert_eq!(results[1]["created"], true);
    assert_eq!(results[1]["success"], true);
    let p2 = results[1]["id"].as_str().unwrap();
    assert_eq!(
        results[2],
        json!({"success": false, "errors": [{"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [LastName]", "fields": ["LastName"]}]})
    );
    assert_eq!(
        results[3],
        json!({"success": false, "errors": [{"statusCode": "INVALID_EMAIL_ADDRESS", "message": "Email: invalid email address: bad@", "fields": ["Email"]}]})
    );
    for (i, value) in [(4, "p-5"), (5, "P-5")] {
        assert_eq!(
            results[i],
            json!({"success": false, "errors": [{"statusCode": "DUPLICATE_VALUE", "message": format!("Duplicate external id specified: {value}"), "fields": ["Leadgate_Id__c"]}]})
        );
    }
    assert_eq!(results[6]["errors"][0]["statusCode"], "MISSING_ARGUMENT");
    // Only the good ones were written.
    let h = sf.handle();
    assert_eq!(h.salesforce_records("Lead").len(), 2);
    assert_eq!(
        h.salesforce_record(&existing).unwrap().text("Title"),
        Some("updated")
    );
    assert_eq!(
        h.salesforce_record(p2).unwrap().text("Leadgate_Id__c"),
        Some("p-2")
    );
    assert_eq!(h.creates(Some(Crm::Salesforce), &[], &[]).len(), 2);

    // Over 200 records: the whole call is refused.
    let many: Vec<Value> = (0..201)
        .map(|i| lead(&format!("m-{i}"), json!({})))
        .collect();
    let e = sf
        .patch(
            "/composite/sobjects/Lead/Leadgate_Id__c",
            upsert_records(json!(many), false),
        )
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(
        e,
        json!([{"errorCode": "EXCEEDED_ID_LIMIT", "message": "record limit reached. cannot submit more than 200 records into this call"}])
    );
    // 200 is fine.
    let many: Vec<Value> = (0..200)
        .map(|i| lead(&format!("m-{i}"), json!({})))
        .collect();
    let ok = sf
        .patch(
            "/composite/sobjects/Lead/Leadgate_Id__c",
            upsert_records(json!(many), false),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert!(ok.as_array().unwrap().iter().all(|r| r["success"] == true));
    // The path's field must be an External ID.
    sf.patch(
        "/composite/sobjects/Lead/Email",
        upsert_records(json!([]), false),
    )
    .await
    .expect(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn all_or_none_rolls_everything_back() {
    let sf = Sf::start().await;
    let existing = sf
        .patch(
            "/sobjects/Contact/External_Id__c/c-1",
            json!({"LastName": "Old"}),
        )
        .await
        .expect(StatusCode::CREATED)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let records = json!([
        {"attributes": {"type": "Contact"}, "External_Id__c": "c-1", "LastName": "New"},
        {"attributes": {"type": "Contact"}, "External_Id__c": "c-2", "LastName": "Two"},
        {"attributes": {"type": "Contact"}, "External_Id__c": "c-3", "Email": "x@example.com"},
    ]);
    let results = sf
        .patch(
            "/composite/sobjects/Contact/External_Id__c",
            upsert_records(records, true),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    let rolled = json!([{"statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK", "message": "Record rolled back because not all records were valid and the request was using AllOrNone header", "fields": []}]);
    assert_eq!(
        results,
        json!([
            // An existing record rolled back keeps its id; a new one has none.
            {"id": existing, "success": false, "errors": rolled},
            {"success": false, "errors": rolled},
            {"success": false, "errors": [{"statusCode": "REQUIRED_FIELD_MISSING", "message": "Required fields are missing: [LastName]", "fields": ["LastName"]}]},
        ])
    );
    let h = sf.handle();
    assert_eq!(h.salesforce_records("Contact").len(), 1);
    assert_eq!(
        h.salesforce_record(&existing).unwrap().text("LastName"),
        Some("Old")
    );

    // Collections create, mixed types, all or none.
    let records = json!([
        {"attributes": {"type": "Lead"}, "LastName": "L", "Company": "C"},
        {"attributes": {"type": "Contact"}, "FirstName": "NoLast"},
    ]);
    let results = sf
        .post("/composite/sobjects", upsert_records(records.clone(), true))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(results[0], json!({"success": false, "errors": rolled}));
    assert_eq!(
        results[1]["errors"][0]["statusCode"],
        "REQUIRED_FIELD_MISSING"
    );
    assert!(h.salesforce_records("Lead").is_empty());
    // Without allOrNone the good one is saved.
    let results = sf
        .post("/composite/sobjects", upsert_records(records, false))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(results[0]["success"], true);
    assert!(results[0]["id"].as_str().unwrap().starts_with("00Q"));
    assert_eq!(results[1]["success"], false);
    assert_eq!(h.salesforce_records("Lead").len(), 1);

    // Retrieve: aligned with the ids, null for one not found.
    let lead = results[0]["id"].as_str().unwrap();
    let got = sf
        .get(&format!(
            "/composite/sobjects/Lead?ids={lead},00Q5S000000ZZZZAAA&fields=Id,LastName"
        ))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        got,
        json!([
            {"attributes": {"type": "Lead", "url": format!("{V}/sobjects/Lead/{lead}")}, "Id": lead, "LastName": "L"},
            null,
        ])
    );
}

#[tokio::test]
async fn duplicate_rule_blocks_new_leads_unless_allow_save() {
    let sf = Sf::start().await;
    let first = sf.lead("dup@example.com").await;
    let e = sf
        .post(
            "/sobjects/Lead",
            json!({"LastName": "Again", "Company": "Acme", "Email": "DUP@example.com"}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(e[0]["errorCode"], "DUPLICATES_DETECTED");
    assert_eq!(e[0]["message"], "Use one of these records?");
    let result = &e[0]["duplicateResult"];
    assert_eq!(result["duplicateRule"], "Standard_Lead_Duplicate_Rule");
    assert_eq!(result["allowSave"], true);
    assert_eq!(result["matchResults"][0]["entityType"], "Lead");
    assert_eq!(
        result["matchResults"][0]["matchRecords"][0]["record"]["Id"],
        json!(first)
    );
    // An upsert that would create is checked too.
    let e = sf
        .patch(
            "/sobjects/Lead/Leadgate_Id__c/new-1",
            json!({"LastName": "Again", "Company": "Acme", "Email": "dup@example.com"}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(e[0]["errorCode"], "DUPLICATES_DETECTED");
    // In a collection: the per-record error, without the matches.
    let records = json!([{"attributes": {"type": "Lead"}, "Leadgate_Id__c": "new-1", "LastName": "A", "Company": "C", "Email": "dup@example.com"}]);
    let results = sf
        .patch(
            "/composite/sobjects/Lead/Leadgate_Id__c",
            upsert_records(records.clone(), false),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        results,
        json!([{"success": false, "errors": [{"statusCode": "DUPLICATES_DETECTED", "message": "Use one of these records?", "fields": []}]}])
    );
    assert_eq!(
        sf.handle()
            .salesforce_count_by_email("Lead", "dup@example.com"),
        1
    );

    // The header lets it through.
    let bypass = [("Sforce-Duplicate-Rule-Header", "allowSave=true")];
    sf.call_with(
        Method::PATCH,
        &format!("{V}/composite/sobjects/Lead/Leadgate_Id__c"),
        Some(upsert_records(records, false)),
        Some(TOKEN),
        &bypass,
    )
    .await
    .expect(StatusCode::OK);
    assert_eq!(
        sf.handle()
            .salesforce_count_by_email("Lead", "dup@example.com"),
        2
    );
    // Updating an existing lead is not checked.
    sf.patch(&format!("/sobjects/Lead/{first}"), json!({"Title": "x"}))
        .await
        .expect(StatusCode::NO_CONTENT);

    // A Block rule ignores the header; with the rule off anything goes.
    sf.handle()
        .set_salesforce_duplicate_rule_action(DuplicateRuleAction::Block);
    let body = json!({"LastName": "Three", "Company": "Acme", "Email": "dup@example.com"});
    let e = sf
        .call_with(
            Method::POST,
            &format!("{V}/sobjects/Lead"),
            Some(body.clone()),
            Some(TOKEN),
            &bypass,
        )
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(e[0]["duplicateResult"]["allowSave"], false);
    sf.handle().set_salesforce_duplicate_rule(false);
    sf.post("/sobjects/Lead", body)
        .await
        .expect(StatusCode::CREATED);
    assert_eq!(
        sf.handle()
            .creates(Some(Crm::Salesforce), &["dup@example.com"], &[])
            .len(),
        3
    );
}

#[tokio::test]
async fn converted_leads_cannot_be_written() {
    let sf = Sf::start().await;
    let lead = sf
        .patch(
            "/sobjects/Lead/Leadgate_Id__c/conv-1",
            json!({"FirstName": "Cy", "LastName": "Vert", "Company": "Acme", "Email": "cy@example.com"}),
        )
        .await
        .expect(StatusCode::CREATED)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let contact = sf
        .handle()
        .convert_salesforce_lead(&lead)
        .expect("converts");
    assert!(contact.starts_with("003"));
    let read = sf
        .get(&format!("/sobjects/Lead/{lead}"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        (
            read["IsConverted"].clone(),
            read["ConvertedContactId"].clone()
        ),
        (json!(true), json!(contact))
    );
    assert_eq!(read["Status"], "Closed - Converted");
    let c = sf
        .get(&format!("/sobjects/Contact/{contact}"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(c["Email"], "cy@example.com");

    let refused = json!([{"errorCode": "CANNOT_UPDATE_CONVERTED_LEAD", "message": "cannot reference converted lead", "fields": []}]);
    let e = sf
        .patch(&format!("/sobjects/Lead/{lead}"), json!({"Title": "x"}))
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(e, refused);
    let e = sf
        .patch(
            "/sobjects/Lead/Leadgate_Id__c/conv-1",
            json!({"Title": "x"}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(e, refused);
    let records =
        json!([{"attributes": {"type": "Lead"}, "Leadgate_Id__c": "conv-1", "Title": "x"}]);
    let results = sf
        .patch(
            "/composite/sobjects/Lead/Leadgate_Id__c",
            upsert_records(records, false),
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        results,
        json!([{"success": false, "errors": [{"statusCode": "CANNOT_UPDATE_CONVERTED_LEAD", "message": "cannot reference converted lead", "fields": []}]}])
    );
    // A new lead for the same person now matches the contact.
    let e = sf
        .post(
            "/sobjects/Lead",
            json!({"LastName": "Vert", "Company": "Acme", "Email": "cy@example.com"}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(
        e[0]["duplicateResult"]["matchResults"][0]["entityType"],
        "Contact"
    );
    assert_eq!(
        e[0]["duplicateResult"]["matchResults"][0]["matchRecords"][0]["record"]["Id"],
        json!(contact)
    );
    assert!(sf.handle().convert_salesforce_lead(&lead).is_none());
}

#[tokio::test]
async fn soql_query() {
    let sf = Sf::start().await;
    let jane = sf.lead("jane@example.com").await;
    let _other = sf.lead("o'brien@example.com").await;
    // simple-salesforce: sf.query(...) → GET …/query/?q=… (form-encoded).
    let reply = sf
        .call(
            Method::GET,
            &format!(
                "{V}/query/?q=SELECT+Id%2C+Email+FROM+Lead+WHERE+Email+%3D+%27JANE%40example.com%27"
            ),
            None,
        )
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(
        reply,
        json!({"totalSize": 1, "done": true, "records": [
            {"attributes": {"type": "Lead", "url": format!("{V}/sobjects/Lead/{jane}")}, "Id": jane, "Email": "jane@example.com"}
        ]})
    );
    let q = |soql: &str| {
        let mut url = reqwest::Url::parse("http://x/q").unwrap();
        url.query_pairs_mut().append_pair("q", soql);
        format!("/query?{}", url.query().unwrap())
    };
    let escaped = sf
        .get(&q(
            "select email from lead where email = 'o\\'brien@example.com' or email = 'none@x.io'",
        ))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(escaped["records"][0]["Email"], "o'brien@example.com");
    let all = sf
        .get(&q("SELECT Id FROM Lead LIMIT 1"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(all["totalSize"], 1);
    let none = sf
        .get(&q(
            "SELECT Id FROM Contact WHERE Email = 'jane@example.com'",
        ))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(none, json!({"totalSize": 0, "done": true, "records": []}));
    let e = sf
        .get(&q("SELECT Id FROM Lead WHERE"))
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(e[0]["errorCode"], "MALFORMED_QUERY");
    let e = sf
        .get(&q("SELECT Nope__c FROM Lead"))
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(e[0]["errorCode"], "INVALID_FIELD");
    sf.get("/query").await.expect(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn daily_limit_header_and_403_after_it() {
    let sf = Sf::with(SimConfig {
        salesforce_daily_limit: 3,
        ..SimConfig::default()
    })
    .await;
    let limits = sf.get("/limits/").await.expect(StatusCode::OK);
    assert_eq!(limits.header("sforce-limit-info"), Some("api-usage=1/3"));
    assert_eq!(
        limits.json(),
        json!({"DailyApiRequests": {"Max": 3, "Remaining": 2}})
    );
    // The version list needs no session and is not counted.
    let versions = sf
        .call_with(Method::GET, "/services/data/", None, None, &[])
        .await
        .expect(StatusCode::OK);
    assert!(versions.header("sforce-limit-info").is_none());
    assert!(
        versions
            .json()
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["version"] == "59.0")
    );
    sf.lead("a@example.com").await;
    let third = sf
        .get("/sobjects/Lead/describe")
        .await
        .expect(StatusCode::OK);
    assert_eq!(third.header("sforce-limit-info"), Some("api-usage=3/3"));
    for _ in 0..2 {
        let over = sf.get("/limits").await.expect(StatusCode::FORBIDDEN);
        assert_eq!(
            over.json(),
            json!([{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
        );
        assert_eq!(over.header("sforce-limit-info"), Some("api-usage=3/3"));
    }
    assert_eq!(sf.handle().salesforce_api_usage(), (3, 3));
    sf.handle().set_salesforce_daily_limit(10);
    sf.get("/limits").await.expect(StatusCode::OK);
    // An injected 429 storm is a 403 here: Salesforce never sends 429.
    sf.handle().set_faults(Faults {
        rate_limit_next: 1,
        ..Faults::default()
    });
    let storm = sf.get("/limits").await.expect(StatusCode::FORBIDDEN).json();
    assert_eq!(storm[0]["errorCode"], "REQUEST_LIMIT_EXCEEDED");
    assert_eq!(
        storm[0]["message"],
        "ConcurrentRequests (Concurrent API Requests) Limit exceeded."
    );
    assert_eq!(sf.handle().stats().rate_limited, 0);
    // A 5xx burst: the third is Salesforce's UNKNOWN_EXCEPTION.
    sf.handle().set_faults(Faults {
        error_5xx_next: 3,
        ..Faults::default()
    });
    sf.get("/limits").await.expect(StatusCode::BAD_GATEWAY);
    sf.get("/limits")
        .await
        .expect(StatusCode::SERVICE_UNAVAILABLE);
    let e = sf
        .get("/limits")
        .await
        .expect(StatusCode::INTERNAL_SERVER_ERROR)
        .json();
    assert_eq!(e[0]["errorCode"], "UNKNOWN_EXCEPTION");
    // Other paths and versions.
    sf.call(Method::GET, "/services/data/v45.0/limits", None)
        .await
        .expect(StatusCode::NOT_FOUND);
    let e = sf
        .call(Method::GET, "/services/data/v59.0/nothing", None)
        .await
        .expect(StatusCode::NOT_FOUND)
        .json();
    assert_eq!(
        e,
        json!([{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}])
    );
}

#[tokio::test]
async fn expired_oauth_session_is_401_until_refreshed() {
    let sf = Sf::start().await;
    let token = sf.oauth_token().await;
    let path = format!("{V}/limits");
    sf.call_with(Method::GET, &path, None, Some(&token), &[])
        .await
        .expect(StatusCode::OK);
    sf.handle().expire_oauth_access_tokens();
    let expired = sf
        .call_with(Method::GET, &path, None, Some(&token), &[])
        .await
        .expect(StatusCode::UNAUTHORIZED);
    assert_eq!(
        expired.json(),
        json!([{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
    );
    assert!(expired.header("sforce-limit-info").is_none());
    sf.call_with(Method::GET, &path, None, None, &[])
        .await
        .expect(StatusCode::UNAUTHORIZED);
    sf.call_with(Method::GET, &path, None, Some("forged"), &[])
        .await
        .expect(StatusCode::UNAUTHORIZED);
    // A refresh through /services/oauth2/token gives a working session.
    let renewed = sf.oauth_token().await;
    assert_ne!(renewed, token);
    sf.call_with(Method::GET, &path, None, Some(&renewed), &[])
        .await
        .expect(StatusCode::OK);
    // Static tokens expire with expire_tokens and come back with add_token.
    sf.handle().expire_tokens();
    sf.get("/limits").await.expect(StatusCode::UNAUTHORIZED);
    sf.handle().add_token(TOKEN);
    sf.get("/limits").await.expect(StatusCode::OK);
}

#[tokio::test]
async fn silent_writes_and_control_routes() {
    let sf = Sf::start().await;
    sf.handle().set_faults(Faults {
        fail_silently_next: 1,
        ..Faults::default()
    });
    let ghost = sf.lead("ghost@example.com").await;
    assert!(
        sf.handle().salesforce_record(&ghost).is_none(),
        "answered 201, stored nothing"
    );
    assert_eq!(sf.handle().stats().writes_dropped, 1);
    let lead = sf.lead("real@example.com").await;
    assert_ne!(lead, ghost, "ids are not reused");

    let control = |path: &str| format!("{}{path}", sf.sim.base_url());
    let records: Value = sf
        .client
        .get(control(
            "/_sim/salesforce/records?object=lead&email=REAL@example.com",
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(records["count"], 1);
    assert_eq!(records["results"][0]["id"], json!(lead));
    let converted: Value = sf
        .client
        .post(control("/_sim/salesforce/convert"))
        .json(&json!({"lead_id": lead}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(converted["contact_id"].as_str().unwrap().starts_with("003"));
    let status = sf
        .client
        .post(control("/_sim/salesforce/fields"))
        .json(&json!({"object": "Contact", "name": "Score__c"}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    let contact = converted["contact_id"].as_str().unwrap();
    sf.patch(
        &format!("/sobjects/Contact/{contact}"),
        json!({"Score__c": 5}),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let status = sf
        .client
        .post(control("/_sim/salesforce/duplicate-rule"))
        .json(&json!({"on": false}))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::OK);
    sf.lead("real@example.com").await;
    let usage: Value = sf
        .client
        .post(control("/_sim/salesforce/limits"))
        .json(&json!({"daily": 50}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(usage["max"], 50);
    let creates: Value = sf
        .client
        .get(control(
            "/_sim/creates?crm=salesforce&email=real@example.com",
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(creates["count"], 2);
    sf.handle().reset();
    assert!(sf.handle().salesforce_records("Lead").is_empty());
    assert_eq!(sf.handle().salesforce_api_usage(), (0, 50));
}

/// The lookups the store answers from its indexes (External ID, duplicate
/// rule, SOQL equality) follow every change: a changed email or External
/// ID, a delete, a conversion, a field made an External ID later, a reset.
#[tokio::test]
async fn lookups_follow_changed_deleted_and_converted_records() {
    let sf = Sf::start().await;
    let q = |soql: &str| {
        let mut url = reqwest::Url::parse("http://x/q").unwrap();
        url.query_pairs_mut().append_pair("q", soql);
        format!("/query?{}", url.query().unwrap())
    };
    let ids = |reply: Value| -> Vec<String> {
        reply["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["Id"].as_str().unwrap().to_owned())
            .collect()
    };
    let lead = |email: &str| json!({"LastName": "Doe", "Company": "Acme", "Email": email});
    let first = sf
        .patch("/sobjects/Lead/Leadgate_Id__c/k1", lead("a@example.com"))
        .await
        .expect(StatusCode::CREATED)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The email changes: the duplicate rule and SOQL follow it.
    sf.patch(
        &format!("/sobjects/Lead/{first}"),
        json!({"Email": "b@example.com"}),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    let e = sf
        .post("/sobjects/Lead", lead("B@example.com"))
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(
        e[0]["duplicateResult"]["matchResults"][0]["matchRecords"][0]["record"]["Id"],
        json!(first)
    );
    let by_new = sf
        .get(&q("SELECT Id FROM Lead WHERE Email = 'b@EXAMPLE.com'"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(ids(by_new), vec![first.clone()]);
    let fresh = sf.lead("a@example.com").await;
    let by_old = sf
        .get(&q("SELECT Id FROM Lead WHERE Email = 'a@example.com'"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(ids(by_old), vec![fresh.clone()]);

    // The External ID changes: the old value is free, the new one matches.
    sf.patch(
        &format!("/sobjects/Lead/{first}"),
        json!({"Leadgate_Id__c": "k2"}),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    sf.get("/sobjects/Lead/Leadgate_Id__c/k1")
        .await
        .expect(StatusCode::NOT_FOUND);
    let k2 = sf
        .get("/sobjects/Lead/Leadgate_Id__c/K2")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(k2["Id"], json!(first));

    // Deleted, then upserted by the same value: a new record.
    sf.call(Method::DELETE, &format!("{V}/sobjects/Lead/{first}"), None)
        .await
        .expect(StatusCode::NO_CONTENT);
    let gone = sf
        .get(&q(
            "SELECT Id FROM Lead WHERE Leadgate_Id__c = 'k2' OR Email = 'b@example.com'",
        ))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(gone["totalSize"], 0);
    let again = sf
        .patch("/sobjects/Lead/Leadgate_Id__c/k2", lead("b@example.com"))
        .await
        .expect(StatusCode::CREATED)
        .json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(again, first);

    // Converted, then upserted again: the lead is still the match (and
    // refuses the write); a new lead with its email matches the contact.
    let contact = sf.handle().convert_salesforce_lead(&again).unwrap();
    let e = sf
        .patch("/sobjects/Lead/Leadgate_Id__c/k2", json!({"Title": "x"}))
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(e[0]["errorCode"], "CANNOT_UPDATE_CONVERTED_LEAD");
    let e = sf
        .post("/sobjects/Lead", lead("b@example.com"))
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    let matches = &e[0]["duplicateResult"]["matchResults"];
    assert_eq!(matches.as_array().unwrap().len(), 1);
    assert_eq!(
        matches[0]["matchRecords"][0]["record"]["Id"],
        json!(contact)
    );
    let contacts = sf
        .get(&q("SELECT Id FROM Contact WHERE Email = 'b@example.com'"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(ids(contacts), vec![contact]);

    // A field made an External ID after records hold values is looked up
    // by them at once.
    assert!(
        sf.handle()
            .define_salesforce_field("Lead", "Crm_Key__c", false)
    );
    sf.patch(
        &format!("/sobjects/Lead/{fresh}"),
        json!({"Crm_Key__c": "crm-7"}),
    )
    .await
    .expect(StatusCode::NO_CONTENT);
    assert!(
        sf.handle()
            .define_salesforce_field("Lead", "Crm_Key__c", true)
    );
    let by_key = sf
        .get("/sobjects/Lead/Crm_Key__c/CRM-7")
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(by_key["Id"], json!(fresh));
    let e = sf
        .post(
            "/sobjects/Lead",
            json!({"LastName": "Doe", "Company": "Acme", "Crm_Key__c": "crm-7"}),
        )
        .await
        .expect(StatusCode::BAD_REQUEST)
        .json();
    assert_eq!(e[0]["errorCode"], "DUPLICATE_VALUE");

    // Reset: nothing is found, the values are free again.
    sf.handle().reset();
    let none = sf
        .get(&q("SELECT Id FROM Lead WHERE Email = 'a@example.com'"))
        .await
        .expect(StatusCode::OK)
        .json();
    assert_eq!(none["totalSize"], 0);
    sf.patch("/sobjects/Lead/Leadgate_Id__c/k2", lead("b@example.com"))
        .await
        .expect(StatusCode::CREATED);
}
