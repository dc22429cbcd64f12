//! Loaded plugins and their sandboxed calls: a fresh `Store` per call with an
//! epoch deadline, a memory cap and a cap on output size; a failure is
//! reported as a [`CallError`] naming the reason and touches nothing else.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::WasiCtx;

use crate::bindings::adapter::exports::leadgate::plugin::adapter as wit;
use crate::bindings::adapter::{CrmAdapter, CrmAdapterPre};
use crate::bindings::erasure::exports::leadgate::plugin::{
    adapter as erasure_types, erasure as wit_erasure,
};
use crate::bindings::transform::{SourceTransform, SourceTransformPre};
use crate::bindings::v0_1;
use crate::capabilities::{CallSecrets, Capabilities};
use crate::compat;
use crate::engine::PluginEngine;
use crate::imports::{CallContext, CallState, PluginCounters};
use crate::limits::Limiter;
use crate::types::*;

/// Which world a plugin targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PluginKind {
    Adapter,
    Transform,
}

/// Why one plugin call failed. The plugin's other calls are unaffected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("plugin exceeded its {0} ms deadline")]
    Timeout(u64),
    #[error("plugin exceeded its memory limit of {0} bytes")]
    MemoryLimit(usize),
    #[error("plugin trapped: {0}")]
    Trap(String),
    #[error("plugin output of {bytes} bytes exceeds the limit of {limit}")]
    OutputTooLarge { bytes: usize, limit: usize },
    #[error("plugin returned invalid output: {0}")]
    BadOutput(String),
    #[error("plugin could not be instantiated: {0}")]
    Instantiate(String),
}

/// The WASI a guest's standard library links against, with nothing behind
/// it: no preopened directories, no environment or arguments, no sockets or
/// name lookups, stdio discarded, and clocks frozen at zero. Time comes
/// only from the host's `clock` import.
fn sandboxed_wasi() -> WasiCtx {
    struct Frozen;
    impl wasmtime_wasi::HostWallClock for Frozen {
        fn resolution(&self) -> std::time::Duration {
            std::time::Duration::from_secs(1)
        }
        fn now(&self) -> std::time::Duration {
            std::time::Duration::ZERO
        }
    }
    impl wasmtime_wasi::HostMonotonicClock for Frozen {
        fn resolution(&self) -> u64 {
            1_000_000_000
        }
        fn now(&self) -> u64 {
            0
        }
    }
    WasiCtx::builder()
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .wall_clock(Frozen)
        .monotonic_clock(Frozen)
        .build()
}

struct Shared {
    engine: PluginEngine,
    name: Arc<str>,
    capabilities: Arc<Capabilities>,
    counters: Arc<PluginCounters>,
}

impl Shared {
    /// A fresh store for one call; `call` adds the secrets the host
    /// obtained for this call alone.
    fn new_store(&self, call: Option<Arc<CallSecrets>>) -> Store<CallState> {
        let limits = self.engine.limits;
        let capabilities = match &call {
            Some(c) if !c.secrets().is_empty() => {
                Arc::new(self.capabilities.with_secrets(c.secrets()))
            }
            _ => self.capabilities.clone(),
        };
        let state = CallState {
            wasi: sandboxed_wasi(),
            table: ResourceTable::new(),
            limiter: Limiter::new(limits.max_memory_bytes),
            cx: CallContext {
                plugin: self.name.clone(),
                capabilities,
                services: self.engine.services.clone(),
                counters: self.counters.clone(),
                call,
            },
        };
        let mut store = Store::new(&self.engine.engine, state);
        store.limiter(|s| &mut s.limiter);
        // Every tick the guest gives its thread back to the executor, so a
        // busy guest never holds a tokio worker (and every task queued
        // behind it: ingest, other deliveries) until its deadline; at the
        // deadline the call traps.
        let (started, deadline) = (Instant::now(), limits.deadline);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            Ok(if started.elapsed() >= deadline {
                UpdateDeadline::Interrupt
            } else {
                // tokio's own yield: the timers and I/O the other tasks
                // wait on are polled before the guest runs again.
                UpdateDeadline::YieldCustom(1, Box::pin(tokio::task::yield_now()))
            })
        });
        store
    }

    /// Why instantiating failed: a trap there is the component's start-up
    /// failing, not a call's.
    fn instantiation_error(&self, store: &Store<CallState>, err: wasmtime::Error) -> CallError {
        match self.classify(store, err) {
            CallError::Trap(m) => CallError::Instantiate(m),
            other => other,
        }
    }

    fn classify(&self, store: &Store<CallState>, err: wasmtime::Error) -> CallError {
        let limits = self.engine.limits;
        if store.data().limiter.memory_limit_hit {
            return CallError::MemoryLimit(limits.max_memory_bytes);
        }
        if let Some(trap) = err.downcast_ref::<wasmtime::Trap>()
            && *trap == wasmtime::Trap::Interrupt
        {
            return CallError::Timeout(limits.deadline.as_millis() as u64);
        }
        CallError::Trap(store.data().cx.capabilities.redact(&format!("{err:#}")))
    }

    fn check_output(&self, bytes: usize) -> Result<(), CallError> {
        let limit = self.engine.limits.max_output_bytes;
        if bytes > limit {
            Err(CallError::OutputTooLarge { bytes, limit })
        } else {
            Ok(())
        }
    }

    fn record(&self, started: Instant, ok: bool) {
        self.counters.calls.fetch_add(1, Ordering::Relaxed);
        if !ok {
            self.counters.call_failures.fetch_add(1, Ordering::Relaxed);
        }
        self.counters
            .call_micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
    }
}

