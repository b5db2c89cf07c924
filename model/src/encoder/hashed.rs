//! The `hashed` encoder: no weights, CPU-fast, deterministic across machines.
//!
//! Specification (any change to it needs a new version; ids `hashed-v1`, `hashed-v2`):
//! 1. Features. Python files (`.py`, `.pyi`): imports (the statement, whitespace
//!    collapsed), function names, signatures (`name(params)`), class names, call names and
//!    identifiers; version 1 finds them with tree-sitter-python, version 2 with the lexer of
//!    `python_lex.rs` (same kinds, rules written there). Other text: identifier-like tokens
//!    (`[A-Za-z_][A-Za-z0-9_]+`). Each feature has a kind weight (import 3, def/class 2,
//!    signature 1.5, call 1, token 0.5, identifier 0.25).
//! 2. Hashing. A feature's key is `<kind>:<channel>:<text>`, where channel is `+` (added
//!    lines), `-` (removed lines) or `=` (a whole file). k = FNV-1a-64(key); bucket =
//!    k mod 1024; sign = +1 if bit 63 of k is clear, else −1. The file vector (1024 floats)
//!    is the sum of sign·weight over features in the order they are found (f32), then
//!    L2-normalised (zero stays zero).
//! 3. Pooling. Over the file vectors of a commit (or snapshot): the first half of the
//!    output is their mean, the second half their element-wise maximum. 2048 floats.
//! 4. Bounds. At most [`HashedEncoder::MAX_FILE_BYTES`] of each text are read (cut at a
//!    char boundary); cut texts mark the result truncated.
//!
//! Version 2 is the default: tree-sitter spent most of a history's ingest recovering from
//! the syntax errors of diff fragments. Version 1 stays for models trained on it.

use super::python::{self, Kind};
use super::python_lex;
use super::{DiffInput, Encoded, FileDiff};
use crate::nn::init::fnv1a64;

/// A version of the hashed encoder (see the module's specification).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashedEncoder {
    version: Version,
}

/// Where a version's Python features come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    TreeSitter,
    Lexer,
}

/// Which side of a change a text is.
#[derive(Debug, Clone, Copy)]
pub enum Channel {
    Added,
    Removed,
    Whole,
}

impl Channel {
    fn tag(self) -> &'static str {
        match self {
            Channel::Added => "+",
            Channel::Removed => "-",
            Channel::Whole => "=",
        }
    }
}

impl HashedEncoder {
    /// Python features from tree-sitter.
    pub const V1: HashedEncoder = HashedEncoder { version: Version::TreeSitter };
    /// Python features from a lexer.
    pub const V2: HashedEncoder = HashedEncoder { version: Version::Lexer };
    /// What untrained models and new configurations get.
    pub const LATEST: HashedEncoder = Self::V2;
    /// Every version, oldest first.
    pub const VERSIONS: [HashedEncoder; 2] = [Self::V1, Self::V2];
    pub const HALF: usize = 1024;
    pub const DIM: usize = 2 * Self::HALF;
    pub const MAX_FILE_BYTES: usize = 1 << 20;

