//! A source transform written against `leadgate:plugin@0.1.0` with
//! nothing but `wit-bindgen`: a form tool's `{"submission": {"fields":
//! {"Email": …, "Name": …}}}` becomes one lead; a submission marked as a
//! test is filtered out; a body without fields is refused naming the field.

#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use serde_json::{Value, json};

wit_bindgen::generate!({
    world: "source-transform",
    path: "../../../wit/v0.1.0",
    generate_all,
});

use exports::leadgate::plugin::transform::{
    Guest, TransformContext, TransformError, TransformInfo,
};

struct LegacyForm;

impl Guest for LegacyForm {
    fn describe() -> TransformInfo {
        TransformInfo {
            name: "legacy-form".into(),
            version: "0.1.0".into(),
            description: "A form tool's submissions, built for WIT 0.1.0".into(),
        }
    }

    fn transform(payload: Vec<u8>, ctx: TransformContext) -> Result<Vec<String>, TransformError> {
        let body: Value = serde_json::from_slice(&payload)
            .map_err(|e| TransformError::Malformed(format!("not JSON: {e}")))?;
        let submission = &body["submission"];
        if submission["test"] == true {
            return Ok(vec![]);
        }
        let fields = submission["fields"].as_object().ok_or_else(|| {
            TransformError::InvalidField(("submission.fields".into(), "missing".into()))
        })?;
        let text = |name: &str| fields.get(name).and_then(Value::as_str).unwrap_or("");
        let (first, last) = text("Name").split_once(' ').unwrap_or((text("Name"), ""));
        let lead = json!({
            "email": text("Email"),
            "first_name": first,
            "last_name": last,
            "utm_source": ctx.source,
        });
        Ok(vec![lead.to_string()])
    }
}

#[cfg(target_arch = "wasm32")]
export!(LegacyForm);
