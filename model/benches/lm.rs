//! The base code LM with and without LoRA against this machine's floors (results go to
//! docs/BENCHMARKS.md).
//!
//! cargo bench -p evolora-model --bench lm [-- --layers N --prompt T --new N --rank R]
//!
//! The model is Qwen2.5-Coder-1.5B's shape (hidden 1536, 12 heads / 2 KV heads, intermediate
//! 8960, vocabulary 151,936, tied head) with seeded weights; `--layers` below 28 shortens the
//! run and scales the floors with it. Floors, measured in the same run:
//! - prefill: 2 × body parameters per token plus the causal attention products (and the head
//!   once, for the last position) ÷ the faster of burn's and OpenBLAS's matrix-multiply rate on
//!   the MLP's shape;
//! - decoding: every weight read once per token (body and the tied head) ÷ the memory
//!   bandwidth of a vectorised read on every core.
//!
//! The LoRA rows attach a replicated r-16 adapter on all seven projections, as the
//! hypernetwork makes it.

mod floors;

use std::time::Instant;

use burn::tensor::Device;
use evolora_model::hypernet::head::LoraPair;
use evolora_model::nn::Seeded;
use evolora_model::transformer::{Head, Input, Lora, Qwen};
use evolora_model::{AdapterWeights, ModuleType};
use floors::{arg, coder_1_5b, bandwidth_gbs, blas_rate, matmul_rate, peak_rss_mib};

fn main() {
    let layers = arg("--layers", 28);
    let prompt = arg("--prompt", 256);
    let new = arg("--new", 16);
    let rank = arg("--rank", 16);
    let device = Device::flex();
    let cfg = coder_1_5b(layers);
    let t = Instant::now();
    let model = Qwen::new(&cfg, Head::CausalLm, &mut Seeded::new(11), &device).unwrap();
    let build = t.elapsed().as_secs_f64();
    let embedding = cfg.vocab_size * cfg.hidden_size;
    let weight_bytes = (cfg.body_parameters() + embedding) as f64 * 4.0;

    // A replicated adapter of the hypernetwork's layout.
    let shapes = cfg.shapes("bench");
    let pairs = ModuleType::ALL
        .into_iter()
        .map(|module| {
            let (d_in, d_out) = shapes.in_out(module);
            let fill = |n: usize, s: usize| (0..n).map(|i| ((i * 31 + s) % 97) as f32 / 97.0 - 0.5).collect::<Vec<f32>>();
            LoraPair { module, in_features: d_in, out_features: d_out, a: fill(rank * d_in, 1), b: fill(d_out * rank, 2) }
        })
        .collect();
    let lora = Lora::from_adapter_weights(&AdapterWeights { rank, alpha: 2.0 * rank as f32, pairs }, layers, &device);

    let bandwidth = bandwidth_gbs();
    let burn_rate = matmul_rate(&device, prompt, cfg.hidden_size, cfg.intermediate_size);
    let blas = blas_rate(prompt, cfg.hidden_size, cfg.intermediate_size);
    let rate = blas.unwrap_or(0.0).max(burn_rate);

    let ids: Vec<u32> = (0..prompt).map(|i| (i * 7919 % 151_000) as u32).collect();
    let prefill = |lora: Option<&Lora>| {
        let mut best = f64::MAX;
        for _ in 0..3 {
            let t = Instant::now();
            let hidden = model.forward_with(&Input { ids: &ids, rows: 1, mask: None, positions: None }, None, lora);
            let [_, len, h] = hidden.dims();
            let _ = model.logits(hidden.slice([0..1, len - 1..len, 0..h])).unwrap().into_data();
            best = best.min(t.elapsed().as_secs_f64());
        }
        best
    };
    // Decoding: after the prompt is in the cache, the median time of one token's step (its
    // forward pass and its logits), over `new` steps.
    let decode = |lora: Option<&Lora>| {
        let mut cache = model.cache();
        let _ = model.forward_with(&Input { ids: &ids, rows: 1, mask: None, positions: None }, Some(&mut cache), lora).into_data();
        let mut steps = Vec::with_capacity(new);
        for k in 0..new {
            let t = Instant::now();
            let hidden = model.forward_with(&Input { ids: &[(k * 31 % 151_000) as u32], rows: 1, mask: None, positions: None }, Some(&mut cache), lora);
            let _ = model.logits(hidden).unwrap().into_data();
            steps.push(t.elapsed().as_secs_f64());
        }
        steps.sort_by(f64::total_cmp);
        steps[steps.len() / 2]
    };
    let _ = prefill(None); // first-touch allocations
    let base_prefill = prefill(None);
    let lora_prefill = prefill(Some(&lora));
    let base_token = decode(None);
    let lora_token = decode(Some(&lora));

    let attention = 2.0 * 2.0 * (layers * cfg.num_attention_heads * cfg.head_dim) as f64 * (prompt as f64 / 2.0);
    let prefill_flop = (2.0 * cfg.body_parameters() as f64 + attention) * prompt as f64 + 2.0 * embedding as f64;
    let prefill_floor = prefill_flop / rate;
    let token_floor = weight_bytes / (bandwidth * 1e9);
    let weights_mib = weight_bytes / (1 << 20) as f64;
    println!("Qwen2.5-Coder-1.5B shape, {layers} layers, prompt {prompt} tokens, {new} new tokens, LoRA r {rank} on 7 projections, flex CPU backend, {} threads", std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!("| measurement | value | floor | ratio |");
    println!("|---|---|---|---|");
    println!("| memory bandwidth (vectorised read, all cores) | {bandwidth:.1} GB/s | | |");
    println!("| burn matmul [{prompt}, 1536] × [1536, 8960] | {:.1} GFLOP/s | | |", burn_rate / 1e9);
    match blas {
        Some(b) => println!("| OpenBLAS via numpy, all cores, same shape | {:.1} GFLOP/s | | |", b / 1e9),
        None => println!("| OpenBLAS via numpy | not measured (no python3 with numpy) | | |"),
    }
    println!("| prefill, {prompt} tokens | {base_prefill:.2} s ({:.1} tokens/s) | {prefill_floor:.2} s ({:.1} tokens/s) | **{:.2}** |", prompt as f64 / base_prefill, prompt as f64 / prefill_floor, base_prefill / prefill_floor);
    println!("| decoding, per token | {:.0} ms ({:.2} tokens/s) | {:.0} ms ({:.0} MB read) | **{:.2}** |", base_token * 1e3, 1.0 / base_token, token_floor * 1e3, weight_bytes / 1e6, base_token / token_floor);
    println!("| prefill with LoRA | {lora_prefill:.2} s | | **{:+.1} %** over the base |", 100.0 * (lora_prefill / base_prefill - 1.0));
    println!("| decoding with LoRA, per token | {:.0} ms | | **{:+.1} %** over the base |", lora_token * 1e3, 100.0 * (lora_token / base_token - 1.0));
    println!("| seeded model build | {build:.1} s | | |");
    println!("| peak RSS | {:.0} MiB | weights {weights_mib:.0} MiB f32 | {:.2}× |", peak_rss_mib(), peak_rss_mib() / weights_mib);
}
