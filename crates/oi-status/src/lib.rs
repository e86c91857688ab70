//! oi-status (being written).
#![deny(missing_docs)]
