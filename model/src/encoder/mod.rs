//! Encoders: text → fixed-size vectors the hypernetwork consumes.
//!
//! An encoder turns each file (or each file's diff) into a file vector, and pools file
//! vectors into one repository or commit vector. Callers may cache file vectors by blob id:
//! a vector is a pure function of (path, text, encoder id).

pub mod hashed;
mod python;
mod python_lex;
pub mod qwen3;

pub use hashed::HashedEncoder;

/// One file's part of a commit: the text of its added and removed lines.
#[derive(Debug, Clone, Default)]
pub struct FileDiff {
    pub path: String,
    pub added: String,
    pub removed: String,
}

/// A commit's diff, after the caller dropped binary files and applied its size cap.
#[derive(Debug, Clone, Default)]
pub struct DiffInput {
    pub files: Vec<FileDiff>,
    /// Set by the caller when it cut the diff short; recorded, not acted on.
    pub truncated: bool,
}

/// An encoded vector and what it was made from.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub vector: Vec<f32>,
    pub files: usize,
    pub truncated: bool,
}
