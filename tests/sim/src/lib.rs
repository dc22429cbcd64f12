//! `leadgate-sim`: an in-memory simulator of HubSpot's CRM v3 contacts API,
//! with Pipedrive's v2 persons API (`pipedrive.rs`), Salesforce's REST API
//! for Leads and Contacts (`salesforce.rs`), Zoho CRM's Records API for
//! Leads and Contacts (`zoho.rs`), the Dynamics 365 / Dataverse Web API
//! for leads and contacts (`dataverse.rs`) and a Standard Webhooks receiver
//! (`hooks.rs`) on the same server.
//!
//! It speaks HubSpot's wire contract closely enough that an adapter which
//! works against it works against HubSpot: the same paths (both
//! `/crm/v3/objects/contacts` and `/crm/objects/2026-03/contacts`), bearer
//! auth with HubSpot's 401 bodies, `X-HubSpot-RateLimit-*` headers and 429s,
//! 409 duplicates naming the existing id, validation errors with the JSON array
//! inside the message, and batch 207s keyed by `objectWriteTraceId`. Faults
//! (429 storms, 5xx bursts, latency, outages, silently dropped writes, token
//! expiry) are injected through [`SimHandle`] or the `/_sim/*` control routes.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let sim = leadgate_sim::Simulator::start(leadgate_sim::SimConfig::default()).await?;
//! println!("HubSpot at {}", sim.base_url());
//! let handle = sim.handle();
//! assert_eq!(handle.count_by_email("jane@example.com"), 0);
//! sim.shutdown().await;
//! # Ok(()) }
//! ```

mod api;
mod auth;
mod control;
mod creates;
mod dataverse;
mod errors;
mod faults;
mod gate;
mod hooks;
mod index;
mod oauth;
mod pipedrive;
mod props;
mod ratelimit;
mod salesforce;
mod store;
mod wire;
mod zoho;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use creates::{Created, Crm};
pub use dataverse::{
    DATAVERSE_TENANT_ID, DataverseLimits, DataverseRecord, DataverseTable, LEADGATE_KEY_COLUMN,
};
pub use faults::Faults;
pub use hooks::{DEFAULT_WEBHOOK_SECRET, HookMessage, secret_key, sign};
pub use oauth::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_REFRESH_TOKEN, Vendor};
pub use pipedrive::{Labeled, Person, PipedriveLimits};
pub use props::{
    KNOWN_PROPERTIES, LEAD_STATUSES, LIFECYCLE_STAGES, READ_ONLY_PROPERTIES, is_valid_email,
};
pub use salesforce::{
    DEFAULT_DAILY_LIMIT as SALESFORCE_DEFAULT_DAILY_LIMIT, DuplicateRuleAction, SalesforceRecord,
};
pub use store::{Contact, FIRST_ID};
pub use zoho::{ZohoLimits, ZohoRecord};

use auth::Tokens;
use faults::FaultState;
use props::Schema;
use ratelimit::{Limits, RateLimiter};
use store::Store;

/// Settings of one simulator instance.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Address to listen on; port 0 picks a free port.
    pub addr: SocketAddr,
    /// Accepted bearer tokens.
    pub tokens: Vec<String>,
    /// Requests per rolling window per token (HubSpot private apps: 190 per 10 s).
    pub burst_limit: u32,
    /// Length of the rolling window.
    pub burst_window_ms: u64,
    /// Requests per day per token.
    pub daily_limit: u32,
    /// CRM search requests per second per token.
    pub search_limit_per_sec: u32,
    /// Most inputs one batch call may carry.
    pub max_batch: usize,
    /// Pipedrive's per-token limits.
    pub pipedrive: PipedriveLimits,
    /// The secret `/hooks/{name}` checks Standard Webhooks signatures with
    /// (`whsec_<base64>`).
    pub webhook_secret: String,
    /// Salesforce API requests per rolling 24 hours for the whole org
    /// (100,000, an Enterprise Edition's base allocation).
    pub salesforce_daily_limit: u32,
    /// Zoho's API credits, concurrency limit and search-index lag.
    pub zoho: ZohoLimits,
    /// Dataverse's service protection limits (per user).
    pub dataverse: DataverseLimits,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            tokens: vec!["sim-token".into()],
            burst_limit: 190,
            burst_window_ms: 10_000,
            daily_limit: 1_000_000,
            search_limit_per_sec: 5,
            max_batch: 100,
            pipedrive: PipedriveLimits::default(),
            webhook_secret: DEFAULT_WEBHOOK_SECRET.into(),
            salesforce_daily_limit: salesforce::DEFAULT_DAILY_LIMIT,
            zoho: ZohoLimits::default(),
            dataverse: DataverseLimits::default(),
        }
    }
}

