//! Events that the engine and the stores emit for user interfaces.

use crate::{FlagUpdate, Side, Uid};

/// Counters of one folder's (or one account's) sync, per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Messages copied to the local side.
    pub copied_to_local: u64,
    /// Messages copied to the remote side.
    pub copied_to_remote: u64,
    /// Messages deleted on the local side.
    pub deleted_local: u64,
    /// Messages deleted on the remote side.
    pub deleted_remote: u64,
    /// Messages whose flags changed on the local side.
    pub flagged_local: u64,
    /// Messages whose flags changed on the remote side.
    pub flagged_remote: u64,
}

impl SyncStats {
    /// Adds another set of counters to this one.
    pub fn add(&mut self, other: &SyncStats) {
        self.copied_to_local += other.copied_to_local;
        self.copied_to_remote += other.copied_to_remote;
        self.deleted_local += other.deleted_local;
        self.deleted_remote += other.deleted_remote;
        self.flagged_local += other.flagged_local;
        self.flagged_remote += other.flagged_remote;
    }

    /// True when nothing was changed anywhere.
    pub fn is_empty(&self) -> bool {
        *self == SyncStats::default()
    }
}

/// Something a user interface may show.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// An account's sync begins.
    AccountStart {
        /// Account name.
        account: String,
    },
    /// An account's sync ended.
    AccountDone {
        /// Account name.
        account: String,
        /// What it changed.
        stats: SyncStats,
        /// How many folders failed.
        failed_folders: usize,
    },
    /// A folder was created on one side.
    FolderCreated {
        /// Account name.
        account: String,
        /// Where it was created.
        side: Side,
        /// The folder's name on that side.
        folder: String,
    },
    /// A folder's sync begins.
    FolderStart {
        /// Account name.
        account: String,
        /// Folder (remote name).
        folder: String,
    },
    /// A folder's sync ended.
    FolderDone {
        /// Account name.
        account: String,
        /// Folder (remote name).
        folder: String,
        /// What it changed.
        stats: SyncStats,
    },
    /// A line of the plan, printed by `--dry-run`.
    Planned {
        /// Account name.
        account: String,
        /// Folder (remote name).
        folder: String,
        /// What would be done.
        what: String,
    },
    /// Something the user should know that did not stop anything.
    Warning {
        /// Account name, when the warning belongs to one.
        account: Option<String>,
        /// The text.
        message: String,
    },
    /// An error that stopped a message, folder, account or the run.
    Error {
        /// Account name, when the error belongs to one.
        account: Option<String>,
        /// Folder name, when the error belongs to one.
        folder: Option<String>,
        /// How far it reached.
        severity: crate::Severity,
        /// The text (already redacted of secrets).
        message: String,
    },
    /// Informational progress (shown by verbose UIs).
    Info {
        /// The text.
        message: String,
    },
    /// The repositories of an account, before its folders are synced (OfflineIMAP's
    /// `syncfolders`). Emitted by the binary; later events name only a [`Side`], and user
    /// interfaces take the names from here.
    SyncFolders {
        /// Account name.
        account: String,
        /// The remote repository's name (its `[Repository NAME]` section).
        remote_name: String,
        /// The remote repository's kind as OfflineIMAP spells it (`IMAP`, `Gmail`): its
        /// class name without `Repository`, which the machine UI prints.
        remote_kind: String,
        /// The local repository's name.
        local_name: String,
        /// The local repository's kind (`Maildir`, `GmailMaildir`, `IMAP`).
        local_kind: String,
    },
    /// A new connection to a server is being opened.
    Connecting {
        /// Account name, when the emitter knows it (a store does not; the binary labels
        /// the store's sink).
        account: Option<String>,
        /// Repository name, likewise.
        repository: Option<String>,
        /// Host (or the tunnel command).
        host: String,
        /// Port, `None` for a tunnel.
        port: Option<u16>,
    },
    /// A folder pair's sync begins, with the folder's name on both sides (OfflineIMAP's
    /// `syncingfolder`). Follows [`Event::FolderStart`].
    SyncingFolder {
        /// Account name.
        account: String,
        /// Folder (remote name), the key of every later event of this pair.
        folder: String,
        /// The folder's name in the local repository.
        local_folder: String,
    },
    /// A side's message list is being read.
    MessageListLoading {
        /// Account name.
        account: String,
        /// Folder (remote name).
        folder: String,
        /// Which side.
        side: Side,
    },
    /// A side's message list was read.
    MessageListLoaded {
        /// Account name.
        account: String,
        /// Folder (remote name).
        folder: String,
        /// Which side.
        side: Side,
        /// How many messages it holds.
        count: usize,
    },
    /// Changes of one side are about to be carried to the other.
    SyncingMessages {
        /// Account name.
        account: String,
        /// Folder (remote name).
        folder: String,
        /// The side whose changes are carried over.
        from: Side,
    },
    /// One message is about to be copied.
    CopyingMessage {
        /// Account name.
        account: String,
        /// Folder (remote name).
        folder: String,
        /// The side it is copied from.
        from: Side,
        /// Its UID on that side; `None` for a new local message that has none yet.
        uid: Option<Uid>,
        /// Its position among the copies of this folder and direction, from 1.
        num: usize,
        /// How many copies this folder and direction has.
        total: usize,
    },
    /// Messages are about to be deleted.
    DeletingMessages {
        /// Account name.
        account: String,
        /// Folder (remote name).
        folder: String,
        /// The side they are deleted on.
        side: Side,
        /// Their UIDs.
        uids: Vec<Uid>,
    },
    /// Flags of messages are about to change.
    ChangingFlags {
        /// Account name.
        account: String,
        /// Folder (remote name).
        folder: String,
        /// The side whose flags change.
        side: Side,
        /// The changes.
        updates: Vec<FlagUpdate>,
    },
}

/// Where events go. Implemented by the user interfaces; stores and the engine only emit.
pub trait EventSink: Send + Sync {
    /// Takes one event. Must not block for long: it is called from sync tasks.
    fn emit(&self, event: Event);
}

/// A sink that drops everything (tests, `-u quiet` internals).
#[derive(Debug, Default, Clone, Copy)]
pub struct NullSink;

impl EventSink for NullSink {
    fn emit(&self, _event: Event) {}
}
