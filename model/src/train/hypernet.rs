//! The hypernetwork as a differentiable burn module: the same tensors, names and arithmetic
//! as [`crate::Hypernetwork`], but every step is a burn op so gradients reach every
//! parameter. The serving model runs the GRU on fixed-order host kernels (bit-identical
//! states) and streams the head; this twin trades that for autodiff. Both are built from the
//! same [`Weights`] map and [`TrainableHypernet::to_weights`] hands the trained tensors back
//! in the released checkpoints' layout, so a trained model is served by the usual loader.

use burn::module::{Module, Param};
use burn::nn::{LayerNorm, Linear};
use burn::tensor::activation::{gelu, sigmoid};
use burn::tensor::{Device, Tensor};

use crate::hypernet::gru::{self, names as gru_names};
use crate::hypernet::head::{LOG_SCALE_INIT, SCALE_RANGE, names as head_names, trunk};
use crate::nn::Weights;
use crate::nn::layers::{self, linear_named};
use crate::nn::params::{Init, ParamSource};
use crate::nn::tensor::{host, tensor1, tensor2, transpose};
use crate::{Architecture, BaseModelShapes, HyperConfig, ModelError, ModuleType};

/// One projection type's generated factors, still on the (autodiff) device: `a` `[r, in]`,
/// `b` `[out, r]`, PyTorch's layout.
#[derive(Debug, Clone)]
pub struct Factors {
    pub module: ModuleType,
    pub a: Tensor<2>,
    pub b: Tensor<2>,
}

#[derive(Module, Debug)]
pub struct TrainGru {
    diff_proj: Linear,
    diff_norm: LayerNorm,
    init_proj: Linear,
    init_norm: LayerNorm,
    /// `[in, 3H]`, gates (r, z, n) side by side as nn.GRU packs them.
    input_gates: Linear,
    hidden_gates: Linear,
    output_norm: LayerNorm,
    #[module(skip)]
    hidden: usize,
}

impl TrainGru {
    fn new(cfg: &HyperConfig, params: &mut impl ParamSource, device: &Device) -> Result<Self, ModelError> {
        let (d, h) = (cfg.input_dim, cfg.gru_hidden);
        Ok(TrainGru {
            diff_proj: layers::linear(params, gru_names::DIFF_PROJ, d, h, device)?,
            diff_norm: layers::layer_norm(params, gru_names::DIFF_NORM, h, device)?,
            init_proj: layers::linear(params, gru_names::INIT_PROJ, d, h, device)?,
            init_norm: layers::layer_norm(params, gru_names::INIT_NORM, h, device)?,
            input_gates: linear_named(params, gru_names::WEIGHT_IH, gru_names::BIAS_IH, h, 3 * h, gru::gate_init(h), device)?,
            hidden_gates: linear_named(params, gru_names::WEIGHT_HH, gru_names::BIAS_HH, h, 3 * h, gru::gate_init(h), device)?,
            output_norm: layers::layer_norm(params, gru_names::OUTPUT_NORM, h, device)?,
            hidden: h,
        })
    }

    /// h₀ `[1, H]` from a snapshot vector `[1, D]`.
    fn initial_state(&self, snapshot: Tensor<2>) -> Tensor<2> {
        self.init_norm.forward(gelu(self.init_proj.forward(snapshot)))
    }

    /// h `[1, H]` advanced over `diffs` `[T, D]`, one GRU step per row.
    fn advance(&self, h: Tensor<2>, diffs: Tensor<2>) -> Tensor<2> {
        let hd = self.hidden;
        let [steps, _] = diffs.dims();
        let x = self.diff_norm.forward(self.diff_proj.forward(diffs));
        let input_side = self.input_gates.forward(x);
        let mut h = h;
        for t in 0..steps {
            let gi = input_side.clone().slice([t..t + 1, 0..3 * hd]);
            let gh = self.hidden_gates.forward(h.clone());
            let gate = |g: &Tensor<2>, k: usize| g.clone().slice([0..1, k * hd..(k + 1) * hd]);
            let r = sigmoid(gate(&gi, 0) + gate(&gh, 0));
            let z = sigmoid(gate(&gi, 1) + gate(&gh, 1));
            let n = (gate(&gi, 2) + r * gate(&gh, 2)).tanh();
            // h' = (1 − z) ⊙ n + z ⊙ h, written as the serving kernel does.
            h = n.clone() + z * (h - n);
        }
        h
    }