impl SimConfig {
    fn limits(&self) -> Limits {
        Limits {
            burst: self.burst_limit,
            window: Duration::from_millis(self.burst_window_ms),
            daily: self.daily_limit,
            search_per_sec: self.search_limit_per_sec,
        }
    }
}

/// Counters of API traffic (control routes are not counted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// API requests answered, whatever the outcome.
    pub requests_total: u64,
    /// Answers by HTTP status code.
    pub by_status: BTreeMap<u16, u64>,
    /// 429s sent (real limits and injected storms).
    pub rate_limited: u64,
    /// Of those, the 429s of a HubSpot account's real limits (a client
    /// over its quota), not of an injected storm.
    pub over_quota: u64,
    /// 5xx sent.
    pub server_errors: u64,
    /// Contacts created.
    pub records_created: u64,
    /// Contact updates stored.
    pub records_updated: u64,
    /// Record writes that answered success but were dropped (`fail_silently_next`).
    pub writes_dropped: u64,
}

impl SimStats {
    fn record(&mut self, status: u16) {
        self.requests_total += 1;
        *self.by_status.entry(status).or_insert(0) += 1;
        if status == 429 {
            self.rate_limited += 1;
        }
        if status >= 500 {
            self.server_errors += 1;
        }
    }
}

/// Everything the server mutates, behind one lock.
#[derive(Debug)]
pub(crate) struct State {
    pub store: Store,
    pub schema: Schema,
    pub stats: SimStats,
    pub faults: FaultState,
    pub tokens: Tokens,
    pub limiter: RateLimiter,
    /// Most inputs one batch call may carry.
    pub max_batch: usize,
    pub pipedrive: pipedrive::PipedriveState,
    pub hooks: hooks::HookState,
    /// Every record created, per CRM.
    pub creates: creates::CreateLog,
    /// The OAuth 2.0 token endpoints (Salesforce, Entra ID, Zoho).
    pub oauth: oauth::OAuthState,
    /// The Salesforce org: records, schema, duplicate rule, API usage.
    pub salesforce: salesforce::SalesforceState,
    /// The Zoho org: records, fields, credits, calls in flight.
    pub zoho: zoho::ZohoState,
    /// The Dataverse org: rows, columns and keys, service protection.
    pub dataverse: dataverse::DataverseState,
}

/// State shared by the server and every [`SimHandle`].
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
    /// API requests received and not yet answered.
    in_flight: AtomicU64,
    /// Of those, writes (creates, updates, upserts).
    in_flight_writes: AtomicU64,
}

impl Shared {
    fn new(config: SimConfig) -> Self {
        let state = State {
            store: Store::default(),
            schema: Schema::default(),
            stats: SimStats::default(),
            faults: FaultState::default(),
            tokens: Tokens::new(&config.tokens),
            limiter: RateLimiter::new(config.limits()),
            max_batch: config.max_batch,
            pipedrive: pipedrive::PipedriveState::new(config.pipedrive),
            hooks: hooks::HookState::new(&config.webhook_secret),
            creates: creates::CreateLog::default(),
            oauth: oauth::OAuthState::default(),
            salesforce: salesforce::SalesforceState::new(config.salesforce_daily_limit),
            zoho: zoho::ZohoState::new(config.zoho),
            dataverse: dataverse::DataverseState::new(config.dataverse),
        };
        Shared {
            state: Mutex::new(state),
            in_flight: AtomicU64::new(0),
            in_flight_writes: AtomicU64::new(0),
        }
    }