    /// The id models record (`hashed-v1`, `hashed-v2`).
    pub const fn id(&self) -> &'static str {
        match self.version {
            Version::TreeSitter => "hashed-v1",
            Version::Lexer => "hashed-v2",
        }
    }

    /// The version with this id.
    pub fn from_id(id: &str) -> Option<HashedEncoder> {
        Self::VERSIONS.into_iter().find(|v| v.id() == id)
    }

    pub fn is_python(path: &str) -> bool {
        path.ends_with(".py") || path.ends_with(".pyi")
    }

    /// Adds one text's features into `acc` (unnormalised). Returns true if the text was cut.
    pub fn accumulate(&self, path: &str, text: &str, channel: Channel, acc: &mut [f32]) -> bool {
        let (text, cut) = clip(text, Self::MAX_FILE_BYTES);
        let mut key = String::new();
        let mut emit = |kind: Kind, feature: &str| {
            key.clear();
            key.push_str(kind.tag());
            key.push(':');
            key.push_str(channel.tag());
            key.push(':');
            key.push_str(feature);
            let h = fnv1a64(key.as_bytes());
            let bucket = (h % Self::HALF as u64) as usize;
            let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
            acc[bucket] += sign * kind.weight();
        };
        let parsed = Self::is_python(path)
            && match self.version {
                Version::TreeSitter => python::features(text, &mut emit),
                Version::Lexer => {
                    python_lex::features(text, &mut emit);
                    true
                }
            };
        if !parsed {
            for token in tokens(text) {
                emit(Kind::Token, token);
            }
        }
        cut
    }

    /// The normalised vector of one whole file (snapshot encoding; cache it by blob id).
    pub fn file_vector(&self, path: &str, text: &str) -> (Vec<f32>, bool) {
        let mut v = vec![0.0; Self::HALF];
        let cut = self.accumulate(path, text, Channel::Whole, &mut v);
        normalise(&mut v);
        (v, cut)
    }

    /// Mean and max pooling of file vectors into one 2048-d vector.
    pub fn pool<'a>(&self, files: impl IntoIterator<Item = &'a [f32]>) -> Vec<f32> {
        let mut mean = vec![0.0f32; Self::HALF];
        let mut max = vec![f32::NEG_INFINITY; Self::HALF];
        let mut n = 0usize;
        for v in files {
            for i in 0..Self::HALF {
                mean[i] += v[i];
                max[i] = max[i].max(v[i]);
            }
            n += 1;
        }
        if n == 0 {
            return vec![0.0; Self::DIM];
        }
        mean.iter_mut().for_each(|m| *m /= n as f32);
        mean.extend(max);
        mean
    }

    /// A commit's diff → one vector. Each file's added and removed lines form one file vector.
    pub fn encode_diff(&self, diff: &DiffInput) -> Encoded {
        let vectors: Vec<(Vec<f32>, bool)> = diff.files.iter().map(|f| self.diff_file_vector(f)).collect();
        self.pool_diff(diff, vectors)
    }

    /// One file of a diff: its added and removed lines, normalised; true if a text was cut.
    /// Callers spreading a commit's files over threads pool these with [`Self::pool_diff`].
    pub fn diff_file_vector(&self, f: &FileDiff) -> (Vec<f32>, bool) {
        let mut v = vec![0.0; Self::HALF];
        let cut = self.accumulate(&f.path, &f.added, Channel::Added, &mut v) | self.accumulate(&f.path, &f.removed, Channel::Removed, &mut v);
        normalise(&mut v);
        (v, cut)
    }

    /// The commit vector from its files' vectors, in file order.
    pub fn pool_diff(&self, diff: &DiffInput, vectors: Vec<(Vec<f32>, bool)>) -> Encoded {
        let truncated = diff.truncated || vectors.iter().any(|(_, cut)| *cut);
        Encoded { vector: self.pool(vectors.iter().map(|(v, _)| v.as_slice())), files: vectors.len(), truncated }
    }

    /// A snapshot (path, text) list → one vector. Callers with a blob cache use
    /// [`Self::file_vector`] and [`Self::pool`] directly.
    pub fn encode_snapshot<'a>(&self, files: impl IntoIterator<Item = (&'a str, &'a str)>) -> Encoded {
        let mut truncated = false;
        let vectors: Vec<Vec<f32>> = files
            .into_iter()
            .map(|(p, t)| {
                let (v, cut) = self.file_vector(p, t);
                truncated |= cut;
                v
            })
            .collect();
        Encoded { vector: self.pool(vectors.iter().map(Vec::as_slice)), files: vectors.len(), truncated }
    }
}

