use std::fmt;
use std::num::NonZeroU32;

/// An IMAP UID as used by the sync: the remote server's UID of a message.
///
/// OfflineIMAP keys its LocalStatus table and Maildir filenames (`,U=<uid>`) by the remote
/// UID, so both sides of a folder speak of a message by this one number. RFC 3501 §2.3.1.1
/// makes UIDs non-zero 32-bit values, which the type enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Uid(NonZeroU32);

impl Uid {
    /// Builds a UID; `None` for 0, which no server may assign.
    pub fn new(value: u32) -> Option<Self> {
        NonZeroU32::new(value).map(Uid)
    }

    /// The numeric value.
    pub fn get(self) -> u32 {
        self.0.get()
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A folder's UIDVALIDITY (RFC 3501 §2.3.1.1). Maildir folders report OfflineIMAP's
/// constant 42.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UidValidity(pub u32);

impl fmt::Display for UidValidity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// One of the two repositories of an account.
///
/// The engine is written once and indexed by side, so that what it does for one direction
/// it does for the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Side {
    /// The account's `remoterepository` (the side whose UIDs are the sync UIDs).
    Remote,
    /// The account's `localrepository`.
    Local,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::Remote => Side::Local,
            Side::Local => Side::Remote,
        }
    }

    /// Both sides, remote first.
    pub const BOTH: [Side; 2] = [Side::Remote, Side::Local];

    /// The side's place in [`Side::BOTH`]: for per-side arrays.
    pub fn index(self) -> usize {
        match self {
            Side::Remote => 0,
            Side::Local => 1,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Remote => "remote",
            Side::Local => "local",
        })
    }
}
