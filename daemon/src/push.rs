//! Push mode: after each publish, load the new version into the configured vLLM and SGLang
//! servers under its served name, then unload that repository's versions beyond the newest
//! `keep` there.
//!
//! Its own thread, fed by a channel: a server that is slow, down or refusing never delays
//! publishing. Publishes that pile up while a server is unreachable collapse to the newest
//! per repository (an older version is never worth loading once a newer exists). What each
//! server holds is written to `<state>/push.json` after every change, so a restart neither
//! loads a version twice nor forgets to unload one. Versions loaded somewhere count as handed
//! out for retention (see `adapters::retention`) until they are unloaded.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evolora_protocol::reply::PushStatus;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::adapters::Adapters;
use crate::config::{PushEndpoint, PushKind};
use crate::metrics::Metrics;

/// Longest wait between two rounds of marking loaded versions as handed out (and retrying
/// failed loads); shorter when the serve grace is short.
const TOUCH_EVERY: Duration = Duration::from_secs(30);

/// A published version, as the push thread receives it.
#[derive(Debug, Clone)]
pub struct Published {
    pub repo_key: String,
    pub refname: String,
    /// The version's directory name under the repository's adapter folder.
    pub dir: String,
    pub path: PathBuf,
}

impl Published {
    /// What a server's versions are kept and replaced by: each followed ref of a repository
    /// has its own newest versions there.
    fn slot(&self) -> String {
        format!("{} {}", self.repo_key, self.refname)
    }
}

/// What went wrong with one call.
#[derive(Debug)]
enum CallError {
    /// Worth trying again: no connection, a timeout, a 5xx.
    Transient(String),
    /// The server refused the request itself.
    Refused(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Transient(m) | CallError::Refused(m) => f.write_str(m),
        }
    }
}

/// What each endpoint holds: by endpoint name, then slot (repository key and ref), the
/// served names oldest first.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Loaded(BTreeMap<String, BTreeMap<String, Vec<String>>>);

#[derive(Default)]
pub struct Pusher {
    tx: Mutex<Option<Sender<Published>>>,
    status: Arc<Mutex<BTreeMap<String, PushStatus>>>,
}

impl Pusher {
    /// Starts the push thread when any endpoint is configured; until then (and without
    /// endpoints) publishes are dropped. `grace_secs`: loaded versions are re-marked as
    /// handed out well within it.
    pub fn start(&self, endpoints: Vec<PushEndpoint>, grace_secs: u64, state_dir: &Path, adapters: Arc<Adapters>, metrics: Arc<Metrics>) {
        if endpoints.is_empty() {
            return;
        }
        {
            let mut s = self.status.lock().expect("push status lock");
            for e in &endpoints {
                s.insert(e.label(), PushStatus { endpoint: e.label(), kind: e.kind.as_str().into(), url: e.public_url(), ..Default::default() });
                if let Some(var) = &e.api_key_env
                    && std::env::var(var).map_or(true, |v| v.is_empty())
                {
                    warn!(endpoint = %e.label(), variable = %var, "api_key_env names an unset variable: calls go without a token");
                }
            }
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let file = state_dir.join("push.json");
        let mut loaded = load_file(&file);
        // Endpoints no longer configured: evolora does not reach them any more, and their
        // versions must not stay protected from retention for ever.
        loaded.0.retain(|label, _| endpoints.iter().any(|e| &e.label() == label));
        let touch_every = Duration::from_secs((grace_secs / 3).clamp(1, TOUCH_EVERY.as_secs()));
        let worker = Worker { endpoints, loaded, failed: BTreeMap::new(), file, touch_every, adapters, metrics, status: self.status.clone() };
        match std::thread::Builder::new().name("evolora-push".into()).spawn(move || worker.run(rx)) {
            Ok(_) => *self.tx.lock().expect("push lock") = Some(tx),
            Err(e) => warn!(error = %e, "push mode disabled: cannot start its thread"),
        }
    }

    /// Hands a published version to the push thread; never blocks.
    pub fn published(&self, version: Published) {
        if let Some(tx) = self.tx.lock().expect("push lock").as_ref() {
            let _ = tx.send(version);
        }
    }

    /// Each endpoint's last outcome.
    pub fn status(&self) -> Vec<PushStatus> {
        self.status.lock().expect("push status lock").values().cloned().collect()
    }
}

fn load_file(file: &Path) -> Loaded {
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            warn!(file = %file.display(), error = %e, "push record unreadable: starting with none loaded");
            Loaded::default()
        }),
        Err(_) => Loaded::default(),
    }
}

