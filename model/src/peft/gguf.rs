//! The adapter as a llama.cpp GGUF LoRA (`llama-server --lora`), in the form
//! `convert_lora_to_gguf.py` gives a PEFT directory: GGUF v3, `general.type = adapter`,
//! `adapter.type = lora`, `adapter.lora.alpha`, and per layer and projection
//! `blk.{i}.{attn_q|...}.weight.lora_{a,b}`.
//!
//! The tensors hold the PEFT bytes unchanged: GGUF lists dimensions innermost first, so
//! PyTorch's A [r, in] is ne [in, r] and B [out, r] is ne [r, out], which is the orientation
//! llama.cpp's loader checks. Qwen2 and Qwen3 apply no q/k permutation on conversion, so
//! nothing is permuted either. GGUF cannot point two tensors at the same bytes, so unlike
//! the safetensors file every layer's copy is written out.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::AdapterDtype;
use super::write::encode;
use crate::{AdapterWeights, BaseModelShapes, ModelError, ModuleType};

/// The GGUF adapter's file name inside an adapter directory.
pub const GGUF_FILE: &str = "adapter_model.gguf";

const MAGIC: &[u8; 4] = b"GGUF";
const VERSION: u32 = 3;
/// GGUF's default; written out as `general.alignment` too, so no reader has to assume it.
const ALIGNMENT: u64 = 32;
/// ggml's GGML_MAX_NAME, counting the terminating NUL the loader adds.
const MAX_NAME: usize = 64;

// gguf_type codes of the metadata values used here.
const TYPE_UINT32: u32 = 4;
const TYPE_FLOAT32: u32 = 6;
const TYPE_STRING: u32 = 8;

/// Projections in the order of a decoder layer, the order the tensors are written in.
const LAYER_ORDER: [ModuleType; 7] =
    [ModuleType::Q, ModuleType::K, ModuleType::V, ModuleType::O, ModuleType::Gate, ModuleType::Up, ModuleType::Down];

/// llama.cpp's name of a projection's weight (gguf-py `constants.py` templates).
fn gguf_module(module: ModuleType) -> &'static str {
    match module {
        ModuleType::Q => "attn_q",
        ModuleType::K => "attn_k",
        ModuleType::V => "attn_v",
        ModuleType::O => "attn_output",
        ModuleType::Gate => "ffn_gate",
        ModuleType::Up => "ffn_up",
        ModuleType::Down => "ffn_down",
    }
}

/// The GGUF name of one factor in one layer: `blk.3.attn_q.weight.lora_a`.
pub fn gguf_tensor_name(layer: usize, module: ModuleType, factor: char) -> String {
    format!("blk.{layer}.{}.weight.lora_{}", gguf_module(module), factor.to_ascii_lowercase())
}

/// (ggml_type, general.file_type) of a dtype.
fn ggml_types(dtype: AdapterDtype) -> (u32, u32) {
    match dtype {
        AdapterDtype::F32 => (0, 0), // GGML_TYPE_F32, LLAMA_FTYPE_ALL_F32
        AdapterDtype::F16 => (1, 1), // GGML_TYPE_F16, LLAMA_FTYPE_MOSTLY_F16
        AdapterDtype::Bf16 => (30, 32), // GGML_TYPE_BF16, LLAMA_FTYPE_MOSTLY_BF16
    }
}

fn bytes_per_value(dtype: AdapterDtype) -> u64 {
    match dtype {
        AdapterDtype::F32 => 4,
        AdapterDtype::F16 | AdapterDtype::Bf16 => 2,
    }
}

fn padding(len: u64) -> u64 {
    len.next_multiple_of(ALIGNMENT) - len
}

/// A writer that counts what went through it, for the padding and the returned size.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Counting<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn string(&mut self, s: &str) -> std::io::Result<()> {
        self.put(&(s.len() as u64).to_le_bytes())?;
        self.put(s.as_bytes())
    }

    fn kv_string(&mut self, key: &str, value: &str) -> std::io::Result<()> {
        self.string(key)?;
        self.put(&TYPE_STRING.to_le_bytes())?;
        self.string(value)
    }

    fn kv_u32(&mut self, key: &str, value: u32) -> std::io::Result<()> {
        self.string(key)?;
        self.put(&TYPE_UINT32.to_le_bytes())?;
        self.put(&value.to_le_bytes())
    }

    fn kv_f32(&mut self, key: &str, value: f32) -> std::io::Result<()> {
        self.string(key)?;
        self.put(&TYPE_FLOAT32.to_le_bytes())?;
        self.put(&value.to_le_bytes())
    }

    fn pad(&mut self) -> std::io::Result<()> {
        const ZEROS: [u8; ALIGNMENT as usize] = [0; ALIGNMENT as usize];
        let n = padding(self.written) as usize;
        self.put(&ZEROS[..n])
    }
}

