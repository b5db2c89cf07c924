//! The Evo `CommitGRU`: folds per-commit diff vectors into a repository state.
//!
//! h₀ = LN(GELU(repo_init_proj(snapshot))); x_t = LN(diff_proj(e_t));
//! h_t = GRU(x_t, h_{t-1}) with PyTorch's gate order (r, z, n) and reset applied after the
//! hidden product: n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)); h' = (1−z)⊙n + z⊙h.
//! ctx = output_norm(h_t) feeds the head.

use burn::module::Module;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::activation::{gelu, sigmoid};
use burn::tensor::{Device, Tensor};

use crate::nn::layers;
use crate::nn::params::{Init, ParamSource};
use crate::nn::tensor::{host, tensor2};
use crate::{HyperConfig, ModelError};

/// Steps whose input side is computed together (see [`CommitGru::advance`]). Changing it
/// changes the bits of every state.
pub const INPUT_BLOCK: usize = 16;

#[derive(Module, Debug)]
pub struct CommitGru {
    diff_proj: Linear,
    diff_norm: LayerNorm,
    init_proj: Linear,
    init_norm: LayerNorm,
    /// [in, 3H], gates (r, z, n) side by side.
    input_gates: Linear,
    /// [H, 3H].
    hidden_gates: Linear,
    output_norm: LayerNorm,
    #[module(skip)]
    hidden: usize,
    #[module(skip)]
    input: usize,
}

impl CommitGru {
    /// Declares the `gru.*` tensors (PyTorch layout) against `params` and builds the GRU.
    pub fn new(cfg: &HyperConfig, params: &mut impl ParamSource, device: &Device) -> Result<Self, ModelError> {
        let (d, h) = (cfg.input_dim, cfg.gru_hidden);
        let diff_proj = layers::linear(params, "gru.diff_proj.0", d, h, device)?;
        let diff_norm = layers::layer_norm(params, "gru.diff_proj.1", h, device)?;
        let init_proj = layers::linear(params, "gru.repo_init_proj.0", d, h, device)?;
        let init_norm = layers::layer_norm(params, "gru.repo_init_proj.2", h, device)?;
        // nn.GRU packs its gates [3H, in] in (r, z, n) order and initialises them with bound
        // 1/√H; transposed to burn's [in, 3H], the gates are column ranges [0,H), [H,2H), [2H,3H).
        let gates = Init::Uniform { bound: 1.0 / (h as f32).sqrt() };
        let input_gates = layers::linear_named(params, "gru.gru.weight_ih_l0", "gru.gru.bias_ih_l0", h, 3 * h, gates, device)?;
        let hidden_gates = layers::linear_named(params, "gru.gru.weight_hh_l0", "gru.gru.bias_hh_l0", h, 3 * h, gates, device)?;
        let output_norm = layers::layer_norm(params, "gru.output_norm", h, device)?;
        Ok(CommitGru { diff_proj, diff_norm, init_proj, init_norm, input_gates, hidden_gates, output_norm, hidden: h, input: d })
    }

    pub fn hidden_size(&self) -> usize {
        self.hidden
    }

    /// h₀ from a snapshot embedding [input_dim].
    pub fn initial_state(&self, snapshot: &[f32], device: &Device) -> Vec<f32> {
        let x = tensor2(snapshot.to_vec(), [1, self.input], device);
        host(self.init_norm.forward(gelu(self.init_proj.forward(x))))
    }

    /// Advances `h` over `diffs` ([T, input_dim] row-major) and returns h_T. `first_step`
    /// is the number of GRU steps the state has taken since its snapshot.
    ///
    /// The input side (diff projection, norm, input gates) is computed for blocks of
    /// [`INPUT_BLOCK`] steps at once: a catch-up reads those weights once per block rather
    /// than once per commit. Matrix kernels may sum in a different order for different
    /// shapes or rows, and the state must come out bit-identical however the commits arrived
    /// (one by one through hooks, in a burst, or replayed by `state rebuild`), so every
    /// block has the same shape and step `s` always sits at row `s % INPUT_BLOCK`, the rows
    /// of steps not in this call left zero.
    pub fn advance(&self, h: &[f32], diffs: &[f32], first_step: u64, device: &Device) -> Vec<f32> {
        let t = diffs.len() / self.input;
        if t == 0 {
            return h.to_vec();
        }
        let (d, hd) = (self.input, self.hidden);
        let mut state = tensor2(h.to_vec(), [1, hd], device);
        let mut done = 0;
        while done < t {
            let row0 = ((first_step + done as u64) % INPUT_BLOCK as u64) as usize;
            let n = (INPUT_BLOCK - row0).min(t - done);
            let mut block = vec![0.0f32; INPUT_BLOCK * d];
            block[row0 * d..(row0 + n) * d].copy_from_slice(&diffs[done * d..(done + n) * d]);
            let x = self.diff_norm.forward(self.diff_proj.forward(tensor2(block, [INPUT_BLOCK, d], device)));
            let gi = self.input_gates.forward(x);
            for row in row0..row0 + n {
                let i_r = gi.clone().slice([row..row + 1, 0..hd]);
                let i_z = gi.clone().slice([row..row + 1, hd..2 * hd]);
                let i_n = gi.clone().slice([row..row + 1, 2 * hd..3 * hd]);
                let gh = self.hidden_gates.forward(state.clone());
                let h_r = gh.clone().slice([0..1, 0..hd]);
                let h_z = gh.clone().slice([0..1, hd..2 * hd]);
                let h_n = gh.slice([0..1, 2 * hd..3 * hd]);
                let r = sigmoid(i_r + h_r);
                let z = sigmoid(i_z + h_z);
                let n = (i_n + r * h_n).tanh();
                // h' = (1 - z) ⊙ n + z ⊙ h = n + z ⊙ (h - n)
                state = n.clone() + z * (state - n);
            }
            done += n;
        }
        host(state)
    }

    /// ctx = output_norm(h), shaped for the head.
    pub fn context(&self, h: &[f32], device: &Device) -> Tensor<2> {
        self.output_norm.forward(tensor2(h.to_vec(), [1, self.hidden], device))
    }
}
