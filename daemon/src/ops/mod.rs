//! One file per socket operation. Each takes the daemon's context and its arguments and
//! returns its typed reply or an error; none does socket I/O.

pub(crate) mod adapter;
pub mod metrics;
mod notify;
mod pin;
mod ping;
mod register;
mod repair;
mod shutdown;
mod status;

use std::path::Path;
use std::sync::Arc;

use evolora_protocol::{ErrorCode, Op, OpError, ReplyBody};
use evolora_state::RepoRecord;

use crate::context::Daemon;
use crate::repo_cache::{Found, RepoCache};

pub async fn dispatch(daemon: &Arc<Daemon>, op: Op) -> Result<ReplyBody, OpError> {
    Ok(match op {
        Op::Ping => ping::run(daemon).into(),
        Op::Register { repo, refs } => register::register(daemon, &repo, refs).await?.into(),
        Op::Unregister { repo } => register::unregister(daemon, &repo).await?.into(),
        Op::Notify { repo } => notify::run(daemon, &repo).await?.into(),
        Op::Adapter { repo, refname: _, wait_ms, worktree: true } => adapter::worktree(daemon, &repo, wait_ms).await?.into(),
        Op::Adapter { repo, refname, wait_ms, worktree: false } => adapter::run(daemon, &repo, refname.as_deref(), wait_ms).await?.into(),
        Op::Status { repo } => status::run(daemon, repo.as_deref()).await?.into(),
        Op::Regenerate { repo } => repair::regenerate(daemon, &repo).await?.into(),
        Op::Reset { repo } => repair::reset(daemon, &repo).await?.into(),
        Op::Pin { repo, adapter } => pin::run(daemon, &repo, adapter.as_deref(), true).await?.into(),
        Op::Unpin { repo, adapter } => pin::run(daemon, &repo, adapter.as_deref(), false).await?.into(),
        Op::Metrics => metrics::run(daemon).into(),
        Op::Shutdown => shutdown::run(daemon).into(),
    })
}

pub(crate) fn internal(e: impl std::fmt::Display) -> OpError {
    OpError::new(ErrorCode::Internal, e.to_string())
}

/// Runs blocking work (git, sled) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, OpError> + Send + 'static) -> Result<T, OpError> {
    tokio::task::spawn_blocking(f).await.map_err(internal)?
}

/// A repository path as given by a client → the repository (cached, see [`RepoCache`]).
///
/// [`RepoCache`]: crate::repo_cache::RepoCache
pub(crate) async fn find(daemon: &Arc<Daemon>, path: &str) -> Result<Arc<Found>, OpError> {
    check_path(path)?;
    let (daemon, path) = (daemon.clone(), path.to_owned());
    blocking(move || daemon.repos.lookup(&path).map_err(not_a_repository)).await
}

/// Like [`find`], without the cache.
pub(crate) async fn find_uncached(path: &str) -> Result<Found, OpError> {
    check_path(path)?;
    let path = path.to_owned();
    blocking(move || RepoCache::discover(&path).map_err(not_a_repository)).await
}

fn check_path(path: &str) -> Result<(), OpError> {
    if path.is_empty() {
        return Err(OpError::new(ErrorCode::BadRequest, "`repo` is empty"));
    }
    if !Path::new(path).is_absolute() {
        return Err(OpError::new(ErrorCode::BadRequest, format!("`repo` must be an absolute path, got `{path}`")));
    }
    Ok(())
}

fn not_a_repository(e: impl std::fmt::Display) -> OpError {
    OpError::new(ErrorCode::NotARepository, e.to_string())
}

/// Like [`find`], but the repository must be registered.
pub(crate) async fn registered(daemon: &Arc<Daemon>, path: &str) -> Result<(RepoRecord, Arc<Found>), OpError> {
    let found = find(daemon, path).await?;
    let rec = daemon
        .store
        .repo(&found.key)
        .map_err(internal)?
        .ok_or_else(|| OpError::new(ErrorCode::NotRegistered, format!("{path} is not registered; run `evolora register {path}`")))?;
    Ok((rec, found))
}
