//! The webhook verifiers of the Rust CRM adapters (HubSpot's signature v3,
//! Salesforce's organization id, Zoho's notification token, Dataverse's
//! webhook key) on arbitrary requests, run natively with the SDK's
//! [`TestHost`] (the host's HMAC and constant-time comparison): the fuzz
//! target `webhook_verify` calls [`run`], and the suite replays its
//! corpus (`fuzz/corpus/webhook_verify`) and [`seeds`].
//!
//! An input is `[adapter, mode, method 0xFF url 0xFF headers 0xFF body]`
//! (`headers`: `name: value` lines). In **forge** mode (`mode` even) the
//! request goes as the fuzzer made it: a verifier that lets it in without
//! the secret is a finding (a panic here), as is any panic of the
//! verifier. In **sign** mode (`mode` odd) the harness does what the CRM
//! does: `@SECRET@` anywhere becomes the secret, and HubSpot's request is
//! signed and timestamped, so the fuzzer reaches the parsing of events.

use leadgate_sdk::Adapter;
use leadgate_sdk::testing::{TestHost, install};
use leadgate_sdk::types::{Header, WebhookError, WebhookReceipt, WebhookRequest};

/// The adapters, their secret's name and a value for it.
const ADAPTERS: [(&str, &str, &str); 4] = [
    ("hubspot", "client-secret", "hs-client-secret-2c8f"),
    ("salesforce", "organization-id", "00D5e000000ABCDEAA"),
    ("zoho", "notification-token", "zoho-notify-token-71aa"),
    ("dynamics", "webhook-key", "dv-webhook-key-93b1"),
];
/// The host's clock in the [`TestHost`].
const NOW_MS: u64 = 1_700_000_000_000;
/// What sign mode replaces with the secret.
const PLACEHOLDER: &str = "@SECRET@";

/// Verifies the request `data` describes; panics when a forged request
/// is let in. None when `data` is too short to name an adapter.
pub fn run(data: &[u8]) -> Option<Result<WebhookReceipt, WebhookError>> {
    let (&which, rest) = data.split_first()?;
    let (&mode, rest) = rest.split_first()?;
    let (name, secret_name, secret) = ADAPTERS[which as usize % ADAPTERS.len()];
    let sign = mode % 2 == 1;
    let mut parts = rest.split(|&b| b == 0xFF);
    let text = |p: Option<&[u8]>| String::from_utf8_lossy(p.unwrap_or_default()).into_owned();
    let (method, url, headers) = (text(parts.next()), text(parts.next()), text(parts.next()));
    let body: Vec<u8> = parts.collect::<Vec<_>>().join(&0xFF);
    let fill = |s: &str| {
        if sign {
            s.replace(PLACEHOLDER, secret)
        } else {
            s.to_string()
        }
    };
    let body = if sign {
        fill(&String::from_utf8_lossy(&body)).into_bytes()
    } else {
        body
    };
    let mut request = WebhookRequest {
        method: fill(&method),
        url: fill(&url),
        headers: headers
            .lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| Header {
                name: fill(n.trim()),
                value: fill(v.trim()),
            })
            .collect(),
        body,
    };
    install(
        TestHost::new(|_| unreachable!("a verifier makes no HTTP call"))
            .with_secret(secret_name, secret),
    );
    if sign && name == "hubspot" {
        sign_hubspot(&mut request);
    }
    let result = match name {
        "hubspot" => leadgate_adapter_hubspot::HubSpot::verify_webhook(request),
        "salesforce" => leadgate_adapter_salesforce::Salesforce::verify_webhook(request),
        "zoho" => leadgate_adapter_zoho::Zoho::verify_webhook(request),
        _ => leadgate_adapter_dynamics::Dynamics::verify_webhook(request),
    };
    if !sign && result.is_ok() {
        // Without the signature (HubSpot's cannot be forged) or the
        // token in the request, nothing is let in.
        let carries_secret = data.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(
            name != "hubspot" && carries_secret,
            "{name} let in a forged request: {data:?}"
        );
    }
    Some(result)
}

