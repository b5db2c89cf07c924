//! `evolora train`: trains the hypernetwork on a user's repositories, end to end through the
//! frozen base LM (paper §3.4), and writes checkpoints the daemon serves as they are.
//!
//! In `--out`:
//! - `cache/`: each repository's tasks and vectors (see [`data`]);
//! - `metrics.jsonl`: one line per optimiser step, and one per validation;
//! - `resume/`: the whole run's state at the last save (model, AdamW, step, data stream),
//!   replaced atomically; a run started again with the same `--out` continues from it, and
//!   ends bit-identical (on CPU) to a run that never stopped;
//! - `training.png`: the loss and exact-match curves, redrawn at every validation
//!   (`--plot` draws them for a run in progress);
//! - `best.safetensors` (lowest validation loss) and `final.safetensors`: evolora
//!   checkpoints recording the encoder, step policy and base; `final.pt`, the same model in
//!   the released Code2LoRA layout (for `torch.load` and the authors' tool).

mod data;
mod plot;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use evolora_eval::tasks::Track;
use evolora_model::hypernet::seeded_weights;
use evolora_model::train::{Conditioning, OptimSettings, ResumeState, Schedule, TrainSettings, TrainableHypernet, Trainer};
use evolora_model::{Architecture, HyperConfig, LanguageModel, StepPolicy, select_device};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::progress::Progress;

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Training repositories (work trees or git directories), comma-separated or repeated
    #[arg(long, value_delimiter = ',', required_unless_present = "plot")]
    pub repos: Vec<PathBuf>,
    /// Repositories never trained on, whose validation tasks measure generalisation
    #[arg(long, value_delimiter = ',')]
    pub held_out_repos: Vec<PathBuf>,
    /// Base model directory (config.json, safetensors weights, tokenizer.json), kept frozen
    #[arg(long, required_unless_present = "plot")]
    pub base_dir: Option<PathBuf>,
    /// Where the cache, metrics, resumable state and checkpoints go
    #[arg(long)]
    pub out: PathBuf,
    /// evo (a GRU over the commits) or static (the repository's snapshot alone)
    #[arg(long, default_value = "evo", value_parser = parse_arch)]
    pub arch: Architecture,
    /// Size of a new hypernetwork: paper, compact, tiny (not used with --init)
    #[arg(long, default_value = "compact")]
    pub preset: String,
    /// Start from this checkpoint (evolora .safetensors or a released .pt) instead of a
    /// seeded model; its architecture wins over --arch
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Which commits step the GRU (recorded in the checkpoint): every-commit or paper
    #[arg(long, default_value = "every-commit")]
    pub step_policy: StepPolicy,
    /// Task prefixes: evolution (the whole test file up to the cut) or static
    #[arg(long, default_value = "evolution", value_parser = parse_track)]
    pub track: Track,
    /// Optimiser steps (default: three passes over the training tasks)
    #[arg(long)]
    pub steps: Option<usize>,
    /// Peak learning rate (default: 5e-5 for evo, 1e-4 for static, the paper's)
    #[arg(long)]
    pub lr: Option<f64>,
    /// Share of the steps spent warming up
    #[arg(long, default_value_t = 0.03)]
    pub warmup: f64,
    /// Micro-batches per optimiser step
    #[arg(long, default_value_t = 8)]
    pub accumulate: usize,
    /// Tasks per micro-batch (all from one repository, at one commit)
    #[arg(long, default_value_t = 8)]
    pub tasks_per_batch: usize,
    /// GRU steps gradients flow through (truncated BPTT)
    #[arg(long, default_value_t = 16)]
    pub bptt: usize,
    /// Longest example in tokens (the prefix is cut on the left, never the target)
    #[arg(long, default_value_t = 1024)]
    pub max_len: usize,
    /// Global gradient-norm bound (0: no clipping)
    #[arg(long, default_value_t = 1.0)]
    pub clip: f32,
    /// AdamW's decoupled weight decay
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f32,
    /// Validate every this many steps (and at the end)
    #[arg(long, default_value_t = 100)]
    pub eval_every: usize,
    /// Save the resumable state every this many steps
    #[arg(long, default_value_t = 20)]
    pub save_every: usize,
    /// Weight of the capability-protection term: KL(base ‖ adapted) on a window of general
    /// code text per micro-batch, added to the task loss (0: off)
    #[arg(long, default_value_t = 0.0)]
    pub kl_weight: f32,
    /// Files of general code text for that term (and for the drift reported at validation),
    /// comma-separated or repeated
    #[arg(long, value_delimiter = ',')]
    pub general_text: Vec<PathBuf>,
    /// Tokens per general-text window
    #[arg(long, default_value_t = 256)]
    pub general_len: usize,
    /// Where mined tasks and encoded vectors are cached [default: OUT/cache]; share one
    /// between runs on the same repositories
    #[arg(long)]
    pub data_cache: Option<PathBuf>,
    /// Only draw the run in --out (its metrics.jsonl) to training.png, and exit; a run draws
    /// it itself at every validation
    #[arg(long)]
    pub plot: bool,
    /// Seed of the new model and of the data order
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// cpu or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[command(flatten)]
    pub encoder: crate::offline::EncoderChoice,
}

