//! IMAP as the *local* repository (OfflineIMAP's `MappedIMAPRepository`): two IMAP
//! servers synced both ways.
//!
//! The engine speaks of every message by its sync UID, the remote server's UID. A local
//! IMAP server assigns its own UIDs, so [`MappedImapFolder`] wraps an `oi_imap::ImapFolder`
//! and translates: the engine sees the local messages under their sync UIDs, local messages
//! that no sync UID is mapped to yet are "unsynced" (OfflineIMAP's negative UIDs), and the
//! mapping local UID ↔ sync UID is kept in OfflineIMAP's
//! `<metadata>/Repository-<local>/UIDMapping/<folder>` file, so that OfflineIMAP and we can
//! each carry on from the other's state.
//!
//! This crate depends on `oi-core` and `oi-imap` only: it must not know the sync engine,
//! the LocalStatus, Maildir or configuration files, and it never prints (warnings go out
//! as [`oi_core::Event`]s).
#![deny(missing_docs)]

mod error;
pub mod mapfile;
mod store;

pub use error::MapError;
pub use mapfile::{MapFile, UidMap, folder_basename};
pub use store::{CopyIgnore, MappedImapFolder, MappedImapRepository};
