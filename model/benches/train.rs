//! One training step against this machine's floors (results go to docs/BENCHMARKS.md).
//!
//! cargo bench -p evolora-model --bench train [-- --layers N --prompt T --rows R --preset P]
//!
//! The frozen base is Qwen2.5-Coder-1.5B's shape with seeded weights (`--layers` below 28
//! shortens it; the floors scale with it); the hypernetwork is the `compact` preset (or
//! `--preset`). A step is one micro-batch (accumulation 1): the hypernetwork's forward pass,
//! the base model with the generated adapter over `--rows` examples of `--prompt` tokens
//! (the last 8 the target), the backward pass, global-norm clipping and AdamW. Floors,
//! measured in the same run:
//! - the base model's arithmetic: its forward pass (2 × body parameters per token plus the
//!   causal attention products, and the head on the target positions) and a backward pass
//!   of the same cost (its weights are frozen, so no weight gradients), ÷ the faster of
//!   burn's and OpenBLAS's matrix-multiply rate on the MLP's shape;
//! - plus the hypernetwork's memory traffic: its weights read for the forward pass and for
//!   their gradients, and AdamW reading weights, gradients and both moments and writing
//!   three of them back, ÷ the bandwidth of a vectorised read on every core.
//!
//! A second ratio uses burn's own matrix-multiply rate: the CPU backend is built without its
//! multi-threaded kernels (they would change the serving states' bits), which is most of the
//! distance to OpenBLAS.

mod floors;

use std::time::Instant;

use burn::module::Module as _;
use burn::tensor::Device;
use evolora_model::hypernet::seeded_weights;
use evolora_model::nn::Seeded;
use evolora_model::train::{Example, OptimSettings, RepoData, Schedule, Task, TrainSettings, TrainableHypernet, Trainer};
use evolora_model::transformer::{Head, Qwen};
use evolora_model::{Architecture, HyperConfig};
use floors::{arg, coder_1_5b, bandwidth_gbs, blas_rate, matmul_rate, peak_rss_mib};

fn main() {
    let layers = arg("--layers", 2);
    let prompt = arg("--prompt", 256);
    let rows = arg("--rows", 4);
    let steps = arg("--steps", 5);
    let preset = std::env::args().skip_while(|a| a != "--preset").nth(1).unwrap_or_else(|| "compact".into());
    let target = 8;
    let device = Device::flex().autodiff();
    let cfg = coder_1_5b(layers);
    let lm = Qwen::new(&cfg, Head::CausalLm, &mut Seeded::new(11), &device).unwrap().no_grad();
    let shapes = cfg.shapes("bench");
    let hyper = HyperConfig::preset(&preset).unwrap();
    let mut weights = seeded_weights(&hyper, &shapes, 3, true);
    let hyper_params: usize = weights.iter().map(|(_, t)| t.data.len()).sum();
    let model = TrainableHypernet::from_weights(&hyper, &shapes, Architecture::Evo, 0, &mut weights, &device).unwrap();

    // One repository, no history (the state is h₀), `rows` tasks at its origin.
    let tasks = (0..rows)
        .map(|r| {
            let ids = |n: usize, s: usize| (0..n).map(|i| ((i * 7919 + s * 104_729) % 151_000) as u32).collect::<Vec<u32>>();
            Task { commit: 0, example: Example { prefix: ids(prompt - target, r), target: ids(target, r + 100) } }
        })
        .collect();
    let snapshot = (0..hyper.input_dim).map(|i| ((i * 37) % 101) as f32 / 101.0 - 0.5).collect();
    let corpus = vec![RepoData { name: "bench".into(), snapshot, diffs: Vec::new(), tasks }];
    let settings = TrainSettings {
        optim: OptimSettings { accumulate: 1, ..OptimSettings::paper(Schedule { peak: 1e-4, warmup: 0, total: 1000 }) },
        tasks_per_batch: rows,
        bptt: 16,
        max_len: prompt,
        seed: 1,
        detach_branch_input: true,
        kl_weight: 0.0,
    };
    let mut trainer = Trainer::new(model, &lm, hyper.clone(), settings, 0);

    let plain = Device::flex();
    let bandwidth = bandwidth_gbs();
    let burn_rate = matmul_rate(&plain, rows * prompt, cfg.hidden_size, cfg.intermediate_size);
    let blas = blas_rate(rows * prompt, cfg.hidden_size, cfg.intermediate_size);
    let rate = blas.unwrap_or(0.0).max(burn_rate);

    let _ = trainer.micro_step(&corpus).unwrap(); // first-touch allocations, AdamW's moments
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps {
        let t = Instant::now();
        let (loss, report) = trainer.micro_step(&corpus).unwrap();
        assert!(loss.is_finite() && report.is_some());
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let step = times[times.len() / 2];

    let tokens = (rows * (prompt - 1)) as f64;
    let attention = 2.0 * 2.0 * (layers * cfg.num_attention_heads * cfg.head_dim) as f64 * (prompt as f64 / 2.0);
    let forward = (2.0 * cfg.body_parameters() as f64 + attention) * tokens + 2.0 * (cfg.vocab_size * cfg.hidden_size * rows * target) as f64;
    let compute_floor = 2.0 * forward / rate;
    // Forward read, gradient read, AdamW: weights, gradients, two moments read, three written.
    let hyper_bytes = hyper_params as f64 * 4.0 * (1.0 + 1.0 + 7.0);
    let memory_floor = hyper_bytes / (bandwidth * 1e9);
    let floor = compute_floor + memory_floor;
    println!("Qwen2.5-Coder-1.5B shape, {layers} layers, frozen; hypernetwork `{preset}` ({:.1} M parameters, Evo); {rows} examples × {prompt} tokens a step; flex CPU backend with autodiff, {} threads", hyper_params as f64 / 1e6, std::thread::available_parallelism().map_or(1, |n| n.get()));
    println!("| measurement | value | floor | ratio |");
    println!("|---|---|---|---|");
    println!("| memory bandwidth (vectorised read, all cores) | {bandwidth:.1} GB/s | | |");
    println!("| burn matmul [{}, 1536] × [1536, 8960] | {:.1} GFLOP/s | | |", rows * prompt, burn_rate / 1e9);
    match blas {
        Some(b) => println!("| OpenBLAS via numpy, all cores, same shape | {:.1} GFLOP/s | | |", b / 1e9),
        None => println!("| OpenBLAS via numpy | not measured (no python3 with numpy) | | |"),
    }
    println!("| base model forward + backward ({:.1} GFLOP) | | {:.0} ms | |", 2.0 * forward / 1e9, compute_floor * 1e3);
    println!("| hypernetwork and AdamW traffic ({:.0} MB) | | {:.0} ms | |", hyper_bytes / 1e6, memory_floor * 1e3);
    println!("| training step, median of {steps} | {:.0} ms ({:.0} tokens/s) | {:.0} ms | **{:.2}** |", step * 1e3, tokens / step, floor * 1e3, step / floor);
    let burn_floor = 2.0 * forward / burn_rate + memory_floor;
    println!("| the same against burn's own matmul rate | | {:.0} ms | {:.2} |", burn_floor * 1e3, step / burn_floor);
    println!("| peak RSS | {:.0} MiB | | |", peak_rss_mib());
}
