//! A Qwen2 or Qwen3 decoder's shape, read from a Hugging Face `config.json`.

use std::path::Path;

use serde::Deserialize;

use crate::ModelError;

/// The two decoder families this module runs. They differ in exactly four places: Qwen2
/// has q/k/v biases always and derives `head_dim`; Qwen3 has `attention_bias` for all four
/// projections, an explicit `head_dim`, and per-head RMSNorms on q and k before RoPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Qwen2,
    Qwen3,
}

impl Family {
    /// The family a `config.json` names: by `model_type` where it has one, else by its
    /// `architectures` (Qwen3 MoE is another model).
    pub fn of_config(model_type: Option<&str>, architectures: &[String]) -> Option<Family> {
        match model_type {
            Some("qwen2") => Some(Family::Qwen2),
            Some("qwen3") => Some(Family::Qwen3),
            Some(_) => None,
            None if architectures.iter().any(|a| a.starts_with("Qwen2")) => Some(Family::Qwen2),
            None if architectures.iter().any(|a| a.starts_with("Qwen3") && !a.contains("Moe")) => Some(Family::Qwen3),
            None => None,
        }
    }

    /// llama.cpp's architecture name (`general.architecture` in GGUF), which is also the
    /// Hugging Face `model_type`.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Qwen2 => "qwen2",
            Family::Qwen3 => "qwen3",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct QwenConfig {
    pub family: Family,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub tie_word_embeddings: bool,
    /// q, k, v carry biases (always in Qwen2; `attention_bias` in Qwen3).
    pub qkv_bias: bool,
    /// o_proj carries a bias (`attention_bias` in Qwen3; never in Qwen2).
    pub o_bias: bool,
    pub max_position_embeddings: usize,
}

/// The fields of config.json this module reads; everything else is ignored.
#[derive(Deserialize)]
struct Raw {
    model_type: Option<String>,
    #[serde(default)]
    architectures: Vec<String>,
    hidden_size: usize,
    intermediate_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    vocab_size: usize,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    /// Newer transformers versions write `rope_parameters: {rope_theta, rope_type}`.
    rope_parameters: Option<RopeParameters>,
    rope_scaling: Option<serde_json::Value>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    use_sliding_window: Option<bool>,
    max_position_embeddings: Option<usize>,
}

#[derive(Deserialize)]
struct RopeParameters {
    rope_theta: Option<f64>,
    rope_type: Option<String>,
}

impl QwenConfig {
    /// Reads `config.json`; refuses families and features this module does not implement,
    /// naming the file.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read(path).map_err(|e| ModelError::io(path, e))?;
        Self::from_json(&text, path)
    }

    pub fn from_json(text: &[u8], path: &Path) -> Result<Self, ModelError> {
        let fail = |reason: String| ModelError::ModelConfig { path: path.to_path_buf(), reason };
        let raw: Raw = serde_json::from_slice(text).map_err(|e| fail(format!("not a readable model config: {e}")))?;
        let named = raw.model_type.clone().or_else(|| raw.architectures.first().cloned()).unwrap_or_default();
        let family = Family::of_config(raw.model_type.as_deref(), &raw.architectures)
            .ok_or_else(|| ModelError::UnsupportedModel { path: path.to_path_buf(), found: named })?;
        if raw.use_sliding_window == Some(true) {
            return Err(fail("sliding-window attention (`use_sliding_window: true`) is not supported".into()));
        }
        let scaled = raw.rope_scaling.as_ref().is_some_and(|v| !v.is_null())
            || raw.rope_parameters.as_ref().and_then(|p| p.rope_type.as_deref()).is_some_and(|t| t != "default");
        if scaled {
            return Err(fail("RoPE scaling is not supported".into()));
        }
        let heads = raw.num_attention_heads;
        let kv_heads = raw.num_key_value_heads.unwrap_or(heads);
        if heads == 0 || kv_heads == 0 || !heads.is_multiple_of(kv_heads) {
            return Err(fail(format!("{heads} attention heads cannot share {kv_heads} key/value heads")));
        }
        let head_dim = match (family, raw.head_dim) {
            (_, Some(d)) => d,
            (Family::Qwen2, None) if raw.hidden_size.is_multiple_of(heads) => raw.hidden_size / heads,
            (Family::Qwen2, None) => return Err(fail(format!("hidden_size {} is not a multiple of {heads} heads", raw.hidden_size))),
            // transformers' Qwen3Config default.
            (Family::Qwen3, None) => 128,
        };
        if head_dim % 2 != 0 {
            return Err(fail(format!("head_dim {head_dim} is odd; rotary embeddings need pairs")));
        }
        let attention_bias = raw.attention_bias.unwrap_or(false);
        let rope_theta = raw.rope_theta.or(raw.rope_parameters.and_then(|p| p.rope_theta)).unwrap_or(10_000.0);
        Ok(QwenConfig {
            family,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: heads,
            num_key_value_heads: kv_heads,
            head_dim,
            vocab_size: raw.vocab_size,
            rms_norm_eps: raw.rms_norm_eps.unwrap_or(1e-6),
            rope_theta,
            tie_word_embeddings: raw.tie_word_embeddings.unwrap_or(false),
            qkv_bias: family == Family::Qwen2 || attention_bias,
            o_bias: family == Family::Qwen3 && attention_bias,
            max_position_embeddings: raw.max_position_embeddings.unwrap_or(32_768),
        })
    }

