//! End-to-end tests of the `offlineimap` binary against a real Dovecot on 127.0.0.1 that
//! each test starts for itself (oi-testkit). One binary, grouped by topic:
//! - `bench`: the benchmark harness (crates/oi-bench) at smoke size.
//! - `auth`: auth_mechanisms (CRAM-MD5), XOAUTH2 with OAuth2 tokens, proxies.
//! - `sync`: the two-way IMAP ↔ Maildir sync (new, deleted, flagged both ways; policies).
//! - `transport`: TLS, STARTTLS, fingerprints, tunnels.
//! - `cli`: flags, config discovery and errors, exit status, dry run, locking.
//! - `compress`: usecompression (COMPRESS=DEFLATE) with and without server support.
//! - `connections`: maxconnections, counted in the server's log.
//! - `compat`: continuing an OfflineIMAP 8 state without transferring anything.
//! - `long_running`: hooks, autorefresh and signals.
//! - `faults`: dropped, stalled, refused (NO, BYE) commands through a fault-injecting
//!   proxy, and a full disk on the Maildir side.
//! - `held`: holdconnectionopen and keepalive between autorefresh syncs; NOTIFY watching.
//! - `longrun`: -P profiles, the ttyui password prompt, SIGQUIT, signals in a 2000-message sync.
//! - `crash`: the binary killed after every step, then resumed.
//! - `kill`: a 2000-message two-way sync killed at random instants, 50 times.
//! - `powerloss`: a simulated power loss of the client (unsynced writes dropped from a
//!   loop-mounted ext4 image) at random instants of the 2000-message sync, and after every
//!   step of the `crash` scenario; then resumed. Needs root.
//! - `scenarios` (no tests): what `kill`, `powerloss` and `longrun` share: a server INBOX
//!   filled straight into Dovecot's Maildir, state readers by Message-ID, and the
//!   randomized two-way sync.
//! - `options`: message and folder selection (maxage, startdate, …).
//! - `imaplocal`: startdate and copy_ignore_eval on an IMAP local repository (IMAP ↔ IMAP).
//! - `maintenance`: --info, --delete-folder, --migrate-fmd5-using-nametrans, exit codes.
//! - `packaging`: man page, completions, systemd units and example config in contrib/.
//! - `servers`: the core scenario against Cyrus and Courier.
//! - `tmux` (no tests): the binary in a real terminal, for `longrun` and `ui`.
//! - `ui`: machineui against OfflineIMAP 8, blinkenlights under tmux.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod auth;
mod bench;
mod cli;
mod common;
mod compat;
mod compress;
mod connections;
mod crash;
mod faults;
mod held;
mod imaplocal;
mod incremental;
mod kill;
mod large;
mod long_running;
mod longrun;
mod maintenance;
mod options;
mod packaging;
mod powerloss;
mod scenarios;
mod servers;
mod sync;
mod tmux;
mod transport;
mod ui;
