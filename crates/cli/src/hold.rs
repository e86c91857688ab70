//! `holdconnectionopen` and `keepalive`: the IMAP connections an account keeps logged in
//! between its autorefresh syncs, and the NOOPs that keep them alive while it waits.
//!
//! Without either option every sync logs its connections out when it ends (OfflineIMAP's
//! `holdordropconnections`). With them, the connections stay in a [`HeldConnections`] per
//! IMAP repository; each sync first NOOPs them so that one the server or the network lost
//! in the meantime is replaced by a fresh connection instead of failing a folder.

use std::time::Duration;

use oi_config::{AccountConfig, RepositoryConfig, RepositoryKind};
use oi_imap::HeldConnections;

/// The held connections of one account's IMAP repositories.
#[derive(Debug, Default)]
pub struct Held {
    /// The remote repository's, when it holds them.
    pub remote: Option<HeldConnections>,
    /// The local repository's (IMAP ↔ IMAP), when it holds them.
    pub local: Option<HeldConnections>,
    /// The shortest `keepalive` of the two.
    keepalive: Option<Duration>,
}

impl Held {
    /// What the account's repositories ask for; only meaningful in autorefresh mode (a
    /// single sync has no "between syncs").
    pub fn for_account(account: &AccountConfig, socktimeout: Option<Duration>) -> Held {
        let mut held = Held::default();
        let mut side = |r: &RepositoryConfig| {
            let RepositoryKind::Imap(imap) = &r.kind else {
                return None;
            };
            if let Some(k) = imap.keepalive {
                held.keepalive = Some(held.keepalive.map_or(k, |h: Duration| h.min(k)));
            }
            // A keepalive needs connections to keep: OfflineIMAP's keepalive thread holds
            // them through the sleep too.
            (imap.holdconnectionopen || imap.keepalive.is_some())
                .then(|| HeldConnections::new(socktimeout))
        };
        let remote = side(&account.remote);
        let local = side(&account.local);
        held.remote = remote;
        held.local = local;
        held
    }

    /// Waits one keepalive period (forever without one), for a `select!` branch.
    pub async fn next_keepalive(&self) {
        match self.keepalive {
            Some(period) => tokio::time::sleep(period).await,
            None => std::future::pending().await,
        }
    }

    /// NOOPs every held connection, dropping the dead ones.
    pub async fn keepalive(&self) {
        for h in [&self.remote, &self.local].into_iter().flatten() {
            h.keepalive().await;
        }
    }

    /// Logs every held connection out (the account stops).
    pub async fn close(&self) {
        for h in [&self.remote, &self.local].into_iter().flatten() {
            h.close().await;
        }
    }
}
