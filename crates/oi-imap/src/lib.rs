//! oi-imap (being written).
#![deny(missing_docs)]
