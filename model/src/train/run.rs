//! The training loop over a corpus of repositories: "first sample a repository, then tasks
//! from it" (paper §3.4), each micro-batch one repository's adapter and a few of its tasks.
//!
//! Evo states are rebuilt per micro-batch from the repository's origin: the commits before
//! the last `bptt` ones are folded without a graph (detached), the last `bptt` with one, so
//! gradients flow through at most `bptt` GRU steps (truncated BPTT, K = 16 in the paper).

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};

use super::hypernet::{Factors, TrainableHypernet};
use super::loss::{Example, kl_to_base, target_loss};
use super::optim::{OptimSettings, Optimiser, StepReport};
use crate::nn::init::SplitMix64;
use crate::nn::tensor::{host, tensor2};
use crate::transformer::{Lora, Qwen};
use crate::{HyperConfig, ModelError};

/// One task, anchored at the commit it was mined at.
#[derive(Debug, Clone)]
pub struct Task {
    /// How many of the repository's diffs precede it (0: the origin snapshot's state).
    pub commit: usize,
    pub example: Example,
}

/// A repository as training sees it: its vectors and its tasks.
#[derive(Debug, Clone)]
pub struct RepoData {
    pub name: String,
    pub snapshot: Vec<f32>,
    pub diffs: Vec<Vec<f32>>,
    pub tasks: Vec<Task>,
}

#[derive(Debug, Clone)]
pub struct TrainSettings {
    pub optim: OptimSettings,
    /// Tasks per micro-batch (all from one repository).
    pub tasks_per_batch: usize,
    /// GRU steps gradients flow through.
    pub bptt: usize,
    /// Longest example in tokens (prefix left-truncated, target kept whole).
    pub max_len: usize,
    pub seed: u64,
    /// The paper's detached LoRA-branch input.
    pub detach_branch_input: bool,
    /// Weight of the capability-protection term ([`super::loss::kl_to_base`] on a window of
    /// general text per micro-batch); 0 leaves it out.
    pub kl_weight: f32,
}

/// How well adapters answer held-out tasks: with the repository's own adapter, another
/// repository's (shuffled), and the mean of all repositories' adapters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conditioning {
    pub own: f64,
    pub shuffled: f64,
    pub mean: f64,
    /// Mean loss per target token with the own adapter.
    pub own_loss: f64,
    /// The same with another repository's adapter (NaN with one repository).
    pub shuffled_loss: f64,
    /// Mean pairwise cosine similarity of the repositories' newest adapters (all factors as
    /// one vector each): near 1 means the hypernetwork makes one adapter for everyone.
    pub cosine: f64,
    /// The same after subtracting the mean adapter: what distinguishes the repositories.
    pub centred_cosine: f64,
}

/// A run's whole state between two optimiser steps (see [`Trainer::resume_state`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ResumeState {
    /// The model's parameters with their ids (burn's burnpack).
    pub model: Vec<u8>,
    /// AdamW's state, keyed by those ids.
    pub optimiser: Vec<u8>,
    pub steps: usize,
    /// The data stream's position.
    pub rng: u64,
}

pub struct Trainer<'a> {
    pub model: TrainableHypernet,
    lm: &'a Qwen,
    cfg: HyperConfig,
    settings: TrainSettings,
    optimiser: Optimiser<TrainableHypernet>,
    rng: SplitMix64,
    pad: u32,
    /// Windows of general text for the capability-protection term.
    general: Vec<Vec<u32>>,
}

impl<'a> Trainer<'a> {
    /// `lm` must live on the same autodiff device as `model`, frozen (`no_grad`).
    pub fn new(model: TrainableHypernet, lm: &'a Qwen, cfg: HyperConfig, settings: TrainSettings, pad: u32) -> Self {
        let optimiser = Optimiser::new(settings.optim.clone());
        let rng = SplitMix64::new(settings.seed);
        Trainer { model, lm, cfg, settings, optimiser, rng, pad, general: Vec::new() }
    }

    /// Windows (token ids, equal lengths) of general code text for the capability-protection
    /// term; one is drawn per micro-batch when `kl_weight` > 0.
    pub fn with_general_text(mut self, windows: Vec<Vec<u32>>) -> Self {
        self.general = windows;
        self
    }

    fn device(&self) -> Device {
        self.lm.device()
    }

