//! The fidelity check of an adapter directory against a loaded base model: does it load the
//! way PEFT and vLLM load it, does the file hold what the in-memory adapter holds, and does it
//! change the model at all. vLLM serves the base model silently when names do not match, and
//! an all-zero B does the same by construction; both pass every shape check, so only the
//! logits tell.

use std::path::Path;

use serde::Serialize;

use crate::lm::LanguageModel;
use crate::transformer::Lora;
use crate::{ModelError, ModuleType};

/// Prompts the movement is measured on when the caller gives none: test code, as adapters
/// are trained for.
pub const DEFAULT_PROMPTS: &[&str] = &[
    "import pytest\n\n\ndef test_parse_number():\n    assert parse(\"12\") == ",
    "class TestConfig(unittest.TestCase):\n    def test_defaults(self):\n        cfg = Config()\n        self.assertEqual(cfg.retries, ",
];

/// Below this largest logit change an adapter counts as doing nothing.
pub const MIN_MOVEMENT: f32 = 1e-5;

#[derive(Debug, Clone, Serialize)]
pub struct Movement {
    /// Largest |Δlogit| over every position and vocabulary entry.
    pub max_abs_logit_change: f32,
    /// Mean over positions of KL(adapted ‖ base), in nats.
    pub mean_kl: f64,
    /// Share of positions whose most likely next token is the same with and without it.
    pub top1_agreement: f64,
    pub positions: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub adapter: String,
    pub base: String,
    pub rank: usize,
    pub lora_alpha: f64,
    pub scale: f32,
    pub target_modules: Vec<&'static str>,
    pub adapted_layers: usize,
    pub base_layers: usize,
    /// `base_model_name_or_path` of the adapter, and whether it names this base.
    pub base_model_name_or_path: Option<String>,
    /// Factors that are all zero, by tensor name (B: the projection is not adapted).
    pub zero_factors: Vec<String>,
    /// Largest |Δlogit| between the file-loaded adapter and the in-memory one, relative to
    /// the largest logit; absent when there was no in-memory adapter to compare with.
    pub file_vs_memory: Option<f32>,
    pub movement: Movement,
    /// Why it failed; empty when it passed.
    pub failures: Vec<String>,
    /// What a server would trip over without the adapter being wrong.
    pub warnings: Vec<String>,
}

