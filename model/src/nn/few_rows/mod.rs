//! Products of a few rows against a large frozen weight on the CPU, the shape of decoding,
//! of the hypernetwork's head and of the GRU's steps: each weight is read once from memory,
//! on every core, straight from the tensor's storage. burn's general matrix multiply packs
//! the whole weight for a single row, which costs several times the read; these kernels
//! stream it instead.
//!
//! [`product`] sums each output over the inner dimension in index order, one product at a
//! time, whatever the number of rows computed together, the number of threads or the vector
//! width: a row's result has the same bits alone or within a block, on any machine. The GRU
//! relies on that to give the same state however commits arrive.

use burn::tensor::{Tensor, TensorData};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
mod avx512;

/// Rows up to which the few-row kernels beat burn's matrix multiply.
pub const MAX_ROWS: usize = 8;

/// Rows whose sums one pass over a weight block keeps (within [`ACCUMULATOR_FLOATS`]).
const ROW_GROUP: usize = 16;

/// Floats of partial sums a task keeps per pass: 128 KiB, within the second-level cache.
/// Wide blocks keep each weight row's run long, which the hardware prefetcher streams best
/// (a single row's head product ran at 1.05× its floor with 70 KiB runs, 1.2–1.3× with 16 KiB).
const ACCUMULATOR_FLOATS: usize = 32768;

/// Outputs one task updates in [`add_low_rank`].
const COLUMN_BLOCK: usize = 1024;

/// Products (rows × in × out) below which [`product`] runs on the calling thread: about a
/// tenth of a millisecond of one core's work. The compact head's factors (64 × 24576, 1.6 M)
/// are above it: on one thread each, that head took 23-36 ms, spread 21-23 ms.
const PARALLEL_MIN_PRODUCTS: usize = 1 << 19;

/// A function applied in place to each run of outputs a task has summed ([`product_map`]).
pub type RunMap<'a> = &'a (dyn Fn(&mut [f32]) + Sync);

/// Narrowest block of output columns a task takes.
const MIN_BLOCK_WIDTH: usize = 128;

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
/// Linear layout), by [`product`]; `None` when the tensors are not on the CPU backend.
pub fn x_w(x: &Tensor<3>, w: &Tensor<2>, bias: Option<&Tensor<1>>) -> Option<Tensor<3>> {
    let [b, t, _] = x.dims();
    let [_, d_out] = w.dims();
    let y = x_w_map(x, w, bias, None)?;
    Some(Tensor::from_data(TensorData::new(y, [b, t, d_out]), &x.device()))
}

/// [`x_w`] with `map` applied to each output ([`product_map`]), on the host: `[rows, out]`
/// row-major. `None` when the tensors are not on the CPU backend or `x` has too many rows.
pub fn x_w_map(x: &Tensor<3>, w: &Tensor<2>, bias: Option<&Tensor<1>>, map: Option<RunMap>) -> Option<Vec<f32>> {
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
    Some(product_map(&host(x.clone()), rows, w_data, d_out, bias_data, map))
}

/// `x · W + b` on host slices: `x` `[rows, in]`, `W` `[in, out]`, both row-major; any number
/// of rows. Each output is `(Σᵢ x[i]·W[i, j])`, summed in order of `i` from zero, plus `b[j]`.
///
/// Each task owns a block of output columns and walks the weight's rows top to bottom, so
/// the weight is read once per [`ROW_GROUP`] rows, in contiguous runs, on every core.
pub fn product(xs: &[f32], rows: usize, w: &[f32], d_out: usize, bias: Option<&[f32]>) -> Vec<f32> {
    product_map(xs, rows, w, d_out, bias, None)
}

