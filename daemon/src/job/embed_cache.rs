//! Embeddings on disk, addressed by what they are made of: (file blob, encoder) → file
//! vector and (base, commit, encoder) → diff vector. A transformer embedding costs seconds
//! per window, so a reset, a fork, a rebuild or a re-walk must never embed the same text
//! twice.
//!
//! One file per entry, `<dir>/<2 hex>/<64 hex>`: a magic number, the value count, the f32
//! values little-endian, and the sha256 of all that. Written under a temporary name and
//! renamed, so a reader sees a whole entry or none; a torn or corrupt one (the disk lied
//! after a kill -9) fails its checksum, is deleted and computed again, never used. The cache
//! is bounded: past its budget the least recently used entries (by modification time, which
//! a hit refreshes) go first.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use tracing::warn;

const MAGIC: &[u8; 8] = b"evoemb01";
const TEMP_PREFIX: &str = ".tmp-";

/// What an entry is the embedding of.
#[derive(Debug, Clone, Copy)]
pub enum Key<'a> {
    /// A snapshot file's vector, by its blob id.
    File { blob: &'a str },
    /// A diff's vector, by its two ends (`base` None: the empty tree).
    Diff { base: Option<&'a str>, commit: &'a str },
}

impl Key<'_> {
    fn digest(&self, encoder: &str) -> String {
        let mut h = Sha256::new();
        match self {
            Key::File { blob } => {
                h.update(b"file\0");
                h.update(blob.as_bytes());
            }
            Key::Diff { base, commit } => {
                h.update(b"diff\0");
                h.update(base.unwrap_or("").as_bytes());
                h.update(b"\0");
                h.update(commit.as_bytes());
            }
        }
        h.update(b"\0");
        h.update(encoder.as_bytes());
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}

pub struct EmbedCache {
    dir: PathBuf,
    /// Encoder id and version: a different encoder never reads another's vectors.
    encoder: String,
    budget: u64,
    /// Bytes of entries on disk, as counted at open and kept up to date since.
    bytes: Mutex<u64>,
}