    /// The projection shapes adapters for this model take, under `name`.
    pub fn shapes(&self, name: &str) -> crate::BaseModelShapes {
        crate::BaseModelShapes {
            name: name.into(),
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_attention_heads: self.num_attention_heads,
            num_key_value_heads: self.num_key_value_heads,
            head_dim: self.head_dim,
            num_hidden_layers: self.num_hidden_layers,
            family: Some(self.family),
        }
    }

    /// Parameters outside the embedding (for FLOP counts: about 2 × this per token).
    pub fn body_parameters(&self) -> usize {
        let (h, q, kv, i) = (self.hidden_size, self.num_attention_heads * self.head_dim, self.num_key_value_heads * self.head_dim, self.intermediate_size);
        let attn = h * q + 2 * h * kv + q * h;
        let norms = 2 * h + if self.family == Family::Qwen3 { 2 * self.head_dim } else { 0 };
        self.num_hidden_layers * (attn + 3 * h * i + norms) + h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<QwenConfig, ModelError> {
        QwenConfig::from_json(json.as_bytes(), Path::new("config.json"))
    }

    const QWEN3_EMBEDDING: &str = r#"{"architectures":["Qwen3ForCausalLM"],"model_type":"qwen3","hidden_size":1024,
        "intermediate_size":3072,"num_hidden_layers":28,"num_attention_heads":16,"num_key_value_heads":8,"head_dim":128,
        "vocab_size":151669,"rms_norm_eps":1e-06,"rope_theta":1000000,"tie_word_embeddings":true,"attention_bias":false,
        "use_sliding_window":false,"max_position_embeddings":32768,"torch_dtype":"bfloat16"}"#;

    #[test]
    fn the_qwen3_embedding_config_reads_as_published() {
        let c = parse(QWEN3_EMBEDDING).unwrap();
        assert_eq!((c.family, c.head_dim, c.num_key_value_heads, c.qkv_bias, c.o_bias), (Family::Qwen3, 128, 8, false, false));
        assert_eq!((c.rope_theta, c.rms_norm_eps), (1e6, 1e-6));
        // 595.8 M parameters in all, 155.3 M of them the embedding.
        assert_eq!(c.body_parameters() + c.vocab_size * c.hidden_size, 595_776_512);
    }

    #[test]
    fn qwen2_derives_head_dim_and_always_has_qkv_bias() {
        let c = parse(r#"{"model_type":"qwen2","hidden_size":1536,"intermediate_size":8960,"num_hidden_layers":28,
            "num_attention_heads":12,"num_key_value_heads":2,"vocab_size":151936,"rope_theta":1000000.0,"tie_word_embeddings":true}"#)
        .unwrap();
        assert_eq!((c.family, c.head_dim, c.qkv_bias, c.o_bias), (Family::Qwen2, 128, true, false));
    }

    #[test]
    fn other_models_and_features_are_refused_by_name() {
        let llama = parse(r#"{"model_type":"llama","hidden_size":8,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":2,"vocab_size":4}"#);
        assert!(matches!(llama, Err(ModelError::UnsupportedModel { ref found, .. }) if found == "llama"), "{llama:?}");
        let sliding = QWEN3_EMBEDDING.replace(r#""use_sliding_window":false"#, r#""use_sliding_window":true"#);
        assert!(parse(&sliding).unwrap_err().to_string().contains("sliding-window"));
        let gqa = QWEN3_EMBEDDING.replace(r#""num_key_value_heads":8"#, r#""num_key_value_heads":5"#);
        assert!(parse(&gqa).unwrap_err().to_string().contains("cannot share"));
        assert!(parse("{").unwrap_err().to_string().contains("config.json"));
    }
}
