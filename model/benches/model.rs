//! Model benchmarks against memory-bandwidth floors (results go to docs/BENCHMARKS.md).
//!
//! cargo bench -p evolora-model --bench model [-- --preset paper|compact|tiny]
//!
//! Floors: generating an adapter must read every head weight once, so the floor is
//! head bytes ÷ measured read bandwidth (a vectorised read on every core); a GRU step must
//! read W_hh once (the input side is batched across a catch-up), and a single step also
//! reads diff_proj and W_ih. Writing the PEFT directory (every layer's copy of the factors,
//! fsynced) is set against writing and fsyncing a file of the same size in the same place.

mod floors;

use std::time::{Duration, Instant};

use floors::{bandwidth_gbs, peak_rss_mib};

use evolora_model::encoder::{DiffInput, FileDiff, HashedEncoder};
use evolora_model::peft::{AdapterDirWriter, AdapterDtype, Formats, write_adapter_dir};
use evolora_model::{BaseModelShapes, HyperConfig, Hypernetwork};

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn typical_diff() -> DiffInput {
    // ~200 changed lines over three Python files and a README, like an ordinary commit.
    let body = (0..60)
        .map(|i| format!("def handler_{i}(request, *, timeout=30):\n    data = parse(request.body)\n    return respond(data, status=200)\n"))
        .collect::<String>();
    DiffInput {
        files: vec![
            FileDiff { path: "app/handlers.py".into(), added: body.clone(), removed: body[..body.len() / 3].to_string() },
            FileDiff { path: "app/__init__.py".into(), added: "import json\nfrom .handlers import *\n".into(), removed: String::new() },
            FileDiff { path: "tests/test_handlers.py".into(), added: "def test_ok():\n    assert handler_1(req()).status == 200\n".into(), removed: String::new() },
            FileDiff { path: "README.md".into(), added: "Handlers now take a timeout.\n".into(), removed: String::new() },
        ],
        truncated: false,
    }
}

