//! Progress of long work for a person: a redrawn bar on a terminal, a plain line every tenth
//! of the way otherwise (logs, pipes).

use std::io::{IsTerminal, Write};
use std::time::Instant;

pub struct Progress {
    what: &'static str,
    unit: &'static str,
    started: Instant,
    terminal: bool,
    /// Tenths already reported as plain lines.
    tenths: Option<u64>,
}

impl Progress {
    /// `what` names the work ("encoding", "walking"), `unit` what is counted ("commits").
    pub fn new(what: &'static str, unit: &'static str) -> Self {
        Progress { what, unit, started: Instant::now(), terminal: std::io::stderr().is_terminal(), tenths: None }
    }

    /// `done` of `total`; `eta_secs` when the caller knows better than the rate seen here.
    pub fn update(&mut self, done: u64, total: u64, eta_secs: Option<f64>) {
        self.show(done, total, eta_secs, "");
    }

    /// [`Progress::update`] with a note after the count (a loss, a rate).
    pub fn update_noting(&mut self, done: u64, total: u64, note: &str) {
        self.show(done, total, None, note);
    }

    fn show(&mut self, done: u64, total: u64, eta_secs: Option<f64>, note: &str) {
        let note = if note.is_empty() { String::new() } else { format!(", {note}") };
        let secs = self.started.elapsed().as_secs_f64();
        let eta = eta_secs.unwrap_or_else(|| if done > 0 { secs / done as f64 * total.saturating_sub(done) as f64 } else { 0.0 });
        let (what, unit) = (self.what, self.unit);
        if self.terminal {
            let width = 30;
            let filled = (width * done / total.max(1)).min(width) as usize;
            eprint!("\r{what} [{}{}] {done}/{total} {unit}{note}, {secs:.0} s, about {eta:.0} s left ", "#".repeat(filled), " ".repeat(width as usize - filled));
            if done >= total {
                eprintln!();
            }
            let _ = std::io::stderr().flush();
        } else {
            let tenth = done * 10 / total.max(1);
            if self.tenths != Some(tenth) {
                self.tenths = Some(tenth);
                eprintln!("{what}: {done}/{total} {unit}{note} in {secs:.1} s");
            }
        }
    }
}
