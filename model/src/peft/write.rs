//! Writing an adapter directory: assembled under a temporary name beside its final place,
//! fsynced, and renamed into place, so a reader sees either nothing or all of it.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::gguf::{GGUF_FILE, write_gguf};
use super::{ADAPTER_CONFIG, ADAPTER_WEIGHTS, tensor_key};
use crate::floats::{f32_to_bf16, f32_to_f16};
use crate::hypernet::head::LoraPair;
use crate::{AdapterWeights, BaseModelShapes, ModelError, ModuleType};

/// Prefix of temporary adapter directories; anything carrying it is an unfinished write
/// that recovery may delete.
pub const TEMP_PREFIX: &str = ".tmp-";

/// The float type adapter tensors are written in. Parsing (and deserialising, so that a
/// configuration file can hold one) accepts the short and the long names in any case and
/// refuses anything else rather than falling back to f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum AdapterDtype {
    #[default]
    F32,
    Bf16,
    F16,
}

impl AdapterDtype {
    pub fn as_str(self) -> &'static str {
        match self {
            AdapterDtype::F32 => "f32",
            AdapterDtype::Bf16 => "bf16",
            AdapterDtype::F16 => "f16",
        }
    }
}

impl std::fmt::Display for AdapterDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for AdapterDtype {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, ModelError> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(AdapterDtype::F32),
            "bf16" | "bfloat16" => Ok(AdapterDtype::Bf16),
            "f16" | "float16" => Ok(AdapterDtype::F16),
            other => Err(ModelError::UnknownAdapterDtype(other.into())),
        }
    }
}

impl TryFrom<String> for AdapterDtype {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self, ModelError> {
        s.parse()
    }
}

/// Little-endian bytes of `values` in `dtype`: the same bytes in safetensors and GGUF.
pub(super) fn encode(values: &[f32], dtype: AdapterDtype) -> Vec<u8> {
    // Sized up front: collecting a flat_map grows the buffer as it goes.
    let mut out = Vec::with_capacity(values.len() * safetensors_dtype(dtype).1);
    match dtype {
        AdapterDtype::F32 => values.iter().for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        AdapterDtype::Bf16 => values.iter().for_each(|v| out.extend_from_slice(&f32_to_bf16(*v).to_le_bytes())),
        AdapterDtype::F16 => values.iter().for_each(|v| out.extend_from_slice(&f32_to_f16(*v).to_le_bytes())),
    }
    out
}

/// `adapter_config.json` for a LoRA over the given types.
pub fn adapter_config(weights: &AdapterWeights, base: &BaseModelShapes) -> serde_json::Value {
    let targets: Vec<&str> = weights.pairs.iter().map(|p| p.module.peft_name()).collect();
    serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "r": weights.rank,
        "lora_alpha": weights.alpha,
        "lora_dropout": 0.0,
        "bias": "none",
        "target_modules": targets,
        "base_model_name_or_path": base.name,
        "inference_mode": true,
        "use_rslora": false,
        "use_dora": false,
        "fan_in_fan_out": false,
        "modules_to_save": null,
        "init_lora_weights": true,
        "layers_to_transform": null,
        "layers_pattern": null,
        "rank_pattern": {},
        "alpha_pattern": {},
        "revision": null
    })
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    File::open(path)?.sync_all()
}

fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Formats written beside the PEFT pair, which is always written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Formats {
    /// `adapter_model.gguf`, the llama.cpp LoRA ([`super::gguf`]); needs a base known to be
    /// Qwen2 or Qwen3.
    pub gguf: bool,
}

/// Writes the adapter into `final_dir`, which must not exist yet. Extra files (name, bytes)
/// are written beside the PEFT files. On error the temporary directory is removed and
/// nothing appears at `final_dir`.
pub fn write_adapter_dir(
    final_dir: &Path,
    weights: &AdapterWeights,
    base: &BaseModelShapes,
    dtype: AdapterDtype,
    extra_files: &[(&str, Vec<u8>)],
) -> Result<PathBuf, ModelError> {
    write_adapter_dir_with(final_dir, weights, base, dtype, extra_files, Formats::default())
}

