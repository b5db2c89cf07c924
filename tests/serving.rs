//! What inference servers rely on: a name per version that is never given to other weights,
//! the base model's name as the server knows it, and versions kept on disk while a server
//! may still re-read them.

mod util;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use util::{Daemon, Repo};

fn project(root: &Path, name: &str) -> Repo {
    Repo::with_file(&root.join(name), "pkg/__init__.py", "")
}

fn repo_key(daemon: &Daemon, repo: &Repo) -> String {
    daemon.repo_status(&repo.path)["repo_key"].as_str().unwrap().to_owned()
}

/// The path of the ref's current version.
fn current_dir(daemon: &Daemon, repo: &Repo) -> Option<String> {
    let s = daemon.repo_status(&repo.path);
    s["refs"].as_array()?.iter().find(|r| r["ref"] == "refs/heads/main")?["adapter"].as_str().map(str::to_owned)
}

/// Asks for a new version at the same commit and waits until it is current.
fn regenerate(daemon: &Daemon, repo: &Repo) -> String {
    let before = current_dir(daemon, repo);
    let out = daemon.cli(&["regenerate", repo.path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    daemon.wait_for(Duration::from_secs(60), "a regenerated version", || {
        let now = current_dir(daemon, repo)?;
        (Some(&now) != before.as_ref() && daemon.repo_status(&repo.path)["pending"] == false).then_some(now)
    })
}

/// vLLM's filesystem resolver, rule by rule (vllm/plugins/lora_resolvers/filesystem_resolver.py):
/// a relative name joined to the cache dir must stay under it once symlinks are resolved,
/// hold an adapter_config.json with peft_type LORA, and name the served base model exactly.
fn vllm_resolves(cache_dir: &Path, name: &str, served_model: &str) -> bool {
    if Path::new(name).is_absolute() {
        return false;
    }
    let root = std::fs::canonicalize(cache_dir).unwrap();
    let Ok(path) = std::fs::canonicalize(root.join(name)) else { return false };
    let Ok(text) = std::fs::read(path.join("adapter_config.json")) else { return false };
    let config: Value = serde_json::from_slice(&text).unwrap();
    path.starts_with(&root) && config["peft_type"] == "LORA" && config["base_model_name_or_path"] == served_model
}

fn commit(daemon: &Daemon, repo: &Repo, text: &str) -> String {
    repo.write("pkg/m.py", text);
    let tip = repo.commit(text);
    daemon.settled(&repo.path, "refs/heads/main", &tip);
    tip
}

fn hand_out(daemon: &Daemon, repo: &Repo) -> Value {
    let reply = daemon.request(json!({"op": "adapter", "repo": repo.path}));
    assert_eq!(reply["ok"], true, "{reply}");
    reply
}

#[test]
fn served_names_are_unique_per_version_and_never_reused_after_pruning() {
    let tmp = tempfile::tempdir().unwrap();
    let config = "keep_adapters = 1\n[serve]\ngrace_secs = 0\nbase_model_name = \"/models/qwen2.5-coder-0.5b\"\nformats = [\"peft\", \"gguf\"]\n";
    let daemon = Daemon::start_with_config(tmp.path(), config);
    let repo = project(tmp.path(), "project");
    daemon.register_and_wait(&repo);
    let key = repo_key(&daemon, &repo);
    let head = repo.head();

    let first = hand_out(&daemon, &repo);
    assert_eq!(first["served_name"], format!("{key}/{head}"), "{first}");
    let root = daemon.state_dir.join("adapters");
    assert_eq!(root.join(first["served_name"].as_str().unwrap()), Path::new(first["path"].as_str().unwrap()), "the name is the path under the adapter root");
    let config: Value = serde_json::from_slice(&std::fs::read(Path::new(first["path"].as_str().unwrap()).join("adapter_config.json")).unwrap()).unwrap();
    assert_eq!(config["base_model_name_or_path"], "/models/qwen2.5-coder-0.5b", "the name the server was started with");
    assert!(vllm_resolves(&root, first["served_name"].as_str().unwrap(), "/models/qwen2.5-coder-0.5b"));
    assert!(!vllm_resolves(&root, first["served_name"].as_str().unwrap(), "Qwen/Qwen2.5-Coder-0.5B"), "the resolver refuses another base name");
    // llama.cpp's file beside the PEFT pair (its contents are checked against the PEFT file
    // by the model crate's gguf_reference test).
    let out = daemon.cli(&["adapter", repo.path.to_str().unwrap(), "--format", "gguf"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let gguf = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(gguf, Path::new(first["path"].as_str().unwrap()).join("adapter_model.gguf"));
    assert_eq!(&std::fs::read(&gguf).unwrap()[..4], b"GGUF");

    // Each regeneration at the same commit prunes the one before (K = 1, no grace), so a
    // name chosen by what is on disk would come round again.
    let mut names = vec![first["served_name"].as_str().unwrap().to_owned()];
    for _ in 0..3 {
        regenerate(&daemon, &repo);
        assert_eq!(daemon.versions_on_disk(&key).len(), 1, "older versions are pruned");
        let reply = hand_out(&daemon, &repo);
        names.push(reply["served_name"].as_str().unwrap().to_owned());
    }
    let distinct: BTreeSet<&String> = names.iter().collect();
    assert_eq!(distinct.len(), names.len(), "a name is never given to a second version: {names:?}");
    assert!(names.iter().all(|n| !n.ends_with("/current")));

    // Not even after a restart.
    let mut daemon = daemon;
    assert!(daemon.signal_and_wait(libc::SIGTERM, Duration::from_secs(30)).success());
    daemon.restart();
    regenerate(&daemon, &repo);
    let reply = hand_out(&daemon, &repo);
    assert!(!names.contains(&reply["served_name"].as_str().unwrap().to_owned()), "{reply} reuses one of {names:?}");
    let listed = daemon.repo_status(&repo.path)["adapters"].as_array().cloned().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["served_name"], reply["served_name"], "status names versions the same way");
}

#[test]
fn a_version_handed_out_stays_through_its_grace_and_goes_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let grace = 4;
    let daemon = Daemon::start_with_config(tmp.path(), &format!("keep_adapters = 1\n[serve]\ngrace_secs = {grace}\n"));
    let repo = project(tmp.path(), "project");
    daemon.register_and_wait(&repo);
    let key = repo_key(&daemon, &repo);

    let a = repo.head();
    let handed = hand_out(&daemon, &repo);
    assert_eq!(handed["commit"], a.as_str());
    let b = commit(&daemon, &repo, "B = 1\n");
    let c = commit(&daemon, &repo, "C = 1\n");
    let disk = daemon.versions_on_disk(&key);
    assert!(disk.contains(&a), "the version handed out is kept within its grace whatever K says: {disk:?}");
    assert!(!disk.contains(&b), "a version never handed out goes as before: {disk:?}");
    assert!(disk.contains(&c));

    // A budget nothing fits in still keeps it, and says why.
    daemon.reconfigure(&format!("keep_adapters = 1\nadapter_disk_budget = \"1 kB\"\n[serve]\ngrace_secs = {grace}\n"));
    daemon.wait_for(Duration::from_secs(30), "the grace warning", || daemon.log_text().contains("handed out within the serve grace").then_some(()));
    assert!(daemon.versions_on_disk(&key).contains(&a));

    // After the grace it goes, with no further commit to prompt it.
    daemon.wait_for(Duration::from_secs(30), "the handed-out version to go after its grace", || {
        (daemon.versions_on_disk(&key) == BTreeSet::from([c.clone()])).then_some(())
    });
    assert_eq!(hand_out(&daemon, &repo)["commit"], c.as_str(), "the current version is still served");
}

/// A stand-in inference server speaking vLLM's or SGLang's documented adapter routes: it
/// records every request (path, JSON body) and answers as told.
struct FakeServer {
    url: String,
    requests: std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>>,
    /// The status it answers with.
    status: std::sync::Arc<std::sync::atomic::AtomicU16>,
}

impl FakeServer {
    fn start(status: u16) -> FakeServer {
        use std::io::{BufRead, BufReader, Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests: std::sync::Arc<std::sync::Mutex<Vec<(String, Value)>>> = Default::default();
        let answer = std::sync::Arc::new(std::sync::atomic::AtomicU16::new(status));
        let (log, code) = (requests.clone(), answer.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                let mut length = 0;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                let _ = reader.read_exact(&mut body);
                log.lock().unwrap().push((path, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                let status = code.load(Ordering::SeqCst);
                let text = if status == 200 { "Success" } else { "internal error" };
                let _ = (&stream).write_all(format!("HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}", text.len()).as_bytes());
            }
        });
        FakeServer { url, requests, status: answer }
    }

    fn requests(&self) -> Vec<(String, Value)> {
        self.requests.lock().unwrap().clone()
    }

    /// Names in requests to `route`, in order.
    fn names(&self, route: &str) -> Vec<String> {
        self.requests().into_iter().filter(|(p, _)| p == route).map(|(_, b)| b["lora_name"].as_str().unwrap().to_owned()).collect()
    }
}

fn push_status(daemon: &Daemon, endpoint: &str) -> Value {
    let s = daemon.request(json!({"op": "status"}));
    s["push"].as_array().unwrap().iter().find(|e| e["endpoint"] == endpoint).cloned().unwrap_or_else(|| panic!("{endpoint} not in {s}"))
}

#[test]
fn pushed_versions_load_once_each_under_their_own_names_and_old_ones_unload() {
    let tmp = tempfile::tempdir().unwrap();
    let vllm = FakeServer::start(200);
    let sglang = FakeServer::start(500);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = format!(
        "keep_adapters = 1\n[serve]\ngrace_secs = 6\n\
         [[serve.push]]\nname = \"vllm\"\nkind = \"vllm\"\nurl = \"{}\"\nkeep = 2\nattempts = 2\nbackoff_ms = 20\n\
         [[serve.push]]\nname = \"sglang\"\nkind = \"sglang\"\nurl = \"{}\"\nkeep = 2\nattempts = 2\nbackoff_ms = 20\n\
         [[serve.push]]\nname = \"down\"\nurl = \"http://{closed}\"\nattempts = 2\nbackoff_ms = 20\n",
        vllm.url, sglang.url
    );
    let daemon = Daemon::start_with_config(tmp.path(), &config);
    let repo = project(tmp.path(), "project");
    daemon.register_and_wait(&repo);
    let key = repo_key(&daemon, &repo);
    let mut versions = vec![format!("{key}/{}", repo.head())];
    for i in 0..4 {
        // Publishing goes on at its own pace whatever the servers do.
        let tip = commit(&daemon, &repo, &format!("V = {i}\n"));
        versions.push(format!("{key}/{tip}"));
    }
    let last = versions.last().unwrap().clone();
    daemon.wait_for(Duration::from_secs(30), "the newest version at the vLLM stand-in", || vllm.names("/v1/load_lora_adapter").contains(&last).then_some(()));
    daemon.wait_for(Duration::from_secs(30), "the unloads", || (vllm.names("/v1/unload_lora_adapter").len() + 2 == vllm.names("/v1/load_lora_adapter").len()).then_some(()));

    let loads = vllm.names("/v1/load_lora_adapter");
    let unloads = vllm.names("/v1/unload_lora_adapter");
    let distinct: BTreeSet<&String> = loads.iter().collect();
    assert_eq!(distinct.len(), loads.len(), "nothing loaded twice: {loads:?}");
    let positions: Vec<usize> = loads.iter().map(|n| versions.iter().position(|v| v == n).expect("only published versions are loaded")).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "loaded oldest first: {loads:?}");
    assert_eq!(unloads, loads[..loads.len() - 2], "all but the newest two unloaded, each once, oldest first");
    for (path, body) in vllm.requests().iter().filter(|(p, _)| p == "/v1/load_lora_adapter") {
        let name = body["lora_name"].as_str().unwrap();
        let expected = daemon.state_dir.join("adapters").join(name);
        assert_eq!(Path::new(body["lora_path"].as_str().unwrap()), std::fs::canonicalize(&expected).unwrap(), "{path}: the version's own directory");
    }
    // A version a server holds is kept on disk though K = 1 (it may re-read it).
    let held = &loads[loads.len() - 2];
    assert!(daemon.versions_on_disk(&key).contains(held.rsplit('/').next().unwrap()), "{held} is loaded at vLLM");

    // The failing servers: tried (with retries), never blocking, and `status` says how.
    let s = push_status(&daemon, "sglang");
    assert!(s["last_error"].as_str().unwrap().contains("HTTP 500"), "{s}");
    assert!(sglang.requests().iter().all(|(p, _)| p == "/load_lora_adapter"), "SGLang's route, no unload of what never loaded");
    let down = push_status(&daemon, "down");
    assert!(down["last_error"].is_string(), "{down}");
    assert_eq!(push_status(&daemon, "vllm")["last_error"], Value::Null);

    // SGLang recovers: the failed load of the newest version is retried on its own (every
    // grace/3 = 2 s here), with no publish to prompt it; then the next version loads too.
    sglang.status.store(200, std::sync::atomic::Ordering::SeqCst);
    daemon.wait_for(Duration::from_secs(30), "the retried load at SGLang", || {
        let s = push_status(&daemon, "sglang");
        (s["last_adapter"] == last.as_str() && s["last_error"].is_null()).then_some(())
    });
    let tip = commit(&daemon, &repo, "V = 9\n");
    let name = format!("{key}/{tip}");
    daemon.wait_for(Duration::from_secs(30), "the load at SGLang", || {
        let s = push_status(&daemon, "sglang");
        (s["last_adapter"] == name.as_str() && s["last_error"].is_null()).then_some(())
    });
    let at_sglang = sglang.names("/load_lora_adapter");
    assert_eq!(at_sglang[at_sglang.len() - 2..], [last.clone(), name.clone()], "failed loads were retried, never out of order");
    assert_eq!(push_status(&daemon, "sglang")["loaded"], 2);

    // The metrics count the pushes.
    let metrics = daemon.request(json!({"op": "metrics"}));
    let text = metrics["text"].as_str().unwrap();
    let ok_loads = vllm.names("/v1/load_lora_adapter").len();
    assert!(text.contains(&format!("evolora_pushes_total{{endpoint=\"vllm\",op=\"load\",outcome=\"ok\"}} {ok_loads}")), "{text}");
}

/// The exposition parsed by the Prometheus project's Python parser, as {sample: value}.
fn parsed_metrics(text: &str) -> serde_json::Map<String, Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/reference/check_metrics.py");
    let mut child = std::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the exposition does not parse: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice::<Value>(&out.stdout).unwrap().as_object().unwrap().clone()
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn metrics_parse_and_count_what_happened() {
    let tmp = tempfile::tempdir().unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let daemon = Daemon::start_with_config(tmp.path(), &format!("keep_adapters = 20\n[serve]\nmetrics_listen = \"{addr}\"\n"));
    let repo = project(tmp.path(), "project");
    daemon.register_and_wait(&repo);
    for i in 0..3 {
        commit(&daemon, &repo, &format!("M = {i}\n"));
    }
    for _ in 0..2 {
        hand_out(&daemon, &repo);
    }
    let status = daemon.repo_status(&repo.path);
    let main = &status["refs"][0];
    let (steps, walked) = (main["steps"].as_u64().unwrap(), main["walked"].as_u64().unwrap());
    let published = status["adapters"].as_array().unwrap().len() as f64;

    let response = http_get(&addr, "/metrics");
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200") && head.contains("application/openmetrics-text"), "{head}");
    let m = parsed_metrics(body);
    let get = |k: &str| m.get(k).and_then(Value::as_f64).unwrap_or_else(|| panic!("{k} missing from {m:?}"));
    assert_eq!(get("evolora_gru_step_seconds_count{}"), steps as f64, "one GRU observation per step");
    assert_eq!(get("evolora_commits_walked_total{}"), walked as f64);
    assert_eq!(get("evolora_encode_seconds_count{}"), walked as f64, "every commit steps under this policy, each encoded once");
    assert_eq!(get("evolora_adapters_published_total{}"), published);
    assert_eq!(get("evolora_generation_seconds_count{}"), published);
    assert_eq!(get("evolora_write_seconds_count{}"), published);
    assert_eq!(get("evolora_commit_to_adapter_seconds_count{}"), published);
    assert_eq!(get("evolora_adapters_served_total{}"), 2.0);
    assert_eq!(get("evolora_adapters_pruned_total{}"), 0.0);
    assert_eq!(get("evolora_queue_depth{}"), 0.0);
    assert!(get("evolora_gru_step_seconds_sum{}") > 0.0);
    assert!(get("evolora_write_seconds_bucket{le=+Inf}") == published);

    // The socket op and the CLI give the same exposition format.
    let out = daemon.cli(&["metrics"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let from_cli = parsed_metrics(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(from_cli["evolora_adapters_published_total{}"], m["evolora_adapters_published_total{}"]);
    assert!(http_get(&addr, "/other").starts_with("HTTP/1.1 404"));
}

#[test]
fn uncommitted_work_gets_an_ephemeral_adapter_and_leaves_the_state_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with_config(tmp.path(), "keep_adapters = 5\n");
    let repo = project(tmp.path(), "project");
    daemon.register_and_wait(&repo);
    commit(&daemon, &repo, "def area(r):\n    return 3.14 * r * r\n");
    let committed = hand_out(&daemon, &repo);
    let before = daemon.repo_status(&repo.path);
    let worktree = |daemon: &Daemon| {
        let reply = daemon.request(json!({"op": "adapter", "repo": repo.path, "worktree": true}));
        assert_eq!(reply["ok"], true, "{reply}");
        reply
    };

    // A dirty tree: a new adapter, elsewhere, with other weights.
    repo.write("pkg/m.py", "import math\n\ndef area(r):\n    return math.pi * r ** 2\n");
    let dirty = worktree(&daemon);
    assert_eq!(dirty["ephemeral"], true, "{dirty}");
    assert_ne!(dirty["path"], committed["path"]);
    let dirty_path = Path::new(dirty["path"].as_str().unwrap());
    util::assert_complete_adapter(dirty_path, 24 * 7 * 2);
    let weights = |p: &Path| std::fs::read(p.join("adapter_model.safetensors")).unwrap();
    assert_ne!(weights(dirty_path), weights(Path::new(committed["path"].as_str().unwrap())), "the uncommitted diff moved the adapter");

    // The same work asked for again, staged or not, is the same adapter.
    assert_eq!(worktree(&daemon)["path"], dirty["path"]);
    repo.git(&["add", "pkg/m.py"]);
    assert_eq!(worktree(&daemon)["path"], dirty["path"], "index and work tree together are what counts");
    // Other work, another adapter; through the CLI too.
    repo.write("pkg/m.py", "def area(r):\n    return 3 * r * r\n");
    let out = daemon.cli(&["adapter", repo.path.to_str().unwrap(), "--worktree"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let other = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(other != dirty["path"].as_str().unwrap() && Path::new(&other).is_dir(), "{other}");

    // The committed state and its versions are untouched.
    let after = daemon.repo_status(&repo.path);
    assert_eq!(after["refs"][0]["state_sha256"], before["refs"][0]["state_sha256"]);
    assert_eq!(after["refs"][0]["last_commit"], before["refs"][0]["last_commit"]);
    assert_eq!(after["adapters"], before["adapters"], "no version published or pruned");

    // A clean tree gets the committed adapter.
    repo.git(&["checkout", "HEAD", "--", "."]);
    let clean = worktree(&daemon);
    assert_eq!((clean["path"].clone(), clean["ephemeral"].clone()), (committed["path"].clone(), Value::Null), "{clean}");
}

#[test]
fn a_restart_neither_reloads_nor_forgets_what_a_server_holds_and_an_opted_out_repository_is_not_pushed() {
    let tmp = tempfile::tempdir().unwrap();
    let vllm = FakeServer::start(200);
    let quiet = project(tmp.path(), "quiet");
    let config = format!(
        "[[serve.push]]\nname = \"vllm\"\nurl = \"{}\"\nkeep = 1\n[[repo]]\npath = \"{}\"\n[repo.serve]\npush = false\n",
        vllm.url,
        quiet.path.display()
    );
    let mut daemon = Daemon::start_with_config(tmp.path(), &config);
    let repo = project(tmp.path(), "project");
    daemon.register_and_wait(&repo);
    daemon.register_and_wait(&quiet);
    let key = repo_key(&daemon, &repo);
    let first = format!("{key}/{}", repo.head());
    daemon.wait_for(Duration::from_secs(30), "the first load", || (vllm.names("/v1/load_lora_adapter") == [first.clone()]).then_some(()));

    assert!(daemon.signal_and_wait(libc::SIGTERM, Duration::from_secs(30)).success());
    daemon.restart();
    commit(&daemon, &quiet, "Q = 1\n");
    let tip = commit(&daemon, &repo, "R = 1\n");
    let second = format!("{key}/{tip}");
    daemon.wait_for(Duration::from_secs(30), "the unload of the first", || (vllm.names("/v1/unload_lora_adapter") == [first.clone()]).then_some(()));
    assert_eq!(vllm.names("/v1/load_lora_adapter"), [first, second], "loaded once each across the restart; nothing of the opted-out repository");
    assert_eq!(push_status(&daemon, "vllm")["loaded"], 1);
}
