//! One commit's whole journey: hook → socket → daemon → git diff → encoder → GRU step →
//! sled → trigger → hypernetwork → PEFT adapter on disk → socket query returns its path;
//! then a clean stop and a restart that remembers where it was.

mod util;

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use util::{Daemon, Repo};

const QWEN_05B: [(&str, &str, usize, usize); 7] = [
    ("self_attn", "q_proj", 896, 896),
    ("self_attn", "k_proj", 896, 128),
    ("self_attn", "v_proj", 896, 128),
    ("self_attn", "o_proj", 896, 896),
    ("mlp", "gate_proj", 896, 4864),
    ("mlp", "up_proj", 896, 4864),
    ("mlp", "down_proj", 4864, 896),
];
const LAYERS: usize = 24;
const RANK: usize = 16;

fn python_project(repo: &Repo) {
    repo.write("pkg/__init__.py", "from .core import add\n");
    repo.write("pkg/core.py", "import math\n\n\ndef add(a, b):\n    return a + b\n");
    repo.write("tests/test_core.py", "from pkg import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n");
}

/// Checks a published adapter directory against the Qwen2.5-Coder-0.5B shapes; returns its
/// evolora.json.
fn check_adapter_dir(dir: &Path) -> Value {
    let config: Value = serde_json::from_slice(&std::fs::read(dir.join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["task_type"], "CAUSAL_LM");
    assert_eq!(config["r"], RANK);
    assert_eq!(config["lora_alpha"].as_f64(), Some(32.0));
    assert_eq!(config["lora_dropout"].as_f64(), Some(0.0));
    assert_eq!(config["bias"], "none");
    assert_eq!(config["inference_mode"], true);
    assert_eq!(config["base_model_name_or_path"], "Qwen/Qwen2.5-Coder-0.5B");
    let mut targets: Vec<&str> = config["target_modules"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    targets.sort();
    let mut expected: Vec<&str> = QWEN_05B.iter().map(|t| t.1).collect();
    expected.sort();
    assert_eq!(targets, expected);

    let bytes = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(header.metadata().as_ref().and_then(|m| m.get("format")).map(String::as_str), Some("pt"));
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.len(), LAYERS * QWEN_05B.len() * 2, "one A and one B per module per layer");
    for layer in 0..LAYERS {
        for (block, module, d_in, d_out) in QWEN_05B {
            let prefix = format!("base_model.model.model.layers.{layer}.{block}.{module}");
            let a = st.tensor(&format!("{prefix}.lora_A.weight")).unwrap_or_else(|_| panic!("missing {prefix}.lora_A"));
            let b = st.tensor(&format!("{prefix}.lora_B.weight")).unwrap_or_else(|_| panic!("missing {prefix}.lora_B"));
            assert_eq!(a.shape(), [RANK, d_in], "{prefix}.lora_A");
            assert_eq!(b.shape(), [d_out, RANK], "{prefix}.lora_B");
            assert_eq!(a.dtype(), safetensors::Dtype::F32);
            let values: Vec<f32> = a.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            assert!(values.iter().all(|v| v.is_finite()) && values.iter().any(|v| *v != 0.0), "{prefix}.lora_A is degenerate");
        }
    }
    serde_json::from_slice(&std::fs::read(dir.join("evolora.json")).unwrap()).unwrap()
}

#[test]
fn three_commits_reach_an_adapter_and_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start(tmp.path());
    let repo = Repo::init(&tmp.path().join("project"));
    python_project(&repo);
    repo.commit("initial layout");

    let out = daemon.cli(&["register", repo.path.to_str().unwrap()]);
    assert!(out.status.success(), "register failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(repo.path.join(".git/hooks/post-commit").exists(), "register installs the hooks");

    // Wait for registration's cold start so the commits below arrive through the hooks.
    let origin = repo.head();
    daemon.wait_for(Duration::from_secs(60), "the cold-start adapter", || {
        let s = daemon.repo_status(&repo.path);
        (s["refs"][0]["adapter_commit"] == origin.as_str()).then_some(())
    });

    repo.write("pkg/core.py", "import math\n\n\ndef add(a, b):\n    return a + b\n\n\ndef norm(x, y):\n    return math.hypot(x, y)\n");
    repo.commit("add norm");
    repo.write("pkg/io.py", "import json\n\n\ndef load(path):\n    with open(path) as f:\n        return json.load(f)\n");
    repo.commit("add io");
    repo.write("tests/test_core.py", "from pkg import add\n\n\ndef test_add():\n    assert add(1, 2) == 3\n    assert add(0, 0) == 0\n");
    let tip = repo.commit("more assertions");

    // Only the hooks can move the daemon here: status polling never wakes a repository.
    let status = daemon.wait_for(Duration::from_secs(60), "the hooks to deliver three commits", || {
        let s = daemon.repo_status(&repo.path);
        (s["refs"][0]["adapter_commit"] == tip.as_str()).then_some(s)
    });
    let ref_state = &status["refs"][0];
    assert_eq!(ref_state["ref"], "refs/heads/main");
    assert_eq!(ref_state["last_commit"], tip.as_str());
    assert_eq!(ref_state["origin_commit"], origin.as_str());
    assert_eq!(ref_state["steps"], 4, "one GRU step per commit from the root");
    assert_eq!(ref_state["state_sha256"].as_str().map(str::len), Some(64));

    let out = daemon.cli(&["adapter", repo.path.to_str().unwrap()]);
    assert!(out.status.success(), "adapter failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("untrained"), "an untrained model is announced");
    let path = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(Path::new(&path).is_absolute(), "{path}");
    let info = check_adapter_dir(Path::new(&path));
    assert_eq!(info["commit"], tip.as_str());
    assert_eq!(info["steps"], 4);
    assert_eq!(info["model"]["trained"], false);
    assert_eq!(info["state_sha256"], ref_state["state_sha256"]);

    let adapters_before: Vec<_> = std::fs::read_dir(Path::new(&path).parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();

    // A clean stop, then a restart: the state is where it was and nothing is walked again.
    let exit = daemon.signal_and_wait(libc::SIGTERM, Duration::from_secs(30));
    assert!(exit.success(), "SIGTERM exits 0, got {exit}");
    assert!(!daemon.socket.exists(), "the socket is removed on exit");
    daemon.restart();
    let after = daemon.wait_for(Duration::from_secs(60), "the startup catch-up", || {
        let s = daemon.repo_status(&repo.path);
        (s["pending"] == false).then_some(s)
    });
    let ref_after = &after["refs"][0];
    assert_eq!(ref_after["last_commit"], tip.as_str());
    assert_eq!(ref_after["steps"], 4, "no commit is walked twice");
    assert_eq!(ref_after["state_sha256"], ref_state["state_sha256"], "the GRU state survives bit for bit");
    let reply = daemon.request(json!({"id": 1, "op": "adapter", "repo": repo.path}));
    assert_eq!(reply["path"], path.as_str(), "{reply}");
    assert_eq!(reply["covers_tip"], true);
    let adapters_after: Vec<_> = std::fs::read_dir(Path::new(&path).parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(adapters_before, adapters_after, "a restart publishes nothing new");
}

#[test]
fn clear_errors_and_a_daemon_that_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();

    // No daemon yet: a one-line reason and a non-zero exit.
    let sock = tmp.path().join("run/evolora.sock");
    let out = std::process::Command::new(util::BIN).args(["adapter", "/"]).env("EVOLORA_SOCKET", &sock).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not running") && err.trim().lines().count() == 1, "{err}");

    let daemon = Daemon::start(tmp.path());
    let plain = tmp.path().join("not-a-repo");
    std::fs::create_dir_all(&plain).unwrap();
    let out = daemon.cli(&["register", plain.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a git repository"), "{}", String::from_utf8_lossy(&out.stderr));

    // An empty repository registers; it has no adapter until its first commit.
    let empty = Repo::init(&tmp.path().join("empty"));
    let out = daemon.cli(&["register", empty.path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = daemon.cli(&["adapter", empty.path.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no adapter yet"), "{}", String::from_utf8_lossy(&out.stderr));

    // Malformed lines get error replies on a connection that stays open.
    use std::io::{BufRead, BufReader, Write};
    let stream = std::os::unix::net::UnixStream::connect(&daemon.socket).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut w = stream;
    let mut next = |line: &[u8]| -> Value {
        w.write_all(line).unwrap();
        let mut reply = String::new();
        reader.read_line(&mut reply).unwrap();
        serde_json::from_str(&reply).unwrap()
    };
    assert_eq!(next(b"{not json\n")["error"]["code"], "bad_request");
    assert_eq!(next(b"{\"id\":5,\"op\":\"nope\"}\n")["error"]["code"], "unknown_op");
    let mut long = vec![b'x'; 200_000];
    long.push(b'\n');
    assert_eq!(next(&long)["error"]["code"], "line_too_long");
    let pong = next(b"{\"id\":6,\"op\":\"ping\"}\n");
    assert_eq!((pong["id"].clone(), pong["ok"].clone()), (json!(6), json!(true)));

    // The empty repository's first commit arrives through its hook.
    empty.write("main.py", "print('hi')\n");
    let first = empty.commit("first");
    let out = daemon.cli(&["adapter", empty.path.to_str().unwrap(), "--wait", "60"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let path = String::from_utf8(out.stdout).unwrap();
    let info: Value = serde_json::from_slice(&std::fs::read(Path::new(path.trim()).join("evolora.json")).unwrap()).unwrap();
    assert_eq!(info["commit"], first.as_str());

    // A second daemon on the same state directory refuses to start.
    let out = std::process::Command::new(util::BIN)
        .args(["daemon", "--preset", "tiny", "--state-dir"])
        .arg(&daemon.state_dir)
        .arg("--socket")
        .arg(tmp.path().join("other.sock"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use by another evolora process"), "{err}");
}

#[test]
fn paper_policy_steps_only_where_assertions_change_and_still_reaches_the_tip() {
    let tmp = tempfile::tempdir().unwrap();
    let ck = tmp.path().join("paper-policy.safetensors");
    let out = std::process::Command::new(util::BIN)
        .args(["model", "export", "--preset", "tiny", "--base", "qwen2.5-coder-0.5b", "--step-policy", "paper", "--out"])
        .arg(&ck)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let daemon = Daemon::start_with(tmp.path(), &["--checkpoint", ck.to_str().unwrap()]);
    let repo = Repo::init(&tmp.path().join("project"));
    python_project(&repo);
    repo.commit("initial layout");
    let out = daemon.cli(&["register", repo.path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    repo.write("pkg/core.py", "import math\n\n\ndef add(a, b):\n    return a + b\n\n\ndef sub(a, b):\n    return a - b\n");
    repo.commit("production only");
    repo.write("tests/test_core.py", "from pkg import add\nfrom pkg.core import sub\n\n\ndef test_add():\n    assert add(1, 2) == 3\n\n\ndef test_sub():\n    assert sub(3, 2) == 1\n");
    let kept = repo.commit("new assertion");
    daemon.settled(&repo.path, "refs/heads/main", &kept);
    repo.write("pkg/core.py", "import math\n\n\ndef add(a, b):\n    return a + b\n");
    let tip = repo.commit("production only again");

    let s = daemon.wait_for(Duration::from_secs(60), "the walk to reach the tip", || {
        let s = daemon.repo_status(&repo.path);
        (s["refs"][0]["last_commit"] == tip.as_str() && s["pending"] == false).then_some(s)
    });
    assert_eq!(s["refs"][0]["steps"], 2, "only the assertion commits step the GRU (the root, the first kept, and the new assertion): {s}");
    // The last commit does not step: no new adapter, and the one made at the kept commit,
    // from the same state, covers the tip.
    let reply = daemon.request(json!({"op": "adapter", "repo": repo.path, "wait_ms": 30000}));
    assert_eq!((reply["covers_tip"].as_bool(), reply["tip"].as_str()), (Some(true), Some(tip.as_str())), "{reply}");
    assert_eq!(reply["commit"], kept.as_str(), "{reply}");
    assert_ne!(kept, tip);
}
