//! Connections held between autorefresh syncs (`holdconnectionopen`) and kept alive with
//! NOOPs while waiting (`keepalive`).
//!
//! A [`HeldConnections`] outlives the repositories built for each sync: a repository made
//! with [`crate::ImapRepository::with_held`] takes its idle connections from it, puts them
//! back when folders close, and leaves them logged in when the sync ends. Between syncs the
//! caller checks them with [`HeldConnections::keepalive`], which drops any the server (or
//! the network) has lost, so the next sync opens fresh ones instead of failing on them.

use std::sync::Arc;
use std::sync::atomic::AtomicU8;
use std::time::Duration;

use crate::client::Connection;
use crate::session::Command;
use crate::store::{Pool, lock_pool};

/// How long a NOOP on a held connection may take when no `socktimeout` is set: a bound so
/// that a connection frozen by a dead network cannot stall the account forever.
const NOOP_GUARD: Duration = Duration::from_secs(120);

/// Authenticated IMAP connections kept for the next sync of one repository.
#[derive(Debug, Clone, Default)]
pub struct HeldConnections {
    pub(crate) pool: Pool,
    /// The mod-sequence mode (CONDSTORE/QRESYNC) the held connections were enabled with,
    /// for the repositories that reuse them without connecting.
    pub(crate) modseq_mode: Arc<AtomicU8>,
    timeout: Option<Duration>,
}

impl HeldConnections {
    /// An empty set; `timeout` (the `socktimeout`) bounds each keepalive NOOP.
    pub fn new(timeout: Option<Duration>) -> HeldConnections {
        HeldConnections {
            pool: Pool::default(),
            modseq_mode: Arc::default(),
            timeout,
        }
    }

    /// How many connections are held now.
    pub fn len(&self) -> usize {
        lock_pool(&self.pool).len()
    }

    /// True when no connection is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends a NOOP on every held connection (which also lets the server report what
    /// changed, and keeps NAT entries and server idle timers from expiring). A connection
    /// that fails or does not answer in time is dropped, never reused. Returns how many
    /// were dropped.
    pub async fn keepalive(&self) -> usize {
        let conns: Vec<Connection> = std::mem::take(&mut *lock_pool(&self.pool));
        let guard = self.timeout.unwrap_or(NOOP_GUARD);
        let mut alive = Vec::with_capacity(conns.len());
        let mut dropped = 0;
        for mut conn in conns {
            match tokio::time::timeout(guard, conn.run(Command::raw("NOOP"))).await {
                Ok(Ok(_)) => alive.push(conn),
                Ok(Err(e)) => {
                    tracing::debug!(target: "imap", "held connection lost: {e}");
                    dropped += 1;
                }
                Err(_) => {
                    tracing::debug!(target: "imap", "held connection did not answer NOOP");
                    dropped += 1;
                }
            }
        }
        lock_pool(&self.pool).extend(alive);
        dropped
    }

    /// Logs out every held connection (when the account stops).
    pub async fn close(&self) {
        let conns: Vec<Connection> = std::mem::take(&mut *lock_pool(&self.pool));
        for conn in conns {
            conn.logout().await;
        }
    }
}
