//! # leadgate-sdk
//!
//! Write a leadgate CRM adapter in plain Rust: implement [`Adapter`], call
//! [`export_adapter!`] once, and build with
//! `cargo build --release --target wasm32-wasip2`. The result is a
//! WebAssembly component the leadgate host loads from its plugin folder.
//!
//! ```ignore
//! use leadgate_sdk::prelude::*;
//!
//! struct MyCrm;
//!
//! impl Adapter for MyCrm {
//!     fn describe() -> AdapterInfo { /* name, batch size, limits … */ }
//!     fn push(batch: Vec<Delivery>, ctx: PushContext) -> Vec<DeliveryOutcome> { /* … */ }
//! }
//!
//! leadgate_sdk::export_adapter!(MyCrm);
//! ```
//!
//! Everything the plugin may do outside itself goes through the host:
//! [`http`] (the host checks the allow-list and substitutes
//! `{{secret:NAME}}` placeholders, so the adapter never sees a secret),
//! [`crypto`], [`log`], [`clock`] and [`kv`]. On a native target (your
//! `cargo test`) those calls go to [`testing::TestHost`] instead, so an
//! adapter can be unit-tested without a host.
//!
//! Which host serves which component:
//!
//! | leadgate-sdk | builds components of | served by leadgate hosts |
//! | --- | --- | --- |
//! | 0.1 | `leadgate:plugin@0.1.0` | 0.1 and 0.2 (0.2 converts at one boundary) |
//! | 0.2 | `leadgate:plugin@0.2.0` | 0.2 |
//! | 0.2.1 | `leadgate:plugin@0.2.1` (adds `erasure`: [`Adapter::erase`]) | 0.2 from 0.2.1 |
//!
//! 0.2 types what 0.1 left to conventions: a request's kind
//! ([`http::Request::search`]), retry kinds ([`outcome::held_back`],
//! [`outcome::readback_mismatch`], [`outcome::auth_expired`]), rejection
//! kinds ([`outcome::invalid`], [`outcome::conflict`], …), and the CRM's
//! auth scheme and concurrency in [`AdapterInfo`](types::AdapterInfo).

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "crm-adapter-with-erasure",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_crm_adapter",
        default_bindings_module: "leadgate_sdk::bindings",
        generate_all,
        additional_derives: [PartialEq],
    });
}

#[doc(hidden)]
pub mod transform_bindings {
    wit_bindgen::generate!({
        world: "source-transform",
        path: "../wit",
        pub_export_macro: true,
        export_macro_name: "__export_source_transform",
        default_bindings_module: "leadgate_sdk::transform_bindings",
        additional_derives: [PartialEq],
        with: {
            "leadgate:plugin/log@0.2.1": crate::bindings::leadgate::plugin::log,
            "leadgate:plugin/clock@0.2.1": crate::bindings::leadgate::plugin::clock,
            "leadgate:plugin/kv@0.2.1": crate::bindings::leadgate::plugin::kv,
        },
    });
}

pub mod batch;
pub mod erasure;
mod host;
pub mod outcome;
pub mod readback;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

pub use host::{clock, crypto, http, kv, log};

/// The types an adapter works with.
pub mod types {
    pub use crate::bindings::exports::leadgate::plugin::adapter::{
        AdapterInfo, AuthScheme, CrmEvent, Delivery, DeliveryOutcome, OauthGrant, Outcome,
        PushContext, RateLimit, Rejection, RejectionKind, RetryInfo, RetryKind, WebhookAnswer,
        WebhookError, WebhookReceipt, WebhookRequest,
    };
    pub use crate::bindings::exports::leadgate::plugin::erasure::{
        EraseOutcome, ErasureOutcome, ErasureRequest,
    };
    pub use crate::bindings::leadgate::plugin::types::{
        Header, HttpError, HttpRequest, HttpResponse, Property, RequestKind,
    };
    pub use crate::transform_bindings::exports::leadgate::plugin::transform::{
        TransformContext, TransformError, TransformInfo,
    };
}

/// `use leadgate_sdk::prelude::*;` brings in the trait and every type.
pub mod prelude {
    pub use crate::types::*;
    pub use crate::{
        Adapter, Transform, clock, config, crypto, erasure, http, kv, log, record_key,
    };
}

/// A destination's configuration value: the last one given for `key`,
/// trimmed, if not empty (the host appends values it learnt, such as the
/// OAuth token's `instance-url`, after the configured ones).
pub fn config<'a>(ctx: &'a types::PushContext, key: &str) -> Option<&'a str> {
    ctx.config
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The key of the CRM record a delivery writes: the same for every job of
/// one person at one destination (the first delivery and each update after
/// a merge), so it is what an adapter upserts by when the CRM keys records
/// by an external id (Salesforce External ID fields, Dataverse alternate
/// keys). It is the delivery's idempotency key without the revision
/// suffix (`/r2`, `/r3`, …) an update's key carries.
pub fn record_key(delivery: &types::Delivery) -> &str {
    let key = delivery.idempotency_key.as_str();
    match key.rsplit_once("/r") {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => key,
    }
}

use types::*;

/// A CRM adapter.
pub trait Adapter {
    /// Name, version, batch size, upsert key, limits and the hosts and
    /// secrets the adapter needs.
    fn describe() -> AdapterInfo;

    /// Delivers a batch; must return exactly one outcome per delivery.
    fn push(batch: Vec<Delivery>, ctx: PushContext) -> Vec<DeliveryOutcome>;