fn main() {
    let preset = std::env::args().skip_while(|a| a != "--preset").nth(1).unwrap_or_else(|| "paper".into());
    let device = evolora_model::select_device("cpu").unwrap();
    let base = BaseModelShapes::preset("qwen2.5-coder-1.5b").unwrap();
    let cfg = HyperConfig::preset(&preset).unwrap();

    let bw = bandwidth_gbs();
    println!("measured read bandwidth (vectorised, every core): {bw:.2} GB/s");

    let rss0 = rss_mib();
    let t = Instant::now();
    let model = Hypernetwork::untrained(cfg.clone(), base.clone(), 7, HashedEncoder::LATEST.id(), device).unwrap();
    let load = t.elapsed();
    let rss_model = rss_mib() - rss0;
    let peak_load = peak_rss_mib();

    let head_params = (floors::head_bytes(&cfg, &base) / 4.0) as usize;
    let (whh_bytes, single_step_bytes) = floors::gru_step_bytes(&cfg);
    let g = cfg.gru_hidden;

    let enc = HashedEncoder::LATEST;
    let diff = typical_diff();
    let snapshot = enc.encode_snapshot([("a.py", "import os\n")]).vector;
    let h0 = model.initial_state(&snapshot).unwrap();

    let encode = median((0..20).map(|_| { let t = Instant::now(); std::hint::black_box(enc.encode_diff(&diff)); t.elapsed() }).collect());
    let e = enc.encode_diff(&diff).vector;
    let step = median((0..10).map(|_| { let t = Instant::now(); std::hint::black_box(model.advance(&h0, std::slice::from_ref(&e)).unwrap()); t.elapsed() }).collect());
    let batch: Vec<Vec<f32>> = (0..64).map(|_| e.clone()).collect();
    // Median of five catch-ups: one alone is at the mercy of a neighbour's burst on a shared host.
    let per_step_batched = median((0..5).map(|_| { let t = Instant::now(); std::hint::black_box(model.advance(&h0, &batch).unwrap()); t.elapsed() / 64 }).collect());
    let generation = median((0..5).map(|_| { let t = Instant::now(); std::hint::black_box(model.adapter(&h0).unwrap()); t.elapsed() }).collect());

    // The PEFT directory for the base's every layer, fsynced, against a plain file of the
    // same size written and fsynced in the same directory (best of three each).
    let adapter = model.adapter(&h0).unwrap();
    let out = tempfile::tempdir_in(std::env::var_os("EVOLORA_BENCH_DIR").unwrap_or_else(|| ".".into())).unwrap();
    let mut write_rows = Vec::new();
    for dtype in [AdapterDtype::F32, AdapterDtype::Bf16] {
        let mut best = (Duration::MAX, 0u64);
        for i in 0..3 {
            let dir = out.path().join(format!("{dtype}-{i}"));
            let t = Instant::now();
            write_adapter_dir(&dir, &adapter, &base, dtype, &[]).unwrap();
            let took = t.elapsed();
            let bytes = std::fs::metadata(dir.join(evolora_model::peft::ADAPTER_WEIGHTS)).unwrap().len();
            best = best.min((took, bytes));
        }
        let plain = floors::plain_file(out.path(), best.1 as usize);
        write_rows.push((dtype, best.0, best.1, plain));
    }

    // Generation and the f32 directory together, as the daemon publishes: each type's
    // factors written (and their writeback started) while the head makes the next.
    let layout = model.adapter_layout().to_vec();
    let overlapped = (0..3)
        .map(|i| {
            let dir = out.path().join(format!("overlapped-{i}"));
            let t = Instant::now();
            let mut writer = AdapterDirWriter::begin(&dir, &layout, cfg.rank, base.num_hidden_layers, AdapterDtype::F32).unwrap();
            let weights = model.adapter_each(&h0, |pair| writer.put(pair)).unwrap();
            writer.finish(&weights, &base, &[], Formats::default()).unwrap();
            t.elapsed()
        })
        .min()
        .unwrap();

    let gen_floor = head_params as f64 * 4.0 / (bw * 1e9);
    let step_floor = single_step_bytes / (bw * 1e9);
    println!("preset {preset}: GRU {g}, H {}, r {}, base {}", cfg.head_hidden, cfg.rank, base.name);
    println!("| measurement | time | floor | ratio (time / floor) |");
    println!("|---|---|---|---|");
    println!("| adapter generation (head {:.1} M params) | {:.1} ms | {:.1} ms | {:.2} |", head_params as f64 / 1e6, generation.as_secs_f64() * 1e3, gen_floor * 1e3, generation.as_secs_f64() / gen_floor);
    println!("| one GRU step (single commit) | {:.2} ms | {:.2} ms | {:.2} |", step.as_secs_f64() * 1e3, step_floor * 1e3, step.as_secs_f64() / step_floor);
    let catch_up_floor = whh_bytes / (bw * 1e9);
    println!("| GRU step within a 64-commit catch-up (floor: W_hh) | {:.2} ms | {:.2} ms | {:.2} |", per_step_batched.as_secs_f64() * 1e3, catch_up_floor * 1e3, per_step_batched.as_secs_f64() / catch_up_floor);
    for (dtype, took, bytes, plain) in &write_rows {
        println!(
            "| PEFT directory, {} layers, {dtype} ({:.1} MB), fsynced (floor: a plain file as large) | {:.1} ms | {:.1} ms | {:.2} |",
            base.num_hidden_layers,
            *bytes as f64 / 1e6,
            took.as_secs_f64() * 1e3,
            plain.as_secs_f64() * 1e3,
            took.as_secs_f64() / plain.as_secs_f64()
        );
    }
    let plain_f32 = write_rows[0].3.as_secs_f64();
    println!(
        "| generation + f32 directory, written as generated (floor: head bandwidth + plain file) | {:.1} ms | {:.1} ms | {:.2} |",
        overlapped.as_secs_f64() * 1e3,
        (gen_floor + plain_f32) * 1e3,
        overlapped.as_secs_f64() / (gen_floor + plain_f32)
    );
    println!("| hashed encode of a typical diff (~250 lines) | {:.3} ms | – | – |", encode.as_secs_f64() * 1e3);
    println!("| seeded model load | {:.2} s | – | – |", load.as_secs_f64());
    println!("| RSS of the loaded model | {rss_model:.0} MiB | {:.0} MiB of f32 weights | {:.2} |", (head_params + 3 * g * g * 2 + 2 * g * cfg.input_dim) as f64 * 4.0 / 1048576.0, rss_model / ((head_params + 3 * g * g * 2 + 2 * g * cfg.input_dim) as f64 * 4.0 / 1048576.0));
    println!("| peak RSS during load | {peak_load:.0} MiB | – | – |");

    // The same work as the authors' tool does it (PyTorch), in this run, where torch is here.
    if let Some(torch) = pytorch_same_work(&cfg, &out.path().join("pytorch")) {
        let ms = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
        println!("\nthe same work in PyTorch as the authors' tool does it ({} threads, `model/benches/pytorch_same_work.py`), same run:", torch["threads"]);
        println!("| measurement | evolora | PyTorch | PyTorch / evolora |");
        println!("|---|---|---|---|");
        let ours_export = write_rows[0].1.as_secs_f64() * 1e3;
        for (what, ours, theirs) in [
            ("adapter generation (the head)", generation.as_secs_f64() * 1e3, ms(&torch["head_ms"])),
            ("one GRU step, a single commit", step.as_secs_f64() * 1e3, ms(&torch["gru_step_ms"])),
            ("PEFT export, f32, 28 layers, fsynced", ours_export, ms(&torch["export_ms"])),
        ] {
            println!("| {what} | {ours:.1} ms | {theirs:.1} ms | {:.2} |", theirs / ours);
        }
    } else {
        println!("\n(no Python with torch and safetensors: set EVOLORA_TORCH_PYTHON for the PyTorch comparison)");
    }

    // `--repeat N`: the daemon's per-commit work N more times, for a profiler
    // (scripts/profile.sh), so that loading the model does not dominate the samples.
    let repeat: usize = std::env::args().skip_while(|a| a != "--repeat").nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    for i in 0..repeat {
        profiled_commit(&model, &h0, &e, &batch, &out.path().join(format!("repeat-{i}")), &base, &layout, cfg.rank);
    }
}