    fn export(&self, w: &mut Weights) {
        export_linear(w, &self.diff_proj, &format!("{}.weight", gru_names::DIFF_PROJ), &format!("{}.bias", gru_names::DIFF_PROJ));
        export_norm(w, &self.diff_norm, gru_names::DIFF_NORM);
        export_linear(w, &self.init_proj, &format!("{}.weight", gru_names::INIT_PROJ), &format!("{}.bias", gru_names::INIT_PROJ));
        export_norm(w, &self.init_norm, gru_names::INIT_NORM);
        export_linear(w, &self.input_gates, gru_names::WEIGHT_IH, gru_names::BIAS_IH);
        export_linear(w, &self.hidden_gates, gru_names::WEIGHT_HH, gru_names::BIAS_HH);
        export_norm(w, &self.output_norm, gru_names::OUTPUT_NORM);
    }
}

#[derive(Module, Debug)]
pub struct TrainHead {
    trunk_in: Linear,
    trunk_mid: Linear,
    heads_a: Vec<Linear>,
    heads_b: Vec<Linear>,
    /// `[1]` each: PyTorch's scalar `log_scale_*`.
    log_scale_a: Vec<Param<Tensor<1>>>,
    log_scale_b: Vec<Param<Tensor<1>>>,
    /// `[num_tasks, task_dim]`, when the checkpoint is multi-task.
    task_embedding: Option<Param<Tensor<2>>>,
    #[module(skip)]
    types: Vec<(ModuleType, usize, usize)>,
    #[module(skip)]
    rank: usize,
}

impl TrainHead {
    fn new(cfg: &HyperConfig, base: &BaseModelShapes, params: &mut impl ParamSource, device: &Device) -> Result<Self, ModelError> {
        let (h, r) = (cfg.head_hidden, cfg.rank);
        let mut log_scale = |name: String| -> Result<Param<Tensor<1>>, ModelError> {
            let value = layers::scalar(params, &name, Init::Constant(LOG_SCALE_INIT))?;
            Ok(Param::from_tensor(tensor1(vec![value], device)))
        };
        let (mut log_scale_a, mut log_scale_b) = (Vec::new(), Vec::new());
        for &t in &cfg.module_types {
            log_scale_a.push(log_scale(head_names::log_scale_a(t))?);
            log_scale_b.push(log_scale(head_names::log_scale_b(t))?);
        }
        let mut types = Vec::new();
        let trunk_in = layers::linear(params, head_names::TRUNK_IN, cfg.head_input_dim(), h, device)?;
        let trunk_mid = layers::linear(params, head_names::TRUNK_MID, h, h, device)?;
        let (mut heads_a, mut heads_b) = (Vec::new(), Vec::new());
        for &t in &cfg.module_types {
            let (i, o) = base.in_out(t);
            heads_a.push(layers::linear(params, &head_names::head_a(t), h, r * i, device)?);
            heads_b.push(layers::linear(params, &head_names::head_b(t), h, o * r, device)?);
            types.push((t, i, o));
        }
        let task_embedding = if cfg.num_tasks > 0 {
            let table = params.tensor(head_names::TASK_EMBEDDING, &[cfg.num_tasks, cfg.task_dim], Init::Uniform { bound: 1.0 })?;
            Some(Param::from_tensor(tensor2(table, [cfg.num_tasks, cfg.task_dim], device)))
        } else {
            None
        };
        Ok(TrainHead { trunk_in, trunk_mid, heads_a, heads_b, log_scale_a, log_scale_b, task_embedding, types, rank: r })
    }

    /// The width of the context the trunk takes, without the task row.
    fn input_dim(&self) -> usize {
        let task = self.task_embedding.as_ref().map_or(0, |t| t.dims()[1]);
        self.trunk_in.weight.dims()[0] - task
    }

    /// The factors for contexts `[1, gru_hidden]` (one repository), task row `task`.
    fn forward(&self, ctx: Tensor<2>, task: usize) -> Vec<Factors> {
        let ctx = match &self.task_embedding {
            Some(table) => {
                let [_, dim] = table.dims();
                Tensor::cat(vec![ctx, table.val().slice([task..task + 1, 0..dim])], 1)
            }
            None => ctx,
        };
        let z = trunk(&self.trunk_in, &self.trunk_mid, ctx);
        let (lo, hi) = SCALE_RANGE;
        let r = self.rank;
        self.types
            .iter()
            .enumerate()
            .map(|(k, &(module, i, o))| {
                let scale_a = self.log_scale_a[k].val().exp().clamp(lo, hi).reshape([1, 1]);
                let scale_b = self.log_scale_b[k].val().exp().clamp(lo, hi).reshape([1, 1]);
                let a = self.heads_a[k].forward(z.clone()).tanh().mul(scale_a).reshape([r, i]);
                let b = self.heads_b[k].forward(z.clone()).tanh().mul(scale_b).reshape([o, r]);
                Factors { module, a, b }
            })
            .collect()
    }

