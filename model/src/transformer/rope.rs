//! Rotary position embeddings as Hugging Face applies them to Qwen (`rotate_half`: the two
//! halves of a head are rotated against each other). burn's `RotaryEncoding` rotates
//! adjacent pairs instead, which would need permuted q/k weights, biases and norms.

use burn::tensor::{Device, Tensor, TensorData};

/// cos and sin tables `[rows, 1, len, head_dim]` for `positions` (`rows × len`, row-major;
/// one row serves every row of a batch). Computed on the host in f64: with theta 1e6 the
/// lowest frequencies underflow the precision of f32 products at large positions.
pub fn tables(theta: f64, head_dim: usize, positions: &[usize], rows: usize, device: &Device) -> (Tensor<4>, Tensor<4>) {
    let half = head_dim / 2;
    let len = positions.len() / rows.max(1);
    let inv_freq: Vec<f64> = (0..half).map(|i| 1.0 / theta.powf((2 * i) as f64 / head_dim as f64)).collect();
    let mut cos = Vec::with_capacity(positions.len() * head_dim);
    let mut sin = Vec::with_capacity(positions.len() * head_dim);
    for &pos in positions {
        for _ in 0..2 {
            for f in &inv_freq {
                let angle = pos as f64 * f;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
    }
    let table = |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [rows, 1, len, head_dim]), device);
    (table(cos), table(sin))
}

/// `x * cos + rotate_half(x) * sin` for `x` `[batch, heads, len, head_dim]`, tables from
/// [`tables`] (one row, or one per batch row).
pub fn apply(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let [b, h, t, d] = x.dims();
    let half = d / 2;
    let first = x.clone().slice([0..b, 0..h, 0..t, 0..half]);
    let second = x.clone().slice([0..b, 0..h, 0..t, half..d]);
    let rotated = Tensor::cat(vec![second.neg(), first], 3);
    x * cos.clone() + rotated * sin.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::tensor::host;

    #[test]
    fn position_zero_is_the_identity_and_halves_rotate_against_each_other() {
        let device = Device::flex();
        let x = Tensor::<4>::from_data(TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0, 1.0, 2.0, 3.0, 4.0], [1, 1, 2, 4]), &device);
        let (cos, sin) = tables(10_000.0, 4, &[0, 1], 1, &device);
        let y = host(apply(x, &cos, &sin));
        assert_eq!(&y[..4], &[1.0, 2.0, 3.0, 4.0]);
        // Position 1: pairs (x0, x2) and (x1, x3) rotate by 1 and 1/100 radians.
        let (a, b) = (1.0f64, 0.01f64);
        let expected = [1.0 * a.cos() - 3.0 * a.sin(), 2.0 * b.cos() - 4.0 * b.sin(), 3.0 * a.cos() + 1.0 * a.sin(), 4.0 * b.cos() + 2.0 * b.sin()];
        for (got, want) in y[4..].iter().zip(expected) {
            assert!((*got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        }
    }
}
