//! Reading a Hugging Face model directory's weights: `model.safetensors`, or the shards a
//! `model.safetensors.index.json` names; f32, bf16 or f16 tensors, converted to f32, with the
//! `model.` prefix of a `*ForCausalLM` checkpoint removed (a bare model such as
//! Qwen3-Embedding is stored without it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use serde::Deserialize;

use crate::ModelError;
use crate::floats::to_f32;
use crate::nn::Weights;

pub const CONFIG: &str = "config.json";
const SINGLE: &str = "model.safetensors";
const INDEX: &str = "model.safetensors.index.json";

#[derive(Deserialize)]
struct Index {
    weight_map: BTreeMap<String, String>,
}

/// The safetensors files holding a directory's weights, in the order to read them.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let fail = |reason: String| ModelError::ModelDir { dir: dir.to_path_buf(), reason };
    if !dir.is_dir() {
        return Err(fail("no such directory".into()));
    }
    let index = dir.join(INDEX);
    if index.is_file() {
        let text = std::fs::read(&index).map_err(|e| ModelError::io(&index, e))?;
        let parsed: Index = serde_json::from_slice(&text).map_err(|e| fail(format!("{INDEX} is not a readable shard index: {e}")))?;
        let mut files: Vec<String> = parsed.weight_map.into_values().collect();
        files.sort();
        files.dedup();
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join(SINGLE);
    if single.is_file() {
        return Ok(vec![single]);
    }
    Err(fail(format!("neither {SINGLE} nor {INDEX} is there")))
}

/// Every tensor of the directory as f32, PyTorch layout, names without the `model.` prefix.
pub fn read_weights(dir: &Path) -> Result<Weights, ModelError> {
    let mut weights = Weights::default();
    for file in weight_files(dir)? {
        let fail = |reason: String| ModelError::Checkpoint { path: file.clone(), reason };
        let bytes = std::fs::read(&file).map_err(|e| ModelError::io(&file, e))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| fail(format!("not a readable safetensors file: {e}")))?;
        for (name, view) in st.tensors() {
            let data = to_f32(view.dtype(), view.data()).ok_or_else(|| fail(format!("tensor `{name}` has unsupported dtype {:?}", view.dtype())))?;
            let name = name.strip_prefix("model.").map(str::to_owned).unwrap_or(name);
            if weights.contains(&name) {
                return Err(fail(format!("tensor `{name}` appears twice")));
            }
            weights.insert(name, view.shape().to_vec(), data);
        }
    }
    Ok(weights)
}