fn parse_arch(s: &str) -> Result<Architecture, String> {
    match s {
        "evo" => Ok(Architecture::Evo),
        "static" => Ok(Architecture::Static),
        other => other.parse().map_err(|_| format!("unknown architecture `{other}` (evo, static)")),
    }
}

fn parse_track(s: &str) -> Result<Track, String> {
    match s {
        "static" => Ok(Track::Static),
        "evolution" => Ok(Track::Evolution),
        other => Err(format!("unknown track `{other}` (static, evolution)")),
    }
}

/// What `resume/state.json` holds beside the two binary records.
#[derive(Serialize, Deserialize)]
struct Saved {
    /// The arguments that shape the run; a resume with others is refused.
    run: String,
    steps: usize,
    rng: u64,
    /// Bytes of `metrics.jsonl` written up to this state (later lines are dropped on resume).
    metrics_len: u64,
    best_loss: Option<f64>,
}

pub fn run(args: TrainArgs) -> Result<()> {
    let started = Instant::now();
    let picture = args.out.join("training.png");
    if args.plot {
        plot::draw(&args.out.join("metrics.jsonl"), &picture)?;
        println!("{}", picture.display());
        return Ok(());
    }
    let base_dir = args.base_dir.clone().context("--base-dir is needed to train")?;
    std::fs::create_dir_all(&args.out).with_context(|| format!("creating {}", args.out.display()))?;
    let device = select_device(&args.device)?.autodiff();
    let lm = LanguageModel::load(&base_dir, &device).with_context(|| format!("loading the base model {}", base_dir.display()))?.frozen();
    let mut encoder = args.encoder.load(&args.device)?;

    // The model to train: a checkpoint, or a seeded one of the preset's size.
    let (cfg, architecture, mut weights) = match &args.init {
        Some(path) => {
            let ck = evolora_model::checkpoint::load(path, &lm.shapes)?;
            encoder.follow(&ck.meta.encoder);
            if ck.meta.encoder != encoder.id() {
                bail!("{} was trained on the {} encoder, not {}", path.display(), ck.meta.encoder, encoder.id());
            }
            (ck.config, ck.meta.architecture, ck.weights)
        }
        None => {
            let mut cfg = HyperConfig::preset(&args.preset)?;
            cfg.input_dim = encoder.dim();
            if args.arch == Architecture::Static {
                cfg.gru_hidden = cfg.input_dim;
            }
            let weights = seeded_weights(&cfg, &lm.shapes, args.seed, args.arch.has_gru());
            (cfg, args.arch, weights)
        }
    };
    let model = TrainableHypernet::from_weights(&cfg, &lm.shapes, architecture, 0, &mut weights, &device)?;

    let tokenizer_id = fingerprint_file(&base_dir.join("tokenizer.json"))?;
    let recipe = data::Recipe { architecture, policy: args.step_policy, track: args.track, lm: &lm, tokenizer_id };
    let cache = args.data_cache.clone().unwrap_or_else(|| data::cache_dir(&args.out));
    std::fs::create_dir_all(&cache)?;
    let mut prepare_all = |repos: &[PathBuf]| -> Result<Vec<data::Prepared>> { repos.iter().map(|r| data::prepare(r, &recipe, &mut encoder, &cache)).collect() };
    let mut training = prepare_all(&args.repos)?;
    let mut held_out = prepare_all(&args.held_out_repos)?;
    for p in training.iter_mut().chain(held_out.iter_mut()) {
        let dropped = p.keep_fitting(args.max_len);
        if dropped > 0 {
            eprintln!("{}: {dropped} tasks left out: their target leaves no room in --max-len {}", p.data.name, args.max_len);
        }
    }
    let train_tasks: usize = training.iter().map(|p| p.data.tasks.len()).sum();
    if train_tasks == 0 {
        bail!("no training tasks in {} repositories (the train split of their mined tasks is empty)", training.len());
    }
    for p in training.iter().chain(&held_out) {
        eprintln!("{}: {} train, {} validation, {} test tasks, {} diffs", p.data.name, p.data.tasks.len(), p.val.len(), p.test.len(), p.data.diffs.len());
    }

    if args.steps == Some(0) {
        bail!("--steps must be at least 1");
    }
    let per_step = args.accumulate.max(1) * args.tasks_per_batch.max(1);
    let total = args.steps.unwrap_or_else(|| (3 * train_tasks).div_ceil(per_step).max(1));
    let peak = args.lr.unwrap_or(if architecture == Architecture::Evo { 5e-5 } else { 1e-4 });
    let schedule = Schedule { peak, warmup: (args.warmup * total as f64).round() as usize, total };
    let settings = TrainSettings {
        optim: OptimSettings { schedule, weight_decay: args.weight_decay, clip_norm: args.clip, accumulate: args.accumulate.max(1) },
        tasks_per_batch: args.tasks_per_batch,
        bptt: args.bptt,
        max_len: args.max_len,
        seed: args.seed,
        detach_branch_input: true,
        kl_weight: args.kl_weight,
    };
    let general = general_windows(&lm, &args.general_text, args.general_len)?;
    if args.kl_weight > 0.0 && general.is_empty() {
        bail!("--kl-weight needs --general-text files of at least {} tokens", args.general_len);
    }
    // Everything that shapes the run, the data included (each repository's key names its
    // tip, the recipe, the encoder and the tokenizer): a resume with anything else is refused.
    let data_keys: Vec<&str> = training.iter().chain(&held_out).map(|p| p.key.as_str()).collect();
    let run_id = format!("{data_keys:?}|{:?}|{architecture}|{total}|{peak}|{}|{:?}|{:?}|{:?}|{}", args.repos, args.init.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| format!("{}:{}", args.preset, args.seed)), settings, args.held_out_repos, args.general_text, args.general_len);

    // The repositories as training and validation read them, built once.
    let seen = Repositories::from(training);
    let unseen = Repositories::from(held_out);
    let corpus = &seen.corpus;
    let resume_dir = args.out.join("resume");
    let metrics_path = args.out.join("metrics.jsonl");
    let pad = lm.pad;
    let (mut trainer, mut best_loss) = match read_saved(&resume_dir)? {
        Some((saved, state)) => {
            if saved.run != run_id {
                bail!("{} holds another run's state (other repositories or settings); use another --out or delete it", resume_dir.display());
            }
            truncate(&metrics_path, saved.metrics_len)?;
            eprintln!("resuming at step {} of {total}", saved.steps);
            (Trainer::resume(model, &lm.model, cfg.clone(), settings, pad, &state)?, saved.best_loss)
        }
        None => {
            truncate(&metrics_path, 0)?;
            (Trainer::new(model, &lm.model, cfg.clone(), settings, pad), None)
        }
    };
    trainer = trainer.with_general_text(general.clone());
    let mut metrics = std::fs::OpenOptions::new().create(true).append(true).open(&metrics_path)?;
    // Checkpoint writers replace their file atomically.
    let encoder_id = encoder.id();
    let checkpoint = |trainer: &Trainer, name: &str| trainer.save(&args.out.join(name), &lm.shapes, encoder_id, args.step_policy);

    let mut bar = Progress::new("training", "steps");
    let (mut loss_sum, mut micro) = (0f64, 0usize);
    let mut step_started = Instant::now();
    while trainer.steps() < total {
        let (loss, report) = trainer.micro_step(corpus)?;
        if !loss.is_finite() {
            bail!("the loss is {loss} at step {}; lower --lr or check the data", trainer.steps());
        }
        loss_sum += loss as f64;
        micro += 1;
        let Some(report) = report else { continue };
        let step = trainer.steps();
        let secs = step_started.elapsed().as_secs_f64();
        let mean = loss_sum / micro as f64;
        writeln!(metrics, "{}", json!({"kind": "step", "step": step, "loss": mean, "lr": report.rate, "grad_norm": report.grad_norm, "secs": secs}))?;
        bar.update_noting(step as u64, total as u64, &format!("loss {mean:.4}, {:.2} s/step", secs));
        (loss_sum, micro, step_started) = (0.0, 0, Instant::now());

        if step % args.eval_every.max(1) == 0 || step == total {
            let report = validate(&trainer, &seen, &unseen, &general)?;
            writeln!(metrics, "{}", report.line(step))?;
            metrics.flush()?;
            if let Err(e) = plot::draw(&metrics_path, &picture) {
                eprintln!("warning: {e:#}");
            }
            if let Some(loss) = report.selection_loss()
                && best_loss.is_none_or(|b| loss < b)
            {
                best_loss = Some(loss);
                checkpoint(&trainer, "best.safetensors")?;
            }
        }
        if step % args.save_every.max(1) == 0 || step == total {
            metrics.sync_data()?;
            let state = trainer.resume_state()?.expect("saved right after an optimiser step");
            let saved = Saved { run: run_id.clone(), steps: step, rng: state.rng, metrics_len: metrics.metadata()?.len(), best_loss };
            write_saved(&resume_dir, &saved, &state)?;
        }
    }
    checkpoint(&trainer, "final.safetensors")?;
    checkpoint(&trainer, "final.pt")?;
    eprintln!("trained {total} steps in {:.0} s; {} (curves: {})", started.elapsed().as_secs_f64(), args.out.join("final.safetensors").display(), picture.display());
    Ok(())
}

