//! Daemon configuration: embedded defaults, an optional TOML file, and command-line
//! overrides, in that order.

use std::path::{Path, PathBuf};

use evolora_model::BaseModelShapes;
use evolora_model::peft::AdapterDtype;
use serde::{Deserialize, Serialize};

/// When to regenerate an adapter. The GRU always advances on every commit; these decide
/// whether a finished catch-up also publishes a new adapter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Triggers {
    /// Regenerate after any new commit.
    pub every_commit: bool,
    /// Regenerate when a dependency manifest changed.
    pub manifest_changed: bool,
    /// File name globs that count as dependency manifests.
    pub manifest_globs: Vec<String>,
    /// Regenerate once this many commits are unadapted (0 = off).
    pub every_n_commits: u64,
    /// Regenerate when unadapted commits are older than this many seconds (0 = off).
    pub period_secs: u64,
    /// Never regenerate more often than this (seconds, 0 = no limit); explicit requests
    /// ignore it.
    pub min_interval_secs: u64,
    /// Drift control: rebuild the state from a fresh snapshot once this many commits were
    /// walked since the last snapshot (0 = never).
    pub drift_reset_every: u64,
}

impl Default for Triggers {
    fn default() -> Self {
        Triggers {
            every_commit: true,
            manifest_changed: true,
            manifest_globs: [
                "requirements*.txt", "pyproject.toml", "setup.py", "setup.cfg", "Pipfile", "Pipfile.lock",
                "poetry.lock", "uv.lock", "environment.yml", "package.json", "Cargo.toml", "go.mod",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            every_n_commits: 0,
            period_secs: 0,
            min_interval_secs: 0,
            drift_reset_every: 0,
        }
    }
}

/// Where a newly registered repository's state starts, and the restore points it keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistorySettings {
    /// `root`: h₀ at the first commit (the first kept one under the paper policy) and one step
    /// per commit from there, as the paper's states are made. `tip`: h₀ at the tip, no steps.
    pub from: HistoryFrom,
    /// With `from = "root"`: start at most this many first-parent commits before the tip.
    pub last: Option<u64>,
    /// With `from = "root"`: start at the first commit committed on or after this date
    /// (`YYYY-MM-DD`, UTC, or `YYYY-MM-DDTHH:MM:SSZ`).
    pub since: Option<String>,
    /// Keep a restore point every this many walked commits (0: only at published adapters).
    pub restore_every: u64,
    /// Most restore points per ref; older ones are thinned first.
    pub restore_points: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HistoryFrom {
    #[default]
    Root,
    Tip,
}

impl Default for HistorySettings {
    fn default() -> Self {
        HistorySettings { from: HistoryFrom::Root, last: None, since: None, restore_every: 16, restore_points: 32 }
    }
}

impl HistorySettings {
    /// The `since` bound in Unix seconds, if set.
    pub fn since_secs(&self) -> Result<Option<i64>, String> {
        self.since.as_deref().map(parse_date).transpose()
    }

