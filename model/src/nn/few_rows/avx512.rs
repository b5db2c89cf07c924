//! [`super::column_block`] for several rows on AVX-512: tiles of four rows × 64 outputs whose
//! sums stay in registers across a run of the inner index, so each weight vector loaded
//! serves four rows and no sum goes through memory between products. The GRU's input side
//! (16 rows against W_ih in a catch-up) took 7.6-8 ms this way against 11-13 ms with the
//! row walk. Every sum is still taken one product at a time in order of the inner index, a
//! multiply then an add (never fused), so the bits are those of the portable kernel.

use std::arch::x86_64::*;

/// Inner indices a tile runs before its sums go back to memory: 64 rows of a 64-wide tile
/// (16 KiB of weight) stay in the first-level cache while the next rows' tiles reuse them.
const INNER_RUN: usize = 64;

/// Rows a tile takes from registers at once.
const TILE_ROWS: usize = 4;

/// Adds `x · W[:, c0..c0 + wd]` into `sums` (`[rows, wd]`), W's rows `stride` floats apart.
///
/// # Safety
/// The CPU must have AVX-512F.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn column_block(xs: &[f32], rows: usize, w: &[f32], stride: usize, c0: usize, sums: &mut [f32]) {
    let wd = sums.len() / rows;
    let d_in = xs.len() / rows;
    assert_eq!((xs.len(), sums.len()), (rows * d_in, rows * wd), "block shapes");
    if d_in == 0 || wd == 0 {
        return;
    }
    assert!(w.len() >= (d_in - 1) * stride + c0 + wd, "weight block within the weight");
    // SAFETY (for the tiles below): every row r < rows, inner index i < d_in and output
    // j < wd they touch is within the slices, by the two assertions above; the last vector
    // of a run narrower than 16 is masked.
    let (x, wp, s) = (xs.as_ptr(), unsafe { w.as_ptr().add(c0) }, sums.as_mut_ptr());
    let mut i0 = 0;
    while i0 < d_in {
        let i1 = (i0 + INNER_RUN).min(d_in);
        let mut j = 0;
        while j < wd {
            let left = wd - j;
            let wide = left >= 64;
            let mask: __mmask16 = if left >= 16 { 0xffff } else { (1u16 << left) - 1 };
            let mut r = 0;
            while r < rows {
                let at = Tile { x: unsafe { x.add(r * d_in) }, d_in, w: unsafe { wp.add(j) }, stride, s: unsafe { s.add(r * wd + j) }, wd, i0, i1, mask };
                unsafe {
                    match (rows - r >= TILE_ROWS, wide) {
                        (true, true) => at.run::<TILE_ROWS, 4>(),
                        (true, false) => at.run::<TILE_ROWS, 1>(),
                        (false, true) => at.run::<1, 4>(),
                        (false, false) => at.run::<1, 1>(),
                    }
                }
                r += if rows - r >= TILE_ROWS { TILE_ROWS } else { 1 };
            }
            j += if wide { 64 } else { 16 };
        }
        i0 = i1;
    }
}

/// One tile's place: rows from `x` (`d_in` apart), outputs from `w` (rows `stride` apart)
/// into `s` (rows `wd` apart), over inner indices `[i0, i1)`; `mask` keeps the lanes of the
/// last vector that lie within the block.
struct Tile {
    x: *const f32,
    d_in: usize,
    w: *const f32,
    stride: usize,
    s: *mut f32,
    wd: usize,
    i0: usize,
    i1: usize,
    mask: __mmask16,
}

impl Tile {
    /// `NR` rows × `NV` vectors of 16 outputs.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn run<const NR: usize, const NV: usize>(&self) {
        let lane_mask = |v: usize| if v + 1 == NV { self.mask } else { 0xffff };
        let mut acc = [[_mm512_setzero_ps(); NV]; NR];
        for (r, row) in acc.iter_mut().enumerate() {
            for (v, a) in row.iter_mut().enumerate() {
                *a = unsafe { _mm512_maskz_loadu_ps(lane_mask(v), self.s.add(r * self.wd + 16 * v)) };
            }
        }
        for i in self.i0..self.i1 {
            let w_row = unsafe { self.w.add(i * self.stride) };
            let mut wv = [_mm512_setzero_ps(); NV];
            for (v, wv) in wv.iter_mut().enumerate() {
                *wv = unsafe { _mm512_maskz_loadu_ps(lane_mask(v), w_row.add(16 * v)) };
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let xv = _mm512_set1_ps(unsafe { *self.x.add(r * self.d_in + i) });
                for (a, &wv) in row.iter_mut().zip(&wv) {
                    *a = _mm512_add_ps(*a, _mm512_mul_ps(xv, wv));
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, &a) in row.iter().enumerate() {
                unsafe { _mm512_mask_storeu_ps(self.s.add(r * self.wd + 16 * v), lane_mask(v), a) };
            }
        }
    }
}
