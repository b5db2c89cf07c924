//! Scoring completions as the paper does (§4.5; the authors' `evaluation/metrics.py`):
//! post-processing of the prediction, normalisation, exact match, edit similarity
//! (Python's `difflib.SequenceMatcher(None, a, b).ratio()`, reproduced exactly) and
//! percentile bootstrap intervals.
//!
//! "Whitespace", "strip" and "split" below are Python's `str` methods: Unicode whitespace.
//!
//! Deviations: the authors strip only `<|fim_prefix|>`, `<|fim_suffix|>` and `<|fim_middle|>`;
//! here `<|fim_pad|>` is removed too, and the prediction ends at the first `<|endoftext|>`,
//! `<|file_sep|>` or `<|repo_name|>` (what follows belongs to another document). The
//! bootstrap draws its resamples from its own seeded generator, not NumPy's, so intervals
//! match the authors' in distribution, not digit for digit.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::python::is_python_space;

/// Tokens removed wherever they appear in a prediction.
pub const FIM_TOKENS: [&str; 4] = ["<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|fim_pad|>"];
/// Tokens that end a prediction.
pub const END_TOKENS: [&str; 3] = ["<|endoftext|>", "<|file_sep|>", "<|repo_name|>"];

/// The paper's resample count.
pub const BOOTSTRAP_RESAMPLES: usize = 5000;

fn strip(s: &str) -> &str {
    s.trim_matches(is_python_space)
}

fn words(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_python_space).filter(|w| !w.is_empty())
}

/// The prediction without FIM tokens and without what follows an end token, stripped.
pub fn strip_special_tokens(prediction: &str) -> String {
    let end = END_TOKENS.iter().filter_map(|t| prediction.find(t)).min().unwrap_or(prediction.len());
    let mut s = prediction[..end].to_owned();
    for token in FIM_TOKENS {
        s = s.replace(token, "");
    }
    strip(&s).to_owned()
}

/// Everything before the first `#`, stripped (a `#` inside a string literal cuts too, as
/// in the authors' code).
pub fn strip_comments(s: &str) -> &str {
    strip(s.split('#').next().unwrap_or_default())
}

/// Cuts an over-long prediction to the reference's shape: its first line when the
/// reference has none, no comment, up to its first comma when the reference has none, its
/// first word when the reference is one word.
pub fn postprocess(prediction: &str, reference: &str) -> String {
    let mut pred = strip_special_tokens(prediction);
    if !reference.contains('\n') && pred.contains('\n') {
        pred = pred.split('\n').next().unwrap_or_default().to_owned();
    }
    let mut pred = strip_comments(&pred).to_owned();
    let reference = strip_comments(reference);
    if !reference.is_empty() {
        if !reference.contains(',') && pred.contains(',') {
            pred = strip(pred.split(',').next().unwrap_or_default()).to_owned();
        }
        if words(reference).count() == 1 && words(&pred).count() > 1 {
            let first = words(&pred).next().unwrap_or_default().to_owned();
            pred = first;
        }
    }
    strip(&pred).to_owned()
}

/// Whether more generated text could no longer change [`postprocess`]'s result: an end token
/// has been generated, or the reference is one line and the prediction already holds a line
/// break past its leading whitespace. Decoding can stop there (the scores are the same as
/// after the full budget), which saves most of a completion's tokens.
pub fn prediction_settled(prediction: &str, reference: &str) -> bool {
    END_TOKENS.iter().any(|t| prediction.contains(t)) || !reference.contains('\n') && strip_special_tokens(prediction).contains('\n')
}

/// `strip().rstrip(":, \t")`, `", "` and `" ,"` made `","`, whitespace runs made one space.
pub fn normalize(s: &str) -> String {
    let s = strip(s).trim_end_matches([':', ',', ' ', '\t']);
    let s = s.replace(", ", ",").replace(" ,", ",");
    words(&s).collect::<Vec<_>>().join(" ")
}

/// Equal after [`normalize`]; callers post-process first.
pub fn exact_match(prediction: &str, reference: &str) -> bool {
    normalize(prediction) == normalize(reference)
}

/// One completion's scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub exact_match: bool,
    pub edit_similarity: f64,
    /// The prediction after [`postprocess`].
    pub prediction: String,
    /// The reference without its comment.
    pub reference: String,
}