/// A CRM adapter, compiled and pre-instantiated. Cheap to clone; every call
/// gets a fresh instance.
#[derive(Clone)]
pub struct AdapterPlugin {
    shared: Arc<Shared>,
    pre: AdapterPre,
    info: Arc<AdapterInfo>,
    /// The `erasure` export's indices, when the component has one.
    erasure: Option<wit_erasure::GuestIndices>,
}

/// A pre-instantiated adapter of one of the WIT versions the host serves.
#[derive(Clone)]
enum AdapterPre {
    Current(CrmAdapterPre<CallState>),
    V0_1(v0_1::adapter::CrmAdapterPre<CallState>),
}

/// An instantiated adapter, ready for one call.
enum AdapterInstance {
    Current(CrmAdapter),
    V0_1(v0_1::adapter::CrmAdapter),
}

/// The WIT versions of `interface` (`adapter` or `transform`) a component
/// exports, from its export names (`leadgate:plugin/adapter@0.2.0`).
fn exported_versions(engine: &PluginEngine, component: &Component, interface: &str) -> Vec<String> {
    let prefix = format!("leadgate:plugin/{interface}@");
    component
        .component_type()
        .exports(&engine.engine)
        .filter_map(|(name, _)| name.strip_prefix(&prefix).map(str::to_string))
        .collect()
}

