//! Connecting to NATS and making sure the streams and buckets exist with the settings this
//! version needs. Any node may be the first: creation is idempotent, and a bucket whose
//! settings differ (another lease time) is updated in place.

use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store, stream};

use crate::ClusterError;
use crate::blobs::{Blobs, ObjectsLocation, S3Blobs};
use crate::names::Names;

/// How to reach the cluster.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// NATS server URL(s), comma-separated (`nats://host:4222`).
    pub url: String,
    /// Prefix of every stream, bucket and subject, so several clusters share one NATS.
    pub prefix: String,
    /// How long a worker owns a repository without refreshing its lease.
    pub lease: Duration,
    /// JetStream replicas of each stream and bucket (1 for a single server).
    pub replicas: usize,
    /// Where adapter versions' files are stored.
    pub objects: ObjectsLocation,
    /// Whether this connection sets the buckets' limits (the lease time) when they exist with
    /// others. Workers do; edges and `cluster status` only create what is missing and then
    /// go by the cluster's lease, so a client with another setting cannot change it.
    pub configures: bool,
}

impl ClusterSettings {
    pub fn new(url: &str) -> Self {
        ClusterSettings { url: url.to_owned(), prefix: "evolora".into(), lease: Duration::from_secs(15), replicas: 1, objects: ObjectsLocation::JetStream, configures: true }
    }
}

/// A connection to the cluster with every JetStream object bound. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    pub(crate) names: Names,
    pub(crate) settings: ClusterSettings,
    pub(crate) js: jetstream::Context,
    pub(crate) wakes: stream::Stream,
    pub(crate) leases: kv::Store,
    pub(crate) states: kv::Store,
    pub(crate) tips: kv::Store,
    pub(crate) workers: kv::Store,
    pub(crate) versions: kv::Store,
    pub(crate) adapters: Blobs,
}

impl Cluster {
    /// Connects and creates (or binds) every stream and bucket. `client_name` shows in the
    /// server's connection list.
    pub async fn connect(settings: &ClusterSettings, client_name: &str) -> Result<Self, ClusterError> {
        let names = Names::new(&settings.prefix)?;
        let client = async_nats::ConnectOptions::new()
            .name(client_name)
            .connection_timeout(Duration::from_secs(5))
            // A restarted server is waited for rather than failing every call at once.
            .retry_on_initial_connect()
            .connect(settings.url.as_str())
            .await
            .map_err(|source| ClusterError::Connect { url: settings.url.clone(), source })?;
        let js = jetstream::new(client);
        let replicas = settings.replicas.max(1);
        let wakes = js
            .get_or_create_stream(stream::Config {
                name: names.wake_stream(),
                description: Some("evolora wake-ups: newest per repository, removed once a worker has acted on it".into()),
                subjects: vec![names.wake_subjects()],
                // Only the newest wake-up per repository matters: older ones name older tips
                // of the same refs, and a worker walks to whatever the refs hold when it runs.
                max_messages_per_subject: 1,
                discard: stream::DiscardPolicy::Old,
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_secs(120),
                num_replicas: replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| ClusterError::js(format!("stream {}", names.wake_stream()), e))?;
        let bucket = |name: String, description: &str, history: i64, max_age: Duration| kv::Config {
            bucket: name,
            description: description.to_owned(),
            history,
            max_age,
            storage: stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        let kv_bucket = async |config: kv::Config| {
            let name = config.bucket.clone();
            if !settings.configures
                && let Ok(store) = js.get_key_value(&name).await
            {
                return Ok(store);
            }
            js.create_or_update_key_value(config).await.map_err(|e| ClusterError::js(format!("KV bucket {name}"), e))
        };
        // A lease is its key's presence: the bucket's age limit expires a holder that
        // stopped refreshing.
        let leases = kv_bucket(bucket(names.leases(), "evolora repository leases: key = repository, value = worker", 1, settings.lease)).await?;
        let states = kv_bucket(bucket(names.states(), "evolora ref states, advanced by compare-and-set", 1, Duration::ZERO)).await?;
        let tips = kv_bucket(bucket(names.tips(), "evolora newest wake-up per repository", 1, Duration::ZERO)).await?;
        let workers = kv_bucket(bucket(names.workers(), "evolora worker heartbeats", 1, settings.lease * 3)).await?;
        // The lease in force is the bucket's age limit, whoever set it.
        let lease = leases.status().await.map_err(|e| ClusterError::js(format!("KV bucket {} status", names.leases()), e))?.max_age();
        let versions = kv_bucket(bucket(names.versions(), "evolora adapter versions per repository: pins, hand-outs, retention", 1, Duration::ZERO)).await?;
        let adapters = match &settings.objects {
            ObjectsLocation::JetStream => Blobs::JetStream(Box::new(match js.get_object_store(names.adapters()).await {
                Ok(store) => store,
                Err(_) => js
                    .create_object_store(object_store::Config {
                        bucket: names.adapters(),
                        description: Some("evolora adapter versions: <repository>/<version>/<file>, each written once".into()),
                        storage: stream::StorageType::File,
                        num_replicas: replicas,
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| ClusterError::js(format!("object store {}", names.adapters()), e))?,
            })),
            s3 @ ObjectsLocation::S3 { .. } => Blobs::S3(S3Blobs::open(s3).await?),
        };
        Ok(Cluster { names, settings: ClusterSettings { lease, ..settings.clone() }, js, wakes, leases, states, tips, workers, versions, adapters })
    }

    pub fn names(&self) -> &Names {
        &self.names
    }

    pub fn lease_time(&self) -> Duration {
        self.settings.lease
    }
}
