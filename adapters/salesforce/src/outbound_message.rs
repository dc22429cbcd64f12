//! Salesforce Outbound Messages: the SOAP 1.1 `notifications` a workflow or
//! flow action POSTs when a record changes. They carry no signature; what
//! identifies them is the sending org's `OrganizationId`, which the
//! destination grants as the secret `organization-id` (its 18-character
//! form, as Salesforce sends it) and the host compares in constant time.
//! Salesforce sends a message again (backing off up to 24 hours) until the
//! listener answers a `notificationsResponse` with `<Ack>true</Ack>`, so
//! that is the answer of a verified message.

use leadgate_sdk::prelude::*;

/// The secret holding the org id messages must come from.
pub const ORGANIZATION_ID: &str = "organization-id";

const OUTBOUND_NS: &str = "http://soap.sforce.com/2005/09/outbound";
const XSI_NS: &str = "http://www.w3.org/2001/XMLSchema-instance";

/// What Salesforce expects back: anything else and it sends again.
pub const ACK: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">
 <soapenv:Body>
  <notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">
   <Ack>true</Ack>
  </notificationsResponse>
 </soapenv:Body>
</soapenv:Envelope>
"#;

fn malformed(why: impl Into<String>) -> WebhookError {
    WebhookError::Malformed(why.into())
}

/// Verifies an outbound message and turns each notification into events:
/// one per field sent (`property-name`/`property-value`), or one for the
/// record when only its id was sent. `kind` is `<object>.outbound_message`
/// (`lead.outbound_message`), the object id the record's Salesforce id.
pub fn verify(request: &WebhookRequest, now_ms: u64) -> Result<WebhookReceipt, WebhookError> {
    let text = std::str::from_utf8(&request.body).map_err(|_| malformed("not UTF-8"))?;
    let doc = roxmltree::Document::parse(text).map_err(|e| malformed(format!("not XML: {e}")))?;
    let notifications = doc
        .descendants()
        .find(|n| n.has_tag_name((OUTBOUND_NS, "notifications")))
        .ok_or_else(|| malformed("no outbound-message notifications element"))?;
    let child = |name: &str| {
        notifications
            .children()
            .find(|n| n.has_tag_name((OUTBOUND_NS, name)))
            .and_then(|n| n.text())
            .map(str::trim)
    };
    let org = child("OrganizationId").ok_or(WebhookError::BadSignature)?;
    match crypto::secret_equals(ORGANIZATION_ID, org.as_bytes()) {
        Ok(true) => {}
        Ok(false) => return Err(WebhookError::BadSignature),
        Err(_) => {
            return Err(malformed(format!(
                "cannot verify: secret {ORGANIZATION_ID} is not granted"
            )));
        }
    }
    let mut events = Vec::new();
    for notification in notifications
        .children()
        .filter(|n| n.has_tag_name((OUTBOUND_NS, "Notification")))
    {
        let record = notification
            .children()
            .find(|n| n.has_tag_name((OUTBOUND_NS, "sObject")))
            .ok_or_else(|| malformed("a Notification without an sObject"))?;
        // xsi:type="sf:Lead" → "lead"
        let object = record
            .attribute((XSI_NS, "type"))
            .map(|t| t.rsplit(':').next().unwrap_or(t).to_ascii_lowercase())
            .unwrap_or_else(|| "record".to_string());
        let fields: Vec<(&str, &str)> = record
            .children()
            .filter(|n| n.is_element())
            .map(|n| (n.tag_name().name(), n.text().unwrap_or("").trim()))
            .collect();
        let id = fields
            .iter()
            .find(|(name, _)| *name == "Id")
            .map(|(_, v)| *v)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| malformed("an sObject without its Id"))?;
        let kind = format!("{object}.outbound_message");
        let event = |name: Option<&str>, value: Option<&str>| CrmEvent {
            kind: kind.clone(),
            object_id: id.to_string(),
            occurred_at_ms: now_ms,
            property_name: name.map(str::to_string),
            property_value: value.map(str::to_string),
        };
        let before = events.len();
        events.extend(
            fields
                .iter()
                .filter(|(name, _)| *name != "Id")
                .map(|(name, value)| event(Some(name), Some(value))),
        );
        if events.len() == before {
            events.push(event(None, None));
        }
    }
    Ok(WebhookReceipt::answered(
        events,
        "text/xml; charset=utf-8",
        ACK.as_bytes().to_vec(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use leadgate_sdk::testing::{TestHost, install};

    const ORG: &str = "00D5e000000ABCDEAA";

    fn message(org: &str) -> Vec<u8> {
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
     <sf:Email>ada&amp;co@example.com</sf:Email>
     <sf:Status>Working - Contacted</sf:Status>
    </sObject>
   </Notification>
   <Notification>
    <Id>04l5e000000ABCDAA3</Id>
    <sObject xsi:type="sf:Contact" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">
     <sf:Id>0035e000002ABCDEA4</sf:Id>
    </sObject>
   </Notification>
  </notifications>
 </soapenv:Body>
</soapenv:Envelope>"#
        )
        .into_bytes()
    }

    fn request(body: Vec<u8>) -> WebhookRequest {
        WebhookRequest {
            method: "POST".into(),
            url: "https://leadgate.example/v1/webhooks/salesforce".into(),
            headers: vec![],
            body,
        }
    }

    #[test]
    fn a_message_from_the_org_is_acknowledged_and_read() {
        install(TestHost::new(|_| unreachable!()).with_secret(ORGANIZATION_ID, ORG));
        let receipt = verify(&request(message(ORG)), 1_700_000_000_000).unwrap();
        let answer = receipt.answer.expect("the SOAP acknowledgement");
        assert!(
            String::from_utf8(answer.body)
                .unwrap()
                .contains("<Ack>true</Ack>")
        );
        assert!(answer.content_type.starts_with("text/xml"));
        assert_eq!(
            leadgate_sdk::testing::event_rows(&receipt.events),
            vec![
                (
                    "lead.outbound_message",
                    "00Q5e000001ABCDEA2",
                    Some("Email"),
                    Some("ada&co@example.com")
                ),
                (
                    "lead.outbound_message",
                    "00Q5e000001ABCDEA2",
                    Some("Status"),
                    Some("Working - Contacted")
                ),
                ("contact.outbound_message", "0035e000002ABCDEA4", None, None),
            ]
        );
    }

    #[test]
    fn another_org_or_no_secret_is_refused() {
        install(TestHost::new(|_| unreachable!()).with_secret(ORGANIZATION_ID, ORG));
        assert_eq!(
            verify(&request(message("00D000000000666AAA")), 0).unwrap_err(),
            WebhookError::BadSignature
        );
        assert!(matches!(
            verify(&request(b"{\"not\":\"xml\"}".to_vec()), 0),
            Err(WebhookError::Malformed(_))
        ));
        install(TestHost::new(|_| unreachable!()));
        assert!(matches!(
            verify(&request(message(ORG)), 0),
            Err(WebhookError::Malformed(m)) if m.contains(ORGANIZATION_ID)
        ));
    }
}
