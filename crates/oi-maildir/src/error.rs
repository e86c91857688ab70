use std::io;
use std::path::PathBuf;

use oi_core::{Severity, StoreError};

/// Everything that can go wrong in a Maildir repository.
#[derive(Debug, thiserror::Error)]
pub enum MaildirError {
    /// A file system call failed on one message's file.
    #[error("message file {path}: {source}")]
    MessageIo {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A file system call failed on a folder's directories (scanning, renaming).
    #[error("folder directory {path}: {source}")]
    FolderIo {
        /// The directory or file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The Maildir root itself is unusable.
    #[error("Maildir root {path}: {source}")]
    RootIo {
        /// The root.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A folder name that cannot be mapped to a directory safely.
    #[error("invalid Maildir folder name {name:?}: {reason}")]
    BadFolderName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// The folder does not exist (no `cur`/`new`/`tmp`).
    #[error("no such Maildir folder {0:?}")]
    NoSuchFolder(String),
    /// A UID the folder does not hold.
    #[error("no message with UID {0} in this Maildir folder")]
    UnknownUid(u32),
    /// An unsynced-message key the folder does not hold.
    #[error("no unsynced message {0:?} in this Maildir folder")]
    UnknownKey(String),
    /// Asked to give an unsynced message a UID another message of the folder already has.
    #[error("UID {0} is already used by another message of this Maildir folder")]
    UidInUse(u32),
    /// Asked to store a message without a UID: a Maildir cannot assign UIDs (OfflineIMAP
    /// skips such messages too).
    #[error("a Maildir cannot assign UIDs; refusing to store a message without one")]
    NoUid,
    /// A write on a folder opened read-only.
    #[error("folder was opened read-only")]
    ReadOnly,
}

impl MaildirError {
    /// How far the error reaches.
    pub fn severity(&self) -> Severity {
        match self {
            MaildirError::MessageIo { .. }
            | MaildirError::UnknownUid(_)
            | MaildirError::UnknownKey(_)
            | MaildirError::UidInUse(_)
            | MaildirError::NoUid => Severity::Message,
            MaildirError::FolderIo { .. }
            | MaildirError::BadFolderName { .. }
            | MaildirError::NoSuchFolder(_)
            | MaildirError::ReadOnly => Severity::Folder,
            MaildirError::RootIo { .. } => Severity::Repository,
        }
    }
}

impl From<MaildirError> for StoreError {
    fn from(e: MaildirError) -> Self {
        StoreError::with_source(e.severity(), "Maildir", e)
    }
}

pub(crate) fn msg_io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> MaildirError {
    let path = path.into();
    move |source| MaildirError::MessageIo { path, source }
}

pub(crate) fn folder_io(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> MaildirError {
    let path = path.into();
    move |source| MaildirError::FolderIo { path, source }
}
