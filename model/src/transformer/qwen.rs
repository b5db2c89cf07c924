//! The Qwen2 / Qwen3 decoder: embedding, pre-norm layers of grouped-query attention with
//! rotary positions and a SwiGLU MLP, final RMSNorm; optionally the causal-LM head (its own
//! `lm_head` or the embedding, tied). Each tensor is declared once, with its Hugging Face
//! name and PyTorch shape, against a [`ParamSource`].

use burn::module::Module;
use burn::nn::{Embedding, Linear, RmsNorm};
use burn::tensor::activation::silu;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use super::cache::KvCache;
use super::config::{Family, QwenConfig};
use super::lora::Lora;
use super::rope;
use crate::{ModelError, ModuleType};
use crate::nn::few_rows;
use crate::nn::layers::{embedding, linear_maybe_bias, rms_norm};
use crate::nn::params::{Init, ParamSource};

/// Hugging Face initialises Qwen weights normally with std 0.02; a uniform draw with the same
/// spread serves seeded (untrained) models, which exist for tests and benchmarks.
fn init() -> Init {
    Init::Uniform { bound: 0.02 * 3f32.sqrt() }
}

#[derive(Module, Debug)]
pub struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    /// Qwen3: RMSNorm over each head of q and k, before RoPE.
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    #[module(skip)]
    heads: usize,
    #[module(skip)]
    kv_heads: usize,
    #[module(skip)]
    head_dim: usize,
}

impl Attention {
    fn new(cfg: &QwenConfig, prefix: &str, params: &mut impl ParamSource, device: &Device) -> Result<Self, ModelError> {
        let (h, d) = (cfg.hidden_size, cfg.head_dim);
        let (q, kv) = (cfg.num_attention_heads * d, cfg.num_key_value_heads * d);
        let lin = |params: &mut _, name: &str, d_in, d_out, bias| linear_maybe_bias(params, &format!("{prefix}.{name}"), d_in, d_out, bias, init(), device);
        let q_proj = lin(params, "q_proj", h, q, cfg.qkv_bias)?;
        let k_proj = lin(params, "k_proj", h, kv, cfg.qkv_bias)?;
        let v_proj = lin(params, "v_proj", h, kv, cfg.qkv_bias)?;
        let o_proj = lin(params, "o_proj", q, h, cfg.o_bias)?;
        let (q_norm, k_norm) = match cfg.family {
            Family::Qwen3 => (
                Some(rms_norm(params, &format!("{prefix}.q_norm.weight"), d, cfg.rms_norm_eps, device)?),
                Some(rms_norm(params, &format!("{prefix}.k_norm.weight"), d, cfg.rms_norm_eps, device)?),
            ),
            Family::Qwen2 => (None, None),
        };
        Ok(Attention { q_proj, k_proj, v_proj, o_proj, q_norm, k_norm, heads: cfg.num_attention_heads, kv_heads: cfg.num_key_value_heads, head_dim: d })
    }

    /// `x` `[batch, len, hidden]`; `mask` `[batch, 1, len, past + len]`, true where a key
    /// may not be seen (the causal part is added by the attention op, aligned to the end).
    fn forward(&self, x: Tensor<3>, pos: &(Tensor<4>, Tensor<4>), mask: Option<Tensor<4, Bool>>, cache: Option<(&mut KvCache, usize)>, lora: Adapted) -> Tensor<3> {
        let [b, t, _] = x.dims();
        let d = self.head_dim;
        let split = |y: Tensor<3>, heads: usize| y.reshape([b, t, heads, d]);
        let mut q = split(lora.project(&self.q_proj, ModuleType::Q, x.clone()), self.heads);
        let mut k = split(lora.project(&self.k_proj, ModuleType::K, x.clone()), self.kv_heads);
        let v = split(lora.project(&self.v_proj, ModuleType::V, x), self.kv_heads).swap_dims(1, 2);
        if let (Some(qn), Some(kn)) = (&self.q_norm, &self.k_norm) {
            q = qn.forward(q);
            k = kn.forward(k);
        }
        let q = rope::apply(q.swap_dims(1, 2), &pos.0, &pos.1);
        let k = rope::apply(k.swap_dims(1, 2), &pos.0, &pos.1);
        let (k, v) = match cache {
            Some((cache, layer)) => cache.extend(layer, k, v),
            None => (k, v),
        };
        // GQA is handled by the op (each key/value head serves heads / kv_heads query heads),
        // except under autodiff, whose fallback expects one key/value head per query head.
        let (k, v) = if q.is_autodiff() && self.kv_heads < self.heads { (repeat_kv(k, self.heads), repeat_kv(v, self.heads)) } else { (k, v) };
        let out = attention(q, k, v, mask, None, AttentionModuleOptions { scale: None, softcap: None, is_causal: true });
        lora.project(&self.o_proj, ModuleType::O, out.swap_dims(1, 2).reshape([b, t, self.heads * d]))
    }
}