    fn export(&self, w: &mut Weights) {
        export_linear(w, &self.trunk_in, &format!("{}.weight", head_names::TRUNK_IN), &format!("{}.bias", head_names::TRUNK_IN));
        export_linear(w, &self.trunk_mid, &format!("{}.weight", head_names::TRUNK_MID), &format!("{}.bias", head_names::TRUNK_MID));
        for (k, &(t, _, _)) in self.types.iter().enumerate() {
            let (a, b) = (head_names::head_a(t), head_names::head_b(t));
            export_linear(w, &self.heads_a[k], &format!("{a}.weight"), &format!("{a}.bias"));
            export_linear(w, &self.heads_b[k], &format!("{b}.weight"), &format!("{b}.bias"));
            w.insert(head_names::log_scale_a(t), vec![], host(self.log_scale_a[k].val()));
            w.insert(head_names::log_scale_b(t), vec![], host(self.log_scale_b[k].val()));
        }
        if let Some(table) = &self.task_embedding {
            w.insert(head_names::TASK_EMBEDDING, table.dims().to_vec(), host(table.val()));
        }
    }
}

/// burn keeps a Linear's weight `[in, out]`; PyTorch (and the checkpoints) `[out, in]`.
fn export_linear(w: &mut Weights, linear: &Linear, weight: &str, bias: &str) {
    let [d_in, d_out] = linear.weight.dims();
    w.insert(weight, vec![d_out, d_in], transpose(&host(linear.weight.val()), d_in, d_out));
    if let Some(b) = &linear.bias {
        w.insert(bias, vec![d_out], host(b.val()));
    }
}

fn export_norm(w: &mut Weights, norm: &LayerNorm, prefix: &str) {
    w.insert(format!("{prefix}.weight"), norm.gamma.dims().to_vec(), host(norm.gamma.val()));
    if let Some(beta) = &norm.beta {
        w.insert(format!("{prefix}.bias"), beta.dims().to_vec(), host(beta.val()));
    }
}

/// The hypernetwork with every parameter trainable (on an autodiff device).
#[derive(Module, Debug)]
pub struct TrainableHypernet {
    gru: Option<TrainGru>,
    head: TrainHead,
    #[module(skip)]
    task: usize,
}

impl TrainableHypernet {
    /// Builds the model from PyTorch-layout tensors (a checkpoint's, or
    /// [`crate::hypernet::seeded_weights`]); a tensor left over is refused, as
    /// [`crate::Hypernetwork::from_weights`] does.
    pub fn from_weights(cfg: &HyperConfig, base: &BaseModelShapes, architecture: Architecture, task: usize, weights: &mut Weights, device: &Device) -> Result<Self, ModelError> {
        let gru = if architecture.has_gru() { Some(TrainGru::new(cfg, weights, device)?) } else { None };
        let head = TrainHead::new(cfg, base, weights, device)?;
        if let Some(extra) = weights.names().next() {
            return Err(ModelError::UnexpectedTensor { name: extra.into(), architecture: architecture.as_str() });
        }
        if cfg.num_tasks > 0 && task >= cfg.num_tasks {
            return Err(ModelError::Checkpoint { path: "<config>".into(), reason: format!("task index {task} but the model has {} tasks", cfg.num_tasks) });
        }
        Ok(TrainableHypernet { gru, head, task })
    }

    /// Size of a state: the GRU's hidden size (Evo) or the snapshot's (Static).
    pub fn state_dim(&self) -> usize {
        match &self.gru {
            Some(gru) => gru.hidden,
            None => self.head.input_dim(),
        }
    }

    pub fn architecture(&self) -> Architecture {
        if self.gru.is_some() { Architecture::Evo } else { Architecture::Static }
    }

    /// The state a repository starts from, `[1, state]`: h₀ (Evo) or the snapshot (Static).
    pub fn initial_state(&self, snapshot: Tensor<2>) -> Tensor<2> {
        match &self.gru {
            Some(gru) => gru.initial_state(snapshot),
            None => snapshot,
        }
    }

    /// A state advanced over diff vectors `[T, D]`; a Static model's state does not change.
    pub fn advance(&self, state: Tensor<2>, diffs: Tensor<2>) -> Tensor<2> {
        match &self.gru {
            Some(gru) if diffs.dims()[0] > 0 => gru.advance(state, diffs),
            _ => state,
        }
    }

    /// The adapter's factors for a state `[1, state]`.
    pub fn adapter(&self, state: Tensor<2>) -> Vec<Factors> {
        let ctx = match &self.gru {
            Some(gru) => gru.output_norm.forward(state),
            None => state,
        };
        self.head.forward(ctx, self.task)
    }

    /// Every tensor in PyTorch layout under the checkpoint names: what
    /// [`crate::Hypernetwork::from_weights`] and the checkpoint writers take.
    pub fn to_weights(&self) -> Weights {
        let mut w = Weights::default();
        if let Some(gru) = &self.gru {
            gru.export(&mut w);
        }
        self.head.export(&mut w);
        w
    }
}

#[cfg(test)]
mod tests;