/// Validation: held-out tasks of the training repositories (own, shuffled, mean adapter), and
/// of repositories never trained on (own adapter).
struct Validation {
    seen: Option<Conditioning>,
    unseen: Option<Conditioning>,
    /// Mean KL(base ‖ adapted) on general text over the training repositories' adapters.
    general_kl: Option<f64>,
}

impl Validation {
    fn line(&self, step: usize) -> String {
        let part = |c: &Option<Conditioning>| c.map(|c| json!({"loss": c.own_loss, "shuffled_loss": c.shuffled_loss, "own": c.own, "shuffled": c.shuffled, "mean": c.mean, "cosine": c.cosine, "centred_cosine": c.centred_cosine}));
        json!({"kind": "validation", "step": step, "seen": part(&self.seen), "unseen": part(&self.unseen), "general_kl": self.general_kl}).to_string()
    }

    /// The loss a best checkpoint is chosen by: the training repositories' held-out tasks,
    /// else the unseen repositories'.
    fn selection_loss(&self) -> Option<f64> {
        self.seen.or(self.unseen).map(|c| c.own_loss)
    }
}

/// Windows the general-text term draws from: each file tokenised and cut into runs of `len`.
fn general_windows(lm: &LanguageModel, files: &[PathBuf], len: usize) -> Result<Vec<Vec<u32>>> {
    let mut windows = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        windows.extend(lm.encode(&text)?.chunks_exact(len.max(1)).map(<[u32]>::to_vec));
    }
    Ok(windows)
}