    /// Verifies a CRM webhook (its signature, or the token or key it
    /// carries: [`crypto::secret_equals`]) and parses its events.
    fn verify_webhook(request: WebhookRequest) -> Result<WebhookReceipt, WebhookError> {
        let _ = request;
        Err(WebhookError::Unsupported)
    }

    /// Deletes records at the CRM (the right to erasure reaching the
    /// CRMs a person was delivered to); must return exactly one outcome per
    /// request ([`erasure::deleted`](crate::erasure::deleted), …,
    /// [`erasure::of_response`](crate::erasure::of_response) for the usual
    /// reading of a DELETE). The default refuses each: the host then
    /// dead-letters the deletion naming `erase_unsupported`, and the
    /// record must be deleted at the CRM by hand.
    fn erase(batch: Vec<ErasureRequest>, ctx: PushContext) -> Vec<ErasureOutcome> {
        let _ = ctx;
        batch
            .iter()
            .map(|r| {
                erasure::outcome(
                    r,
                    erasure::refused(outcome::misconfigured(
                        "erase_unsupported",
                        "this adapter cannot delete records at its CRM",
                    )),
                )
            })
            .collect()
    }
}

impl WebhookReceipt {
    /// Events, answered with the host's JSON count (what most CRMs take).
    pub fn events(events: Vec<CrmEvent>) -> WebhookReceipt {
        WebhookReceipt {
            events,
            answer: None,
        }
    }

    /// Events, answered with this body (status 200).
    pub fn answered(
        events: Vec<CrmEvent>,
        content_type: &str,
        body: impl Into<Vec<u8>>,
    ) -> WebhookReceipt {
        WebhookReceipt {
            events,
            answer: Some(WebhookAnswer {
                content_type: content_type.to_string(),
                body: body.into(),
            }),
        }
    }
}

/// A source transform.
pub trait Transform {
    fn describe() -> TransformInfo;

    /// Turns a source payload into zero (filtered out) or more leads, each a
    /// JSON object text.
    fn transform(payload: Vec<u8>, ctx: TransformContext) -> Result<Vec<String>, TransformError>;
}

/// Exports a type implementing [`Adapter`] as the component's adapter.
#[macro_export]
macro_rules! export_adapter {
    ($ty:ty) => {
        const _: () = {
            struct __LeadgateAdapterExport;
            impl $crate::bindings::exports::leadgate::plugin::adapter::Guest for __LeadgateAdapterExport {
                fn describe() -> $crate::types::AdapterInfo {
                    <$ty as $crate::Adapter>::describe()
                }
                fn push(
                    batch: ::std::vec::Vec<$crate::types::Delivery>,
                    ctx: $crate::types::PushContext,
                ) -> ::std::vec::Vec<$crate::types::DeliveryOutcome> {
                    <$ty as $crate::Adapter>::push(batch, ctx)
                }
                fn verify_webhook(
                    request: $crate::types::WebhookRequest,
                ) -> ::std::result::Result<$crate::types::WebhookReceipt, $crate::types::WebhookError>
                {
                    <$ty as $crate::Adapter>::verify_webhook(request)
                }
            }
            impl $crate::bindings::exports::leadgate::plugin::erasure::Guest for __LeadgateAdapterExport {
                fn erase(
                    batch: ::std::vec::Vec<$crate::types::ErasureRequest>,
                    ctx: $crate::types::PushContext,
                ) -> ::std::vec::Vec<$crate::types::ErasureOutcome> {
                    <$ty as $crate::Adapter>::erase(batch, ctx)
                }
            }
            // Export symbols only in the component; a native build (tests)
            // has no use for them and its linker rejects their names.
            #[cfg(target_arch = "wasm32")]
            $crate::bindings::__export_crm_adapter!(__LeadgateAdapterExport with_types_in $crate::bindings);
        };
    };
}

/// Exports a type implementing [`Transform`] as the component's transform.
#[macro_export]
macro_rules! export_transform {
    ($ty:ty) => {
        const _: () = {
            struct __LeadgateTransformExport;
            impl $crate::transform_bindings::exports::leadgate::plugin::transform::Guest
                for __LeadgateTransformExport
            {
                fn describe() -> $crate::types::TransformInfo {
                    <$ty as $crate::Transform>::describe()
                }
                fn transform(
                    payload: ::std::vec::Vec<u8>,
                    ctx: $crate::types::TransformContext,
                ) -> ::std::result::Result<::std::vec::Vec<::std::string::String>, $crate::types::TransformError>
                {
                    <$ty as $crate::Transform>::transform(payload, ctx)
                }
            }
            #[cfg(target_arch = "wasm32")]
            $crate::transform_bindings::__export_source_transform!(__LeadgateTransformExport with_types_in $crate::transform_bindings);
        };
    };
}

#[cfg(test)]
mod tests {
    use super::types::Delivery;

    #[test]
    fn record_keys_leave_out_the_revision() {
        let d = |key: &str| Delivery {
            id: "job".into(),
            idempotency_key: key.into(),
            properties: vec![],
        };
        assert_eq!(super::record_key(&d("p1/crm/v1")), "p1/crm/v1");
        assert_eq!(super::record_key(&d("p1/crm/v1/r2")), "p1/crm/v1");
        assert_eq!(super::record_key(&d("p1/crm/v1/r12")), "p1/crm/v1");
        assert_eq!(super::record_key(&d("p1/crm/v1/rx")), "p1/crm/v1/rx");
        assert_eq!(super::record_key(&d("p1/crm/v1/r")), "p1/crm/v1/r");
    }
}