    /// One micro-batch: a repository drawn at random, then up to `tasks_per_batch` of its
    /// tasks. Returns the micro-batch's loss and, when it completed an optimiser step, what
    /// the step did.
    pub fn micro_step(&mut self, corpus: &[RepoData]) -> Result<(f32, Option<StepReport>), ModelError> {
        let with_tasks: Vec<&RepoData> = corpus.iter().filter(|r| !r.tasks.is_empty()).collect();
        if with_tasks.is_empty() {
            return Err(ModelError::Training("no repository in the corpus has a task".into()));
        }
        let repo = with_tasks[self.rng.below(with_tasks.len())];
        // Tasks at one commit share a state: pick an anchor task, then others at its commit.
        let anchor = &repo.tasks[self.rng.below(repo.tasks.len())];
        let mut same: Vec<&Task> = repo.tasks.iter().filter(|t| t.commit == anchor.commit).collect();
        shuffle(&mut same, &mut self.rng);
        let examples: Vec<Example> = same.iter().filter_map(|t| t.example.truncated(self.settings.max_len)).take(self.settings.tasks_per_batch.max(1)).collect();
        if examples.is_empty() {
            return Err(ModelError::Training(format!("{}: no task at this commit fits in max_len {} tokens (drop tasks that do not fit first)", repo.name, self.settings.max_len)));
        }
        if self.settings.kl_weight > 0.0 && self.general.is_empty() {
            return Err(ModelError::Training("kl_weight is set but there is no general text (Trainer::with_general_text)".into()));
        }
        let state = self.state(repo, anchor.commit, true);
        let lora = self.lora(&self.model.adapter(state));
        let loss = target_loss(self.lm, Some(&lora), &examples, self.pad)?;
        let value = host(loss.mean.clone())[0];
        let mut total = loss.mean;
        if self.settings.kl_weight > 0.0 && !self.general.is_empty() {
            let window = self.general[self.rng.below(self.general.len())].clone();
            total = total + kl_to_base(self.lm, &lora, &[window])?.mul_scalar(self.settings.kl_weight as f64);
        }
        let scaled = total.div_scalar(self.settings.optim.accumulate.max(1) as f64);
        let grads = GradientsParams::from_grads(scaled.backward(), &self.model);
        let model = self.model.clone();
        let (model, report) = self.optimiser.accumulate(model, grads);
        self.model = model;
        Ok((value, report))
    }

    /// Optimiser steps taken so far.
    pub fn steps(&self) -> usize {
        self.optimiser.steps
    }

    /// Everything a run needs to continue exactly where it is: the model with its parameter
    /// ids, AdamW's state, the step count and the data stream. `None` between the
    /// micro-batches of a step.
    pub fn resume_state(&self) -> Result<Option<ResumeState>, ModelError> {
        let fail = |e: String| ModelError::Training(format!("saving the training state: {e}"));
        let Some(optimiser) = self.optimiser.state_bytes().map_err(fail)? else { return Ok(None) };
        let model = self.model.clone().into_record().into_bytes().map_err(|e| fail(e.to_string()))?.to_vec();
        Ok(Some(ResumeState { model, optimiser, steps: self.optimiser.steps, rng: self.rng.state() }))
    }

    /// Continues from a [`ResumeState`]: `model` must have the run's structure (its values
    /// and parameter ids are replaced by the saved ones).
    pub fn resume(model: TrainableHypernet, lm: &'a Qwen, cfg: HyperConfig, settings: TrainSettings, pad: u32, state: &ResumeState) -> Result<Self, ModelError> {
        let fail = |e: String| ModelError::Training(format!("restoring the training state: {e}"));
        let record = burn::store::ModuleRecord::from_bytes(burn::tensor::Bytes::from_bytes_vec(state.model.clone())).map_err(|e| fail(e.to_string()))?;
        let model = model.try_load_record(record).map_err(|e| fail(e.to_string()))?;
        let optimiser = Optimiser::restore(settings.optim.clone(), &state.optimiser, state.steps).map_err(fail)?;
        Ok(Trainer { model, lm, cfg, settings, optimiser, rng: SplitMix64::new(state.rng), pad, general: Vec::new() })
    }

    /// A repository's state `[1, state]` after its first `commit` diffs; with `graph`, the
    /// last `bptt` steps keep theirs.
    fn state(&self, repo: &RepoData, commit: usize, graph: bool) -> Tensor<2> {
        let device = self.device();
        let diffs = &repo.diffs[..commit.min(repo.diffs.len())];
        let cut = if graph { diffs.len().saturating_sub(self.settings.bptt.max(1)) } else { diffs.len() };
        if cut == 0 {
            let h0 = self.model.initial_state(row(&repo.snapshot, &device));
            return if diffs.is_empty() { h0 } else { self.model.advance(h0, rows(diffs, &device)) };
        }
        // The part gradients do not flow through runs on the model without autodiff (the
        // same kernels, so the same values), recording no graph at all: a long history
        // costs its arithmetic only.
        let plain = self.model.valid();
        let plain_device = device.clone().without_autodiff();
        let h = plain.advance(plain.initial_state(row(&repo.snapshot, &plain_device)), rows(&diffs[..cut], &plain_device));
        let h = tensor2(host(h), [1, self.model.state_dim()], &device);
        if cut < diffs.len() { self.model.advance(h, rows(&diffs[cut..], &device)) } else { h }
    }