#[derive(Module, Debug)]
pub struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl Mlp {
    fn new(cfg: &QwenConfig, prefix: &str, params: &mut impl ParamSource, device: &Device) -> Result<Self, ModelError> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let lin = |params: &mut _, name: &str, d_in, d_out| linear_maybe_bias(params, &format!("{prefix}.{name}"), d_in, d_out, false, init(), device);
        Ok(Mlp { gate_proj: lin(params, "gate_proj", h, i)?, up_proj: lin(params, "up_proj", h, i)?, down_proj: lin(params, "down_proj", i, h)? })
    }

    fn forward(&self, x: Tensor<3>, lora: Adapted) -> Tensor<3> {
        let gate = silu(lora.project(&self.gate_proj, ModuleType::Gate, x.clone()));
        lora.project(&self.down_proj, ModuleType::Down, gate * lora.project(&self.up_proj, ModuleType::Up, x))
    }
}

#[derive(Module, Debug)]
pub struct DecoderLayer {
    input_layernorm: RmsNorm,
    self_attn: Attention,
    post_attention_layernorm: RmsNorm,
    mlp: Mlp,
}

impl DecoderLayer {
    fn new(cfg: &QwenConfig, index: usize, params: &mut impl ParamSource, device: &Device) -> Result<Self, ModelError> {
        let p = format!("layers.{index}");
        let h = cfg.hidden_size;
        Ok(DecoderLayer {
            input_layernorm: rms_norm(params, &format!("{p}.input_layernorm.weight"), h, cfg.rms_norm_eps, device)?,
            self_attn: Attention::new(cfg, &format!("{p}.self_attn"), params, device)?,
            post_attention_layernorm: rms_norm(params, &format!("{p}.post_attention_layernorm.weight"), h, cfg.rms_norm_eps, device)?,
            mlp: Mlp::new(cfg, &format!("{p}.mlp"), params, device)?,
        })
    }

    fn forward(&self, x: Tensor<3>, pos: &(Tensor<4>, Tensor<4>), mask: Option<Tensor<4, Bool>>, cache: Option<(&mut KvCache, usize)>, lora: Adapted) -> Tensor<3> {
        let h = x.clone() + self.self_attn.forward(self.input_layernorm.forward(x), pos, mask, cache, lora);
        h.clone() + self.mlp.forward(self.post_attention_layernorm.forward(h), lora)
    }
}

/// A decoder, and its causal-LM head when the checkpoint has one.
#[derive(Module, Debug)]
pub struct Qwen {
    embed_tokens: Embedding,
    layers: Vec<DecoderLayer>,
    norm: RmsNorm,
    /// Absent when the head is tied to the embedding, or for a bare model.
    lm_head: Option<Linear>,
    #[module(skip)]
    config: QwenConfig,
    /// Whether logits can be computed (a bare model such as Qwen3-Embedding has no head).
    #[module(skip)]
    has_head: bool,
}

/// Which head to declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// A bare model: hidden states only.
    None,
    /// `lm_head.weight`, or the embedding when the config ties them.
    CausalLm,
}

impl Qwen {
    pub fn new(cfg: &QwenConfig, head: Head, params: &mut impl ParamSource, device: &Device) -> Result<Self, ModelError> {
        let embed_tokens = embedding(params, "embed_tokens.weight", cfg.vocab_size, cfg.hidden_size, init(), device)?;
        let layers = (0..cfg.num_hidden_layers).map(|i| DecoderLayer::new(cfg, i, params, device)).collect::<Result<_, _>>()?;
        let norm = rms_norm(params, "norm.weight", cfg.hidden_size, cfg.rms_norm_eps, device)?;
        let lm_head = match head {
            Head::CausalLm if !cfg.tie_word_embeddings => {
                Some(linear_maybe_bias(params, "lm_head", cfg.hidden_size, cfg.vocab_size, false, init(), device)?)
            }
            _ => None,
        };
        Ok(Qwen { embed_tokens, layers, norm, lm_head, config: cfg.clone(), has_head: head == Head::CausalLm })
    }

    pub fn config(&self) -> &QwenConfig {
        &self.config
    }

    pub fn device(&self) -> Device {
        self.norm.gamma.val().device()
    }

    /// `last_hidden_state` `[batch, len, hidden]` (after the final norm) for `ids`, `batch`
    /// rows of equal length. `mask` says, per row, which positions are real tokens: the
    /// cached ones and these (`batch × (cached + len)`), all real when absent. Positions are
    /// counted from the cache's length for every row, padded or not, as Hugging Face does;
    /// a padded position's own output is meaningless but finite.
    pub fn forward(&self, ids: &[u32], batch: usize, mask: Option<&[bool]>, cache: Option<&mut KvCache>) -> Tensor<3> {
        self.forward_with(&Input { ids, rows: batch, mask, positions: None }, cache, None)
    }