    /// Refuses settings that contradict each other, by name.
    pub fn check(&self) -> Result<(), String> {
        if self.from == HistoryFrom::Tip && (self.last.is_some() || self.since.is_some()) {
            return Err("[history] `last` and `since` bound a walk from the root; they mean nothing with from = \"tip\"".into());
        }
        if self.last == Some(0) {
            return Err("[history] last = 0 walks nothing; use from = \"tip\" for a state without history".into());
        }
        self.since_secs().map(|_| ())
    }
}

/// `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SSZ` as Unix seconds.
fn parse_date(text: &str) -> Result<i64, String> {
    let bad = || format!("[history] since = \"{text}\": expected YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ");
    let (date, time) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t.strip_suffix('Z').ok_or_else(bad)?)),
        None => (text, None),
    };
    let num = |s: &str| s.parse::<i64>().map_err(|_| bad());
    let d: Vec<&str> = date.split('-').collect();
    let [y, m, day] = d.as_slice() else { return Err(bad()) };
    let (y, m, day) = (num(y)?, num(m)?, num(day)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return Err(bad());
    }
    let secs = match time {
        None => 0,
        Some(t) => {
            let p: Vec<&str> = t.split(':').collect();
            let [h, mi, se] = p.as_slice() else { return Err(bad()) };
            let (h, mi, se) = (num(h)?, num(mi)?, num(se)?);
            if h > 23 || mi > 59 || se > 60 {
                return Err(bad());
            }
            h * 3600 + mi * 60 + se
        }
    };
    // Days since 1970-01-01 of a proleptic Gregorian date (the usual era arithmetic).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Ok((era * 146_097 + doe - 719_468) * 86_400 + secs)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSettings {
    /// Hypernetwork size preset when no checkpoint is given: paper, compact, tiny.
    pub preset: String,
    /// An evolora safetensors checkpoint; without one the model is untrained (seeded).
    pub checkpoint: Option<PathBuf>,
    /// Seed of the untrained model.
    pub seed: u64,
    /// Base model: a built-in preset name or a path to a Hugging Face config.json.
    pub base: String,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// Adapter tensor dtype: f32, bf16, f16 (anything else is refused when the file loads).
    pub dtype: AdapterDtype,
    /// What turns text into the model's input vectors: `hashed` (built in: its newest
    /// version, or the one a configured checkpoint was trained on), `hashed-v1` or
    /// `hashed-v2` (that version), or `qwen3` (the released checkpoints' Qwen3-Embedding
    /// recipe; needs `encoder_dir`).
    pub encoder: EncoderKind,
    /// A local Hugging Face Qwen3-Embedding directory (config.json, safetensors,
    /// tokenizer.json) for `encoder = "qwen3"`.
    pub encoder_dir: Option<PathBuf>,
    /// The base code LM's Hugging Face directory (config.json, safetensors, tokenizer.json),
    /// which `verify_after_publish` runs adapters on.
    pub base_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum EncoderKind {
    /// The newest hashed version, or the one a configured checkpoint was trained on.
    #[default]
    Hashed,
    #[serde(rename = "hashed-v1")]
    #[value(name = "hashed-v1")]
    HashedV1,
    #[serde(rename = "hashed-v2")]
    #[value(name = "hashed-v2")]
    HashedV2,
    Qwen3,
}

impl EncoderKind {
    /// The hashed encoder's version this names; None for a transformer encoder.
    pub fn hashed(self) -> Option<evolora_model::encoder::HashedEncoder> {
        use evolora_model::encoder::HashedEncoder;
        match self {
            EncoderKind::Hashed => Some(HashedEncoder::LATEST),
            EncoderKind::HashedV1 => Some(HashedEncoder::V1),
            EncoderKind::HashedV2 => Some(HashedEncoder::V2),
            EncoderKind::Qwen3 => None,
        }
    }
}

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings {
            preset: "compact".into(),
            checkpoint: None,
            seed: 0xC0DE_2A0A,
            base: "qwen2.5-coder-1.5b".into(),
            device: "cpu".into(),
            dtype: AdapterDtype::F32,
            encoder: EncoderKind::Hashed,
            encoder_dir: None,
            base_dir: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    pub model: ModelSettings,
    pub triggers: Triggers,
    pub history: HistorySettings,
    /// Newest adapter versions kept per repository; current and pinned ones are kept
    /// whatever their age.
    pub keep_adapters: usize,
    /// Most bytes all adapter directories may take together ("20GiB", "500 MB" or a number
    /// of bytes; 0 = no limit). Over it, the least recently queried versions are evicted,
    /// never a current or pinned one.
    pub adapter_disk_budget: ByteSize,
    /// Most bytes the embedding cache (`<state_dir>/embeddings`) may take ("4GiB", a number
    /// of bytes; 0 = no cache). Only transformer encoders use it.
    pub embedding_cache_budget: ByteSize,
    /// Commits per state transaction during a catch-up.
    pub step_group: usize,
    /// Threads that diff and encode commits ahead of the GRU during a catch-up (0: one per
    /// CPU, at most 8).
    pub encode_threads: usize,
    /// Most concurrent socket clients.
    pub max_clients: usize,
    /// After each publish, check the adapter on the base model of `[model] base_dir` as
    /// `evolora verify` does, log the outcome and show it in `status`. The base model stays
    /// loaded (about 4 bytes per parameter) and each check costs a few forward passes.
    pub verify_after_publish: bool,
    /// How inference servers consume the adapters.
    pub serve: ServeSettings,
    /// Per-repository overrides: `[[repo]] path = "..."` with `[repo.triggers]` and
    /// `[repo.history]` tables naming only the keys that differ from the global ones.
    #[serde(rename = "repo")]
    pub repos: Vec<RepoOverride>,
    /// Cluster mode (`[cluster]`): this node is an edge or a worker of a NATS JetStream
    /// cluster. Absent: the single-machine daemon.
    pub cluster: Option<ClusterConfig>,
}