    fn lora(&self, factors: &[Factors]) -> Lora {
        Lora::from_factors(factors, self.cfg.rank, self.cfg.alpha, self.lm.config().num_hidden_layers, self.settings.detach_branch_input)
    }

    /// Teacher-forced exact match on `held_out` tasks (per repository, parallel to `corpus`):
    /// with the repository's own adapter at each task's commit, with the next repository's
    /// adapter at its newest commit (shuffled), and with the mean of every repository's
    /// newest adapter (mean factors).
    pub fn conditioning(&self, corpus: &[RepoData], held_out: &[Vec<Task>]) -> Result<Conditioning, ModelError> {
        if corpus.is_empty() || held_out.len() != corpus.len() {
            return Err(ModelError::Training(format!("{} repositories but {} held-out task lists", corpus.len(), held_out.len())));
        }
        let adapter_at = |r: &RepoData, commit: usize| -> Vec<Factors> { self.model.adapter(self.state(r, commit, false)).into_iter().map(detached).collect() };
        let newest: Vec<Vec<Factors>> = corpus.iter().map(|r| adapter_at(r, r.diffs.len())).collect();
        let mean = mean_factors(&newest);
        let n = corpus.len();
        let (mut own, mut shuffled, mut averaged, mut total, mut loss_sum, mut tokens) = (0usize, 0usize, 0usize, 0usize, 0f64, 0usize);
        let mut shuffled_loss_sum = 0f64;
        let hits = |l: &super::loss::TargetLoss| l.exact.iter().filter(|&&e| e).count();
        for (k, tasks) in held_out.iter().enumerate().take(n) {
            let mut commits: Vec<usize> = tasks.iter().map(|t| t.commit).collect();
            commits.sort_unstable();
            commits.dedup();
            for commit in commits {
                let examples: Vec<Example> = tasks.iter().filter(|t| t.commit == commit).filter_map(|t| t.example.truncated(self.settings.max_len)).collect();
                if examples.is_empty() {
                    continue;
                }
                let score = |factors: &[Factors]| target_loss(self.lm, Some(&self.lora(factors)), &examples, self.pad);
                let mine = score(&adapter_at(&corpus[k], commit))?;
                loss_sum += host(mine.mean.clone())[0] as f64 * mine.tokens as f64;
                tokens += mine.tokens;
                own += hits(&mine);
                let theirs = score(&newest[(k + 1) % n])?;
                shuffled_loss_sum += host(theirs.mean.clone())[0] as f64 * theirs.tokens as f64;
                shuffled += hits(&theirs);
                averaged += hits(&score(&mean)?);
                total += examples.len();
            }
        }
        let rate = |hits: usize| hits as f64 / total.max(1) as f64;
        // With one repository there is no other adapter to compare with: the controls are
        // undefined (NaN, `null` in JSON), not the repository's own adapter in disguise.
        let control = |hits: usize| if n < 2 { f64::NAN } else { rate(hits) };
        let flat: Vec<Vec<f64>> = newest.iter().map(|factors| factors.iter().flat_map(|f| host(f.a.clone()).into_iter().chain(host(f.b.clone()))).map(f64::from).collect()).collect();
        let (cosine, centred_cosine) = pairwise_cosines(&flat);
        Ok(Conditioning { own: rate(own), shuffled: control(shuffled), mean: control(averaged), own_loss: loss_sum / tokens.max(1) as f64, shuffled_loss: if n < 2 { f64::NAN } else { shuffled_loss_sum / tokens.max(1) as f64 }, cosine, centred_cosine })
    }

    /// Mean KL(base ‖ adapted) over `windows` with each repository's newest adapter: how far
    /// the adapters move the base model on general text.
    pub fn general_drift(&self, corpus: &[RepoData], windows: &[Vec<u32>]) -> Result<f64, ModelError> {
        let mut sum = 0.0;
        for r in corpus {
            let factors: Vec<Factors> = self.model.adapter(self.state(r, r.diffs.len(), false)).into_iter().map(detached).collect();
            sum += host(kl_to_base(self.lm, &self.lora(&factors), windows)?)[0] as f64;
        }
        Ok(sum / corpus.len().max(1) as f64)
    }

