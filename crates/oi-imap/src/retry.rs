//! Another connection for a folder whose connection broke: what `retrycount` needs.
//!
//! OfflineIMAP's `_fetch_from_imap` tries a message fetch up to `retrycount` times (default
//! 2), each time on a fresh connection, when the connection is aborted under it (imaplib's
//! `abort`: the server closed it or said BYE). A NO is the server's answer and is not
//! retried, and neither is a socket timeout (imaplib raises it as a plain socket error).
//! Only fetches are retried: they change nothing on the server, so repeating one is safe.
//! The new connection is opened as the repository's others are (login, ENABLE QRESYNC /
//! CONDSTORE, `SELECT … (CONDSTORE)`), since it goes back to the pool afterwards.

use std::sync::Arc;

use oi_core::{EventSink, Severity, StoreError, UidValidity};

use crate::ImapError;
use crate::client::Connection;
use crate::store::{Counted, ImapConfig, ModSeqMode, open_connection, select};

/// True when the error means the connection is gone (closed, reset, BYE): the cases
/// OfflineIMAP retries.
pub(crate) fn connection_lost(e: &ImapError) -> bool {
    matches!(e, ImapError::Closed | ImapError::Bye(_) | ImapError::Io(_))
}

/// True when the connection cannot be used any more, whatever the cause (also timeouts
/// and garbled responses). Such an error stops the folder, not the repository: the next
/// folder opens a connection of its own, and if the server is really gone that fails and
/// stops the account then.
pub(crate) fn connection_unusable(e: &ImapError) -> bool {
    connection_lost(e)
        || matches!(
            e,
            ImapError::Timeout(_) | ImapError::Protocol(_) | ImapError::LiteralTooLarge(_)
        )
}

/// How to open the folder again on a new connection.
#[derive(Clone)]
pub(crate) struct Reconnect {
    /// The repository's configuration: the new connection is opened as all its others
    /// (login, ENABLE), since it goes back to the pool afterwards.
    pub(crate) config: ImapConfig,
    pub(crate) events: Arc<dyn EventSink>,
    /// `retrycount`: attempts of a fetch in all (at least 1).
    pub(crate) fetch_attempts: u32,
    /// `SELECT` or `EXAMINE`, as the folder was opened.
    pub(crate) verb: &'static str,
}

impl std::fmt::Debug for Reconnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconnect")
            .field("host", &self.config.host)
            .field("fetch_attempts", &self.fetch_attempts)
            .field("verb", &self.verb)
            .finish_non_exhaustive()
    }
}

impl Reconnect {
    /// A new connection, opened as the repository's others and `counted` in its pool.
    pub(crate) async fn connect(
        &self,
        counted: Counted,
    ) -> Result<(Connection, ModSeqMode), StoreError> {
        open_connection(&self.config, &*self.events, counted).await
    }

    /// A new connection (`counted` in the folder's pool) with `folder` selected again. The
    /// folder must still have the UIDVALIDITY it was opened with, else the UIDs the caller
    /// holds mean other messages.
    pub(crate) async fn reopen(
        &self,
        folder: &str,
        validity: UidValidity,
        counted: Counted,
    ) -> Result<Connection, StoreError> {
        let (mut conn, mode) = self.connect(counted).await?;
        let now = select(&mut conn, self.verb, folder, mode)
            .await
            .map_err(|e| {
                StoreError::with_source(
                    Severity::Folder,
                    format!("folder {folder}: {} again", self.verb),
                    e,
                )
            })?
            .validity;
        conn.selected = Some(folder.to_string());
        if now != Some(validity.0) {
            return Err(StoreError::new(
                Severity::Folder,
                format!(
                    "folder {folder}: UIDVALIDITY changed from {} to {} while reconnecting",
                    validity.0,
                    now.map_or_else(|| "none".to_string(), |v| v.to_string())
                ),
            ));
        }
        Ok(conn)
    }
}