/// [`write_adapter_dir`], also writing the `formats` asked for inside the same temporary
/// directory, so that they appear together with the PEFT files or not at all.
pub fn write_adapter_dir_with(
    final_dir: &Path,
    weights: &AdapterWeights,
    base: &BaseModelShapes,
    dtype: AdapterDtype,
    extra_files: &[(&str, Vec<u8>)],
    formats: Formats,
) -> Result<PathBuf, ModelError> {
    let layout: Vec<(ModuleType, usize, usize)> = weights.pairs.iter().map(|p| (p.module, p.in_features, p.out_features)).collect();
    let mut writer = AdapterDirWriter::begin(final_dir, &layout, weights.rank, base.num_hidden_layers, dtype)?;
    for pair in &weights.pairs {
        writer.put(pair)?;
    }
    writer.finish(weights, base, extra_files, formats)
}

/// An adapter directory written while its adapter is being generated: [`AdapterDirWriter::begin`]
/// lays out `adapter_model.safetensors` from the shapes alone, [`AdapterDirWriter::put`]
/// writes each projection type's factors as they come, in any order (every layer's copy, at
/// the type's place in the file), and
/// [`AdapterDirWriter::finish`] adds the other files, fsyncs and renames the directory into
/// place. Dropped unfinished, it removes its temporary directory.
///
/// The weights file's data is ordered by type, then A for every layer, then B for every layer;
/// the header (a safetensors header with `format = pt`) gives each tensor's offsets, so
/// readers do not depend on the order.
///
/// Where every tensor fills whole 4 KiB blocks (real bases at rank 16), the file is written
/// with direct I/O on a thread of its own: the bytes go from one aligned buffer per factor to
/// the disk without being copied into the page cache (that copy cost as much as the head
/// itself on the VMs measured), while the head computes the next type. Otherwise, or where
/// the file system refuses direct I/O, writes are buffered and their writeback started early.
pub struct AdapterDirWriter {
    final_dir: PathBuf,
    tmp: PathBuf,
    sink: Sink,
    /// Where each of `layout`'s types starts in the file (its A for every layer, then its B),
    /// as the header lays them out.
    type_starts: Vec<u64>,
    dtype: AdapterDtype,
    rank: usize,
    layers: usize,
    layout: Vec<(ModuleType, usize, usize)>,
    /// Which of `layout`'s types were put.
    put: Vec<bool>,
    finished: bool,
}

/// Block size direct writes are aligned to (offsets, lengths and memory).
const DIRECT_BLOCK: usize = 4096;

enum Sink {
    Buffered(File),
    Direct {
        file: std::sync::Arc<File>,
        jobs: Option<std::sync::mpsc::Sender<DirectWrite>>,
        thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    },
}

/// `copies` copies of `bytes`, back to back from `offset`.
struct DirectWrite {
    bytes: AlignedBytes,
    offset: u64,
    copies: usize,
}

impl DirectWrite {
    fn run(&self, file: &File) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        // Every copy in one request: the block layer splits it into large pieces in flight
        // together, where one write per copy waited for each (20-30 % faster here).
        let done = match write_copies_at(file, &self.bytes, self.copies, self.offset) {
            Ok(n) => n,
            // A device whose blocks are larger than ours, or a file system that accepts
            // O_DIRECT at open and not at write: on without it.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && stop_direct(file) => 0,
            Err(e) => return Err(e),
        };
        // What a short write left, copy by copy (a short direct write ends on a block).
        let len = self.bytes.len();
        let (first, skip) = (done / len.max(1), done % len.max(1));
        for copy in first..self.copies {
            let from = if copy == first { skip } else { 0 };
            let at = self.offset + (copy * len + from) as u64;
            match file.write_all_at(&self.bytes[from..], at) {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) && stop_direct(file) => file.write_all_at(&self.bytes[from..], at)?,
                other => other?,
            }
        }
        Ok(())
    }
}

