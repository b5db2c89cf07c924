//! The Evo `CommitGRU`: folds per-commit diff vectors into a repository state.
//!
//! h₀ = LN(GELU(repo_init_proj(snapshot))); x_t = LN(diff_proj(e_t));
//! h_t = GRU(x_t, h_{t-1}) with PyTorch's gate order (r, z, n) and reset applied after the
//! hidden product: n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn)); h' = (1−z)⊙n + z⊙h.
//! ctx = output_norm(h_t) feeds the head.

use burn::nn::{LayerNorm, Linear};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Tensor};

use crate::nn::host::{HostLayerNorm, HostLinear};
use crate::nn::layers;
use crate::nn::params::{Init, ParamSource};
use crate::nn::tensor::{host, tensor2};
use crate::{HyperConfig, ModelError};

/// Steps whose input side is computed together in a catch-up, so those weights are read
/// once per block rather than once per commit. It does not change any bits: the kernels sum
/// each output in the same order for a row alone or within a block.
const INPUT_BLOCK: usize = 16;

/// The `gru.*` tensors' names (the released checkpoints' `gru_state` keys), shared with the
/// trainable twin in [`crate::train`].
pub(crate) mod names {
    pub const DIFF_PROJ: &str = "gru.diff_proj.0";
    pub const DIFF_NORM: &str = "gru.diff_proj.1";
    pub const INIT_PROJ: &str = "gru.repo_init_proj.0";
    pub const INIT_NORM: &str = "gru.repo_init_proj.2";
    pub const WEIGHT_IH: &str = "gru.gru.weight_ih_l0";
    pub const BIAS_IH: &str = "gru.gru.bias_ih_l0";
    pub const WEIGHT_HH: &str = "gru.gru.weight_hh_l0";
    pub const BIAS_HH: &str = "gru.gru.bias_hh_l0";
    pub const OUTPUT_NORM: &str = "gru.output_norm";
}

/// nn.GRU initialises its packed gates with bound 1/√H.
pub(crate) fn gate_init(hidden: usize) -> Init {
    Init::Uniform { bound: 1.0 / (hidden as f32).sqrt() }
}

/// The recurrence (diff projection, its norm, the gates) runs on host vectors with kernels
/// whose arithmetic is fixed ([`crate::nn::host`]): a state is continued across restarts
/// and machines, so it must come out bit-identical however the commits arrived (one by one
/// through hooks, in a burst, or replayed by `state rebuild`) and wherever it ran. h₀ and
/// the output norm, computed once per state or adapter, stay burn modules on the device.
#[derive(Debug)]
pub struct CommitGru {
    diff_proj: HostLinear,
    diff_norm: HostLayerNorm,
    init_proj: Linear,
    init_norm: LayerNorm,
    /// [in, 3H], gates (r, z, n) side by side.
    input_gates: HostLinear,
    /// [H, 3H].
    hidden_gates: HostLinear,
    output_norm: LayerNorm,
    hidden: usize,
    input: usize,
}

impl CommitGru {
    /// Declares the `gru.*` tensors (PyTorch layout) against `params` and builds the GRU.
    pub fn new(cfg: &HyperConfig, params: &mut impl ParamSource, device: &Device) -> Result<Self, ModelError> {
        let (d, h) = (cfg.input_dim, cfg.gru_hidden);
        let diff_proj = HostLinear::new(params, names::DIFF_PROJ, d, h)?;
        let diff_norm = HostLayerNorm::new(params, names::DIFF_NORM, h)?;
        let init_proj = layers::linear(params, names::INIT_PROJ, d, h, device)?;
        let init_norm = layers::layer_norm(params, names::INIT_NORM, h, device)?;
        // nn.GRU packs its gates [3H, in] in (r, z, n) order; transposed to [in, 3H], the
        // gates are column ranges [0,H), [H,2H), [2H,3H).
        let input_gates = HostLinear::named(params, names::WEIGHT_IH, names::BIAS_IH, h, 3 * h, gate_init(h))?;
        let hidden_gates = HostLinear::named(params, names::WEIGHT_HH, names::BIAS_HH, h, 3 * h, gate_init(h))?;
        let output_norm = layers::layer_norm(params, names::OUTPUT_NORM, h, device)?;
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

    /// Advances `h` over `diffs` ([T, input_dim] row-major) and returns h_T.
    pub fn advance(&self, h: &[f32], diffs: &[f32]) -> Vec<f32> {
        let hd = self.hidden;
        debug_assert_eq!(self.hidden_gates.out_features(), 3 * hd);
        let mut state = h.to_vec();
        for block in diffs.chunks(INPUT_BLOCK * self.input) {
            let mut x = self.diff_proj.forward(block);
            self.diff_norm.forward_rows(&mut x);
            let input_side = self.input_gates.forward(&x);
            for gi in input_side.chunks_exact(3 * hd) {
                let gh = self.hidden_gates.forward(&state);
                let (i_r, i_z, i_n) = (&gi[..hd], &gi[hd..2 * hd], &gi[2 * hd..]);
                let (h_r, h_z, h_n) = (&gh[..hd], &gh[hd..2 * hd], &gh[2 * hd..]);
                for j in 0..hd {
                    let r = sigmoid(i_r[j] + h_r[j]);
                    let z = sigmoid(i_z[j] + h_z[j]);
                    let n = (i_n[j] + r * h_n[j]).tanh();
                    // h' = (1 - z) ⊙ n + z ⊙ h = n + z ⊙ (h - n)
                    state[j] = n + z * (state[j] - n);
                }
            }
        }
        state
    }

    /// ctx = output_norm(h), shaped for the head.
    pub fn context(&self, h: &[f32], device: &Device) -> Tensor<2> {
        self.output_norm.forward(tensor2(h.to_vec(), [1, self.hidden], device))
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}
