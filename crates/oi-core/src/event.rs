//! Events that the engine and the stores emit for user interfaces.

use crate::Side;

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