/// HubSpot's signature v3 of the request, as HubSpot sends it:
/// base64(HMAC-SHA256(client secret, method + url + body + timestamp)).
fn sign_hubspot(request: &mut WebhookRequest) {
    use base64::Engine as _;
    let ts = NOW_MS.to_string();
    let mut source = request.method.as_bytes().to_vec();
    source.extend_from_slice(request.url.as_bytes());
    source.extend_from_slice(&request.body);
    source.extend_from_slice(ts.as_bytes());
    let mac = leadgate_sdk::crypto::hmac_sha256("client-secret", &source).expect("granted");
    request
        .headers
        .retain(|h| !h.name.to_ascii_lowercase().starts_with("x-hubspot-"));
    for (name, value) in [
        (
            "X-HubSpot-Signature-v3",
            base64::engine::general_purpose::STANDARD.encode(mac),
        ),
        ("X-HubSpot-Request-Timestamp", ts),
    ] {
        request.headers.push(Header {
            name: name.into(),
            value,
        });
    }
}

/// One input of [`run`].
pub fn input(
    adapter: u8,
    sign: bool,
    method: &str,
    url: &str,
    headers: &str,
    body: &str,
) -> Vec<u8> {
    let mut out = vec![adapter, u8::from(sign)];
    for (i, part) in [method, url, headers, body].iter().enumerate() {
        if i > 0 {
            out.push(0xFF);
        }
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// A valid request of each adapter's CRM, in sign mode: each is let in.
pub fn seeds() -> Vec<Vec<u8>> {
    vec![
        input(
            0,
            true,
            "POST",
            "https://leadgate.example/v1/webhooks/hubspot",
            "content-type: application/json",
            r#"[{"eventId":1,"subscriptionId":2,"portalId":3,"occurredAt":1700000000000,"subscriptionType":"contact.propertyChange","objectId":512,"propertyName":"email","propertyValue":"a@b.com"}]"#,
        ),
        input(
            1,
            true,
            "POST",
            "https://leadgate.example/v1/webhooks/salesforce",
            "content-type: text/xml",
            r#"<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound"><OrganizationId>@SECRET@</OrganizationId><ActionId>04k5e000000ABCDAA0</ActionId><Notification><Id>04l5e000000ABCDAA1</Id><sObject xsi:type="sf:Lead" xmlns:sf="urn:sobject.enterprise.soap.sforce.com"><sf:Id>00Q5e000001ABCDEA2</sf:Id><sf:Email>a@b.com</sf:Email></sObject></Notification></notifications></soapenv:Body></soapenv:Envelope>"#,
        ),
        input(
            2,
            true,
            "POST",
            "https://leadgate.example/v1/webhooks/zoho",
            "content-type: application/json",
            r#"{"token":"@SECRET@","module":"Leads","operation":"update","ids":["5725767000000524157"],"server_time":1700000000000,"affected_fields":[{"5725767000000524157":["Email"]}]}"#,
        ),
        input(
            3,
            true,
            "POST",
            "https://leadgate.example/v1/webhooks/dynamics?code=@SECRET@",
            "x-ms-dynamics-entity-name: lead",
            r#"{"MessageName":"Update","PrimaryEntityName":"lead","PrimaryEntityId":"6f3e1c2a-0000-4000-8000-000000000001","OperationCreatedOn":"/Date(1506409448000-0700)/","InputParameters":[{"key":"Target","value":{"LogicalName":"lead","Id":"6f3e1c2a-0000-4000-8000-000000000001","Attributes":[{"key":"firstname","value":"Jane"}]}}]}"#,
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_crms_own_request_is_let_in_and_its_forgery_is_not() {
        for seed in seeds() {
            let who = ADAPTERS[seed[0] as usize].0;
            let receipt = run(&seed)
                .unwrap()
                .unwrap_or_else(|e| panic!("{who}: {e:?}"));
            assert!(!receipt.events.is_empty(), "{who}");
            // The same request without the secret (forge mode) is refused.
            let mut forged = seed.clone();
            forged[1] = 0;
            let refused = run(&forged).unwrap();
            assert!(
                matches!(refused, Err(WebhookError::BadSignature)),
                "{who}: {refused:?}"
            );
        }
    }

    #[test]
    fn the_fuzz_corpus_replays_without_a_finding() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../fuzz/corpus/webhook_verify");
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut n = 0;
        for entry in entries {
            let data = std::fs::read(entry.unwrap().path()).unwrap();
            let _ = run(&data);
            n += 1;
        }
        assert!(
            n >= seeds().len(),
            "the corpus holds at least the seeds: {n}"
        );
    }

    #[test]
    fn short_inputs_name_no_adapter() {
        assert!(run(&[]).is_none());
        assert!(run(&[1]).is_none());
        assert!(run(&[1, 0]).unwrap().is_err());
    }
}