/// [`product`], then `map` applied to each run of outputs (after their bias) by the task that
/// summed them, while its block is still in cache: an element-wise activation costs no pass
/// of its own on one thread (the head's tanh over 659 k outputs took 10-15 ms there), and
/// sees whole runs, so that it can be vectorised.
pub fn product_map(xs: &[f32], rows: usize, w: &[f32], d_out: usize, bias: Option<&[f32]>, map: Option<RunMap>) -> Vec<f32> {
    let d_in = w.len().checked_div(d_out).unwrap_or(0);
    assert_eq!(w.len(), d_in * d_out, "weight shape");
    assert_eq!(xs.len(), rows * d_in, "input shape");
    if let Some(b) = bias {
        assert_eq!(b.len(), d_out, "bias shape");
    }
    let mut y = vec![0f32; rows * d_out];
    if rows == 0 || d_out == 0 {
        return y;
    }
    let group = rows.min(ROW_GROUP);
    // Small products stay on the calling thread: handing them to the pool costs more than
    // they do, and its idle workers spin on cores that other threads (a walk's encoders)
    // need. Either way each output is summed in the same order.
    let parallel = rows * d_in * d_out >= PARALLEL_MIN_PRODUCTS;
    // As few blocks as fill every core equally while a row group's sums stay in the
    // second-level cache: the wider a block, the longer each weight row's run, and the
    // prefetchers stream long runs best (the GRU's W_hh, one row, took 1.9-2.1 ms as one block
    // per core against 2.4-2.7 ms as four, here).
    let widest = (ACCUMULATOR_FLOATS / group / 16 * 16).max(16);
    let threads = if parallel { rayon::current_num_threads() } else { 1 };
    let tasks = threads * d_out.div_ceil(threads * widest);
    // At least MIN_BLOCK_WIDTH wide (where the output is): narrower blocks spend more on
    // loop overhead than the cores they add bring.
    let width = d_out.div_ceil(tasks).max(MIN_BLOCK_WIDTH).next_multiple_of(16).clamp(16, widest);
    let block_sums = |block: usize| {
        let c0 = block * width;
        let wd = width.min(d_out - c0);
        let mut sums = vec![0f32; rows * wd];
        for (g, group_sums) in sums.chunks_mut(group * wd).enumerate() {
            let r0 = g * group;
            let n = group_sums.len() / wd;
            column_block(&xs[r0 * d_in..(r0 + n) * d_in], n, w, d_out, c0, group_sums);
        }
        for row in sums.chunks_mut(wd) {
            if let Some(b) = bias {
                for (o, &bv) in row.iter_mut().zip(&b[c0..c0 + wd]) {
                    *o += bv;
                }
            }
            if let Some(f) = map {
                f(row);
            }
        }
        sums
    };
    let block_count = d_out.div_ceil(width);
    let blocks: Vec<Vec<f32>> = if parallel { (0..block_count).into_par_iter().map(block_sums).collect() } else { (0..block_count).map(block_sums).collect() };
    for (block, sums) in blocks.iter().enumerate() {
        let c0 = block * width;
        let wd = sums.len() / rows;
        for r in 0..rows {
            y[r * d_out + c0..r * d_out + c0 + wd].copy_from_slice(&sums[r * wd..(r + 1) * wd]);
        }
    }
    y
}

/// Adds `x · W[:, c0..c0 + wd]` into `sums` (`[rows, wd]`), one product at a time in order
/// of the inner index (each sum is `(((s + x₀w₀) + x₁w₁) + …)`), on the widest vectors
/// the CPU has: lanes are outputs, so the width never changes an output's bits.
fn column_block(xs: &[f32], rows: usize, w: &[f32], d_out: usize, c0: usize, sums: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        // Several rows make the products compute-bound: register tiles. One row is bound by
        // memory, which the row walk below streams in long runs.
        if rows >= 4 && std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            unsafe { avx512::column_block(xs, rows, w, d_out, c0, sums) };
            return;
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            unsafe { column_block_avx2(xs, rows, w, d_out, c0, sums) };
            return;
        }
    }
    column_block_portable(xs, rows, w, d_out, c0, sums)
}

// AVX2 without FMA: a fused multiply-add would round once instead of twice and change bits.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn column_block_avx2(xs: &[f32], rows: usize, w: &[f32], d_out: usize, c0: usize, sums: &mut [f32]) {
    column_block_portable(xs, rows, w, d_out, c0, sums)
}

