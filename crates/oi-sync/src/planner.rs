//! The pure planner: from what each side holds and what the status remembers, decide what
//! to do. No I/O, no clock, no randomness, so a plan can be printed (`--dry-run`), tested
//! exhaustively and replayed.
//!
//! The model is OfflineIMAP's three-way sync. Every synced message is known by its sync UID
//! (the remote UID, which the Maildir side carries as `,U=`), and the status holds, per UID,
//! the flags both sides last agreed on. Against that record each side's changes are
//! independent: a flag added on one side can never be removed on the other, because a
//! removal needs the flag in the record and an addition needs it absent. The merge is
//! therefore conflict-free and the same code serves both directions.

use std::collections::BTreeMap;
use std::fmt;

use oi_core::{Flags, Listing, Side, Uid};

/// What the user allows for one side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SidePolicy {
    /// `readonly`: never change this side.
    pub readonly: bool,
    /// `sync_deletes`: deletions made on this side are carried to the other side.
    pub sync_deletes: bool,
}

impl Default for SidePolicy {
    fn default() -> Self {
        SidePolicy {
            readonly: false,
            sync_deletes: true,
        }
    }
}

/// The policy of one folder pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    /// The remote repository's policy.
    pub remote: SidePolicy,
    /// The local repository's policy.
    pub local: SidePolicy,
    /// The mass-deletion guard.
    pub guard: DeletionGuard,
    /// `maxsize`: messages larger than this are left out of the sync (neither copied nor
    /// deleted, on either side).
    pub max_size: Option<u64>,
    /// `maxage`: only messages in the recent window take part (see [`crate::window`]).
    pub max_age: Option<crate::window::MaxAge>,
    /// `startdate` of one repository (see [`crate::window::StartDate`]).
    pub start_date: Option<crate::window::StartDate>,
    /// The flags the remote can hold (IMAP: the system flags and the keywords mapped to
    /// custom letters). Other local letters stay local: they are never offered to the
    /// remote, so their absence there is never read as a removal.
    pub remote_flags: RemoteFlags,
}

/// See [`Policy::remote_flags`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteFlags(pub Flags);

impl Default for RemoteFlags {
    fn default() -> Self {
        RemoteFlags(Flags::from_bits(u32::MAX))
    }
}

/// Stops a folder whose plan deletes too much of one side at once: a vanished local
/// directory, an unmounted disk or a changed nametrans looks to a three-way sync exactly
/// like a user who deleted everything, and carrying that over loses the other copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeletionGuard {
    /// Largest share (percent) of a side's messages one run may delete; 100 turns the
    /// guard off.
    pub max_percent: u8,
}

impl DeletionGuard {
    /// Deleting this many or fewer is always allowed: emptying a small folder is normal.
    pub const ALWAYS_ALLOWED: usize = 5;

    /// True when deleting `deletes` of `total` messages needs the user's consent.
    pub fn trips(&self, deletes: usize, total: usize) -> bool {
        self.max_percent < 100
            && deletes > Self::ALWAYS_ALLOWED
            && deletes * 100 > total * usize::from(self.max_percent)
    }
}

impl Default for DeletionGuard {
    fn default() -> Self {
        DeletionGuard { max_percent: 50 }
    }
}

impl Policy {
    /// The policy of one side.
    pub fn side(&self, side: Side) -> SidePolicy {
        match side {
            Side::Remote => self.remote,
            Side::Local => self.local,
        }
    }
}

/// One step of a plan. Steps are plain data so that they can be shown and compared.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// Copy a message that has a sync UID from `from` to the other side and record it.
    ///
    /// From the remote this is a download that keeps the UID. From the local side it is the
    /// rare re-upload of a message whose UID neither the server nor the status know any
    /// more: the server gives it a new UID and the local copy is replaced by one that
    /// carries it.
    Copy {
        /// Where the message is.
        from: Side,
        /// Its sync UID there.
        uid: Uid,
        /// Its flags, which the copy gets.
        flags: Flags,
    },
    /// Upload a local message that has no sync UID yet, then give it the UID the server
    /// assigned, and record it.
    Upload {
        /// The local store's handle.
        key: String,
        /// Its flags.
        flags: Flags,
    },
    /// Delete a message on one side, then forget it.
    Delete {
        /// Where to delete.
        side: Side,
        /// Which message.
        uid: Uid,
    },
    /// Change flags on one side.
    SetFlags {
        /// Where.
        side: Side,
        /// Which message.
        uid: Uid,
        /// Flags to set.
        add: Flags,
        /// Flags to clear.
        remove: Flags,
    },
    /// Set the status record of a message (both sides agree on these flags).
    Record {
        /// Which message.
        uid: Uid,
        /// The agreed flags.
        flags: Flags,
    },
    /// Drop the status record of a message that is gone from both sides.
    Forget {
        /// Which message.
        uid: Uid,
    },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Copy { from, uid, flags } => {
                write!(
                    f,
                    "copy message {uid} from {from} to {} [{flags}]",
                    from.other()
                )
            }
            Step::Upload { key, flags } => write!(f, "upload new local message {key} [{flags}]"),
            Step::Delete { side, uid } => write!(f, "delete message {uid} on {side}"),
            Step::SetFlags {
                side,
                uid,
                add,
                remove,
            } => write!(f, "flags of message {uid} on {side}: +[{add}] -[{remove}]"),
            Step::Record { uid, flags } => write!(f, "record message {uid} [{flags}]"),
            Step::Forget { uid } => write!(f, "forget message {uid}"),
        }
    }
}