/// What this node does in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterRole {
    /// A git server: hooks and the watcher publish wake-ups; adapters are fetched from the
    /// cluster for clients. No model is loaded.
    Edge,
    /// Takes repositories from the queue, walks them on a local mirror, writes states and
    /// adapter versions to the cluster.
    Worker,
}

/// `[cluster]`: see docs/CLUSTER.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    pub role: ClusterRole,
    /// NATS server URL(s), comma-separated.
    pub url: String,
    /// This node's name: part of every repository id an edge publishes (so the same path on
    /// two git servers is two repositories) and of a worker's id. Letters, digits, `-`, `_`.
    pub node: String,
    /// Prefix of the JetStream streams, buckets and subjects.
    #[serde(default = "default_cluster_prefix")]
    pub prefix: String,
    /// Seconds a worker owns a repository without refreshing its lease.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
    /// Edge: the URL workers fetch a repository from; `{git_dir}` is replaced by its git
    /// directory (default `{git_dir}`: workers on this machine or a shared filesystem; for
    /// example `ssh://git-1.example.com{git_dir}` otherwise).
    #[serde(default = "default_fetch_url")]
    pub fetch_url: String,
    /// Where adapter versions are stored: `jetstream` (the cluster's NATS object store) or
    /// `s3://BUCKET/PREFIX` (credentials from the AWS environment variables).
    #[serde(default = "default_objects")]
    pub objects: String,
    /// The S3 server's URL for S3-compatible stores (`http://127.0.0.1:9000`); unset for AWS.
    #[serde(default)]
    pub s3_endpoint: Option<String>,
    #[serde(default = "default_s3_region")]
    pub s3_region: String,
}

fn default_cluster_prefix() -> String {
    "evolora".into()
}
fn default_objects() -> String {
    "jetstream".into()
}
fn default_s3_region() -> String {
    "us-east-1".into()
}
fn default_lease_secs() -> u64 {
    15
}
fn default_fetch_url() -> String {
    "{git_dir}".into()
}

impl ClusterConfig {
    pub fn check(&self) -> Result<(), String> {
        evolora_cluster::names::check_name(&self.node).map_err(|e| format!("[cluster] node: {e}"))?;
        evolora_cluster::names::check_name(&self.prefix).map_err(|e| format!("[cluster] prefix: {e}"))?;
        if self.lease_secs < 2 {
            return Err("[cluster] lease_secs must be at least 2".into());
        }
        self.objects_location().map_err(|e| format!("[cluster] objects: {e}"))?;
        Ok(())
    }

    fn objects_location(&self) -> Result<evolora_cluster::ObjectsLocation, evolora_cluster::ClusterError> {
        evolora_cluster::ObjectsLocation::parse(&self.objects, self.s3_endpoint.as_deref(), &self.s3_region)
    }

    /// The connection settings; `check` has accepted this section (every `Config::load` does).
    pub fn settings(&self) -> evolora_cluster::ClusterSettings {
        let mut s = evolora_cluster::ClusterSettings::new(&self.url);
        s.prefix = self.prefix.clone();
        s.lease = std::time::Duration::from_secs(self.lease_secs);
        s.objects = self.objects_location().expect("[cluster] objects was checked when the configuration was loaded");
        // The workers own the lease time; an edge goes by the cluster's.
        s.configures = self.role == ClusterRole::Worker;
        s
    }
}

