//! Each CRM's own notification scheme, verified by its adapter through the
//! host with a secret the adapter never sees: Salesforce outbound messages
//! (SOAP, the sending org's id, answered with the `<Ack>true</Ack>`
//! Salesforce waits for), Zoho notifications (the channel token in the
//! body) and Dataverse webhooks (the service endpoint's key, as `?code=`
//! or a header). The bodies are the vendors' documented shapes.

use leadgate_e2e::{TestEnv, refresh_token_grant};
use leadgate_sim::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SimConfig};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ORG_ID: &str = "00D5e000000ABCDEAA";
const ZOHO_TOKEN: &str = "TOKEN_FOR_VERIFICATION_OF_1000000068001";
const DATAVERSE_KEY: &str = "service-endpoint-key-0001";

fn config() -> String {
    format!(
        "[destinations.salesforce]\nadapter = \"salesforce\"\nmapping = \"salesforce.yaml\"\n\
         allowed_hosts = [\"127.0.0.1\"]\n\
         [destinations.salesforce.secrets]\norganization-id = \"{ORG_ID}\"\n\
         {sf_grant}\
         [destinations.zoho]\nadapter = \"zoho\"\nmapping = \"zoho.yaml\"\n\
         allowed_hosts = [\"127.0.0.1\"]\n\
         [destinations.zoho.secrets]\nnotification-token = \"{ZOHO_TOKEN}\"\n\
         {zoho_grant}\
         [destinations.dynamics]\nadapter = \"dynamics\"\nmapping = \"dynamics.yaml\"\n\
         allowed_hosts = [\"127.0.0.1\"]\n\
         [destinations.dynamics.config]\norg-url = \"{{sim}}\"\n\
         [destinations.dynamics.secrets]\nwebhook-key = \"{DATAVERSE_KEY}\"\n\
         [destinations.dynamics.oauth]\ngrant = \"client_credentials\"\n\
         token_url = \"{{sim}}/e2e-tenant/oauth2/v2.0/token\"\n\
         client_id = \"{DEFAULT_CLIENT_ID}\"\nclient_secret = \"{DEFAULT_CLIENT_SECRET}\"\n\
         scope = \"{{sim}}/.default\"\n",
        sf_grant = refresh_token_grant("salesforce", "/services/oauth2/token"),
        zoho_grant = refresh_token_grant("zoho", "/oauth/v2/token"),
    )
}

fn outbound_message(org: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
 <soapenv:Body>
  <notifications xmlns="http://soap.sforce.com/2005/09/outbound">
   <OrganizationId>{org}</OrganizationId>
   <ActionId>04k5e000000ABCDAA0</ActionId>
   <SessionId xsi:nil="true"/>
   <EnterpriseUrl>https://acme.my.salesforce.com/services/Soap/c/62.0/00D5e000000ABCD</EnterpriseUrl>
   <PartnerUrl>https://acme.my.salesforce.com/services/Soap/u/62.0/00D5e000000ABCD</PartnerUrl>
   <Notification>
    <Id>04l5e000000ABCDAA1</Id>
    <sObject xsi:type="sf:Lead" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>00Q5e000001ABCDEA2</sf:Id>
     <sf:Status>Working - Contacted</sf:Status>
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>"#
    )
}

fn zoho_notification(token: &str) -> Value {
    json!({"server_time":1700000000000u64,"query_params":{},"module":"Leads",
           "resource_uri":"https://www.zohoapis.com/crm/v8/Leads","ids":["4150868000001234001"],
           "affected_fields":[{"4150868000001234001":["Lead_Status"]}],
           "operation":"update","channel_id":"1000000068001","token":token})
}

/// A Dataverse notification about lead `n`.
fn dataverse_context(n: u32) -> Value {
    json!({"MessageName":"Update","PrimaryEntityName":"lead",
           "PrimaryEntityId":format!("6f3e1c2a-0000-4000-8000-00000000000{n}"),"Stage":40,"Mode":1,"Depth":1,
           "OrganizationId":"0b1e0c2a-0000-4000-8000-0000000000aa","OrganizationName":"org",
           "OperationCreatedOn":"/Date(1506409448000-0700)/",
           "InputParameters":[{"key":"Target","value":{"LogicalName":"lead",
               "Id":format!("6f3e1c2a-0000-4000-8000-00000000000{n}"),
               "Attributes":[{"key":"statuscode","value":{"Value":2}}]}}],
           "OutputParameters":[],"PreEntityImages":[],"PostEntityImages":[],"SharedVariables":[]})
}

