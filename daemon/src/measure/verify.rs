//! `evolora verify ADAPTER --base-dir DIR`: the fidelity check of an adapter directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use evolora_model::peft::PeftAdapter;
use evolora_model::verify::{DEFAULT_PROMPTS, verify};
use evolora_model::{AdapterWeights, LanguageModel, ModuleType, select_device};
use evolora_model::hypernet::head::LoraPair;

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// The adapter directory (adapter_config.json, adapter_model.safetensors)
    pub adapter: PathBuf,
    /// Base model directory (config.json, safetensors weights, tokenizer.json)
    #[arg(long)]
    pub base_dir: PathBuf,
    /// Measure on this file's text instead of the built-in test-code prompts
    #[arg(long)]
    pub prompt_file: Option<PathBuf>,
    /// cpu or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Print the report as JSON
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: VerifyArgs) -> Result<ExitCode> {
    let device = select_device(&args.device)?;
    let lm = LanguageModel::load(&args.base_dir, &device)?;
    let prompts: Vec<Vec<u32>> = match &args.prompt_file {
        Some(p) => vec![lm.encode(&std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)?],
        None => DEFAULT_PROMPTS.iter().map(|p| lm.encode(p)).collect::<Result<_, _>>()?,
    };
    // The in-memory side: evolora writes one (A, B) per type into every layer, and that
    // shared pair is what the hypernetwork hands the LM directly. Rebuilt from layer 0 and
    // attached the in-memory way, it must give the file's logits; other layouts have no
    // in-memory form to compare with.
    let adapter = PeftAdapter::load(&args.adapter, &lm.shapes)?;
    let memory = replicated_weights(&adapter, lm.shapes.num_hidden_layers).map(|w| lm.adapter_from_weights(&w));
    let report = verify(&lm, &args.adapter, memory.as_ref(), &prompts, 1e-5)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!("adapter  {}", report.adapter);
        println!("base     {}", report.base);
        println!("lora     r {}, alpha {}, scale {:.4}, {} of {} layers, {}", report.rank, report.lora_alpha, report.scale, report.adapted_layers, report.base_layers, report.target_modules.join(" "));
        match report.file_vs_memory {
            Some(d) => println!("file vs in-memory adapter: largest logit difference {d:.2e} of the largest logit"),
            None => println!("file vs in-memory adapter: not compared (layers hold different factors)"),
        }
        let m = &report.movement;
        println!("movement over {} positions: largest |Δlogit| {:.4}, mean KL {:.3e} nats, top-1 agreement {:.1} %", m.positions, m.max_abs_logit_change, m.mean_kl, 100.0 * m.top1_agreement);
        for w in &report.warnings {
            println!("warning: {w}");
        }
        for f in &report.failures {
            println!("FAILED: {f}");
        }
        println!("{}", if report.passed() { "verified" } else { "not verified" });
    }
    Ok(if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The adapter as one pair per type when every adapted layer holds the same factors.
fn replicated_weights(adapter: &PeftAdapter, layers: usize) -> Option<AdapterWeights> {
    let mut pairs = Vec::new();
    for module in ModuleType::ALL {
        let Some(first) = adapter.factors.get(&(0, module)) else { continue };
        if (0..layers).any(|l| adapter.factors.get(&(l, module)) != Some(first)) {
            return None;
        }
        pairs.push(LoraPair { module, in_features: first.in_features, out_features: first.out_features, a: first.a.clone(), b: first.b.clone() });
    }
    // The in-memory path scales by alpha / r; rsLoRA has no in-memory form here.
    if pairs.is_empty() || adapter.config.use_rslora {
        return None;
    }
    Some(AdapterWeights { rank: adapter.config.rank, alpha: adapter.config.alpha as f32, pairs })
}
