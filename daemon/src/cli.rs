//! The `evolora` command line. Every command that needs state asks the daemon over its
//! socket (sled allows one process per database); only `daemon` opens the state itself.
//! (Longer than most files here: the clap definitions of every command are most of it, and
//! they read best in one place beside the dispatch.)

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use evolora_model::hypernet::StepPolicy;
use evolora_protocol::Client;
use evolora_protocol::reply::Status;

use crate::config::{self, Config};

#[derive(Parser, Debug)]
#[command(
    name = "evolora",
    version,
    about = "Keeps a repository-specific LoRA adapter current as a git repository evolves",
    long_about = "evolora runs as a daemon (`evolora daemon`). Register a repository with \
`evolora register <path>`: its git hooks then wake the daemon on every commit, the daemon \
folds each commit into the repository's state and publishes a PEFT adapter directory. \
`evolora adapter <path>` prints the newest adapter's path for vLLM, LoRAX or PEFT."
)]
pub struct Cli {
    /// Daemon socket [default: $EVOLORA_SOCKET, $XDG_RUNTIME_DIR/evolora/evolora.sock]
    #[arg(long, global = true, env = "EVOLORA_SOCKET")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon in the foreground (what the systemd unit starts)
    Daemon(DaemonArgs),
    /// Register a repository: install its hooks and start following it
    Register {
        /// Path inside the repository (work tree, .git directory or bare repository)
        path: PathBuf,
        /// Do not install git hooks (rely on explicit `notify` calls)
        #[arg(long)]
        no_hooks: bool,
        /// Follow this ref instead of the checked-out branches (repeatable)
        #[arg(long = "ref", value_name = "REF")]
        refs: Vec<String>,
        /// Wait until the first walk of the history is done and an adapter is published,
        /// drawing its progress
        #[arg(long)]
        wait: bool,
    },
    /// Stop following a repository and remove its hooks (adapter files stay)
    Unregister {
        path: PathBuf,
        #[arg(long)]
        keep_hooks: bool,
    },
    /// Print the absolute path of the newest adapter directory of a repository
    Adapter {
        path: PathBuf,
        /// Ask about this ref instead of the branch checked out at PATH
        #[arg(long = "ref", value_name = "REF")]
        refname: Option<String>,
        /// Wait up to this many seconds for an adapter that covers the current tip
        #[arg(long, value_name = "SECS")]
        wait: Option<f64>,
        /// Print the daemon's full reply as JSON
        #[arg(long)]
        json: bool,
        /// Print the path of this format's file instead of the directory (`gguf`: the
        /// llama.cpp adapter, written when `[serve] formats` lists it)
        #[arg(long, value_enum)]
        format: Option<crate::config::AdapterFormat>,
        /// Print the name to give an inference server (`<repo key>/<version>`) instead
        #[arg(long, conflicts_with_all = ["json", "format"])]
        served_name: bool,
        /// Include the uncommitted changes at PATH (tracked files, index and work tree): an
        /// ephemeral adapter of them, never stored in the state; a clean tree gets the current
        /// adapter
        #[arg(long, conflicts_with = "refname")]
        worktree: bool,
    },
    /// Show where each repository stands (last commit, steps, state digest, adapter)
    Status {
        path: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Wake the daemon for a repository (what the git hooks call)
    Notify {
        /// Repository path [default: current directory]
        #[arg(long)]
        repo: Option<PathBuf>,
        /// Print nothing and always exit 0
        #[arg(long)]
        quiet: bool,
    },
    /// Publish a new adapter now, whatever the triggers say
    Regenerate { path: PathBuf },
    /// Rebuild a repository's state from a fresh snapshot at its origin (`[history]`) and a
    /// new walk to the tip, then publish
    Reset { path: PathBuf },
    /// Keep an adapter version through every retention rule (disk budget included)
    Pin {
        path: PathBuf,
        /// Directory name or commit (at least 7 hex digits) [default: the current adapter]
        adapter: Option<String>,
    },
    /// Let a pinned adapter version be pruned again
    Unpin {
        path: PathBuf,
        /// Directory name or commit (at least 7 hex digits) [default: the current adapter]
        adapter: Option<String>,
    },
    /// Manage the git hooks of a repository
    Hooks {
        #[command(subcommand)]
        action: HooksAction,
    },
    /// Write a one-shot adapter from a snapshot of a repository's HEAD (no daemon needed)
    Snapshot {
        path: PathBuf,
        /// New adapter directory (must not exist)
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        model: crate::offline::ModelChoice,
    },
    /// A repository's snapshot, a diff or its stepped history as input vectors (no daemon
    /// needed; the same encoder settings as the daemon)
    Encode {
        #[command(subcommand)]
        action: EncodeAction,
    },
    /// Run the hypernetwork directly (no daemon needed)
    Model {
        #[command(subcommand)]
        action: ModelAction,
    },
    /// Run the base code LM, with or without an adapter (no daemon needed)
    Lm {
        #[command(subcommand)]
        action: crate::measure::lm::LmAction,
    },
    /// Check an adapter directory against a base model: it loads as PEFT and vLLM load it,
    /// the file holds the in-memory adapter, and it moves the logits
    Verify(crate::measure::verify::VerifyArgs),
    /// Measure on a repository's own history whether its adapter helps the base model, with
    /// controls (other repositories' adapters, their mean) and optionally HumanEval
    Eval(Box<crate::measure::eval::EvalArgs>),
    /// Mine RepoPeftBench assertion-completion tasks from a repository's history (JSON lines)
    Tasks(crate::measure::tasks::TasksArgs),
    /// Train the hypernetwork on repositories, end to end through the frozen base model
    /// (resumable; writes checkpoints the daemon serves)
    Train(Box<crate::train::TrainArgs>),
    /// Offline maintenance of the state database (stop the daemon first)
    State {
        #[command(subcommand)]
        action: StateAction,
    },
    /// Check that the daemon answers
    Ping,
    /// Print the daemon's metrics (Prometheus text exposition)
    Metrics,
    /// Ask the daemon to stop (as SIGTERM does)
    Shutdown,
    /// Cluster mode (docs/CLUSTER.md)
    Cluster {
        #[command(subcommand)]
        action: ClusterAction,
    },
}

#[derive(Subcommand, Debug)]
enum ClusterAction {
    /// Workers, leases, each followed ref's state against its newest tip, queue depth
    Status {
        /// NATS URL [default: the `[cluster] url` of --config]
        #[arg(long, env = "EVOLORA_NATS_URL")]
        url: Option<String>,
        /// Configuration file whose `[cluster]` names the cluster
        #[arg(long, env = "EVOLORA_CONFIG")]
        config: Option<PathBuf>,
        /// Prefix of the cluster's streams and buckets [default: the config's, or evolora]
        #[arg(long)]
        prefix: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum HooksAction {
    Install { path: Option<PathBuf> },
    Uninstall { path: Option<PathBuf> },
    Status { path: Option<PathBuf> },
}

#[derive(Subcommand, Debug)]
enum StateAction {
    /// Recreate the database from git history and the adapter directories
    Rebuild(DaemonArgs),
}

#[derive(Subcommand, Debug)]
enum EncodeAction {
    /// Tensor `snapshot` [D] of the tree at a commit
    Snapshot {
        repo: PathBuf,
        #[arg(long, default_value = "HEAD")]
        commit: String,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        encoder: crate::offline::EncoderChoice,
        /// cpu or cuda:N
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Tensor `diff` [D] of a commit against a base (its first parent by default)
    Diff {
        repo: PathBuf,
        #[arg(long)]
        commit: String,
        #[arg(long)]
        base: Option<String>,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        encoder: crate::offline::EncoderChoice,
        /// cpu or cuda:N
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// `snapshot` [D] at the origin and `diffs` [T, D] of every stepped commit: what
    /// `evolora model run --embeddings` takes
    History {
        repo: PathBuf,
        #[arg(long = "ref", value_name = "REF")]
        refname: Option<String>,
        /// Which commits step: every-commit or paper
        #[arg(long, default_value = "every-commit")]
        step_policy: StepPolicy,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        encoder: crate::offline::EncoderChoice,
        /// cpu or cuda:N
        #[arg(long, default_value = "cpu")]
        device: String,
    },
}

#[derive(Subcommand, Debug)]
enum ModelAction {
    /// Embeddings (safetensors: `snapshot` [D], `diffs` [T, D]) → adapter directory
    Run {
        #[arg(long)]
        embeddings: PathBuf,
        /// New adapter directory (must not exist)
        #[arg(long)]
        out: PathBuf,
        /// Also write the final state vector (safetensors tensor `state`)
        #[arg(long)]
        state_out: Option<PathBuf>,
        #[command(flatten)]
        model: crate::offline::ModelChoice,
    },
    /// Write a checkpoint: the one given with --checkpoint in another format, or the seeded
    /// model of a preset
    Export {
        #[arg(long)]
        out: PathBuf,
        /// safetensors (evolora's) or pt (the released Code2LoRA layout, for torch.load and
        /// the authors' loaders)
        #[arg(long, default_value = "safetensors", value_parser = ["safetensors", "pt"])]
        format: String,
        /// Step policy recorded for a seeded model: every-commit or paper
        #[arg(long, default_value = "every-commit")]
        step_policy: StepPolicy,
        #[command(flatten)]
        model: crate::offline::ModelChoice,
    },
}

#[derive(clap::Args, Debug)]
struct DaemonArgs {
    /// TOML configuration file (reloaded on SIGHUP)
    #[arg(long, env = "EVOLORA_CONFIG")]
    config: Option<PathBuf>,
    /// State directory [default: $STATE_DIRECTORY, $XDG_STATE_HOME/evolora]
    #[arg(long, env = "EVOLORA_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Hypernetwork size preset without a checkpoint: paper, compact, tiny
    #[arg(long)]
    preset: Option<String>,
    /// Base model: qwen2.5-coder-1.5b, qwen2.5-coder-0.5b, or a config.json path
    #[arg(long)]
    base: Option<String>,
    /// evolora safetensors checkpoint
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// cpu or cuda:N
    #[arg(long)]
    device: Option<String>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let quiet_notify = matches!(cli.command, Command::Notify { quiet: true, .. });
    match run(cli) {
        Ok(code) => code,
        Err(_) if quiet_notify => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("evolora: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    use tracing_subscriber::prelude::*;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sled=warn"));
    // Under systemd, log to the journal with structured fields; elsewhere to stderr.
    let journald = std::env::var_os("JOURNAL_STREAM").and_then(|_| tracing_journald::layer().ok());
    let fmt = if journald.is_none() { Some(tracing_subscriber::fmt::layer().with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).with_writer(std::io::stderr)) } else { None };
    tracing_subscriber::registry().with(filter).with(journald).with(fmt).init();
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).with_context(|| format!("{} does not exist", path.display()))
}

fn run(cli: Cli) -> Result<ExitCode> {
    let socket = cli.socket.clone().unwrap_or_else(config::default_socket);
    let client = Client::new(&socket);
    match cli.command {
        Command::Daemon(args) => {
            init_tracing();
            let file = args.config.clone();
            crate::daemon::run(daemon_config(args, cli.socket)?, file)?;
        }
        Command::Lm { action } => crate::measure::lm::run(action)?,
        Command::Verify(args) => return crate::measure::verify::run(args),
        Command::Eval(args) => crate::measure::eval::run(*args)?,
        Command::Train(args) => crate::train::run(*args)?,
        Command::Tasks(args) => crate::measure::tasks::run(args)?,
        Command::State { action: StateAction::Rebuild(args) } => {
            let report = crate::rebuild::rebuild(daemon_config(args, cli.socket)?)?;
            if let Some(p) = &report.moved_aside {
                println!("previous database moved to {}", p.display());
            }
            println!(
                "rebuilt {} repositories, {} adapter records; {} states replayed and verified against their adapters",
                report.repositories, report.adapters, report.verified
            );
            for key in &report.unverified {
                println!("  {key}: state replayed, but its digest was not recorded or differs");
            }
            for s in &report.skipped {
                println!("  {s}");
            }
        }
        Command::Register { path, no_hooks, refs, wait } => {
            let path = absolute(&path)?;
            let reply = client.register(&path, refs)?;
            if !no_hooks {
                let exe = std::env::current_exe().context("locating the evolora binary for the hooks")?;
                let report = evolora_hooks::install(&path, &exe, Some(&socket))?;
                let names: Vec<&str> = report.hooks.iter().map(|(h, _)| h.as_str()).collect();
                println!("hooks installed in {}: {}", report.hooks_dir.display(), names.join(", "));
            }
            let already = if reply.already_registered { "already registered:" } else { "registered" };
            println!("{already} {} as {}", path.display(), reply.repo_key);
            if wait {
                wait_for_first_walk(&client, &path)?;
            }
        }
        Command::Unregister { path, keep_hooks } => {
            let path = absolute(&path)?;
            client.unregister(&path)?;
            if !keep_hooks {
                evolora_hooks::uninstall(&path)?;
            }
            println!("unregistered {}", path.display());
        }
        Command::Adapter { path, refname, wait, json, format, served_name, worktree } => {
            let path = absolute(&path)?;
            let wait = Duration::from_millis(wait.map(|s| (s.max(0.0) * 1000.0) as u64).unwrap_or(0));
            let reply = if worktree { client.adapter_for_worktree(&path, wait.max(Duration::from_secs(120)))? } else { client.adapter(&path, refname, wait)? };
            if let Some(crate::config::AdapterFormat::Gguf) = format {
                let file = Path::new(&reply.path).join(evolora_model::peft::GGUF_FILE);
                if !file.is_file() {
                    bail!("{} has no GGUF file: add \"gguf\" to [serve] formats and regenerate", reply.path);
                }
                println!("{}", file.display());
            } else if served_name {
                println!("{}", reply.served_name);
            } else if json {
                println!("{}", serde_json::to_string(&reply)?);
            } else {
                if let Some(w) = &reply.warning {
                    eprintln!("warning: {w}");
                }
                println!("{}", reply.path);
            }
        }
        Command::Status { path, json } => {
            let repo = path.as_deref().map(absolute).transpose()?;
            let reply = client.status(repo.as_deref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                print_status(&reply);
            }
        }
        Command::Notify { repo, quiet } => {
            let repo = match repo {
                Some(r) => absolute(&r)?,
                None => std::env::current_dir()?,
            };
            if quiet {
                // What hooks run: hand the line over and go; a commit never waits for us.
                client.with_timeout(Duration::from_millis(250)).notify_and_forget(&repo)?;
            } else {
                client.with_timeout(Duration::from_secs(5)).notify(&repo)?;
                println!("notified");
            }
        }
        Command::Regenerate { path } => {
            let path = absolute(&path)?;
            client.regenerate(&path)?;
            println!("regeneration queued for {}", path.display());
        }
        Command::Reset { path } => {
            let path = absolute(&path)?;
            client.reset(&path)?;
            println!("reset queued for {}", path.display());
        }
        Command::Pin { path, adapter } => pin(&client, &path, adapter, true)?,
        Command::Unpin { path, adapter } => pin(&client, &path, adapter, false)?,
        Command::Hooks { action } => {
            let (path, verb) = match &action {
                HooksAction::Install { path } => (path, "install"),
                HooksAction::Uninstall { path } => (path, "uninstall"),
                HooksAction::Status { path } => (path, "status"),
            };
            let path = match path {
                Some(p) => absolute(p)?,
                None => std::env::current_dir()?,
            };
            let report = match verb {
                "install" => evolora_hooks::install(&path, &std::env::current_exe()?, Some(&socket))?,
                "uninstall" => evolora_hooks::uninstall(&path)?,
                _ => evolora_hooks::status(&path)?,
            };
            println!("hooks directory: {}", report.hooks_dir.display());
            for (hook, present) in report.hooks {
                println!("  {hook}: {}", if present { "installed" } else { "not installed" });
            }
        }
        Command::Snapshot { path, out, model } => crate::offline::snapshot(&model, &absolute(&path)?, &out)?,
        Command::Encode { action } => match action {
            EncodeAction::Snapshot { repo, commit, out, encoder, device } => crate::encode::snapshot(&encoder, &device, &absolute(&repo)?, Some(&commit), &out)?,
            EncodeAction::Diff { repo, commit, base, out, encoder, device } => {
                crate::encode::diff(&encoder, &device, &absolute(&repo)?, &commit, base.as_deref(), &out)?
            }
            EncodeAction::History { repo, refname, step_policy, out, encoder, device } => {
                crate::encode::history(&encoder, &device, &absolute(&repo)?, refname.as_deref(), step_policy, &out)?
            }
        },
        Command::Model { action } => match action {
            ModelAction::Run { embeddings, out, state_out, model } => {
                crate::offline::model_run(&model, &embeddings, &out, state_out.as_deref())?
            }
            ModelAction::Export { out, format, step_policy, model } => crate::offline::export(&model, &out, &format, step_policy)?,
        },
        Command::Cluster { action: ClusterAction::Status { url, config: file, prefix, json } } => {
            let from_file = match &file {
                Some(f) => Config::load(Some(f)).map_err(anyhow::Error::msg)?.cluster,
                None => None,
            };
            let mut settings = match (&url, &from_file) {
                (Some(u), _) => evolora_cluster::ClusterSettings::new(u),
                (None, Some(c)) => c.settings(),
                (None, None) => bail!("name the cluster: --url nats://HOST:4222, or --config FILE with a [cluster] section"),
            };
            if let Some(p) = prefix.or_else(|| from_file.map(|c| c.prefix)) {
                settings.prefix = p;
            }
            // Reading the cluster changes none of its settings.
            settings.configures = false;
            let overview = crate::cluster::status::overview(&settings)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&overview)?);
            } else {
                crate::cluster::status::print(&overview);
            }
        }
        Command::Ping => {
            let reply = client.with_timeout(Duration::from_secs(5)).ping()?;
            println!("evolora daemon {} (pid {}) is up", reply.version, reply.pid);
        }
        Command::Metrics => print!("{}", client.with_timeout(Duration::from_secs(5)).metrics()?.text),
        Command::Shutdown => {
            client.with_timeout(Duration::from_secs(5)).shutdown()?;
            println!("daemon stopping");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn pin(client: &Client, path: &Path, adapter: Option<String>, pinned: bool) -> Result<()> {
    let reply = client.pin(&absolute(path)?, adapter, pinned)?;
    println!("{} {}", if pinned { "pinned" } else { "unpinned" }, reply.path);
    Ok(())
}

/// Defaults, the config file, then command-line overrides.
fn daemon_config(args: DaemonArgs, socket: Option<PathBuf>) -> Result<Config> {
    let mut cfg = Config::load(args.config.as_deref()).map_err(anyhow::Error::msg)?;
    if let Some(s) = socket {
        cfg.socket = s;
    }
    if let Some(d) = args.state_dir {
        cfg.state_dir = d;
    }
    if let Some(p) = args.preset {
        cfg.model.preset = p;
    }
    if let Some(b) = args.base {
        cfg.model.base = b;
    }
    if let Some(c) = args.checkpoint {
        cfg.model.checkpoint = Some(c);
    }
    if let Some(d) = args.device {
        cfg.model.device = d;
    }
    Ok(cfg)
}

fn print_status(reply: &Status) {
    if let Some(m) = &reply.model {
        let trained = if m.trained { "trained" } else { "UNTRAINED (seeded)" };
        println!("model: {} ({}), encoder {}, {trained}", m.architecture, m.base, m.encoder);
        if let Some(c) = &m.checkpoint {
            println!("  checkpoint {c}");
        }
        if let Some(d) = &m.encoder_dir {
            println!("  encoder directory {d}");
        }
    }
    if let Some(e) = &reply.model_error {
        println!("model: NOT LOADED: {e}");
    }
    if reply.repos.is_empty() {
        println!("no repositories registered; add one with `evolora register <path>`");
    }
    for r in &reply.repos {
        println!("{}  {}{}", r.repo_key, r.git_dir, if r.pending { "  (working)" } else { "" });
        if let Some(e) = &r.error {
            println!("  error: {e}");
        }
        for s in &r.refs {
            let last = if s.last_commit.is_empty() { "(origin pending)" } else { &s.last_commit[..s.last_commit.len().min(12)] };
            let origin = &s.origin_commit[..s.origin_commit.len().min(12)];
            println!(
                "  {}: {} steps over {} commits from {origin}, last {last}, adapter {}",
                s.refname,
                s.steps,
                s.walked,
                s.adapter.as_deref().unwrap_or("none yet")
            );
            match &s.walk {
                Some(w) if w.running => println!("    walking ({}): {}", w.start, w.describe()),
                Some(w) if w.start != "resumed" => println!("    last walk: {} from {}, {} commits in {:.1} s", w.start, &w.from_commit[..w.from_commit.len().min(12)], w.walked, w.elapsed_secs),
                _ => {}
            }
            if let Some(v) = &s.verification {
                let verdict = if v.passed { "verified".to_owned() } else { format!("FAILED verification: {}", v.failures.join("; ")) };
                println!("    last adapter {verdict} (largest logit change {:.3}, {:.1} s)", v.max_abs_logit_change, v.secs);
            }
        }
        if let Some(b) = r.restore_point_bytes {
            println!("  restore points: {b} bytes");
        }
        for a in r.adapters.iter().flatten() {
            println!("  version {}{}  {} bytes  {}", a.dir, if a.pinned { " (pinned)" } else { "" }, a.bytes, a.refname);
        }
    }
}

/// Polls `status` until the repository's refs have adapters (or its job failed), drawing the
/// walk's progress.
fn wait_for_first_walk(client: &Client, path: &Path) -> Result<()> {
    let mut bar = crate::progress::Progress::new("walking", "commits");
    loop {
        let status = client.status(Some(path))?;
        let repo = status.repos.into_iter().next().context("the daemon no longer knows the repository")?;
        if let Some(walk) = repo.refs.iter().filter_map(|r| r.walk.as_ref()).find(|w| w.running) {
            bar.update(walk.walked, walk.to_walk, walk.eta_secs);
        }
        let done = !repo.refs.is_empty() && repo.refs.iter().all(|r| r.adapter.is_some() && r.walk.as_ref().is_none_or(|w| !w.running));
        if done && !repo.pending {
            for r in &repo.refs {
                let walk = r.walk.as_ref().map(|w| format!(" ({} commits walked in {:.1} s)", w.walked, w.elapsed_secs)).unwrap_or_default();
                println!("{}: {} steps over {} commits{walk}; adapter {}", r.refname, r.steps, r.walked, r.adapter.as_deref().unwrap_or("-"));
            }
            return Ok(());
        }
        if !repo.pending && repo.refs.is_empty() && repo.error.is_none() {
            println!("nothing to walk yet: the repository has no commits on a followed branch");
            return Ok(());
        }
        if let Some(e) = repo.error.filter(|_| !repo.pending) {
            bail!("the first walk failed: {e}");
        }
        if let Some(e) = status.model_error {
            bail!("the daemon has no model, so no walk runs: {e}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
