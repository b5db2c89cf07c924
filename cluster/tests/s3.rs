//! Adapter versions on S3-compatible storage: a real moto_server (PyPI moto[server]) for the
//! bucket and a real nats-server for the rest of the cluster, both installed by
//! scripts/install-build-deps.sh. moto keeps objects in memory only, so whether a version
//! survives the storage server's restart is left to the storage server; nothing here tests it.

use std::path::Path;
use std::sync::{Arc, Once};
use std::time::Duration;

use evolora_cluster::local_s3::LocalS3;
use evolora_cluster::local_server::LocalServer;
use evolora_cluster::{AdapterPointer, Cluster, ClusterSettings, ObjectsLocation, fetch_adapter_into};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{Attribute, GetOptions, ObjectStore, ObjectStoreExt, PutPayload};

const BUCKET: &str = "evolora-test";
const PREFIX: &str = "fleet/a";
const RID: &str = "e1-ffff";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// Runs a test body on its own runtime, after the dummy credentials are in the environment:
/// every test sets them here, before it starts a thread of its own.
fn run<F: Future>(body: F) -> F::Output {
    static CREDENTIALS: Once = Once::new();
    CREDENTIALS.call_once(|| {
        // SAFETY: the tests of this binary set the variables here, each before starting any
        // thread, and wait on the `Once` before reading them.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "evolora-test");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "evolora-test-secret");
            std::env::remove_var("AWS_SESSION_TOKEN");
        }
    });
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap().block_on(body)
}

struct Servers {
    nats: LocalServer,
    s3: LocalS3,
}

fn servers(dir: &Path) -> Servers {
    let nats = LocalServer::start(&dir.join("nats")).expect("nats-server starts");
    let s3 = LocalS3::start(&dir.join("moto")).expect("moto_server starts");
    s3.create_bucket(BUCKET).unwrap();
    Servers { nats, s3 }
}

fn settings(servers: &Servers, bucket: &str) -> ClusterSettings {
    let mut settings = ClusterSettings::new(&servers.nats.url());
    settings.objects = ObjectsLocation::parse(&format!("s3://{bucket}/{PREFIX}"), Some(&servers.s3.endpoint()), "us-east-1").unwrap();
    settings
}

async fn connect(servers: &Servers) -> Cluster {
    Cluster::connect(&settings(servers, BUCKET), "test").await.expect("connects")
}

/// The bucket as any other S3 client sees it.
fn bucket(servers: &Servers) -> Arc<dyn ObjectStore> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let store = AmazonS3Builder::new()
        .with_endpoint(servers.s3.endpoint())
        .with_allow_http(true)
        .with_bucket_name(BUCKET)
        .with_region("us-east-1")
        .with_access_key_id("evolora-test")
        .with_secret_access_key("evolora-test-secret")
        .build()
        .unwrap();
    Arc::new(store)
}

fn key(pointer: &AdapterPointer, file: &str) -> ObjectPath {
    ObjectPath::from(format!("{PREFIX}/{RID}/{}/{file}", pointer.name))
}

fn weights(len: usize, seed: u32) -> Vec<u8> {
    (0..len as u32).map(|i| (i.wrapping_mul(7).wrapping_add(seed) % 251) as u8).collect()
}

fn version_dir(root: &Path, name: &str, weights: &[u8], config: &[u8]) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("adapter_model.safetensors"), weights).unwrap();
    std::fs::write(dir.join("adapter_config.json"), config).unwrap();
    dir
}

async fn keys(bucket: &dyn ObjectStore) -> Vec<String> {
    use futures_util::TryStreamExt;
    let mut keys: Vec<String> = bucket.list(None).map_ok(|m| m.location.to_string()).try_collect().await.unwrap();
    keys.sort();
    keys
}

