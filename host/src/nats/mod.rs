//! The NATS JetStream transport: a source whose payloads arrive on a
//! JetStream subject. A durable pull consumer takes the messages (hosts
//! sharing a store share the consumer: each message goes to one of them),
//! each goes through the same ingest as an HTTP post, and it is
//! acknowledged only once its leads are committed:
//!
//! - a message's leads are named by the message (stream and sequence,
//!   and the time it was published) and their place in it, so a message
//!   delivered again (its host died after the commit, before the ack) is
//!   recognized as stored and only acked;
//!   a publisher's `Nats-Msg-Id` makes JetStream drop a message published
//!   twice within the stream's duplicate window;
//! - a message that can never be read (not JSON, too many leads, refused by
//!   the source's transform) is terminated, never redelivered, and its
//!   error published on `leadgate.rejected.<source>` and logged; leads of
//!   a message refused one by one (a bad email) are published there too;
//! - a message that cannot be taken now (the store failed, the backlog or
//!   the source's rate is over its limit) is given back with a delay;
//! - pulling pauses while the source's backlog is over its limit.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures_util::StreamExt as _;
use tokio::sync::watch;

use crate::config::NatsSource;
use crate::pipeline::ingest::{Ingest, IngestError, LeadIds, LeadStatus, Source, parse_payload};
use crate::store::Store;

/// How long a pull waits for messages before it is asked again.
const FETCH_WAIT: Duration = Duration::from_millis(500);
/// How long a message whose leads were not stored waits before it comes
/// back (unless the error says longer).
const RETRY: Duration = Duration::from_secs(1);

/// One NATS source's consumer.
pub struct Consumer {
    pub ingest: Arc<Ingest>,
    pub store: Arc<dyn Store>,
    pub source: Arc<Source>,
    pub config: NatsSource,
    pub max_leads: usize,
}

#[derive(Debug, thiserror::Error)]
enum NatsError {
    #[error("connecting to {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("stream {stream}: {reason}")]
    Stream { stream: String, reason: String },
    #[error("consumer {consumer}: {reason}")]
    Consumer { consumer: String, reason: String },
    #[error("pulling messages: {0}")]
    Pull(String),
}

impl Consumer {
    /// Consumes until stopped; a lost connection is made again.
    pub async fn run(self: Arc<Self>, mut stopped: watch::Receiver<bool>) {
        let mut wait = Duration::from_millis(200);
        loop {
            tokio::select! {
                _ = stopped.wait_for(|s| *s) => return,
                result = self.consume() => {
                    if let Err(e) = result {
                        tracing::warn!(source = %self.source.name, error = %e, "NATS ingest interrupted; trying again");
                    }
                }
            }
            tokio::select! {
                _ = stopped.wait_for(|s| *s) => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(10));
        }
    }

    fn consumer_name(&self) -> String {
        match self.config.consumer.trim() {
            "" => format!("leadgate-{}", self.source.name),
            name => name.to_string(),
        }
    }

