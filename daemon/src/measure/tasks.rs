//! `evolora tasks`: RepoPeftBench assertion-completion tasks mined from a repository's
//! first-parent history, one JSON object a line (see `evolora_eval::tasks`).

use std::collections::BTreeMap;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use evolora_eval::tasks::{self, MineOptions, Track};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum TrackArg {
    /// Imports, enclosing class, helpers and the test function up to the cut
    Static,
    /// The whole test file up to the cut
    Evolution,
}

#[derive(Debug, clap::Args)]
pub struct TasksArgs {
    /// The repository (its work tree or git directory)
    pub repo: PathBuf,
    /// Which prefix each task shows
    #[arg(long, value_enum, default_value = "static")]
    pub track: TrackArg,
    /// Where to write the tasks (JSON lines); standard output when absent
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write at most this many tasks, oldest first (the split still covers the whole history)
    #[arg(long)]
    pub limit: Option<usize>,
    /// The revision whose first-parent history is mined
    #[arg(long, default_value = "HEAD")]
    pub rev: String,
}

pub fn run(args: TasksArgs) -> Result<()> {
    let track = match args.track {
        TrackArg::Static => Track::Static,
        TrackArg::Evolution => Track::Evolution,
    };
    let options = MineOptions { track, rev: args.rev, ..MineOptions::default() };
    let mined = tasks::mine(&args.repo, &options).with_context(|| format!("mining tasks from {}", args.repo.display()))?;
    for warning in &mined.warnings {
        eprintln!("warning: {warning}");
    }
    let shown = &mined.tasks[..args.limit.unwrap_or(usize::MAX).min(mined.tasks.len())];
    let sink: Box<dyn Write> = match &args.out {
        Some(path) => Box::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut sink = BufWriter::new(sink);
    for task in shown {
        serde_json::to_writer(&mut sink, task)?;
        sink.write_all(b"\n")?;
    }
    sink.flush()?;

    eprintln!("{} first-parent commits, {} kept, {} tasks ({} written)", mined.commits, mined.kept_commits, mined.tasks.len(), shown.len());
    let mut by_split: BTreeMap<tasks::Split, (usize, BTreeMap<&str, usize>)> = BTreeMap::new();
    for task in &mined.tasks {
        let entry = by_split.entry(task.split).or_default();
        entry.0 += 1;
        *entry.1.entry(task.family.as_str()).or_default() += 1;
    }
    for (split, (count, families)) in by_split {
        let families: Vec<String> = families.iter().map(|(f, n)| format!("{f} {n}")).collect();
        eprintln!("{}: {count} tasks ({})", split.as_str(), families.join(", "));
    }
    Ok(())
}