/// `[serve]`: what inference servers need from the adapters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeSettings {
    /// Written as `base_model_name_or_path` in every adapter: the exact model argument the
    /// inference server was started with (`vllm serve /models/qwen` needs "/models/qwen";
    /// vLLM's filesystem resolver refuses an adapter naming another base). Unset: the base
    /// model's own name.
    pub base_model_name: Option<String>,
    /// A version handed to a client or pushed to a server is kept at least this many
    /// seconds after its last hand-out, whatever `keep_adapters` and the disk budget say:
    /// servers re-read an adapter they evicted from memory from its path.
    pub grace_secs: u64,
    /// Files written for each version: `peft` always; `gguf` adds `adapter_model.gguf` for
    /// llama.cpp beside it.
    pub formats: Vec<AdapterFormat>,
    /// Serve `/metrics` over HTTP on this local address (e.g. "127.0.0.1:9464"); the socket's
    /// `metrics` op answers either way.
    pub metrics_listen: Option<String>,
    /// Inference servers to load each new version into (`[[serve.push]]`).
    pub push: Vec<PushEndpoint>,
    /// An adapter of uncommitted work (`evolora adapter --worktree`) is removed after this
    /// many seconds without a request.
    pub worktree_ttl_secs: u64,
}

impl Default for ServeSettings {
    fn default() -> Self {
        ServeSettings { base_model_name: None, grace_secs: 3600, formats: vec![AdapterFormat::Peft], metrics_listen: None, push: Vec::new(), worktree_ttl_secs: 3600 }
    }
}

impl ServeSettings {
    pub fn gguf(&self) -> bool {
        self.formats.contains(&AdapterFormat::Gguf)
    }

    /// `base` under the name servers know it by (`base_model_name`, when set).
    pub fn served_base(&self, base: &BaseModelShapes) -> BaseModelShapes {
        match &self.base_model_name {
            Some(name) => BaseModelShapes { name: name.clone(), ..base.clone() },
            None => base.clone(),
        }
    }

