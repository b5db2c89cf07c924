//! The Qwen tokenizer: a Hugging Face `tokenizer.json` read by the `tokenizers` crate (pure
//! Rust: fancy-regex for Qwen's pre-tokenizer pattern). Its normalizer, pre-tokenizer,
//! post-processor and decoder are the file's own, so the Qwen3-Embedding variant, whose
//! post-processor appends `<|endoftext|>`, is honoured as Python honours it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::ModelError;
use crate::encoder::qwen3::Tokenize;

pub struct QwenTokenizer {
    path: PathBuf,
    plain: Tokenizer,
    /// The same tokenizer truncating at each length asked for so far (one per recipe).
    truncating: Mutex<HashMap<usize, Arc<Tokenizer>>>,
}

impl QwenTokenizer {
    /// Reads `tokenizer.json`; a missing, truncated or invalid file is a named error.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        if !path.is_file() {
            return Err(ModelError::Tokenizer { path: path.to_path_buf(), reason: "no such file".into() });
        }
        let mut plain = Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer { path: path.to_path_buf(), reason: format!("not a readable tokenizer.json: {e}") })?;
        // The file's own truncation and padding settings are not what callers ask for.
        plain.with_truncation(None).map_err(|e| ModelError::Tokenizer { path: path.to_path_buf(), reason: e.to_string() })?;
        plain.with_padding(None);
        Ok(QwenTokenizer { path: path.to_path_buf(), plain, truncating: Mutex::default() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn fail(&self, e: impl std::fmt::Display) -> ModelError {
        ModelError::Tokenizer { path: self.path.clone(), reason: e.to_string() }
    }

    /// The id of a token (e.g. `<|endoftext|>`).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.plain.token_to_id(token)
    }

    pub fn vocab_size(&self) -> usize {
        self.plain.get_vocab_size(true)
    }

    /// Text of `ids`, special tokens left out or kept.
    pub fn decode_with(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, ModelError> {
        self.plain.decode(ids, skip_special_tokens).map_err(|e| self.fail(e))
    }

    /// [`Tokenize::encode`] of several texts, on the `tokenizers` crate's thread pool.
    pub fn encode_batch(&self, texts: &[&str], add_special_tokens: bool) -> Result<Vec<Vec<u32>>, ModelError> {
        let encodings = self.plain.encode_batch_fast(texts.to_vec(), add_special_tokens).map_err(|e| self.fail(e))?;
        Ok(encodings.iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// [`Tokenize::encode_truncated`] of several texts, on the `tokenizers` crate's thread pool.
    pub fn encode_truncated_batch(&self, texts: &[&str], max_length: usize) -> Result<Vec<Vec<u32>>, ModelError> {
        let encodings = self.truncating(max_length)?.encode_batch_fast(texts.to_vec(), true).map_err(|e| self.fail(e))?;
        Ok(encodings.iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// [`QwenTokenizer::decode_with`] of several id sequences.
    pub fn decode_batch(&self, ids: &[&[u32]], skip_special_tokens: bool) -> Result<Vec<String>, ModelError> {
        self.plain.decode_batch(ids, skip_special_tokens).map_err(|e| self.fail(e))
    }

    fn truncating(&self, max_length: usize) -> Result<Arc<Tokenizer>, ModelError> {
        let mut cache = self.truncating.lock().expect("tokenizer lock");
        if let Some(t) = cache.get(&max_length) {
            return Ok(t.clone());
        }
        let mut t = self.plain.clone();
        let params = TruncationParams { max_length, strategy: TruncationStrategy::LongestFirst, direction: TruncationDirection::Right, stride: 0 };
        t.with_truncation(Some(params)).map_err(|e| self.fail(e))?;
        let t = Arc::new(t);
        cache.insert(max_length, t.clone());
        Ok(t)
    }
}

/// The Qwen3-Embedding form of a Qwen `tokenizer.json`: its post-processor followed by a
/// template appending `<|endoftext|>` to every sequence, as the embedding model's own file
/// does (the chat and base models' files append nothing).
pub fn with_appended_eos(tokenizer_json: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    let mut json: serde_json::Value = serde_json::from_slice(tokenizer_json)?;
    let eos = "<|endoftext|>";
    let eos_id = json["added_tokens"].as_array().and_then(|t| t.iter().find(|t| t["content"] == eos)).map(|t| t["id"].clone()).unwrap_or(151643.into());
    let template = serde_json::json!({
        "type": "TemplateProcessing",
        "single": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": eos, "type_id": 0}}],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": eos, "type_id": 0}},
                 {"Sequence": {"id": "B", "type_id": 1}}, {"SpecialToken": {"id": eos, "type_id": 1}}],
        "special_tokens": {eos: {"id": eos, "ids": [eos_id], "tokens": [eos]}},
    });
    let previous = json["post_processor"].take();
    json["post_processor"] = serde_json::json!({"type": "Sequence", "processors": [previous, template]});
    serde_json::to_vec(&json)
}

impl Tokenize for QwenTokenizer {
    fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, ModelError> {
        Ok(self.plain.encode_fast(text, add_special_tokens).map_err(|e| self.fail(e))?.get_ids().to_vec())
    }

    /// With special tokens, the text's own tokens cut so that all fit in `max_length`, as
    /// Python's `tokenizer(text, truncation=True, max_length=N)` does.
    fn encode_truncated(&self, text: &str, max_length: usize) -> Result<Vec<u32>, ModelError> {
        Ok(self.truncating(max_length)?.encode_fast(text, true).map_err(|e| self.fail(e))?.get_ids().to_vec())
    }

    fn decode(&self, ids: &[u32]) -> Result<String, ModelError> {
        self.decode_with(ids, true)
    }
}
