//! Source transform for Facebook Lead Ads leads as the Graph API returns
//! them: `{id, created_time, ad_id, form_id, field_data: [{name, values}]}`,
//! one lead or a page of them under `data`.

use leadgate_sdk::prelude::*;
use serde_json::{Map, Value};

pub struct FacebookLeads;

/// Facebook's standard question names → leadgate fields.
const FIELDS: &[(&str, &str)] = &[
    ("email", "email"),
    ("work_email", "email"),
    ("phone_number", "phone"),
    ("work_phone_number", "phone"),
    ("first_name", "first_name"),
    ("last_name", "last_name"),
    ("full_name", "name"),
    ("company_name", "company"),
    ("job_title", "title"),
    ("city", "city"),
    ("state", "region"),
    ("province", "region"),
    ("zip_code", "postcode"),
    ("post_code", "postcode"),
    ("country", "country"),
    ("street_address", "street"),
    ("date_of_birth", "date_of_birth"),
];

fn one(lead: &Value, index: usize) -> Result<String, TransformError> {
    let data = lead
        .get("field_data")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            TransformError::InvalidField((format!("data[{index}].field_data"), "missing".into()))
        })?;
    let mut out = Map::new();
    for item in data {
        let Some(name) = item.get("name").and_then(Value::as_str) else {
            continue;
        };
        let value = item
            .get("values")
            .and_then(Value::as_array)
            .map(|vs| {
                vs.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        if value.trim().is_empty() {
            continue;
        }
        let field = FIELDS
            .iter()
            .find(|(fb, _)| *fb == name)
            .map(|(_, ours)| ours.to_string())
            .unwrap_or_else(|| format!("fb_{name}"));
        out.entry(field).or_insert(Value::String(value));
    }
    for (meta, key) in [
        ("id", "fb_lead_id"),
        ("created_time", "fb_created_time"),
        ("ad_id", "fb_ad_id"),
        ("form_id", "fb_form_id"),
        ("campaign_id", "fb_campaign_id"),
    ] {
        if let Some(v) = lead.get(meta).and_then(Value::as_str) {
            out.insert(key.into(), Value::String(v.into()));
        }
    }
    Ok(Value::Object(out).to_string())
}

impl Transform for FacebookLeads {
    fn describe() -> TransformInfo {
        TransformInfo {
            name: "facebook-leads".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Facebook Lead Ads leads (field_data), one or a page".into(),
        }
    }

    fn transform(payload: Vec<u8>, _ctx: TransformContext) -> Result<Vec<String>, TransformError> {
        let body: Value = serde_json::from_slice(&payload)
            .map_err(|e| TransformError::Malformed(format!("not JSON: {e}")))?;
        match body.get("data").and_then(Value::as_array) {
            Some(page) => page.iter().enumerate().map(|(i, l)| one(l, i)).collect(),
            None => Ok(vec![one(&body, 0)?]),
        }
    }
}

leadgate_sdk::export_transform!(FacebookLeads);

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: &str) -> Result<Vec<Value>, TransformError> {
        FacebookLeads::transform(
            body.as_bytes().to_vec(),
            TransformContext {
                source: "fb".into(),
                config: vec![],
            },
        )
        .map(|v| v.iter().map(|l| serde_json::from_str(l).unwrap()).collect())
    }

    #[test]
    fn field_data_becomes_a_lead() {
        let out = run(r#"{"id":"123","created_time":"2024-01-01T00:00:00+0000","field_data":[
            {"name":"full_name","values":["Jane Doe"]},{"name":"email","values":["jane@x.com"]},
            {"name":"phone_number","values":["+14152312671"]},{"name":"favourite_colour","values":["blue"]}]}"#).unwrap();
        assert_eq!(out[0]["name"], "Jane Doe");
        assert_eq!(out[0]["email"], "jane@x.com");
        assert_eq!(out[0]["phone"], "+14152312671");
        assert_eq!(out[0]["fb_favourite_colour"], "blue");
        assert_eq!(out[0]["fb_lead_id"], "123");
    }

    #[test]
    fn a_page_is_a_batch_and_an_empty_page_is_filtered() {
        let out = run(r#"{"data":[{"field_data":[{"name":"email","values":["a@x.com"]}]},{"field_data":[{"name":"email","values":["b@x.com"]}]}]}"#).unwrap();
        assert_eq!(out.len(), 2);
        assert!(run(r#"{"data":[]}"#).unwrap().is_empty());
        assert!(matches!(
            run(r#"{"id":"1"}"#),
            Err(TransformError::InvalidField(_))
        ));
    }
}
