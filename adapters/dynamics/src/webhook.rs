//! Dataverse webhooks (a service endpoint with contract Webhook and a step
//! on Create/Update/Delete of lead or contact): a POST of the serialized
//! `RemoteExecutionContext`. There is no signature; the endpoint's
//! authentication is a key Dataverse sends with every call, which the
//! destination grants as the secret `webhook-key` and the host compares in
//! constant time. Both of Dataverse's forms are read: `WebhookKey` (the
//! query parameter `code`) and `HttpHeader` (register the header
//! `x-webhook-key` with the key as its value).

use leadgate_sdk::prelude::*;
use serde_json::Value;

/// The secret holding the service endpoint's key.
pub const WEBHOOK_KEY: &str = "webhook-key";
/// The header an `HttpHeader` service endpoint is registered to send.
pub const KEY_HEADER: &str = "x-webhook-key";

fn malformed(why: impl Into<String>) -> WebhookError {
    WebhookError::Malformed(why.into())
}

/// The key the call carries: `?code=` or the header.
fn key_of(request: &WebhookRequest) -> Option<String> {
    let from_query = request.url.split_once('?').and_then(|(_, query)| {
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == "code").then(|| percent_decode(v))
        })
    });
    from_query.or_else(|| {
        request
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(KEY_HEADER))
            .map(|h| h.value.trim().to_string())
    })
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `\/Date(1506409448000-0700)\/` (the offset is the sender's; the number
/// is milliseconds since the epoch, UTC) → 1506409448000.
fn date_ms(value: &str) -> Option<u64> {
    let inner = value.trim().trim_matches('/').strip_prefix("Date(")?;
    let digits: String = inner.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// An attribute's value as text: strings as they are, lookups
/// (`EntityReference`) as their id, option sets and money as their value.
fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Object(o) => o
            .get("Id")
            .or_else(|| o.get("Value"))
            .map(value_text)
            .unwrap_or_else(|| v.to_string()),
        other => other.to_string(),
    }
}