struct Worker {
    endpoints: Vec<PushEndpoint>,
    loaded: Loaded,
    /// Loads that failed, by (endpoint index, slot): retried each round until they succeed
    /// or a newer version of the slot replaces them.
    failed: BTreeMap<(usize, String), Published>,
    file: PathBuf,
    touch_every: Duration,
    adapters: Arc<Adapters>,
    metrics: Arc<Metrics>,
    status: Arc<Mutex<BTreeMap<String, PushStatus>>>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Published>) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        self.touch_loaded();
        loop {
            let first = match rx.recv_timeout(self.touch_every) {
                Ok(p) => p,
                Err(RecvTimeoutError::Timeout) => {
                    self.touch_loaded();
                    self.retry_failed(&agent);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            };
            // The newest publish per slot, in arrival order of the first.
            let mut batch: Vec<Published> = vec![first];
            while let Ok(p) = rx.try_recv() {
                match batch.iter_mut().find(|b| b.slot() == p.slot()) {
                    Some(held) => *held = p,
                    None => batch.push(p),
                }
            }
            for version in batch {
                for i in 0..self.endpoints.len() {
                    self.failed.remove(&(i, version.slot()));
                    self.push_one(&agent, i, &version);
                }
                self.touch_loaded();
            }
        }
    }

    fn retry_failed(&mut self, agent: &ureq::Agent) {
        let due: Vec<((usize, String), Published)> = std::mem::take(&mut self.failed).into_iter().collect();
        for ((i, _), version) in due {
            self.push_one(agent, i, &version);
        }
    }

    /// Loads `version` at endpoint `i`, then unloads what exceeds its `keep` for that slot.
    fn push_one(&mut self, agent: &ureq::Agent, i: usize, version: &Published) {
        let endpoint = self.endpoints[i].clone();
        let label = endpoint.label();
        let name = crate::adapters::served_name(&version.repo_key, &version.dir);
        let slot = version.slot();
        let held = self.loaded.0.entry(label.clone()).or_default().entry(slot.clone()).or_default();
        if held.contains(&name) {
            return;
        }
        let body = serde_json::json!({"lora_name": name, "lora_path": version.path.display().to_string()});
        match call(agent, &endpoint, "load", &body) {
            Ok(()) => {
                held.push(name.clone());
                self.note(&label, "load", &name, None);
                self.save();
            }
            Err(e) => {
                self.note(&label, "load", &name, Some(e.to_string()));
                if version.path.is_dir() {
                    self.failed.insert((i, slot), version.clone());
                }
                return;
            }
        }
        let keep = endpoint.keep.max(1);
        let held = self.loaded.0.entry(label.clone()).or_default().entry(slot).or_default();
        let excess: Vec<String> = held.iter().take(held.len().saturating_sub(keep)).cloned().collect();
        for oldest in excess {
            match call(agent, &endpoint, "unload", &serde_json::json!({"lora_name": oldest})) {
                Ok(()) => {
                    if let Some(h) = self.loaded.0.get_mut(&label).and_then(|m| m.get_mut(&version.slot())) {
                        h.retain(|n| n != &oldest);
                    }
                    self.note(&label, "unload", &oldest, None);
                    self.save();
                }
                // Left on record: the next publish of this slot tries again.
                Err(e) => self.note(&label, "unload", &oldest, Some(e.to_string())),
            }
        }
    }

    fn note(&self, label: &str, op: &str, name: &str, error: Option<String>) {
        self.metrics.push(label, op, if error.is_none() { "ok" } else { "error" });
        match &error {
            None => info!(endpoint = %label, op, adapter = %name, "pushed"),
            Some(e) => {
                self.metrics.error("push");
                warn!(endpoint = %label, op, adapter = %name, error = %e, "push failed");
            }
        }
        let mut status = self.status.lock().expect("push status lock");
        if let Some(s) = status.get_mut(label) {
            s.last_op = Some(op.to_owned());
            s.last_adapter = Some(name.to_owned());
            s.last_at = Some(crate::clock::now_secs());
            s.last_error = error;
            s.loaded = self.loaded.0.get(label).map_or(0, |slots| slots.values().map(Vec::len).sum());
        }
    }

    /// Marks every loaded version as handed out now.
    fn touch_loaded(&self) {
        let now = crate::clock::now_secs();
        for slots in self.loaded.0.values() {
            for name in slots.values().flatten() {
                if let Some((repo, dir)) = name.split_once('/') {
                    self.adapters.touch(repo, dir, now);
                }
            }
        }
    }

    /// Writes the record of what is loaded where (temporary file, fsync, rename).
    fn save(&self) {
        let tmp = self.file.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            let bytes = serde_json::to_vec_pretty(&self.loaded).map_err(std::io::Error::other)?;
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, &bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.file)
        };
        if let Err(e) = write() {
            warn!(file = %self.file.display(), error = %e, "cannot record what the inference servers hold");
        }
    }
}

