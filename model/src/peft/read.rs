//! Reading a PEFT LoRA directory for a Qwen2/Llama-style base, as PEFT and vLLM read it, and
//! refusing by name what they would refuse or, worse, silently ignore: vLLM serves the base
//! model unchanged when no tensor name matches a module, so every tensor here must land on a
//! module of the base and every target module must receive tensors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use serde_json::Value;

use super::{ADAPTER_CONFIG, ADAPTER_WEIGHTS};
use crate::floats::to_f32;
use crate::{BaseModelShapes, ModelError, ModuleType};

/// What `adapter_config.json` says that matters for the weights.
#[derive(Debug, Clone, PartialEq)]
pub struct PeftConfig {
    pub rank: usize,
    pub alpha: f64,
    /// rsLoRA scales by α/√r instead of α/r.
    pub use_rslora: bool,
    /// The projection types `target_modules` selects in the base.
    pub targets: Vec<ModuleType>,
    /// `layers_to_transform`, when the adapter covers only some layers.
    pub layers: Option<Vec<usize>>,
    pub base_model_name_or_path: Option<String>,
}

impl PeftConfig {
    /// The factor of the LoRA branch: `y = W x + scale · B (A x)`.
    pub fn scale(&self) -> f32 {
        let r = self.rank as f64;
        (if self.use_rslora { self.alpha / r.sqrt() } else { self.alpha / r }) as f32
    }

    fn transforms_layer(&self, layer: usize) -> bool {
        self.layers.as_ref().is_none_or(|l| l.contains(&layer))
    }
}

/// One module's factors in PyTorch layout, row-major: `a` [r, in], `b` [out, r].
#[derive(Debug, Clone, PartialEq)]
pub struct Factors {
    pub a: Vec<f32>,
    pub b: Vec<f32>,
    pub in_features: usize,
    pub out_features: usize,
}

/// A loaded, checked LoRA adapter: factors by (layer, projection type).
#[derive(Debug, Clone)]
pub struct PeftAdapter {
    pub dir: PathBuf,
    pub config: PeftConfig,
    pub factors: BTreeMap<(usize, ModuleType), Factors>,
}

fn fail(dir: &Path, reason: impl Into<String>) -> ModelError {
    ModelError::AdapterDir { dir: dir.to_path_buf(), reason: reason.into() }
}

impl PeftAdapter {
    /// Loads `dir` for `base`, checking names, shapes and the configuration.
    pub fn load(dir: &Path, base: &BaseModelShapes) -> Result<PeftAdapter, ModelError> {
        if !dir.is_dir() {
            return Err(fail(dir, "no such directory"));
        }
        let config = read_config(dir, base)?;
        let weights = dir.join(ADAPTER_WEIGHTS);
        if !weights.is_file() {
            let reason = if dir.join("adapter_model.bin").is_file() {
                format!("only adapter_model.bin (a pickle) is there; save it as {ADAPTER_WEIGHTS}")
            } else {
                format!("no {ADAPTER_WEIGHTS}")
            };
            return Err(fail(dir, reason));
        }
        let bytes = std::fs::read(&weights).map_err(|e| ModelError::io(&weights, e))?;
        let st = SafeTensors::deserialize(&bytes).map_err(|e| fail(dir, format!("{ADAPTER_WEIGHTS} is not readable safetensors: {e}")))?;
        // (A, B) of each module as they turn up.
        type Halves = (Option<Vec<f32>>, Option<Vec<f32>>);
        let mut halves: BTreeMap<(usize, ModuleType), Halves> = BTreeMap::new();
        // In name order, so that the first problem reported is the same on every run.
        let mut tensors = st.tensors();
        tensors.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, view) in tensors {
            let (layer, module, factor) = module_of(&name, base, &config).map_err(|why| fail(dir, format!("tensor `{name}` {why}")))?;
            let (d_in, d_out) = base.in_out(module);
            let r = config.rank;
            let expected = if factor == 'A' { [r, d_in] } else { [d_out, r] };
            let shape = view.shape();
            if shape != expected {
                let hint = if shape.len() == 2 && shape[0] == expected[1] && shape[1] == expected[0] {
                    " (transposed?)".to_string()
                } else if shape.len() == 2 && (factor == 'A' && shape[1] == d_in || factor == 'B' && shape[0] == d_out) {
                    format!(" (rank {}, but adapter_config.json says r = {r})", if factor == 'A' { shape[0] } else { shape[1] })
                } else {
                    String::new()
                };
                return Err(fail(dir, format!("tensor `{name}` has shape {shape:?}, the base's {} needs {expected:?}{hint}", module.peft_name())));
            }
            let values = to_f32(view.dtype(), view.data()).ok_or_else(|| fail(dir, format!("tensor `{name}` has unsupported dtype {:?}", view.dtype())))?;
            if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
                return Err(fail(dir, format!("tensor `{name}` holds a non-finite value ({} at {bad})", values[bad])));
            }
            let slot = halves.entry((layer, module)).or_default();
            let half = if factor == 'A' { &mut slot.0 } else { &mut slot.1 };
            if half.replace(values).is_some() {
                return Err(fail(dir, format!("tensor `{name}` appears twice")));
            }
        }
        let mut factors = BTreeMap::new();
        for ((layer, module), pair) in halves {
            let (d_in, d_out) = base.in_out(module);
            match pair {
                (Some(a), Some(b)) => {
                    factors.insert((layer, module), Factors { a, b, in_features: d_in, out_features: d_out });
                }
                (a, _) => {
                    let missing = if a.is_none() { 'A' } else { 'B' };
                    return Err(fail(dir, format!("layer {layer}'s {} has no lora_{missing} factor", module.peft_name())));
                }
            }
        }
        for &module in &config.targets {
            if !factors.keys().any(|&(_, m)| m == module) {
                return Err(fail(dir, format!("target module `{}` is listed in adapter_config.json but has no tensors", module.peft_name())));
            }
        }
        if factors.is_empty() {
            return Err(fail(dir, format!("{ADAPTER_WEIGHTS} holds no LoRA factors")));
        }
        Ok(PeftAdapter { dir: dir.to_path_buf(), config, factors })
    }

    /// Layers that carry at least one factor.
    pub fn layers(&self) -> usize {
        self.factors.keys().map(|&(l, _)| l + 1).max().unwrap_or(0)
    }
}

