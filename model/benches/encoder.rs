//! The Qwen3-Embedding encoder against this machine's measured matrix-multiply rate
//! (results go to docs/BENCHMARKS.md).
//!
//! cargo bench -p evolora-model --bench encoder [-- --layers N --windows W --window-len T]
//!
//! The model is Qwen3-Embedding-0.6B's shape (hidden 1024, 16 heads / 8 KV heads, head_dim
//! 128, intermediate 3072) with seeded weights; `--layers` below 28 shortens the run and
//! scales the floor with it. Floor: 2 × body parameters × tokens, plus the attention
//! products, ÷ the best matrix-multiply rate measured on this machine in the same run for
//! the MLP's shape ([T, 1024] × [1024, 3072], f32, best of five): burn's own matmul, and
//! OpenBLAS through numpy on all cores where python3 has numpy (it is faster, so it is the
//! floor).

mod floors;

use std::time::Instant;

use burn::tensor::Device;
use floors::{arg, blas_rate, matmul_rate, peak_rss_mib};
use evolora_model::nn::Seeded;
use evolora_model::transformer::{Family, Head, Qwen, QwenConfig};

fn main() {
    let layers = arg("--layers", 28);
    let windows = arg("--windows", 8);
    let len = arg("--window-len", 512);
    let device = Device::flex();
    let cfg = QwenConfig {
        family: Family::Qwen3,
        hidden_size: 1024,
        intermediate_size: 3072,
        num_hidden_layers: layers,
        num_attention_heads: 16,
        num_key_value_heads: 8,
        head_dim: 128,
        vocab_size: 151_669,
        rms_norm_eps: 1e-6,
        rope_theta: 1e6,
        tie_word_embeddings: true,
        qkv_bias: false,
        o_bias: false,
        max_position_embeddings: 32_768,
    };
    let t = Instant::now();
    let model = Qwen::new(&cfg, Head::None, &mut Seeded::new(7), &device).unwrap();
    let load = t.elapsed().as_secs_f64();
    let weights_mib = (cfg.body_parameters() + cfg.vocab_size * cfg.hidden_size) as f64 * 4.0 / (1 << 20) as f64;

    let burn_rate = matmul_rate(&device, windows * len, 1024, 3072);
    let blas = blas_rate(windows * len, 1024, 3072);
    let rate = blas.unwrap_or(0.0).max(burn_rate);
    let tokens = windows * len;
    let ids: Vec<u32> = (0..tokens).map(|i| (i * 7919 % 151_000) as u32).collect();
    // Warm-up (first-touch allocations), then the best of three.
    let _ = model.forward(&ids[..len], 1, None, None).into_data();
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let _ = model.forward(&ids, windows, None, None).into_data();
        best = best.min(t.elapsed().as_secs_f64());
    }
    // Matmul work: the projections and MLP (2 × body parameters per token) and, per layer,
    // QKᵀ and AV over the causal half of each window.
    let attention = 2.0 * 2.0 * (layers * cfg.num_attention_heads * cfg.head_dim) as f64 * (len as f64 / 2.0);
    let flop_per_token = 2.0 * cfg.body_parameters() as f64 + attention;
    let floor = flop_per_token * tokens as f64 / rate;
    println!("Qwen3-Embedding-0.6B shape, {layers} layers, {windows} windows × {len} tokens, flex CPU backend");
    println!("| measurement | value |");
    println!("|---|---|");
    println!("| burn matmul ([{}, 1024] × [1024, 3072], best of 5) | {:.1} GFLOP/s |", windows * len, burn_rate / 1e9);
    match blas {
        Some(b) => println!("| OpenBLAS via numpy, all cores, same shape | {:.1} GFLOP/s |", b / 1e9),
        None => println!("| OpenBLAS via numpy | not measured (no python3 with numpy) |"),
    }
    println!("| forward, {tokens} tokens | {best:.2} s ({:.0} tokens/s) |", tokens as f64 / best);
    println!("| floor: {:.2} GFLOP/token × {tokens} tokens ÷ the faster rate | {floor:.2} s ({:.0} tokens/s) |", flop_per_token / 1e9, tokens as f64 / floor);
    println!("| ratio to the floor | **{:.2}** |", best / floor);
    println!("| seeded model build | {load:.1} s |");
    println!("| peak RSS | {:.0} MiB, weights {weights_mib:.0} MiB f32 ({:.2}×) |", peak_rss_mib(), peak_rss_mib() / weights_mib);
}
