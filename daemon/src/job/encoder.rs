//! Which encoder turns a repository's text into the model's vectors, as the daemon and
//! `evolora encode` run it: the built-in hashed encoder (on the encode threads), or the
//! released checkpoints' Qwen3-Embedding recipe (a transformer, on the model thread, with
//! its vectors kept in the on-disk embedding cache).

use std::io::Read;
use std::path::{Path, PathBuf};

use evolora_model::ModelError;
use evolora_model::encoder::qwen3::{self, Qwen3Encoder};
use evolora_model::tokenizer::QwenTokenizer;
use git2::{Oid, Repository};
use sha2::{Digest, Sha256};
use tracing::info;

use evolora_model::encoder::HashedEncoder;

use super::embed_cache::{EmbedCache, Key};
use super::inputs::DiffEncoding;
use super::snapshot::Snapshots;
use crate::config::{EncoderKind, ModelSettings};
use crate::git::{self, GitError};

/// The recipe's id, as checkpoints record the encoder they were trained on.
pub const QWEN3_ID: &str = "qwen3-embedding-0.6b";

pub enum Encoder {
    /// `auto`: configured as plain `hashed`, so it takes the version a checkpoint was
    /// trained on (see [`Encoder::follow`]).
    Hashed { snapshots: Snapshots, auto: bool },
    Qwen3(Box<Qwen3>),
}

pub struct Qwen3 {
    encoder: Qwen3Encoder<QwenTokenizer>,
    cache: Option<EmbedCache>,
    dir: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl From<git2::Error> for EncodeError {
    fn from(e: git2::Error) -> Self {
        EncodeError::Git(GitError::Git(e))
    }
}

impl Encoder {
    /// The configured encoder. `cache_dir`: where transformer vectors are kept (None: not).
    pub fn load(settings: &ModelSettings, cache: Option<(&Path, u64)>) -> Result<Encoder, ModelError> {
        match settings.encoder {
            EncoderKind::Hashed | EncoderKind::HashedV1 | EncoderKind::HashedV2 => {
                let version = settings.encoder.hashed().expect("a hashed kind");
                Ok(Encoder::Hashed { snapshots: Snapshots::new(version), auto: settings.encoder == EncoderKind::Hashed })
            }
            EncoderKind::Qwen3 => {
                let dir = settings.encoder_dir.clone().ok_or_else(|| ModelError::ModelConfig {
                    path: "[model]".into(),
                    reason: "encoder = \"qwen3\" needs encoder_dir, a local Qwen3-Embedding-0.6B directory".into(),
                })?;
                let device = evolora_model::select_device(&settings.device)?;
                let tokenizer = QwenTokenizer::from_file(&dir.join("tokenizer.json"))?;
                let started = std::time::Instant::now();
                let encoder = Qwen3Encoder::load(&dir, tokenizer, &device)?;
                info!(dir = %dir.display(), hidden = encoder.hidden(), seconds = started.elapsed().as_secs_f32(), "Qwen3 encoder loaded");
                let cache = match cache {
                    Some((path, budget)) if budget > 0 => {
                        let id = format!("{QWEN3_ID}:{}", directory_fingerprint(&dir)?);
                        Some(EmbedCache::open(path, &id, budget).map_err(|e| ModelError::Io { path: path.to_path_buf(), source: e })?)
                    }
                    _ => None,
                };
                Ok(Encoder::Qwen3(Box::new(Qwen3 { encoder, cache, dir })))
            }
        }
    }

    /// The id checkpoints record (a checkpoint trained on another encoder is refused).
    pub fn id(&self) -> &'static str {
        match self {
            Encoder::Hashed { snapshots, .. } => snapshots.encoder().id(),
            Encoder::Qwen3(_) => QWEN3_ID,
        }
    }

    /// Takes the hashed version a checkpoint was trained on, when configured as plain
    /// `hashed` (so a model trained on an older version keeps running as it was trained).
    pub fn follow(&mut self, checkpoint_encoder: &str) {
        if let Encoder::Hashed { snapshots, auto: true } = self
            && let Some(version) = HashedEncoder::from_id(checkpoint_encoder)
            && version != snapshots.encoder()
        {
            *snapshots = Snapshots::new(version);
        }
    }

    /// Size of the vectors it makes.
    pub fn dim(&self) -> usize {
        match self {
            Encoder::Hashed { .. } => HashedEncoder::DIM,
            Encoder::Qwen3(q) => q.encoder.dim(),
        }
    }

