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

/// Rows of a `[in, out]` weight one task reads (contiguously) in [`x_w`].
const ROW_BLOCK: usize = 128;

/// Outputs one task updates in [`add_low_rank`].
const COLUMN_BLOCK: usize = 1024;

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
    // Blocks of whole rows of W, so each task streams contiguous memory; each block's
    // partial sums are added in block order, which fixes every output's summation order.
    let blocks: Vec<Vec<f32>> = (0..d_in.div_ceil(ROW_BLOCK))
        .into_par_iter()
        .map(|block| {
            let mut acc = vec![0f32; rows * d_out];
            for i in block * ROW_BLOCK..((block + 1) * ROW_BLOCK).min(d_in) {
                let w_row = &w_data[i * d_out..(i + 1) * d_out];
                for r in 0..rows {
                    let xv = xs[r * d_in + i];
                    for (a, wv) in acc[r * d_out..(r + 1) * d_out].iter_mut().zip(w_row) {
                        *a += xv * wv;
                    }
                }
            }
            acc
        })
        .collect();
    let mut y = match bias_data {
        Some(bias) => bias.repeat(rows),
        None => vec![0f32; rows * d_out],
    };
    let mut partial = vec![0f32; rows * d_out];
    for block in &blocks {
        for (p, v) in partial.iter_mut().zip(block) {
            *p += v;
        }
    }
    for (yv, p) in y.iter_mut().zip(&partial) {
        *yv += p;
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

/// `y + (x · down) · up` for a low-rank branch (`down` `[in, r]`, `up` `[r, out]`, r small):
/// on the CPU written into `y`'s own storage, without a second `[rows, out]` tensor and
/// without burn's matrix multiply on a skinny shape; elsewhere (another device, a shared or
/// strided `y`) with burn's operations.
pub fn add_low_rank(y: Tensor<3>, x: &Tensor<3>, down: &Tensor<2>, up: &Tensor<2>) -> Tensor<3> {
    let burn_way = |y: Tensor<3>| y + burn::tensor::module::linear(burn::tensor::module::linear(x.clone(), down.clone(), None), up.clone(), None);
    let (Some(down_flex), Some(up_flex)) = (storage(down), storage(up)) else { return burn_way(y) };
    let (Some(down_data), Some(up_data)) = (down_flex.as_slice::<f32>(), up_flex.as_slice::<f32>()) else { return burn_way(y) };
    let [b, t, d_in] = x.dims();
    let [_, _, d_out] = y.dims();
    let [r, up_out] = up.dims();
    assert_eq!((down.dims(), up_out), ([d_in, r], d_out), "branch shapes");
    let dims = y.dims();
    // The branch's factors live on the CPU backend, so y does too (one device per model).
    let mut y_flex = y.try_into_primitive::<Flex>().expect("y is on the factors' CPU backend");
    if !(y_flex.is_unique() && y_flex.layout().is_contiguous() && y_flex.layout().start_offset() == 0) {
        return burn_way(Tensor::from_primitive::<Flex>(y_flex));
    }
    let rows = b * t;
    // x read in place when it is a plain CPU tensor (it is, between the norms and projections).
    let x_flex = storage(x);
    let x_copy;
    let xs: &[f32] = match x_flex.as_ref().and_then(|f| f.as_slice::<f32>()) {
        Some(s) => s,
        None => {
            x_copy = host(x.clone());
            &x_copy
        }
    };
    let out: &mut [f32] = y_flex.storage_mut();
    // Many rows: burn's matrix multiply makes x · down faster than row by row.
    let us: Vec<Vec<f32>> = if rows > MAX_ROWS {
        host(burn::tensor::module::linear(x.clone(), down.clone(), None)).chunks(r).map(<[f32]>::to_vec).collect()
    } else {
        xs.par_chunks(d_in).take(rows).map(|x_row| down_product(x_row, down_data, r)).collect()
    };
    // Column blocks, so the slice of y being updated stays in the first-level cache (and a
    // single row, when decoding, still spreads over every core), and four factors a pass,
    // so y is loaded and stored once per four products.
    out.par_chunks_mut(d_out).zip(us.par_iter()).for_each(|(y_row, u)| {
        y_row.par_chunks_mut(COLUMN_BLOCK).enumerate().for_each(|(block, y_block)| {
            let (c0, width) = (block * COLUMN_BLOCK, y_block.len());
            let up_row = |k: usize| &up_data[k * d_out + c0..k * d_out + c0 + width];
            let mut k = 0;
            while k + 4 <= r {
                let (w0, w1, w2, w3) = (up_row(k), up_row(k + 1), up_row(k + 2), up_row(k + 3));
                let (u0, u1, u2, u3) = (u[k], u[k + 1], u[k + 2], u[k + 3]);
                for (j, yv) in y_block.iter_mut().enumerate() {
                    *yv += u0 * w0[j] + u1 * w1[j] + u2 * w2[j] + u3 * w3[j];
                }
                k += 4;
            }
            for (k, &uk) in u.iter().enumerate().skip(k) {
                for (yv, wv) in y_block.iter_mut().zip(up_row(k)) {
                    *yv += uk * wv;
                }
            }
        });
    });
    let y = Tensor::<3>::from_primitive::<Flex>(y_flex);
    debug_assert_eq!(y.dims(), dims);
    y
}

/// `x_row · down` for `down` `[in, r]`: at the paper's rank the sixteen sums stay in registers.
fn down_product(x_row: &[f32], down: &[f32], r: usize) -> Vec<f32> {
    if r == 16 {
        let mut u = [0f32; 16];
        for (&xv, d) in x_row.iter().zip(down.chunks_exact(16)) {
            for k in 0..16 {
                u[k] += xv * d[k];
            }
        }
        return u.to_vec();
    }
    let mut u = vec![0f32; r];
    for (&xv, d) in x_row.iter().zip(down.chunks_exact(r)) {
        for (uk, dv) in u.iter_mut().zip(d) {
            *uk += xv * dv;
        }
    }
    u
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

    #[test]
    fn a_low_rank_branch_added_in_place_equals_burns_products() {
        let device = Device::flex();
        // Rank 6 takes the four-at-a-time loop and its remainder; 16 the register path.
        for r in [6, 16] {
            let (d_in, d_out, rows) = (40, 70, 11);
            let t2 = |n: usize, shape: [usize; 2], k: usize| Tensor::<2>::from_data(TensorData::new((0..n).map(|i| ((i * k % 23) as f32 - 11.0) / 11.0).collect::<Vec<_>>(), shape), &device);
            let down = t2(d_in * r, [d_in, r], 7);
            let up = t2(r * d_out, [r, d_out], 5);
            let x: Tensor<3> = t2(rows * d_in, [rows, d_in], 3).reshape([1, rows, d_in]);
            let y: Tensor<3> = t2(rows * d_out, [rows, d_out], 2).reshape([1, rows, d_out]);
            let want = host(y.clone() + burn::tensor::module::linear(burn::tensor::module::linear(x.clone(), down.clone(), None), up.clone(), None));
            // A shared y takes burn's way and must stay as it was; a lone one is written in place.
            let shared = y.clone();
            let before = host(shared.clone());
            let by_burn = host(add_low_rank(y, &x, &down, &up));
            assert_eq!(host(shared.clone()), before, "a shared y is left alone");
            let in_place = host(add_low_rank(shared, &x, &down, &up));
            for got in [by_burn, in_place] {
                let worst = want.iter().zip(&got).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(worst < 1e-4, "rank {r}: {worst}");
            }
        }
    }
}
