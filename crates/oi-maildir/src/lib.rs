//! oi-maildir (being written).
#![deny(missing_docs)]
