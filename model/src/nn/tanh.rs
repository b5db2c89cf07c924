//! tanh over a slice in a form the compiler vectorises: the head applies it to every one of
//! its outputs (659 k at the paper's size), where glibc's `tanhf`, one call per value, cost
//! more than the head's product at the compact size.
//!
//! The method is Cephes' `tanhf`: an odd polynomial below |x| = 0.625, `1 − 2/(e^{2|x|} + 1)`
//! above, with e^y by range reduction to [−ln2/2, ln2/2] and a degree-6 polynomial. Both
//! branches are computed and one selected, with plain multiplies and adds (never fused), so
//! the bits are the same on every vector width and machine, and independent of the system's
//! libm. The error is within two units in the last place (tested against f64).

/// Above this |x|, tanh rounds to ±1 in f32.
const SATURATES: f32 = 10.0;

/// Replaces each value by its tanh times `scale`.
pub fn tanh_scaled_in_place(xs: &mut [f32], scale: f32) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked just above.
            unsafe { tanh_avx512(xs, scale) };
            return;
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            unsafe { tanh_avx2(xs, scale) };
            return;
        }
    }
    tanh_portable(xs, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn tanh_avx512(xs: &mut [f32], scale: f32) {
    tanh_portable(xs, scale)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn tanh_avx2(xs: &mut [f32], scale: f32) {
    tanh_portable(xs, scale)
}

#[inline(always)]
fn tanh_portable(xs: &mut [f32], scale: f32) {
    for v in xs.iter_mut() {
        *v = tanh(*v) * scale;
    }
}

/// tanh of one value; branch-free so that a loop over it vectorises.
#[inline(always)]
fn tanh(x: f32) -> f32 {
    let a = x.abs();
    // |x| < 0.625: x + x³·P(x²).
    let z = a * a;
    let small = ((((-5.704_988_7e-3 * z + 2.063_908_8e-2) * z - 5.373_971_6e-2) * z + 1.333_144_2e-1) * z - 3.333_328e-1) * z * a + a;
    // Above: 1 − 2/(e^{2|x|} + 1), with |x| capped where tanh is 1 anyway.
    let e = exp(2.0 * if a < SATURATES { a } else { SATURATES });
    let large = 1.0 - 2.0 / (e + 1.0);
    let t = if a < 0.625 { small } else { large };
    // NaN stays NaN (the cap above would have made it 1).
    if x.is_nan() { x } else { t.copysign(x) }
}

/// e^y for y in [0, 20]: y = k·ln2 + r, e^y = 2^k · e^r.
#[inline(always)]
fn exp(y: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln2 in two parts, so that k·LN2_HI is exact and r keeps its low bits.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer (|y·log2e| < 2^22).
    const ROUND: f32 = 12_582_912.0;
    let k = (y * LOG2E + ROUND) - ROUND;
    let r = (y - k * LN2_HI) - k * LN2_LO;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 0.5) * (r * r) + r + 1.0;
    p * f32::from_bits(((k as i32 + 127) << 23) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Units in the last place between `got` and the exact `want`.
    fn ulps(got: f32, want: f64) -> f64 {
        let w = want as f32;
        let ulp = (f32::from_bits(w.abs().to_bits() + 1) - w.abs()) as f64;
        ((got as f64) - want).abs() / ulp
    }

    #[test]
    fn within_two_ulps_of_the_exact_tanh() {
        let mut worst = (0.0f64, 0.0f32);
        // Every 64th f32 from 0 up to past saturation (covers both branches, their border
        // and the subnormals), both signs.
        let top = 11.0f32.to_bits();
        for bits in (0..top).step_by(64).chain([0.625f32.to_bits() - 1, 0.625f32.to_bits(), SATURATES.to_bits()]) {
            for x in [f32::from_bits(bits), -f32::from_bits(bits)] {
                let mut v = [x];
                tanh_scaled_in_place(&mut v, 1.0);
                let e = ulps(v[0], (x as f64).tanh());
                if e > worst.0 {
                    worst = (e, x);
                }
            }
        }
        assert!(worst.0 <= 2.0, "{} ulps at {}", worst.0, worst.1);
    }

    #[test]
    fn edges() {
        let mut v = [0.0, -0.0, 20.0, -1e30, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 1e-40];
        tanh_scaled_in_place(&mut v, 1.0);
        assert_eq!(v[..6], [0.0, -0.0, 1.0, -1.0, 1.0, -1.0]);
        assert!(v[1].is_sign_negative());
        assert!(v[6].is_nan());
        assert_eq!(v[7], 1e-40);
    }

    /// The vector widths agree bit for bit with each other and with the one-value form.
    #[test]
    fn the_same_bits_on_every_path() {
        let xs: Vec<f32> = (0..4099).map(|i| ((i * 7919 % 4001) as f32 - 2000.0) / 211.0).collect();
        let one: Vec<u32> = xs.iter().map(|&x| (tanh(x) * 0.3).to_bits()).collect();
        let mut all = xs.clone();
        tanh_scaled_in_place(&mut all, 0.3);
        assert_eq!(all.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), one);
        let mut portable = xs.clone();
        tanh_portable(&mut portable, 0.3);
        assert_eq!(portable.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), one);
    }
}
