//! Domain types and the store seam of offlineimap.
//!
//! Everything the sync engine knows about the world is in this crate: UIDs, flags, the
//! [`Repository`], [`Folder`] and [`StatusStore`] traits that IMAP, Maildir and the
//! LocalStatus database implement, the error type that carries a [`Severity`], and the
//! [`Event`]s that user interfaces render. It does no I/O and must not depend on tokio, an
//! IMAP codec, SQLite or the file system: those live in the crates that implement the traits.
#![deny(missing_docs)]

mod error;
mod event;
mod flags;
pub mod headers;
mod ids;
pub mod marker;
mod secret;
mod store;
mod thread;

pub use error::{Severity, StoreError};
pub use event::{Event, EventSink, NullSink, SyncStats};
pub use flags::Flags;
pub use ids::{Side, Uid, UidValidity};
pub use secret::Secret;
pub use store::{
    Access, AgeCutoff, CachedListing, Fetched, FlagUpdate, Folder, FolderMeta, Identity,
    LARGE_HEAD_MAX, LargeMessage, Listing, ListingWish, Message, MessageMeta, MsgRef, NewBodies,
    PendingUpload, QuickState, Repository, SPOOL_PREFIX, StatusStore, UnsyncedMessage,
    message_id_of, spool_file,
};
pub use thread::{OffThread, off_thread};
