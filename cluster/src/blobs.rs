//! Where adapter versions' files are kept: the cluster's JetStream object store (the default)
//! or an S3-compatible bucket, for fleets whose versions outgrow one NATS server's disk. The
//! adapter code sees one interface, [`Blobs`], and the same object names either way.
//!
//! Objects are written once. On S3 a new object is created with a conditional put
//! (`If-None-Match: *`), and an object already there is accepted only when it holds the same
//! bytes: its size, and the sha256 stored beside it as user metadata (or, for an object
//! written without it, read back).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Chunk size of JetStream objects. The client publishes chunks one at a time and waits for
/// each acknowledgement, so the default 128 KiB made a 74 MB upload 578 round trips (71 MB/s
/// here); chunks just under the server's default 1 MiB message limit cut them eightfold.
const JETSTREAM_CHUNK: usize = 1024 * 1024 - 4096;

use async_nats::jetstream::object_store as js_objects;
use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::{Path as ObjectPath, PathPart};
use object_store::{Attribute, Attributes, GetOptions, ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, WriteMultipart};
use tokio::io::AsyncReadExt;

use crate::{ClusterError, names};

/// Files larger than this go up in parts: a failed part is retried alone, and no single
/// request carries a whole 75 MB file.
const MULTIPART_ABOVE: usize = 16 << 20;
const PART_SIZE: usize = 8 << 20;
/// The user metadata key (`x-amz-meta-sha256`) that lets an existing object be compared
/// without reading it.
const SHA256_KEY: &str = "sha256";

/// Where the adapter versions' files are stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ObjectsLocation {
    /// The object store `<prefix>_adapters` on the cluster's own NATS servers.
    #[default]
    JetStream,
    /// An S3-compatible bucket; objects are `<prefix>/<rid>/<version>/<file>`. Credentials
    /// come from the usual AWS environment variables (`AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, …).
    S3 {
        bucket: String,
        /// Key prefix without leading or trailing `/`; empty for the bucket's root.
        prefix: String,
        /// The server's URL for other S3-compatible stores (`http://127.0.0.1:9000`); `None`
        /// for AWS itself.
        endpoint: Option<String>,
        region: String,
        /// Plain HTTP to the endpoint is allowed (set when the endpoint is `http://`).
        allow_http: bool,
    },
}

impl ObjectsLocation {
    /// Parses `jetstream` or `s3://bucket/optional/prefix`; `endpoint` and `region` apply to
    /// S3 only.
    pub fn parse(location: &str, endpoint: Option<&str>, region: &str) -> Result<Self, ClusterError> {
        let bad = |reason: &str| ClusterError::BadObjectsLocation { location: location.to_owned(), reason: reason.to_owned() };
        if location == "jetstream" {
            if endpoint.is_some() {
                return Err(bad("an S3 endpoint is set, but adapters go to JetStream; name a bucket as s3://BUCKET/PREFIX"));
            }
            return Ok(ObjectsLocation::JetStream);
        }
        let Some(rest) = location.strip_prefix("s3://") else {
            return Err(bad("expected `jetstream` or `s3://BUCKET/PREFIX`"));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if !is_bucket_name(bucket) {
            return Err(bad("a bucket name is 3 to 63 lowercase letters, digits, `.` and `-`, beginning and ending with a letter or digit"));
        }
        if prefix.contains(['?', '#']) {
            return Err(bad("the prefix cannot hold `?` or `#`"));
        }
        let prefix = ObjectPath::parse(prefix).map_err(|e| bad(&format!("bad prefix: {e}")))?.to_string();
        let allow_http = match endpoint {
            None => false,
            Some(url) if url.strip_prefix("https://").is_some_and(|host| !host.is_empty()) => false,
            Some(url) if url.strip_prefix("http://").is_some_and(|host| !host.is_empty()) => true,
            Some(_) => return Err(bad("the S3 endpoint must be an http:// or https:// URL")),
        };
        if region.is_empty() || !region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return Err(bad("the S3 region is lowercase letters, digits and `-` (us-east-1)"));
        }
        Ok(ObjectsLocation::S3 { bucket: bucket.to_owned(), prefix, endpoint: endpoint.map(str::to_owned), region: region.to_owned(), allow_http })
    }
}

fn is_bucket_name(name: &str) -> bool {
    let edge_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    (3..=63).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && edge_ok(name.bytes().next())
        && edge_ok(name.bytes().last())
}

impl fmt::Display for ObjectsLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ObjectsLocation::JetStream => f.write_str("jetstream"),
            ObjectsLocation::S3 { bucket, prefix, .. } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            ObjectsLocation::S3 { bucket, prefix, .. } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// The adapter versions' objects, on whichever store the settings name. Cheap to clone.
