//! Writing an adapter directory: assembled under a temporary name beside its final place,
//! fsynced, and renamed into place, so a reader sees either nothing or all of it.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, tensor::TensorView};
use serde::{Deserialize, Serialize};

use super::gguf::{GGUF_FILE, write_gguf};
use super::{ADAPTER_CONFIG, ADAPTER_WEIGHTS, tensor_key};
use crate::floats::{f32_to_bf16, f32_to_f16};
use crate::{AdapterWeights, BaseModelShapes, ModelError};

/// Prefix of temporary adapter directories; anything carrying it is an unfinished write
/// that recovery may delete.
pub const TEMP_PREFIX: &str = ".tmp-";

/// The float type adapter tensors are written in. Parsing (and deserialising, so that a
/// configuration file can hold one) accepts the short and the long names in any case and
/// refuses anything else rather than falling back to f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum AdapterDtype {
    #[default]
    F32,
    Bf16,
    F16,
}

impl AdapterDtype {
    pub fn as_str(self) -> &'static str {
        match self {
            AdapterDtype::F32 => "f32",
            AdapterDtype::Bf16 => "bf16",
            AdapterDtype::F16 => "f16",
        }
    }
}

impl std::fmt::Display for AdapterDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AdapterDtype {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(AdapterDtype::F32),
            "bf16" | "bfloat16" => Ok(AdapterDtype::Bf16),
            "f16" | "float16" => Ok(AdapterDtype::F16),
            other => Err(ModelError::UnknownAdapterDtype(other.into())),
        }
    }
}

impl TryFrom<String> for AdapterDtype {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self, ModelError> {
        s.parse()
    }
}

/// Little-endian bytes of `values` in `dtype`: the same bytes in safetensors and GGUF.
pub(super) fn encode(values: &[f32], dtype: AdapterDtype) -> Vec<u8> {
    match dtype {
        AdapterDtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        AdapterDtype::Bf16 => values.iter().flat_map(|v| f32_to_bf16(*v).to_le_bytes()).collect(),
        AdapterDtype::F16 => values.iter().flat_map(|v| f32_to_f16(*v).to_le_bytes()).collect(),
    }
}

/// `adapter_config.json` for a LoRA over the given types.
pub fn adapter_config(weights: &AdapterWeights, base: &BaseModelShapes) -> serde_json::Value {
    let targets: Vec<&str> = weights.pairs.iter().map(|p| p.module.peft_name()).collect();
    serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": weights.rank,
        "lora_alpha": weights.alpha,
        "lora_dropout": 0.0,
        "bias": "none",
        "target_modules": targets,
        "base_model_name_or_path": base.name,
        "inference_mode": true,
        "use_rslora": false,
        "use_dora": false,
        "fan_in_fan_out": false,
        "modules_to_save": null,
        "init_lora_weights": true,
        "layers_to_transform": null,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "revision": null
    })
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    File::open(path)?.sync_all()
}

fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Formats written beside the PEFT pair, which is always written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Formats {
    /// `adapter_model.gguf`, the llama.cpp LoRA ([`super::gguf`]); needs a base known to be
    /// Qwen2 or Qwen3.
    pub gguf: bool,
}

/// Writes the adapter into `final_dir`, which must not exist yet. Extra files (name, bytes)
/// are written beside the PEFT files. On error the temporary directory is removed and
/// nothing appears at `final_dir`.
pub fn write_adapter_dir(
    final_dir: &Path,
    weights: &AdapterWeights,
    base: &BaseModelShapes,
    dtype: AdapterDtype,
    extra_files: &[(&str, Vec<u8>)],
) -> Result<PathBuf, ModelError> {
    write_adapter_dir_with(final_dir, weights, base, dtype, extra_files, Formats::default())
}

