//! One file per socket operation. Each takes the shared daemon state and its arguments and
//! returns the reply's fields or an error; none does socket I/O.

mod adapter;
mod notify;
mod pin;
mod ping;
mod register;
mod repair;
mod shutdown;
mod status;

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::repo_cache::{Found, RepoCache};
use crate::protocol::{ErrorCode, Op, OpError};
use crate::shared::Shared;
use evolora_state::RepoRecord;

pub type Fields = Map<String, Value>;

pub async fn dispatch(shared: &Arc<Shared>, op: Op) -> Result<Fields, OpError> {
    match op {
        Op::Ping => ping::run(shared),
        Op::Register { repo, refs } => register::register(shared, &repo, refs).await,
        Op::Unregister { repo } => register::unregister(shared, &repo).await,
        Op::Notify { repo } => notify::run(shared, &repo).await,
        Op::Adapter { repo, refname, wait_ms } => adapter::run(shared, &repo, refname.as_deref(), wait_ms).await,
        Op::Status { repo } => status::run(shared, repo.as_deref()).await,
        Op::Regenerate { repo } => repair::regenerate(shared, &repo).await,
        Op::Reset { repo } => repair::reset(shared, &repo).await,
        Op::Pin { repo, adapter } => pin::run(shared, &repo, adapter.as_deref(), true).await,
        Op::Unpin { repo, adapter } => pin::run(shared, &repo, adapter.as_deref(), false).await,
        Op::Shutdown => shutdown::run(shared),
    }
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
pub(crate) async fn find(shared: &Arc<Shared>, path: &str) -> Result<Arc<Found>, OpError> {
    check_path(path)?;
    let (shared, path) = (shared.clone(), path.to_owned());
    blocking(move || shared.repo_cache.lookup(&path).map_err(not_a_repository)).await
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
pub(crate) async fn registered(shared: &Arc<Shared>, path: &str) -> Result<(RepoRecord, Arc<Found>), OpError> {
    let found = find(shared, path).await?;
    let rec = shared
        .store
        .repo(&found.key)
        .map_err(internal)?
        .ok_or_else(|| OpError::new(ErrorCode::NotRegistered, format!("{path} is not registered; run `evolora register {path}`")))?;
    Ok((rec, found))
}