/// One load or unload call, retried with backoff while the failure is transient.
fn call(agent: &ureq::Agent, endpoint: &PushEndpoint, op: &str, body: &serde_json::Value) -> Result<(), CallError> {
    let url = endpoint.op_url(op);
    let mut delay = Duration::from_millis(endpoint.backoff_ms.max(1));
    let mut attempt = 1;
    loop {
        match call_once(agent, endpoint, &url, op, body) {
            Err(CallError::Transient(m)) if attempt < endpoint.attempts.max(1) => {
                warn!(endpoint = %endpoint.label(), op, attempt, error = %m, "push: retrying");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(30));
                attempt += 1;
            }
            other => return other,
        }
    }
}

fn call_once(agent: &ureq::Agent, endpoint: &PushEndpoint, url: &str, op: &str, body: &serde_json::Value) -> Result<(), CallError> {
    let mut req = agent.post(url).config().timeout_global(Some(Duration::from_secs(endpoint.timeout_secs.max(1)))).build();
    if let Some(key) = endpoint.api_key() {
        req = req.header("Authorization", &format!("Bearer {key}"));
    }
    let mut resp = req.send_json(body).map_err(|e| CallError::Transient(format!("{} {op}: {e}", endpoint.public_url())))?;
    let code = resp.status().as_u16();
    if (200..300).contains(&code) {
        return Ok(());
    }
    let text: String = resp.body_mut().read_to_string().unwrap_or_default().chars().take(300).collect();
    // Already in the state asked for: a restart between a call and its record, or a name
    // the server dropped itself.
    let lower = text.to_ascii_lowercase();
    // An unload the server refuses (404, or vLLM's and SGLang's 400 for an unknown name)
    // leaves nothing loaded under that name: done.
    let unload_refused = op == "unload" && (400..500).contains(&code) && code != 408 && code != 429;
    if (op == "load" && lower.contains("already")) || unload_refused {
        return Ok(());
    }
    let message = format!("{} {op}: HTTP {code}: {}", endpoint.public_url(), text.trim());
    if code >= 500 || code == 429 || code == 408 { Err(CallError::Transient(message)) } else { Err(CallError::Refused(message)) }
}

/// Endpoint names must be unique; the label defaults to the URL.
pub fn check_endpoints(endpoints: &[PushEndpoint]) -> Result<(), String> {
    let mut seen = HashSet::new();
    for e in endpoints {
        if !(e.url.starts_with("http://") || e.url.starts_with("https://")) {
            return Err(format!("[[serve.push]] url = \"{}\": expected http:// or https://", e.public_url()));
        }
        if !seen.insert(e.label()) {
            return Err(format!("[[serve.push]] endpoint `{}` is configured twice", e.label()));
        }
    }
    Ok(())
}

impl PushKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PushKind::Vllm => "vllm",
            PushKind::Sglang => "sglang",
        }
    }
}

impl PushEndpoint {
    /// Its name in logs, metrics and `status`.
    pub fn label(&self) -> String {
        self.name.clone().unwrap_or_else(|| self.public_url())
    }

    /// The URL without any user:password part, for logs.
    pub fn public_url(&self) -> String {
        let Some((scheme, rest)) = self.url.split_once("://") else { return self.url.clone() };
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        match authority.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://{host}{path}"),
            None => self.url.clone(),
        }
    }

    /// The documented route of each server for `op` (load or unload).
    fn op_url(&self, op: &str) -> String {
        let base = self.url.trim_end_matches('/');
        match self.kind {
            PushKind::Vllm => format!("{base}/v1/{op}_lora_adapter"),
            PushKind::Sglang => format!("{base}/{op}_lora_adapter"),
        }
    }

    fn api_key(&self) -> Option<String> {
        self.api_key_env.as_deref().and_then(|v| std::env::var(v).ok()).filter(|k| !k.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(kind: PushKind, url: &str) -> PushEndpoint {
        PushEndpoint { kind, url: url.into(), ..PushEndpoint::default() }
    }

    #[test]
    fn routes_are_each_servers_documented_ones() {
        assert_eq!(endpoint(PushKind::Vllm, "http://h:8000/").op_url("load"), "http://h:8000/v1/load_lora_adapter");
        assert_eq!(endpoint(PushKind::Sglang, "http://h:30000").op_url("unload"), "http://h:30000/unload_lora_adapter");
    }

    #[test]
    fn credentials_in_a_url_never_reach_the_logs() {
        let e = endpoint(PushKind::Vllm, "https://user:secret@h:8000/x");
        assert_eq!(e.public_url(), "https://h:8000/x");
        assert!(!e.label().contains("secret"));
        assert_eq!(endpoint(PushKind::Vllm, "http://h/a@b").public_url(), "http://h/a@b");
    }

    #[test]
    fn endpoints_are_checked() {
        assert!(check_endpoints(&[endpoint(PushKind::Vllm, "h:8000")]).is_err());
        let twice = [endpoint(PushKind::Vllm, "http://h"), endpoint(PushKind::Sglang, "http://h")];
        assert!(check_endpoints(&twice).unwrap_err().contains("twice"));
    }
}
