//! Source transform for form builders that post a nested `fields` array of
//! `{id, label, value}`: recognizes the many names one field goes by
//! (`first_name`, `fname`, "First name"; `email`, `email_address`,
//! `user_email`, "E-mail"; …) and keeps the rest as custom attributes.
//!
//! A submission whose honeypot field (config `honeypot`, default
//! `website_url_hp`) is filled is spam: zero leads out. A body with a
//! `submissions` array is a batch: one lead per submission.

use leadgate_sdk::prelude::*;
use serde_json::{Map, Value};

pub struct FormFields;

/// leadgate field ← the names form builders use for it (compared after
/// lowercasing and turning spaces, dashes and dots into underscores).
const ALIASES: &[(&str, &[&str])] = &[
    (
        "email",
        &[
            "email",
            "email_address",
            "user_email",
            "e_mail",
            "emailaddress",
            "your_email",
            "work_email",
        ],
    ),
    (
        "phone",
        &[
            "phone",
            "phone_number",
            "telephone",
            "tel",
            "mobile",
            "mobile_phone",
            "cell",
            "your_phone",
        ],
    ),
    (
        "first_name",
        &[
            "first_name",
            "firstname",
            "fname",
            "given_name",
            "forename",
            "first",
        ],
    ),
    (
        "last_name",
        &[
            "last_name",
            "lastname",
            "lname",
            "surname",
            "family_name",
            "last",
        ],
    ),
    (
        "name",
        &["name", "full_name", "fullname", "your_name", "contact_name"],
    ),
    (
        "company",
        &[
            "company",
            "company_name",
            "organization",
            "organisation",
            "business",
            "employer",
        ],
    ),
    (
        "title",
        &["title", "job_title", "jobtitle", "position", "role"],
    ),
    (
        "website",
        &["website", "company_website", "url", "web_site", "homepage"],
    ),
    ("city", &["city", "town"]),
    ("region", &["state", "region", "province", "county"]),
    (
        "postcode",
        &[
            "zip",
            "zip_code",
            "zipcode",
            "postcode",
            "postal_code",
            "post_code",
        ],
    ),
    ("country", &["country", "country_code"]),
    (
        "street",
        &[
            "street",
            "address",
            "street_address",
            "address_line_1",
            "address1",
        ],
    ),
];

fn key(s: &str) -> String {
    s.trim()
        .to_lowercase()
        .chars()
        .map(|c| {
            if c == ' ' || c == '-' || c == '.' {
                '_'
            } else {
                c
            }
        })
        .collect()
}

fn canonical(id: &str, label: &str) -> Option<&'static str> {
    let (id, label) = (key(id), key(label));
    ALIASES
        .iter()
        .find(|(_, names)| names.contains(&id.as_str()) || names.contains(&label.as_str()))
        .map(|(field, _)| *field)
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(text).collect();
            (!parts.is_empty()).then(|| parts.join(", "))
        }
        _ => None,
    }
}

fn one_submission(sub: &Value, honeypot: &str) -> Result<Option<String>, TransformError> {
    let fields = sub
        .get("fields")
        .and_then(Value::as_array)
        .ok_or_else(|| TransformError::Malformed("no `fields` array".into()))?;
    let mut lead = Map::new();
    for (i, f) in fields.iter().enumerate() {
        let id = f.get("id").and_then(Value::as_str).unwrap_or_default();
        let label = f.get("label").and_then(Value::as_str).unwrap_or_default();
        if id.is_empty() && label.is_empty() {
            return Err(TransformError::InvalidField((
                format!("fields[{i}]"),
                "needs an id or a label".into(),
            )));
        }
        let Some(value) = f
            .get("value")
            .and_then(text)
            .filter(|v| !v.trim().is_empty())
        else {
            continue;
        };
        if key(id) == honeypot || key(label) == honeypot {
            return Ok(None);
        }
        let name = match canonical(id, label) {
            Some(field) => field.to_string(),
            None => key(if id.is_empty() { label } else { id }),
        };
        lead.entry(name).or_insert(Value::String(value));
    }
    for meta in ["form_id", "submission_id", "submitted_at"] {
        if let Some(v) = sub.get(meta).and_then(text) {
            lead.entry(meta.to_string()).or_insert(Value::String(v));
        }
    }
    Ok(Some(Value::Object(lead).to_string()))
}

impl Transform for FormFields {
    fn describe() -> TransformInfo {
        TransformInfo {
            name: "form-fields".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "form-builder payloads with a fields array of {id, label, value}".into(),
        }
    }

    fn transform(payload: Vec<u8>, ctx: TransformContext) -> Result<Vec<String>, TransformError> {
        let honeypot = ctx
            .config
            .iter()
            .find(|(k, _)| k == "honeypot")
            .map(|(_, v)| key(v))
            .unwrap_or_else(|| "website_url_hp".into());
        let body: Value = serde_json::from_slice(&payload)
            .map_err(|e| TransformError::Malformed(format!("not JSON: {e}")))?;
        let submissions: Vec<&Value> = match body.get("submissions").and_then(Value::as_array) {
            Some(items) => items.iter().collect(),
            None => vec![&body],
        };
        let mut leads = Vec::new();
        for sub in submissions {
            if let Some(lead) = one_submission(sub, &honeypot)? {
                leads.push(lead);
            }
        }
        Ok(leads)
    }
}

leadgate_sdk::export_transform!(FormFields);

#[cfg(test)]
mod tests {
    use super::*;

    fn run(body: &str) -> Result<Vec<Value>, TransformError> {
        FormFields::transform(
            body.as_bytes().to_vec(),
            TransformContext {
                source: "form".into(),
                config: vec![],
            },
        )
        .map(|leads| {
            leads
                .iter()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        })
    }

    #[test]
    fn field_names_are_recognized() {
        let out = run(r#"{"form_id":"f1","fields":[
            {"id":"fname","label":"First name","value":"Jane"},
            {"id":"q2","label":"E-mail","value":"jane@example.com"},
            {"id":"user_phone","label":"Phone number","value":"(415) 231-2671"},
            {"id":"budget","label":"Budget","value":5000},
            {"id":"interests","label":"Interests","value":["a","b"]}]}"#)
        .unwrap();
        assert_eq!(out.len(), 1);
        let l = &out[0];
        assert_eq!(l["first_name"], "Jane");
        assert_eq!(l["email"], "jane@example.com");
        assert_eq!(l["phone"], "(415) 231-2671");
        assert_eq!(l["budget"], "5000");
        assert_eq!(l["interests"], "a, b");
        assert_eq!(l["form_id"], "f1");
    }

    #[test]
    fn honeypot_filters_and_batches_split() {
        let spam = run(r#"{"fields":[{"id":"email","value":"x@y.com"},{"id":"website_url_hp","value":"http://spam"}]}"#).unwrap();
        assert!(spam.is_empty());
        let batch = run(r#"{"submissions":[{"fields":[{"id":"email","value":"a@x.com"}]},{"fields":[{"id":"email_address","value":"b@x.com"}]}]}"#).unwrap();
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[1]["email"], "b@x.com");
    }

    #[test]
    fn malformed_payloads_are_named() {
        assert!(matches!(run("nope"), Err(TransformError::Malformed(_))));
        assert!(matches!(
            run(r#"{"x":1}"#),
            Err(TransformError::Malformed(_))
        ));
        assert!(matches!(
            run(r#"{"fields":[{"value":"x"}]}"#),
            Err(TransformError::InvalidField((f, _))) if f == "fields[0]"
        ));
    }
}