#[inline(always)]
fn column_block_portable(xs: &[f32], rows: usize, w: &[f32], d_out: usize, c0: usize, sums: &mut [f32]) {
    let wd = sums.len() / rows;
    let d_in = xs.len() / rows;
    let col = |i: usize| &w[i * d_out + c0..i * d_out + c0 + wd];
    // Four weight rows a pass, so each sum is loaded and stored once per four products.
    let mut i = 0;
    while i + 4 <= d_in {
        let (w0, w1, w2, w3) = (col(i), col(i + 1), col(i + 2), col(i + 3));
        for (r, s) in sums.chunks_exact_mut(wd).enumerate() {
            let x = &xs[r * d_in + i..r * d_in + i + 4];
            let (x0, x1, x2, x3) = (x[0], x[1], x[2], x[3]);
            for ((((sv, &a), &b), &c), &d) in s.iter_mut().zip(w0).zip(w1).zip(w2).zip(w3) {
                *sv = (((*sv + x0 * a) + x1 * b) + x2 * c) + x3 * d;
            }
        }
        i += 4;
    }
    for i in i..d_in {
        let w0 = col(i);
        for (r, s) in sums.chunks_exact_mut(wd).enumerate() {
            let x0 = xs[r * d_in + i];
            for (sv, &a) in s.iter_mut().zip(w0) {
                *sv += x0 * a;
            }
        }
    }
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

    /// The order of every sum is the contract: a plain loop in index order gives the same
    /// bits, for a row alone, within a block of any size, on any number of threads.
    #[test]
    fn each_output_is_summed_in_input_order_whatever_the_rows_and_threads() {
        // Odd sizes: a weight row count not a multiple of four, outputs not of sixteen,
        // more rows than one pass keeps.
        let (d_in, d_out, rows) = (203, 1187, 37);
        let w: Vec<f32> = (0..d_in * d_out).map(|i| ((i * 7919 % 1009) as f32 - 504.0) / 337.0).collect();
        let bias: Vec<f32> = (0..d_out).map(|j| (j as f32 - 600.0) / 999.0).collect();
        let xs: Vec<f32> = (0..rows * d_in).map(|i| ((i * 613 % 211) as f32 - 105.0) / 71.0).collect();
        let mut plain = vec![0f32; rows * d_out];
        for r in 0..rows {
            for j in 0..d_out {
                let mut sum = 0f32;
                for i in 0..d_in {
                    sum += xs[r * d_in + i] * w[i * d_out + j];
                }
                plain[r * d_out + j] = sum + bias[j];
            }
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let pool = |n| rayon::ThreadPoolBuilder::new().num_threads(n).build().unwrap();
        for threads in [1, 3] {
            let all = pool(threads).install(|| product(&xs, rows, &w, d_out, Some(&bias)));
            assert_eq!(bits(&all), bits(&plain), "{rows} rows on {threads} threads");
            for r in [0, 17, 36] {
                let alone = pool(threads).install(|| product(&xs[r * d_in..(r + 1) * d_in], 1, &w, d_out, Some(&bias)));
                assert_eq!(bits(&alone), bits(&plain[r * d_out..(r + 1) * d_out]), "row {r} alone on {threads} threads");
            }
            // An activation applied by the tasks gives what applying it afterwards gives.
            let act = |v: f32| v.tanh() * 0.25;
            let act_runs = |run: &mut [f32]| run.iter_mut().for_each(|v| *v = act(*v));
            let act_runs = Some(&act_runs as RunMap);
            let mapped = pool(threads).install(|| product_map(&xs, rows, &w, d_out, Some(&bias), act_runs));
            let after: Vec<f32> = plain.iter().map(|&v| act(v)).collect();
            assert_eq!(bits(&mapped), bits(&after), "mapped on {threads} threads");
            let one = pool(threads).install(|| product_map(&xs[..d_in], 1, &w, d_out, Some(&bias), act_runs));
            assert_eq!(bits(&one), bits(&after[..d_out]), "one mapped row on {threads} threads");
        }
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