/// Which served WIT version a component's `interface` export targets, or
/// why it can be served by none.
fn served_version(
    engine: &PluginEngine,
    component: &Component,
    interface: &str,
) -> Result<WitVersion, CallError> {
    let versions = exported_versions(engine, component, interface);
    let served = || {
        WitVersion::SERVED
            .iter()
            .map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    WitVersion::SERVED
        .iter()
        .rev()
        .copied()
        .find(|v| versions.iter().any(|e| v.serves(e)))
        .ok_or_else(|| {
            CallError::Instantiate(if versions.is_empty() {
                format!(
                    "the component exports no leadgate:plugin/{interface} interface (this host serves WIT {})",
                    served()
                )
            } else {
                format!(
                    "the component exports leadgate:plugin/{interface}@{}; this host serves WIT {}",
                    versions.join(", @"),
                    served()
                )
            })
        })
}

impl AdapterPlugin {
    /// Links a compiled component and asks it to describe itself.
    pub async fn load(
        engine: &PluginEngine,
        name: &str,
        component: &Component,
        capabilities: Capabilities,
    ) -> Result<Self, CallError> {
        let version = served_version(engine, component, "adapter")?;
        let instance_pre = engine
            .adapter_linker
            .instantiate_pre(component)
            .map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
        let instantiate = |e: wasmtime::Error| CallError::Instantiate(format!("{e:#}"));
        // Optional (0.2.1): a component without it cannot delete.
        let erasure = match version {
            WitVersion::V0_2 => wit_erasure::GuestIndices::new(&instance_pre).ok(),
            WitVersion::V0_1 => None,
        };
        let pre = match version {
            WitVersion::V0_2 => {
                AdapterPre::Current(CrmAdapterPre::new(instance_pre).map_err(instantiate)?)
            }
            WitVersion::V0_1 => AdapterPre::V0_1(
                v0_1::adapter::CrmAdapterPre::new(instance_pre).map_err(instantiate)?,
            ),
        };
        let shared = Arc::new(Shared {
            engine: engine.clone(),
            name: name.into(),
            capabilities: Arc::new(capabilities),
            counters: Arc::default(),
        });
        let mut plugin = AdapterPlugin {
            shared,
            pre,
            info: Arc::new(AdapterInfo {
                name: name.into(),
                version: String::new(),
                description: String::new(),
                max_batch_size: 1,
                upsert_key: String::new(),
                required_properties: vec![],
                supports_webhooks: false,
                config_keys: vec![],
                secrets: vec![],
                default_hosts: vec![],
                rate_limits: vec![],
                max_concurrent: None,
                auth: AuthScheme::Undeclared,
            }),
            erasure,
        };
        plugin.info = Arc::new(plugin.describe().await?);
        Ok(plugin)
    }

    pub fn info(&self) -> &AdapterInfo {
        &self.info
    }

    /// The WIT version the component targets.
    pub fn wit_version(&self) -> WitVersion {
        match self.pre {
            AdapterPre::Current(_) => WitVersion::V0_2,
            AdapterPre::V0_1(_) => WitVersion::V0_1,
        }
    }

    /// The same compiled adapter with other capabilities (and fresh
    /// counters).
    pub fn with_capabilities(&self, capabilities: Capabilities) -> AdapterPlugin {
        AdapterPlugin {
            shared: Arc::new(Shared {
                engine: self.shared.engine.clone(),
                name: self.shared.name.clone(),
                capabilities: Arc::new(capabilities),
                counters: Arc::default(),
            }),
            pre: self.pre.clone(),
            info: self.info.clone(),
            erasure: self.erasure.clone(),
        }
    }

    /// Whether the adapter exports `erasure` (it can delete records at its
    /// CRM).
    pub fn can_erase(&self) -> bool {
        self.erasure.is_some()
    }

    pub fn counters(&self) -> &PluginCounters {
        &self.shared.counters
    }

    async fn instance(
        &self,
        call: Option<Arc<CallSecrets>>,
    ) -> Result<(Store<CallState>, AdapterInstance), CallError> {
        let mut store = self.shared.new_store(call);
        let instance = match &self.pre {
            AdapterPre::Current(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(AdapterInstance::Current),
            AdapterPre::V0_1(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(AdapterInstance::V0_1),
        };
        match instance {
            Ok(instance) => Ok((store, instance)),
            Err(e) => Err(self.shared.instantiation_error(&store, e)),
        }
    }

    async fn describe(&self) -> Result<AdapterInfo, CallError> {
        let started = Instant::now();
        let (mut store, instance) = self.instance(None).await?;
        let result = match instance {
            AdapterInstance::Current(i) => i
                .leadgate_plugin_adapter()
                .call_describe(&mut store)
                .await
                .map(from_wit_info),
            AdapterInstance::V0_1(i) => i
                .leadgate_plugin_adapter()
                .call_describe(&mut store)
                .await
                .map(compat::info),
        };
        let out = match result {
            Ok(info) => {
                let size = info.name.len()
                    + info.description.len()
                    + info.config_keys.iter().map(String::len).sum::<usize>()
                    + info.default_hosts.iter().map(String::len).sum::<usize>();
                self.shared.check_output(size).map(|()| info)
            }
            Err(e) => Err(self.shared.classify(&store, e)),
        };
        self.shared.record(started, out.is_ok());
        out
    }

    /// Delivers a batch. Exactly one outcome per delivery, in the batch's
    /// order, or an error for the whole call.
    pub async fn push(
        &self,
        batch: &[Delivery],
        ctx: &PushContext,
    ) -> Result<Vec<Outcome>, CallError> {
        self.push_with(batch, ctx, None).await
    }

    /// [`push`](Self::push) with secrets obtained for this call alone (an
    /// OAuth access token): `{{secret:NAME}}` resolves to them too, and
    /// `call` says afterwards whether the CRM answered any request 401.
    pub async fn push_with(
        &self,
        batch: &[Delivery],
        ctx: &PushContext,
        call: Option<Arc<CallSecrets>>,
    ) -> Result<Vec<Outcome>, CallError> {
        let started = Instant::now();
        let out = self.push_inner(batch, ctx, call).await;
        self.shared.record(started, out.is_ok());
        out
    }

    async fn push_inner(
        &self,
        batch: &[Delivery],
        ctx: &PushContext,
        call: Option<Arc<CallSecrets>>,
    ) -> Result<Vec<Outcome>, CallError> {
        let (mut store, instance) = self.instance(call).await?;
        let outcomes = match instance {
            AdapterInstance::Current(i) => {
                let (wit_batch, wit_ctx) = current::push_args(batch, ctx);
                i.leadgate_plugin_adapter()
                    .call_push(&mut store, &wit_batch, &wit_ctx)
                    .await
                    .map(|o| {
                        o.into_iter()
                            .map(|o| (o.delivery_id, from_wit_outcome(o.outcome)))
                            .collect::<Vec<_>>()
                    })
            }
            AdapterInstance::V0_1(i) => {
                let (wit_batch, wit_ctx) = legacy::push_args(batch, ctx);
                i.leadgate_plugin_adapter()
                    .call_push(&mut store, &wit_batch, &wit_ctx)
                    .await
                    .map(|o| {
                        o.into_iter()
                            .map(|o| (o.delivery_id, compat::outcome(o.outcome)))
                            .collect::<Vec<_>>()
                    })
            }
        }
        .map_err(|e| self.shared.classify(&store, e))?;
        let size: usize = outcomes
            .iter()
            .map(|(id, o)| id.len() + outcome_size(o))
            .sum();
        self.shared.check_output(size)?;
        order_outcomes(batch, |d| &d.id, outcomes)
    }

    /// Deletes records at the CRM: exactly one outcome per erasure
    /// (`Deleted`, `NotFound`, or a refusal, retry or throttle as for a
    /// delivery), in the batch's order, or an error for the whole call. An
    /// adapter without the `erasure` export refuses each one
    /// (`erase_unsupported`).
    pub async fn erase_with(
        &self,
        batch: &[Erasure],
        ctx: &PushContext,
        call: Option<Arc<CallSecrets>>,
    ) -> Result<Vec<Outcome>, CallError> {
        let (Some(indices), AdapterPre::Current(pre)) = (&self.erasure, &self.pre) else {
            let refusal = Outcome::Rejected(Rejection {
                kind: RejectionKind::Config,
                field: None,
                rule: "erase_unsupported".into(),
                message: format!(
                    "adapter {} (WIT {}) exports no erasure interface: delete the record at the CRM",
                    self.info.name,
                    self.wit_version()
                ),
            });
            return Ok(vec![refusal; batch.len()]);
        };
        let started = Instant::now();
        let out = async {
            let mut store = self.shared.new_store(call);
            let instance = match pre.instance_pre().instantiate_async(&mut store).await {
                Ok(instance) => instance,
                Err(e) => return Err(self.shared.instantiation_error(&store, e)),
            };
            let guest = indices
                .load(&mut store, &instance)
                .map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
            let requests: Vec<wit_erasure::ErasureRequest> = batch
                .iter()
                .map(|e| wit_erasure::ErasureRequest {
                    id: e.id.clone(),
                    record_id: e.record_id.clone(),
                })
                .collect();
            let wit_ctx = erasure_types::PushContext {
                destination: ctx.destination.clone(),
                config: ctx.config.clone(),
                attempt: ctx.attempt,
            };
            let outcomes = guest
                .call_erase(&mut store, &requests, &wit_ctx)
                .await
                .map_err(|e| self.shared.classify(&store, e))?;
            // Checked and put in order first, so that each gets its own
            // request's record id.
            let outcomes: Vec<(String, wit_erasure::EraseOutcome)> = outcomes
                .into_iter()
                .map(|o| (o.erasure_id, o.outcome))
                .collect();
            let ordered = order_outcomes(batch, |e| &e.id, outcomes)?;
            let outcomes: Vec<Outcome> = ordered
                .into_iter()
                .zip(batch)
                .map(|(o, e)| from_erase_outcome(o, e.record_id.clone()))
                .collect();
            let size: usize = batch
                .iter()
                .zip(&outcomes)
                .map(|(e, o)| e.id.len() + outcome_size(o))
                .sum();
            self.shared.check_output(size)?;
            Ok(outcomes)
        }
        .await;
        self.shared.record(started, out.is_ok());
        out
    }

    /// Verifies and parses a CRM webhook.
    pub async fn verify_webhook(
        &self,
        request: &WebhookRequest,
    ) -> Result<Result<WebhookReceipt, WebhookError>, CallError> {
        let started = Instant::now();
        let out = async {
            let (mut store, instance) = self.instance(None).await?;
            let result = match instance {
                AdapterInstance::Current(i) => i
                    .leadgate_plugin_adapter()
                    .call_verify_webhook(&mut store, &current::webhook_request(request))
                    .await
                    .map(current::webhook_result),
                AdapterInstance::V0_1(i) => i
                    .leadgate_plugin_adapter()
                    .call_verify_webhook(&mut store, &legacy::webhook_request(request))
                    .await
                    .map(legacy::webhook_result),
            }
            .map_err(|e| self.shared.classify(&store, e))?;
            if let Ok(receipt) = &result {
                let size: usize = receipt
                    .events
                    .iter()
                    .map(|e| {
                        e.kind.len()
                            + e.object_id.len()
                            + e.property_name.as_ref().map_or(0, String::len)
                            + e.property_value.as_ref().map_or(0, String::len)
                    })
                    .sum::<usize>()
                    + receipt
                        .answer
                        .as_ref()
                        .map_or(0, |a| a.content_type.len() + a.body.len());
                self.shared.check_output(size)?;
            }
            Ok(result)
        }
        .await;
        self.shared.record(started, out.is_ok());
        out
    }
}

/// The outcomes in the batch's order (`id` reads an item's id), checked:
/// one per item, none for an unknown one.
fn order_outcomes<T, O>(
    batch: &[T],
    id: impl Fn(&T) -> &str,
    outcomes: Vec<(String, O)>,
) -> Result<Vec<O>, CallError> {
    if outcomes.len() != batch.len() {
        return Err(CallError::BadOutput(format!(
            "{} outcomes for a batch of {}",
            outcomes.len(),
            batch.len()
        )));
    }
    let mut slots: Vec<Option<O>> = (0..batch.len()).map(|_| None).collect();
    let fast = outcomes.iter().zip(batch).all(|((o, _), d)| o == id(d));
    for (i, (delivery_id, outcome)) in outcomes.into_iter().enumerate() {
        let idx = if fast {
            i
        } else {
            batch
                .iter()
                .position(|d| id(d) == delivery_id)
                .ok_or_else(|| {
                    CallError::BadOutput(format!("outcome for unknown delivery {delivery_id:?}"))
                })?
        };
        if slots[idx].is_some() {
            return Err(CallError::BadOutput(format!(
                "two outcomes for delivery {delivery_id:?}"
            )));
        }
        slots[idx] = Some(outcome);
    }
    Ok(slots.into_iter().map(|o| o.expect("filled")).collect())
}

fn outcome_size(o: &Outcome) -> usize {
    match o {
        Outcome::Created(s)
        | Outcome::Updated(s)
        | Outcome::DuplicateOf(s)
        | Outcome::Deleted(s)
        | Outcome::NotFound(s) => s.len(),
        Outcome::Rejected(r) => {
            r.field.as_ref().map_or(0, String::len) + r.rule.len() + r.message.len()
        }
        Outcome::Retry { reason, .. } => reason.len(),
        Outcome::RateLimited { .. } => 8,
    }
}

/// An erasure's outcome; `record` is the record's CRM id.
fn from_erase_outcome(o: wit_erasure::EraseOutcome, record: String) -> Outcome {
    use erasure_types::{RejectionKind as K, RetryKind as R};
    use wit_erasure::EraseOutcome as E;
    match o {
        E::Deleted => Outcome::Deleted(record),
        E::NotFound => Outcome::NotFound(record),
        E::Rejected(r) => Outcome::Rejected(Rejection {
            kind: match r.kind {
                K::Validation => RejectionKind::Validation,
                K::Conflict => RejectionKind::Conflict,
                K::Forbidden => RejectionKind::Forbidden,
                K::Config => RejectionKind::Config,
                K::Other => RejectionKind::Other,
            },
            field: r.field,
            rule: r.rule,
            message: r.message,
        }),
        E::Retry(r) => Outcome::Retry {
            kind: match r.kind {
                R::Transient => RetryKind::Transient,
                R::HeldBack => RetryKind::HeldBack,
                R::ReadbackMismatch => RetryKind::ReadbackMismatch,
                R::AuthExpired => RetryKind::AuthExpired,
            },
            after_ms: r.after_ms,
            reason: r.reason,
        },
        E::RateLimited(ms) => Outcome::RateLimited { after_ms: ms },
    }
}

fn from_wit_outcome(o: wit::Outcome) -> Outcome {
    match o {
        wit::Outcome::Created(id) => Outcome::Created(id),
        wit::Outcome::Updated(id) => Outcome::Updated(id),
        wit::Outcome::DuplicateOf(id) => Outcome::DuplicateOf(id),
        wit::Outcome::Rejected(r) => Outcome::Rejected(Rejection {
            kind: match r.kind {
                wit::RejectionKind::Validation => RejectionKind::Validation,
                wit::RejectionKind::Conflict => RejectionKind::Conflict,
                wit::RejectionKind::Forbidden => RejectionKind::Forbidden,
                wit::RejectionKind::Config => RejectionKind::Config,
                wit::RejectionKind::Other => RejectionKind::Other,
            },
            field: r.field,
            rule: r.rule,
            message: r.message,
        }),
        wit::Outcome::Retry(r) => Outcome::Retry {
            kind: match r.kind {
                wit::RetryKind::Transient => RetryKind::Transient,
                wit::RetryKind::HeldBack => RetryKind::HeldBack,
                wit::RetryKind::ReadbackMismatch => RetryKind::ReadbackMismatch,
                wit::RetryKind::AuthExpired => RetryKind::AuthExpired,
            },
            after_ms: r.after_ms,
            reason: r.reason,
        },
        wit::Outcome::RateLimited(ms) => Outcome::RateLimited { after_ms: ms },
    }
}

/// Conversions of the types 0.1.0 and 0.2.0 share unchanged, written once
/// for the bindings of both (`wit` is the version's adapter interface).
macro_rules! same_shape_conversions {
    () => {
        pub(super) fn push_args(
            batch: &[Delivery],
            ctx: &PushContext,
        ) -> (Vec<wit::Delivery>, wit::PushContext) {
            let batch = batch
                .iter()
                .map(|d| wit::Delivery {
                    id: d.id.clone(),
                    idempotency_key: d.idempotency_key.clone(),
                    properties: d
                        .properties
                        .iter()
                        .map(|(name, value)| wit::Property {
                            name: name.clone(),
                            value: value.clone(),
                        })
                        .collect(),
                })
                .collect();
            let ctx = wit::PushContext {
                destination: ctx.destination.clone(),
                config: ctx.config.clone(),
                attempt: ctx.attempt,
            };
            (batch, ctx)
        }

        pub(super) fn webhook_request(request: &WebhookRequest) -> wit::WebhookRequest {
            wit::WebhookRequest {
                method: request.method.clone(),
                url: request.url.clone(),
                headers: request
                    .headers
                    .iter()
                    .map(|(name, value)| wit::Header {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                body: request.body.clone(),
            }
        }

        pub(super) fn webhook_events(events: Vec<wit::CrmEvent>) -> Vec<CrmEvent> {
            events
                .into_iter()
                .map(|e| CrmEvent {
                    kind: e.kind,
                    object_id: e.object_id,
                    occurred_at_ms: e.occurred_at_ms,
                    property_name: e.property_name,
                    property_value: e.property_value,
                })
                .collect()
        }

        pub(super) fn webhook_error(e: wit::WebhookError) -> WebhookError {
            match e {
                wit::WebhookError::Unsupported => WebhookError::Unsupported,
                wit::WebhookError::BadSignature => WebhookError::BadSignature,
                wit::WebhookError::StaleTimestamp => WebhookError::StaleTimestamp,
                wit::WebhookError::Malformed(m) => WebhookError::Malformed(m),
            }
        }

        pub(super) fn transform_context(
            source: &str,
            config: &[(String, String)],
        ) -> wit_transform::TransformContext {
            wit_transform::TransformContext {
                source: source.to_string(),
                config: config.to_vec(),
            }
        }

        pub(super) fn transform_result(
            result: Result<Vec<String>, wit_transform::TransformError>,
        ) -> Result<Vec<String>, TransformError> {
            result.map_err(|e| match e {
                wit_transform::TransformError::Malformed(m) => TransformError::Malformed(m),
                wit_transform::TransformError::InvalidField((field, reason)) => {
                    TransformError::InvalidField { field, reason }
                }
            })
        }
    };
}

/// The current package's shared shapes, and its webhook receipt.
mod current {
    use crate::bindings::adapter::exports::leadgate::plugin::adapter as wit;
    use crate::bindings::transform::exports::leadgate::plugin::transform as wit_transform;
    use crate::types::*;
    same_shape_conversions!();

    pub(super) fn webhook_result(
        result: Result<wit::WebhookReceipt, wit::WebhookError>,
    ) -> Result<WebhookReceipt, WebhookError> {
        result
            .map(|r| WebhookReceipt {
                events: webhook_events(r.events),
                answer: r.answer.map(|a| WebhookAnswer {
                    content_type: a.content_type,
                    body: a.body,
                }),
            })
            .map_err(webhook_error)
    }
}

/// 0.1.0's shared shapes (what differs is in `compat.rs`); its webhooks
/// give events only.
mod legacy {
    use crate::bindings::v0_1::adapter::exports::leadgate::plugin::adapter as wit;
    use crate::bindings::v0_1::transform::exports::leadgate::plugin::transform as wit_transform;
    use crate::types::*;
    same_shape_conversions!();

    pub(super) fn webhook_result(
        result: Result<Vec<wit::CrmEvent>, wit::WebhookError>,
    ) -> Result<WebhookReceipt, WebhookError> {
        result
            .map(|events| WebhookReceipt {
                events: webhook_events(events),
                answer: None,
            })
            .map_err(webhook_error)
    }
}

pub(crate) fn from_wit_info(i: wit::AdapterInfo) -> AdapterInfo {
    AdapterInfo {
        name: i.name,
        version: i.version,
        description: i.description,
        max_batch_size: i.max_batch_size.max(1),
        upsert_key: i.upsert_key,
        required_properties: i.required_properties,
        supports_webhooks: i.supports_webhooks,
        config_keys: i.config_keys,
        secrets: i.secrets,
        default_hosts: i.default_hosts,
        rate_limits: i
            .rate_limits
            .into_iter()
            .map(|r| RateLimit {
                name: r.name,
                max_requests: r.max_requests,
                window_ms: r.window_ms,
                kinds: r
                    .kinds
                    .into_iter()
                    .map(crate::imports::from_wit_kind)
                    .collect(),
            })
            .collect(),
        max_concurrent: i.max_concurrent,
        auth: match i.auth {
            wit::AuthScheme::None => AuthScheme::None,
            wit::AuthScheme::ApiKey(secret) => AuthScheme::ApiKey { secret },
            wit::AuthScheme::Oauth2(grants) => AuthScheme::OAuth2 {
                grants: grants
                    .into_iter()
                    .map(|g| match g {
                        wit::OauthGrant::RefreshToken => OAuthGrant::RefreshToken,
                        wit::OauthGrant::ClientCredentials => OAuthGrant::ClientCredentials,
                    })
                    .collect(),
            },
        },
    }
}

/// A source transform, compiled and pre-instantiated.
#[derive(Clone)]
pub struct TransformPlugin {
    shared: Arc<Shared>,
    pre: TransformPre,
    info: Arc<TransformInfo>,
}

#[derive(Clone)]
enum TransformPre {
    Current(SourceTransformPre<CallState>),
    V0_1(v0_1::transform::SourceTransformPre<CallState>),
}

enum TransformInstance {
    Current(SourceTransform),
    V0_1(v0_1::transform::SourceTransform),
}

impl TransformPlugin {
    pub async fn load(
        engine: &PluginEngine,
        name: &str,
        component: &Component,
    ) -> Result<Self, CallError> {
        let version = served_version(engine, component, "transform")?;
        let instance_pre = engine
            .transform_linker
            .instantiate_pre(component)
            .map_err(|e| CallError::Instantiate(format!("{e:#}")))?;
        let instantiate = |e: wasmtime::Error| CallError::Instantiate(format!("{e:#}"));
        let pre = match version {
            WitVersion::V0_2 => {
                TransformPre::Current(SourceTransformPre::new(instance_pre).map_err(instantiate)?)
            }
            WitVersion::V0_1 => TransformPre::V0_1(
                v0_1::transform::SourceTransformPre::new(instance_pre).map_err(instantiate)?,
            ),
        };
        let shared = Arc::new(Shared {
            engine: engine.clone(),
            name: name.into(),
            capabilities: Arc::new(Capabilities::none()),
            counters: Arc::default(),
        });
        let mut plugin = TransformPlugin {
            shared,
            pre,
            info: Arc::new(TransformInfo {
                name: name.into(),
                version: String::new(),
                description: String::new(),
            }),
        };
        let started = Instant::now();
        let (mut store, instance) = plugin.instance().await?;
        let info = match instance {
            TransformInstance::Current(i) => i
                .leadgate_plugin_transform()
                .call_describe(&mut store)
                .await
                .map(|i| (i.name, i.version, i.description)),
            TransformInstance::V0_1(i) => i
                .leadgate_plugin_transform()
                .call_describe(&mut store)
                .await
                .map(|i| (i.name, i.version, i.description)),
        }
        .map_err(|e| plugin.shared.classify(&store, e))?;
        plugin.shared.record(started, true);
        let (name, version, description) = info;
        plugin.info = Arc::new(TransformInfo {
            name,
            version,
            description,
        });
        Ok(plugin)
    }

    pub fn info(&self) -> &TransformInfo {
        &self.info
    }

    /// The WIT version the component targets.
    pub fn wit_version(&self) -> WitVersion {
        match self.pre {
            TransformPre::Current(_) => WitVersion::V0_2,
            TransformPre::V0_1(_) => WitVersion::V0_1,
        }
    }

    async fn instance(&self) -> Result<(Store<CallState>, TransformInstance), CallError> {
        let mut store = self.shared.new_store(None);
        let instance = match &self.pre {
            TransformPre::Current(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(TransformInstance::Current),
            TransformPre::V0_1(pre) => pre
                .instantiate_async(&mut store)
                .await
                .map(TransformInstance::V0_1),
        };
        match instance {
            Ok(instance) => Ok((store, instance)),
            Err(e) => Err(self.shared.classify(&store, e)),
        }
    }

    /// Turns a source payload into zero or more lead JSON objects.
    pub async fn transform(
        &self,
        payload: &[u8],
        source: &str,
        config: &[(String, String)],
    ) -> Result<Result<Vec<String>, TransformError>, CallError> {
        let started = Instant::now();
        let out = async {
            let (mut store, instance) = self.instance().await?;
            let result = match instance {
                TransformInstance::Current(i) => i
                    .leadgate_plugin_transform()
                    .call_transform(
                        &mut store,
                        payload,
                        &current::transform_context(source, config),
                    )
                    .await
                    .map(current::transform_result),
                TransformInstance::V0_1(i) => i
                    .leadgate_plugin_transform()
                    .call_transform(
                        &mut store,
                        payload,
                        &legacy::transform_context(source, config),
                    )
                    .await
                    .map(legacy::transform_result),
            }
            .map_err(|e| self.shared.classify(&store, e))?;
            if let Ok(leads) = &result {
                self.shared
                    .check_output(leads.iter().map(String::len).sum())?;
            }
            Ok(result)
        }
        .await;
        self.shared.record(started, out.is_ok());
        out
    }
}