/// One tensor as the file lists it; `data` indexes the per-factor encoded buffers.
struct Info {
    name: String,
    ne: [u64; 2],
    data: (usize, usize),
}

/// Writes the GGUF adapter to `path` (created or truncated), streamed from one encoded
/// buffer per factor, and fsyncs it. Returns the file's size in bytes. The base must be
/// known to be Qwen2 or Qwen3: llama.cpp refuses an adapter whose architecture differs
/// from the base's. On error a partial file may remain; [`super::write_adapter_dir_with`]
/// writes it inside a temporary directory that it removes.
pub fn write_gguf(path: &Path, weights: &AdapterWeights, base: &BaseModelShapes, dtype: AdapterDtype) -> Result<u64, ModelError> {
    let family = base.family.ok_or_else(|| ModelError::Gguf {
        path: path.into(),
        reason: format!("base `{}` is not known to be Qwen2 or Qwen3 (its config.json names neither), and llama.cpp needs the architecture", base.name),
    })?;
    let (ggml_type, file_type) = ggml_types(dtype);
    let pairs: Vec<_> = LAYER_ORDER.iter().filter_map(|m| weights.pairs.iter().find(|p| p.module == *m)).collect();
    let encoded: Vec<[Vec<u8>; 2]> = pairs.iter().map(|p| [encode(&p.a, dtype), encode(&p.b, dtype)]).collect();

    let mut infos = Vec::with_capacity(base.num_hidden_layers * pairs.len() * 2);
    for layer in 0..base.num_hidden_layers {
        for (i, pair) in pairs.iter().enumerate() {
            let (r, d_in, d_out) = (weights.rank as u64, pair.in_features as u64, pair.out_features as u64);
            infos.push(Info { name: gguf_tensor_name(layer, pair.module, 'a'), ne: [d_in, r], data: (i, 0) });
            infos.push(Info { name: gguf_tensor_name(layer, pair.module, 'b'), ne: [r, d_out], data: (i, 1) });
        }
    }
    for info in &infos {
        let (i, f) = info.data;
        let expected = info.ne[0] * info.ne[1] * bytes_per_value(dtype);
        if encoded[i][f].len() as u64 != expected {
            return Err(ModelError::Gguf { path: path.into(), reason: format!("`{}` holds {} bytes, its shape {:?} needs {expected}", info.name, encoded[i][f].len(), info.ne) });
        }
        if info.name.len() >= MAX_NAME {
            return Err(ModelError::Gguf { path: path.into(), reason: format!("tensor name `{}` is longer than llama.cpp allows", info.name) });
        }
    }

    let io_err = |source| ModelError::AdapterIo { path: path.into(), source };
    let file = File::create(path).map_err(io_err)?;
    let mut w = Counting { inner: BufWriter::with_capacity(1 << 20, file), written: 0 };
    (|| -> std::io::Result<()> {
        w.put(MAGIC)?;
        w.put(&VERSION.to_le_bytes())?;
        w.put(&(infos.len() as u64).to_le_bytes())?;
        w.put(&7u64.to_le_bytes())?; // the seven key-value pairs that follow
        w.kv_string("general.architecture", family.as_str())?;
        w.kv_string("general.type", "adapter")?;
        w.kv_string("general.name", "evolora adapter")?;
        w.kv_u32("general.alignment", ALIGNMENT as u32)?;
        w.kv_u32("general.file_type", file_type)?;
        w.kv_string("adapter.type", "lora")?;
        w.kv_f32("adapter.lora.alpha", weights.alpha)?;
        // Offsets are relative to the data section and must be exactly the running sum of
        // the padded sizes: llama.cpp refuses gaps.
        let mut offset = 0u64;
        for info in &infos {
            w.string(&info.name)?;
            w.put(&2u32.to_le_bytes())?;
            w.put(&info.ne[0].to_le_bytes())?;
            w.put(&info.ne[1].to_le_bytes())?;
            w.put(&ggml_type.to_le_bytes())?;
            w.put(&offset.to_le_bytes())?;
            let len = encoded[info.data.0][info.data.1].len() as u64;
            offset += len + padding(len);
        }
        w.pad()?;
        for info in &infos {
            w.put(&encoded[info.data.0][info.data.1])?;
            w.pad()?;
        }
        Ok(())
    })()
    .map_err(io_err)?;
    let written = w.written;
    let file = w.inner.into_inner().map_err(|e| io_err(e.into_error()))?;
    file.sync_all().map_err(io_err)?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_paper_name_fits_and_padding_rounds_up() {
        assert_eq!(gguf_tensor_name(27, ModuleType::O, 'A'), "blk.27.attn_output.weight.lora_a");
        assert_eq!((padding(0), padding(1), padding(32), padding(33)), (0, 31, 0, 31));
    }
}