    /// The model as it would be served: its tensors in checkpoint layout.
    pub fn weights(&self) -> crate::nn::Weights {
        self.model.valid().to_weights()
    }

    /// Saves the model as a checkpoint marked trained: evolora safetensors, which the daemon
    /// serves as it is (`[model] checkpoint = PATH`), or the released `.pt` layout when the
    /// path ends in `.pt`.
    pub fn save(&self, path: &std::path::Path, base: &crate::BaseModelShapes, encoder: &str, step_policy: crate::StepPolicy) -> Result<(), ModelError> {
        let meta = crate::ModelMeta {
            architecture: self.model.architecture(),
            encoder: encoder.into(),
            step_policy,
            trained: true,
            fingerprint: String::new(),
            task: 0,
        };
        if path.extension().is_some_and(|e| e == "pt") {
            crate::checkpoint::save_pt(path, &self.weights(), &self.cfg, base, &meta)
        } else {
            crate::checkpoint::save_safetensors(path, &self.weights(), &self.cfg, base, &meta)
        }
    }
}

/// Mean pairwise cosine of `vectors`, raw and after subtracting their mean (NaN for fewer
/// than two vectors: there are no pairs).
pub fn pairwise_cosines(vectors: &[Vec<f64>]) -> (f64, f64) {
    let n = vectors.len();
    if n < 2 {
        return (f64::NAN, f64::NAN);
    }
    let dim = vectors[0].len();
    let mean: Vec<f64> = (0..dim).map(|i| vectors.iter().map(|v| v[i]).sum::<f64>() / n as f64).collect();
    let centred: Vec<Vec<f64>> = vectors.iter().map(|v| v.iter().zip(&mean).map(|(a, m)| a - m).collect()).collect();
    let cos = |a: &[f64], b: &[f64]| {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        let norms = a.iter().map(|x| x * x).sum::<f64>().sqrt() * b.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norms > 0.0 { dot / norms } else { 0.0 }
    };
    let mean_over_pairs = |vs: &[Vec<f64>]| {
        let (mut sum, mut pairs) = (0.0, 0usize);
        for i in 0..n {
            for j in i + 1..n {
                sum += cos(&vs[i], &vs[j]);
                pairs += 1;
            }
        }
        sum / pairs as f64
    };
    (mean_over_pairs(vectors), mean_over_pairs(&centred))
}

fn detached(f: Factors) -> Factors {
    Factors { module: f.module, a: f.a.detach(), b: f.b.detach() }
}

fn mean_factors(all: &[Vec<Factors>]) -> Vec<Factors> {
    let n = all.len() as f64;
    (0..all[0].len())
        .map(|t| {
            let a = all.iter().map(|f| f[t].a.clone()).reduce(|x, y| x + y).expect("one repository").div_scalar(n);
            let b = all.iter().map(|f| f[t].b.clone()).reduce(|x, y| x + y).expect("one repository").div_scalar(n);
            Factors { module: all[0][t].module, a, b }
        })
        .collect()
}

fn shuffle<T>(items: &mut [T], rng: &mut SplitMix64) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.below(i + 1));
    }
}

/// One vector as a `[1, D]` tensor.
pub(crate) fn row(v: &[f32], device: &Device) -> Tensor<2> {
    tensor2(v.to_vec(), [1, v.len()], device)
}

/// Vectors of one length as a `[T, D]` tensor.
pub(crate) fn rows(vs: &[Vec<f32>], device: &Device) -> Tensor<2> {
    tensor2(vs.concat(), [vs.len(), vs[0].len()], device)
}

#[cfg(test)]
mod tests {
    use super::pairwise_cosines;

    #[test]
    fn cosines_are_raw_and_mean_centred() {
        // Three vectors sharing a large common part: raw cosines near 1; centred, they are
        // the corners of an equilateral triangle around 0, whose pairwise cosines are −1/2.
        let h = 3f64.sqrt() / 2.0;
        let common = [10.0, 10.0, 10.0];
        let vs: Vec<Vec<f64>> = [[1.0, 0.0, 0.0], [-0.5, h, 0.0], [-0.5, -h, 0.0]].iter().map(|d| d.iter().zip(&common).map(|(a, c)| a + c).collect()).collect();
        let (raw, centred) = pairwise_cosines(&vs);
        assert!(raw > 0.98, "{raw}");
        assert!((centred + 0.5).abs() < 1e-9, "{centred}");
        let (one, centred_one) = pairwise_cosines(&vs[..1]);
        assert!(one.is_nan() && centred_one.is_nan(), "no pairs, no cosine");
    }
}
