use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {0} is in use by another evolora process (sled holds its lock); stop that daemon or pick another --state-dir")]
    Locked(PathBuf),
    #[error("state database {path} is unreadable ({reason}); move it aside and run `evolora state rebuild` to recreate it from git history and the adapter directories")]
    Corrupt { path: PathBuf, reason: String },
    #[error("state database {path} has schema version {found}, newer than this evolora understands ({supported}); upgrade evolora or run `evolora state rebuild` on a copy")]
    FutureSchema { path: PathBuf, found: u32, supported: u32 },
    #[error("stored {what} could not be decoded: {reason}")]
    Decode { what: &'static str, reason: String },
    #[error("database error: {0}")]
    Sled(#[from] sled::Error),
}