/// The authors' `compute_metrics`, without CodeBLEU.
pub fn score(prediction: &str, reference: &str) -> Scores {
    let prediction = postprocess(prediction, reference);
    let reference = strip_comments(reference).to_owned();
    Scores { exact_match: exact_match(&prediction, &reference), edit_similarity: edit_similarity(&prediction, &reference), prediction, reference }
}

/// `difflib.SequenceMatcher(None, a, b).ratio()`: twice the matched characters over the
/// total, where matches are found as difflib finds them, longest block first, recursively
/// on each side, with its "popular element" heuristic (`autojunk`): in a `b` of 200 or more
/// characters, a character occurring more than `len(b) // 100 + 1` times never starts a
/// match (though matches may extend over it).
pub fn edit_similarity(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let total = a.len() + b.len();
    if total == 0 {
        return 1.0;
    }
    let matcher = Matcher::new(&a, &b);
    2.0 * matcher.matched(0, a.len(), 0, b.len()) as f64 / total as f64
}

struct Matcher<'x> {
    a: &'x [char],
    b: &'x [char],
    /// Where each non-popular character of `b` occurs, ascending.
    b_positions: HashMap<char, Vec<usize>>,
}

impl<'x> Matcher<'x> {
    fn new(a: &'x [char], b: &'x [char]) -> Self {
        let mut b_positions: HashMap<char, Vec<usize>> = HashMap::new();
        for (j, &c) in b.iter().enumerate() {
            b_positions.entry(c).or_default().push(j);
        }
        if b.len() >= 200 {
            let most = b.len() / 100 + 1;
            b_positions.retain(|_, positions| positions.len() <= most);
        }
        Matcher { a, b, b_positions }
    }

    /// Characters matched in `a[alo..ahi]` against `b[blo..bhi]` (`get_matching_blocks`).
    fn matched(&self, alo: usize, ahi: usize, blo: usize, bhi: usize) -> usize {
        let (i, j, k) = self.longest_match(alo, ahi, blo, bhi);
        if k == 0 {
            return 0;
        }
        let mut total = k;
        if alo < i && blo < j {
            total += self.matched(alo, i, blo, j);
        }
        if i + k < ahi && j + k < bhi {
            total += self.matched(i + k, ahi, j + k, bhi);
        }
        total
    }

    /// `find_longest_match`: the earliest longest block among non-popular starts, then
    /// widened over equal neighbours (no junk function, so nothing else is junk).
    fn longest_match(&self, alo: usize, ahi: usize, blo: usize, bhi: usize) -> (usize, usize, usize) {
        let (mut besti, mut bestj, mut bestsize) = (alo, blo, 0);
        let mut run_ending_at: HashMap<usize, usize> = HashMap::new();
        for i in alo..ahi {
            let mut next: HashMap<usize, usize> = HashMap::new();
            if let Some(positions) = self.b_positions.get(&self.a[i]) {
                for &j in positions {
                    if j < blo {
                        continue;
                    }
                    if j >= bhi {
                        break;
                    }
                    let k = j.checked_sub(1).and_then(|p| run_ending_at.get(&p)).copied().unwrap_or(0) + 1;
                    next.insert(j, k);
                    if k > bestsize {
                        (besti, bestj, bestsize) = (i + 1 - k, j + 1 - k, k);
                    }
                }
            }
            run_ending_at = next;
        }
        while besti > alo && bestj > blo && self.a[besti - 1] == self.b[bestj - 1] {
            besti -= 1;
            bestj -= 1;
            bestsize += 1;
        }
        while besti + bestsize < ahi && bestj + bestsize < bhi && self.a[besti + bestsize] == self.b[bestj + bestsize] {
            bestsize += 1;
        }
        (besti, bestj, bestsize)
    }
}

/// A mean and its percentile bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub mean: f64,
    pub low: f64,
    pub high: f64,
    pub n: usize,
}

/// A small seeded generator (SplitMix64): resamples are the same on every machine.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift with rejection, so unbiased).
    fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        let threshold = n.wrapping_neg() % n;
        loop {
            let product = (self.next() as u128) * (n as u128);
            if (product as u64) >= threshold {
                return (product >> 64) as usize;
            }
        }
    }
}

