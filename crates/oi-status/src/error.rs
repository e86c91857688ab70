use std::io;
use std::path::PathBuf;

use oi_core::{Severity, StoreError};

/// Everything that can go wrong with the metadata directory.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// A file system call on a metadata file or directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// SQLite refused (including "file is not a database" for a corrupt LocalStatus file,
    /// which OfflineIMAP does not recover from either).
    #[error("LocalStatus database {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The cause.
        source: rusqlite::Error,
    },
    /// The database opened but does not look like an OfflineIMAP LocalStatus.
    #[error("LocalStatus database {path}: {reason}")]
    BadDatabase {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A FolderValidity file that does not hold a number.
    #[error("FolderValidity file {path}: not a UIDVALIDITY: {content:?}")]
    BadValidity {
        /// The file.
        path: PathBuf,
        /// Its first line.
        content: String,
    },
    /// A StartUID file (`startdate`) that does not hold a number.
    #[error("StartUID file {path}: not a UID: {content:?}")]
    BadStartUid {
        /// The file.
        path: PathBuf,
        /// Its first line.
        content: String,
    },
    /// Another process (our binary or OfflineIMAP) holds the account lock.
    #[error("could not lock account {account} ({path}): is another instance using this account?")]
    Locked {
        /// The account.
        account: String,
        /// The lock file.
        path: PathBuf,
    },
}

impl StatusError {
    /// How far the error reaches: a lock or metadata-directory problem stops the account,
    /// a bad status file stops its folder only (OfflineIMAP skips the folder likewise).
    pub fn severity(&self) -> Severity {
        match self {
            StatusError::Locked { .. } => Severity::Repository,
            StatusError::Io { .. }
            | StatusError::Sqlite { .. }
            | StatusError::BadDatabase { .. }
            | StatusError::BadValidity { .. }
            | StatusError::BadStartUid { .. } => Severity::Folder,
        }
    }
}

impl From<StatusError> for StoreError {
    fn from(e: StatusError) -> Self {
        StoreError::with_source(e.severity(), "LocalStatus", e)
    }
}

pub(crate) fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StatusError {
    let path = path.into();
    move |source| StatusError::Io { path, source }
}