/// Verifies a webhook call and turns it into events: `kind` is
/// `<table>.<message>` (`lead.create`, `contact.update`), the object id the
/// row's id, and an update gives one event per attribute it set.
pub fn verify(request: &WebhookRequest) -> Result<WebhookReceipt, WebhookError> {
    let key = key_of(request).ok_or(WebhookError::BadSignature)?;
    match crypto::secret_equals(WEBHOOK_KEY, key.as_bytes()) {
        Ok(true) => {}
        Ok(false) => return Err(WebhookError::BadSignature),
        Err(_) => {
            return Err(malformed(format!(
                "cannot verify: secret {WEBHOOK_KEY} is not granted"
            )));
        }
    }
    // Dataverse may send a byte-order mark before the JSON.
    let text = std::str::from_utf8(&request.body).map_err(|_| malformed("not UTF-8"))?;
    let context: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .map_err(|e| malformed(format!("not a RemoteExecutionContext: {e}")))?;
    let message = context["MessageName"]
        .as_str()
        .ok_or_else(|| malformed("no MessageName"))?;
    let table = context["PrimaryEntityName"]
        .as_str()
        .ok_or_else(|| malformed("no PrimaryEntityName"))?;
    let id = context["PrimaryEntityId"]
        .as_str()
        .ok_or_else(|| malformed("no PrimaryEntityId"))?;
    let occurred_at_ms = context["OperationCreatedOn"]
        .as_str()
        .and_then(date_ms)
        .unwrap_or(0);
    let kind = format!("{table}.{}", message.to_ascii_lowercase());
    let event = |name: Option<&str>, value: Option<String>| CrmEvent {
        kind: kind.clone(),
        object_id: id.to_string(),
        occurred_at_ms,
        property_name: name.map(str::to_string),
        property_value: value,
    };
    let mut events = Vec::new();
    if message.eq_ignore_ascii_case("Update") {
        let target = context["InputParameters"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["key"] == "Target")
            .map(|p| &p["value"]);
        for attribute in target
            .and_then(|t| t["Attributes"].as_array())
            .into_iter()
            .flatten()
        {
            let Some(name) = attribute["key"].as_str() else {
                continue;
            };
            // The row's own id and the modified-on stamp are not changes.
            if name == format!("{table}id") || name == "modifiedon" || name == "modifiedby" {
                continue;
            }
            events.push(event(Some(name), Some(value_text(&attribute["value"]))));
        }
    }
    if events.is_empty() {
        events.push(event(None, None));
    }
    Ok(WebhookReceipt::events(events))
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadgate_sdk::testing::{TestHost, install};
    use serde_json::json;

    const KEY: &str = "k3y-from-the-service-endpoint";

    fn context(message: &str) -> Value {
        json!({"MessageName":message,"PrimaryEntityName":"lead",
               "PrimaryEntityId":"6f3e1c2a-0000-4000-8000-000000000001","Stage":40,"Mode":1,"Depth":1,
               "OrganizationId":"0b1e0c2a-0000-4000-8000-0000000000aa","OrganizationName":"org",
               "OperationCreatedOn":"/Date(1506409448000-0700)/",
               "InputParameters":[{"key":"Target","value":{
                   "__type":"Entity:http://schemas.microsoft.com/xrm/2011/Contracts","LogicalName":"lead",
                   "Id":"6f3e1c2a-0000-4000-8000-000000000001",
                   "Attributes":[{"key":"firstname","value":"Jane"},
                                 {"key":"leadid","value":"6f3e1c2a-0000-4000-8000-000000000001"},
                                 {"key":"parentcontactid","value":{"__type":"EntityReference:http://schemas.microsoft.com/xrm/2011/Contracts","Id":"c0ffee00-0000-4000-8000-000000000002","LogicalName":"contact"}},
                                 {"key":"modifiedon","value":"/Date(1506409448000)/"}]}}],
               "OutputParameters":[],"PreEntityImages":[],"PostEntityImages":[],"SharedVariables":[]})
    }

    fn request(url: &str, headers: &[(&str, &str)], body: &Value) -> WebhookRequest {
        WebhookRequest {
            method: "POST".into(),
            url: url.into(),
            headers: headers
                .iter()
                .map(|(n, v)| Header {
                    name: n.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            // With the byte-order mark Dataverse may put first.
            body: format!("\u{feff}{body}").into_bytes(),
        }
    }

    #[test]
    fn the_key_in_the_query_or_a_header_lets_the_context_in() {
        install(TestHost::new(|_| unreachable!()).with_secret(WEBHOOK_KEY, KEY));
        let by_query = request(
            &format!("https://leadgate.example/v1/webhooks/dynamics?code={KEY}"),
            &[("x-ms-dynamics-entity-name", "lead")],
            &context("Update"),
        );
        let receipt = verify(&by_query).unwrap();
        const ROW: &str = "6f3e1c2a-0000-4000-8000-000000000001";
        assert_eq!(
            leadgate_sdk::testing::event_rows(&receipt.events),
            vec![
                ("lead.update", ROW, Some("firstname"), Some("Jane")),
                (
                    "lead.update",
                    ROW,
                    Some("parentcontactid"),
                    Some("c0ffee00-0000-4000-8000-000000000002")
                ),
            ]
        );
        assert!(
            receipt
                .events
                .iter()
                .all(|e| e.occurred_at_ms == 1_506_409_448_000
                    && e.object_id == "6f3e1c2a-0000-4000-8000-000000000001")
        );
        let by_header = request(
            "https://leadgate.example/v1/webhooks/dynamics",
            &[("X-Webhook-Key", KEY)],
            &context("Create"),
        );
        let receipt = verify(&by_header).unwrap();
        assert_eq!(receipt.events.len(), 1);
        assert_eq!(receipt.events[0].kind, "lead.create");
    }

    #[test]
    fn no_key_or_another_is_refused() {
        install(TestHost::new(|_| unreachable!()).with_secret(WEBHOOK_KEY, KEY));
        let url = "https://leadgate.example/v1/webhooks/dynamics";
        assert_eq!(
            verify(&request(url, &[], &context("Create"))).unwrap_err(),
            WebhookError::BadSignature
        );
        assert_eq!(
            verify(&request(
                &format!("{url}?code=nope"),
                &[],
                &context("Create")
            ))
            .unwrap_err(),
            WebhookError::BadSignature
        );
        assert!(matches!(
            verify(&request(
                &format!("{url}?code={KEY}"),
                &[],
                &json!({"x": 1})
            )),
            Err(WebhookError::Malformed(_))
        ));
        assert_eq!(percent_decode("a%2Bb%3D+c"), "a+b= c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%é"), "%zz%é");
    }
}
