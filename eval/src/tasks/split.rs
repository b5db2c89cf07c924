//! The per-repository chronological split of kept commits into train, validation and test.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Val,
    Test,
}

impl Split {
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Val => "val",
            Split::Test => "test",
        }
    }
}

/// The splits of `kept` commits, oldest first: 80/10/10 rounded down, with the authors'
/// corrections (`_chronological_splits` of `build_commit_parquet_db.py`): fewer than three
/// commits all train; otherwise at least one commit each, taken from validation and then
/// from train when the test share would be empty.
pub fn chronological(kept: usize) -> Vec<Split> {
    if kept == 0 {
        return Vec::new();
    }
    if kept < 3 {
        return vec![Split::Train; kept];
    }
    let mut train = (kept * 8 / 10).max(1);
    let mut val = (kept / 10).max(1);
    if kept < train + val + 1 {
        if val > 1 {
            val -= 1;
        }
        if kept < train + val + 1 {
            train = (train - 1).max(1);
        }
    }
    let test = kept - train - val;
    [(Split::Train, train), (Split::Val, val), (Split::Test, test)].into_iter().flat_map(|(s, n)| std::iter::repeat_n(s, n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(kept: usize) -> (usize, usize, usize) {
        let s = chronological(kept);
        assert!(s.windows(2).all(|w| w[0] <= w[1]), "chronological: train, then val, then test");
        (s.iter().filter(|&&x| x == Split::Train).count(), s.iter().filter(|&&x| x == Split::Val).count(), s.iter().filter(|&&x| x == Split::Test).count())
    }

    #[test]
    fn eighty_ten_ten_rounded_down_with_the_authors_corrections() {
        assert_eq!(counts(0), (0, 0, 0));
        assert_eq!(counts(2), (2, 0, 0));
        assert_eq!(counts(3), (1, 1, 1));
        assert_eq!(counts(5), (3, 1, 1), "int(4.0)=4 train, 1 val leaves 0 test: train gives one");
        assert_eq!(counts(9), (7, 1, 1));
        assert_eq!(counts(10), (8, 1, 1));
        assert_eq!(counts(104), (83, 10, 11));
    }
}