#[derive(Clone)]
pub(crate) enum Blobs {
    // Boxed: the NATS handle is over a kilobyte, the S3 one a few pointers.
    JetStream(Box<js_objects::ObjectStore>),
    S3(S3Blobs),
}

#[derive(Clone)]
pub(crate) struct S3Blobs {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    /// `s3://bucket/prefix`, for messages.
    location: String,
    /// Cleared once the server has refused `If-None-Match` on a put that a plain put then
    /// wrote: from then on an object is looked for first and put without the condition.
    conditional_puts: Arc<AtomicBool>,
}

/// What an object already in the bucket holds, as far as a HEAD request tells.
struct Stored {
    size: u64,
    sha256: Option<String>,
}

impl S3Blobs {
    /// Opens the bucket and lists one key under the prefix, so a missing bucket or refused
    /// credentials show when the node starts rather than at its first publish.
    pub(crate) async fn open(location: &ObjectsLocation) -> Result<Self, ClusterError> {
        let ObjectsLocation::S3 { bucket, prefix, endpoint, region, allow_http } = location else {
            unreachable!("S3Blobs::open is given an S3 location")
        };
        // object_store's HTTP client uses rustls's process-wide crypto provider; ring, as the
        // NATS client uses. Installing fails harmlessly when a provider is already there.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket).with_region(region);
        // Unset here, AWS_ENDPOINT and AWS_ALLOW_HTTP from the environment still apply.
        if let Some(url) = endpoint {
            builder = builder.with_endpoint(url).with_allow_http(*allow_http);
        }
        let store = builder.build().map_err(|source| ClusterError::S3 { what: format!("bucket {location}"), source })?;
        let blobs = S3Blobs::new(Arc::new(store), prefix, location.to_string());
        if let Some(Err(source)) = blobs.store.list(Some(&blobs.prefix)).next().await {
            return Err(ClusterError::S3 { what: format!("listing {}", blobs.location), source });
        }
        Ok(blobs)
    }

    fn new(store: Arc<dyn ObjectStore>, prefix: &str, location: String) -> Self {
        S3Blobs { store, prefix: ObjectPath::from(prefix), location, conditional_puts: Arc::new(AtomicBool::new(true)) }
    }

    fn path(&self, object: &str) -> ObjectPath {
        self.prefix.parts().chain(object.split('/').map(PathPart::from)).collect()
    }

    fn err(&self, action: &str, object: &str) -> impl FnOnce(object_store::Error) -> ClusterError {
        let what = format!("{action} object {object} in {}", self.location);
        move |source| ClusterError::S3 { what, source }
    }

    async fn stored(&self, object: &str, path: &ObjectPath) -> Result<Option<Stored>, ClusterError> {
        match self.store.get_opts(path, GetOptions { head: true, ..Default::default() }).await {
            Ok(found) => {
                let sha256 = found.attributes.get(&Attribute::Metadata(SHA256_KEY.into())).map(|v| v.to_string());
                Ok(Some(Stored { size: found.meta.size, sha256 }))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err("head", object)(e)),
        }
    }

    /// Accepts an object already there only when it holds `bytes`.
    async fn check_same(&self, object: &str, stored: Stored, bytes: &[u8], sha256: &str) -> Result<(), ClusterError> {
        let differs = |message: String| Err(ClusterError::WriteOnce { object: object.to_owned(), message });
        if stored.size != bytes.len() as u64 {
            return differs(format!("{} bytes stored, {} to write", stored.size, bytes.len()));
        }
        let stored_sha = match stored.sha256 {
            Some(sha) => sha,
            // Written by something else, without the checksum beside it.
            None => names::sha256_hex(&self.get(object).await?),
        };
        if stored_sha != sha256 {
            return differs(format!("stored sha256 {stored_sha}, to write {sha256}"));
        }
        Ok(())
    }