#[test]
fn versions_are_written_once_under_the_prefix_and_fetched_checked() {
    run(async {
        let tmp = tempfile::tempdir().unwrap();
        let servers = servers(tmp.path());
        let cluster = connect(&servers).await;
        let bytes = weights(300_000, 0);
        let dir = version_dir(tmp.path(), "version", &bytes, b"{\"r\": 8}");
        let pointer = cluster.put_adapter(RID, COMMIT, &dir, 5).await.unwrap();
        assert_eq!(pointer.bytes(), bytes.len() as u64 + 8);
        let bucket = bucket(&servers);
        assert_eq!(keys(bucket.as_ref()).await, [key(&pointer, "adapter_config.json").to_string(), key(&pointer, "adapter_model.safetensors").to_string()]);
        let before = bucket.head(&key(&pointer, "adapter_model.safetensors")).await.unwrap();
        // Each object carries its sha256, so a second writer compares without reading it.
        let head = bucket.get_opts(&key(&pointer, "adapter_model.safetensors"), GetOptions { head: true, ..Default::default() }).await.unwrap();
        assert_eq!(head.attributes.get(&Attribute::Metadata("sha256".into())).map(|v| v.to_string()).as_ref(), Some(&pointer.files[1].sha256));

        // Another worker's same version, a second later: the same pointer, nothing rewritten
        // (S3 times are whole seconds).
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let again = cluster.put_adapter(RID, COMMIT, &dir, 6).await.unwrap();
        assert_eq!((again.name.as_str(), &again.files), (pointer.name.as_str(), &pointer.files));
        let after = bucket.head(&key(&pointer, "adapter_model.safetensors")).await.unwrap();
        assert_eq!(after.last_modified, before.last_modified, "the existing object was left alone");

        let root = tmp.path().join("fetched");
        let got = fetch_adapter_into(&cluster, RID, &pointer, &root).await.unwrap();
        assert_eq!(got, root.join(RID).join(&pointer.name));
        assert_eq!(std::fs::read(got.join("adapter_model.safetensors")).unwrap(), bytes);
        assert_eq!(std::fs::read(got.join("adapter_config.json")).unwrap(), b"{\"r\": 8}");
    })
}

#[test]
fn a_version_made_again_keeps_its_stored_description_and_other_weights_are_refused() {
    run(async {
        let tmp = tempfile::tempdir().unwrap();
        let servers = servers(tmp.path());
        let cluster = connect(&servers).await;
        let bytes = weights(300_000, 0);
        let pointer = cluster.put_adapter(RID, COMMIT, &version_dir(tmp.path(), "v1", &bytes, b"{\"r\": 8}"), 5).await.unwrap();

        // The same weights (so the same version name) with another description, as when a
        // worker died between upload and state write: the stored description stands.
        let again = cluster.put_adapter(RID, COMMIT, &version_dir(tmp.path(), "v2", &bytes, b"{\"r\": 9}"), 6).await.unwrap();
        assert_eq!(again.files, pointer.files);
        let root = tmp.path().join("fetched");
        let got = fetch_adapter_into(&cluster, RID, &again, &root).await.unwrap();
        assert_eq!(std::fs::read(got.join("adapter_config.json")).unwrap(), b"{\"r\": 8}");

        // Weights under the version's name that are not the bytes it is named for (another
        // client wrote them, without the checksum beside them) are refused, not adopted.
        let bucket = bucket(&servers);
        bucket.put(&key(&pointer, "adapter_model.safetensors"), PutPayload::from(weights(300_000, 1))).await.unwrap();
        let err = cluster.put_adapter(RID, COMMIT, &version_dir(tmp.path(), "v3", &bytes, b"{\"r\": 8}"), 6).await.unwrap_err();
        let object = format!("{RID}/{}/adapter_model.safetensors", pointer.name);
        assert!(err.to_string().contains(&format!("object {object} already holds other bytes")), "{err}");
    })
}

#[test]
fn of_workers_racing_to_write_one_name_with_other_bytes_one_wins() {
    run(async {
        let tmp = tempfile::tempdir().unwrap();
        let servers = servers(tmp.path());
        let cluster = connect(&servers).await;
        let bytes = weights(300_000, 0);
        // The same weights, so the same version name, and each its own config of one size.
        let dirs: Vec<_> = (0..8).map(|i| version_dir(tmp.path(), &format!("v{i}"), &bytes, format!("{{\"r\": {i}}}").as_bytes())).collect();
        let racers: Vec<_> = dirs
            .into_iter()
            .map(|dir| {
                let cluster = cluster.clone();
                tokio::spawn(async move { cluster.put_adapter(RID, COMMIT, &dir, 5).await })
            })
            .collect();
        let mut winners = Vec::new();
        for racer in racers {
            match racer.await.unwrap() {
                Ok(pointer) => winners.push(pointer),
                Err(e) => assert!(e.to_string().contains("already holds other bytes"), "{e}"),
            }
        }
        assert_eq!(winners.len(), 1, "exactly one config was written");
        // What is stored is the winner's: its pointer fetches.
        fetch_adapter_into(&cluster, RID, &winners[0], &tmp.path().join("fetched")).await.unwrap();
    })
}

