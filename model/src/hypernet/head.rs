//! The Code2LoRA head: repository (or GRU) context → one (A, B) pair per projection type.
//!
//! trunk: Linear(D→H) GELU Linear(H→H) GELU, then z = normalize(z)·√H;
//! A_t = tanh(heads_A[t](z)).view(r, in_t) · clamp(exp(log_scale_A[t]), 1e-5, 0.3), B_t alike
//! with shape (out_t, r).

use burn::module::Module;
use burn::nn::Linear;
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Tensor};

use crate::nn::{few_rows, layers, tanh};
use crate::nn::params::{Init, ParamSource};
use crate::nn::tensor::{host, tensor2};
use crate::{BaseModelShapes, HyperConfig, ModelError, ModuleType};

/// One projection type's factors, row-major: `a` is [r, in], `b` is [out, r].
#[derive(Debug, Clone)]
pub struct LoraPair {
    pub module: ModuleType,
    pub in_features: usize,
    pub out_features: usize,
    pub a: Vec<f32>,
    pub b: Vec<f32>,
}

#[derive(Module, Debug)]
pub struct Code2LoraHead {
    trunk_in: Linear,
    trunk_mid: Linear,
    heads_a: Vec<Linear>,
    heads_b: Vec<Linear>,
    /// Already exponentiated and clamped, one per type: (scale_A, scale_B).
    #[module(skip)]
    scales: Vec<(f32, f32)>,
    #[module(skip)]
    types: Vec<(ModuleType, usize, usize)>,
    #[module(skip)]
    rank: usize,
    /// Multi-task table [num_tasks, task_dim], host side; the chosen row is appended to ctx.
    #[module(skip)]
    task_row: Option<Vec<f32>>,
}

/// `z · W + b` for the one-row context: the heads are one huge matrix-vector product
/// (2.72 GB at the paper's size), so each weight is streamed once on every core
/// ([`few_rows`]); burn's matmul where that does not apply (another device).
fn streamed(head: &Linear, z: &Tensor<2>) -> Tensor<2> {
    let [rows, h] = z.dims();
    let bias = head.bias.as_ref().map(|b| b.val());
    match few_rows::x_w(&z.clone().reshape([1, rows, h]), &head.weight.val(), bias.as_ref()) {
        Some(y) => {
            let [_, _, out] = y.dims();
            y.reshape([rows, out])
        }
        None => head.forward(z.clone()),
    }
}

/// `tanh(head(z)) · scale` on the host. On the CPU the tanh and the scale are applied by
/// the product's own tasks as each block of outputs is summed, instead of in two passes on
/// one thread; the tanh is ours ([`tanh`]), vectorised and the same on every device.
fn streamed_factor(head: &Linear, z: &Tensor<2>, scale: f32) -> Vec<f32> {
    let [rows, h] = z.dims();
    let bias = head.bias.as_ref().map(|b| b.val());
    let activation = move |run: &mut [f32]| tanh::tanh_scaled_in_place(run, scale);
    match few_rows::x_w_map(&z.clone().reshape([1, rows, h]), &head.weight.val(), bias.as_ref(), Some(&activation)) {
        Some(y) => y,
        None => {
            let mut y = host(streamed(head, z));
            activation(&mut y);
            y
        }
    }
}

/// The trunk: Linear GELU Linear GELU, then F.normalize (z / max(‖z‖, 1e-12)) × √H. Shared
/// by the serving head and its trainable twin ([`crate::train`]).
pub(crate) fn trunk(trunk_in: &Linear, trunk_mid: &Linear, ctx: Tensor<2>) -> Tensor<2> {
    let z = gelu(trunk_in.forward(ctx));
    let z = gelu(trunk_mid.forward(z));
    let [_, hidden] = z.dims();
    let norm = z.clone().powf_scalar(2.0).sum_dim(1).sqrt().clamp_min(1e-12);
    z.div(norm).mul_scalar((hidden as f64).sqrt())
}

/// Initial `log_scale_*`: scales start at exp(-3.5) ≈ 0.03.
pub(crate) const LOG_SCALE_INIT: f32 = -3.5;

/// The range `exp(log_scale)` is clamped to.
pub(crate) const SCALE_RANGE: (f32, f32) = (1e-5, 0.3);

/// The `head.*` tensors' names (the released checkpoints' `head_state` keys), shared with
/// the trainable twin in [`crate::train`].
pub(crate) mod names {
    use crate::ModuleType;

    pub const TRUNK_IN: &str = "head.trunk.0";
    pub const TRUNK_MID: &str = "head.trunk.2";
    pub const TASK_EMBEDDING: &str = "head.task_embedding.weight";

    pub fn head_a(t: ModuleType) -> String {
        format!("head.heads_A.{}", t.peft_name())
    }
    pub fn head_b(t: ModuleType) -> String {
        format!("head.heads_B.{}", t.peft_name())
    }
    pub fn log_scale_a(t: ModuleType) -> String {
        format!("head.log_scale_A.{}", t.peft_name())
    }
    pub fn log_scale_b(t: ModuleType) -> String {
        format!("head.log_scale_B.{}", t.peft_name())
    }
}