    async fn put_once(&self, object: &str, bytes: Bytes, sha256: &str) -> Result<(), ClusterError> {
        let path = self.path(object);
        if let Some(stored) = self.stored(object, &path).await? {
            return self.check_same(object, stored, &bytes, sha256).await;
        }
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::Metadata(SHA256_KEY.into()), sha256.to_owned().into());
        if bytes.len() > MULTIPART_ABOVE {
            // object_store cannot make a multipart upload conditional. A writer racing on the
            // same name writes the same bytes: files this large are the weights, whose sha256
            // is part of the version's name, and the GGUF converted from them.
            let upload = self.store.put_multipart_opts(&path, PutMultipartOptions { attributes, ..Default::default() }).await.map_err(self.err("start upload of", object))?;
            let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
            writer.put(bytes);
            writer.finish().await.map_err(self.err("upload", object))?;
            return Ok(());
        }
        if self.conditional_puts.load(Ordering::Relaxed) {
            let create = PutOptions { mode: PutMode::Create, attributes: attributes.clone(), ..Default::default() };
            let refusal = match self.store.put_opts(&path, bytes.clone().into(), create).await {
                Ok(_) => return Ok(()),
                Err(object_store::Error::AlreadyExists { .. }) => {
                    let stored = self.stored(object, &path).await?.ok_or_else(|| ClusterError::WriteOnce { object: object.to_owned(), message: "reported as existing, then not found".into() })?;
                    return self.check_same(object, stored, &bytes, sha256).await;
                }
                Err(e) => e,
            };
            // Some S3-compatible servers answer the condition with an error of their own
            // (moto 5.2.0 answered 500, not 412, for an existing object): look again.
            if let Some(stored) = self.stored(object, &path).await? {
                return self.check_same(object, stored, &bytes, sha256).await;
            }
            let overwrite = PutOptions { attributes, ..Default::default() };
            self.store.put_opts(&path, bytes.into(), overwrite).await.map_err(|plain| ClusterError::S3 {
                what: format!("put object {object} in {} (a conditional put failed first: {refusal})", self.location),
                source: plain,
            })?;
            // Remembered only when the condition itself is unsupported: a timeout or a 503 on
            // one put must not end write-once puts for the life of the process.
            if matches!(refusal, object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. }) {
                tracing::warn!(bucket = %self.location, error = %refusal, "the S3 server refuses conditional puts; objects are looked for before each put instead");
                self.conditional_puts.store(false, Ordering::Relaxed);
            } else {
                tracing::warn!(bucket = %self.location, %object, error = %refusal, "a conditional put failed; the object was looked for and written plainly");
            }
            return Ok(());
        }
        let overwrite = PutOptions { attributes, ..Default::default() };
        self.store.put_opts(&path, bytes.into(), overwrite).await.map_err(self.err("put", object))?;
        Ok(())
    }

    async fn get(&self, object: &str) -> Result<Bytes, ClusterError> {
        let found = self.store.get(&self.path(object)).await.map_err(self.err("get", object))?;
        found.bytes().await.map_err(self.err("read", object))
    }

    async fn delete(&self, object: &str) -> Result<(), ClusterError> {
        match self.store.delete(&self.path(object)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err("delete", object)(e)),
        }
    }
}

impl Blobs {
    /// Writes `bytes` (whose sha256 is `sha256`) as `object` unless it is there already.
    pub(crate) async fn put_once(&self, object: &str, bytes: Bytes, sha256: &str) -> Result<(), ClusterError> {
        match self {
            Blobs::JetStream(store) => {
                // Its info is written after its last chunk: one of the right size is complete.
                // A deleted object's info stays behind as a tombstone.
                let present = store.info(object).await.is_ok_and(|i| !i.deleted && i.size as u64 == bytes.len() as u64);
                if !present {
                    let meta = js_objects::ObjectMetadata { name: object.to_owned(), chunk_size: Some(JETSTREAM_CHUNK), ..Default::default() };
                    store.put(meta, &mut &bytes[..]).await.map_err(|e| ClusterError::js(format!("object {object} put"), e))?;
                }
                Ok(())
            }
            Blobs::S3(s3) => s3.put_once(object, bytes, sha256).await,
        }
    }

    /// The object's bytes, or `None` when there is no such object.
    pub(crate) async fn get_if_present(&self, object: &str) -> Result<Option<Bytes>, ClusterError> {
        match self {
            Blobs::JetStream(store) => match store.info(object).await {
                // A deleted object's info stays behind as a tombstone.
                Ok(info) if info.deleted => Ok(None),
                Ok(_) => self.get(object).await.map(Some),
                Err(e) if e.kind() == js_objects::InfoErrorKind::NotFound => Ok(None),
                Err(e) => Err(ClusterError::js(format!("object {object} info"), e)),
            },
            Blobs::S3(s3) => match s3.store.get(&s3.path(object)).await {
                Ok(found) => found.bytes().await.map(Some).map_err(s3.err("read", object)),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(s3.err("get", object)(e)),
            },
        }
    }

    pub(crate) async fn get(&self, object: &str) -> Result<Bytes, ClusterError> {
        match self {
            Blobs::JetStream(store) => {
                let mut reader = store.get(object).await.map_err(|e| ClusterError::js(format!("object {object} get"), e))?;
                let mut bytes = Vec::new();
                reader.read_to_end(&mut bytes).await.map_err(|e| ClusterError::js(format!("object {object} read"), e))?;
                Ok(bytes.into())
            }
            Blobs::S3(s3) => s3.get(object).await,
        }
    }