/// A whole plan for one folder, in execution order: uploads, copies, flag changes,
/// deletions, then status-only bookkeeping.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The steps.
    pub steps: Vec<Step>,
}

impl Plan {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// True when the plan changes a message on either side (not only the status).
    pub fn changes_messages(&self) -> bool {
        self.steps
            .iter()
            .any(|s| !matches!(s, Step::Record { .. } | Step::Forget { .. }))
    }
}

/// Plans the sync of one folder.
pub fn plan(
    remote: &Listing,
    local: &Listing,
    status: &BTreeMap<Uid, Flags>,
    policy: &Policy,
) -> Plan {
    let mut steps = Vec::new();

    if !policy.remote.readonly {
        for m in &local.unsynced {
            steps.push(Step::Upload {
                key: m.key.clone(),
                flags: m.flags,
            });
        }
    }

    // One pass over the three UID-ordered maps at once (a merge), rather than a set of
    // every UID and three look-ups for each: the plan of an unchanged folder of n messages
    // is then n steps of comparing, and no allocation.
    let mut remote_it = remote
        .messages
        .iter()
        .map(|(u, m)| (*u, m.flags))
        .peekable();
    let mut local_it = local.messages.iter().map(|(u, m)| (*u, m.flags)).peekable();
    let mut status_it = status.iter().map(|(u, f)| (*u, *f)).peekable();
    loop {
        let heads = [
            remote_it.peek().map(|(u, _)| *u),
            local_it.peek().map(|(u, _)| *u),
            status_it.peek().map(|(u, _)| *u),
        ];
        let Some(uid) = heads.into_iter().flatten().min() else {
            break;
        };
        let r = remote_it.next_if(|(u, _)| *u == uid).map(|(_, f)| f);
        let l = local_it.next_if(|(u, _)| *u == uid).map(|(_, f)| f);
        let s = status_it.next_if(|(u, _)| *u == uid).map(|(_, f)| f);
        match (r, l, s) {
            (Some(r), Some(l), s) => merge_flags(uid, r, l, s, policy, &mut steps),
            (None, None, Some(_)) => steps.push(Step::Forget { uid }),
            (Some(_), None, Some(_)) => deletion(uid, Side::Local, policy, &mut steps),
            (None, Some(_), Some(_)) => deletion(uid, Side::Remote, policy, &mut steps),
            (Some(flags), None, None) => {
                if !policy.local.readonly {
                    steps.push(Step::Copy {
                        from: Side::Remote,
                        uid,
                        flags,
                    });
                }
            }
            (None, Some(flags), None) => {
                // A local UID that neither the server nor the status knows: OfflineIMAP
                // treats it as new and uploads it again, which never loses mail.
                if !policy.remote.readonly {
                    steps.push(Step::Copy {
                        from: Side::Local,
                        uid,
                        flags,
                    });
                }
            }
            (None, None, None) => {}
        }
    }
    steps.sort_by_key(step_rank);
    Plan { steps }
}

/// Execution order: uploads first (as OfflineIMAP does), then copies, flags, deletions,
/// status bookkeeping. A stable sort keeps UID order inside each group.
fn step_rank(step: &Step) -> u8 {
    match step {
        Step::Upload { .. } => 0,
        Step::Copy { .. } => 1,
        Step::SetFlags { .. } => 2,
        Step::Delete { .. } => 3,
        Step::Record { .. } => 4,
        Step::Forget { .. } => 5,
    }
}

/// A message in the status that is gone from `deleted_on`: carry the deletion over, or keep
/// the record so that the message is neither copied back nor deleted (that is what
/// `sync_deletes = no` and `readonly` mean).
fn deletion(uid: Uid, deleted_on: Side, policy: &Policy, steps: &mut Vec<Step>) {
    let target = deleted_on.other();
    if policy.side(deleted_on).sync_deletes && !policy.side(target).readonly {
        steps.push(Step::Delete { side: target, uid });
    }
}

/// Three-way flag merge of a message both sides hold. `status` is `None` when there is no
/// record (a run interrupted after a copy, or a lost status): nothing was removed anywhere
/// then, so the flags are united and a record is written.
fn merge_flags(
    uid: Uid,
    r: Flags,
    l: Flags,
    status: Option<Flags>,
    policy: &Policy,
    steps: &mut Vec<Step>,
) {
    // Letters the remote cannot hold are the local side's alone: merge the rest.
    let mask = policy.remote_flags.0;
    let local_only = l.minus(mask);
    let (r, l) = (r & mask, l & mask);
    let s = status.unwrap_or(Flags::EMPTY) & mask;
    let added = r.minus(s) | l.minus(s);
    let removed = s.minus(r) | s.minus(l);
    let merged = (s | added).minus(removed);
    let mut record = merged;
    for (side, have) in [(Side::Remote, r), (Side::Local, l)] {
        if have == merged {
            continue;
        }
        if policy.side(side).readonly {
            // What cannot be applied is not agreed: keep the old record for those flags so
            // the other side's change is offered again next time and never read back as a
            // change of this side.
            let differ = have.minus(merged) | merged.minus(have);
            record = record.minus(differ) | (s & differ);
        } else {
            steps.push(Step::SetFlags {
                side,
                uid,
                add: merged.minus(have),
                remove: have.minus(merged),
            });
        }
    }
    let record = record | local_only;
    if status != Some(record) {
        steps.push(Step::Record { uid, flags: record });
    }
}

#[cfg(test)]
mod tests;
