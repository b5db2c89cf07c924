//! The base code LM (Qwen2.5-Coder or any Qwen2/Qwen3 causal LM) as one loaded thing: the
//! decoder with its head, the directory's own tokenizer, its stop ids, and the projection
//! shapes adapters are checked against. Adapters are attached per call, so one loaded base
//! serves every adapter (and none) side by side.

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use crate::encoder::qwen3::Tokenize;
use crate::nn::tensor::host;
use crate::peft::PeftAdapter;
use crate::tokenizer::QwenTokenizer;
use crate::transformer::{Generated, Greedy, Head, Input, Lora, Qwen, greedy_until};
use crate::{AdapterWeights, BaseModelShapes, ModelError};

pub struct LanguageModel {
    dir: PathBuf,
    pub model: Qwen,
    pub tokenizer: QwenTokenizer,
    pub shapes: BaseModelShapes,
    /// Ids that end a generation: `generation_config.json`'s `eos_token_id` (one or a list),
    /// else `config.json`'s, else `<|endoftext|>`.
    pub stop: Vec<u32>,
    /// The id fed where nothing is: the pad id of the configs, else the first stop id.
    pub pad: u32,
}

impl LanguageModel {
    /// Loads a Hugging Face causal-LM directory: `config.json`, the weights, `tokenizer.json`.
    pub fn load(dir: &Path, device: &Device) -> Result<LanguageModel, ModelError> {
        let model = Qwen::load(dir, Head::CausalLm, device)?;
        let tokenizer = QwenTokenizer::from_file(&dir.join("tokenizer.json"))?;
        let mut shapes = BaseModelShapes::from_config_json(&dir.join("config.json"))?;
        if shapes.name == "unknown" || shapes.name.is_empty() {
            shapes.name = dir.display().to_string();
        }
        let ids = |file: &str, key: &str| -> Vec<u32> {
            let Ok(text) = std::fs::read(dir.join(file)) else { return Vec::new() };
            let Ok(json) = serde_json::from_slice::<serde_json::Value>(&text) else { return Vec::new() };
            match &json[key] {
                serde_json::Value::Number(n) => n.as_u64().map(|v| vec![v as u32]).unwrap_or_default(),
                serde_json::Value::Array(a) => a.iter().filter_map(|v| v.as_u64().map(|v| v as u32)).collect(),
                _ => Vec::new(),
            }
        };
        let mut stop = ids("generation_config.json", "eos_token_id");
        if stop.is_empty() {
            stop = ids("config.json", "eos_token_id");
        }
        if stop.is_empty() {
            stop.extend(tokenizer.token_id("<|endoftext|>"));
        }
        if stop.is_empty() {
            return Err(ModelError::ModelDir { dir: dir.to_path_buf(), reason: "no eos_token_id in its configs and no <|endoftext|> token".into() });
        }
        let pad = ids("generation_config.json", "pad_token_id").into_iter().chain(ids("config.json", "pad_token_id")).next().unwrap_or(stop[0]);
        Ok(LanguageModel { dir: dir.to_path_buf(), model, tokenizer, shapes, stop, pad })
    }

    /// The same model with its weights untracked, for training through it on an autodiff
    /// device: burn then computes no gradient for them.
    pub fn frozen(mut self) -> LanguageModel {
        use burn::module::Module;
        self.model = self.model.no_grad();
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn device(&self) -> Device {
        self.model.device()
    }

    /// A PEFT directory, checked against this base, ready to attach.
    pub fn load_adapter(&self, dir: &Path) -> Result<(PeftAdapter, Lora), ModelError> {
        let adapter = PeftAdapter::load(dir, &self.shapes)?;
        let lora = Lora::from_peft(&adapter, self.shapes.num_hidden_layers, &self.device());
        Ok((adapter, lora))
    }

    /// The hypernetwork's output attached as it is, without a file in between.
    pub fn adapter_from_weights(&self, weights: &AdapterWeights) -> Lora {
        Lora::from_adapter_weights(weights, self.shapes.num_hidden_layers, &self.device())
    }

    /// Logits `[ids.len(), vocab]`, row-major, of one sequence.
    pub fn logits(&self, ids: &[u32], lora: Option<&Lora>) -> Result<Vec<f32>, ModelError> {
        self.check_ids(ids)?;
        let hidden = self.model.forward_with(&Input { ids, rows: 1, mask: None, positions: None }, None, lora);
        Ok(host(self.model.logits(hidden)?))
    }

    /// Greedy continuations of several prompts (ids), stopping at this model's stop ids.
    pub fn generate(&self, prompts: &[Vec<u32>], max_new_tokens: usize, lora: Option<&Lora>) -> Result<Vec<Generated>, ModelError> {
        self.generate_until(prompts, max_new_tokens, lora, |_, _| false)
    }

    /// [`LanguageModel::generate`], ending row `i` early once `settled(i, text so far)`.
    pub fn generate_until(&self, prompts: &[Vec<u32>], max_new_tokens: usize, lora: Option<&Lora>, mut settled: impl FnMut(usize, &str) -> bool) -> Result<Vec<Generated>, ModelError> {
        let opts = Greedy { max_new_tokens, stop: self.stop.clone(), pad: self.pad };
        greedy_until(&self.model, prompts, &opts, lora, |row, tokens| self.tokenizer.decode_with(tokens, false).is_ok_and(|text| settled(row, &text)))
    }

    pub fn encode(&self, text: &str) -> Result<Vec<u32>, ModelError> {
        self.tokenizer.encode(text, false)
    }

    /// Text of generated ids; the stop id, when there, is left out.
    pub fn decode(&self, generated: &Generated) -> Result<String, ModelError> {
        let ids = if generated.stopped { &generated.tokens[..generated.tokens.len() - 1] } else { &generated.tokens[..] };
        self.tokenizer.decode_with(ids, false)
    }

    fn check_ids(&self, ids: &[u32]) -> Result<(), ModelError> {
        let vocab = self.model.config().vocab_size;
        if ids.is_empty() {
            return Err(ModelError::Generation("the prompt has no tokens".into()));
        }
        match ids.iter().find(|&&id| id as usize >= vocab) {
            Some(id) => Err(ModelError::Generation(format!("token id {id} is outside the model's vocabulary of {vocab}"))),
            None => Ok(()),
        }
    }
}
