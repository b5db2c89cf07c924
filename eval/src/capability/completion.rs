//! Turning a base model's raw continuation into the function body that gets tested, and the
//! program that tests it.
//!
//! A base (non-chat) model asked to continue a HumanEval prompt writes the function body and then
//! usually keeps going: another function, a usage example, a `__main__` block. The Codex paper
//! that introduced HumanEval stopped sampling at `\nclass`, `\ndef`, `\n#`, `\nif` and `\nprint`,
//! and evaluation harnesses for base models do the same. All of these start at column 0, while
//! the body being completed is indented, so cutting there keeps the body and drops what follows.
//! Two of them are narrowed here: `\nif __name__` rather than any `\nif`, and `\nprint(`, so that
//! the cut is at the constructs that actually end a body. The end-of-text markers cover decoding
//! that keeps special tokens as text.

use super::problems::Problem;

/// Where a continuation is cut, earliest occurrence first.
pub const STOP_SEQUENCES: &[&str] =
    &["\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", END_OF_TEXT, "<|file_sep|>", "<|im_end|>"];

/// The end-of-text token's text in the Qwen (and GPT-2 family) vocabularies.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// The continuation up to (not including) the earliest stop sequence.
pub fn truncate_completion(completion: &str) -> &str {
    truncate_at(completion, STOP_SEQUENCES)
}

/// The continuation up to (not including) the earliest of `stops`.
pub fn truncate_at<'a>(completion: &'a str, stops: &[&str]) -> &'a str {
    let end = stops.iter().filter_map(|stop| completion.find(stop)).min().unwrap_or(completion.len());
    &completion[..end]
}

/// The program the sandbox runs, laid out as the HumanEval harness does: prompt, completion, the
/// problem's tests, then the call of `check` on the entry point.
pub fn test_program(problem: &Problem, completion: &str) -> String {
    format!("{}{}\n{}\ncheck({})\n", problem.prompt, completion, problem.test, problem.entry_point)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_kept_and_what_follows_is_cut() {
        let body = "    total = 0\n    # add them\n    for x in xs:\n        total += x\n    return total\n";
        for tail in [
            "\ndef other():\n    pass\n",
            "\nclass Helper:\n    pass\n",
            "\nif __name__ == \"__main__\":\n    main()\n",
            "\nprint(add([1, 2]))\n",
            "\n# Example usage\n",
            "<|endoftext|>garbage",
        ] {
            assert_eq!(truncate_completion(&format!("{body}{tail}")), body, "tail {tail:?}");
        }
    }

    #[test]
    fn earliest_stop_wins_and_no_stop_keeps_everything() {
        assert_eq!(truncate_completion("    return 1\n#x\ndef g(): pass"), "    return 1");
        assert_eq!(truncate_completion("    return 1\n"), "    return 1\n");
        // Indented helpers and conditionals belong to the body.
        let nested = "    def inner():\n        return 2\n    if True:\n        print(1)\n";
        assert_eq!(truncate_completion(nested), nested);
    }

    #[test]
    fn program_layout_matches_the_harness() {
        let problem = Problem {
            task_id: "T/0".into(),
            prompt: "def f():\n".into(),
            canonical_solution: "    return 1\n".into(),
            test: "def check(candidate):\n    assert candidate() == 1\n".into(),
            entry_point: "f".into(),
        };
        assert_eq!(
            test_program(&problem, "    return 1\n"),
            "def f():\n    return 1\n\ndef check(candidate):\n    assert candidate() == 1\n\ncheck(f)\n"
        );
    }
}
