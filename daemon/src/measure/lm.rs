//! `evolora lm logits` and `evolora lm generate`: the base LM of a Hugging Face directory,
//! with or without an adapter directory attached.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use evolora_model::{LanguageModel, select_device};

#[derive(Subcommand, Debug)]
pub enum LmAction {
    /// Write the prompt's token ids (`ids` [T]) and logits (`logits` [T, vocab]) as safetensors
    Logits {
        #[command(flatten)]
        run: LmArgs,
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the greedy completion of the prompt
    Generate {
        #[command(flatten)]
        run: LmArgs,
        #[arg(long, default_value_t = 64)]
        max_new_tokens: usize,
    },
}

#[derive(clap::Args, Debug)]
pub struct LmArgs {
    /// Base model directory (config.json, safetensors weights, tokenizer.json)
    #[arg(long)]
    pub base_dir: PathBuf,
    /// PEFT LoRA adapter directory to attach
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// File holding the prompt text, as it is (`-` for standard input)
    #[arg(long)]
    pub prompt_file: PathBuf,
    /// Put the model's first stop id (`<|endoftext|>` for Qwen) before the prompt, as the
    /// Code2LoRA evaluation does for models without a BOS token
    #[arg(long)]
    pub bos: bool,
    /// cpu or cuda:N
    #[arg(long, default_value = "cpu")]
    pub device: String,
}

/// The loaded model, its adapter and the prompt's ids.
struct Loaded {
    lm: LanguageModel,
    lora: Option<evolora_model::transformer::Lora>,
    ids: Vec<u32>,
}

fn load(args: &LmArgs) -> Result<Loaded> {
    let device = select_device(&args.device)?;
    let prompt = if args.prompt_file == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading the prompt from standard input")?
    } else {
        std::fs::read_to_string(&args.prompt_file).with_context(|| format!("reading the prompt {}", args.prompt_file.display()))?
    };
    let lm = LanguageModel::load(&args.base_dir, &device)?;
    let lora = match &args.adapter {
        Some(dir) => Some(lm.load_adapter(dir)?.1),
        None => None,
    };
    let mut ids = lm.encode(&prompt)?;
    if args.bos {
        ids.insert(0, lm.stop[0]);
    }
    if ids.is_empty() {
        bail!("the prompt {} has no tokens", args.prompt_file.display());
    }
    Ok(Loaded { lm, lora, ids })
}

pub fn run(action: LmAction) -> Result<()> {
    match action {
        LmAction::Logits { run, out } => {
            let Loaded { lm, lora, ids } = load(&run)?;
            let logits = lm.logits(&ids, lora.as_ref())?;
            write_logits(&out, &ids, &logits, lm.model.config().vocab_size)?;
            eprintln!("{} tokens × {} logits written to {}", ids.len(), lm.model.config().vocab_size, out.display());
        }
        LmAction::Generate { run, max_new_tokens } => {
            let Loaded { lm, lora, ids } = load(&run)?;
            let generated = lm.generate(&[ids], max_new_tokens, lora.as_ref())?;
            println!("{}", lm.decode(&generated[0])?);
        }
    }
    Ok(())
}

fn write_logits(out: &Path, ids: &[u32], logits: &[f32], vocab: usize) -> Result<()> {
    use safetensors::{Dtype, tensor::TensorView};
    let id_bytes: Vec<u8> = ids.iter().flat_map(|&i| i64::from(i).to_le_bytes()).collect();
    let logit_bytes: Vec<u8> = logits.iter().flat_map(|v| v.to_le_bytes()).collect();
    let views = vec![
        ("ids", TensorView::new(Dtype::I64, vec![ids.len()], &id_bytes)?),
        ("logits", TensorView::new(Dtype::F32, vec![ids.len(), vocab], &logit_bytes)?),
    ];
    let bytes = safetensors::serialize(views, None)?;
    std::fs::write(out, bytes).with_context(|| format!("writing {}", out.display()))
}
