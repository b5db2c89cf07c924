//! Snapshot embeddings (h₀'s input) with a cache of file vectors by blob, so re-encoding a
//! repository after a reset or a rewrite encodes changed files only.

use std::collections::HashMap;

use evolora_model::encoder::HashedEncoder;
use git2::{Oid, Repository};

use crate::git::{self, GitError};
use crate::parallel::ordered_map;

/// Past this many cached file vectors the cache starts over.
const BLOB_CACHE_MAX: usize = 16_384;

pub struct Snapshots {
    encoder: HashedEncoder,
    /// Keyed by blob and by whether its path is Python: the same bytes are encoded
    /// differently as Python and as other text.
    by_blob: HashMap<(Oid, bool), Vec<f32>>,
}

impl Snapshots {
    pub fn new(encoder: HashedEncoder) -> Self {
        Snapshots { encoder, by_blob: HashMap::new() }
    }

    /// The encoder version the cached vectors are of.
    pub fn encoder(&self) -> HashedEncoder {
        self.encoder
    }

    /// The snapshot embedding of a commit's tree. Files not in the cache are encoded on
    /// `threads` threads; pooling takes them in tree order, as one thread would.
    pub fn vector(&mut self, repo: &Repository, commit: Oid, threads: usize) -> Result<Vec<f32>, GitError> {
        let files = git::snapshot_files(repo, commit, HashedEncoder::MAX_FILE_BYTES)?;
        if self.by_blob.len() > BLOB_CACHE_MAX {
            self.by_blob.clear();
        }
        let key = |path: &str, blob: Oid| (blob, HashedEncoder::is_python(path));
        let mut missing: Vec<&(String, Oid, String)> = files.iter().filter(|(path, blob, _)| !self.by_blob.contains_key(&key(path, *blob))).collect();
        missing.dedup_by_key(|(path, blob, _)| key(path, *blob));
        let cache = &mut self.by_blob;
        let encoder = self.encoder;
        ordered_map(&missing, threads, 8 * threads, || encoder, |enc, (path, _, text)| enc.file_vector(path, text).0, |i, v| {
            cache.insert(key(&missing[i].0, missing[i].1), v);
            true
        });
        let vectors = files.iter().map(|(path, blob, _)| self.by_blob[&key(path, *blob)].as_slice());
        Ok(encoder.pool(vectors))
    }
}
