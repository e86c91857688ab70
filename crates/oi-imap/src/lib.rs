//! The IMAP side of offlineimap: [`ImapRepository`] and [`ImapFolder`] implement the
//! `oi_core` store traits over a pipelined IMAP client.
//!
//! Layers, from the bottom: [`session`] is the sans-I/O protocol (tags, pending commands,
//! pipeline depth, literal and continuation gating, framing), parsing with imap-codec and a
//! tolerant FETCH fallback in [`response`]; [`transport`] is the thin tokio + rustls byte
//! pipe (TCP, implicit TLS, STARTTLS, tunnels) with no protocol logic; [`client`] drives a
//! session over a transport and logs in; `store` maps the store traits onto commands.
//!
//! This crate depends on `oi-core` only among our crates: it must not know about the sync
//! engine, Maildir, the LocalStatus or configuration files, and it never prints (protocol
//! traces go to `tracing` target `imap`, secrets replaced by `<redacted>`).
#![deny(missing_docs)]

mod auth;
pub mod client;
mod compress;
mod error;
mod hold;
pub mod keywords;
mod listing;
pub mod netrc;
mod notify;
pub mod oauth2;
pub mod proxy;
pub mod response;
mod retry;
pub mod session;
mod store;
mod survey;
pub mod transport;
pub mod utf7;

pub use client::{AuthMechanism, Connection, Security, Tunnel};
pub use error::ImapError;
pub use hold::HeldConnections;
pub use listing::FolderListing;
pub use notify::NotifyWatcher;
pub use oauth2::{OAuth2, RefreshSettings, TokenGetter};
pub use proxy::{Proxy, ProxyKind};
pub use store::{
    ImapConfig, ImapFolder, ImapRepository, LoginHook, Watcher, insert_header, uid_set,
    unique_header_value,
};
pub use transport::{CaSource, ClientCert, IpFamily, NetOptions, TlsVersions, certificate_digests};