    async fn consume(self: &Arc<Self>) -> Result<(), NatsError> {
        let url = &self.config.url;
        let client = async_nats::connect(url)
            .await
            .map_err(|e| NatsError::Connect {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let js = jetstream::new(client.clone());
        let stream = js
            .get_or_create_stream(jetstream::stream::Config {
                name: self.config.stream.clone(),
                subjects: vec![self.config.subject.clone()],
                ..Default::default()
            })
            .await
            .map_err(|e| NatsError::Stream {
                stream: self.config.stream.clone(),
                reason: e.to_string(),
            })?;
        let name = self.consumer_name();
        let consumer = stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: self.config.subject.clone(),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| NatsError::Consumer {
                consumer: name.clone(),
                reason: e.to_string(),
            })?;
        tracing::info!(source = %self.source.name, stream = %self.config.stream, subject = %self.config.subject, consumer = %name, "NATS ingest consuming");
        loop {
            if self.ingest.backlog.over_limit(&self.source.name).is_some() {
                tokio::time::sleep(RETRY).await;
                continue;
            }
            let mut messages = consumer
                .fetch()
                .max_messages(self.config.batch)
                .expires(FETCH_WAIT)
                .messages()
                .await
                .map_err(|e| NatsError::Pull(e.to_string()))?;
            // The messages of a pull go through ingest together, each on a
            // task of its own as it arrives: their leads share group
            // commits (one at a time, a message would wait for a commit of
            // its own) and are normalized on every core.
            let mut taking = tokio::task::JoinSet::new();
            let mut pulling = true;
            while pulling || !taking.is_empty() {
                tokio::select! {
                    message = messages.next(), if pulling => match message {
                        Some(message) => {
                            let message = message.map_err(|e| NatsError::Pull(e.to_string()))?;
                            let (this, client) = (self.clone(), client.clone());
                            taking.spawn(async move { this.take(&client, message).await });
                        }
                        None => pulling = false,
                    },
                    Some(_) = taking.join_next(), if !taking.is_empty() => {}
                }
            }
        }
    }

    /// Ingests one message and acknowledges it as its outcome says.
    async fn take(&self, client: &async_nats::Client, message: jetstream::Message) {
        let Ok(info) = message.info() else {
            tracing::warn!(source = %self.source.name, "a NATS message without JetStream metadata; terminated");
            let _ = message.ack_with(AckKind::Term).await;
            return;
        };
        let name = format!("{}/{}", info.stream, info.stream_sequence);
        let delivered = info.delivered;
        let at_ms = (info.published.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
        let ids = LeadIds::Derived { name: &name, at_ms };
        if delivered > 1 && self.already_stored(&message.payload, ids).await {
            let _ = message.ack().await;
            return;
        }
        let ack = match self
            .ingest
            .accept_as(&self.source, &message.payload, ids)
            .await
        {
            Ok(report) => {
                let refused: Vec<_> = report
                    .results
                    .iter()
                    .filter(|r| r.status == LeadStatus::Rejected)
                    .collect();
                if !refused.is_empty() {
                    self.reject(
                        client,
                        &name,
                        serde_json::json!({"message": name, "results": refused}),
                    )
                    .await;
                }
                AckKind::Ack
            }
            Err(e) => match retry_after(&e) {
                Some(wait) => AckKind::Nak(Some(wait)),
                None => {
                    let error = e.to_string();
                    tracing::warn!(source = %self.source.name, message = %name, error = %leadgate_runtime::mask::mask_pii(&error), "NATS message refused; terminated");
                    self.reject(
                        client,
                        &name,
                        serde_json::json!({"message": name, "error": error}),
                    )
                    .await;
                    AckKind::Term
                }
            },
        };
        if let Err(e) = message.ack_with(ack).await {
            // Not acknowledged: JetStream delivers it again, and it is
            // recognized as stored.
            tracing::warn!(source = %self.source.name, message = %name, error = %e, "acknowledging a NATS message failed");
        }
    }

    /// Whether a message delivered again was stored before (its leads are
    /// stored together or not at all: one found is enough).
    async fn already_stored(&self, payload: &[u8], ids: LeadIds<'_>) -> bool {
        let leads = parse_payload(payload).map_or(self.max_leads, |l| l.len().min(self.max_leads));
        for index in 0..leads {
            if let Ok(Some(_)) = self.store.lead(&ids.id(index)).await {
                return true;
            }
        }
        false
    }

    /// Publishes why a message, or leads of it, were refused.
    async fn reject(&self, client: &async_nats::Client, name: &str, detail: serde_json::Value) {
        let subject = format!("leadgate.rejected.{}", self.source.name);
        if let Err(e) = client.publish(subject, detail.to_string().into()).await {
            tracing::warn!(source = %self.source.name, message = %name, error = %e, "publishing a refusal failed");
        }
    }
}

/// How long to wait before a message comes back, for an error that
/// passes; `None` for one that never will (the message is terminated).
fn retry_after(e: &IngestError) -> Option<Duration> {
    use crate::pipeline::ingest::TransformFailure;
    match e {
        IngestError::BacklogFull { retry_after_s, .. } => Some(Duration::from_secs(*retry_after_s)),
        IngestError::RateLimited {
            retry_after_s: Some(s),
            ..
        } => Some(Duration::from_secs(*s)),
        IngestError::Outbox(_) => Some(RETRY),
        // The plugin may come back (a reload); its refusal is final.
        IngestError::Transform(
            TransformFailure::Unavailable(_) | TransformFailure::Failed { .. },
        ) => Some(Duration::from_secs(5)),
        IngestError::RateLimited {
            retry_after_s: None,
            ..
        }
        | IngestError::Payload(_)
        | IngestError::TooManyLeads { .. }
        | IngestError::Transform(TransformFailure::Refused(_)) => None,
    }
}
