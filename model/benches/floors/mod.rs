//! Floors the benchmarks are measured against, measured in the same run: memory bandwidth
//! (a vectorised read on every core) and the matrix-multiply rate (burn's, and OpenBLAS's
//! through numpy where python3 has it). Shared by the model crate's benchmarks and, by path,
//! the daemon's; also the base model shape the LM and training benchmarks run.
#![allow(dead_code)]

use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};
use evolora_model::transformer::{Family, QwenConfig};
use evolora_model::{BaseModelShapes, HyperConfig};

/// Qwen2.5-Coder-1.5B's shape (hidden 1536, 12 heads / 2 KV heads, intermediate 8960,
/// vocabulary 151,936, tied head) with `layers` layers (28 in the real model).
pub fn coder_1_5b(layers: usize) -> QwenConfig {
    QwenConfig {
        family: Family::Qwen2,
        hidden_size: 1536,
        intermediate_size: 8960,
        num_hidden_layers: layers,
        num_attention_heads: 12,
        num_key_value_heads: 2,
        head_dim: 128,
        vocab_size: 151_936,
        rms_norm_eps: 1e-6,
        rope_theta: 1e6,
        tie_word_embeddings: true,
        qkv_bias: true,
        o_bias: false,
        max_position_embeddings: 32_768,
    }
}

/// The value after `name` on the command line, or `default`.
pub fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The process's peak resident memory so far.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) / 1024.0
}

/// Memory bandwidth in GB/s: every core sums its share of a 512 MiB buffer with 32
/// independent accumulators per stream (vectorised: the additions' latency never limits the
/// read), reading its share as 1, 2, 4 or 16 interleaved sequential streams; the best of five
/// runs of the best stream count. One stream per core reads well below what the memory
/// gives on some hosts (13-17 GB/s against 20-26 GB/s with four on this VM), because a core
/// keeps only so many misses in flight per stream its prefetchers follow; the kernels read
/// several rows at once, so a one-stream floor would flatter them.
pub fn bandwidth_gbs() -> f64 {
    let n: usize = 128 << 20;
    let buf: Vec<f32> = (0..n).map(|i| (i % 5) as f32).collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let timed = |read: fn(&[f32]) -> f32| {
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            std::thread::scope(|s| {
                for part in buf.chunks(n.div_ceil(threads)) {
                    s.spawn(move || std::hint::black_box(read(part)));
                }
            });
            best = best.min(t.elapsed().as_secs_f64());
        }
        (n * 4) as f64 / best / 1e9
    };
    [timed(read_streams::<1>), timed(read_streams::<2>), timed(read_streams::<4>), timed(read_streams::<16>)].into_iter().fold(0.0, f64::max)
}

/// Sums `part` as `S` equal sequential streams read in turn, 32 floats from each.
fn read_streams<const S: usize>(part: &[f32]) -> f32 {
    let len = part.len() / S / 32 * 32;
    let mut acc = [[0.0f32; 32]; S];
    let mut i = 0;
    while i < len {
        for (s, a) in acc.iter_mut().enumerate() {
            let chunk = &part[s * len + i..s * len + i + 32];
            for k in 0..32 {
                a[k] += chunk[k];
            }
        }
        i += 32;
    }
    acc.iter().flatten().sum()
}

/// FLOP/s of burn's matmul on [m, k] × [k, n], best of five.
pub fn matmul_rate(device: &Device, m: usize, k: usize, n: usize) -> f64 {
    let a = Tensor::<2>::from_data(TensorData::new((0..m * k).map(|i| (i % 13) as f32 * 0.01).collect::<Vec<_>>(), [m, k]), device);
    let b = Tensor::<2>::from_data(TensorData::new((0..k * n).map(|i| (i % 7) as f32 * 0.01).collect::<Vec<_>>(), [k, n]), device);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        let c = a.clone().matmul(b.clone());
        let _ = c.into_data();
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (m * k * n) as f64 / best
}

/// FLOP/s of OpenBLAS (numpy, all cores) on [m, k] × [k, n] f32, best of five; None without
/// numpy. OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, set on some machines for old OpenBLAS
/// builds, slow a current one: this one command runs without them.
pub fn blas_rate(m: usize, k: usize, n: usize) -> Option<f64> {
    let script = format!(
        "import numpy as np, time\na=np.random.rand({m},{k}).astype(np.float32); b=np.random.rand({k},{n}).astype(np.float32)\nbest=1e9\nfor _ in range(5):\n    t=time.perf_counter(); a@b; best=min(best, time.perf_counter()-t)\nprint(2*{m}*{k}*{n}/best)"
    );
    let out = std::process::Command::new("python3").arg("-c").arg(script).env_remove("OPENBLAS_CORETYPE").env_remove("OPENBLAS_L2_SIZE").output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Bytes of f32 weights making one adapter reads: the head's trunk and its per-type heads.
pub fn head_bytes(cfg: &HyperConfig, base: &BaseModelShapes) -> f64 {
    let h = cfg.head_hidden;
    let trunk = cfg.head_input_dim() * h + h + h * h + h;
    let heads: usize = cfg
        .module_types
        .iter()
        .map(|&m| {
            let (i, o) = base.in_out(m);
            (cfg.rank * i + o * cfg.rank) * (h + 1)
        })
        .sum();
    ((trunk + heads) * 4) as f64
}

/// Bytes of f32 weights a GRU step reads: (W_hh only, a lone commit's W_hh + W_ih + the
/// diff projection). Inside a catch-up the input side is shared by a block of commits.
pub fn gru_step_bytes(cfg: &HyperConfig) -> (f64, f64) {
    let g = cfg.gru_hidden;
    let whh = (3 * g * g * 4) as f64;
    (whh, whh + ((3 * g * g + g * cfg.input_dim) * 4) as f64)
}

/// Writing and fsyncing a plain file of `bytes` in `dir` (the disk's floor for a file that
/// size), best of three.
pub fn plain_file(dir: &std::path::Path, bytes: usize) -> std::time::Duration {
    let data = vec![1u8; bytes];
    (0..3)
        .map(|i| {
            let path = dir.join(format!("plain-{i}"));
            let t = Instant::now();
            let mut f = std::fs::File::create(&path).unwrap();
            std::io::Write::write_all(&mut f, &data).unwrap();
            f.sync_all().unwrap();
            let took = t.elapsed();
            std::fs::remove_file(&path).unwrap();
            took
        })
        .min()
        .unwrap()
}