    /// Removes `object`; one already gone is no error.
    pub(crate) async fn delete(&self, object: &str) -> Result<(), ClusterError> {
        match self {
            Blobs::JetStream(store) => match store.delete(object).await {
                Err(e) if e.kind() != js_objects::DeleteErrorKind::NotFound => Err(ClusterError::js(format!("object {object} delete"), e)),
                _ => Ok(()),
            },
            Blobs::S3(s3) => s3.delete(object).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s3(location: &str, endpoint: Option<&str>) -> Result<ObjectsLocation, String> {
        ObjectsLocation::parse(location, endpoint, "us-east-1").map_err(|e| e.to_string())
    }

    #[test]
    fn locations_parse() {
        assert_eq!(s3("jetstream", None).unwrap(), ObjectsLocation::JetStream);
        let ObjectsLocation::S3 { bucket, prefix, allow_http, .. } = s3("s3://adapters/evolora/prod/", Some("http://127.0.0.1:9000")).unwrap() else { panic!() };
        assert_eq!((bucket.as_str(), prefix.as_str(), allow_http), ("adapters", "evolora/prod", true));
        let root = s3("s3://my.bucket-1", None).unwrap();
        assert!(matches!(&root, ObjectsLocation::S3 { prefix, allow_http: false, endpoint: None, .. } if prefix.is_empty()));
        assert_eq!(root.to_string(), "s3://my.bucket-1");
        assert_eq!(s3("s3://b12/x/y", Some("https://s3.example.com")).unwrap().to_string(), "s3://b12/x/y");
    }

    #[test]
    fn bad_locations_say_why() {
        for (location, endpoint, why) in [
            ("nats", None, "expected `jetstream`"),
            ("s3://", None, "bucket name"),
            ("s3://Upper", None, "bucket name"),
            ("s3://-dash", None, "bucket name"),
            ("s3://bucKet", None, "bucket name"),
            ("s3://ok-bucket/a//b", None, "bad prefix"),
            ("s3://ok-bucket/a/../b", None, "bad prefix"),
            ("s3://ok-bucket/a?versionId=1", None, "`?`"),
            ("s3://ok-bucket", Some("127.0.0.1:9000"), "http:// or https://"),
            ("jetstream", Some("http://127.0.0.1:9000"), "adapters go to JetStream"),
        ] {
            let err = s3(location, endpoint).unwrap_err();
            assert!(err.contains(why) && err.contains(location), "{location}: {err}");
        }
        assert!(ObjectsLocation::parse("s3://ok-bucket", None, "").unwrap_err().to_string().contains("region"));
    }

    /// A server that refuses `If-None-Match` gets plain puts after a look for the object. moto
    /// honours the condition, so the client is told not to send it: object_store then fails
    /// such a put at once, as a refusing server would after its round trip.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_server_refusing_conditional_puts_gets_plain_puts() {
        use object_store::aws::S3ConditionalPut;
        let tmp = tempfile::tempdir().unwrap();
        let server = crate::local_s3::LocalS3::start(tmp.path()).expect("moto_server starts");
        server.create_bucket("refusing").unwrap();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let store = AmazonS3Builder::new()
            .with_endpoint(server.endpoint())
            .with_allow_http(true)
            .with_bucket_name("refusing")
            .with_region("us-east-1")
            .with_access_key_id("evolora-test")
            .with_secret_access_key("evolora-test-secret")
            .with_conditional_put(S3ConditionalPut::Disabled)
            .build()
            .unwrap();
        let blobs = S3Blobs::new(Arc::new(store), "p", "s3://refusing/p".into());
        let bytes = Bytes::from_static(b"{\"r\": 8}");
        let sha = names::sha256_hex(&bytes);
        blobs.put_once("r/v/a.json", bytes.clone(), &sha).await.unwrap();
        assert!(!blobs.conditional_puts.load(Ordering::Relaxed), "remembered");
        assert_eq!(blobs.get("r/v/a.json").await.unwrap(), bytes);
        blobs.put_once("r/v/a.json", bytes, &sha).await.expect("the same bytes again");
        let other = Bytes::from_static(b"{\"r\": 9}");
        let err = blobs.put_once("r/v/a.json", other.clone(), &names::sha256_hex(&other)).await.unwrap_err();
        assert!(matches!(err, ClusterError::WriteOnce { .. }), "{err}");
    }
}