async fn post(
    env: &TestEnv,
    path: &str,
    content_type: &str,
    headers: &[(&str, &str)],
    body: String,
) -> anyhow::Result<(StatusCode, String, String)> {
    let mut request = env
        .client
        .post(env.url(path))
        .header("content-type", content_type);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.body(body).send().await?;
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok((status, content_type, response.text().await?))
}

#[tokio::test]
async fn each_crms_own_notifications_are_verified_with_host_held_secrets() -> anyhow::Result<()> {
    let env = TestEnv::start(SimConfig::default(), &config()).await?;
    let xml = "text/xml; charset=utf-8";

    // Salesforce: acknowledged the SOAP way, or it sends again for a day.
    let (status, content_type, body) = post(
        &env,
        "/v1/webhooks/salesforce",
        xml,
        &[("soapaction", "\"\"")],
        outbound_message(ORG_ID),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(content_type.starts_with("text/xml"), "{content_type}");
    assert!(body.contains("<Ack>true</Ack>"), "{body}");
    let (status, _, body) = post(
        &env,
        "/v1/webhooks/salesforce",
        xml,
        &[],
        outbound_message("00D000000000666AAA"),
    )
    .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "another org: {body}");
    assert!(!body.contains("Ack"), "{body}");

    // Zoho: the channel token echoed in the body.
    let json_type = "application/json";
    let (status, _, body) = post(
        &env,
        "/v1/webhooks/zoho",
        json_type,
        &[],
        zoho_notification(ZOHO_TOKEN).to_string(),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body)?["received"], 1);
    let (status, _, _) = post(
        &env,
        "/v1/webhooks/zoho",
        json_type,
        &[],
        zoho_notification("guessed").to_string(),
    )
    .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Dataverse: the service endpoint's key, in the query or a header.
    let context = dataverse_context(1).to_string();
    let (status, _, body) = post(
        &env,
        &format!("/v1/webhooks/dynamics?code={DATAVERSE_KEY}"),
        json_type,
        &[("x-ms-dynamics-entity-name", "lead")],
        context.clone(),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, body) = post(
        &env,
        "/v1/webhooks/dynamics",
        json_type,
        &[("x-webhook-key", DATAVERSE_KEY)],
        dataverse_context(2).to_string(),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _, _) = post(
        &env,
        "/v1/webhooks/dynamics",
        json_type,
        &[],
        context.clone(),
    )
    .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "no key");

    // Each delivery again (a captured request replayed, or the CRM
    // retrying after a lost answer): answered as before, nothing taken
    // twice. A replay with a wrong secret is still refused.
    let (status, _, body) = post(
        &env,
        "/v1/webhooks/salesforce",
        xml,
        &[("soapaction", "\"\"")],
        outbound_message(ORG_ID),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body.contains("<Ack>true</Ack>"),
        "acknowledged again: {body}"
    );
    let (status, _, body) = post(
        &env,
        "/v1/webhooks/zoho",
        json_type,
        &[],
        zoho_notification(ZOHO_TOKEN).to_string(),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body)?["replayed"], true);
    let (status, _, body) = post(
        &env,
        &format!("/v1/webhooks/dynamics?code={DATAVERSE_KEY}"),
        json_type,
        &[],
        context.clone(),
    )
    .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body)?["replayed"], true);
    let (status, _, _) = post(
        &env,
        "/v1/webhooks/dynamics?code=guessed",
        json_type,
        &[],
        context,
    )
    .await?;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a replay with a wrong key"
    );
    assert_eq!(
        env.metric("leadgate_webhook_replays_total").await?,
        Some(3.0)
    );

    // One field event each: Salesforce Status, Zoho Lead_Status and
    // Dataverse statuscode twice.
    let events = env
        .metric("leadgate_webhook_events_total")
        .await?
        .unwrap_or(0.0);
    assert_eq!(events, 4.0);
    let refused = env
        .metric("leadgate_webhook_rejected_total")
        .await?
        .unwrap_or(0.0);
    assert_eq!(refused, 4.0);
    env.stop().await
}
