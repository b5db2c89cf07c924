//! Commands that run the model in the CLI process, without the daemon: the Static one-shot
//! `snapshot`, `model run` on user-supplied embeddings, and `model export`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use evolora_model::encoder::HashedEncoder;
use evolora_model::hypernet::{ModelMeta, StepPolicy, seeded_weights};
use evolora_model::peft::{AdapterDtype, write_adapter_dir};
use evolora_model::{AdapterWeights, BaseModelShapes, HyperConfig, Hypernetwork};

use crate::adapters::info::{self, AdapterInfo, ModelStamp};
use crate::job::encoder::Encoder;
use crate::git;

/// Where the model comes from.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelChoice {
    /// Checkpoint: evolora .safetensors, or a released Code2LoRA .pt (Static or Evo)
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Without a checkpoint: seeded hypernetwork of this size (paper, compact, tiny)
    #[arg(long, default_value = "compact")]
    pub preset: String,
    /// Seed of the untrained model
    #[arg(long, default_value_t = crate::config::ModelSettings::default().seed)]
    pub seed: u64,
    /// Base model: qwen2.5-coder-1.5b, qwen2.5-coder-0.5b, or a config.json (or its directory)
    #[arg(long, default_value = "qwen2.5-coder-1.5b")]
    pub base: String,
    /// Task row of a multi-task checkpoint (index into its task embedding)
    #[arg(long, default_value_t = 0)]
    pub task: usize,
    /// cpu or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Adapter dtype: f32, bf16, f16
    #[arg(long, default_value = "f32")]
    pub dtype: AdapterDtype,
    #[command(flatten)]
    pub encoder: EncoderChoice,
}

/// Which encoder, as the daemon's `[model]` settings name it.
#[derive(clap::Args, Debug, Clone)]
pub struct EncoderChoice {
    /// Encoder: hashed (built in; the version a checkpoint was trained on, else the
    /// newest), hashed-v1, hashed-v2, or qwen3 (needs --encoder-dir)
    #[arg(long, value_enum, default_value = "hashed")]
    pub encoder: crate::config::EncoderKind,
    /// A local Qwen3-Embedding directory (config.json, safetensors, tokenizer.json)
    #[arg(long)]
    pub encoder_dir: Option<PathBuf>,
    /// Keep transformer vectors in this embedding cache (the daemon's is
    /// `<state_dir>/embeddings`; stop the daemon or use another directory)
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
}

impl EncoderChoice {
    /// The encoder on `device` (cpu or cuda:N).
    pub fn load(&self, device: &str) -> Result<Encoder> {
        let settings = crate::config::ModelSettings {
            encoder: self.encoder,
            encoder_dir: self.encoder_dir.clone(),
            device: device.to_owned(),
            ..Default::default()
        };
        let budget = crate::config::Config::default().embedding_cache_budget.0;
        Ok(Encoder::load(&settings, self.cache_dir.as_deref().map(|d| (d, budget)))?)
    }
}

impl ModelChoice {
    fn settings(&self) -> crate::config::ModelSettings {
        crate::config::ModelSettings {
            preset: self.preset.clone(),
            checkpoint: self.checkpoint.clone(),
            seed: self.seed,
            base: self.base.clone(),
            device: self.device.clone(),
            dtype: self.dtype,
            encoder: self.encoder.encoder,
            encoder_dir: self.encoder.encoder_dir.clone(),
            base_dir: None,
        }
    }

    /// The model for any vectors (`model run`).
    pub fn load(&self) -> Result<Hypernetwork> {
        Ok(crate::job::model::load(&self.settings(), None, self.task)?)
    }

    /// The encoder, then the model made for or checked against it.
    pub fn load_with_encoder(&self) -> Result<(Hypernetwork, Encoder)> {
        Ok(crate::job::model::load_with_encoder(&self.settings(), None, self.task)?)
    }
}

fn model_stamp(model: &Hypernetwork) -> ModelStamp {
    ModelStamp { step_policy: Some(model.meta.step_policy), config: Some(model.config.clone()), ..ModelStamp::of(model) }
}

