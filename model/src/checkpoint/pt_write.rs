//! Writes a model in the layout the Code2LoRA authors released, as `torch.save` writes it, so
//! `torch.load` (also with `weights_only=True`) and the authors' loaders read a model trained
//! here: a zip of `data.pkl` (pickle protocol 2) and one raw little-endian storage per tensor
//! under `data/<key>`, 64-byte aligned, beside `version`, `byteorder` and the format records.
//!
//! Evo: `{gru_state, head_state, head_config, gru_config, type_dims, args, per_step_input}`.
//! Static: `{state_dict, config, type_dims, args}`. State dicts are `OrderedDict`s of tensors
//! rebuilt by `torch._utils._rebuild_tensor_v2`, the only globals used besides
//! `torch.FloatStorage`, all on `weights_only`'s allow-list. An `evolora` dict records the
//! encoder, step policy and whether the model was trained, which evolora's reader takes over
//! the released files' implicit defaults.

use std::io::Write;
use std::path::Path;

use crate::meta::{Architecture, ModelMeta};
use crate::nn::{HostTensor, Weights};
use crate::{BaseModelShapes, HyperConfig, ModelError};

/// A value of the pickled object tree.
enum Value<'a> {
    Str(String),
    Bool(bool),
    Int(i64),
    Float(f64),
    List(Vec<Value<'a>>),
    /// A plain dict, keys in this order.
    Dict(Vec<(String, Value<'a>)>),
    /// `collections.OrderedDict` of tensors.
    StateDict(Vec<(String, &'a HostTensor)>),
}

/// Pickle protocol 2, the opcodes `torch.save` uses.
struct Pickler<'a> {
    out: Vec<u8>,
    /// Tensors in the order their storages were numbered.
    storages: Vec<&'a HostTensor>,
}

impl<'a> Pickler<'a> {
    fn str(&mut self, s: &str) {
        self.out.push(b'X');
        self.out.extend((s.len() as u32).to_le_bytes());
        self.out.extend(s.as_bytes());
    }

    fn int(&mut self, v: i64) {
        match v {
            0..=0xff => self.out.extend([b'K', v as u8]),
            0x100..=0xffff => {
                self.out.push(b'M');
                self.out.extend((v as u16).to_le_bytes());
            }
            _ if i32::try_from(v).is_ok() => {
                self.out.push(b'J');
                self.out.extend((v as i32).to_le_bytes());
            }
            _ => {
                // LONG1: little-endian two's complement, 8 bytes.
                self.out.extend([0x8a, 8]);
                self.out.extend(v.to_le_bytes());
            }
        }
    }

    fn global(&mut self, module: &str, name: &str) {
        self.out.push(b'c');
        self.out.extend(format!("{module}\n{name}\n").as_bytes());
    }

    fn value(&mut self, v: &Value<'a>) {
        match v {
            Value::Str(s) => self.str(s),
            Value::Int(i) => self.int(*i),
            Value::Bool(b) => self.out.push(if *b { 0x88 } else { 0x89 }),
            Value::Float(f) => {
                self.out.push(b'G');
                self.out.extend(f.to_be_bytes());
            }
            Value::List(items) => {
                self.out.extend([b']', b'(']);
                for item in items {
                    self.value(item);
                }
                self.out.push(b'e');
            }
            Value::Dict(entries) => {
                self.out.extend([b'}', b'(']);
                for (k, v) in entries {
                    self.str(k);
                    self.value(v);
                }
                self.out.push(b'u');
            }
            Value::StateDict(entries) => {
                self.global("collections", "OrderedDict");
                self.out.extend([b')', b'R', b'(']);
                for (k, t) in entries {
                    self.str(k);
                    self.tensor(t);
                }
                self.out.push(b'u');
            }
        }
    }

    /// `_rebuild_tensor_v2((storage pid), 0, size, stride, False, OrderedDict())`.
    fn tensor(&mut self, t: &'a HostTensor) {
        let key = self.storages.len();
        self.storages.push(t);
        self.global("torch._utils", "_rebuild_tensor_v2");
        self.out.push(b'(');
        // The persistent id: ('storage', FloatStorage, key, 'cpu', numel).
        self.out.push(b'(');
        self.str("storage");
        self.global("torch", "FloatStorage");
        self.str(&key.to_string());
        self.str("cpu");
        self.int(t.data.len() as i64);
        self.out.extend([b't', b'Q']);
        self.int(0);
        let mut stride = vec![1usize; t.shape.len()];
        for i in (0..t.shape.len().saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * t.shape[i + 1];
        }
        for dims in [&t.shape, &stride] {
            self.out.push(b'(');
            for &d in dims.iter() {
                self.int(d as i64);
            }
            self.out.push(b't');
        }
        self.out.push(0x89); // NEWFALSE: requires_grad
        self.global("collections", "OrderedDict");
        self.out.extend([b')', b'R', b't', b'R']);
    }
}

/// Tensors of `weights` under `prefix`, the prefix dropped (the released state-dict keys).
fn section<'a>(weights: &'a Weights, prefix: &str) -> Vec<(String, &'a HostTensor)> {
    weights.iter().filter_map(|(name, t)| name.strip_prefix(prefix).map(|n| (n.to_owned(), t))).collect()
}

/// The head's configuration as the released files record it.
fn head_config(cfg: &HyperConfig, base: &BaseModelShapes, input_dim: usize) -> Value<'static> {
    Value::Dict(vec![
        ("input_dim".into(), Value::Int(input_dim as i64)),
        ("hidden_dim".into(), Value::Int(cfg.head_hidden as i64)),
        ("rank".into(), Value::Int(cfg.rank as i64)),
        ("types".into(), Value::List(cfg.module_types.iter().map(|t| Value::Str(t.peft_name().into())).collect())),
        ("type_dims".into(), type_dims(cfg, base)),
        ("num_tasks".into(), Value::Int(cfg.num_tasks as i64)),
        ("task_dim".into(), Value::Int(cfg.task_dim as i64)),
    ])
}

fn type_dims(cfg: &HyperConfig, base: &BaseModelShapes) -> Value<'static> {
    Value::Dict(
        cfg.module_types
            .iter()
            .map(|&t| {
                let (i, o) = base.in_out(t);
                (t.peft_name().to_owned(), Value::List(vec![Value::Int(i as i64), Value::Int(o as i64)]))
            })
            .collect(),
    )
}