impl EmbedCache {
    /// Opens (or creates) the cache in `dir`, removing temporary files a kill left.
    pub fn open(dir: &Path, encoder: &str, budget: u64) -> std::io::Result<Self> {
        fs::create_dir_all(dir)?;
        let mut bytes = 0;
        for (path, len, _) in entries(dir) {
            if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with(TEMP_PREFIX)) {
                let _ = fs::remove_file(&path);
            } else {
                bytes += len;
            }
        }
        Ok(EmbedCache { dir: dir.to_path_buf(), encoder: encoder.to_owned(), budget, bytes: Mutex::new(bytes) })
    }

    fn path(&self, key: Key) -> PathBuf {
        let digest = key.digest(&self.encoder);
        self.dir.join(&digest[..2]).join(digest)
    }

    /// The vector stored for `key`, if a whole one is there.
    pub fn get(&self, key: Key) -> Option<Vec<f32>> {
        let path = self.path(key);
        let bytes = fs::read(&path).ok()?;
        match decode(&bytes) {
            Some(v) => {
                // Recently used: pushed back in the eviction order.
                let _ = fs::File::options().write(true).open(&path).and_then(|f| f.set_modified(SystemTime::now()));
                Some(v)
            }
            None => {
                warn!(entry = %path.display(), "a damaged embedding was dropped; it is computed again");
                if fs::remove_file(&path).is_ok() {
                    let mut total = self.bytes.lock().expect("cache lock");
                    *total = total.saturating_sub(bytes.len() as u64);
                }
                None
            }
        }
    }

    /// Stores `vector` for `key` (atomically), then keeps the cache within its budget.
    /// Failures (a full disk) are logged: the cache is an optimisation.
    pub fn put(&self, key: Key, vector: &[f32]) {
        let path = self.path(key);
        let bytes = encode(vector);
        let parent = path.parent().expect("entries live in a subdirectory");
        let tmp = parent.join(format!("{TEMP_PREFIX}{}-{:?}", std::process::id(), std::thread::current().id()));
        let written = fs::create_dir_all(parent)
            .and_then(|_| fs::File::create(&tmp))
            .and_then(|mut f| f.write_all(&bytes).and_then(|_| f.sync_data()))
            .and_then(|_| fs::rename(&tmp, &path));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            warn!(error = %e, "an embedding could not be cached");
            return;
        }
        let over = {
            let mut total = self.bytes.lock().expect("cache lock");
            *total += bytes.len() as u64;
            *total > self.budget
        };
        if over {
            self.evict();
        }
    }

    pub fn bytes(&self) -> u64 {
        *self.bytes.lock().expect("cache lock")
    }

    /// Deletes least recently used entries until the cache is at 90 % of its budget.
    fn evict(&self) {
        let mut all = entries(&self.dir);
        all.sort_by_key(|(_, _, modified)| *modified);
        let mut total = all.iter().map(|(_, len, _)| len).sum::<u64>();
        let target = self.budget / 10 * 9;
        for (path, len, _) in all {
            if total <= target {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
        *self.bytes.lock().expect("cache lock") = total;
    }
}

/// (path, length, modification time) of every file under `dir`, one level of subdirectories.
fn entries(dir: &Path) -> Vec<(PathBuf, u64, SystemTime)> {
    let mut out = Vec::new();
    for sub in fs::read_dir(dir).into_iter().flatten().flatten() {
        for e in fs::read_dir(sub.path()).into_iter().flatten().flatten() {
            if let Ok(m) = e.metadata()
                && m.is_file()
            {
                out.push((e.path(), m.len(), m.modified().unwrap_or(SystemTime::UNIX_EPOCH)));
            }
        }
    }
    out
}

fn encode(vector: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + 4 * vector.len() + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(vector.len() as u64).to_le_bytes());
    for v in vector {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

fn decode(bytes: &[u8]) -> Option<Vec<f32>> {
    if bytes.len() < 16 + 32 || &bytes[..8] != MAGIC {
        return None;
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    let n = u64::from_le_bytes(body[8..16].try_into().ok()?) as usize;
    if body.len() != 16 + 4 * n || Sha256::digest(body).as_slice() != sum {
        return None;
    }
    Some(body[16..].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_keys_do_not_collide() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = EmbedCache::open(tmp.path(), "qwen3-v1", 1 << 20).unwrap();
        let v = vec![1.5f32, -0.0, f32::MIN_POSITIVE];
        cache.put(Key::File { blob: "ab" }, &v);
        let got = cache.get(Key::File { blob: "ab" }).unwrap();
        assert!(got.iter().zip(&v).all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(cache.get(Key::Diff { base: None, commit: "ab" }).is_none(), "a diff is not a file");
        assert!(cache.get(Key::Diff { base: Some("a"), commit: "b" }).is_none());
        let other = EmbedCache::open(tmp.path(), "qwen3-v2", 1 << 20).unwrap();
        assert!(other.get(Key::File { blob: "ab" }).is_none(), "another encoder never reads these vectors");
    }

    #[test]
    fn a_torn_or_corrupt_entry_is_dropped_never_used() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = EmbedCache::open(tmp.path(), "e", 1 << 20).unwrap();
        let key = Key::Diff { base: None, commit: "c1" };
        cache.put(key, &[1.0; 64]);
        let path = cache.path(key);
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(cache.get(key).is_none());
        assert!(!path.exists(), "the torn entry is deleted");
        cache.put(key, &[1.0; 64]);
        let mut flipped = fs::read(&path).unwrap();
        flipped[20] ^= 1;
        fs::write(&path, flipped).unwrap();
        assert!(cache.get(key).is_none(), "a flipped bit fails the checksum");
        // A kill between writing and renaming leaves a temporary file, swept at open.
        let leftover = path.parent().unwrap().join(format!("{TEMP_PREFIX}999"));
        fs::write(&leftover, b"partial").unwrap();
        EmbedCache::open(tmp.path(), "e", 1 << 20).unwrap();
        assert!(!leftover.exists());
    }

    #[test]
    fn the_least_recently_used_entries_go_past_the_budget() {
        let tmp = tempfile::tempdir().unwrap();
        let entry = encode(&[0.0; 100]).len() as u64;
        let cache = EmbedCache::open(tmp.path(), "e", 10 * entry).unwrap();
        let blobs: Vec<String> = (0..10).map(|i| format!("b{i}")).collect();
        for (i, b) in blobs.iter().enumerate() {
            cache.put(Key::File { blob: b }, &[i as f32; 100]);
            // Distinct modification times, oldest first.
            let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000 + i as u64);
            fs::File::options().write(true).open(cache.path(Key::File { blob: b })).unwrap().set_modified(t).unwrap();
        }
        assert!(cache.get(Key::File { blob: "b0" }).is_some(), "a hit makes b0 the most recent");
        cache.put(Key::File { blob: "new" }, &[9.0; 100]);
        assert!(cache.bytes() <= 9 * entry, "{} > {}", cache.bytes(), 9 * entry);
        assert!(cache.get(Key::File { blob: "b0" }).is_some(), "recently used entries stay");
        assert!(cache.get(Key::File { blob: "b1" }).is_none() && cache.get(Key::File { blob: "b2" }).is_none(), "the oldest go first");
        assert!(cache.get(Key::File { blob: "new" }).is_some());
    }
}
