//! The optimiser as the paper trains with it (§3): AdamW with decoupled weight decay 0.01,
//! a linear warm-up then a cosine decay, gradients clipped by their global norm, and
//! gradients accumulated over micro-batches before each step.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;

use crate::nn::tensor::host;

/// Warm-up from 0 to `peak` over `warmup` steps, then a cosine from `peak` to 0 at `total`
/// (Hugging Face's `get_cosine_schedule_with_warmup`, which the authors' trainers use).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    pub peak: f64,
    pub warmup: usize,
    pub total: usize,
}

impl Schedule {
    /// The rate for optimiser step `step` (0-based).
    pub fn rate(&self, step: usize) -> f64 {
        if step < self.warmup {
            return self.peak * step as f64 / self.warmup.max(1) as f64;
        }
        let progress = (step - self.warmup) as f64 / (self.total.saturating_sub(self.warmup)).max(1) as f64;
        self.peak * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
    }
}

/// Settings of [`Optimiser`].
#[derive(Debug, Clone, PartialEq)]
pub struct OptimSettings {
    pub schedule: Schedule,
    pub weight_decay: f32,
    /// Global gradient-norm bound (PyTorch's `clip_grad_norm_`); 0 turns clipping off.
    pub clip_norm: f32,
    /// Micro-batches whose gradients are summed before a step.
    pub accumulate: usize,
}

impl OptimSettings {
    /// The paper's settings around a schedule: weight decay 0.01, clipping at 1.0, 8
    /// micro-batches a step.
    pub fn paper(schedule: Schedule) -> Self {
        OptimSettings { schedule, weight_decay: 0.01, clip_norm: 1.0, accumulate: 8 }
    }
}

/// AdamW driven by [`OptimSettings`]: micro-batch gradients go in with
/// [`Optimiser::accumulate`]; every `accumulate` of them make one step.
pub struct Optimiser<M: Module> {
    settings: OptimSettings,
    adamw: ModuleOptimizer,
    pending: GradientsAccumulator<M>,
    micro: usize,
    /// Optimiser steps taken.
    pub steps: usize,
}

/// What one optimiser step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    pub rate: f64,
    /// The global gradient norm before clipping.
    pub grad_norm: f32,
}

impl<M: Module> Optimiser<M> {
    pub fn new(settings: OptimSettings) -> Self {
        // PyTorch's AdamW epsilon (burn defaults to 1e-5).
        let adamw = AdamWConfig::new().with_weight_decay(settings.weight_decay).with_epsilon(1e-8).init();
        Optimiser { settings, adamw, pending: GradientsAccumulator::new(), micro: 0, steps: 0 }
    }

    /// Adds one micro-batch's gradients (already divided by the number of micro-batches, if
    /// the caller wants a mean). Returns the model, stepped when this micro-batch completed
    /// a step.
    pub fn accumulate(&mut self, model: M, grads: GradientsParams) -> (M, Option<StepReport>) {
        self.pending.accumulate(&model, grads);
        self.micro += 1;
        if self.micro < self.settings.accumulate.max(1) {
            return (model, None);
        }
        self.micro = 0;
        let mut grads = self.pending.grads();
        let grad_norm = global_norm(&model, &grads);
        if self.settings.clip_norm > 0.0 && grad_norm > self.settings.clip_norm {
            scale_grads(&model, &mut grads, self.settings.clip_norm / (grad_norm + 1e-6));
        }
        let rate = self.settings.schedule.rate(self.steps);
        let model = self.adamw.step(rate, model, grads);
        self.steps += 1;
        (model, Some(StepReport { rate, grad_norm }))
    }
}

impl<M: Module> Optimiser<M> {
    /// AdamW's moments and step counts, as bytes (burn's burnpack), keyed by parameter id;
    /// `None` between the micro-batches of a step, where a resumed run could not continue.
    pub fn state_bytes(&self) -> Result<Option<Vec<u8>>, String> {
        if self.micro != 0 {
            return Ok(None);
        }
        self.adamw.into_bytes().map(|b| Some(b.to_vec())).map_err(|e| e.to_string())
    }

    /// The optimiser `state_bytes` described, after `steps` steps.
    pub fn restore(settings: OptimSettings, bytes: &[u8], steps: usize) -> Result<Self, String> {
        let mut restored = Self::new(settings);
        restored.adamw = restored.adamw.from_bytes(burn::tensor::Bytes::from_bytes_vec(bytes.to_vec())).map_err(|e| e.to_string())?;
        restored.steps = steps;
        Ok(restored)
    }
}

/// √(Σ over every parameter of ‖grad‖²), as `torch.nn.utils.clip_grad_norm_` computes it.
pub fn global_norm<M: Module>(model: &M, grads: &GradientsParams) -> f32 {
    struct SumSquares<'a> {
        grads: &'a GradientsParams,
        total: f64,
    }
    impl ModuleVisitor for SumSquares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                self.total += host(g).iter().map(|&v| (v as f64) * (v as f64)).sum::<f64>();
            }
        }
    }
    let mut sum = SumSquares { grads, total: 0.0 };
    model.visit(&mut sum);
    sum.total.sqrt() as f32
}

/// Multiplies every gradient by `factor`.
fn scale_grads<M: Module>(model: &M, grads: &mut GradientsParams, factor: f32) {
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f32,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads.register::<D>(param.id, g.mul_scalar(self.factor as f64));
            }
        }
    }
    model.visit(&mut Scale { grads, factor });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_warms_up_then_follows_a_cosine_to_zero() {
        let s = Schedule { peak: 1e-4, warmup: 10, total: 110 };
        assert_eq!(s.rate(0), 0.0);
        assert!((s.rate(5) - 5e-5).abs() < 1e-12);
        assert!((s.rate(10) - 1e-4).abs() < 1e-12);
        // Halfway through the decay: cos(π/2) = 0, half the peak.
        assert!((s.rate(60) - 5e-5).abs() < 1e-12);
        assert!(s.rate(110).abs() < 1e-12 && s.rate(500).abs() < 1e-12);
        assert!(s.rate(30) > s.rate(31));
    }
}