/// (layer, module, 'A' | 'B') of a tensor key, or why it lands on no module of the base.
fn module_of(name: &str, base: &BaseModelShapes, config: &PeftConfig) -> Result<(usize, ModuleType, char), String> {
    if name.contains("lora_embedding") || name.contains("lm_head") || name.contains("embed_tokens") {
        return Err("adapts the embedding or the LM head, which evolora does not load".into());
    }
    if name.contains("lora_magnitude_vector") {
        return Err("is a DoRA magnitude, which evolora does not load".into());
    }
    let rest = name.strip_prefix("base_model.model.model.layers.").ok_or("does not start with `base_model.model.model.layers.`: it names no module of the base (vLLM would ignore it and serve the base model)")?;
    let (layer, rest) = rest.split_once('.').ok_or("names no module")?;
    let layer: usize = layer.parse().map_err(|_| format!("has layer index `{layer}`, not a number"))?;
    if layer >= base.num_hidden_layers {
        return Err(format!("is for layer {layer}, but the base has {} layers", base.num_hidden_layers));
    }
    let (path, factor) = match rest.strip_suffix(".lora_A.weight") {
        Some(p) => (p, 'A'),
        None => match rest.strip_suffix(".lora_B.weight") {
            Some(p) => (p, 'B'),
            None => return Err("is neither `….lora_A.weight` nor `….lora_B.weight`".into()),
        },
    };
    let (block, module_name) = path.split_once('.').ok_or_else(|| format!("names `{path}`, no module of the base"))?;
    let module = ModuleType::from_peft_name(module_name).filter(|m| m.block() == block).ok_or_else(|| format!("names `{path}`, no module of the base (vLLM would ignore it and serve the base model)"))?;
    if !config.targets.contains(&module) {
        return Err(format!("is for `{module_name}`, which target_modules does not list"));
    }
    if !config.transforms_layer(layer) {
        return Err(format!("is for layer {layer}, which layers_to_transform leaves out"));
    }
    Ok((layer, module, factor))
}