    /// [`Qwen::forward`] with explicit positions and, optionally, a LoRA adapter attached.
    pub fn forward_with(&self, input: &Input, mut cache: Option<&mut KvCache>, lora: Option<&Lora>) -> Tensor<3> {
        let device = self.device();
        let Input { ids, rows: batch, mask, positions } = *input;
        let len = ids.len() / batch.max(1);
        assert_eq!(len * batch, ids.len(), "rows of equal length");
        let past = cache.as_ref().map_or(0, |c| c.len());
        let ids = Tensor::<2, Int>::from_data(TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [batch, len]), &device);
        let mut x = self.embed_tokens.forward(ids);
        let pos = match positions {
            Some(p) => {
                assert_eq!(p.len(), batch * len, "a position for every token");
                rope::tables(self.config.rope_theta, self.config.head_dim, p, batch, &device)
            }
            None => rope::tables(self.config.rope_theta, self.config.head_dim, &(past..past + len).collect::<Vec<_>>(), 1, &device),
        };
        let mask = mask.map(|m| key_mask(m, batch, past, len, &device));
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| (c, i));
            x = layer.forward(x, &pos, mask.clone(), layer_cache, Adapted { lora, layer: i });
        }
        if let Some(c) = cache {
            c.advance(len);
        }
        self.norm.forward(x)
    }

    /// Logits `[batch, len, vocab]` of hidden states from [`Qwen::forward`].
    pub fn logits(&self, hidden: Tensor<3>) -> Result<Tensor<3>, ModelError> {
        if !self.has_head {
            return Err(ModelError::NoLmHead);
        }
        Ok(match &self.lm_head {
            Some(head) => few_rows::x_w(&hidden, &head.weight.val(), None).unwrap_or_else(|| head.forward(hidden)),
            // Tied: logits = h · Eᵀ with E the embedding [vocab, hidden].
            None => {
                let e = self.embed_tokens.weight.val();
                few_rows::x_et(&hidden, &e).unwrap_or_else(|| burn::tensor::module::linear(hidden, e.transpose(), None))
            }
        })
    }

    /// A fresh cache for this model.
    pub fn cache(&self) -> KvCache {
        KvCache::new(self.layers.len())
    }
}

/// One forward pass's tokens.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// `rows × len` token ids, row-major.
    pub ids: &'a [u32],
    pub rows: usize,
    /// Per row, which positions are real tokens: the cached ones and these
    /// (`rows × (cached + len)`); all real when absent.
    pub mask: Option<&'a [bool]>,
    /// Per row and token, the rotary position (`rows × len`); counted from the cache's
    /// length for every row when absent.
    pub positions: Option<&'a [usize]>,
}

/// `[b, kv_heads, len, d]` → `[b, heads, len, d]`, each key/value head repeated for the
/// query heads it serves (as Hugging Face's `repeat_kv`).
fn repeat_kv(x: Tensor<4>, heads: usize) -> Tensor<4> {
    let [b, kv, len, d] = x.dims();
    x.unsqueeze_dim::<5>(2).repeat_dim(2, heads / kv).reshape([b, heads, len, d])
}

/// The adapter (if any) and the layer a projection belongs to.
#[derive(Clone, Copy)]
struct Adapted<'a> {
    lora: Option<&'a Lora>,
    layer: usize,
}

impl Adapted<'_> {
    fn project(self, proj: &Linear, module: ModuleType, x: Tensor<3>) -> Tensor<3> {
        // Decoding: a few rows against the whole weight, streamed rather than packed.
        let bias = proj.bias.as_ref().map(|b| b.val());
        let y = few_rows::x_w(&x, &proj.weight.val(), bias.as_ref()).unwrap_or_else(|| proj.forward(x.clone()));
        match self.lora {
            Some(lora) => lora.add(self.layer, module, x, y),
            None => y,
        }
    }
}

/// `[batch, 1, len, past + len]`, true where query `i` of a row may not see key `j`: the key
/// is padding. A query always sees itself, so that a padded query (left padding) never has
/// every key masked, which some attention kernels turn into NaN.
fn key_mask(real: &[bool], batch: usize, past: usize, len: usize, device: &Device) -> Tensor<4, Bool> {
    let keys = past + len;
    assert_eq!(real.len(), batch * keys, "the mask covers the cached positions and these");
    let mut masked = Vec::with_capacity(batch * len * keys);
    for row in 0..batch {
        for i in 0..len {
            for j in 0..keys {
                masked.push(!real[row * keys + j] && j != past + i);
            }
        }
    }
    Tensor::from_data(TensorData::new(masked, [batch, 1, len, keys]), device)
}