fn normalise(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

fn clip(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

fn tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|t| t.len() >= 2 && !t.as_bytes()[0].is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::FileDiff;

    fn diff(added: &str) -> DiffInput {
        DiffInput {
            files: vec![FileDiff { path: "pkg/mod.py".into(), added: added.into(), removed: String::new() }],
            truncated: false,
        }
    }

    #[test]
    fn deterministic_and_sensitive_to_imports() {
        let e = HashedEncoder::LATEST;
        let a = e.encode_diff(&diff("def f(x):\n    return g(x)\n"));
        let b = e.encode_diff(&diff("def f(x):\n    return g(x)\n"));
        assert_eq!(a.vector, b.vector);
        assert_eq!(a.vector.len(), HashedEncoder::DIM);
        let c = e.encode_diff(&diff("import numpy as np\ndef f(x):\n    return g(x)\n"));
        assert_ne!(a.vector, c.vector);
    }

    #[test]
    fn python_features_are_found() {
        let mut seen = Vec::new();
        python::features("import os\nclass K:\n    def f(self, x: int):\n        os.path.join(x)\n", &mut |k, t| {
            seen.push((k, t.to_owned()))
        });
        assert!(seen.contains(&(Kind::Import, "import os".into())));
        assert!(seen.contains(&(Kind::Class, "K".into())));
        assert!(seen.contains(&(Kind::Def, "f".into())));
        assert!(seen.contains(&(Kind::Signature, "f(self, x: int)".into())));
        assert!(seen.contains(&(Kind::Call, "join".into())));
    }

    #[test]
    fn huge_input_is_bounded_and_marked() {
        let big = "x = y + z\n".repeat(5_000_000); // 50 MB
        assert_eq!(big.len(), 50_000_000);
        for e in HashedEncoder::VERSIONS {
            assert!(e.encode_diff(&diff(&big)).truncated, "{}", e.id());
        }
    }

    /// Version 2 against `tests/reference/hashed_v2.py`, an implementation written from the
    /// specification alone: every feature in order, and the vectors' bits.
    #[test]
    fn version_2_matches_the_reference_implementation() {
        let fixture: serde_json::Value = serde_json::from_str(include_str!("../../../tests/fixtures/hashed_v2.json")).unwrap();
        let dense = |pairs: &serde_json::Value, len: usize| {
            let mut v = vec![0.0f32; len];
            for p in pairs.as_array().unwrap() {
                v[p[0].as_u64().unwrap() as usize] = p[1].as_f64().unwrap() as f32;
            }
            v
        };
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let e = HashedEncoder::V2;
        let cases = fixture["cases"].as_array().unwrap();
        let mut features_seen = 0;
        for case in cases {
            let (path, text) = (case["path"].as_str().unwrap(), case["text"].as_str().unwrap());
            let mut found = Vec::new();
            let mut emit = |k: Kind, t: &str| found.push(serde_json::json!([k.tag(), t]));
            if HashedEncoder::is_python(path) {
                python_lex::features(text, &mut emit);
            } else {
                tokens(text).for_each(|t| emit(Kind::Token, t));
            }
            assert_eq!(serde_json::Value::Array(found), case["features"], "features of {text:?}");
            features_seen += case["features"].as_array().unwrap().len();
            let channel = match case["channel"].as_str().unwrap() {
                "+" => Channel::Added,
                "-" => Channel::Removed,
                _ => Channel::Whole,
            };
            let mut v = vec![0.0; HashedEncoder::HALF];
            e.accumulate(path, text, channel, &mut v);
            normalise(&mut v);
            assert_eq!(bits(&v), bits(&dense(&case["vector"], HashedEncoder::HALF)), "vector of {text:?}");
        }
        for d in fixture["diffs"].as_array().unwrap() {
            let files = d["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| FileDiff { path: f[0].as_str().unwrap().into(), added: f[1].as_str().unwrap().into(), removed: f[2].as_str().unwrap().into() })
                .collect();
            let got = e.encode_diff(&DiffInput { files, truncated: false }).vector;
            assert_eq!(bits(&got), bits(&dense(&d["vector"], HashedEncoder::DIM)));
        }
        assert!(cases.len() > 50 && features_seen > 5_000, "{} texts, {features_seen} features", cases.len());
    }

    #[test]
    fn versions_differ_and_are_found_by_id() {
        for v in HashedEncoder::VERSIONS {
            assert_eq!(HashedEncoder::from_id(v.id()), Some(v));
        }
        assert_eq!(HashedEncoder::from_id("hashed-v9"), None);
        let text = diff("x = f'{a}'\n");
        assert_ne!(HashedEncoder::V1.encode_diff(&text).vector, HashedEncoder::V2.encode_diff(&text).vector);
    }
}
