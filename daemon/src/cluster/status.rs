//! `evolora cluster status`: reads the cluster directly (no daemon needed): workers and what
//! each is doing, every followed ref with its state against the newest tip, leases, and the
//! queue depth.

use anyhow::{Context, Result};
use evolora_cluster::{Cluster, ClusterSettings, Overview};

pub fn overview(settings: &ClusterSettings) -> Result<Overview> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let cluster = tokio::time::timeout(std::time::Duration::from_secs(10), Cluster::connect(settings, "evolora-cli"))
            .await
            .with_context(|| format!("NATS at {} did not answer within 10 s", settings.url))??;
        Ok(cluster.overview(crate::clock::now_secs()).await?)
    })
}

pub fn print(o: &Overview) {
    println!("workers: {}", o.workers.len());
    for w in &o.workers {
        let busy = w.busy.as_deref().unwrap_or("idle");
        println!("  {:<24} {:<12} {:<8} jobs {:>5}  dropped writes {:>3}  {busy}", w.worker, w.host, w.device, w.jobs, w.discarded);
    }
    let stranded = o.queue.stored.saturating_sub(o.queue.waiting + o.queue.in_flight);
    let stranded = if stranded > 0 { format!(", {stranded} stale in the stream") } else { String::new() };
    println!("queue: {} wake-up(s) waiting, {} in flight{stranded}", o.queue.waiting, o.queue.in_flight);
    let behind = o.repos.iter().filter(|r| r.behind).count();
    println!("refs: {} ({behind} behind their tip)", o.repos.len());
    for r in &o.repos {
        let short = |c: &Option<String>| c.as_deref().map_or("-".to_owned(), |c| c.chars().take(12).collect());
        let lag = match (r.behind, r.lag_secs) {
            (true, Some(s)) => format!("behind {s} s"),
            (true, None) => "behind".to_owned(),
            _ => "current".to_owned(),
        };
        println!(
            "  {:<28} {:<18} state {:<12} tip {:<12} walked {:>6}  {:<14} lease {:<20} {} ({} kept, {} pinned)",
            r.rid,
            r.refname.trim_start_matches("refs/heads/"),
            short(&r.state_commit),
            short(&r.tip),
            r.walked,
            lag,
            r.leased_to.as_deref().unwrap_or("-"),
            r.adapter.as_deref().unwrap_or("no adapter"),
            r.versions,
            r.pinned.len(),
        );
    }
}