fn read_config(dir: &Path, base: &BaseModelShapes) -> Result<PeftConfig, ModelError> {
    let path = dir.join(ADAPTER_CONFIG);
    let text = std::fs::read(&path).map_err(|e| if e.kind() == std::io::ErrorKind::NotFound { fail(dir, format!("no {ADAPTER_CONFIG}")) } else { ModelError::io(&path, e) })?;
    let json: Value = serde_json::from_slice(&text).map_err(|e| fail(dir, format!("{ADAPTER_CONFIG} is not JSON: {e}")))?;
    let bad = |reason: String| fail(dir, format!("{ADAPTER_CONFIG}: {reason}"));
    let field = |key: &str| json.get(key).filter(|v| !v.is_null());
    match field("peft_type").and_then(Value::as_str) {
        Some("LORA") => {}
        other => return Err(bad(format!("peft_type is {other:?}, not \"LORA\""))),
    }
    let rank = field("r").and_then(Value::as_u64).filter(|&r| r > 0).ok_or_else(|| bad("`r` must be a positive integer".into()))? as usize;
    let alpha = field("lora_alpha").and_then(Value::as_f64).filter(|a| a.is_finite() && *a > 0.0).ok_or_else(|| bad("`lora_alpha` must be a positive number".into()))?;
    let flag = |key: &str| field(key).and_then(Value::as_bool).unwrap_or(false);
    if flag("use_dora") {
        return Err(bad("DoRA (`use_dora`) is not supported".into()));
    }
    if flag("fan_in_fan_out") {
        return Err(bad("`fan_in_fan_out` is for GPT-2 style Conv1D layers; Qwen's are Linear".into()));
    }
    if let Some(bias) = field("bias").and_then(Value::as_str).filter(|b| *b != "none") {
        return Err(bad(format!("bias = \"{bias}\" (trained biases) is not supported")));
    }
    for key in ["rank_pattern", "alpha_pattern"] {
        if field(key).and_then(Value::as_object).is_some_and(|m| !m.is_empty()) {
            return Err(bad(format!("`{key}` (per-module ranks or alphas) is not supported")));
        }
    }
    if field("modules_to_save").and_then(Value::as_array).is_some_and(|m| !m.is_empty()) {
        return Err(bad("`modules_to_save` (fully trained extra modules) is not supported".into()));
    }
    let targets = targets(field("target_modules"), base).map_err(bad)?;
    let layers = match field("layers_to_transform") {
        None => None,
        Some(Value::Number(n)) => Some(vec![n.as_u64().ok_or_else(|| bad("`layers_to_transform` is not a layer index".into()))? as usize]),
        Some(Value::Array(a)) => Some(a.iter().map(|v| v.as_u64().map(|l| l as usize)).collect::<Option<Vec<_>>>().ok_or_else(|| bad("`layers_to_transform` holds a non-index".into()))?),
        Some(other) => return Err(bad(format!("`layers_to_transform` is {other}, not a list of layers"))),
    };
    let base_model_name_or_path = field("base_model_name_or_path").and_then(Value::as_str).map(str::to_owned);
    Ok(PeftConfig { rank, alpha, use_rslora: flag("use_rslora"), targets, layers, base_model_name_or_path })
}

/// The projection types `target_modules` selects. PEFT matches a list entry against a
/// module's full name exactly or as its last dotted components, and a string as a regular
/// expression over the whole name; an entry that selects nothing here would leave the base
/// model unchanged in that place, so it is refused by name.
fn targets(value: Option<&Value>, base: &BaseModelShapes) -> Result<Vec<ModuleType>, String> {
    let full_names = |module: ModuleType| (0..base.num_hidden_layers).map(move |l| format!("model.layers.{l}.{}.{}", module.block(), module.peft_name()));
    let mut selected = Vec::new();
    match value {
        Some(Value::Array(entries)) if !entries.is_empty() => {
            for entry in entries {
                let entry = entry.as_str().ok_or_else(|| format!("target_modules holds {entry}, not a module name"))?;
                let matched: Vec<ModuleType> = ModuleType::ALL
                    .into_iter()
                    .filter(|&m| full_names(m).any(|n| n == entry || n.ends_with(&format!(".{entry}"))))
                    .collect();
                if matched.is_empty() {
                    return Err(format!("target module `{entry}` matches no module of the base model (vLLM would serve the base model there)"));
                }
                selected.extend(matched);
            }
        }
        Some(Value::String(pattern)) => {
            let re = regex::Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("target_modules pattern does not compile: {e}"))?;
            selected.extend(ModuleType::ALL.into_iter().filter(|&m| full_names(m).any(|n| re.is_match(&n))));
            if selected.is_empty() {
                return Err(format!("target_modules pattern `{pattern}` matches no module of the base model (vLLM would serve the base model)"));
            }
        }
        _ => return Err("`target_modules` must be a non-empty list of module names or a pattern".into()),
    }
    selected.sort();
    selected.dedup();
    Ok(selected)
}
