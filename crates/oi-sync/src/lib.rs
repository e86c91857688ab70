//! oi-sync (being written).
#![deny(missing_docs)]
