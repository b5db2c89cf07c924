//! Signals, through signal-hook. SIGTERM and SIGINT set the stop flag from the handler
//! itself, so the model thread sees it at its next group boundary even while the async side
//! is busy; the async side also receives them as a stream (signal-hook-tokio), with SIGHUP,
//! to stop serving or to reload the configuration.

use futures_util::StreamExt;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_tokio::Signals;

use crate::context::StopFlag;

/// What the async side is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Stop(&'static str),
    Reload,
}

/// Stop and reload signals, as the daemon's main task receives them.
pub struct SignalStream {
    signals: Signals,
}

impl SignalStream {
    /// Installs the handlers: `stop` is set on SIGTERM and SIGINT as they arrive.
    pub fn install(stop: &StopFlag) -> std::io::Result<Self> {
        for sig in [SIGTERM, SIGINT] {
            signal_hook::flag::register(sig, stop.atomic())?;
        }
        Ok(SignalStream { signals: Signals::new([SIGTERM, SIGINT, SIGHUP])? })
    }

    /// The next signal; `None` if the stream ended.
    pub async fn next(&mut self) -> Option<Signal> {
        let sig = self.signals.next().await?;
        Some(match sig {
            SIGHUP => Signal::Reload,
            SIGINT => Signal::Stop("SIGINT"),
            _ => Signal::Stop("SIGTERM"),
        })
    }

    pub fn close(&self) {
        self.signals.handle().close();
    }
}