/// Writes `weights` (checkpoint names, PyTorch layout) to `path` in the released layout of
/// `meta.architecture`. The file appears whole or not at all.
pub fn save_pt(path: &Path, weights: &Weights, cfg: &HyperConfig, base: &BaseModelShapes, meta: &ModelMeta) -> Result<(), ModelError> {
    let args = Value::Dict(vec![("alpha".into(), Value::Float(cfg.alpha as f64)), ("rank".into(), Value::Int(cfg.rank as i64))]);
    // What the released files leave implicit (they were all trained on Qwen3 embeddings);
    // the authors' loaders ignore a key they do not know.
    let evolora = Value::Dict(vec![
        ("encoder".into(), Value::Str(meta.encoder.clone())),
        ("step_policy".into(), Value::Str(meta.step_policy.to_string())),
        ("trained".into(), Value::Bool(meta.trained)),
    ]);
    let top = match meta.architecture {
        Architecture::Evo => Value::Dict(vec![
            ("gru_state".into(), Value::StateDict(section(weights, "gru."))),
            ("head_state".into(), Value::StateDict(section(weights, "head."))),
            ("head_config".into(), head_config(cfg, base, cfg.gru_hidden)),
            (
                "gru_config".into(),
                Value::Dict(vec![
                    ("diff_input_dim".into(), Value::Int(cfg.input_dim as i64)),
                    ("repo_state_dim".into(), Value::Int(cfg.input_dim as i64)),
                    ("hidden_dim".into(), Value::Int(cfg.gru_hidden as i64)),
                ]),
            ),
            ("type_dims".into(), type_dims(cfg, base)),
            ("args".into(), args),
            ("per_step_input".into(), Value::Str("diff".into())),
            ("evolora".into(), evolora),
        ]),
        Architecture::Static => Value::Dict(vec![
            ("state_dict".into(), Value::StateDict(section(weights, "head."))),
            ("config".into(), head_config(cfg, base, cfg.input_dim)),
            ("type_dims".into(), type_dims(cfg, base)),
            ("args".into(), args),
            ("evolora".into(), evolora),
        ]),
    };
    let mut pickler = Pickler { out: vec![0x80, 2], storages: Vec::new() };
    pickler.value(&top);
    pickler.out.push(b'.');

    let write = |file: &mut std::fs::File| -> std::io::Result<()> {
        let mut zip = zip::ZipWriter::new(file);
        let stored = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).large_file(true);
        let mut record = |name: &str, bytes: &[u8], aligned: bool| -> std::io::Result<()> {
            let options = if aligned { stored.with_alignment(64) } else { stored };
            zip.start_file(format!("archive/{name}"), options)?;
            zip.write_all(bytes)
        };
        record("data.pkl", &pickler.out, false)?;
        record(".format_version", b"1", false)?;
        record(".storage_alignment", b"64", false)?;
        record("byteorder", b"little", false)?;
        for (key, t) in pickler.storages.iter().enumerate() {
            let bytes: Vec<u8> = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            record(&format!("data/{key}"), &bytes, true)?;
        }
        record("version", b"3\n", false)?;
        zip.finish()?;
        Ok(())
    };
    crate::files::replace_atomically(path, write).map_err(|e| ModelError::Checkpoint { path: path.to_path_buf(), reason: format!("writing: {e}") })
}
