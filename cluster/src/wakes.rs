//! Wake-ups: edges publish, workers take them one at a time from a shared durable consumer.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{self, pull};
use async_nats::jetstream::message::Acker;
use async_nats::jetstream::{AckKind, message::PublishMessage};
use futures_util::StreamExt;

use crate::{Cluster, ClusterError, WakeUp};

impl Cluster {
    /// Publishes a wake-up and records it as the repository's newest tip. Waits for
    /// JetStream's acknowledgement, so a returned `Ok` is stored.
    pub async fn publish_wake(&self, wake: &WakeUp) -> Result<(), ClusterError> {
        let body = wake.to_json();
        self.tips.put(&wake.rid, body.clone().into()).await.map_err(|e| ClusterError::js(format!("KV {} put", self.names.tips()), e))?;
        let publish = PublishMessage::build().payload(body.into()).message_id(wake.dedup_id());
        let ack = self.js.send_publish(self.names.wake_subject(&wake.rid), publish).await.map_err(|e| ClusterError::js("publish wake-up", e))?;
        ack.await.map_err(|e| ClusterError::js("wake-up acknowledgement", e))?;
        Ok(())
    }

    /// The newest wake-up an edge published for a repository.
    pub async fn tip(&self, rid: &str) -> Result<Option<WakeUp>, ClusterError> {
        match self.tips.get(rid).await.map_err(|e| ClusterError::js(format!("KV {} get", self.names.tips()), e))? {
            Some(bytes) => Ok(Some(WakeUp::from_json(&bytes)?)),
            None => Ok(None),
        }
    }

    /// How long a delivered wake-up may go unacknowledged before JetStream hands it to another
    /// worker: the lease time, so that a killed worker's repository is taken over about when
    /// its lease expires. A worker sends progress well within it while it works.
    pub fn ack_wait(&self) -> Duration {
        self.settings.lease.max(Duration::from_secs(1))
    }

    /// Binds the workers' shared consumer of wake-ups, creating it the first time and
    /// updating it when this node's lease time differs.
    pub async fn wake_queue(&self) -> Result<WakeQueue, ClusterError> {
        let name = self.names.wake_consumer();
        let consumer = self
            .wakes
            .create_consumer(
                pull::Config {
                    durable_name: Some(name.clone()),
                    description: Some("evolora workers".into()),
                    ack_policy: consumer::AckPolicy::Explicit,
                    ack_wait: self.ack_wait(),
                    // Never give up on a repository: a failing one is retried with a delay.
                    max_deliver: -1,
                    // Wake-ups waiting out a retry delay count as pending: with the server's
                    // default limit (1,000), a thousand failing repositories (an unreachable
                    // edge) would stop delivery for every other one.
                    max_ack_pending: -1,
                    filter_subject: self.names.wake_subjects(),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| ClusterError::js(format!("consumer {name}"), e))?;
        Ok(WakeQueue { consumer })
    }

    /// Wake-ups stored in the stream (waiting, in flight, or stranded: see [`QueueDepth`]).
    pub async fn queue_depth(&self) -> Result<u64, ClusterError> {
        let info = self.wakes.get_info().await.map_err(|e| ClusterError::js(format!("stream {}", self.names.wake_stream()), e))?;
        Ok(info.state.messages)
    }

    /// The queue as the workers see it, beside what the stream stores.
    pub async fn queue(&self) -> Result<QueueDepth, ClusterError> {
        let stored = self.queue_depth().await?;
        let name = self.names.wake_consumer();
        match self.wakes.consumer_info(&name).await {
            Ok(info) => Ok(QueueDepth { waiting: info.num_pending, in_flight: info.num_ack_pending as u64, stored }),
            // No worker has bound the queue yet: everything stored waits.
            Err(e) if e.to_string().contains("not found") => Ok(QueueDepth { waiting: stored, in_flight: 0, stored }),
            Err(e) => Err(ClusterError::js(format!("consumer {name}"), e)),
        }
    }
}

/// Wake-ups by where they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueDepth {
    /// Not yet delivered to a worker.
    pub waiting: u64,
    /// Delivered and not yet acknowledged (being worked on, or back after a delay).
    pub in_flight: u64,
    /// In the stream. More than the two above only when the server lost the record of
    /// acknowledgements in a crash: such a wake-up names a tip already acted on, and the
    /// repository's next one replaces it (one per repository is kept).
    pub stored: u64,
}

pub struct WakeQueue {
    consumer: consumer::Consumer<pull::Config>,
}

impl WakeQueue {
    /// The next wake-up, waiting at most `wait` for one.
    pub async fn next(&self, wait: Duration) -> Result<Option<Delivery>, ClusterError> {
        let mut batch = self
            .consumer
            .fetch()
            .max_messages(1)
            .expires(wait)
            .messages()
            .await
            .map_err(|e| ClusterError::js("fetch wake-up", e))?;
        match batch.next().await {
            None => Ok(None),
            Some(Err(e)) => Err(ClusterError::js("fetch wake-up", e)),
            Some(Ok(message)) => {
                let delivered = message.info().map(|i| i.delivered).unwrap_or(1);
                let (message, acker) = message.split();
                let wake = WakeUp::from_json(&message.payload);
                Ok(Some(Delivery { wake, acker: Arc::new(acker), delivered }))
            }
        }
    }
}

/// A wake-up handed to this worker. It must end in [`Delivery::done`], [`Delivery::retry`]
/// or [`Delivery::reject`]; until then [`Delivery::progress`] keeps it from being redelivered.
pub struct Delivery {
    /// The wake-up, or why its body is unreadable.
    pub wake: Result<WakeUp, ClusterError>,
    /// How many times JetStream has delivered it (1 the first time).
    pub delivered: i64,
    acker: Arc<Acker>,
}

impl Delivery {
    /// A handle for a task that sends progress while the job runs.
    pub fn keepalive(&self) -> Keepalive {
        Keepalive(self.acker.clone())
    }

    pub async fn progress(&self) -> Result<(), ClusterError> {
        self.acker.ack_with(AckKind::Progress).await.map_err(|e| ClusterError::js("progress", e))
    }

    /// Acted on: removed from the queue. Waits for the server's confirmation; a wake-up that
    /// a newer one replaced meanwhile is already gone, which is not an error.
    pub async fn done(self) -> Result<(), ClusterError> {
        match self.acker.double_ack().await {
            Ok(()) => Ok(()),
            Err(e) if e.to_string().contains("not found") => Ok(()),
            Err(e) => Err(ClusterError::js("acknowledge wake-up", e)),
        }
    }

    /// Not now (another worker holds the repository, or a transient failure): delivered
    /// again after `delay`.
    pub async fn retry(self, delay: Duration) -> Result<(), ClusterError> {
        self.acker.ack_with(AckKind::Nak(Some(delay))).await.map_err(|e| ClusterError::js("nak wake-up", e))
    }

    /// Never deliverable (an unreadable body): dropped.
    pub async fn reject(self) -> Result<(), ClusterError> {
        self.acker.ack_with(AckKind::Term).await.map_err(|e| ClusterError::js("terminate wake-up", e))
    }
}

/// Sends progress for a delivery from another task.
#[derive(Clone)]
pub struct Keepalive(Arc<Acker>);

impl Keepalive {
    pub async fn progress(&self) -> Result<(), ClusterError> {
        self.0.ack_with(AckKind::Progress).await.map_err(|e| ClusterError::js("progress", e))
    }
}
