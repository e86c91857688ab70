use std::path::PathBuf;

use oi_core::{Severity, StoreError, Uid};

/// Everything that can go wrong keeping the UID mapping of a local IMAP folder.
#[derive(Debug, thiserror::Error)]
pub enum MapError {
    /// Reading, writing or locking a mapping file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A line of a mapping file is not `localuid:remoteuid`.
    #[error("corrupt line {line_no} {line:?} in UID mapping file {}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line_no: usize,
        /// The line as read.
        line: String,
    },
    /// The engine named a sync UID that no local message is mapped to.
    #[error("no local message is mapped to UID {0}")]
    UnknownUid(Uid),
    /// The engine named an unsynced message by a key this folder never handed out.
    #[error("unknown local message key {0:?}")]
    UnknownKey(String),
    /// Giving a message a sync UID that another local message already carries.
    #[error("UID {uid} is already mapped to local message {local}")]
    Taken {
        /// The sync UID asked for.
        uid: Uid,
        /// The local UID that holds it.
        local: Uid,
    },
    /// A message was to be stored without the sync UID it must be mapped to.
    #[error("a mapped IMAP folder stores messages only under a sync UID")]
    NoSyncUid,
    /// The local server stored a message but did not tell its UID (no APPENDUID and the
    /// header search found nothing): the message stays unmapped on the local server.
    #[error("the local server did not tell the UID of the message stored for UID {0}")]
    NoLocalUid(Uid),
}

impl MapError {
    /// How far the error reaches.
    pub fn severity(&self) -> Severity {
        match self {
            // Without its mapping the folder cannot be synced safely, but other folders can.
            MapError::Io { .. } | MapError::Corrupt { .. } => Severity::Folder,
            MapError::UnknownUid(_)
            | MapError::UnknownKey(_)
            | MapError::Taken { .. }
            | MapError::NoLocalUid(_) => Severity::Message,
            MapError::NoSyncUid => Severity::Folder,
        }
    }

    /// Converts at the trait boundary, naming the folder.
    pub fn into_store(self, folder: &str) -> StoreError {
        let severity = self.severity();
        StoreError::with_source(severity, format!("local IMAP folder {folder}"), self)
    }
}

/// Turns an I/O error into [`MapError::Io`] at `path`.
pub(crate) fn io_at(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> MapError + '_ {
    move |source| MapError::Io {
        path: path.to_owned(),
        source,
    }
}