impl Code2LoraHead {
    /// Declares the `head.*` tensors (PyTorch layout) against `params` and builds the head,
    /// keeping row `task` of a multi-task table.
    pub fn new(
        cfg: &HyperConfig,
        base: &BaseModelShapes,
        task: usize,
        params: &mut impl ParamSource,
        device: &Device,
    ) -> Result<Self, ModelError> {
        let h = cfg.head_hidden;
        let r = cfg.rank;
        let trunk_in = layers::linear(params, names::TRUNK_IN, cfg.head_input_dim(), h, device)?;
        let trunk_mid = layers::linear(params, names::TRUNK_MID, h, h, device)?;
        let mut heads_a = Vec::new();
        let mut heads_b = Vec::new();
        let mut scales = Vec::new();
        let mut types = Vec::new();
        for &t in &cfg.module_types {
            let (i, o) = base.in_out(t);
            heads_a.push(layers::linear(params, &names::head_a(t), h, r * i, device)?);
            heads_b.push(layers::linear(params, &names::head_b(t), h, o * r, device)?);
            let la = layers::scalar(params, &names::log_scale_a(t), Init::Constant(LOG_SCALE_INIT))?;
            let lb = layers::scalar(params, &names::log_scale_b(t), Init::Constant(LOG_SCALE_INIT))?;
            let (lo, hi) = SCALE_RANGE;
            scales.push((la.exp().clamp(lo, hi), lb.exp().clamp(lo, hi)));
            types.push((t, i, o));
        }
        let task_row = if cfg.num_tasks > 0 {
            let table = params.tensor(names::TASK_EMBEDDING, &[cfg.num_tasks, cfg.task_dim], Init::Uniform { bound: 1.0 })?;
            if task >= cfg.num_tasks {
                return Err(ModelError::Checkpoint {
                    path: "<config>".into(),
                    reason: format!("task index {task} but the checkpoint has {} tasks", cfg.num_tasks),
                });
            }
            Some(table[task * cfg.task_dim..(task + 1) * cfg.task_dim].to_vec())
        } else {
            None
        };
        Ok(Code2LoraHead { trunk_in, trunk_mid, heads_a, heads_b, scales, types, rank: r, task_row })
    }

    /// ctx: [1, gru_hidden] (Evo: output_norm(h_t); Static: the snapshot vector).
    pub fn forward(&self, ctx: Tensor<2>) -> Vec<LoraPair> {
        let mut pairs = Vec::with_capacity(self.types.len());
        let _ = self.forward_each(ctx, |pair| {
            pairs.push(pair);
            Ok::<(), std::convert::Infallible>(())
        });
        self.in_layout_order(&mut pairs);
        pairs
    }

    /// Each projection type: (module, in features, out features), in module order (the
    /// order of the adapter's files and of [`Code2LoraHead::forward`]'s pairs).
    pub fn layout(&self) -> &[(ModuleType, usize, usize)] {
        &self.types
    }

    /// The order [`Code2LoraHead::forward_each`] makes the types in: the largest pairs first
    /// (module order among equals). A pair's file is written while the next is computed,
    /// so what is left to write once the head is done is the last, smallest pair (for
    /// Qwen2.5-Coder-1.5B 3 MB of k/v factors instead of 19 MB of up_proj's).
    pub fn production_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.types.len()).collect();
        order.sort_by_key(|&k| std::cmp::Reverse(self.types[k].1 + self.types[k].2));
        order
    }

    /// Sorts pairs made by [`Code2LoraHead::forward_each`] into module order.
    pub fn in_layout_order(&self, pairs: &mut [LoraPair]) {
        pairs.sort_by_key(|p| self.types.iter().position(|t| t.0 == p.module));
    }

    /// [`Code2LoraHead::forward`], handing each type's pair to `each` as soon as it is made
    /// (so its file can be written while the next is computed), in
    /// [`Code2LoraHead::production_order`]; stops at `each`'s first error.
    pub fn forward_each<E>(&self, ctx: Tensor<2>, mut each: impl FnMut(LoraPair) -> Result<(), E>) -> Result<(), E> {
        let device = ctx.device();
        let ctx = match &self.task_row {
            Some(row) => Tensor::cat(vec![ctx, tensor2(row.clone(), [1, row.len()], &device)], 1),
            None => ctx,
        };
        let z = trunk(&self.trunk_in, &self.trunk_mid, ctx);
        let r = self.rank;
        for k in self.production_order() {
            let (module, i, o) = self.types[k];
            let (sa, sb) = self.scales[k];
            let a = streamed_factor(&self.heads_a[k], &z, sa);
            let b = streamed_factor(&self.heads_b[k], &z, sb);
            debug_assert_eq!(a.len(), r * i);
            debug_assert_eq!(b.len(), o * r);
            each(LoraPair { module, in_features: i, out_features: o, a, b })?;
        }
        Ok(())
    }
}