    /// Whether a GGUF file is written beside the PEFT files for `base`: asked for, and the
    /// base's family known (llama.cpp needs the architecture).
    pub fn gguf_for(&self, base: &BaseModelShapes) -> bool {
        self.gguf() && base.family.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AdapterFormat {
    Peft,
    Gguf,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushKind {
    #[default]
    Vllm,
    Sglang,
}

/// `[[serve.push]]`: one inference server that loads each new version by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PushEndpoint {
    /// Its name in logs, metrics and `status` (default: the URL without credentials).
    pub name: Option<String>,
    /// `vllm` (`/v1/load_lora_adapter`, needs `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`) or
    /// `sglang` (`/load_lora_adapter`).
    pub kind: PushKind,
    /// The server's base URL, e.g. "http://127.0.0.1:8000".
    pub url: String,
    /// Versions per repository left loaded there; older ones are unloaded.
    pub keep: usize,
    /// The environment variable holding a bearer token for the server (never logged).
    pub api_key_env: Option<String>,
    /// Per call.
    pub timeout_secs: u64,
    /// Tries per call while the server is unreachable or answers 5xx.
    pub attempts: u32,
    /// Wait before the first retry, doubling after each.
    pub backoff_ms: u64,
}

impl Default for PushEndpoint {
    fn default() -> Self {
        PushEndpoint { name: None, kind: PushKind::Vllm, url: String::new(), keep: 2, api_key_env: None, timeout_secs: 10, attempts: 5, backoff_ms: 500 }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoOverride {
    pub path: PathBuf,
    #[serde(default)]
    pub triggers: toml::Table,
    #[serde(default)]
    pub history: toml::Table,
    /// `[repo.serve]`: only `push = false` (this repository's versions are not pushed).
    #[serde(default)]
    pub serve: toml::Table,
    /// `path`'s common git dir, found when the file is loaded (jobs look it up often).
    #[serde(skip)]
    pub git_dir: Option<PathBuf>,
}

impl Config {
    /// The triggers for the repository whose git dir is `git_dir`: the global table with the
    /// repository's overrides laid over it.
    pub fn triggers_for(&self, git_dir: &Path) -> Result<Triggers, String> {
        self.overridden(git_dir, "triggers", &self.triggers, |o| &o.triggers)
    }

    /// The history settings for the repository whose git dir is `git_dir`.
    pub fn history_for(&self, git_dir: &Path) -> Result<HistorySettings, String> {
        let h: HistorySettings = self.overridden(git_dir, "history", &self.history, |o| &o.history)?;
        h.check()?;
        Ok(h)
    }

    /// Whether this repository's new versions go to the `[[serve.push]]` servers.
    pub fn pushes(&self, git_dir: &Path) -> bool {
        let o = self.repos.iter().find(|o| o.git_dir.as_deref() == Some(git_dir));
        o.and_then(|o| o.serve.get("push")).and_then(|v| v.as_bool()).unwrap_or(true)
    }

    /// `global` with the `[repo.<section>]` keys of `git_dir`'s override laid over it.
    fn overridden<T>(&self, git_dir: &Path, section: &str, global: &T, table: impl Fn(&RepoOverride) -> &toml::Table) -> Result<T, String>
    where
        T: Serialize + serde::de::DeserializeOwned + Clone,
    {
        let Some(o) = self.repos.iter().find(|o| match &o.git_dir {
            Some(d) => d == git_dir,
            // Not a repository when the file was loaded: look again.
            None => crate::git::locate(&o.path).map(|l| l.git_dir == git_dir).unwrap_or(false),
        }) else {
            return Ok(global.clone());
        };
        let mut merged = toml::Table::try_from(global).map_err(|e| e.to_string())?;
        for (k, v) in table(o) {
            merged.insert(k.clone(), v.clone());
        }
        merged.try_into().map_err(|e: toml::de::Error| format!("[repo.{section}] for {}: {e}", o.path.display()))
    }
}

/// Adapter directories live in this subdirectory of the state directory.
pub const ADAPTERS_DIR: &str = "adapters";

/// A size in bytes, written in TOML as an integer or as a string with a unit
/// (B, kB/MB/GB/TB in powers of 1000, KiB/MiB/GiB/TiB in powers of 1024).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

impl std::str::FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
        let (number, unit) = (t[..split].trim(), t[split..].trim());
        let value: f64 = number.parse().map_err(|_| format!("`{s}` is not a size (e.g. \"20GiB\")"))?;
        let scale: u64 = match unit.to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "m" | "mb" => 1_000_000,
            "g" | "gb" => 1_000_000_000,
            "t" | "tb" => 1_000_000_000_000,
            "kib" => 1 << 10,
            "mib" => 1 << 20,
            "gib" => 1 << 30,
            "tib" => 1 << 40,
            _ => return Err(format!("`{s}`: unknown unit `{unit}` (use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)")),
        };
        Ok(ByteSize((value * scale as f64).round() as u64))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bytes(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bytes(n) => Ok(ByteSize(n)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: default_state_dir(),
            socket: default_socket(),
            model: ModelSettings::default(),
            triggers: Triggers::default(),
            history: HistorySettings::default(),
            keep_adapters: 3,
            adapter_disk_budget: ByteSize(0),
            embedding_cache_budget: ByteSize(4 << 30),
            step_group: 32,
            encode_threads: 0,
            max_clients: 1024,
            verify_after_publish: false,
            serve: ServeSettings::default(),
            repos: Vec::new(),
            cluster: None,
        }
    }
}

impl Config {
    /// Defaults, then the TOML file if given.
    pub fn load(file: Option<&Path>) -> Result<Self, String> {
        match file {
            None => Ok(Config::default()),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| format!("config {}: {e}", path.display()))?;
                let mut cfg: Config = toml::from_str(&text).map_err(|e| format!("config {}: {e}", path.display()))?;
                cfg.history.check().map_err(|e| format!("config {}: {e}", path.display()))?;
                if let Some(c) = &cfg.cluster {
                    c.check().map_err(|e| format!("config {}: {e}", path.display()))?;
                }
                crate::push::check_endpoints(&cfg.serve.push).map_err(|e| format!("config {}: {e}", path.display()))?;
                for o in &cfg.repos {
                    if let Some(k) = o.serve.keys().find(|k| *k != "push") {
                        return Err(format!("config {}: [repo.serve] for {}: unknown key `{k}` (only `push`)", path.display(), o.path.display()));
                    }
                    if o.serve.get("push").is_some_and(|v| !v.is_bool()) {
                        return Err(format!("config {}: [repo.serve] for {}: push must be true or false", path.display(), o.path.display()));
                    }
                }
                if cfg.verify_after_publish && cfg.model.base_dir.is_none() {
                    return Err(format!("config {}: verify_after_publish needs [model] base_dir, the base model's directory", path.display()));
                }
                for o in &mut cfg.repos {
                    o.git_dir = crate::git::locate(&o.path).ok().map(|l| l.git_dir);
                }
                Ok(cfg)
            }
        }
    }

