//! oi-imap.
#![deny(missing_docs)]
mod error;
pub mod response;
pub mod session;
pub use error::ImapError;
