//! A paired bootstrap interval for the difference of two pass rates measured on the same
//! problems. Kept local and small; seeded, so a report is reproducible.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BootstrapOptions {
    pub resamples: usize,
    pub seed: u64,
    /// Coverage of the interval, e.g. 0.95.
    pub confidence: f64,
}

impl Default for BootstrapOptions {
    fn default() -> Self {
        Self { resamples: 5000, seed: 13, confidence: 0.95 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

/// Percentile interval of mean(after − before) over problems resampled with replacement; the
/// pairing keeps each problem's two results together. `None` for no problems or no resamples.
pub fn paired_difference_interval(
    before: &[bool],
    after: &[bool],
    options: &BootstrapOptions,
) -> Option<Interval> {
    assert_eq!(before.len(), after.len(), "paired results");
    let count = before.len();
    if count == 0 || options.resamples == 0 {
        return None;
    }
    // Per problem the difference is −1, 0 or +1.
    let differences: Vec<i64> =
        before.iter().zip(after).map(|(&b, &a)| i64::from(a) - i64::from(b)).collect();
    let mut random = SplitMix64(options.seed);
    let mut means: Vec<f64> = (0..options.resamples)
        .map(|_| {
            let sum: i64 = (0..count).map(|_| differences[random.below(count)]).sum();
            sum as f64 / count as f64
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let tail = (1.0 - options.confidence.clamp(0.0, 1.0)) / 2.0;
    Some(Interval { low: percentile(&means, tail), high: percentile(&means, 1.0 - tail) })
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], quantile: f64) -> f64 {
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// SplitMix64: tiny, fast, and plenty for resampling indices.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound`, by multiply-shift (bias is negligible at these sizes).
    fn below(&mut self, bound: usize) -> usize {
        ((u128::from(self.next()) * bound as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_runs_give_a_zero_interval() {
        let results = [true, false, true, true, false];
        let interval = paired_difference_interval(&results, &results, &BootstrapOptions::default()).unwrap();
        assert_eq!((interval.low, interval.high), (0.0, 0.0));
    }

    #[test]
    fn interval_brackets_the_observed_difference_and_is_seeded() {
        // 40 problems: 12 fixed, 2 broken, observed difference +0.25.
        let before: Vec<bool> = (0..40).map(|i| i >= 12 && i % 3 == 0 || (12..14).contains(&i)).collect();
        let after: Vec<bool> = (0..40).map(|i| i < 12 || (i >= 14 && i % 3 == 0)).collect();
        let observed = (after.iter().filter(|&&a| a).count() as f64
            - before.iter().filter(|&&b| b).count() as f64)
            / 40.0;
        let options = BootstrapOptions::default();
        let interval = paired_difference_interval(&before, &after, &options).unwrap();
        assert!(interval.low < observed && observed < interval.high, "{interval:?} vs {observed}");
        assert!(interval.low > 0.0, "a clear gain excludes zero: {interval:?}");
        assert!(interval.high - interval.low < 0.4, "{interval:?}");
        assert_eq!(Some(interval), paired_difference_interval(&before, &after, &options));
    }

    #[test]
    fn uniform_indices_cover_the_range() {
        let mut random = SplitMix64(1);
        let mut seen = [0usize; 5];
        for _ in 0..5000 {
            seen[random.below(5)] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }
}