/// `copies` copies of `bytes` back to back at `offset`, in one `pwritev`; the bytes written.
#[cfg(target_os = "linux")]
fn write_copies_at(file: &File, bytes: &[u8], copies: usize, offset: u64) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let iov: Vec<libc::iovec> = (0..copies).map(|_| libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() }).collect();
    loop {
        // SAFETY: every iovec points at `bytes`, alive and unchanged for the call; the kernel
        // only reads them. `copies` is the layer count, far below IOV_MAX.
        let n = unsafe { libc::pwritev(file.as_raw_fd(), iov.as_ptr(), iov.len() as libc::c_int, offset as libc::off_t) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Elsewhere the copies are written one by one (by the caller).
#[cfg(not(target_os = "linux"))]
fn write_copies_at(_file: &File, _bytes: &[u8], _copies: usize, _offset: u64) -> std::io::Result<usize> {
    Ok(0)
}

/// Turns direct I/O off for `file`; whether it was on.
#[cfg(not(target_os = "linux"))]
fn stop_direct(_file: &File) -> bool {
    false
}

/// Turns direct I/O off for `file`; whether it was on.
#[cfg(target_os = "linux")]
fn stop_direct(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on an open descriptor with F_GETFL/F_SETFL.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && flags & libc::O_DIRECT != 0 && libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) == 0
    }
}

/// A zeroed byte buffer aligned to [`DIRECT_BLOCK`], as direct I/O requires.
struct AlignedBytes {
    ptr: std::ptr::NonNull<u8>,
    len: usize,
}

// SAFETY: the buffer is owned, and only read after it is filled.
unsafe impl Send for AlignedBytes {}

impl AlignedBytes {
    fn layout(len: usize) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(len.max(DIRECT_BLOCK), DIRECT_BLOCK).expect("valid layout")
    }

    fn zeroed(len: usize) -> Self {
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { std::alloc::alloc_zeroed(Self::layout(len)) };
        let ptr = std::ptr::NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(Self::layout(len)));
        AlignedBytes { ptr, len }
    }

    fn from_slice(bytes: &[u8]) -> Self {
        let mut out = Self::zeroed(bytes.len());
        out.as_mut().copy_from_slice(bytes);
        out
    }

    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: `len` bytes were allocated for this pointer and are owned here.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::Deref for AlignedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: as in `as_mut`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBytes {
    fn drop(&mut self) {
        // SAFETY: allocated in `zeroed` with this layout.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.len)) }
    }
}

