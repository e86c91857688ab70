use oi_core::{Severity, StoreError};

/// Everything that can go wrong talking IMAP.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    /// The socket or tunnel failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// TLS setup or handshake failed (including a refused certificate).
    #[error("TLS: {0}")]
    Tls(String),
    /// The server closed the connection.
    #[error("connection closed by the server")]
    Closed,
    /// The server said BYE.
    #[error("server said BYE: {0}")]
    Bye(String),
    /// No data within the configured socket timeout.
    #[error("timed out after {0:?}")]
    Timeout(std::time::Duration),
    /// The server sent something we cannot parse or did not expect.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The server announced a literal larger than we accept.
    #[error("server announced a literal of {0} bytes, over the limit")]
    LiteralTooLarge(u64),
    /// A command completed with NO or BAD.
    #[error("{command} failed: {outcome} {text}")]
    Command {
        /// The command name (never its arguments, which may hold secrets).
        command: String,
        /// NO or BAD.
        outcome: crate::response::Outcome,
        /// The server's text.
        text: String,
    },
    /// Login was refused or no usable mechanism was offered.
    #[error("authentication failed: {0}")]
    Auth(String),
    /// The configuration cannot work (no password, bad CA file, bad fingerprint).
    #[error("configuration: {0}")]
    Config(String),
    /// A fetched message could not be written to its spool file (the connection is fine).
    #[error("writing a fetched message to disk: {0}")]
    Spool(std::io::Error),
}

impl ImapError {
    /// Converts into the store error at the trait boundary; `severity` is the reach of the
    /// operation that failed, raised to Repository for errors that break the connection.
    pub fn into_store(self, severity: Severity, context: impl Into<String>) -> StoreError {
        let reach = match &self {
            // The local disk failed, not the server: the folder stops, as for a Maildir.
            ImapError::Command { .. } | ImapError::Spool(_) => severity,
            ImapError::Config(_) => Severity::Fatal,
            _ => Severity::Repository.max(severity),
        };
        StoreError::with_source(reach, context, self)
    }
}
