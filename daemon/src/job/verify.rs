//! `verify_after_publish`: each published adapter checked on the base model as
//! `evolora verify` checks it, against the weights the hypernetwork handed over. The outcome
//! is logged and shown in `status`; a failed check does not withdraw the adapter (it is
//! already served), it says loudly that clients get the base model's behaviour.

use std::path::{Path, PathBuf};
use std::time::Instant;

use evolora_model::peft::AdapterDtype;
use evolora_model::verify::{DEFAULT_PROMPTS, verify};
use evolora_model::{AdapterWeights, LanguageModel, ModelError, select_device};
use evolora_protocol::reply::Verification;
use tracing::{info, warn};

use super::Engine;
use crate::config::Config;

/// The base model, loaded at the first check and kept.
pub(super) struct Verifier {
    dir: PathBuf,
    device: String,
    lm: LanguageModel,
    prompts: Vec<Vec<u32>>,
}

/// How far the file's logits may be from the in-memory adapter's, relative to the largest
/// logit: f32 files hold the same numbers; bf16 and f16 round each factor.
fn tolerance(dtype: AdapterDtype) -> f32 {
    match dtype {
        AdapterDtype::F32 => 1e-5,
        AdapterDtype::F16 => 5e-3,
        AdapterDtype::Bf16 => 3e-2,
    }
}

impl Engine {
    pub(super) fn verify_published(&mut self, cfg: &Config, key: &str, refname: &str, dir: &Path, weights: &AdapterWeights) {
        let started = Instant::now();
        let outcome = self.check(cfg, dir, weights);
        let secs = started.elapsed().as_secs_f64();
        let adapter = dir.display().to_string();
        let verification = match outcome {
            Ok(report) => Verification {
                adapter,
                passed: report.passed(),
                failures: report.failures,
                warnings: report.warnings,
                max_abs_logit_change: report.movement.max_abs_logit_change,
                file_vs_memory: report.file_vs_memory,
                secs,
            },
            Err(e) => Verification {
                adapter,
                passed: false,
                failures: vec![format!("the check could not run: {e}")],
                warnings: Vec::new(),
                max_abs_logit_change: 0.0,
                file_vs_memory: None,
                secs,
            },
        };
        if verification.passed {
            info!(repo = %key, %refname, adapter = %verification.adapter, logit_change = verification.max_abs_logit_change, secs, "adapter verified");
        } else {
            self.ctx.metrics.error("verify");
            warn!(repo = %key, %refname, adapter = %verification.adapter, failures = ?verification.failures, "adapter FAILED verification: clients may get the base model's behaviour");
        }
        self.ctx.jobs.verified(key, refname, verification);
    }

    fn check(&mut self, cfg: &Config, dir: &Path, weights: &AdapterWeights) -> Result<evolora_model::VerifyReport, ModelError> {
        let base_dir = cfg.model.base_dir.clone().ok_or_else(|| ModelError::Generation("verify_after_publish needs [model] base_dir".into()))?;
        let stale = self.verifier.as_ref().is_none_or(|v| v.dir != base_dir || v.device != cfg.model.device);
        if stale {
            self.verifier = None;
            let lm = LanguageModel::load(&base_dir, &select_device(&cfg.model.device)?)?;
            let prompts = DEFAULT_PROMPTS.iter().map(|p| lm.encode(p)).collect::<Result<_, _>>()?;
            self.verifier = Some(Verifier { dir: base_dir, device: cfg.model.device.clone(), lm, prompts });
        }
        let v = self.verifier.as_ref().expect("loaded above");
        let memory = v.lm.adapter_from_weights(weights);
        verify(&v.lm, dir, Some(&memory), &v.prompts, tolerance(cfg.model.dtype))
    }
}
