//! Helpers shared by the model crate's reference tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use safetensors::SafeTensors;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

pub fn reference(args: &[&str]) {
    let script = root().join("tests/reference/qwen_ref.py");
    let out = Command::new("python3").arg(&script).args(args).output().expect("python3 is needed by the tests (./scripts/test.sh installs it)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("No module named 'numpy'"), "numpy is needed by the tests: run ./scripts/test.sh or `python3 -m pip install numpy`");
    assert!(out.status.success(), "qwen_ref.py {args:?} failed:\n{}{err}", String::from_utf8_lossy(&out.stdout));
}

/// Tensors of a safetensors file as f32 (floats) or i64 (integers), with shapes.
pub struct Tensors(Vec<(String, Vec<usize>, Vec<f64>)>);

impl Tensors {
    pub fn read(path: &Path) -> Tensors {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut out = Vec::new();
        for (name, view) in st.tensors() {
            let data = view.data();
            let values: Vec<f64> = match view.dtype() {
                safetensors::Dtype::F32 => data.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
                safetensors::Dtype::I64 => data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
                other => panic!("{name}: unexpected dtype {other:?}"),
            };
            out.push((name, view.shape().to_vec(), values));
        }
        Tensors(out)
    }

    pub fn get(&self, name: &str) -> Option<(&[usize], &[f64])> {
        self.0.iter().find(|(n, _, _)| n == name).map(|(_, s, v)| (s.as_slice(), v.as_slice()))
    }
}

/// max |actual − expected| over the real positions ÷ max |expected|.
pub fn relative_error(actual: &[f32], expected: &[f64], real: impl Fn(usize) -> bool) -> f64 {
    assert_eq!(actual.len(), expected.len());
    let scale = expected.iter().map(|e| e.abs()).fold(1e-6, f64::max);
    let mut worst = 0.0f64;
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(a.is_finite(), "non-finite output at {i}");
        if real(i) {
            worst = worst.max((*a as f64 - e).abs());
        }
    }
    worst / scale
}

pub fn host<const D: usize>(t: burn::tensor::Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
}

