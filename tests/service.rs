//! The daemon as a long-running service: bursts, trigger policies, configuration reloads
//! on SIGHUP, and a socket that survives hostile clients.

mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use util::{Daemon, Lcg, Repo};

fn project(root: &Path) -> Repo {
    Repo::with_file(&root.join("project"), "pkg/__init__.py", "")
}

fn idle(daemon: &Daemon, repo: &Repo, tip: &str) -> Value {
    daemon.wait_for(Duration::from_secs(120), "the daemon to settle", || {
        let s = daemon.repo_status(&repo.path);
        (s["refs"][0]["last_commit"] == tip && s["pending"] == false).then_some(s["refs"][0].clone())
    })
}

fn adapter_count(daemon: &Daemon) -> usize {
    let status = daemon.request(json!({"op": "status"}));
    let key = status["repos"][0]["repo_key"].as_str().unwrap().to_owned();
    std::fs::read_dir(daemon.state_dir.join("adapters").join(key))
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name().to_string_lossy().into_owned();
            !n.starts_with('.') && n != "current"
        })
        .count()
}

#[test]
fn a_burst_of_500_commits_is_500_steps_and_one_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with_config(tmp.path(), "keep_adapters = 10\n");
    let repo = project(tmp.path());
    daemon.register_and_wait(&repo);
    let before = adapter_count(&daemon);
    let tip = repo.append_history(500); // one ref move, seen by the watcher
    let r = idle(&daemon, &repo, &tip);
    assert_eq!(r["steps"], 501, "the root and the 500 new commits");
    assert_eq!(r["adapter_commit"], tip.as_str());
    assert_eq!(adapter_count(&daemon), before + 1, "one regeneration for the whole burst");
}

#[test]
fn sigterm_during_a_catch_up_exits_zero_and_the_walk_resumes_bit_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start_with_config(&tmp.path().join("a"), "step_group = 4\n");
    let repo = project(tmp.path());
    let origin = repo.head();
    daemon.register_and_wait(&repo);
    let total = 5000;
    let tip = repo.append_history(total);
    // SIGTERM as soon as the walk is under way.
    daemon.wait_for(Duration::from_secs(60), "the walk to start", || {
        let steps = daemon.repo_status(&repo.path)["refs"][0]["steps"].as_u64().unwrap();
        (steps > 1).then_some(())
    });
    let exit = daemon.signal_and_wait(libc::SIGTERM, Duration::from_secs(30));
    assert!(exit.success(), "SIGTERM mid-walk exits 0, got {exit}");
    assert!(daemon.log_text().contains("stopped mid-walk for shutdown"), "the walk was cut short:\n{}", daemon.log_text());
    daemon.restart();
    let resumed = idle(&daemon, &repo, &tip);
    assert_eq!(resumed["steps"], total as u64 + 1);

    // The same history walked in one go by another daemon, from the same origin.
    let straight = util::reference_digest(tmp.path(), &repo, &origin, &tip);
    assert_eq!(resumed["state_sha256"], straight.as_str(), "stopping and resuming changed the state");
}

#[test]
fn triggers_fire_when_and_only_when_they_should_and_sighup_changes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_with_config(tmp.path(), "keep_adapters = 20\n[triggers]\nevery_commit = false\nmanifest_changed = true\nevery_n_commits = 3\n");
    let repo = project(tmp.path());
    daemon.register_and_wait(&repo);
    let origin = repo.head();

    let commit = |name: &str| {
        repo.write(&format!("pkg/{name}.py"), &format!("{name} = 1\n"));
        let tip = repo.commit(name);
        idle(&daemon, &repo, &tip)
    };
    assert_eq!(commit("a")["adapter_commit"], origin.as_str(), "1 commit: no trigger");
    assert_eq!(commit("b")["adapter_commit"], origin.as_str(), "2 commits: no trigger");
    let c = repo.head();
    let r = commit("c");
    assert_ne!(r["adapter_commit"], c.as_str());
    assert_eq!(r["adapter_commit"], repo.head().as_str(), "3 commits: every-n fires");

    repo.write("requirements.txt", "requests==2.0\n");
    let tip = repo.commit("dependency");
    assert_eq!(idle(&daemon, &repo, &tip)["adapter_commit"], tip.as_str(), "a manifest change fires");

    // Reload: every commit now.
    daemon.reconfigure("keep_adapters = 20\n[triggers]\nevery_commit = true\n");
    let r = commit("d");
    assert_eq!(r["adapter_commit"], repo.head().as_str(), "after SIGHUP every commit fires");
}