/// Repositories with their validation tasks.
struct Repositories {
    corpus: Vec<evolora_model::train::RepoData>,
    val: Vec<Vec<evolora_model::train::Task>>,
}

impl From<Vec<data::Prepared>> for Repositories {
    fn from(prepared: Vec<data::Prepared>) -> Self {
        let (corpus, val) = prepared.into_iter().map(|p| (p.data, p.val)).unzip();
        Repositories { corpus, val }
    }
}

fn validate(trainer: &Trainer, seen: &Repositories, unseen: &Repositories, general: &[Vec<u32>]) -> Result<Validation> {
    let measure = |set: &Repositories| -> Result<Option<Conditioning>> {
        if set.val.iter().all(Vec::is_empty) {
            return Ok(None);
        }
        Ok(Some(trainer.conditioning(&set.corpus, &set.val)?))
    };
    let general_kl = if general.is_empty() { None } else { Some(trainer.general_drift(&seen.corpus, &general[..general.len().min(8)])?) };
    Ok(Validation { seen: measure(seen)?, unseen: measure(unseen)?, general_kl })
}

fn fingerprint_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Sha256::digest(&bytes).iter().take(8).map(|b| format!("{b:02x}")).collect())
}

/// Keeps the first `len` bytes of `path` (creating it empty when absent).
fn truncate(path: &Path, len: u64) -> Result<()> {
    let file = std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(path)?;
    file.set_len(len)?;
    file.sync_all()?;
    Ok(())
}

