//! The sync engine: plans and carries out the sync of an account's folders.
//!
//! It sees only the store traits of `oi-core` and never names IMAP, Maildir or SQLite, so
//! the same code syncs any two stores. [`planner`] is pure; [`execute`] applies a plan with
//! intent recorded in the status before each effect that could otherwise be lost; [`account`]
//! pairs the folders of two repositories.
#![deny(missing_docs)]

pub mod account;
pub mod execute;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
pub mod planner;
pub mod repair;
pub mod window;

pub use account::{
    AccountPolicy, AccountReport, FolderNaming, PlainNaming, StatusFactory, Translated,
    sync_account,
};
pub use execute::{Cancel, ExecOptions, FolderLabel, SyncError, sync_folder};
pub use planner::{DeletionGuard, Plan, Policy, RemoteFlags, SidePolicy, Step, plan};
pub use window::{MaxAge, StartDate};