impl AdapterDirWriter {
    pub fn begin(final_dir: &Path, layout: &[(ModuleType, usize, usize)], rank: usize, layers: usize, dtype: AdapterDtype) -> Result<Self, ModelError> {
        let parent = final_dir.parent().ok_or_else(|| ModelError::AdapterIo {
            path: final_dir.into(),
            source: std::io::Error::other("adapter directory has no parent"),
        })?;
        fs::create_dir_all(parent).map_err(io_err(parent))?;
        let name = final_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let tmp = parent.join(format!(
            "{TEMP_PREFIX}{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
        ));
        fs::create_dir(&tmp).map_err(io_err(&tmp))?;
        let path = tmp.join(ADAPTER_WEIGHTS);
        let (_, width) = safetensors_dtype(dtype);
        let aligned = layout.iter().all(|&(_, i, o)| (rank * i * width).is_multiple_of(DIRECT_BLOCK) && (o * rank * width).is_multiple_of(DIRECT_BLOCK));
        let direct = if aligned && std::env::var_os("EVOLORA_BUFFERED_WRITES").is_none() { open_direct(&path) } else { None };
        let sink = match direct {
            Some(file) => Ok(Sink::direct(file)),
            None => File::create(&path).map(Sink::Buffered).map_err(io_err(&path)),
        };
        let sink = match sink {
            Ok(s) => s,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let mut writer = AdapterDirWriter {
            final_dir: final_dir.to_path_buf(),
            tmp,
            sink,
            type_starts: Vec::new(),
            dtype,
            rank,
            layers,
            layout: layout.to_vec(),
            put: vec![false; layout.len()],
            finished: false,
        };
        let (header, starts) = writer.header();
        writer.type_starts = starts.iter().map(|s| header.len() as u64 + s).collect();
        writer.write(header, 0, 1).map_err(io_err(&path))?;
        Ok(writer)
    }

    /// The safetensors header: its length (u64 LE) and JSON, padded with spaces to 8 bytes
    /// (to a whole block for direct writes, so that the data stays aligned).
    /// Also returns where each type's data starts within the data section.
    fn header(&self) -> (Vec<u8>, Vec<u64>) {
        let (dtype, width) = safetensors_dtype(self.dtype);
        let mut entries = serde_json::Map::new();
        entries.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
        let mut offset = 0usize;
        let mut starts = Vec::with_capacity(self.layout.len());
        for &(module, i, o) in &self.layout {
            starts.push(offset as u64);
            for (factor, shape) in [('A', [self.rank, i]), ('B', [o, self.rank])] {
                let bytes = shape[0] * shape[1] * width;
                for layer in 0..self.layers {
                    entries.insert(tensor_key(layer, module, factor), serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes]}));
                    offset += bytes;
                }
            }
        }
        let mut json = serde_json::to_vec(&entries).expect("json");
        let unit = if matches!(self.sink, Sink::Direct { .. }) { DIRECT_BLOCK } else { 8 };
        while !(json.len() + 8).is_multiple_of(unit) {
            json.push(b' ');
        }
        let mut out = (json.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&json);
        (out, starts)
    }

    /// `copies` copies of `bytes` at `offset` of the file.
    fn write(&mut self, bytes: Vec<u8>, offset: u64, copies: usize) -> std::io::Result<()> {
        match &mut self.sink {
            Sink::Buffered(file) => {
                use std::os::unix::fs::FileExt;
                for copy in 0..copies {
                    file.write_all_at(&bytes, offset + (copy * bytes.len()) as u64)?;
                }
                start_writeback(file, offset, (bytes.len() * copies) as u64);
                Ok(())
            }
            Sink::Direct { file, jobs, .. } => {
                let job = DirectWrite { bytes: AlignedBytes::from_slice(&bytes), offset, copies };
                match jobs {
                    // A send fails only once the thread stopped at an error, which `finish`
                    // reports.
                    Some(jobs) => {
                        let _ = jobs.send(job);
                        Ok(())
                    }
                    None => job.run(file),
                }
            }
        }
    }

    /// Writes one projection type's factors, every layer's copy, at the type's place in the
    /// file: the types may come in any order, each once.
    pub fn put(&mut self, pair: &LoraPair) -> Result<(), ModelError> {
        let path = self.tmp.join(ADAPTER_WEIGHTS);
        let Some(k) = self.layout.iter().position(|&(m, _, _)| m == pair.module) else {
            return Err(ModelError::AdapterIo { path, source: std::io::Error::other(format!("{:?} is not in the adapter's layout", pair.module)) });
        };
        let (_, i, o) = self.layout[k];
        if self.put[k] {
            return Err(ModelError::AdapterIo { path, source: std::io::Error::other(format!("{:?} was already written", pair.module)) });
        }
        if (pair.in_features, pair.out_features) != (i, o) || pair.a.len() != self.rank * i || pair.b.len() != o * self.rank {
            return Err(ModelError::AdapterIo { path, source: std::io::Error::other(format!("{:?} does not have the layout's shape", pair.module)) });
        }
        let mut offset = self.type_starts[k];
        for values in [&pair.a, &pair.b] {
            let bytes = encode(values, self.dtype);
            let len = bytes.len() as u64;
            self.write(bytes, offset, self.layers).map_err(io_err(&path))?;
            offset += len * self.layers as u64;
        }
        self.put[k] = true;
        Ok(())
    }

    /// Writes `adapter_config.json`, the `extra_files` and the `formats`, makes everything
    /// durable and renames the directory into place. `weights` must be the pairs put.
    pub fn finish(mut self, weights: &AdapterWeights, base: &BaseModelShapes, extra_files: &[(&str, Vec<u8>)], formats: Formats) -> Result<PathBuf, ModelError> {
        let tmp = self.tmp.clone();
        if !self.put.iter().all(|&p| p) {
            return Err(ModelError::AdapterIo { path: tmp, source: std::io::Error::other("the adapter's projection types were not all written") });
        }
        let weights_path = tmp.join(ADAPTER_WEIGHTS);
        self.sink.drain().map_err(io_err(&weights_path))?;
        self.sink.file().sync_all().map_err(io_err(&weights_path))?;
        if formats.gguf {
            write_gguf(&tmp.join(GGUF_FILE), weights, base, self.dtype)?;
        }
        let config = serde_json::to_vec_pretty(&adapter_config(weights, base)).expect("json");
        let p = tmp.join(ADAPTER_CONFIG);
        write_file(&p, &config).map_err(io_err(&p))?;
        for (file, bytes) in extra_files {
            let p = tmp.join(file);
            write_file(&p, bytes).map_err(io_err(&p))?;
        }
        sync_dir(&tmp).map_err(io_err(&tmp))?;
        let final_dir = self.final_dir.clone();
        if final_dir.exists() {
            return Err(ModelError::AdapterIo {
                path: final_dir,
                source: std::io::Error::new(std::io::ErrorKind::AlreadyExists, "adapter directories are immutable"),
            });
        }
        fs::rename(&tmp, &final_dir).map_err(io_err(&final_dir))?;
        self.finished = true;
        let parent = final_dir.parent().expect("checked in begin");
        sync_dir(parent).map_err(io_err(parent))?;
        Ok(final_dir)
    }
}