impl VerifyReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Checks `dir` against `lm`. `in_memory` is the adapter as the hypernetwork handed it over
/// (the daemon has it at publish time); `tolerance` bounds `file_vs_memory` (the file's
/// dtype sets it: f32 files hold the same numbers, bf16 ones round them). A directory that
/// does not load is an error naming the tensor or setting; a loaded one that fails a check
/// is a report with failures.
pub fn verify(lm: &LanguageModel, dir: &Path, in_memory: Option<&Lora>, prompts: &[Vec<u32>], tolerance: f32) -> Result<VerifyReport, ModelError> {
    let (adapter, lora) = lm.load_adapter(dir)?;
    let mut failures = Vec::new();
    let mut warnings = Vec::new();
    let zero_factors: Vec<String> = adapter
        .factors
        .iter()
        .flat_map(|(&(layer, module), f)| {
            let key = |c| crate::peft::tensor_key(layer, module, c);
            let mut zeros = Vec::new();
            if f.a.iter().all(|&v| v == 0.0) {
                zeros.push(key('A'));
            }
            if f.b.iter().all(|&v| v == 0.0) {
                zeros.push(key('B'));
            }
            zeros
        })
        .collect();
    if !zero_factors.is_empty() {
        let shown: Vec<&str> = zero_factors.iter().take(3).map(String::as_str).collect();
        let more = if zero_factors.len() > 3 { format!(" and {} more", zero_factors.len() - 3) } else { String::new() };
        warnings.push(format!("{} factors are all zero, so their projections are not adapted: {}{more}", zero_factors.len(), shown.join(", ")));
    }
    let base_name = adapter.config.base_model_name_or_path.clone();
    match &base_name {
        Some(name) if *name != lm.shapes.name && Path::new(name) != lm.dir() => warnings.push(format!(
            "base_model_name_or_path is `{name}`, the base here is `{}`: vLLM's filesystem resolver refuses an adapter whose base name differs from the served model's",
            lm.shapes.name
        )),
        None => warnings.push("adapter_config.json has no base_model_name_or_path".into()),
        _ => {}
    }
    let mut movement = Movement { max_abs_logit_change: 0.0, mean_kl: 0.0, top1_agreement: 0.0, positions: 0 };
    let mut file_vs_memory: Option<f32> = None;
    let vocab = lm.model.config().vocab_size;
    for ids in prompts {
        let base = lm.logits(ids, None)?;
        let adapted = lm.logits(ids, Some(&lora))?;
        if let Some(memory) = in_memory {
            let mem = lm.logits(ids, Some(memory))?;
            let scale = mem.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
            let worst = mem.iter().zip(&adapted).fold(0f32, |m, (a, b)| m.max((a - b).abs())) / scale;
            file_vs_memory = Some(file_vs_memory.unwrap_or(0.0).max(worst));
        }
        for (b, a) in base.chunks_exact(vocab).zip(adapted.chunks_exact(vocab)) {
            let change = b.iter().zip(a).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            movement.max_abs_logit_change = movement.max_abs_logit_change.max(change);
            movement.mean_kl += kl(a, b);
            movement.top1_agreement += f64::from(u8::from(argmax(a) == argmax(b)));
            movement.positions += 1;
        }
    }
    if movement.positions > 0 {
        movement.mean_kl /= movement.positions as f64;
        movement.top1_agreement /= movement.positions as f64;
    }
    if movement.max_abs_logit_change < MIN_MOVEMENT {
        failures.push(format!(
            "the adapter does not move the logits (largest change {:.1e} over {} positions): it serves as the base model",
            movement.max_abs_logit_change, movement.positions
        ));
    }
    if let Some(diff) = file_vs_memory
        && (diff.is_nan() || diff > tolerance)
    {
        failures.push(format!("the file's logits differ from the in-memory adapter's by {diff:.2e} of the largest logit (tolerance {tolerance:.0e})"));
    }
    let mut targets: Vec<ModuleType> = adapter.factors.keys().map(|&(_, m)| m).collect();
    targets.sort();
    targets.dedup();
    let adapted_layers = {
        let mut layers: Vec<usize> = adapter.factors.keys().map(|&(l, _)| l).collect();
        layers.dedup();
        layers.len()
    };
    Ok(VerifyReport {
        adapter: dir.display().to_string(),
        base: lm.dir().display().to_string(),
        rank: adapter.config.rank,
        lora_alpha: adapter.config.alpha,
        scale: adapter.config.scale(),
        target_modules: targets.iter().map(|m| m.peft_name()).collect(),
        adapted_layers,
        base_layers: lm.shapes.num_hidden_layers,
        base_model_name_or_path: base_name,
        zero_factors,
        file_vs_memory,
        movement,
        failures,
        warnings,
    })
}

/// KL(p ‖ q) of the softmaxes of two logit rows, in nats, computed in f64.
fn kl(p_logits: &[f32], q_logits: &[f32]) -> f64 {
    fn log_softmax(x: &[f32]) -> Vec<f64> {
        let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
        let sum: f64 = x.iter().map(|&v| (v as f64 - max).exp()).sum();
        let log_z = max + sum.ln();
        x.iter().map(|&v| v as f64 - log_z).collect()
    }
    log_softmax(p_logits).into_iter().zip(log_softmax(q_logits)).map(|(lp, lq)| lp.exp() * (lp - lq)).sum::<f64>().max(0.0)
}

fn argmax(x: &[f32]) -> usize {
    x.iter().enumerate().fold(0, |best, (i, &v)| if v > x[best] { i } else { best })
}