/// `bytes` at `path`, all or nothing across a crash.
pub(crate) fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    evolora_model::files::write_atomically(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// The resumable state as one directory, replaced whole: written as `resume.new`, synced,
/// then swapped in by renames (a crash leaves the old or the new one, never a mix).
fn write_saved(dir: &Path, saved: &Saved, state: &ResumeState) -> Result<()> {
    let parent = dir.parent().context("resume directory")?;
    let fresh = parent.join("resume.new");
    let old = parent.join("resume.old");
    let _ = std::fs::remove_dir_all(&fresh);
    std::fs::create_dir_all(&fresh)?;
    write_durably(&fresh.join("model.bpk"), &state.model)?;
    write_durably(&fresh.join("optimiser.bpk"), &state.optimiser)?;
    write_durably(&fresh.join("state.json"), &serde_json::to_vec(saved)?)?;
    let _ = std::fs::remove_dir_all(&old);
    if dir.exists() {
        std::fs::rename(dir, &old)?;
    }
    std::fs::rename(&fresh, dir)?;
    std::fs::File::open(parent)?.sync_all()?;
    let _ = std::fs::remove_dir_all(&old);
    Ok(())
}

/// The saved state, if a run left one. A crash between the two renames of [`write_saved`]
/// leaves only `resume.old`: it is moved back into place first, so that the next save does
/// not delete the only state there is.
fn read_saved(dir: &Path) -> Result<Option<(Saved, ResumeState)>> {
    let old = dir.with_file_name("resume.old");
    if !dir.join("state.json").exists() && old.join("state.json").exists() {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::rename(&old, dir)?;
    }
    if !dir.join("state.json").exists() {
        return Ok(None);
    }
    let saved: Saved = serde_json::from_slice(&std::fs::read(dir.join("state.json"))?).with_context(|| format!("reading {}", dir.display()))?;
    let state = ResumeState { model: std::fs::read(dir.join("model.bpk"))?, optimiser: std::fs::read(dir.join("optimiser.bpk"))?, steps: saved.steps, rng: saved.rng };
    Ok(Some((saved, state)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(step: usize) -> (Saved, ResumeState) {
        let saved = Saved { run: "r".into(), steps: step, rng: step as u64, metrics_len: 10 * step as u64, best_loss: Some(1.0) };
        (saved, ResumeState { model: vec![step as u8; 4], optimiser: vec![1, 2, 3], steps: step, rng: step as u64 })
    }

    #[test]
    fn a_crash_between_the_renames_keeps_the_older_state_and_the_next_save_keeps_it_safe() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("resume");
        assert!(read_saved(&dir).unwrap().is_none());
        let (saved, st) = state(3);
        write_saved(&dir, &saved, &st).unwrap();
        let (saved, st) = state(6);
        write_saved(&dir, &saved, &st).unwrap();
        assert_eq!(read_saved(&dir).unwrap().unwrap().1, st);
        // As if a crash came after `resume` became `resume.old` and before `resume.new` was
        // renamed into place.
        std::fs::rename(&dir, tmp.path().join("resume.old")).unwrap();
        std::fs::create_dir_all(tmp.path().join("resume.new")).unwrap();
        let (back, back_state) = read_saved(&dir).unwrap().expect("the older state");
        assert_eq!((back.steps, back_state), (6, st));
        assert!(dir.join("state.json").exists() && !tmp.path().join("resume.old").exists(), "moved back into place");
        let (saved, st) = state(9);
        write_saved(&dir, &saved, &st).unwrap();
        assert_eq!(read_saved(&dir).unwrap().unwrap().1, st);
    }
}
