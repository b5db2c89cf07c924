//! evolora's own checkpoint format: safetensors with flat tensor names and string
//! metadata `format`=`pt`, `evolora.architecture`, `evolora.config` (HyperConfig JSON),
//! `evolora.alpha`, `evolora.base` (BaseModelShapes JSON), `evolora.encoder`,
//! `evolora.step_policy`, `evolora.trained`.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use ::safetensors::SafeTensors;

use super::raw::RawCheckpoint;
use crate::fingerprint::fingerprint_of_bytes;
use crate::floats::to_f32;
use crate::meta::{Architecture, ModelMeta, StepPolicy};
use crate::nn::Weights;
use crate::{BaseModelShapes, HyperConfig, ModelError};

/// Writes an evolora checkpoint. The bytes depend only on the tensors and the metadata
/// (tensors and metadata keys in name order; the `safetensors` crate's own writer orders
/// metadata by hash), so two runs that end with the same model write the same file. The
/// file appears whole or not at all.
pub fn save_safetensors(
    path: &Path,
    weights: &Weights,
    cfg: &HyperConfig,
    base: &BaseModelShapes,
    meta: &ModelMeta,
) -> Result<(), ModelError> {
    let mut md = BTreeMap::new();
    md.insert("format".to_string(), "pt".to_string());
    md.insert("evolora.architecture".into(), meta.architecture.to_string());
    md.insert("evolora.config".into(), serde_json::to_string(cfg).unwrap());
    md.insert("evolora.alpha".into(), cfg.alpha.to_string());
    md.insert("evolora.base".into(), serde_json::to_string(base).unwrap());
    md.insert("evolora.encoder".into(), meta.encoder.clone());
    md.insert("evolora.step_policy".into(), meta.step_policy.to_string());
    md.insert("evolora.trained".into(), meta.trained.to_string());
    // The header: "__metadata__" first, then each tensor (in the map's name order) with its
    // byte range in the data that follows.
    let mut header = String::from("{\"__metadata__\":");
    header.push_str(&serde_json::to_string(&md).map_err(|e| ModelError::Safetensors(e.to_string()))?);
    let mut offset = 0usize;
    for (name, t) in weights.iter() {
        let bytes = t.data.len() * 4;
        let entry = serde_json::json!({"dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + bytes]});
        header.push_str(&format!(",{}:{}", serde_json::to_string(name).expect("a string"), entry));
        offset += bytes;
    }
    header.push('}');
    // The data starts on an 8-byte boundary, as the format asks.
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    crate::files::replace_atomically(path, |file| {
        let mut out = std::io::BufWriter::new(file);
        out.write_all(&(header.len() as u64).to_le_bytes())?;
        out.write_all(header.as_bytes())?;
        for (_, t) in weights.iter() {
            for v in &t.data {
                out.write_all(&v.to_le_bytes())?;
            }
        }
        out.flush()
    })
    .map_err(|e| ModelError::io(path, e))
}

/// Reads the tensors (any float dtype, converted to f32) and the metadata.
pub(super) fn read(path: &Path) -> Result<RawCheckpoint, ModelError> {
    let fail = |reason: String| ModelError::Checkpoint { path: path.to_path_buf(), reason };
    let bytes = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
    let fingerprint = fingerprint_of_bytes(&bytes);
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| fail(e.to_string()))?;
    let md = header.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(&bytes).map_err(|e| fail(e.to_string()))?;
    let mut weights = Weights::default();
    for (name, view) in st.tensors() {
        let data = to_f32(view.dtype(), view.data()).ok_or_else(|| fail(format!("tensor `{name}` has unsupported dtype {:?}", view.dtype())))?;
        weights.insert(name, view.shape().to_vec(), data);
    }
    let alpha = md.get("evolora.alpha").and_then(|s| s.parse().ok()).or_else(|| {
        md.get("evolora.config").and_then(|s| serde_json::from_str::<HyperConfig>(s).ok()).map(|c| c.alpha)
    });
    let step_policy: Option<StepPolicy> = parse_metadata(path, &md, "evolora.step_policy")?;
    let architecture: Option<Architecture> = parse_metadata(path, &md, "evolora.architecture")?;
    Ok(RawCheckpoint {
        weights,
        fingerprint,
        alpha,
        encoder: md.get("evolora.encoder").cloned().unwrap_or_else(|| "unknown".into()),
        step_policy: step_policy.unwrap_or(StepPolicy::EveryCommit),
        trained: md.get("evolora.trained").map(|s| s == "true").unwrap_or(true),
        architecture,
    })
}

/// A named metadata value. An absent key keeps the meaning it had before the key existed (the
/// caller's default); a present one must be a name this build knows.
fn parse_metadata<T: FromStr<Err = ModelError>>(path: &Path, md: &HashMap<String, String>, key: &'static str) -> Result<Option<T>, ModelError> {
    md.get(key)
        .map(|value| value.parse())
        .transpose()
        .map_err(|e| ModelError::CheckpointMetadata { path: path.to_path_buf(), key, source: Box::new(e) })
}