#[test]
fn the_socket_survives_hostile_clients() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(tmp.path());
    let repo = project(tmp.path());
    daemon.register_and_wait(&repo);
    let seed = 0x5eed_u64 ^ std::process::id() as u64;
    eprintln!("fuzz seed {seed}");
    let mut rng = Lcg(seed);

    // Random bytes, with and without newlines, then hang up.
    for _ in 0..200 {
        let mut s = UnixStream::connect(&daemon.socket).unwrap();
        let len = rng.below(4096) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
        let _ = s.write_all(&bytes);
    }
    // A 10 MB line: refused with line_too_long, and the connection still works after it.
    {
        let s = UnixStream::connect(&daemon.socket).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut w = s.try_clone().unwrap();
        let writer = std::thread::spawn(move || {
            let chunk = vec![b'a'; 1 << 20];
            for _ in 0..10 {
                w.write_all(&chunk).unwrap();
            }
            w.write_all(b"\n{\"id\":2,\"op\":\"ping\"}\n").unwrap();
        });
        let mut r = BufReader::new(s);
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(line.contains("line_too_long"), "{line}");
        line.clear();
        r.read_line(&mut line).unwrap();
        assert!(line.contains("\"pong\":true"), "{line}");
        writer.join().unwrap();
    }
    // Half-open connections: a partial line and silence, held open.
    let mut half_open = Vec::new();
    for _ in 0..50 {
        let mut s = UnixStream::connect(&daemon.socket).unwrap();
        s.write_all(b"{\"op\":\"pi").unwrap();
        half_open.push(s);
    }
    // 500 concurrent clients, each with a real request.
    let sock = daemon.socket.clone();
    let repo_path = repo.path.clone();
    let clients: Vec<_> = (0..500)
        .map(|i| {
            let sock = sock.clone();
            let repo_path = repo_path.clone();
            std::thread::spawn(move || {
                let s = UnixStream::connect(&sock).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
                let req = if i % 2 == 0 { json!({"id": i, "op": "ping"}) } else { json!({"id": i, "op": "adapter", "repo": repo_path}) };
                let mut w = s.try_clone().unwrap();
                w.write_all(format!("{req}\n").as_bytes()).unwrap();
                let mut line = String::new();
                BufReader::new(s).read_line(&mut line).unwrap();
                let v: Value = serde_json::from_str(&line).unwrap();
                (v["id"] == i && v["ok"] == true) || v["error"]["code"] == "busy"
            })
        })
        .collect();
    let answered = clients.into_iter().map(|c| c.join().unwrap()).filter(|ok| *ok).count();
    assert_eq!(answered, 500, "every concurrent client got its own reply (or an explicit busy)");
    drop(half_open);

    // Still serving.
    let reply = daemon.request(json!({"id": "after", "op": "adapter", "repo": repo.path}));
    assert_eq!(reply["ok"], true, "{reply}");
    let mut s = UnixStream::connect(&daemon.socket).unwrap();
    s.write_all(b"{\"id\":1,\"op\":\"ping\"}\n").unwrap();
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).contains("pong"));
}

