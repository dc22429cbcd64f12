//! Source transforms: wasm components chosen per source turn form-builder,
//! Facebook Lead Ads and arbitrary JSON payloads into leads.

use leadgate_e2e::TestEnv;
use leadgate_sim::SimConfig;
use reqwest::StatusCode;
use serde_json::json;

const FORMS_KEY: &str = "test-forms-key-0003";
const FB_KEY: &str = "test-facebook-key-0004";
const CUSTOM_KEY: &str = "test-custom-key-0005";

async fn env() -> anyhow::Result<TestEnv> {
    let extra = format!(
        "[sources.forms]\napi_key = \"{FORMS_KEY}\"\ntransform = \"form-fields\"\n\
         [sources.facebook]\napi_key = \"{FB_KEY}\"\ntransform = \"facebook-leads\"\n\
         [sources.custom]\napi_key = \"{CUSTOM_KEY}\"\ntransform = \"json-path\"\n\
         [sources.custom.transform_config]\nitems = \"$.records[*]\"\n\
         \"field.email\" = \"$.contact.mail\"\n\"field.name\" = \"$.contact.who\"\n"
    );
    TestEnv::start(SimConfig::default(), &extra).await
}

#[tokio::test]
async fn form_builder_payloads_become_delivered_leads() -> anyhow::Result<()> {
    let env = env().await?;
    let body = json!({"form_id": "contact-us", "fields": [
        {"id": "q1", "label": "First name", "value": "Ana"},
        {"id": "q2", "label": "Last name", "value": "Lima"},
        {"id": "user_email", "label": "Your e-mail", "value": " Ana.Lima@Example.com "},
    ]});
    let (status, answer) = env.post_leads(Some(FORMS_KEY), &body.to_string()).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 1);
    env.drain(20).await?;
    let contact = &env.sim().contacts_by_email("ana.lima@example.com")[0];
    assert_eq!(contact.properties["firstname"], "Ana");
    assert_eq!(contact.properties["lastname"], "Lima");

    // A honeypot hit is filtered: accepted, nothing stored.
    let spam = json!({"fields": [{"id": "email", "value": "bot@spam.example"}, {"id": "website_url_hp", "value": "x"}]});
    let (status, answer) = env.post_leads(Some(FORMS_KEY), &spam.to_string()).await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(answer["accepted"], 0);

    // A payload the transform does not understand is named.
    let (status, answer) = env.post_leads(Some(FORMS_KEY), r#"{"nope": 1}"#).await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer["error"]["code"], "transform_malformed");
    env.stop().await
}

#[tokio::test]
async fn a_facebook_page_is_a_batch() -> anyhow::Result<()> {
    let env = env().await?;
    let page = json!({"data": [
        {"id": "1", "field_data": [{"name": "email", "values": ["fb.one@example.com"]}, {"name": "full_name", "values": ["One Person"]}]},
        {"id": "2", "field_data": [{"name": "phone_number", "values": ["not a phone"]}]},
    ]});
    let (status, answer) = env.post_leads(Some(FB_KEY), &page.to_string()).await?;
    assert_eq!(status, StatusCode::MULTI_STATUS, "{answer}");
    assert_eq!(answer["results"][0]["status"], "accepted");
    assert_eq!(answer["results"][1]["errors"][0]["rule"], "invalid_phone");
    env.drain(20).await?;
    assert_eq!(env.sim().count_by_email("fb.one@example.com"), 1);
    env.stop().await
}

#[tokio::test]
async fn json_paths_come_from_configuration() -> anyhow::Result<()> {
    let env = env().await?;
    let body = json!({"records": [
        {"contact": {"mail": "path.one@example.com", "who": "Path One"}},
        {"contact": {}},
        {"contact": {"mail": "path.two@example.com"}},
    ]});
    let (status, answer) = env.post_leads(Some(CUSTOM_KEY), &body.to_string()).await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(answer["accepted"], 2);
    env.drain(20).await?;
    assert_eq!(env.sim().contact_count(), 2);
    let (_, plugins) = env.get_json("/v1/plugins").await?;
    assert_eq!(plugins["transforms"].as_array().unwrap().len(), 3);
    env.stop().await
}
