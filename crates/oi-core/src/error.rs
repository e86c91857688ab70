use std::error::Error as StdError;
use std::fmt;

/// How far an error reaches: the caller decides to skip, retry or abort from this alone
/// (isync's DRV_MSG_BAD / DRV_BOX_BAD / DRV_STORE_BAD, OfflineIMAP's `OfflineImapError.ERROR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// One message could not be handled; the folder goes on.
    Message,
    /// The folder cannot be synced this run; the account goes on with other folders.
    Folder,
    /// The repository (connection, login, metadata) is unusable; the account stops.
    Repository,
    /// Nothing should go on (bad configuration, internal invariant broken).
    Fatal,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Message => "message",
            Severity::Folder => "folder",
            Severity::Repository => "repository",
            Severity::Fatal => "fatal",
        })
    }
}

/// The error every store (IMAP, Maildir, LocalStatus) returns through the seam.
///
/// Store crates keep their own precise error enums and convert into this at the trait
/// boundary, keeping the source chain, so that the engine needs no knowledge of IMAP or
/// SQLite to decide what to do.
#[derive(Debug)]
pub struct StoreError {
    severity: Severity,
    context: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
    /// See [`StoreError::read_only`].
    read_only: bool,
}

impl StoreError {
    /// A new error with the given reach and message.
    pub fn new(severity: Severity, context: impl Into<String>) -> Self {
        StoreError {
            severity,
            context: context.into(),
            source: None,
            read_only: false,
        }
    }

    /// A change the server refused because the folder is read-only there (a shared folder
    /// without the rights), found only once the change was tried: the engine then syncs
    /// the folder one way, with the warning it gives when it knew beforehand.
    pub fn read_only(context: impl Into<String>) -> Self {
        StoreError {
            read_only: true,
            ..StoreError::new(Severity::Folder, context)
        }
    }

    /// Whether this is a [`StoreError::read_only`].
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// Wraps an underlying error.
    pub fn with_source(
        severity: Severity,
        context: impl Into<String>,
        source: impl StdError + Send + Sync + 'static,
    ) -> Self {
        StoreError {
            severity,
            context: context.into(),
            source: Some(Box::new(source)),
            read_only: false,
        }
    }

    /// How far the error reaches.
    pub fn severity(&self) -> Severity {
        self.severity
    }

    /// Raises the reach (never lowers it): a message error inside a step that cannot be
    /// skipped becomes a folder error.
    pub fn at_least(mut self, severity: Severity) -> Self {
        self.severity = self.severity.max(severity);
        self
    }

    /// Prefixes more context (`"folder INBOX: " + …`).
    pub fn context(mut self, outer: impl fmt::Display) -> Self {
        self.context = format!("{outer}: {}", self.context);
        self
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)?;
        // Render the chain inline: UIs print one line per error. A cause that the error
        // above already quotes at its end (`message file X: No space left on device`, then
        // the io::Error itself) is not repeated.
        let mut next = self
            .source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static));
        let mut above = self.context.clone();
        while let Some(e) = next {
            let text = e.to_string();
            if !above.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            above = text;
            next = e.source();
        }
        Ok(())
    }
}

impl StdError for StoreError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_includes_chain_and_context() {
        let io = std::io::Error::other("disk on fire");
        let e = StoreError::with_source(Severity::Message, "writing message", io)
            .context("folder INBOX")
            .at_least(Severity::Folder);
        assert_eq!(e.to_string(), "folder INBOX: writing message: disk on fire");
        assert_eq!(e.severity(), Severity::Folder);
        assert_eq!(e.at_least(Severity::Message).severity(), Severity::Folder);
    }

    /// An error that quotes its cause (thiserror's `{source}` in the message) prints it once.
    #[test]
    fn a_quoted_cause_is_not_repeated() {
        #[derive(Debug)]
        struct Quoting(std::io::Error);
        impl fmt::Display for Quoting {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "message file x: {}", self.0)
            }
        }
        impl StdError for Quoting {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let e = StoreError::with_source(
            Severity::Message,
            "Maildir",
            Quoting(std::io::Error::other("No space left on device")),
        );
        assert_eq!(
            e.to_string(),
            "Maildir: message file x: No space left on device"
        );
    }
}