/// One commit's model work as the daemon does it: a lone GRU step, a catch-up block, and the
/// adapter generated with its directory written as it comes.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn profiled_commit(model: &Hypernetwork, h0: &[f32], e: &[f32], batch: &[Vec<f32>], dir: &std::path::Path, base: &BaseModelShapes, layout: &[(evolora_model::ModuleType, usize, usize)], rank: usize) {
    let h = model.advance(h0, std::slice::from_ref(&e.to_vec())).unwrap();
    std::hint::black_box(model.advance(h0, batch).unwrap());
    let mut writer = AdapterDirWriter::begin(dir, layout, rank, base.num_hidden_layers, AdapterDtype::F32).unwrap();
    let weights = model.adapter_each(&h, |pair| writer.put(pair)).unwrap();
    writer.finish(&weights, base, &[], Formats::default()).unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

/// Runs `pytorch_same_work.py` at this preset's sizes with `EVOLORA_TORCH_PYTHON` (else
/// python3); its JSON, or `None` where torch is missing.
fn pytorch_same_work(cfg: &HyperConfig, dir: &std::path::Path) -> Option<serde_json::Value> {
    let python = std::env::var_os("EVOLORA_TORCH_PYTHON").unwrap_or_else(|| "python3".into());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/pytorch_same_work.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .args(["--gru", &cfg.gru_hidden.to_string(), "--hidden", &cfg.head_hidden.to_string(), "--rank", &cfg.rank.to_string()])
        .arg("--dir")
        .arg(dir)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(String::from_utf8_lossy(&out.stdout).lines().last()?.as_bytes()).ok()
}