    /// What a model must match to run on this encoder's vectors.
    pub fn fit(&self) -> super::model::EncoderFit<'_> {
        super::model::EncoderFit { id: self.id(), dim: self.dim(), source: self.dir(), any_hashed: matches!(self, Encoder::Hashed { auto: true, .. }) }
    }

    /// The encoder's directory, if it has one.
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Encoder::Hashed { .. } => None,
            Encoder::Qwen3(q) => Some(&q.dir),
        }
    }

    /// What the encode threads make of each diff.
    pub fn diff_encoding(&self) -> DiffEncoding {
        match self {
            Encoder::Hashed { snapshots, .. } => DiffEncoding::Hashed(snapshots.encoder()),
            Encoder::Qwen3(_) => DiffEncoding::Text,
        }
    }

    /// The snapshot vector of a commit's tree.
    pub fn snapshot(&mut self, repo: &Repository, commit: Oid, threads: usize) -> Result<Vec<f32>, EncodeError> {
        match self {
            Encoder::Hashed { snapshots, .. } => Ok(snapshots.vector(repo, commit, threads)?),
            Encoder::Qwen3(q) => {
                let mut vectors = Vec::new();
                for (_, blob) in git::snapshot_py_files(repo, commit)? {
                    let key = blob.to_string();
                    let key = Key::File { blob: &key };
                    if let Some(v) = q.cache.as_ref().and_then(|c| c.get(key)) {
                        vectors.push(v);
                        continue;
                    }
                    let text = String::from_utf8_lossy(repo.find_blob(blob)?.content()).into_owned();
                    if let Some(v) = q.encoder.file_vector(&text)? {
                        if let Some(c) = &q.cache {
                            c.put(key, &v);
                        }
                        vectors.push(v);
                    }
                }
                Ok(q.encoder.snapshot_vector(&vectors))
            }
        }
    }

    /// The vector of a diff given as the recipe's text (see [`diff_text`]); the hashed
    /// encoder never gets text.
    pub fn diff_vector(&self, text: &str, base: Option<Oid>, commit: Oid) -> Result<Vec<f32>, EncodeError> {
        let Encoder::Qwen3(q) = self else { unreachable!("the hashed encoder's diffs are vectors made on the encode threads") };
        let (base, commit) = (base.map(|b| b.to_string()), commit.to_string());
        let key = Key::Diff { base: base.as_deref(), commit: &commit };
        if let Some(v) = q.cache.as_ref().and_then(|c| c.get(key)) {
            return Ok(v);
        }
        let v = q.encoder.diff_vector(text)?;
        if let Some(c) = &q.cache {
            c.put(key, &v);
        }
        Ok(v)
    }
}

/// The recipe's text of a diff: git's own `diff -U3 BASE COMMIT`, kept to non-test
/// `.py`/`.md`/`.rst` sections; also whether a changed path matches `manifests`.
pub fn diff_text(git_dir: &Path, base: Option<Oid>, commit: Oid, manifests: &[String]) -> Result<(String, bool), GitError> {
    let raw = git::cli_diff(git_dir, base, commit)?;
    let manifest = qwen3::diff_sections(&raw).filter_map(|(new, _)| new).any(|path| git::matches_any(path, manifests));
    Ok((qwen3::filter_diff(&raw), manifest))
}

/// Identifies an encoder directory cheaply: its config and tokenizer, and each weight
/// file's length with its first and last MiB. Cached vectors of another model are never
/// read.
fn directory_fingerprint(dir: &Path) -> Result<String, ModelError> {
    let mut h = Sha256::new();
    for name in ["config.json", "tokenizer.json"] {
        let path = dir.join(name);
        h.update(std::fs::read(&path).map_err(|e| ModelError::Io { path, source: e })?);
    }
    for file in evolora_model::transformer::hf::weight_files(dir)? {
        let io = |e| ModelError::Io { path: file.clone(), source: e };
        let len = std::fs::metadata(&file).map_err(io)?.len();
        h.update(len.to_le_bytes());
        let mut f = std::fs::File::open(&file).map_err(io)?;
        let mut head = vec![0u8; (1 << 20).min(len as usize)];
        f.read_exact(&mut head).map_err(io)?;
        h.update(&head);
        use std::io::{Seek, SeekFrom};
        f.seek(SeekFrom::End(-(head.len() as i64))).map_err(io)?;
        f.read_exact(&mut head).map_err(io)?;
        h.update(&head);
    }
    Ok(h.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect())
}