impl Sink {
    fn direct(file: File) -> Sink {
        let file = std::sync::Arc::new(file);
        let (tx, rx) = std::sync::mpsc::channel::<DirectWrite>();
        let on_thread = file.clone();
        let thread = std::thread::Builder::new().name("evolora-adapter-write".into()).spawn(move || {
            for job in rx {
                job.run(&on_thread)?;
            }
            Ok(())
        });
        match thread {
            Ok(handle) => Sink::Direct { file, jobs: Some(tx), thread: Some(handle) },
            // No thread: the same writes on the caller's (see `drain`).
            Err(_) => Sink::Direct { file, jobs: None, thread: None },
        }
    }

    fn file(&self) -> &File {
        match self {
            Sink::Buffered(f) => f,
            Sink::Direct { file, .. } => file,
        }
    }

    /// Waits for every write handed to the writing thread; its first error.
    fn drain(&mut self) -> std::io::Result<()> {
        if let Sink::Direct { jobs, thread, .. } = self {
            jobs.take();
            if let Some(handle) = thread.take() {
                return handle.join().unwrap_or_else(|_| Err(std::io::Error::other("the adapter writing thread panicked")));
            }
        }
        Ok(())
    }
}

impl Drop for AdapterDirWriter {
    fn drop(&mut self) {
        let _ = self.sink.drain();
        if !self.finished {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

/// The safetensors name of `dtype` and its width in bytes.
fn safetensors_dtype(dtype: AdapterDtype) -> (&'static str, usize) {
    match dtype {
        AdapterDtype::F32 => ("F32", 4),
        AdapterDtype::Bf16 => ("BF16", 2),
        AdapterDtype::F16 => ("F16", 2),
    }
}

/// The weights file opened for direct I/O, where the platform and file system allow it.
#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().write(true).create_new(true).custom_flags(libc::O_DIRECT).open(path).ok()
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path) -> Option<File> {
    None
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> ModelError + use<> {
    let path = path.to_path_buf();
    move |source| ModelError::AdapterIo { path: path.clone(), source }
}

/// Asks the kernel to start writing `len` bytes at `offset` back to disk now, so that the
/// final fsync finds most of the file already there.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range on an open descriptor with in-range values; failure only means
    // no early writeback, which the final fsync covers.
    unsafe { libc::sync_file_range(file.as_raw_fd(), offset as i64, len as i64, libc::SYNC_FILE_RANGE_WRITE) };
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}


#[cfg(test)]
mod tests {
    use super::*;

    fn weights() -> AdapterWeights {
        let pair = |module, i: usize, o: usize, seed: f32| LoraPair {
            module,
            in_features: i,
            out_features: o,
            a: (0..3 * i).map(|k| seed + k as f32 * 0.25).collect(),
            b: (0..o * 3).map(|k| -seed - k as f32 * 0.5).collect(),
        };
        AdapterWeights { rank: 3, alpha: 6.0, pairs: vec![pair(ModuleType::Q, 5, 7, 1.0), pair(ModuleType::Down, 11, 5, 2.0)] }
    }

    fn base() -> BaseModelShapes {
        BaseModelShapes {
            name: "test/b".into(),
            hidden_size: 5,
            intermediate_size: 11,
            num_attention_heads: 1,
            num_key_value_heads: 1,
            head_dim: 5,
            num_hidden_layers: 4,
            family: None,
        }
    }

    /// The streamed file is a valid safetensors file (the crate's own checks: header, no
    /// holes, no overlaps) holding every layer's copy of each factor, in every dtype.
    #[test]
    fn the_streamed_weights_file_reads_back_exactly() {
        let tmp = tempfile::tempdir().unwrap();
        let w = weights();
        for dtype in [AdapterDtype::F32, AdapterDtype::Bf16, AdapterDtype::F16] {
            let dir = write_adapter_dir(&tmp.path().join(dtype.as_str()), &w, &base(), dtype, &[]).unwrap();
            let bytes = fs::read(dir.join(ADAPTER_WEIGHTS)).unwrap();
            let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            assert_eq!(file.len(), 4 * 2 * 2);
            for layer in 0..4 {
                for pair in &w.pairs {
                    for (factor, values, shape) in [('A', &pair.a, [3, pair.in_features]), ('B', &pair.b, [pair.out_features, 3])] {
                        let t = file.tensor(&tensor_key(layer, pair.module, factor)).unwrap();
                        assert_eq!(t.shape(), shape);
                        assert_eq!(t.data(), encode(values, dtype).as_slice(), "{layer} {:?} {factor} {dtype}", pair.module);
                    }
                }
            }
            let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
            assert_eq!(metadata.metadata().as_ref().and_then(|m| m.get("format")).map(String::as_str), Some("pt"));
        }
    }

    /// Block-sized tensors take the direct path where the file system allows it, and the
    /// file reads back the same (header padded to a block, every copy in place).
    #[test]
    fn direct_writes_read_back_exactly() {
        let tmp = tempfile::tempdir().unwrap();
        let pair = |module, i: usize, o: usize, seed: f32| LoraPair {
            module,
            in_features: i,
            out_features: o,
            a: (0..16 * i).map(|k| seed + k as f32 * 0.125).collect(),
            b: (0..o * 16).map(|k| seed - k as f32).collect(),
        };
        let w = AdapterWeights { rank: 16, alpha: 32.0, pairs: vec![pair(ModuleType::Q, 256, 256, 1.0), pair(ModuleType::Up, 256, 512, 3.0)] };
        let layout: Vec<_> = w.pairs.iter().map(|p| (p.module, p.in_features, p.out_features)).collect();
        let can_direct = open_direct(&tmp.path().join("probe")).is_some();
        let final_dir = tmp.path().join("v");
        let mut writer = AdapterDirWriter::begin(&final_dir, &layout, 16, 3, AdapterDtype::F32).unwrap();
        assert_eq!(matches!(writer.sink, Sink::Direct { .. }), can_direct);
        // Largest first, as the head makes them: each type still lands at its own place.
        for p in w.pairs.iter().rev() {
            writer.put(p).unwrap();
        }
        let dir = writer.finish(&w, &base(), &[], Formats::default()).unwrap();
        let bytes = fs::read(dir.join(ADAPTER_WEIGHTS)).unwrap();
        let mut in_order = AdapterDirWriter::begin(&tmp.path().join("in-order"), &layout, 16, 3, AdapterDtype::F32).unwrap();
        for p in &w.pairs {
            in_order.put(p).unwrap();
        }
        let in_order = in_order.finish(&w, &base(), &[], Formats::default()).unwrap();
        assert!(fs::read(in_order.join(ADAPTER_WEIGHTS)).unwrap() == bytes, "the same file whatever order the types came in");
        if can_direct {
            assert!((u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize + 8).is_multiple_of(DIRECT_BLOCK), "data starts on a block");
        }
        let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        for layer in 0..3 {
            for p in &w.pairs {
                assert_eq!(file.tensor(&tensor_key(layer, p.module, 'A')).unwrap().data(), encode(&p.a, AdapterDtype::F32).as_slice());
                assert_eq!(file.tensor(&tensor_key(layer, p.module, 'B')).unwrap().data(), encode(&p.b, AdapterDtype::F32).as_slice());
            }
        }
    }

    #[test]
    fn direct_io_can_be_turned_off_on_an_open_file() {
        let tmp = tempfile::tempdir().unwrap();
        let Some(file) = open_direct(&tmp.path().join("f")) else { return };
        assert!(stop_direct(&file), "it was on");
        assert!(!stop_direct(&file), "and is off now");
        std::os::unix::fs::FileExt::write_all_at(&file, b"unaligned", 3).unwrap();
    }

    #[test]
    fn an_unfinished_or_misfed_writer_leaves_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let w = weights();
        let layout: Vec<_> = w.pairs.iter().map(|p| (p.module, p.in_features, p.out_features)).collect();
        let final_dir = tmp.path().join("v");
        let mut writer = AdapterDirWriter::begin(&final_dir, &layout, 3, 4, AdapterDtype::F32).unwrap();
        writer.put(&w.pairs[1]).unwrap();
        assert!(writer.put(&w.pairs[1]).is_err(), "each type once");
        let mut misshapen = w.pairs[0].clone();
        misshapen.b.pop();
        assert!(writer.put(&misshapen).is_err(), "the layout's shapes");
        assert!(writer.finish(&w, &base(), &[], Formats::default()).is_err(), "a type is missing");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0, "no directory, no temporary one");
    }

    #[test]
    fn dtypes_parse_and_deserialise_alike_and_refuse_unknown_names() {
        for (name, dtype) in [("f32", AdapterDtype::F32), ("BFloat16", AdapterDtype::Bf16), ("f16", AdapterDtype::F16)] {
            assert_eq!(name.parse::<AdapterDtype>().unwrap(), dtype);
            assert_eq!(serde_json::from_value::<AdapterDtype>(name.into()).unwrap(), dtype);
        }
        for d in [AdapterDtype::F32, AdapterDtype::Bf16, AdapterDtype::F16] {
            assert_eq!(serde_json::to_value(d).unwrap(), d.to_string());
        }
        assert!(matches!("f64".parse::<AdapterDtype>(), Err(ModelError::UnknownAdapterDtype(v)) if v == "f64"));
        let err = serde_json::from_value::<AdapterDtype>("fp32".into()).unwrap_err().to_string();
        assert!(err.contains("unknown adapter dtype `fp32`"), "{err}");
    }
}