#[test]
fn a_client_of_another_user_is_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to act as another user");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(tmp.path());
    // The socket's directory is private; open it up so only the peer check stands in the way.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(daemon.socket.parent().unwrap(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&daemon.socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    let sock = daemon.socket.clone();
    let reply = std::thread::spawn(move || {
        use std::os::unix::process::CommandExt;
        let mut cmd = std::process::Command::new(util::BIN);
        cmd.args(["ping"]).env("EVOLORA_SOCKET", &sock);
        // SAFETY: setuid in the child before exec only.
        unsafe {
            cmd.pre_exec(|| if libc::setgid(65534) == 0 && libc::setuid(65534) == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) });
        }
        cmd.output().unwrap()
    })
    .join()
    .unwrap();
    assert!(!reply.status.success());
    assert!(String::from_utf8_lossy(&reply.stderr).contains("permission denied"), "{}", String::from_utf8_lossy(&reply.stderr));
}

#[test]
fn per_repository_overrides_and_drift_resets() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Repo::init(&tmp.path().join("a"));
    a.write("a.py", "A = 0\n");
    a.commit("a0");
    let b = Repo::init(&tmp.path().join("b"));
    b.write("b.py", "B = 0\n");
    b.commit("b0");
    let daemon = Daemon::start_with_config(
        tmp.path(),
        &format!(
            "[triggers]\nevery_commit = true\ndrift_reset_every = 3\n[[repo]]\npath = \"{}\"\n[repo.triggers]\nevery_commit = false\nevery_n_commits = 2\ndrift_reset_every = 0\n",
            a.path.display()
        ),
    );
    for r in [&a, &b] {
        let out = daemon.cli(&["register", r.path.to_str().unwrap()]);
        assert!(out.status.success());
    }
    let a0 = a.head();
    let settle = |r: &Repo, tip: &str| {
        daemon.wait_for(Duration::from_secs(60), "settle", || {
            let s = daemon.repo_status(&r.path);
            (s["refs"][0]["last_commit"] == tip && s["pending"] == false).then_some(s["refs"][0].clone())
        })
    };
    settle(&a, &a0);
    a.write("a.py", "A = 1\n");
    let a1 = a.commit("a1");
    assert_eq!(settle(&a, &a1)["adapter_commit"], a0.as_str(), "A's override: not every commit");
    a.write("a.py", "A = 2\n");
    let a2 = a.commit("a2");
    assert_eq!(settle(&a, &a2)["adapter_commit"], a2.as_str(), "A's override: every 2 commits");

    settle(&b, &b.head());
    let origin = b.head();
    let mut reset_at = String::new();
    for i in 1..=3 {
        b.write("b.py", &format!("B = {i}\n"));
        let tip = b.commit(&format!("b{i}"));
        let r = settle(&b, &tip);
        assert_eq!(r["adapter_commit"], tip.as_str(), "B keeps the global every-commit trigger");
        match i {
            1 => assert_eq!((r["origin_commit"].as_str(), r["walked"].as_u64()), (Some(origin.as_str()), Some(2)), "the root and b1"),
            2 => {
                assert_eq!(r["origin_commit"], tip.as_str(), "third commit walked since the snapshot: drift reset");
                assert_eq!(r["walked"], 0);
                reset_at = tip;
            }
            _ => assert_eq!((r["origin_commit"].as_str(), r["walked"].as_u64()), (Some(reset_at.as_str()), Some(1))),
        }
    }
}

/// CPU time (user + system, clock ticks) a process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[test]
fn an_idle_daemon_stays_idle() {
    let tmp = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(tmp.path());
    let repos: Vec<Repo> = (0..5).map(|i| {
        let r = Repo::init(&tmp.path().join(format!("r{i}")));
        r.write("a.py", "A = 1\n");
        r.commit("one");
        r
    }).collect();
    for r in &repos {
        daemon.register_and_wait(r);
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks(daemon.pid());
    std::thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(daemon.pid()) - before;
    // Its own reads of HEAD must not wake the repositories again and again.
    assert!(used <= 10, "an idle daemon used {used} ticks in 2 s");
    let s = daemon.request(json!({"op": "status"}));
    assert_eq!(s["queued"], 0, "{s}");
}