    /// The retention rules in force.
    pub fn keep(&self) -> crate::adapters::Keep {
        crate::adapters::Keep { newest: self.keep_adapters, disk_budget: self.adapter_disk_budget.0, grace_secs: self.serve.grace_secs }
    }

    pub fn encode_threads(&self) -> usize {
        match self.encode_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()).min(8),
            n => n,
        }
    }

    pub fn adapters_dir(&self) -> PathBuf {
        self.state_dir.join(ADAPTERS_DIR)
    }

    pub fn embeddings_dir(&self) -> PathBuf {
        self.state_dir.join("embeddings")
    }

    pub fn db_dir(&self) -> PathBuf {
        self.state_dir.join("db")
    }
}

fn env_path(var: &str) -> Option<PathBuf> {
    std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// `$STATE_DIRECTORY` (systemd), else `$XDG_STATE_HOME/evolora`, else
/// `~/.local/state/evolora`.
pub fn default_state_dir() -> PathBuf {
    if let Some(d) = env_path("STATE_DIRECTORY") {
        // systemd may pass several, colon-separated; the first is ours.
        let first = d.to_string_lossy().split(':').next().unwrap_or_default().to_owned();
        return PathBuf::from(first);
    }
    if let Some(d) = env_path("XDG_STATE_HOME") {
        return d.join("evolora");
    }
    match env_path("HOME") {
        Some(home) => home.join(".local/state/evolora"),
        None => PathBuf::from("/var/lib/evolora"),
    }
}

/// See [`evolora_protocol::default_socket`]: hooks and the daemon must agree.
pub fn default_socket() -> PathBuf {
    evolora_protocol::default_socket()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_only_what_it_names() {
        let c: Config = toml::from_str("keep_adapters = 7\n[triggers]\nevery_commit = false\nevery_n_commits = 5\n").unwrap();
        assert_eq!(c.keep_adapters, 7);
        assert!(!c.triggers.every_commit);
        assert_eq!(c.triggers.every_n_commits, 5);
        assert!(c.triggers.manifest_changed, "unnamed fields keep their defaults");
        assert_eq!(c.model.preset, "compact");
    }

    #[test]
    fn repository_overrides_parse() {
        let c: Config = toml::from_str("[triggers]\nevery_commit = true\n[[repo]]\npath = \"/srv/a.git\"\n[repo.triggers]\nevery_commit = false\nevery_n_commits = 4\n").unwrap();
        assert_eq!(c.repos.len(), 1);
        assert_eq!(c.repos[0].triggers.get("every_n_commits").and_then(|v| v.as_integer()), Some(4));
    }

    #[test]
    fn disk_budgets_take_units() {
        let budget = |text: &str| toml::from_str::<Config>(&format!("adapter_disk_budget = {text}\n")).map(|c| c.adapter_disk_budget.0);
        assert_eq!(budget("1048576").unwrap(), 1 << 20);
        assert_eq!(budget("\"20GiB\"").unwrap(), 20 << 30);
        assert_eq!(budget("\"1.5 MB\"").unwrap(), 1_500_000);
        assert_eq!(budget("\"0\"").unwrap(), 0);
        assert!(budget("\"20 parsecs\"").unwrap_err().to_string().contains("unknown unit"));
        assert!(budget("\"lots\"").is_err());
    }

    #[test]
    fn a_mistyped_adapter_dtype_is_refused() {
        assert_eq!(toml::from_str::<Config>("[model]\ndtype = \"bf16\"\n").unwrap().model.dtype, AdapterDtype::Bf16);
        assert!(toml::from_str::<Config>("[model]\ndtype = \"bf61\"\n").is_err(), "no silent fallback to f32");
    }

    #[test]
    fn history_settings_parse_and_contradictions_are_refused() {
        let c: Config = toml::from_str("[history]\nlast = 500\n[[repo]]\npath = \"/nowhere\"\n[repo.history]\nfrom = \"tip\"\n").unwrap();
        assert_eq!((c.history.from, c.history.last), (HistoryFrom::Root, Some(500)));
        assert_eq!(c.repos[0].history.get("from").and_then(|v| v.as_str()), Some("tip"));
        assert!(HistorySettings { from: HistoryFrom::Tip, last: Some(3), ..Default::default() }.check().is_err());
        assert!(HistorySettings { last: Some(0), ..Default::default() }.check().is_err());
        assert!(toml::from_str::<Config>("[history]\nfrom = \"middle\"\n").is_err());
    }

    #[test]
    fn since_dates_are_utc_seconds() {
        let at = |s: &str| HistorySettings { since: Some(s.into()), ..Default::default() }.since_secs();
        assert_eq!(at("1970-01-01").unwrap(), Some(0));
        assert_eq!(at("2000-03-01").unwrap(), Some(951_868_800));
        assert_eq!(at("2024-02-29T12:30:05Z").unwrap(), Some(1_709_209_805));
        assert!(at("2024-13-01").is_err() && at("yesterday").is_err() && at("2024-01-01T10:00").is_err());
    }

    #[test]
    fn serve_settings_parse_and_a_repository_can_opt_out_of_push() {
        let text = "[serve]\nformats = [\"peft\", \"gguf\"]\n[[serve.push]]\nkind = \"sglang\"\nurl = \"http://h:30000\"\n\
                    [[repo]]\npath = \"/srv/quiet.git\"\n[repo.serve]\npush = false\n";
        let mut c: Config = toml::from_str(text).unwrap();
        assert!(c.serve.gguf());
        assert_eq!((c.serve.push[0].kind, c.serve.push[0].keep, c.serve.push[0].attempts), (PushKind::Sglang, 2, 5), "unnamed keys keep their defaults");
        c.repos[0].git_dir = Some("/srv/quiet.git".into());
        assert!(!c.pushes(Path::new("/srv/quiet.git")));
        assert!(c.pushes(Path::new("/srv/other.git")));
        assert!(toml::from_str::<Config>("[serve]\nformats = [\"onnx\"]\n").is_err());
        assert_eq!(Config::default().serve.grace_secs, 3600);
    }

    #[test]
    fn cluster_objects_default_to_jetstream_and_s3_locations_are_checked() {
        use evolora_cluster::ObjectsLocation;
        let cluster = |extra: &str| toml::from_str::<Config>(&format!("[cluster]\nrole = \"worker\"\nurl = \"nats://h:4222\"\nnode = \"w1\"\n{extra}")).unwrap().cluster.unwrap();
        let plain = cluster("");
        assert!(plain.check().is_ok());
        assert_eq!(plain.settings().objects, ObjectsLocation::JetStream);
        let s3 = cluster("objects = \"s3://evolora-adapters/prod/\"\ns3_endpoint = \"http://127.0.0.1:9000\"\n");
        assert!(s3.check().is_ok());
        assert_eq!(
            s3.settings().objects,
            ObjectsLocation::S3 { bucket: "evolora-adapters".into(), prefix: "prod".into(), endpoint: Some("http://127.0.0.1:9000".into()), region: "us-east-1".into(), allow_http: true }
        );
        let aws = cluster("objects = \"s3://evolora-adapters\"\ns3_region = \"eu-west-3\"\n").settings().objects;
        assert!(matches!(aws, ObjectsLocation::S3 { endpoint: None, allow_http: false, ref region, .. } if region == "eu-west-3"));
        for (extra, why) in [
            ("objects = \"minio://b\"\n", "expected `jetstream` or `s3://BUCKET/PREFIX`"),
            ("objects = \"s3://No_Such\"\n", "bucket name"),
            ("objects = \"s3://bucket\"\ns3_endpoint = \"127.0.0.1:9000\"\n", "http:// or https://"),
            ("s3_endpoint = \"http://127.0.0.1:9000\"\n", "adapters go to JetStream"),
            ("objects = \"s3://bucket\"\ns3_region = \"\"\n", "region"),
        ] {
            let err = cluster(extra).check().unwrap_err();
            assert!(err.starts_with("[cluster] objects: ") && err.contains(why), "{extra}: {err}");
        }
    }

    #[test]
    fn unknown_keys_are_errors() {
        assert!(toml::from_str::<Config>("[triggers]\nevery_comit = true\n").is_err());
    }
}
