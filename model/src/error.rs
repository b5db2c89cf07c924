use std::path::PathBuf;

/// Everything that can go wrong inside the model crate.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("unknown model preset `{0}` (known: {1})")]
    UnknownPreset(String, String),
    #[error("unknown base model `{0}`: give a built-in preset ({1}) or a path to a Hugging Face config.json")]
    UnknownBase(String, String),
    #[error("base model config {path}: {reason}")]
    BaseConfig { path: PathBuf, reason: String },
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("checkpoint tensor `{name}` has shape {found:?}, the configuration expects {expected:?}")]
    ShapeMismatch { name: String, found: Vec<usize>, expected: Vec<usize> },
    #[error("checkpoint is missing tensor `{0}`")]
    MissingTensor(String),
    #[error("checkpoint has tensor `{name}`, which architecture {architecture} does not use")]
    UnexpectedTensor { name: String, architecture: &'static str },
    #[error("checkpoint {path}: metadata `{key}`: {source}")]
    CheckpointMetadata { path: PathBuf, key: &'static str, source: Box<ModelError> },
    #[error("checkpoint {path}: its metadata says {claimed}, its tensors are those of {found}")]
    ArchitectureMismatch { path: PathBuf, claimed: &'static str, found: &'static str },
    #[error("this model was loaded without its language-model head, so it has no logits")]
    NoLmHead,
    #[error("tokenizer {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    #[error("model directory {dir}: {reason}")]
    ModelDir { dir: PathBuf, reason: String },
    #[error("{path}: unsupported model `{found}` (supported: Qwen2 and Qwen3 decoders)")]
    UnsupportedModel { path: PathBuf, found: String },
    #[error("{path}: {reason}")]
    ModelConfig { path: PathBuf, reason: String },
    #[error("unknown architecture `{0}` (code2lora-evo, code2lora-static)")]
    UnknownArchitecture(String),
    #[error("unknown step policy `{0}` (every-commit, paper)")]
    UnknownStepPolicy(String),
    #[error("unknown adapter dtype `{0}` (f32, bf16, f16)")]
    UnknownAdapterDtype(String),
    #[error("checkpoint was trained with encoder `{checkpoint}`, but the configuration uses `{configured}`")]
    EncoderMismatch { checkpoint: String, configured: String },
    #[error("vector has {found} values, the model expects {expected}")]
    InputDim { found: usize, expected: usize },
    #[error("device `{0}`: {1}")]
    Device(String, String),
    #[error("writing adapter to {path}: {source}")]
    AdapterIo { path: PathBuf, source: std::io::Error },
    #[error("GGUF adapter {path}: {reason}")]
    Gguf { path: PathBuf, reason: String },
    #[error("adapter {dir}: {reason}")]
    AdapterDir { dir: PathBuf, reason: String },
    #[error("generation: {0}")]
    Generation(String),
    #[error("training: {0}")]
    Training(String),
    #[error("safetensors: {0}")]
    Safetensors(String),
    #[error("io error on {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io { path: path.into(), source }
    }
}
