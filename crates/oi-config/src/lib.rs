//! oi-config (being written).
#![deny(missing_docs)]
