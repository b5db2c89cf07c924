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
/// pairing keeps each problem's two results together (the paired bootstrap of
/// [`crate::metrics`], on pass/fail). `None` for no problems or no resamples.
pub fn paired_difference_interval(
    before: &[bool],
    after: &[bool],
    options: &BootstrapOptions,
) -> Option<Interval> {
    assert_eq!(before.len(), after.len(), "paired results");
    if before.is_empty() || options.resamples == 0 {
        return None;
    }
    let score = |results: &[bool]| results.iter().map(|&r| f64::from(u8::from(r))).collect::<Vec<_>>();
    let paired = crate::metrics::paired_bootstrap(
        &score(after),
        &score(before),
        options.resamples,
        options.confidence.clamp(0.0, 1.0),
        options.seed,
    )
    .expect("paired by construction");
    Some(Interval { low: paired.difference.low, high: paired.difference.high })
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
}
