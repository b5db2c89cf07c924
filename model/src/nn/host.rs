//! Layers that run on host vectors with the few-row kernels rather than on burn tensors.
//! Their arithmetic is fixed down to the order of every sum ([`few_rows::product`]), so what
//! they compute has the same bits on any device, core count or vector width, and for a row
//! alone or within a block: the GRU's recurrence, whose results are stored and continued,
//! runs on them.

use crate::ModelError;
use crate::nn::few_rows;
use crate::nn::layers::{self, LAYER_NORM_EPS};
use crate::nn::params::{Init, ParamSource};

/// A Linear stored PyTorch's way (weight `[out, in]`, bias `[out]`), kept as `[in, out]`
/// for the kernels.
pub struct HostLinear {
    weight: Vec<f32>,
    bias: Vec<f32>,
    d_in: usize,
    d_out: usize,
}

impl HostLinear {
    /// `nn.Linear(d_in, d_out)` under `{prefix}.weight` and `{prefix}.bias`, as [`layers::linear`].
    pub fn new(params: &mut impl ParamSource, prefix: &str, d_in: usize, d_out: usize) -> Result<Self, ModelError> {
        Self::named(params, &format!("{prefix}.weight"), &format!("{prefix}.bias"), d_in, d_out, Init::fan_in(d_in))
    }

    /// Under other names and initialisation, as [`layers::linear_named`].
    pub fn named(params: &mut impl ParamSource, weight_name: &str, bias_name: &str, d_in: usize, d_out: usize, init: Init) -> Result<Self, ModelError> {
        let (weight, bias) = layers::linear_values(params, weight_name, bias_name, d_in, d_out, init)?;
        Ok(HostLinear { weight, bias, d_in, d_out })
    }

    /// `x · Wᵀ + b` for `x` `[rows, in]`, row-major.
    pub fn forward(&self, xs: &[f32]) -> Vec<f32> {
        few_rows::product(xs, xs.len() / self.d_in, &self.weight, self.d_out, Some(&self.bias))
    }

    pub fn out_features(&self) -> usize {
        self.d_out
    }
}

impl std::fmt::Debug for HostLinear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HostLinear({} → {})", self.d_in, self.d_out)
    }
}

/// `nn.LayerNorm(dim)`, as [`layers::layer_norm`].
#[derive(Debug)]
pub struct HostLayerNorm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

impl HostLayerNorm {
    pub fn new(params: &mut impl ParamSource, prefix: &str, dim: usize) -> Result<Self, ModelError> {
        let (gamma, beta) = layers::layer_norm_values(params, prefix, dim)?;
        Ok(HostLayerNorm { gamma, beta })
    }

    /// Normalises each row of `xs` in place (biased variance, as PyTorch).
    pub fn forward_rows(&self, xs: &mut [f32]) {
        let dim = self.gamma.len();
        for row in xs.chunks_exact_mut(dim) {
            let mean = row.iter().sum::<f32>() / dim as f32;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / dim as f32;
            let inv = 1.0 / (var + LAYER_NORM_EPS as f32).sqrt();
            for ((v, g), b) in row.iter_mut().zip(&self.gamma).zip(&self.beta) {
                *v = (*v - mean) * inv * g + b;
            }
        }
    }
}