/// [`write_adapter_dir`], also writing the `formats` asked for inside the same temporary
/// directory, so that they appear together with the PEFT files or not at all.
pub fn write_adapter_dir_with(
    final_dir: &Path,
    weights: &AdapterWeights,
    base: &BaseModelShapes,
    dtype: AdapterDtype,
    extra_files: &[(&str, Vec<u8>)],
    formats: Formats,
) -> Result<PathBuf, ModelError> {
    let parent = final_dir.parent().ok_or_else(|| ModelError::AdapterIo {
        path: final_dir.into(),
        source: std::io::Error::other("adapter directory has no parent"),
    })?;
    let io_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ModelError::AdapterIo { path, source }
    };
    fs::create_dir_all(parent).map_err(io_err(parent))?;
    let name = final_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = parent.join(format!(
        "{TEMP_PREFIX}{name}-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
    ));
    let result = (|| {
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        write_tensors(&tmp.join(ADAPTER_WEIGHTS), weights, base, dtype)?;
        if formats.gguf {
            write_gguf(&tmp.join(GGUF_FILE), weights, base, dtype)?;
        }
        let config = serde_json::to_vec_pretty(&adapter_config(weights, base)).expect("json");
        let p = tmp.join(ADAPTER_CONFIG);
        write_file(&p, &config).map_err(io_err(&p))?;
        for (file, bytes) in extra_files {
            let p = tmp.join(file);
            write_file(&p, bytes).map_err(io_err(&p))?;
        }
        sync_dir(&tmp).map_err(io_err(&tmp))?;
        if final_dir.exists() {
            return Err(ModelError::AdapterIo {
                path: final_dir.into(),
                source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "adapter directories are immutable"),
            });
        }
        fs::rename(&tmp, final_dir).map_err(io_err(final_dir))?;
        sync_dir(parent).map_err(io_err(parent))?;
        Ok(final_dir.to_path_buf())
    })();
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

fn write_tensors(path: &Path, weights: &AdapterWeights, base: &BaseModelShapes, dtype: AdapterDtype) -> Result<(), ModelError> {
    let st_dtype = match dtype {
        AdapterDtype::F32 => Dtype::F32,
        AdapterDtype::Bf16 => Dtype::BF16,
        AdapterDtype::F16 => Dtype::F16,
    };
    // One encoded buffer per factor; every layer's view points at the same bytes.
    let encoded: Vec<(Vec<u8>, Vec<u8>)> = weights.pairs.iter().map(|p| (encode(&p.a, dtype), encode(&p.b, dtype))).collect();
    let mut views = Vec::new();
    for layer in 0..base.num_hidden_layers {
        for (pair, (a, b)) in weights.pairs.iter().zip(&encoded) {
            let va = TensorView::new(st_dtype, vec![weights.rank, pair.in_features], a)
                .map_err(|e| ModelError::Safetensors(e.to_string()))?;
            let vb = TensorView::new(st_dtype, vec![pair.out_features, weights.rank], b)
                .map_err(|e| ModelError::Safetensors(e.to_string()))?;
            views.push((tensor_key(layer, pair.module, 'A'), va));
            views.push((tensor_key(layer, pair.module, 'B'), vb));
        }
    }
    let mut md = HashMap::new();
    md.insert("format".to_string(), "pt".to_string());
    // Streamed from the per-factor buffers: the replicated layers are never copied into one
    // file-sized buffer (74 MB at the paper's size in f32).
    safetensors::serialize_to_file(views, Some(md), path).map_err(|e| match e {
        safetensors::SafeTensorError::IoError(source) => ModelError::AdapterIo { path: path.into(), source },
        other => ModelError::Safetensors(other.to_string()),
    })?;
    File::open(path).and_then(|f| f.sync_all()).map_err(|source| ModelError::AdapterIo { path: path.into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtypes_parse_and_deserialise_alike_and_refuse_unknown_names() {
        for (name, dtype) in [("f32", AdapterDtype::F32), ("BFloat16", AdapterDtype::Bf16), ("f16", AdapterDtype::F16)] {
            assert_eq!(name.parse::<AdapterDtype>().unwrap(), dtype);
            assert_eq!(serde_json::from_value::<AdapterDtype>(name.into()).unwrap(), dtype);
        }
        for d in [AdapterDtype::F32, AdapterDtype::Bf16, AdapterDtype::F16] {
            assert_eq!(serde_json::to_value(d).unwrap(), d.to_string());
        }
        assert!(matches!("f64".parse::<AdapterDtype>(), Err(ModelError::UnknownAdapterDtype(v)) if v == "f64"));
        let err = serde_json::from_value::<AdapterDtype>("fp32".into()).unwrap_err().to_string();
        assert!(err.contains("unknown adapter dtype `fp32`"), "{err}");
    }
}
