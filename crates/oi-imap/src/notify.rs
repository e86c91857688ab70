//! Watching several folders on one connection with NOTIFY (RFC 5465), where the server
//! offers it, instead of one IDLE connection per folder.
//!
//! `NOTIFY SET (mailboxes …)` asks the server to report new, expunged and re-flagged
//! messages of the listed mailboxes while the connection has none selected; it does so
//! with untagged STATUS responses (§5.4), which arrive during IDLE.

use std::time::Duration;

use oi_core::{Severity, StoreError};

use crate::client::Connection;
use crate::response::{RespCode, Untagged};
use crate::session::{Command, Part};
use crate::store::ImapRepository;

/// One connection watching a set of folders (see [`ImapRepository::watch_with_notify`]).
pub struct NotifyWatcher {
    conn: Connection,
    folders: Vec<String>,
}

impl std::fmt::Debug for NotifyWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyWatcher")
            .field("folders", &self.folders)
            .finish()
    }
}

impl ImapRepository {
    /// A connection watching `folders` with NOTIFY; `None` when the server does not offer
    /// NOTIFY and IDLE (the caller then watches each folder with [`ImapRepository::watch`]).
    pub async fn watch_with_notify(
        &self,
        folders: &[String],
    ) -> Result<Option<NotifyWatcher>, StoreError> {
        let mut conn = self.connect().await?;
        if !(conn.has("NOTIFY") && conn.has("IDLE")) {
            conn.logout().await;
            return Ok(None);
        }
        if conn.has("CONDSTORE") {
            // A flag change that alters no other STATUS item (\Flagged, say) is reported
            // only through HIGHESTMODSEQ, which needs CONDSTORE enabled (RFC 5465 §5.4).
            conn.run(Command::raw("ENABLE CONDSTORE"))
                .await
                .map_err(|e| e.into_store(Severity::Repository, "ENABLE CONDSTORE"))?;
        }
        let mut parts = vec![Part::Raw(b"NOTIFY SET (mailboxes (".to_vec())];
        for (i, folder) in folders.iter().enumerate() {
            if i > 0 {
                parts.push(Part::Raw(b" ".to_vec()));
            }
            parts.push(Part::Str {
                bytes: folder.as_bytes().to_vec(),
                secret: false,
            });
        }
        parts.push(Part::Raw(
            b") (MessageNew MessageExpunge FlagChange))".to_vec(),
        ));
        conn.run(Command {
            name: "NOTIFY".into(),
            parts,
        })
        .await
        .map_err(|e| e.into_store(Severity::Repository, "NOTIFY SET"))?;
        Ok(Some(NotifyWatcher {
            conn,
            folders: folders.to_vec(),
        }))
    }
}

impl NotifyWatcher {
    /// Waits up to `max` for changes; returns the watched folders the server reported
    /// changed (empty when the time ran out). An error means the connection is gone.
    pub async fn wait(&mut self, max: Duration) -> Result<Vec<String>, StoreError> {
        let changes = self
            .conn
            .idle_until(max, |u| {
                matches!(
                    u,
                    Untagged::MailboxStatus { .. }
                        | Untagged::Status {
                            code: Some(RespCode::NotificationOverflow),
                            ..
                        }
                )
            })
            .await
            .map_err(|e| e.into_store(Severity::Repository, "IDLE with NOTIFY"))?;
        let mut names: Vec<String> = Vec::new();
        for u in changes {
            if matches!(
                u,
                Untagged::Status {
                    code: Some(RespCode::NotificationOverflow),
                    ..
                }
            ) {
                // The server sends no more events on this connection: a new one (whose
                // start syncs every folder once) is the way back.
                return Err(StoreError::new(
                    Severity::Repository,
                    "the server stopped NOTIFY events (NOTIFICATIONOVERFLOW)",
                ));
            }
            if let Untagged::MailboxStatus { name, .. } = u
                && self.folders.contains(&name)
                && !names.contains(&name)
            {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// The folders watched.
    pub fn folders(&self) -> &[String] {
        &self.folders
    }

    /// Ends the watch politely.
    pub async fn close(self) {
        self.conn.logout().await;
    }
}