/// Writes a one-shot adapter directory with its evolora.json, warns if the model is
/// untrained, and prints the directory.
fn publish_one_shot(choice: &ModelChoice, model: &Hypernetwork, adapter: &AdapterWeights, info: &AdapterInfo, out: &Path) -> Result<()> {
    let dir = write_adapter_dir(out, adapter, &model.base, choice.dtype, &[(info::FILE, info.to_bytes())])?;
    if !model.meta.trained {
        eprintln!("warning: {}", crate::context::UNTRAINED_WARNING);
    }
    println!("{}", dir.display());
    Ok(())
}

/// `evolora model run`: embeddings file → adapter directory (and optionally the final state).
pub fn model_run(choice: &ModelChoice, embeddings: &Path, out: &Path, state_out: Option<&Path>) -> Result<()> {
    let model = choice.load()?;
    let emb = evolora_model::replay::read_embeddings(embeddings)?;
    // Any vectors may be run, but two hashed versions have the same width and different
    // features: a checkpoint run on the other version's vectors is a mistake, not a choice.
    if choice.checkpoint.is_some()
        && let Some(made_by) = &emb.encoder
        && made_by != &model.meta.encoder
        && HashedEncoder::from_id(made_by).is_some()
        && HashedEncoder::from_id(&model.meta.encoder).is_some()
    {
        anyhow::bail!("{} holds {made_by} vectors, but the checkpoint was trained on {}: encode with --encoder {}", embeddings.display(), model.meta.encoder, model.meta.encoder);
    }
    let (state, adapter) = evolora_model::replay::run(&model, &emb)?;
    if let Some(p) = state_out {
        let bytes: Vec<u8> = state.iter().flat_map(|v| v.to_le_bytes()).collect();
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![state.len()], &bytes)?;
        safetensors::serialize_to_file([("state", view)], None, p)?;
    }
    let info = AdapterInfo {
        schema: info::SCHEMA,
        source: Some("model run".into()),
        embeddings: Some(embeddings.display().to_string()),
        commits: Some(emb.diffs.len()),
        model: model_stamp(&model),
        ..AdapterInfo::default()
    };
    publish_one_shot(choice, &model, &adapter, &info, out)
}

/// `evolora snapshot`: the Static path, a repository's tip → one adapter directory.
pub fn snapshot(choice: &ModelChoice, repo_path: &Path, out: &Path) -> Result<()> {
    let (model, mut encoder) = choice.load_with_encoder()?;
    let loc = git::locate(repo_path)?;
    let repo = git::open(&loc.git_dir)?;
    let head = repo.head().context("the repository has no commits")?.peel_to_commit().context("HEAD is not a commit")?;
    let snapshot = encoder.snapshot(&repo, head.id(), 1)?;
    let state = model.initial_state(&snapshot)?;
    let adapter = model.adapter(&state)?;
    let info = AdapterInfo {
        schema: info::SCHEMA,
        source: Some("snapshot".into()),
        repo: Some(loc.git_dir.display().to_string()),
        commit: Some(head.id().to_string()),
        model: model_stamp(&model),
        ..AdapterInfo::default()
    };
    publish_one_shot(choice, &model, &adapter, &info, out)
}

/// `evolora model export`: the checkpoint of `--checkpoint` in `format`, or the seeded model
/// of a preset.
pub fn export(choice: &ModelChoice, out: &Path, format: &str, policy: StepPolicy) -> Result<()> {
    let base = BaseModelShapes::resolve(&choice.base)?;
    let (cfg, meta, weights) = match &choice.checkpoint {
        Some(path) => {
            let ck = evolora_model::checkpoint::load(path, &base)?;
            (ck.config, ck.meta, ck.weights)
        }
        None => {
            let cfg = HyperConfig::preset(&choice.preset)?;
            let weights = seeded_weights(&cfg, &base, choice.seed, true);
            let meta = ModelMeta {
                architecture: evolora_model::Architecture::Evo,
                encoder: choice.encoder.encoder.hashed().unwrap_or(HashedEncoder::LATEST).id().into(),
                step_policy: policy,
                trained: false,
                fingerprint: String::new(),
                task: 0,
            };
            (cfg, meta, weights)
        }
    };
    match format {
        "pt" => evolora_model::checkpoint::save_pt(out, &weights, &cfg, &base, &meta)?,
        _ => evolora_model::checkpoint::save_safetensors(out, &weights, &cfg, &base, &meta)?,
    }
    println!("{}", out.display());
    Ok(())
}