#[test]
fn a_corrupted_object_fails_the_fetch_and_leaves_nothing() {
    run(async {
        let tmp = tempfile::tempdir().unwrap();
        let servers = servers(tmp.path());
        let cluster = connect(&servers).await;
        let pointer = cluster.put_adapter(RID, COMMIT, &version_dir(tmp.path(), "v", &weights(300_000, 0), b"{\"r\": 8}"), 5).await.unwrap();
        bucket(&servers).put(&key(&pointer, "adapter_model.safetensors"), weights(300_000, 1).into()).await.unwrap();

        let root = tmp.path().join("fetched");
        let err = fetch_adapter_into(&cluster, RID, &pointer, &root).await.unwrap_err();
        let object = format!("{RID}/{}/adapter_model.safetensors", pointer.name);
        assert!(err.to_string().contains(&format!("object {object}: stored record is unreadable (300000 bytes whose sha256 differs")), "{err}");
        assert_eq!(std::fs::read_dir(root.join(RID)).unwrap().count(), 0, "no half-fetched directory left");
    })
}

#[test]
fn large_files_go_up_in_parts() {
    run(async {
        let tmp = tempfile::tempdir().unwrap();
        let servers = servers(tmp.path());
        let cluster = connect(&servers).await;
        let bytes = weights(20 << 20, 3);
        let pointer = cluster.put_adapter(RID, COMMIT, &version_dir(tmp.path(), "v", &bytes, b"{}"), 5).await.unwrap();
        // A multipart upload's ETag ends in its part count: 20 MiB in 8 MiB parts.
        let stored = bucket(&servers).head(&key(&pointer, "adapter_model.safetensors")).await.unwrap();
        assert!(stored.e_tag.as_deref().is_some_and(|t| t.trim_matches('"').ends_with("-3")), "{:?}", stored.e_tag);
        // The checksum beside it lets a second put see the same bytes without reading them.
        assert_eq!(cluster.put_adapter(RID, COMMIT, &version_dir(tmp.path(), "again", &bytes, b"{}"), 6).await.unwrap().files, pointer.files);
        let got = fetch_adapter_into(&cluster, RID, &pointer, &tmp.path().join("fetched")).await.unwrap();
        assert!(std::fs::read(got.join("adapter_model.safetensors")).unwrap() == bytes);
    })
}

#[test]
fn deleting_a_version_removes_only_its_objects() {
    run(async {
        let tmp = tempfile::tempdir().unwrap();
        let servers = servers(tmp.path());
        let cluster = connect(&servers).await;
        let old = cluster.put_adapter(RID, COMMIT, &version_dir(tmp.path(), "old", &weights(1000, 0), b"{}"), 5).await.unwrap();
        let new = cluster.put_adapter(RID, COMMIT, &version_dir(tmp.path(), "new", &weights(1000, 1), b"{}"), 6).await.unwrap();
        assert_ne!(old.name, new.name);
        cluster.delete_adapter(RID, &old).await.unwrap();
        let bucket = bucket(&servers);
        assert_eq!(keys(bucket.as_ref()).await, [key(&new, "adapter_config.json").to_string(), key(&new, "adapter_model.safetensors").to_string()]);
        cluster.delete_adapter(RID, &old).await.expect("deleting what is gone is no error");
        let err = fetch_adapter_into(&cluster, RID, &old, &tmp.path().join("fetched")).await.unwrap_err();
        assert!(err.to_string().starts_with(&format!("S3 get object {RID}/{}/adapter_config.json in s3://{BUCKET}/{PREFIX}: ", old.name)), "{err}");
    })
}

#[test]
fn a_missing_bucket_fails_the_connection() {
    run(async {
        let tmp = tempfile::tempdir().unwrap();
        let servers = servers(tmp.path());
        let err = Cluster::connect(&settings(&servers, "no-such-bucket"), "test").await.err().expect("refused");
        assert!(err.to_string().starts_with(&format!("S3 listing s3://no-such-bucket/{PREFIX}: ")), "{err}");
    })
}
