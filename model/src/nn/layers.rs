//! PyTorch layers as burn modules, each parameter declared once against a [`ParamSource`]
//! in PyTorch's layout and with PyTorch's default initialisation.

use burn::module::Param;
use burn::nn::{Embedding, LayerNorm, LayerNormConfig, Linear, RmsNorm, RmsNormConfig};
use burn::tensor::Device;

use crate::ModelError;
use crate::nn::params::{Init, ParamSource};
use crate::nn::tensor::{tensor1, tensor2, transpose};

/// `nn.Linear(d_in, d_out)`: `{prefix}.weight` `[out, in]` and `{prefix}.bias` `[out]`,
/// both uniform with bound 1/√d_in.
pub fn linear(params: &mut impl ParamSource, prefix: &str, d_in: usize, d_out: usize, device: &Device) -> Result<Linear, ModelError> {
    let (weight, bias) = (format!("{prefix}.weight"), format!("{prefix}.bias"));
    linear_named(params, &weight, &bias, d_in, d_out, Init::fan_in(d_in), device)
}

/// A Linear stored PyTorch's way (weight `[out, in]`, bias `[out]`) under other names and
/// initialisation, as `nn.GRU` stores its packed gates.
pub fn linear_named(
    params: &mut impl ParamSource,
    weight_name: &str,
    bias_name: &str,
    d_in: usize,
    d_out: usize,
    init: Init,
    device: &Device,
) -> Result<Linear, ModelError> {
    let (weight, bias) = linear_values(params, weight_name, bias_name, d_in, d_out, init)?;
    Ok(Linear {
        weight: Param::from_tensor(tensor2(weight, [d_in, d_out], device)),
        bias: Some(Param::from_tensor(tensor1(bias, device))),
    })
}

/// The tensors of a Linear stored PyTorch's way, as host values: the weight transposed to
/// `[in, out]` (burn's layout, and the host kernels'), the bias `[out]`.
pub(crate) fn linear_values(
    params: &mut impl ParamSource,
    weight_name: &str,
    bias_name: &str,
    d_in: usize,
    d_out: usize,
    init: Init,
) -> Result<(Vec<f32>, Vec<f32>), ModelError> {
    let weight = params.tensor(weight_name, &[d_out, d_in], init)?;
    let bias = params.tensor(bias_name, &[d_out], init)?;
    Ok((transpose(&weight, d_out, d_in), bias))
}

/// PyTorch's default `nn.LayerNorm` epsilon.
pub const LAYER_NORM_EPS: f64 = 1e-5;

/// `nn.LayerNorm(dim)`'s tensors as host values: `{prefix}.weight` (gamma, initially ones)
/// and `{prefix}.bias` (beta, zeros).
pub(crate) fn layer_norm_values(params: &mut impl ParamSource, prefix: &str, dim: usize) -> Result<(Vec<f32>, Vec<f32>), ModelError> {
    let gamma = params.tensor(&format!("{prefix}.weight"), &[dim], Init::Constant(1.0))?;
    let beta = params.tensor(&format!("{prefix}.bias"), &[dim], Init::Constant(0.0))?;
    Ok((gamma, beta))
}

/// `nn.LayerNorm(dim)` ([`LAYER_NORM_EPS`]), its tensors from [`layer_norm_values`].
pub fn layer_norm(params: &mut impl ParamSource, prefix: &str, dim: usize, device: &Device) -> Result<LayerNorm, ModelError> {
    let (gamma, beta) = layer_norm_values(params, prefix, dim)?;
    let mut ln = LayerNormConfig::new(dim).with_epsilon(LAYER_NORM_EPS).init(device);
    ln.gamma = Param::from_tensor(tensor1(gamma, device));
    ln.beta = Some(Param::from_tensor(tensor1(beta, device)));
    Ok(ln)
}

/// A single-value parameter (PyTorch shape []).
pub fn scalar(params: &mut impl ParamSource, name: &str, init: Init) -> Result<f32, ModelError> {
    Ok(params.tensor(name, &[], init)?[0])
}

/// A Linear with or without its bias (`{prefix}.weight` `[out, in]`, `{prefix}.bias` `[out]`).
pub fn linear_maybe_bias(params: &mut impl ParamSource, prefix: &str, d_in: usize, d_out: usize, bias: bool, init: Init, device: &Device) -> Result<Linear, ModelError> {
    let weight = params.tensor(&format!("{prefix}.weight"), &[d_out, d_in], init)?;
    let bias = if bias { Some(params.tensor(&format!("{prefix}.bias"), &[d_out], Init::Constant(0.0))?) } else { None };
    Ok(Linear {
        weight: Param::from_tensor(tensor2(transpose(&weight, d_out, d_in), [d_in, d_out], device)),
        bias: bias.map(|b| Param::from_tensor(tensor1(b, device))),
    })
}

/// An RMSNorm over the last dimension: `{name}` `[dim]`, initially ones.
pub fn rms_norm(params: &mut impl ParamSource, name: &str, dim: usize, eps: f64, device: &Device) -> Result<RmsNorm, ModelError> {
    let gamma = params.tensor(name, &[dim], Init::Constant(1.0))?;
    let mut norm = RmsNormConfig::new(dim).with_epsilon(eps).init(device);
    norm.gamma = Param::from_tensor(tensor1(gamma, device));
    Ok(norm)
}

/// `nn.Embedding(vocab, dim)`: `{name}` `[vocab, dim]`, the same layout in PyTorch and burn.
pub fn embedding(params: &mut impl ParamSource, name: &str, vocab: usize, dim: usize, init: Init, device: &Device) -> Result<Embedding, ModelError> {
    let weight = params.tensor(name, &[vocab, dim], init)?;
    Ok(Embedding { weight: Param::from_tensor(tensor2(weight, [vocab, dim], device)) })
}