/// NumPy's default (linear) quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let position = q * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    sorted[below] + (sorted[above] - sorted[below]) * (position - below as f64)
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Resampled means of `statistic(index)` over `n` items, sorted.
fn resampled_means(n: usize, resamples: usize, seed: u64, statistic: impl Fn(usize) -> f64) -> Vec<f64> {
    let mut rng = SplitMix(seed);
    let mut means: Vec<f64> = (0..resamples).map(|_| (0..n).map(|_| statistic(rng.below(n))).sum::<f64>() / n as f64).collect();
    means.sort_by(f64::total_cmp);
    means
}

/// The mean of `values` with a percentile bootstrap interval at `confidence` (0.95 for
/// the paper's 2.5%–97.5%), from `resamples` resamples drawn with `seed`.
pub fn bootstrap(values: &[f64], resamples: usize, confidence: f64, seed: u64) -> Interval {
    let n = values.len();
    if n == 0 {
        return Interval { mean: 0.0, low: 0.0, high: 0.0, n: 0 };
    }
    let m = mean(values);
    if resamples == 0 {
        return Interval { mean: m, low: m, high: m, n };
    }
    let means = resampled_means(n, resamples, seed, |i| values[i]);
    let alpha = (1.0 - confidence) / 2.0;
    Interval { mean: m, low: quantile(&means, alpha), high: quantile(&means, 1.0 - alpha), n }
}

/// The difference of two systems scored on the same tasks, `a - b`, with a paired bootstrap
/// interval (both resampled with the same indices).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedDifference {
    pub difference: Interval,
    /// The share of resamples in which `a` does not beat `b` (a one-sided p-value).
    pub share_not_better: f64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("paired scores must cover the same tasks: {a} scores against {b}")]
pub struct UnpairedError {
    pub a: usize,
    pub b: usize,
}

