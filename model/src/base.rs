//! Projection shapes of the frozen base model the adapters target.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::transformer::Family;
use crate::{ModelError, ModuleType};

/// What the adapter writer needs to know about a base model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseModelShapes {
    /// Written as `base_model_name_or_path` in `adapter_config.json`.
    pub name: String,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub num_hidden_layers: usize,
    /// The decoder family, where known: GGUF adapters name it, and llama.cpp refuses one
    /// whose family differs from the base's. `None` for configs of other families.
    /// Not serialised, so that the seed fingerprints (which hash these shapes) stay put.
    #[serde(skip)]
    pub family: Option<Family>,
}

impl BaseModelShapes {
    pub const PRESETS: &'static [&'static str] = &["qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"];

    /// Built-in shapes, so the default configuration needs no files.
    pub fn preset(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        let lower = lower.trim_start_matches("qwen/");
        match lower {
            "qwen2.5-coder-1.5b" => Some(BaseModelShapes {
                name: "Qwen/Qwen2.5-Coder-1.5B".into(),
                hidden_size: 1536,
                intermediate_size: 8960,
                num_attention_heads: 12,
                num_key_value_heads: 2,
                head_dim: 128,
                num_hidden_layers: 28,
                family: Some(Family::Qwen2),
            }),
            "qwen2.5-coder-0.5b" => Some(BaseModelShapes {
                name: "Qwen/Qwen2.5-Coder-0.5B".into(),
                hidden_size: 896,
                intermediate_size: 4864,
                num_attention_heads: 14,
                num_key_value_heads: 2,
                head_dim: 64,
                num_hidden_layers: 24,
                family: Some(Family::Qwen2),
            }),
            _ => None,
        }
    }

    /// A preset name, or a path to a `config.json` (or a directory holding one).
    pub fn resolve(spec: &str) -> Result<Self, ModelError> {
        if let Some(shapes) = Self::preset(spec) {
            return Ok(shapes);
        }
        let path = Path::new(spec);
        if path.exists() {
            let file = if path.is_dir() { path.join("config.json") } else { path.to_path_buf() };
            return Self::from_config_json(&file);
        }
        Err(ModelError::UnknownBase(spec.into(), Self::PRESETS.join(", ")))
    }

    /// Reads a Hugging Face `config.json` (Qwen2, Llama and Mistral key names).
    pub fn from_config_json(path: &Path) -> Result<Self, ModelError> {
        let fail = |reason: String| ModelError::BaseConfig { path: path.to_path_buf(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| fail(format!("not JSON: {e}")))?;
        let get = |key: &str| -> Option<usize> { json.get(key).and_then(|v| v.as_u64()).map(|v| v as usize) };
        let need = |key: &str| get(key).ok_or_else(|| fail(format!("missing integer `{key}`")));
        let hidden_size = need("hidden_size")?;
        let num_attention_heads = need("num_attention_heads")?;
        if num_attention_heads == 0 {
            return Err(fail("`num_attention_heads` is 0".into()));
        }
        let head_dim = match get("head_dim") {
            Some(d) => d,
            None => hidden_size / num_attention_heads,
        };
        let architectures: Vec<String> = json
            .get("architectures")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        let name = json
            .get("_name_or_path")
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .unwrap_or_else(|| {
                path.parent()
                    .and_then(|p| p.file_name())
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "unknown".into())
            });
        Ok(BaseModelShapes {
            name,
            hidden_size,
            intermediate_size: need("intermediate_size")?,
            num_attention_heads,
            num_key_value_heads: get("num_key_value_heads").unwrap_or(num_attention_heads),
            head_dim,
            num_hidden_layers: need("num_hidden_layers")?,
            family: Family::of_config(json.get("model_type").and_then(|v| v.as_str()), &architectures),
        })
    }

    /// (in_features, out_features) of one projection, as in the base model's nn.Linear.
    pub fn in_out(&self, module: ModuleType) -> (usize, usize) {
        let h = self.hidden_size;
        let q_out = self.num_attention_heads * self.head_dim;
        let kv_out = self.num_key_value_heads * self.head_dim;
        match module {
            ModuleType::Q => (h, q_out),
            ModuleType::K | ModuleType::V => (h, kv_out),
            ModuleType::O => (q_out, h),
            ModuleType::Gate | ModuleType::Up => (h, self.intermediate_size),
            ModuleType::Down => (self.intermediate_size, h),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen_1_5b_shapes_match_the_paper_table() {
        let b = BaseModelShapes::preset("qwen2.5-coder-1.5b").unwrap();
        assert_eq!(b.in_out(ModuleType::K), (1536, 256));
        assert_eq!(b.in_out(ModuleType::Down), (8960, 1536));
        let r = 16;
        let total: usize = ModuleType::ALL
            .iter()
            .map(|&t| {
                let (i, o) = b.in_out(t);
                r * i + o * r
            })
            .sum();
        // reference/paper.md §2.1: the head emits 659,456 numbers per repository.
        assert_eq!(total, 659_456);
    }

    #[test]
    fn config_json_with_explicit_head_dim_and_gqa() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(
            &p,
            r#"{"_name_or_path":"x/y","hidden_size":64,"intermediate_size":128,
                "num_attention_heads":4,"num_key_value_heads":1,"head_dim":32,"num_hidden_layers":2}"#,
        )
        .unwrap();
        let b = BaseModelShapes::resolve(p.to_str().unwrap()).unwrap();
        assert_eq!(b.in_out(ModuleType::Q), (64, 128));
        assert_eq!(b.in_out(ModuleType::O), (128, 64));
        assert_eq!(b.in_out(ModuleType::V), (64, 32));
        assert_eq!(b.name, "x/y");
        assert_eq!(b.family, None, "no model_type, no architectures: not known to be Qwen");
    }

    #[test]
    fn family_comes_from_model_type_or_architectures() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        let shapes = r#""hidden_size":64,"intermediate_size":128,"num_attention_heads":4,"num_hidden_layers":2"#;
        for (extra, family) in [
            (r#""model_type":"qwen3""#, Some(Family::Qwen3)),
            (r#""architectures":["Qwen2ForCausalLM"]"#, Some(Family::Qwen2)),
            (r#""model_type":"llama""#, None),
        ] {
            std::fs::write(&p, format!("{{{shapes},{extra}}}")).unwrap();
            assert_eq!(BaseModelShapes::from_config_json(&p).unwrap().family, family, "{extra}");
        }
        assert_eq!(BaseModelShapes::preset("qwen2.5-coder-0.5b").unwrap().family, Some(Family::Qwen2));
    }

    #[test]
    fn missing_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.json");
        std::fs::write(&p, r#"{"hidden_size":64,"num_attention_heads":4}"#).unwrap();
        let err = BaseModelShapes::from_config_json(&p).unwrap_err().to_string();
        assert!(err.contains("intermediate_size"), "{err}");
    }
}