    /// Locks the state; a panic elsewhere never wedges the simulator.
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A running simulator. Dropping it (or [`Simulator::shutdown`]) stops the
/// server.
#[derive(Debug)]
pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Simulator {
    /// Binds `config.addr` and starts serving on the current Tokio runtime.
    pub async fn start(config: SimConfig) -> anyhow::Result<Simulator> {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("crm-sim: cannot listen on {}", config.addr))?;
        let addr = listener.local_addr().context("crm-sim: no local address")?;
        let shared = Arc::new(Shared::new(config));
        let app = api::app(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let server = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(err) = server.await {
                tracing::error!(%err, "crm-sim server failed");
            }
        });
        tracing::debug!(%addr, "crm-sim listening");
        Ok(Simulator {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT` (the loopback address when bound to an
    /// unspecified one).
    pub fn base_url(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(Ipv4Addr::LOCALHOST.into());
        }
        format!("http://{addr}")
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn handle(&self) -> SimHandle {
        SimHandle {
            shared: self.shared.clone(),
        }
    }

    /// Stops accepting connections and waits (up to 5 s) for open requests to
    /// finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Inspects and steers a running simulator. Cheap to clone; `Send + Sync`.
#[derive(Clone, Debug)]
pub struct SimHandle {
    shared: Arc<Shared>,
}

impl SimHandle {
    /// Calls to `vendor`'s token endpoint so far.
    pub fn oauth_calls(&self, vendor: Vendor) -> u64 {
        self.shared.lock().oauth.calls(vendor)
    }

    /// Turns refresh-token rotation on or off for `vendor` (Entra ID
    /// always rotates).
    pub fn set_oauth_rotation(&self, vendor: Vendor, on: bool) {
        self.shared.lock().oauth.set_rotation(vendor, on);
    }

    /// Every refresh token stops working, as when the app is revoked.
    pub fn revoke_refresh_tokens(&self) {
        self.shared.lock().oauth.revoke_refresh_tokens();
    }

    /// A refresh token `vendor` accepts (`None`: every vendor).
    pub fn add_refresh_token(&self, token: &str, vendor: Option<Vendor>) {
        self.shared.lock().oauth.add_refresh_token(token, vendor);
    }

    /// The refresh tokens `vendor` accepts now.
    pub fn refresh_tokens(&self, vendor: Vendor) -> Vec<String> {
        self.shared.lock().oauth.refresh_tokens(vendor)
    }

    /// Every OAuth access token issued so far expires now.
    pub fn expire_oauth_access_tokens(&self) {
        self.shared.lock().oauth.expire_access_tokens();
    }

    /// Whether `token` is a live access token `vendor` issued.
    pub fn oauth_access_valid(&self, vendor: Vendor, token: &str) -> bool {
        self.shared
            .lock()
            .oauth
            .access_valid(vendor, token, now_ms())
    }

    /// Number of stored contacts.
    pub fn contact_count(&self) -> usize {
        self.shared.lock().store.len()
    }

    /// Number of stored contacts whose email equals `email`, ignoring case.
    /// More than one would be a duplicate.
    pub fn count_by_email(&self, email: &str) -> usize {
        self.shared.lock().store.count_by_email(email)
    }

    /// Snapshot of every contact, in id order.
    pub fn contacts(&self) -> Vec<Contact> {
        self.shared
            .lock()
            .store
            .sorted()
            .into_iter()
            .cloned()
            .collect()
    }

    /// Contacts whose email equals `email`, ignoring case.
    pub fn contacts_by_email(&self, email: &str) -> Vec<Contact> {
        self.shared.lock().store.find_by_email(email)
    }

    /// Gives the contact whose primary email is `primary` the secondary
    /// email `additional` (`hs_additional_emails`), as a merge in HubSpot
    /// leaves the merged contact's address. Returns the contact's id.
    pub fn add_additional_email(&self, primary: &str, additional: &str) -> Result<String, String> {
        let mut shared = self.shared.lock();
        let id = shared
            .store
            .find_by_email(primary)
            .first()
            .and_then(|c| c.id.parse::<u64>().ok())
            .ok_or_else(|| format!("no contact with the email {primary}"))?;
        shared.store.add_additional_email(id, additional)?;
        Ok(id.to_string())
    }

    /// A contact by id.
    pub fn contact(&self, id: &str) -> Option<Contact> {
        let id = id.parse::<u64>().ok()?;
        self.shared.lock().store.get(id).cloned()
    }

    /// API requests received and not answered yet (a test that kills a
    /// client can tell whether a call was in flight at that moment).
    pub fn in_flight(&self) -> u64 {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    /// Writes (creates, updates, upserts) received and not answered yet:
    /// a client killed now may never learn that its write was done.
    pub fn in_flight_writes(&self) -> u64 {
        self.shared.in_flight_writes.load(Ordering::Acquire)
    }

    pub fn stats(&self) -> SimStats {
        self.shared.lock().stats.clone()
    }

    /// Replaces the faults in force.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().faults.set(faults);
    }

    /// The faults in force, with counters as far as they have run down.
    pub fn faults(&self) -> Faults {
        self.shared.lock().faults.faults.clone()
    }

    /// Every token known now answers 401 EXPIRED_AUTHENTICATION until it is
    /// added again with [`SimHandle::add_token`].
    pub fn expire_tokens(&self) {
        self.shared.lock().tokens.expire_all();
    }

    /// Accepts `token` (again).
    pub fn add_token(&self, token: &str) {
        self.shared.lock().tokens.add(token);
    }

    /// Defines a custom contact property, so writes of it are accepted.
    pub fn define_property(&self, name: &str) {
        self.shared.lock().schema.define(name);
    }

    /// Drops all records, the create log, stats, faults and rate-limit usage
    /// (Salesforce's daily API usage and Zoho's credits too). Tokens,
    /// defined properties, Salesforce and Zoho fields, the duplicate rule
    /// and the limits stay; ids keep increasing.
    pub fn reset(&self) {
        let mut state = self.shared.lock();
        state.store.clear();
        state.stats = SimStats::default();
        state.faults.set(Faults::default());
        state.limiter.clear();
        state.pipedrive.clear();
        state.hooks.clear();
        state.creates.clear();
        state.salesforce.clear();
        state.zoho.clear();
        state.dataverse.clear();
    }

    /// The records created in `crm` (every CRM when `None`) with any of
    /// `emails` (ignoring case) or `phones` (same digits), oldest first;
    /// with neither, every create. More than one for one person is a
    /// duplicate record, however the CRM keys its records.
    pub fn creates(&self, crm: Option<Crm>, emails: &[&str], phones: &[&str]) -> Vec<Created> {
        self.shared.lock().creates.find(crm, emails, phones)
    }

    /// Every Pipedrive person, in id order.
    pub fn pipedrive_persons(&self) -> Vec<Person> {
        self.shared
            .lock()
            .pipedrive
            .persons
            .values()
            .cloned()
            .collect()
    }

    /// One Pipedrive person, by its id.
    pub fn pipedrive_person(&self, id: &str) -> Option<Person> {
        let id = id.parse::<u64>().ok()?;
        self.shared.lock().pipedrive.persons.get(&id).cloned()
    }

    /// Pipedrive persons with this email, ignoring case. More than one is a
    /// duplicate (Pipedrive itself never refuses one).
    pub fn pipedrive_count_by_email(&self, email: &str) -> usize {
        self.shared.lock().pipedrive.count_by_email(email)
    }

    /// Every Salesforce record of `object` (`Lead` or `Contact`, any
    /// case), in creation order; empty for an unknown object.
    pub fn salesforce_records(&self, object: &str) -> Vec<SalesforceRecord> {
        let Some(object) = salesforce::SObject::parse(object) else {
            return Vec::new();
        };
        self.shared.lock().salesforce.of(object).cloned().collect()
    }

    /// One Salesforce record by its 18- or 15-character id.
    pub fn salesforce_record(&self, id: &str) -> Option<SalesforceRecord> {
        self.shared.lock().salesforce.find(id).cloned()
    }

    /// Salesforce records of `object` whose Email equals `email`, ignoring
    /// case. More than one is a duplicate.
    pub fn salesforce_count_by_email(&self, object: &str, email: &str) -> usize {
        self.salesforce_records(object)
            .iter()
            .filter(|r| r.email().is_some_and(|e| e.eq_ignore_ascii_case(email)))
            .count()
    }

    /// Adds a custom field (`…__c`) to `object`, or changes an existing
    /// one; with `external_id` it is an External ID and Unique field (like
    /// `Leadgate_Id__c`), so upserts may key on it. Returns false for an
    /// unknown object or a name without `__c`.
    pub fn define_salesforce_field(&self, object: &str, name: &str, external_id: bool) -> bool {
        self.define_salesforce(object, name, external_id.then_some(true))
    }

    /// Adds an External ID field that is not Unique: records may share a
    /// value, and an upsert or read by a shared value answers 300
    /// Multiple Choices (`DUPLICATE_EXTERNAL_ID` in a collection).
    pub fn define_salesforce_external_id(&self, object: &str, name: &str, unique: bool) -> bool {
        self.define_salesforce(object, name, Some(unique))
    }

    fn define_salesforce(&self, object: &str, name: &str, external_id: Option<bool>) -> bool {
        let Some(object) = salesforce::SObject::parse(object) else {
            return false;
        };
        self.shared
            .lock()
            .salesforce
            .define_field(object, name, external_id)
    }

    /// Turns the Lead duplicate rule (on by default) on or off.
    pub fn set_salesforce_duplicate_rule(&self, on: bool) {
        let mut state = self.shared.lock();
        state.salesforce.duplicate_rule = on.then_some(DuplicateRuleAction::Alert);
    }

    /// Turns the Lead duplicate rule on with `action`: `Alert` (the
    /// default: refused unless `allowSave=true`) or `Block` (always
    /// refused).
    pub fn set_salesforce_duplicate_rule_action(&self, action: DuplicateRuleAction) {
        self.shared.lock().salesforce.duplicate_rule = Some(action);
    }

    /// Converts a Salesforce lead: makes a Contact from it and marks the
    /// lead converted (`IsConverted`, `ConvertedContactId`), after which
    /// every write to the lead fails with `CANNOT_UPDATE_CONVERTED_LEAD`.
    /// Returns the contact's id; `None` if `lead_id` is not an unconverted
    /// lead. The contact is not in the create log (the connector did not
    /// create it).
    pub fn convert_salesforce_lead(&self, lead_id: &str) -> Option<String> {
        self.shared.lock().salesforce.convert_lead(lead_id)
    }

    /// Sets the org's daily API request allocation.
    pub fn set_salesforce_daily_limit(&self, max: u32) {
        self.shared.lock().salesforce.daily_limit = max;
    }

    /// Salesforce API requests counted in the last 24 hours, and the
    /// allocation (`Sforce-Limit-Info: api-usage=used/max`).
    pub fn salesforce_api_usage(&self) -> (u32, u32) {
        self.shared.lock().salesforce.usage(now_ms())
    }

    /// Every Zoho record of `module` (`Leads` or `Contacts`, any case), in
    /// creation order; empty for an unknown module.
    pub fn zoho_records(&self, module: &str) -> Vec<ZohoRecord> {
        let Some(module) = zoho::Module::parse(module) else {
            return Vec::new();
        };
        self.shared
            .lock()
            .zoho
            .of(module)
            .map(|s| s.record.clone())
            .collect()
    }

    /// One Zoho record by its 19-digit id, in any module.
    pub fn zoho_record(&self, id: &str) -> Option<ZohoRecord> {
        self.shared.lock().zoho.find(id).map(|s| s.record.clone())
    }

    /// Zoho records of `module` whose Email equals `email`, ignoring case.
    /// More than one is a duplicate.
    pub fn zoho_count_by_email(&self, module: &str, email: &str) -> usize {
        self.zoho_records(module)
            .iter()
            .filter(|r| r.email().is_some_and(|e| e.eq_ignore_ascii_case(email)))
            .count()
    }

    /// Sets the Zoho org's API credits per rolling 24 hours.
    pub fn set_zoho_credits(&self, daily: u32) {
        self.shared.lock().zoho.limits.daily_credits = daily;
    }

    /// Zoho API credits used in the last 24 hours.
    pub fn zoho_credits_used(&self) -> u32 {
        self.shared.lock().zoho.credits(now_ms()).0
    }

    /// Zoho API credits used in the last 24 hours, and the allowance.
    pub fn zoho_credits(&self) -> (u32, u32) {
        self.shared.lock().zoho.credits(now_ms())
    }

    /// Sets how many Zoho calls may be in flight at once.
    pub fn set_zoho_concurrency(&self, max: u32) {
        self.shared.lock().zoho.limits.concurrency = max;
    }

    /// Sets how long a written Zoho record takes to show up in `/search`.
    pub fn set_zoho_search_lag_ms(&self, ms: u64) {
        self.shared.lock().zoho.limits.search_lag_ms = ms;
    }

    /// Adds a custom field to a Zoho module (`Leads`, `Contacts`), or marks
    /// an existing writable field unique ("Do not allow duplicate
    /// values") or not. Returns false for an unknown module, a read-only
    /// system field, `Email`, or a name that is not letters, digits and
    /// underscores starting with a letter.
    pub fn define_zoho_field(&self, module: &str, api_name: &str, unique: bool) -> bool {
        let Some(module) = zoho::Module::parse(module) else {
            return false;
        };
        self.shared
            .lock()
            .zoho
            .define_field(module, api_name, unique)
    }

    /// Messages `/hooks/{endpoint}` accepted, in arrival order.
    pub fn hook_messages(&self, endpoint: &str) -> Vec<HookMessage> {
        self.shared
            .lock()
            .hooks
            .endpoints
            .get(endpoint)
            .cloned()
            .unwrap_or_default()
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
