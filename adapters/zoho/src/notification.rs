//! Zoho CRM notifications (`actions/watch`): Zoho POSTs JSON to the
//! channel's `notify_url` with the channel's `token` echoed in the body.
//! There is no signature; the token, which the destination grants as the
//! secret `notification-token`, is compared by the host in constant time.

use leadgate_sdk::prelude::*;
use serde_json::Value;

/// The secret holding the channel's verification token.
pub const NOTIFICATION_TOKEN: &str = "notification-token";

fn malformed(why: impl Into<String>) -> WebhookError {
    WebhookError::Malformed(why.into())
}

/// Verifies a notification and turns it into events: `kind` is
/// `<Module>.<operation>` (`Leads.insert`, `Leads.update`,
/// `Contacts.delete`), one event per record id, or per affected field of
/// the record when Zoho lists them (`property-name`; values when the
/// channel returns them).
pub fn verify(request: &WebhookRequest) -> Result<WebhookReceipt, WebhookError> {
    let body: Value = serde_json::from_slice(&request.body)
        .map_err(|e| malformed(format!("not a JSON notification: {e}")))?;
    let token = body["token"].as_str().ok_or(WebhookError::BadSignature)?;
    match crypto::secret_equals(NOTIFICATION_TOKEN, token.as_bytes()) {
        Ok(true) => {}
        Ok(false) => return Err(WebhookError::BadSignature),
        Err(_) => {
            return Err(malformed(format!(
                "cannot verify: secret {NOTIFICATION_TOKEN} is not granted"
            )));
        }
    }
    let module = body["module"]
        .as_str()
        .ok_or_else(|| malformed("no module"))?;
    let operation = body["operation"]
        .as_str()
        .ok_or_else(|| malformed("no operation"))?;
    let ids = body["ids"]
        .as_array()
        .ok_or_else(|| malformed("no ids"))?
        .iter()
        .map(|id| match id {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err(malformed("an id that is not a string")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let occurred_at_ms = body["server_time"].as_u64().unwrap_or(0);
    let kind = format!("{module}.{operation}");
    // `affected_fields`: [{"<id>": ["Email", …]}]; with
    // `return_affected_field_values`: [{"<id>": {"Email": "…"}}].
    let mut affected: Vec<(&str, &str, Option<String>)> = Vec::new();
    for entry in body["affected_fields"].as_array().into_iter().flatten() {
        for (id, fields) in entry.as_object().into_iter().flatten() {
            match fields {
                Value::Array(names) => affected.extend(
                    names
                        .iter()
                        .filter_map(Value::as_str)
                        .map(|name| (id.as_str(), name, None)),
                ),
                Value::Object(values) => affected.extend(values.iter().map(|(name, v)| {
                    let value = match v {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        other => other.to_string(),
                    };
                    (id.as_str(), name.as_str(), Some(value))
                })),
                _ => {}
            }
        }
    }
    let mut events = Vec::new();
    for id in &ids {
        let event = |name: Option<&str>, value: Option<String>| CrmEvent {
            kind: kind.clone(),
            object_id: id.clone(),
            occurred_at_ms,
            property_name: name.map(str::to_string),
            property_value: value,
        };
        let before = events.len();
        events.extend(
            affected
                .iter()
                .filter(|(of, _, _)| of == id)
                .map(|(_, name, value)| event(Some(name), value.clone())),
        );
        if events.len() == before {
            events.push(event(None, None));
        }
    }
    Ok(WebhookReceipt::events(events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadgate_sdk::testing::{TestHost, install};
    use serde_json::json;

    const TOKEN: &str = "TOKEN_FOR_VERIFICATION_OF_1000000068001";

    fn request(body: &Value) -> WebhookRequest {
        WebhookRequest {
            method: "POST".into(),
            url: "https://leadgate.example/v1/webhooks/zoho?key1=val1".into(),
            headers: vec![("content-type".into(), "application/json".into())]
                .into_iter()
                .map(|(name, value)| Header { name, value })
                .collect(),
            body: body.to_string().into_bytes(),
        }
    }

    fn notification(token: &str) -> Value {
        json!({"server_time":1700000000000u64,"query_params":{"key1":"val1"},"module":"Leads",
               "resource_uri":"https://www.zohoapis.com/crm/v2/Leads",
               "ids":["4150868000001234001","4150868000001234002"],
               "affected_fields":[{"4150868000001234001":["Email","Phone"]}],
               "operation":"update","channel_id":"1000000068001","token":token})
    }

    #[test]
    fn a_notification_with_the_channel_token_is_read() {
        install(TestHost::new(|_| unreachable!()).with_secret(NOTIFICATION_TOKEN, TOKEN));
        let receipt = verify(&request(&notification(TOKEN))).unwrap();
        assert_eq!(receipt.answer, None);
        assert_eq!(
            leadgate_sdk::testing::event_rows(&receipt.events),
            vec![
                ("Leads.update", "4150868000001234001", Some("Email"), None),
                ("Leads.update", "4150868000001234001", Some("Phone"), None),
                ("Leads.update", "4150868000001234002", None, None),
            ]
        );
        assert!(
            receipt
                .events
                .iter()
                .all(|e| e.occurred_at_ms == 1_700_000_000_000)
        );
        // With the values the channel may return.
        let mut with_values = notification(TOKEN);
        with_values["affected_fields"] = json!([{"4150868000001234001": {"Email": "a@x.com"}}]);
        let receipt = verify(&request(&with_values)).unwrap();
        assert_eq!(receipt.events[0].property_value.as_deref(), Some("a@x.com"));
    }

    #[test]
    fn a_wrong_or_missing_token_is_refused() {
        install(TestHost::new(|_| unreachable!()).with_secret(NOTIFICATION_TOKEN, TOKEN));
        assert_eq!(
            verify(&request(&notification("guess"))).unwrap_err(),
            WebhookError::BadSignature
        );
        let mut no_token = notification(TOKEN);
        no_token.as_object_mut().unwrap().remove("token");
        assert_eq!(
            verify(&request(&no_token)).unwrap_err(),
            WebhookError::BadSignature
        );
        assert!(matches!(
            verify(&WebhookRequest {
                body: b"<xml/>".to_vec(),
                ..request(&no_token)
            }),
            Err(WebhookError::Malformed(_))
        ));
    }
}
