//! Products of a few rows against a large frozen weight on the CPU, the shape of decoding:
//! each weight is read once from memory, on every core, straight from the tensor's storage.
//! burn's general matrix multiply packs the whole weight for a single row, which costs several
//! times the read; these kernels stream it instead.
//!
//! Each output is summed over the inner dimension in index order whatever the number of
//! threads, so results do not depend on the machine's core count.

use burn::tensor::{Tensor, TensorData};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

/// Rows up to which the few-row kernels beat burn's matrix multiply.
pub const MAX_ROWS: usize = 8;

/// The storage of a contiguous row-major f32 CPU tensor; `None` elsewhere (another device or
/// dtype, a strided view), where callers use burn's own operations.
fn storage<const D: usize>(t: &Tensor<D>) -> Option<FlexTensor> {
    let flex = t.clone().try_into_primitive::<Flex>().ok()?;
    (flex.layout().is_contiguous() && flex.layout().start_offset() == 0 && flex.as_slice::<f32>().is_some()).then_some(flex)
}

fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 data")
}

/// `x · W (+ b)` for `x` `[.., in]` of at most [`MAX_ROWS`] rows and `W` `[in, out]` (burn's
/// Linear layout); `None` when the tensors are not on the CPU backend.
pub fn x_w(x: &Tensor<3>, w: &Tensor<2>, bias: Option<&Tensor<1>>) -> Option<Tensor<3>> {
    let [b, t, d_in] = x.dims();
    let rows = b * t;
    if rows > MAX_ROWS {
        return None;
    }
    let w_flex = storage(w)?;
    let w_data = w_flex.as_slice::<f32>()?;
    let [w_in, d_out] = w.dims();
    assert_eq!(w_in, d_in, "inner dimensions");
    let bias_flex = match bias {
        Some(b) => Some(storage(b)?),
        None => None,
    };
    let bias_data = bias_flex.as_ref().and_then(|f| f.as_slice::<f32>());
    let xs = host(x.clone());
    let strips = column_strips(d_out);
    let parts: Vec<Vec<f32>> = strips
        .par_iter()
        .map(|&(c0, c1)| {
            let width = c1 - c0;
            let mut acc = vec![0f32; rows * width];
            for i in 0..d_in {
                let w_row = &w_data[i * d_out + c0..i * d_out + c1];
                for r in 0..rows {
                    let xv = xs[r * d_in + i];
                    for (a, wv) in acc[r * width..(r + 1) * width].iter_mut().zip(w_row) {
                        *a += xv * wv;
                    }
                }
            }
            if let Some(bias) = bias_data {
                for r in 0..rows {
                    for (a, bv) in acc[r * width..(r + 1) * width].iter_mut().zip(&bias[c0..c1]) {
                        *a += bv;
                    }
                }
            }
            acc
        })
        .collect();
    let mut y = vec![0f32; rows * d_out];
    for (&(c0, c1), part) in strips.iter().zip(&parts) {
        let width = c1 - c0;
        for r in 0..rows {
            y[r * d_out + c0..r * d_out + c1].copy_from_slice(&part[r * width..(r + 1) * width]);
        }
    }
    Some(Tensor::from_data(TensorData::new(y, [b, t, d_out]), &x.device()))
}

/// `x · Eᵀ` for `x` `[.., in]` of at most [`MAX_ROWS`] rows and `E` `[out, in]` (an
/// embedding used as the tied LM head); `None` off the CPU backend.
pub fn x_et(x: &Tensor<3>, e: &Tensor<2>) -> Option<Tensor<3>> {
    let [b, t, d_in] = x.dims();
    let rows = b * t;
    if rows > MAX_ROWS {
        return None;
    }
    let e_flex = storage(e)?;
    let e_data = e_flex.as_slice::<f32>()?;
    let [d_out, e_in] = e.dims();
    assert_eq!(e_in, d_in, "inner dimensions");
    let xs = host(x.clone());
    let mut y = vec![0f32; d_out * rows];
    // Output-major while computing (each task owns whole outputs), row-major after.
    y.par_chunks_mut(256 * rows).enumerate().for_each(|(chunk, out)| {
        for (k, slot) in out.chunks_mut(rows).enumerate() {
            let j = chunk * 256 + k;
            let e_row = &e_data[j * d_in..(j + 1) * d_in];
            for (r, v) in slot.iter_mut().enumerate() {
                *v = dot(e_row, &xs[r * d_in..(r + 1) * d_in]);
            }
        }
    });
    let mut row_major = vec![0f32; rows * d_out];
    for j in 0..d_out {
        for r in 0..rows {
            row_major[r * d_out + j] = y[j * rows + r];
        }
    }
    Some(Tensor::from_data(TensorData::new(row_major, [b, t, d_out]), &x.device()))
}

/// A dot product with eight independent sums (so it vectorises), added in a fixed order.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for k in 0..8 {
            acc[k] += a[c * 8 + k] * b[c * 8 + k];
        }
    }
    let mut tail = 0f32;
    for i in chunks * 8..a.len() {
        tail += a[i] * b[i];
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Column ranges of about 1,024 outputs (multiples of 16): enough strips to keep every core
/// busy, each long enough that a row's slice streams.
fn column_strips(d_out: usize) -> Vec<(usize, usize)> {
    let width = 1024.min(d_out.next_multiple_of(16));
    (0..d_out).step_by(width).map(|c0| (c0, (c0 + width).min(d_out))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    #[test]
    fn few_row_products_equal_burns_matmul() {
        let device = Device::flex();
        let (d_in, d_out) = (67, 1100);
        let w: Tensor<2> = Tensor::from_data(TensorData::new((0..d_in * d_out).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect::<Vec<_>>(), [d_in, d_out]), &device);
        let bias: Tensor<1> = Tensor::from_data(TensorData::new((0..d_out).map(|i| i as f32 / 1000.0).collect::<Vec<_>>(), [d_out]), &device);
        for (b, t) in [(1, 1), (3, 1), (2, 4)] {
            let x: Tensor<3> = Tensor::from_data(TensorData::new((0..b * t * d_in).map(|i| ((i * 13 % 17) as f32 - 8.0) / 8.0).collect::<Vec<_>>(), [b, t, d_in]), &device);
            let want = host(burn::tensor::module::linear(x.clone(), w.clone(), Some(bias.clone())));
            let got = host(x_w(&x, &w, Some(&bias)).unwrap());
            let worst = want.iter().zip(&got).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst < 1e-4, "{b}×{t}: {worst}");
            let e = w.clone().transpose(); // [out, in] view: not contiguous, so refused
            assert!(x_et(&x, &e).is_none());
            let e = Tensor::<2>::from_data(e.into_data(), &device);
            let want = host(burn::tensor::module::linear(x.clone(), e.clone().transpose(), None));
            let got = host(x_et(&x, &e).unwrap());
            let worst = want.iter().zip(&got).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(worst < 1e-4, "{b}×{t} tied: {worst}");
        }
        let many: Tensor<3> = Tensor::zeros([3, 3, d_in], &device);
        assert!(x_w(&many, &w, None).is_none(), "nine rows go to burn");
    }
}