pub fn paired_bootstrap(a: &[f64], b: &[f64], resamples: usize, confidence: f64, seed: u64) -> Result<PairedDifference, UnpairedError> {
    if a.len() != b.len() {
        return Err(UnpairedError { a: a.len(), b: b.len() });
    }
    let differences: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let n = differences.len();
    if n == 0 || resamples == 0 {
        let m = if n == 0 { 0.0 } else { mean(&differences) };
        return Ok(PairedDifference { difference: Interval { mean: m, low: m, high: m, n }, share_not_better: if m > 0.0 { 0.0 } else { 1.0 } });
    }
    let means = resampled_means(n, resamples, seed, |i| differences[i]);
    let alpha = (1.0 - confidence) / 2.0;
    let not_better = means.iter().filter(|&&d| d <= 0.0).count() as f64 / means.len() as f64;
    Ok(PairedDifference { difference: Interval { mean: mean(&differences), low: quantile(&means, alpha), high: quantile(&means, 1.0 - alpha), n }, share_not_better: not_better })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_settled_prediction_scores_the_same_whatever_follows() {
        let cases = [("\n  42\n", "42"), ("foo(1)\nbar", "foo(1)"), ("x <|endoftext|>", "x"), ("[1,\n 2]", "[1,\n 2]")];
        for (prediction, reference) in cases {
            let settled = prediction_settled(prediction, reference);
            let more = format!("{prediction} tail, 7 # more\nlines");
            if settled {
                assert_eq!(postprocess(prediction, reference), postprocess(&more, reference), "{prediction:?}");
            }
        }
        assert!(prediction_settled("\n  42\n  assert", "42"));
        assert!(!prediction_settled("\n  42\n", "42"), "a trailing break may still be followed by nothing but whitespace");
        assert!(!prediction_settled("[1,\n 2", "[1,\n 2]"), "a multi-line reference needs more");
        assert!(prediction_settled("x <|endoftext|>", "x"));
    }

    #[test]
    fn special_tokens_are_removed_and_an_end_token_ends_the_prediction() {
        assert_eq!(strip_special_tokens("<|fim_middle|> 42)<|fim_pad|>"), "42)");
        assert_eq!(strip_special_tokens("1)<|endoftext|>def f(): pass"), "1)");
        assert_eq!(strip_special_tokens("x)<|file_sep|>other.py"), "x)");
        assert_eq!(strip_special_tokens("<|fim_prefix|>a<|fim_suffix|>b<|repo_name|>c"), "ab");
    }

    #[test]
    fn a_one_line_reference_keeps_the_first_line() {
        assert_eq!(postprocess("1)\n    assert y == 2", "1)"), "1)");
        assert_eq!(postprocess("[\n1]", "[\n1]"), "[\n1]", "a multi-line reference keeps the lines");
    }

    #[test]
    fn comments_are_stripped_from_both_sides() {
        assert_eq!(postprocess("3)  # three", "3)"), "3)");
        assert_eq!(strip_comments("'#fff')"), "'", "a # in a string cuts too, as the authors' code does");
        assert_eq!(score("'#fff')", "'#fff')").reference, "'");
    }

    #[test]
    fn a_reference_without_a_comma_cuts_at_the_first_comma() {
        assert_eq!(postprocess("foo, 'message')", "foo)"), "foo");
        assert_eq!(postprocess("1, 2)", "(1, 2))"), "1, 2)", "the reference has a comma");
    }

    #[test]
    fn a_one_word_reference_keeps_the_first_word() {
        assert_eq!(postprocess("True and x", "True"), "True");
        assert_eq!(postprocess("a + b", "a + c"), "a + b");
        assert_eq!(postprocess("a b", "# only a comment"), "a b", "an empty reference cuts nothing");
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalize("  x == 1 :,\t"), "x == 1");
        assert_eq!(normalize("f(a, b ,c)"), "f(a,b,c)");
        assert_eq!(normalize("a \t\n  b"), "a b");
        assert_eq!(normalize("a\u{a0}b"), "a b", "Python's whitespace");
        assert!(exact_match("[1, 2]", "[1,2]"));
        assert!(!exact_match("[1, 2]", "[1, 3]"));
    }

    #[test]
    fn scoring_post_processes_then_matches() {
        let s = score("<|fim_middle|>ValueError, match='x')\n", "ValueError)");
        assert_eq!(s.prediction, "ValueError");
        assert!(!s.exact_match, "the closing parenthesis is missing");
        assert!(score("ValueError) # raised\nmore", "ValueError)").exact_match);
    }

    #[test]
    fn edit_similarity_basics() {
        assert_eq!(edit_similarity("", ""), 1.0);
        assert_eq!(edit_similarity("abc", ""), 0.0);
        assert_eq!(edit_similarity("abcd", "bcde"), 0.75);
    }

    #[test]
    fn bootstrap_is_deterministic_and_brackets_the_mean() {
        let values: Vec<f64> = (0..200).map(|i| if i % 3 == 0 { 1.0 } else { 0.0 }).collect();
        let a = bootstrap(&values, BOOTSTRAP_RESAMPLES, 0.95, 7);
        assert_eq!(a, bootstrap(&values, BOOTSTRAP_RESAMPLES, 0.95, 7));
        let spread: Vec<f64> = (0..50).map(|i| (i as f64).sqrt()).collect();
        assert_ne!(bootstrap(&spread, 100, 0.95, 7), bootstrap(&spread, 100, 0.95, 8), "the seed chooses the resamples");
        assert!(a.low < a.mean && a.mean < a.high, "{a:?}");
        // The standard error of a proportion of 1/3 over 200 is 0.033: the interval is about ±1.96 of it.
        assert!((a.high - a.low - 2.0 * 1.96 * 0.0333).abs() < 0.02, "{a:?}");
        assert_eq!(bootstrap(&[], 10, 0.95, 0).n, 0);
    }

    #[test]
    fn paired_bootstrap_sees_a_consistent_improvement() {
        let b: Vec<f64> = (0..100).map(|i| if i % 2 == 0 { 1.0 } else { 0.0 }).collect();
        let a: Vec<f64> = b.iter().enumerate().map(|(i, &x)| if i % 10 == 1 { 1.0 } else { x }).collect();
        let d = paired_bootstrap(&a, &b, BOOTSTRAP_RESAMPLES, 0.95, 1).unwrap();
        assert!((d.difference.mean - 0.1).abs() < 1e-12);
        assert!(d.difference.low > 0.0 && d.share_not_better < 0.025, "{d:?}");
        let same = paired_bootstrap(&b, &b, 100, 0.95, 1).unwrap();
        assert_eq!((same.difference.low, same.difference.high, same.share_not_better), (0.0, 0.0, 1.0));
        assert_eq!(paired_bootstrap(&a, &b[1..], 10, 0.95, 1), Err(UnpairedError { a: 100, b: 99 }));
    }
}
