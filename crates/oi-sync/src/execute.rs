//! Applies a [`Plan`] to one folder pair through the store traits.
//!
//! Crash safety rests on the planner's rule that a message present on both sides is only
//! ever *recorded*, never copied again: a copy is made first and recorded after, so a crash
//! in between leaves a state the next run turns into a record. Deletions are the opposite:
//! the record is dropped only after the deletion is final (after the IMAP expunge at close),
//! so an interrupted deletion is carried out again rather than turned into a download.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use oi_core::{
    Access, Event, EventSink, Fetched, FlagUpdate, Flags, Folder, Message, MsgRef, Severity, Side,
    StatusStore, StoreError, SyncStats, Uid, UidValidity,
};

use crate::planner::{Plan, Policy, Step, plan};

/// How many messages one fetch asks for at most.
const BATCH_MESSAGES: usize = 64;
/// How many bytes (by the listed sizes) one fetch asks for at most, so that memory stays
/// bounded whatever the folder.
const BATCH_BYTES: u64 = 512 << 10;

/// A request to stop at the next safe point, shared by every task of a run.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Cancel::default()
    }

    /// Asks every holder to stop at its next safe point.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True once [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// How a folder sync runs.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// Plan and report, change nothing anywhere (`--dry-run`).
    pub dry_run: bool,
    /// Stop (as if the process died) after this many effects: the test hook that proves
    /// every interruption converges. Nothing is committed when it fires.
    pub crash_after: Option<usize>,
    /// Stop at the next safe point, committing what was done.
    pub cancel: Cancel,
    /// OfflineIMAP's quick sync: skip a folder whose server message count and last UID
    /// match the status and whose local messages and flags match it too (so a change of
    /// flags only on the server waits for the next full sync, as in OfflineIMAP).
    pub quick: bool,
    /// Messages larger than this go through files instead of memory
    /// ([`Folder::fetch_large`]); `None`: [`LARGE_MESSAGE_BYTES`].
    pub large_message_bytes: Option<u64>,
    /// How long a killed run's APPEND is given to land on the server before recovery
    /// uploads the message again (see [`recover_uploads`]); `None`: no wait.
    pub landing_grace: Option<std::time::Duration>,
    /// `copy_ignore_eval`: remote UIDs of this folder that are never downloaded.
    pub copy_ignore: Vec<Uid>,
    /// `filterheaders`: header fields removed from every message uploaded to the remote.
    pub filter_headers: Vec<String>,
    /// Apply [`ExecOptions::filter_headers`] to downloads too: the local side is an IMAP
    /// repository, and OfflineIMAP filters whatever any IMAP folder saves.
    pub filter_headers_local: bool,
    /// `[general] ignore-readonly`: no warning for the changes a folder that its server
    /// opens read-only cannot take (see [`Folder::accepts_changes`]).
    pub ignore_readonly: bool,
}

/// Above this size a message is streamed through a file rather than held in memory.
pub const LARGE_MESSAGE_BYTES: u64 = 8 << 20;

/// Downloads into a store with a spool folder (Maildir): a body above this size goes from
/// the socket straight into a file in the store's `tmp/` ([`Folder::fetch_spooled`]), so
/// that a folder of attachments costs no more memory than one of short mail.
pub(crate) const SPOOL_OVER: u64 = 128 << 10;

/// Why a folder sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The UIDVALIDITY of a side is not the saved one.
    #[error(
        "UID validity problem for folder {folder} on the {side} side (saved {saved}, got {got}); \
         skipping it. The messages were renumbered by the server: nothing was changed."
    )]
    UidValidity {
        /// The folder.
        folder: String,
        /// The side whose value changed.
        side: Side,
        /// The saved value.
        saved: UidValidity,
        /// The current value.
        got: UidValidity,
    },
    /// The plan would delete more of a side than the mass-deletion guard allows.
    #[error(
        "refusing to delete {deletes} of the {total} messages of folder {folder} on the {side} \
         side (more than max_delete_percent = {percent}%); nothing was changed in this folder. \
         If this is what you want, run once with -k \"Account_{account}:max_delete_percent=100\""
    )]
    MassDeletion {
        /// The account.
        account: String,
        /// The folder.
        folder: String,
        /// Where the deletions would happen.
        side: Side,
        /// How many.
        deletes: usize,
        /// How many messages that side holds.
        total: usize,
        /// The configured limit.
        percent: u8,
    },
    /// The crash hook fired ([`ExecOptions::crash_after`]).
    #[error("stopped by the crash test hook")]
    CrashHook,
    /// A stop was requested; what was done is committed.
    #[error("interrupted")]
    Cancelled,
}

impl SyncError {
    /// How far the error reaches.
    pub fn severity(&self) -> Severity {
        match self {
            SyncError::Store(e) => e.severity(),
            SyncError::UidValidity { .. } | SyncError::MassDeletion { .. } => Severity::Folder,
            SyncError::CrashHook | SyncError::Cancelled => Severity::Fatal,
        }
    }
}

/// Names a folder pair for messages and events.
#[derive(Debug, Clone)]
pub struct FolderLabel {
    /// The account.
    pub account: String,
    /// The folder (remote name).
    pub folder: String,
}

/// Syncs one folder pair: checks UIDVALIDITY, lists both sides, plans and executes.
pub async fn sync_folder<R: Folder, L: Folder, S: StatusStore>(
    remote: &mut R,
    local: &mut L,
    status: &mut S,
    policy: &Policy,
    opts: &ExecOptions,
    events: &dyn EventSink,
    label: &FolderLabel,
) -> Result<SyncStats, SyncError> {
    sync_folder_releasing(
        remote, local, status, policy, opts, events, label, None, None,
    )
    .await
}

/// A folder's local side and status, read before its server side (see
/// [`sync_folder_releasing`]).
#[derive(Debug)]
pub struct LocalPrep {
    listing: oi_core::Listing,
    records: BTreeMap<Uid, Flags>,
}

/// Reads what [`sync_folder`] needs from the local side and the status, so that it can be
/// done while another folder waits for the server. Nothing is read for a quick sync (it
/// looks at the server first, and may need nothing more).
pub async fn prepare_local<L: Folder, S: StatusStore>(
    local: &mut L,
    status: &mut S,
    opts: &ExecOptions,
) -> Result<Option<LocalPrep>, SyncError> {
    if opts.quick {
        return Ok(None);
    }
    let kept = status.cached_listing(Side::Local)?;
    let listing = list_incrementally(local, status, Side::Local, opts.dry_run, kept).await?;
    let records = status.load()?;
    Ok(Some(LocalPrep { listing, records }))
}

/// Called once the remote folder is closed and its connection is free for another folder.
pub type RemoteDone<'a> = Box<dyn FnOnce() + Send + 'a>;

/// [`sync_folder`], telling `remote_done` as soon as the remote folder is no longer
/// needed. A plan with nothing to do on the server (no copy in either direction, no
/// server flag or deletion, no upload waiting to be found) closes the remote folder
/// before the local changes are made, so that the next folder's server work (SELECT,
/// FETCH) runs while this one renames files and commits: the server and we no longer
/// take turns. `prep`, when given, is the local side read beforehand by
/// [`prepare_local`] (dropped and read again if recovering an interrupted upload changes
/// the local side).
#[allow(clippy::too_many_arguments)] // sync_folder's context plus the two hand-overs
pub async fn sync_folder_releasing<R: Folder, L: Folder, S: StatusStore>(
    remote: &mut R,
    local: &mut L,
    status: &mut S,
    policy: &Policy,
    opts: &ExecOptions,
    events: &dyn EventSink,
    label: &FolderLabel,
    remote_done: Option<RemoteDone<'_>>,
    mut prep: Option<LocalPrep>,
) -> Result<SyncStats, SyncError> {
    let remote_meta = remote.meta().await?;
    let local_meta = local.meta().await?;
    let pending = if opts.dry_run {
        Vec::new()
    } else {
        status.pending_uploads()?
    };
    let recovered_duplicates = if pending.is_empty() {
        Default::default()
    } else {
        // Recovery may give local messages their UIDs: what was read before is stale.
        prep = None;
        recover_uploads(remote, local, status, pending, false, opts.landing_grace).await?
    };
    // The kept remote listing, once the quick test has read it.
    let mut kept_remote = None;
    if opts.quick && recovered_duplicates.is_empty() {
        match quick_unchanged(remote, local, status).await? {
            Quick::Unchanged => return Ok(SyncStats::default()),
            Quick::Changed(kept) => kept_remote = Some(kept),
        }
    }
    let loading = |side| Event::MessageListLoading {
        account: label.account.clone(),
        folder: label.folder.clone(),
        side,
    };
    let loaded = |side, listing: &oi_core::Listing| Event::MessageListLoaded {
        account: label.account.clone(),
        folder: label.folder.clone(),
        side,
        count: listing.messages.len() + listing.unsynced.len(),
    };
    events.emit(loading(Side::Remote));
    let kept = match kept_remote {
        Some(kept) => kept,
        None => status.cached_listing(Side::Remote)?,
    };
    let mut remote_list =
        list_incrementally(remote, status, Side::Remote, opts.dry_run, kept).await?;
    events.emit(loaded(Side::Remote, &remote_list));
    events.emit(loading(Side::Local));
    let (mut local_list, mut records) = match prep {
        Some(LocalPrep { listing, records }) => (listing, records),
        None => {
            let kept = status.cached_listing(Side::Local)?;
            let listing =
                list_incrementally(local, status, Side::Local, opts.dry_run, kept).await?;
            (listing, status.load()?)
        }
    };
    events.emit(loaded(Side::Local, &local_list));

    let holds_anything =
        !records.is_empty() || !remote_list.messages.is_empty() || !local_list.messages.is_empty();
    let mut save = Vec::new();
    let mut repaired = false;
    for (side, got) in [
        (Side::Remote, remote_meta.uid_validity),
        (Side::Local, local_meta.uid_validity),
    ] {
        match status.saved_validity(side)? {
            Some(saved) if saved == got => {}
            // The server renumbered the folder: re-pair instead of giving up (a dry run
            // only reports it). A local store renumbering itself is left to the user.
            Some(saved) if holds_anything && side == Side::Remote && !opts.dry_run => {
                repair_validity(remote, local, status, events, label, saved, got).await?;
                repaired = true;
            }
            Some(saved) if holds_anything => {
                return Err(SyncError::UidValidity {
                    folder: label.folder.clone(),
                    side,
                    saved,
                    got,
                });
            }
            _ => save.push((side, got)),
        }
    }
    // A folder never synced (no records, nothing saved) whose local side holds messages
    // without a UID we know: adopt the ones the server has, rather than upload them again.
    if !repaired
        && !opts.dry_run
        && records.is_empty()
        && save.iter().any(|(side, _)| *side == Side::Remote)
        && !local_list.unsynced.is_empty()
        && !remote_list.messages.is_empty()
    {
        repaired = adopt(remote, local, events, label, &local_list).await?;
    }
    if repaired {
        remote_list = remote.list().await?;
        remote_list
            .messages
            .retain(|uid, _| !recovered_duplicates.contains(uid));
        local_list = local.list().await?;
        records = status.load()?;
    }

    if let Some(max) = policy.max_size {
        // A message too large on either side is hidden from both and from the status, so
        // that its absence from one listing is never read as a deletion.
        let too_big = |l: &oi_core::Listing| -> Vec<Uid> {
            l.messages
                .iter()
                .filter(|(_, m)| m.size.is_some_and(|s| s > max))
                .map(|(u, _)| *u)
                .collect()
        };
        let mut hidden = too_big(&remote_list);
        hidden.extend(too_big(&local_list));
        for uid in hidden {
            remote_list.messages.remove(&uid);
            local_list.messages.remove(&uid);
            records.remove(&uid);
        }
        local_list
            .unsynced
            .retain(|m| m.size.is_none_or(|s| s <= max));
    }
    if let Some(max_age) = policy.max_age {
        crate::window::apply_max_age(
            remote,
            local,
            status,
            opts.dry_run,
            max_age,
            &mut remote_list,
            &mut local_list,
            &mut records,
        )
        .await?;
    }
    if let Some(start) = policy.start_date {
        crate::window::apply_start_date(
            remote,
            local,
            status,
            opts.dry_run,
            start,
            &mut remote_list,
            &mut local_list,
            &label.folder,
        )
        .await?;
    }
    let mut plan = plan(&remote_list, &local_list, &records, policy);
    let read_only_policy;
    let policy = match read_only_sides(remote, local, &plan, policy, opts, events, label).await? {
        Some(p) => {
            read_only_policy = p;
            plan = crate::planner::plan(&remote_list, &local_list, &records, &read_only_policy);
            &read_only_policy
        }
        None => policy,
    };
    let plan = crate::window::skip_ignored_copies(plan, &opts.copy_ignore, events, label);
    for (side, listing) in [(Side::Remote, &remote_list), (Side::Local, &local_list)] {
        let deletes = plan
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Delete { side: d, .. } if *d == side))
            .count();
        let total = listing.messages.len();
        if policy.guard.trips(deletes, total) {
            return Err(SyncError::MassDeletion {
                account: label.account.clone(),
                folder: label.folder.clone(),
                side,
                deletes,
                total,
                percent: policy.guard.max_percent,
            });
        }
    }
    if opts.dry_run {
        for step in &plan.steps {
            events.emit(Event::Planned {
                account: label.account.clone(),
                folder: label.folder.clone(),
                what: step.to_string(),
            });
        }
        return Ok(SyncStats::default());
    }
    for (side, got) in save {
        status.save_validity(side, got)?;
    }
    // Sizes of what the plan copies only, and the listings dropped before the effects: a
    // folder of 30 000 messages otherwise keeps five maps of it while the next folder's
    // local side is read.
    let mut sizes: BTreeMap<Uid, u64> = BTreeMap::new();
    let mut local_sizes: BTreeMap<MsgRef, u64> = BTreeMap::new();
    for step in &plan.steps {
        match step {
            Step::Copy {
                from: Side::Remote,
                uid,
                ..
            } => {
                if let Some(s) = remote_list.messages.get(uid).and_then(|m| m.size) {
                    sizes.insert(*uid, s);
                }
            }
            Step::Copy {
                from: Side::Local,
                uid,
                ..
            } => {
                if let Some(s) = local_list.messages.get(uid).and_then(|m| m.size) {
                    local_sizes.insert(MsgRef::Uid(*uid), s);
                }
            }
            _ => {}
        }
    }
    // Every unsynced local message is uploaded unless the remote side is read-only.
    if plan.steps.iter().any(|s| matches!(s, Step::Upload { .. })) {
        for m in &local_list.unsynced {
            if let Some(s) = m.size {
                local_sizes.insert(MsgRef::Unsynced(m.key.clone()), s);
            }
        }
    }
    drop((remote_list, local_list, records));
    let mut run = Run {
        local_sizes,
        max_size: policy.max_size,
        remote,
        local,
        status,
        opts,
        events,
        label,
        effects: 0,
        effects_committed: 0,
        remote_done,
        handed_over: false,
        stats: SyncStats::default(),
    };
    run.execute(&plan, &sizes).await?;
    Ok(run.stats)
}

/// Lists one side, from `earlier`, the listing kept in the status, when the store can tell
/// what changed since (see [`Folder::list_since`]), and keeps the new listing for next
/// time.
///
/// The kept listing only ever describes the store as it was when it was made (the store's
/// token says which state that was), never what the sync did afterwards, so a crash at any
/// point leaves it true: the next run asks the store for the changes since that state,
/// which include this run's own.
async fn list_incrementally<F: Folder, S: StatusStore>(
    folder: &mut F,
    status: &mut S,
    side: Side,
    dry_run: bool,
    earlier: Option<oi_core::CachedListing>,
) -> Result<oi_core::Listing, SyncError> {
    // Kept to write nothing (and so commit nothing) when nothing changed: a fingerprint,
    // not a copy of a listing that may hold a hundred thousand messages.
    let before = earlier.as_ref().map(fingerprint);
    let (listing, token) = folder.list_since(earlier).await?;
    if dry_run {
        return Ok(listing);
    }
    match token {
        Some(token) => {
            let cached = oi_core::CachedListing { token, listing };
            if before.as_ref() != Some(&fingerprint(&cached)) {
                status.save_listing(side, Some(&cached))?;
            }
            Ok(cached.listing)
        }
        None => {
            if before.is_some() {
                status.save_listing(side, None)?;
            }
            Ok(listing)
        }
    }
}

/// What tells two kept listings apart: the store's token, the counts, and a hash of every
/// message's UID, flags and size (the token alone would do for a store that is right
/// about itself; the rest makes a corrected listing under the same token still saved).
fn fingerprint(c: &oi_core::CachedListing) -> (String, usize, usize, u64) {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (uid, m) in &c.listing.messages {
        for v in [
            u64::from(uid.get()),
            u64::from(m.flags.bits()),
            m.size.unwrap_or(u64::MAX),
        ] {
            h = (h ^ v).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    (
        c.token.clone(),
        c.listing.messages.len(),
        c.listing.unsynced.len(),
        h,
    )
}

/// What the quick test found.
enum Quick {
    Unchanged,
    /// The folder needs a sync; the kept remote listing read for the test is handed on,
    /// so that the listing does not read it again.
    Changed(Option<oi_core::CachedListing>),
}

/// The quick-sync test (see [`ExecOptions::quick`]).
async fn quick_unchanged<R: Folder, L: Folder, S: StatusStore>(
    remote: &mut R,
    local: &mut L,
    status: &mut S,
) -> Result<Quick, SyncError> {
    let records = status.load()?;
    let kept = status.cached_listing(Side::Remote)?;
    let Some(q) = remote.quick_state(kept.as_ref()).await? else {
        return Ok(Quick::Changed(kept));
    };
    if q.count as usize != records.len() || q.last_uid != records.keys().next_back().copied() {
        return Ok(Quick::Changed(kept));
    }
    let listing = local.list().await?;
    let same = listing.unsynced.is_empty()
        && listing.messages.len() == records.len()
        && listing
            .messages
            .iter()
            .all(|(uid, m)| records.get(uid) == Some(&m.flags));
    Ok(if same {
        Quick::Unchanged
    } else {
        Quick::Changed(kept)
    })
}

/// Finishes uploads that a previous run started and did not record.
///
/// A marked copy that reached the server is adopted (the local message gets its UID)
/// instead of being uploaded a second time. A marker the server does not show means the
/// APPEND never completed, or has not yet: a killed client's APPEND can still be committed
/// by the server after the next run has looked. So while the local message still waits
/// for its UID the record is kept, the plan uploads the message again under a new marker,
/// and a late copy is found by the kept record on a later run: copies that carry our own
/// marker and that the local side does not hold are our duplicates, and are deleted.
/// Returns the UIDs deleted that way, which the plan must not see.
///
/// `found_only`: act only on markers the server shows (the second look at the end of a
/// run); a record whose copy has not landed is kept for the next run to look again.
async fn recover_uploads<R: Folder, L: Folder, S: StatusStore>(
    remote: &mut R,
    local: &mut L,
    status: &mut S,
    pending: Vec<oi_core::PendingUpload>,
    found_only: bool,
    grace: Option<std::time::Duration>,
) -> Result<std::collections::BTreeSet<Uid>, SyncError> {
    let mut removed = std::collections::BTreeSet::new();
    if pending.is_empty() {
        return Ok(removed);
    }
    if !found_only {
        // The server may still be committing the APPEND of a run killed a moment ago (it
        // has the whole command and has not stored it yet): give a young upload that is
        // not there yet a moment to land, rather than upload it again and leave a
        // duplicate for a later run to remove.
        let youngest = pending
            .iter()
            .filter_map(|p| marker_age_ms(&p.marker))
            .min();
        let grace = grace.map_or(0, |g| u64::try_from(g.as_millis()).unwrap_or(u64::MAX));
        if let Some(age) = youngest.filter(|&a| a < grace) {
            let mut missing = false;
            for p in &pending {
                if remote.find_marker(&p.marker).await?.is_empty() {
                    missing = true;
                    break;
                }
            }
            if missing {
                sleep(std::time::Duration::from_millis(grace - age)).await;
            }
        }
    }
    let mut listing = local.list().await?;
    for p in pending {
        let found = remote.find_marker(&p.marker).await?;
        let source_waits = match &p.source {
            MsgRef::Unsynced(key) => listing.unsynced.iter().any(|m| &m.key == key),
            MsgRef::Uid(old) => listing.messages.contains_key(old),
        };
        let keep = match (found.first(), source_waits) {
            (None, _) if found_only => continue,
            (None, true) => {
                // Not (yet) on the server: keep watching for a late copy.
                continue;
            }
            (None, false) => None,
            (Some(&first), true) if !listing.messages.contains_key(&first) => {
                local.assign_uid(&p.source, first).await?;
                listing.messages.insert(
                    first,
                    oi_core::MessageMeta {
                        flags: Flags::EMPTY,
                        size: None,
                    },
                );
                Some(first)
            }
            // The UID was assigned before the interruption, or the local message is held
            // under the UID of a later upload: keep the copy the local side holds, if any.
            (Some(_), _) => found
                .iter()
                .copied()
                .find(|u| listing.messages.contains_key(u)),
        };
        let duplicates: Vec<Uid> = found.into_iter().filter(|u| Some(*u) != keep).collect();
        if !duplicates.is_empty() {
            remote.delete(&duplicates).await?;
            removed.extend(duplicates);
        }
        status.clear_pending_upload(&p.marker)?;
    }
    local.flush().await?;
    status.commit()?;
    Ok(removed)
}

/// The server changed the folder's UIDVALIDITY: every UID it gave is void. Re-pairs the
/// local messages with the server's by Message-ID (see [`crate::repair`]), renames the
/// local copies to the new UIDs, and starts the folder's status afresh, so that the plan
/// that follows only unites flags of pairs, downloads what stayed unpaired on the server
/// and uploads what stayed unpaired locally: no deletion can come out of it.
///
/// Interrupted anywhere, it is simply done again: the saved UIDVALIDITY is replaced last.
async fn repair_validity<R: Folder, L: Folder, S: StatusStore>(
    remote: &mut R,
    local: &mut L,
    status: &mut S,
    events: &dyn EventSink,
    label: &FolderLabel,
    saved: UidValidity,
    got: UidValidity,
) -> Result<(), SyncError> {
    let remote_ids: Vec<(Uid, oi_core::Identity)> = remote
        .identities()
        .await?
        .into_iter()
        .filter_map(|(r, id)| match r {
            MsgRef::Uid(u) => Some((u, id)),
            MsgRef::Unsynced(_) => None,
        })
        .collect();
    let local_ids = local.identities().await?;
    let pairing = crate::repair::pair(&remote_ids, &local_ids);
    let remote_uids: std::collections::BTreeSet<Uid> = remote_ids.iter().map(|(u, _)| *u).collect();
    let paired: std::collections::BTreeSet<&MsgRef> =
        pairing.pairs.iter().map(|(m, _)| m).collect();
    let held: Vec<Uid> = local_ids
        .iter()
        .filter_map(|(r, _)| match r {
            MsgRef::Uid(u) => Some(*u),
            MsgRef::Unsynced(_) => None,
        })
        .collect();
    // Unpaired local messages whose stale UID is also a new server UID would look like
    // that (other) server message to the plan: park them far away; they are uploaded.
    let mut moves = pairing.pairs.clone();
    let mut park = crate::repair::PARKING + 1_000_000;
    for u in &held {
        if remote_uids.contains(u) && !paired.contains(&MsgRef::Uid(*u)) {
            while held.iter().any(|h| h.get() == park) {
                park += 1;
            }
            if let Some(p) = Uid::new(park) {
                moves.push((MsgRef::Uid(*u), p));
                park += 1;
            }
        }
    }
    for (from, to) in crate::repair::rename_order(&moves, &held) {
        local.assign_uid(&from, to).await?;
    }
    local.flush().await?;
    for uid in status.load()?.into_keys() {
        status.remove(uid)?;
    }
    for p in status.pending_uploads()? {
        status.clear_pending_upload(&p.marker)?;
    }
    status.commit()?;
    status.save_validity(Side::Remote, got)?;
    events.emit(Event::Warning {
        account: Some(label.account.clone()),
        message: format!(
            "{}: the server changed UIDVALIDITY ({saved} -> {got}); re-paired {} message(s) by \
             Message-ID; {} server message(s) will be downloaded and {} local message(s) \
             uploaded because they could not be paired",
            label.folder,
            pairing.pairs.len(),
            pairing.unpaired_remote,
            pairing.unpaired_local
        ),
    });
    Ok(())
}

/// Adopts local messages without a known UID that the server already has (a Maildir
/// from mbsync, or one whose state was lost). True when anything was adopted.
async fn adopt<R: Folder, L: Folder>(
    remote: &mut R,
    local: &mut L,
    events: &dyn EventSink,
    label: &FolderLabel,
    local_list: &oi_core::Listing,
) -> Result<bool, SyncError> {
    let remote_ids: Vec<(Uid, oi_core::Identity)> = remote
        .identities()
        .await?
        .into_iter()
        .filter_map(|(r, id)| match r {
            MsgRef::Uid(u) if !local_list.messages.contains_key(&u) => Some((u, id)),
            _ => None,
        })
        .collect();
    let local_ids: Vec<(MsgRef, oi_core::Identity)> = local
        .identities()
        .await?
        .into_iter()
        .filter(|(r, _)| matches!(r, MsgRef::Unsynced(_)))
        .collect();
    let pairing = crate::repair::pair(&remote_ids, &local_ids);
    if pairing.pairs.is_empty() {
        return Ok(false);
    }
    for (from, to) in &pairing.pairs {
        local.assign_uid(from, *to).await?;
    }
    local.flush().await?;
    events.emit(Event::Info {
        message: format!(
            "[{}] {}: adopted {} local message(s) the server already has (matched by \
             Message-ID) instead of uploading them again",
            label.account,
            label.folder,
            pairing.pairs.len()
        ),
    });
    Ok(true)
}

/// A value for the upload marker, unique in practice: hashes of the source, the clock,
/// the process and a counter (the planner stays free of randomness; this is execution).
fn new_marker(body: &[u8]) -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(body);
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    let v = h.finish();
    // `<milliseconds since the epoch>-<random>`: unique, and it tells how old an upload
    // record is (see [`recover_uploads`]).
    format!("{}-{}", now_ms(), v & 0xffff_ffff)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The age of an upload record made by [`new_marker`]; `None` for other markers.
fn marker_age_ms(marker: &str) -> Option<u64> {
    let (ms, _) = marker.split_once('-')?;
    let ms: u64 = ms.parse().ok()?;
    // Markers of older versions start with a 32-bit number: not a time.
    (ms > 1_000_000_000_000).then(|| now_ms().saturating_sub(ms))
}

/// What a plan would change on `side`: messages copied there, flag changes, deletions.
fn changes_on(plan: &Plan, side: Side) -> (usize, usize, usize) {
    let mut n = (0, 0, 0);
    for step in &plan.steps {
        match step {
            Step::Upload { .. } if side == Side::Remote => n.0 += 1,
            Step::Copy { from, .. } if *from != side => n.0 += 1,
            Step::SetFlags { side: s, .. } if *s == side => n.1 += 1,
            Step::Delete { side: s, .. } if *s == side => n.2 += 1,
            _ => {}
        }
    }
    n
}

/// A side the plan would change but whose server opens the folder `[READ-ONLY]` (a shared
/// folder without write rights) is synced as if its repository were `readonly`: the
/// changes wait (the records keep them for a later run, when the rights may have come),
/// with a warning unless `ignore-readonly`, as OfflineIMAP warns of each message it could
/// not copy, flag or delete there. Without this every APPEND, STORE or EXPUNGE would fail
/// and fail the folder. `Some` policy when a side turned out read-only.
async fn read_only_sides<R: Folder, L: Folder>(
    remote: &mut R,
    local: &mut L,
    plan: &Plan,
    policy: &Policy,
    opts: &ExecOptions,
    events: &dyn EventSink,
    label: &FolderLabel,
) -> Result<Option<Policy>, SyncError> {
    if opts.dry_run {
        // Opened with EXAMINE, which is read-only whatever the rights.
        return Ok(None);
    }
    let mut changed = None;
    for side in [Side::Remote, Side::Local] {
        let (copies, flags, deletes) = changes_on(plan, side);
        if copies + flags + deletes == 0 || policy.side(side).readonly {
            continue;
        }
        let writable = match side {
            // Copies alone: the store may let them tell (see `Folder::accepts_copies` and
            // `Run::unless_read_only`).
            Side::Remote if flags + deletes == 0 => remote.accepts_copies().await?,
            Side::Remote => remote.accepts_changes().await?,
            Side::Local if flags + deletes == 0 => local.accepts_copies().await?,
            Side::Local => local.accepts_changes().await?,
        };
        if writable {
            continue;
        }
        let p: &mut Policy = changed.get_or_insert(*policy);
        match side {
            Side::Remote => p.remote.readonly = true,
            Side::Local => p.local.readonly = true,
        }
        if !opts.ignore_readonly {
            warn_read_only(events, label, side, (copies, flags, deletes));
        }
    }
    Ok(changed)
}

/// The warning of a folder the server keeps read-only: what was not done there.
fn warn_read_only(
    events: &dyn EventSink,
    label: &FolderLabel,
    side: Side,
    (copies, flags, deletes): (usize, usize, usize),
) {
    events.emit(Event::Warning {
        account: Some(label.account.clone()),
        message: format!(
            "folder {} is read-only on the {side} server: {copies} message(s) not copied to \
             it, {flags} flag change(s) and {deletes} deletion(s) not made (ignore-readonly = \
             yes silences this)",
            label.folder
        ),
    });
}

/// Waits without blocking the thread, and without a runtime: a helper thread sleeps and
/// wakes the task. Only the recovery after a killed run waits, for at most a few seconds.
async fn sleep(duration: std::time::Duration) {
    oi_core::off_thread("sync-sleep", move || std::thread::sleep(duration)).await;
}

/// Gives the other futures polled by the same task one turn (runtime-free).
pub(crate) async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

struct Run<'a, R, L, S> {
    /// Sizes of the local messages, to pick the ones to stream.
    local_sizes: BTreeMap<MsgRef, u64>,
    max_size: Option<u64>,
    remote: &'a mut R,
    local: &'a mut L,
    status: &'a mut S,
    opts: &'a ExecOptions,
    events: &'a dyn EventSink,
    label: &'a FolderLabel,
    effects: usize,
    /// `effects` at the last checkpoint that committed.
    effects_committed: usize,
    /// See [`sync_folder_releasing`].
    remote_done: Option<RemoteDone<'a>>,
    /// The connection went to the next folder: its exchange with the server can run while
    /// this one waits for the disk ([`Folder::flush_aside`]).
    handed_over: bool,
    stats: SyncStats,
}

impl<R: Folder, L: Folder, S: StatusStore> Run<'_, R, L, S> {
    /// Counts an effect and fires the crash hook when due. Called *before* each effect, so
    /// `crash_after = Some(n)` lets exactly n effects happen.
    fn effect(&mut self) -> Result<(), SyncError> {
        if self.opts.crash_after.is_some_and(|n| self.effects >= n) {
            return Err(SyncError::CrashHook);
        }
        self.effects += 1;
        Ok(())
    }

    /// A safe point: make both sides durable, then the status, and stop when asked to.
    ///
    /// With no effect since the last one there is nothing to make durable: what the status
    /// holds uncommitted then (the kept listing, records of pairs already in step) stays
    /// true whenever it is written, so it waits for the next commit rather than paying a
    /// commit of its own (four fsyncs in SQLite's rollback journal).
    async fn checkpoint(&mut self) -> Result<(), SyncError> {
        if self.effects != self.effects_committed {
            self.remote.flush().await?;
            if self.handed_over {
                self.local.flush_aside().await?;
            } else {
                self.local.flush().await?;
            }
            if self.opts.cancel.is_cancelled() {
                // Stopping here: what was done is committed.
                self.status.commit()?;
            } else if self.handed_over {
                // The next folder's exchange with the server goes on meanwhile.
                self.status.checkpoint_commit_aside().await?;
            } else {
                self.status.checkpoint_commit()?;
            }
            self.effects_committed = self.effects;
        }
        if self.opts.cancel.is_cancelled() {
            return Err(SyncError::Cancelled);
        }
        Ok(())
    }

    /// Called once nothing is left for the server: with a caller waiting for the
    /// connection (see [`sync_folder_releasing`]) and no upload waiting to be found, closes
    /// the remote folder now and lets the folder waiting for the connection send its
    /// SELECT before this one's local work, which never waits, keeps the task busy.
    async fn hand_over(&mut self) -> Result<(), SyncError> {
        if self.remote_done.is_some() && self.status.pending_uploads()?.is_empty() {
            self.close_remote().await?;
            yield_once().await;
        }
        Ok(())
    }

    /// Closes the remote folder (closing again does nothing) and frees its connection.
    async fn close_remote(&mut self) -> Result<(), SyncError> {
        self.remote.close().await?;
        if let Some(done) = self.remote_done.take() {
            done();
            self.handed_over = true;
        }
        Ok(())
    }

    fn warn(&self, message: String) {
        self.events.emit(Event::Warning {
            account: Some(self.label.account.clone()),
            message: format!("{}: {message}", self.label.folder),
        });
    }

    async fn execute(&mut self, plan: &Plan, sizes: &BTreeMap<Uid, u64>) -> Result<(), SyncError> {
        let mut uploads = Vec::new();
        let mut downloads = Vec::new();
        let mut reuploads = Vec::new();
        let mut flag_updates: [Vec<FlagUpdate>; 2] = [Vec::new(), Vec::new()];
        let mut deletes: [Vec<Uid>; 2] = [Vec::new(), Vec::new()];
        let mut records = Vec::new();
        let mut forgets = Vec::new();
        for step in &plan.steps {
            match step {
                Step::Upload { key, flags } => uploads.push((key.clone(), *flags)),
                Step::Copy {
                    from: Side::Remote,
                    uid,
                    flags,
                } => downloads.push((*uid, *flags)),
                Step::Copy {
                    from: Side::Local,
                    uid,
                    flags,
                } => reuploads.push((*uid, *flags)),
                Step::SetFlags {
                    side,
                    uid,
                    add,
                    remove,
                } => flag_updates[side.index()].push(FlagUpdate {
                    uid: *uid,
                    add: *add,
                    remove: *remove,
                }),
                Step::Delete { side, uid } => deletes[side.index()].push(*uid),
                Step::Record { uid, flags } => records.push((*uid, *flags)),
                Step::Forget { uid } => forgets.push(*uid),
            }
        }

        // Nothing for the server after the downloads (if any): see `hand_over`.
        let server_done_after = flag_updates[Side::Remote.index()].is_empty()
            && deletes[Side::Remote.index()].is_empty();
        if server_done_after && uploads.is_empty() && reuploads.is_empty() && downloads.is_empty() {
            self.hand_over().await?;
        }
        self.events.emit(Event::SyncingMessages {
            account: self.label.account.clone(),
            folder: self.label.folder.clone(),
            from: Side::Local,
        });
        let copies = uploads.len() + reuploads.len();
        let before = self.stats.copied_to_remote;
        let sent = match self.upload_unsynced(&uploads).await {
            Ok(()) => self.reupload(&reuploads).await,
            Err(e) => Err(e),
        };
        self.unless_read_only(sent, copies, before)?;
        self.events.emit(Event::SyncingMessages {
            account: self.label.account.clone(),
            folder: self.label.folder.clone(),
            from: Side::Remote,
        });
        self.download(&downloads, sizes, server_done_after).await?;

        for side in Side::BOTH {
            let updates = &flag_updates[side.index()];
            if updates.is_empty() {
                continue;
            }
            self.events.emit(Event::ChangingFlags {
                account: self.label.account.clone(),
                folder: self.label.folder.clone(),
                side,
                updates: updates.clone(),
            });
            self.effect()?;
            match side {
                Side::Remote => self.remote.set_flags(updates).await?,
                Side::Local => self.local.set_flags(updates).await?,
            }
            let n = updates.len() as u64;
            match side {
                Side::Remote => self.stats.flagged_remote += n,
                Side::Local => self.stats.flagged_local += n,
            }
        }
        for (uid, flags) in records {
            self.status.set(uid, flags)?;
        }
        for uid in forgets {
            self.status.remove(uid)?;
        }
        self.checkpoint().await?;

        // An APPEND of a killed earlier run that the server committed only after this run
        // started looking for it has landed by now more often than not: look again before
        // the expunge below, so that its copy goes now rather than on the next run.
        let pending = self.status.pending_uploads()?;
        let late = recover_uploads(
            &mut *self.remote,
            &mut *self.local,
            &mut *self.status,
            pending,
            true,
            None,
        )
        .await?;
        if !late.is_empty() {
            self.warn(format!(
                "{} late copy(ies) of an interrupted upload removed from the server",
                late.len()
            ));
        }

        for side in Side::BOTH {
            let uids = &deletes[side.index()];
            if uids.is_empty() {
                continue;
            }
            self.events.emit(Event::DeletingMessages {
                account: self.label.account.clone(),
                folder: self.label.folder.clone(),
                side,
                uids: uids.clone(),
            });
            self.effect()?;
            match side {
                Side::Remote => self.remote.delete(uids).await?,
                Side::Local => self.local.delete(uids).await?,
            }
            let n = uids.len() as u64;
            match side {
                Side::Remote => self.stats.deleted_remote += n,
                Side::Local => self.stats.deleted_local += n,
            }
        }
        // Closing expunges on IMAP: only then are the deletions final and their records may
        // go (see the module comment).
        self.effect()?;
        self.close_remote().await?;
        self.local.close().await?;
        for uid in deletes.iter().flatten() {
            self.status.remove(*uid)?;
        }
        // close() made both sides durable. Once the connection went to the next folder,
        // that folder's exchange goes on while this commit waits for the disk.
        if self.handed_over {
            self.status.commit_aside().await?;
        } else {
            self.status.commit()?;
        }
        Ok(())
    }

    /// Uploads a local message with an upload marker recorded first (see
    /// [`recover_uploads`]); the marker is cleared with the next commit, after the caller
    /// recorded the new UID.
    fn large(&self) -> u64 {
        self.opts.large_message_bytes.unwrap_or(LARGE_MESSAGE_BYTES)
    }

    /// Local messages above this are uploaded from their file ([`Folder::fetch_large`],
    /// an APPEND literal streamed from it): a local store that has its messages in files
    /// (Maildir) streams everything above [`SPOOL_OVER`], others only large messages.
    fn upload_stream_over(&self) -> u64 {
        match self.local.spool_dir() {
            Some(_) => self.large().min(SPOOL_OVER),
            None => self.large(),
        }
    }

    fn is_large_local(&self, which: &MsgRef) -> bool {
        self.local_sizes
            .get(which)
            .is_some_and(|&s| s > self.upload_stream_over())
    }

    /// Uploads one large local message through a file, with its marker recorded first as
    /// for any upload. `None` when the local message vanished; else the new UID, if the
    /// server said.
    async fn upload_large(
        &mut self,
        source: &MsgRef,
        flags: Flags,
    ) -> Result<Option<Option<Uid>>, SyncError> {
        let dir = self.remote.spool_dir().unwrap_or_else(std::env::temp_dir);
        let Some(mut message) = self.local.fetch_large(source, &dir).await? else {
            return Ok(None);
        };
        if self.max_size.is_some_and(|max| message.len > max) {
            return Ok(None);
        }
        if message.len <= self.upload_stream_over() {
            let small = message.to_message(None).map_err(|e| {
                StoreError::new(
                    Severity::Message,
                    format!("reading {}: {e}", source.to_text()),
                )
            })?;
            return self.marked_append(&small, flags).await.map(Some);
        }
        message.drop_headers = self.opts.filter_headers.clone();
        let markers = self.record_markers(&[source]).await?;
        let Some(marker) = markers.first() else {
            // record_markers gives one marker per message.
            return Ok(None);
        };
        self.effect()?;
        let marker = marker.clone();
        let uid = match self
            .remote
            .append_large(&mut message, Some(&marker), flags, None)
            .await
        {
            Ok(uid) => uid,
            Err(e) => return Err(self.refused(e, [marker.as_str()])),
        };
        self.status.clear_pending_upload(&marker)?;
        Ok(Some(uid))
    }

    /// Downloads one large remote message through a file.
    async fn download_large(&mut self, uid: Uid, flags: Flags) -> Result<(), SyncError> {
        let dir = self.local.spool_dir().unwrap_or_else(std::env::temp_dir);
        self.effect()?;
        let Some(mut message) = self.remote.fetch_large(&MsgRef::Uid(uid), &dir).await? else {
            self.warn(format!(
                "message {uid} vanished from the server while being fetched"
            ));
            return Ok(());
        };
        if self.opts.filter_headers_local {
            message.drop_headers = self.opts.filter_headers.clone();
        }
        self.local
            .append_large(&mut message, None, flags, Some(uid))
            .await?;
        self.status.set(uid, flags)?;
        self.stats.copied_to_local += 1;
        self.checkpoint().await
    }

    async fn marked_append(
        &mut self,
        message: &Message,
        flags: Flags,
    ) -> Result<Option<Uid>, SyncError> {
        let markers = self.record_markers(&[&message.source]).await?;
        let Some(marker) = markers.first() else {
            // record_markers gives one marker per message.
            return Ok(None);
        };
        self.append_marked(message, marker, flags).await
    }

    /// Records an upload marker for each message and commits them together (see
    /// [`recover_uploads`]); returns the markers in order. The local side is flushed first,
    /// as before every commit: whatever the status holds is in place on disk.
    async fn record_markers(&mut self, sources: &[&MsgRef]) -> Result<Vec<String>, SyncError> {
        let mut markers = Vec::with_capacity(sources.len());
        for source in sources {
            let marker = new_marker(source.to_text().as_bytes());
            self.status.add_pending_upload(&oi_core::PendingUpload {
                marker: marker.clone(),
                source: (*source).clone(),
            })?;
            markers.push(marker);
        }
        if !markers.is_empty() {
            self.local.flush().await?;
            self.status.commit()?;
        }
        Ok(markers)
    }

    /// How many of `want` effects may happen before the crash hook fires; counts them.
    fn effects_allowed(&mut self, want: usize) -> usize {
        let left = match self.opts.crash_after {
            Some(n) => n.saturating_sub(self.effects),
            None => want,
        };
        let allowed = left.min(want);
        self.effects += allowed;
        allowed
    }

    /// The copy of a local message to upload: `filterheaders` applied, marker added.
    fn marked(&self, message: &Message, marker: &str) -> Message {
        Message {
            body: oi_core::marker::insert_marker(
                &oi_core::headers::remove_headers(&message.body, &self.opts.filter_headers),
                marker,
            ),
            ..message.clone()
        }
    }

    /// APPENDs a message with its recorded marker; the record is cleared with the next
    /// commit, after the caller recorded the new UID.
    async fn append_marked(
        &mut self,
        message: &Message,
        marker: &str,
        flags: Flags,
    ) -> Result<Option<Uid>, SyncError> {
        let marked = self.marked(message, marker);
        self.effect()?;
        let uid = match self.remote.append(&marked, flags, None).await {
            Ok(uid) => uid,
            Err(e) => return Err(self.refused(e, [marker])),
        };
        self.status.clear_pending_upload(marker)?;
        Ok(uid)
    }

    /// An upload's error, as the engine goes on with it. A [`StoreError::read_only`] means
    /// that nothing of that upload landed (stores say so only then): its markers are
    /// cleared, since nothing is left to find, and later syncs would otherwise look for
    /// them (a SELECT and a SEARCH each) as long as the folder stays read-only.
    fn refused<'a>(
        &mut self,
        e: StoreError,
        markers: impl IntoIterator<Item = &'a str>,
    ) -> SyncError {
        if e.is_read_only() {
            for marker in markers {
                if let Err(cleared) = self.status.clear_pending_upload(marker) {
                    return cleared.into();
                }
            }
        }
        e.into()
    }

    /// The outcome of the uploads, where the server refused them as read-only (a store
    /// that let the copies tell, see `Folder::accepts_copies`) taken as if it had said so
    /// beforehand: the messages not copied wait, with the read-only warning, and the
    /// folder goes on (their upload markers were cleared by [`Run::refused`]).
    fn unless_read_only(
        &mut self,
        sent: Result<(), SyncError>,
        copies: usize,
        copied_before: u64,
    ) -> Result<(), SyncError> {
        match sent {
            Err(SyncError::Store(e)) if e.is_read_only() => {
                if !self.opts.ignore_readonly {
                    let copied = usize::try_from(self.stats.copied_to_remote - copied_before)
                        .unwrap_or(copies);
                    let left = copies.saturating_sub(copied);
                    warn_read_only(self.events, self.label, Side::Remote, (left, 0, 0));
                }
                Ok(())
            }
            other => other,
        }
    }

    /// New local messages: fetch, append to the server, give the local copy the new UID,
    /// record.
    async fn upload_unsynced(&mut self, uploads: &[(String, Flags)]) -> Result<(), SyncError> {
        let (large, small): (Vec<_>, Vec<_>) = uploads
            .iter()
            .cloned()
            .partition(|(k, _)| self.is_large_local(&MsgRef::Unsynced(k.clone())));
        for (num, (key, flags)) in large.iter().enumerate() {
            self.events.emit(Event::CopyingMessage {
                account: self.label.account.clone(),
                folder: self.label.folder.clone(),
                from: Side::Local,
                uid: None,
                num: small.len() + num + 1,
                total: uploads.len(),
            });
            let source = MsgRef::Unsynced(key.clone());
            let Some(uploaded) = self.upload_large(&source, *flags).await? else {
                continue;
            };
            let Some(uid) = uploaded else {
                self.warn(format!(
                    "uploaded local message {key} but the server did not tell its UID; \
                     it stays unsynced locally"
                ));
                continue;
            };
            self.effect()?;
            self.local.assign_uid(&source, uid).await?;
            self.status.set(uid, *flags)?;
            self.stats.copied_to_remote += 1;
            self.checkpoint().await?;
        }
        let uploads = small.as_slice();
        let sizes: BTreeMap<String, u64> = uploads
            .iter()
            .map(|(k, _)| {
                let size = self.local_sizes.get(&MsgRef::Unsynced(k.clone()));
                (k.clone(), size.copied().unwrap_or(0))
            })
            .collect();
        let mut chunks = Vec::new();
        let mut rest = uploads;
        while !rest.is_empty() {
            let (mut take, mut bytes) = (0, 0u64);
            while take < rest.len() && take < BATCH_MESSAGES && bytes < BATCH_BYTES {
                bytes += sizes.get(&rest[take].0).copied().unwrap_or(0);
                take += 1;
            }
            let (chunk, tail) = rest.split_at(take);
            chunks.push(chunk);
            rest = tail;
        }
        for chunk in chunks {
            let which: Vec<MsgRef> = chunk
                .iter()
                .map(|(k, _)| MsgRef::Unsynced(k.clone()))
                .collect();
            let messages = self.local.fetch(&which).await?;
            let max_size = self.max_size;
            let messages: Vec<&Message> = messages
                .iter()
                .filter(|m| max_size.is_none_or(|max| m.body.len() as u64 <= max))
                .collect();
            // One durable record of the whole batch's markers before its first APPEND.
            let sources: Vec<&MsgRef> = messages.iter().map(|m| &m.source).collect();
            let markers = self.record_markers(&sources).await?;
            let mut batch: Vec<(Message, Flags, String)> = Vec::with_capacity(messages.len());
            for (message, marker) in messages.iter().zip(&markers) {
                let MsgRef::Unsynced(key) = &message.source else {
                    continue;
                };
                let Some((_, flags)) = chunk.iter().find(|(k, _)| k == key) else {
                    continue;
                };
                self.events.emit(Event::CopyingMessage {
                    account: self.label.account.clone(),
                    folder: self.label.folder.clone(),
                    from: Side::Local,
                    uid: None,
                    num: uploads.iter().position(|(k, _)| k == key).unwrap_or(0) + 1,
                    total: uploads.len(),
                });
                batch.push((self.marked(message, marker), *flags, marker.clone()));
            }
            // One effect per APPEND: the crash hook may stop inside the batch, and then
            // only the messages before it are sent.
            let allowed = self.effects_allowed(batch.len());
            let sent: Vec<(&Message, Flags)> =
                batch[..allowed].iter().map(|(m, f, _)| (m, *f)).collect();
            let uids = if sent.is_empty() {
                Vec::new()
            } else {
                match self.remote.append_batch(&sent).await {
                    Ok(uids) => uids,
                    Err(e) => {
                        let markers = batch[..allowed].iter().map(|(_, _, m)| m.as_str());
                        return Err(self.refused(e, markers));
                    }
                }
            };
            for (_, _, marker) in &batch[..allowed] {
                self.status.clear_pending_upload(marker)?;
            }
            if allowed < batch.len() {
                return Err(SyncError::CrashHook);
            }
            for ((message, flags, _), uid) in batch.iter().zip(uids) {
                let key = match &message.source {
                    MsgRef::Unsynced(k) => k.as_str(),
                    MsgRef::Uid(_) => "",
                };
                let Some(uid) = uid else {
                    self.warn(format!(
                        "uploaded local message {key} but the server did not tell its UID; \
                         it stays unsynced locally"
                    ));
                    continue;
                };
                self.effect()?;
                self.local.assign_uid(&message.source, uid).await?;
                self.status.set(uid, *flags)?;
                self.stats.copied_to_remote += 1;
            }
            self.checkpoint().await?;
        }
        Ok(())
    }

    /// Local messages whose UID neither the server nor the status knows (a mailbox created
    /// again on the server, a lost status): upload them all, then give each local copy its
    /// new UID. The old UIDs may be among the new ones (a recreated mailbox numbers from 1
    /// again), so the renames are ordered: none may land on a UID that a pending message
    /// still carries. Uploads in ascending old-UID order get ascending new UIDs, so the map
    /// is increasing and has no cycle; an order always exists.
    async fn reupload(&mut self, reuploads: &[(Uid, Flags)]) -> Result<(), SyncError> {
        let mut renames = Vec::new();
        for (i, &(old, flags)) in reuploads.iter().enumerate() {
            self.events.emit(Event::CopyingMessage {
                account: self.label.account.clone(),
                folder: self.label.folder.clone(),
                from: Side::Local,
                uid: Some(old),
                num: i + 1,
                total: reuploads.len(),
            });
            // One at a time: the local store opens the message (Maildir: its file, with
            // no copy), and only a small one is read into memory.
            let uploaded = match self.upload_large(&MsgRef::Uid(old), flags).await? {
                Some(uid) => uid,
                None => continue,
            };
            let Some(uid) = uploaded else {
                self.warn(format!(
                    "uploaded local message {old} but the server did not tell its UID"
                ));
                continue;
            };
            self.stats.copied_to_remote += 1;
            renames.push((old, uid, flags));
        }
        while !renames.is_empty() {
            let free = |i: usize, new: Uid| {
                renames
                    .iter()
                    .enumerate()
                    .all(|(j, (old, _, _))| j == i || *old != new)
            };
            let Some(pos) = (0..renames.len()).find(|&i| free(i, renames[i].1)) else {
                return Err(StoreError::new(
                    Severity::Folder,
                    "re-uploaded messages' new UIDs form a cycle with their old ones",
                )
                .into());
            };
            let (old, uid, flags) = renames.remove(pos);
            self.effect()?;
            self.local.assign_uid(&MsgRef::Uid(old), uid).await?;
            self.status.set(uid, flags)?;
        }
        self.checkpoint().await
    }

    /// New remote messages, fetched in bounded batches. The next batch is requested
    /// before the current one is written, so the server streams while the disk works.
    async fn download(
        &mut self,
        downloads: &[(Uid, Flags)],
        sizes: &BTreeMap<Uid, u64>,
        server_done_after: bool,
    ) -> Result<(), SyncError> {
        let large = self.large();
        let (big, small): (Vec<_>, Vec<_>) = downloads
            .iter()
            .copied()
            .partition(|(uid, _)| sizes.get(uid).is_some_and(|&s| s > large));
        for (i, (uid, flags)) in big.iter().enumerate() {
            self.events.emit(Event::CopyingMessage {
                account: self.label.account.clone(),
                folder: self.label.folder.clone(),
                from: Side::Remote,
                uid: Some(*uid),
                num: small.len() + i + 1,
                total: downloads.len(),
            });
            self.download_large(*uid, *flags).await?;
        }
        let downloads = small.as_slice();
        // Spooled bodies take no memory: a batch counts at most SPOOL_OVER of each.
        let spool = self.local.spool_dir();
        let dates = self.local.keeps_dates();
        let counted = if spool.is_some() {
            SPOOL_OVER
        } else {
            u64::MAX
        };
        let batches = batches(downloads, sizes, counted);
        let refs = |chunk: &[(Uid, Flags)]| -> Vec<MsgRef> {
            chunk.iter().map(|(u, _)| MsgRef::Uid(*u)).collect()
        };
        if batches.len() > 1 {
            self.remote
                .will_fetch(batches.iter().map(|c| refs(c)).collect());
        }
        let mut fetched = match batches.first() {
            Some(first) => {
                fetch_batch(&mut *self.remote, &refs(first), spool.as_deref(), dates).await?
            }
            None => return Ok(()),
        };
        let mut num = 0;
        for (i, chunk) in batches.iter().enumerate() {
            for (uid, _) in chunk.iter() {
                num += 1;
                self.events.emit(Event::CopyingMessage {
                    account: self.label.account.clone(),
                    folder: self.label.folder.clone(),
                    from: Side::Remote,
                    uid: Some(*uid),
                    num,
                    total: downloads.len(),
                });
            }
            let next = batches.get(i + 1).map(|c| refs(c));
            if next.is_none() && server_done_after {
                // The last batch is in: the connection can go before it is written.
                self.hand_over().await?;
            }
            let mut writer = Writer {
                local: &mut *self.local,
                status: &mut *self.status,
                effects: &mut self.effects,
                crash_after: self.opts.crash_after,
                stats: &mut self.stats,
                filter_headers: if self.opts.filter_headers_local {
                    &self.opts.filter_headers
                } else {
                    &[]
                },
            };
            let remote = &mut *self.remote;
            let spool = spool.as_deref();
            let prefetch = async {
                match &next {
                    Some(which) => fetch_batch(remote, which, spool, dates).await.map(Some),
                    None => Ok(None),
                }
            };
            let (prefetched, written) = join(prefetch, writer.write(chunk, &mut fetched)).await;
            let written = written?;
            if written < chunk.len() {
                self.warn(format!(
                    "{} message(s) vanished from the server while being fetched",
                    chunk.len() - written
                ));
            }
            self.checkpoint().await?;
            fetched = prefetched?.unwrap_or_default();
        }
        Ok(())
    }
}

/// One download batch: spooled into `spool` when the local store has one, with the
/// messages' internal dates if it keeps them ([`Folder::keeps_dates`]).
async fn fetch_batch<R: Folder>(
    remote: &mut R,
    which: &[MsgRef],
    spool: Option<&std::path::Path>,
    dates: bool,
) -> Result<Vec<Fetched>, StoreError> {
    match spool {
        Some(dir) => remote.fetch_spooled(which, dir, SPOOL_OVER, dates).await,
        None => Ok(remote
            .fetch(which)
            .await?
            .into_iter()
            .map(Fetched::Memory)
            .collect()),
    }
}

/// Splits downloads into batches bounded in count and (listed) bytes, each message
/// counted for at most `counted` bytes.
fn batches<'a>(
    downloads: &'a [(Uid, Flags)],
    sizes: &BTreeMap<Uid, u64>,
    counted: u64,
) -> Vec<&'a [(Uid, Flags)]> {
    let mut out = Vec::new();
    let mut rest = downloads;
    while !rest.is_empty() {
        let mut take = 0;
        let mut bytes = 0u64;
        while take < rest.len() && take < BATCH_MESSAGES {
            bytes += sizes.get(&rest[take].0).copied().unwrap_or(0).min(counted);
            take += 1;
            if bytes >= BATCH_BYTES {
                break;
            }
        }
        let (chunk, tail) = rest.split_at(take);
        out.push(chunk);
        rest = tail;
    }
    out
}

/// The local half of a download batch, split from [`Run`] so that it can borrow the local
/// store and the status while the remote store fetches the next batch.
struct Writer<'a, L, S> {
    local: &'a mut L,
    status: &'a mut S,
    effects: &'a mut usize,
    crash_after: Option<usize>,
    stats: &'a mut SyncStats,
    /// `filterheaders` for an IMAP local side (empty otherwise).
    filter_headers: &'a [String],
}

impl<L: Folder, S: StatusStore> Writer<'_, L, S> {
    /// Stores fetched messages under their UIDs and records them; returns how many.
    async fn write(
        &mut self,
        chunk: &[(Uid, Flags)],
        messages: &mut [Fetched],
    ) -> Result<usize, SyncError> {
        let flags_of: BTreeMap<Uid, Flags> = chunk.iter().copied().collect();
        let mut written = 0;
        for fetched in messages {
            let MsgRef::Uid(uid) = *fetched.source() else {
                continue;
            };
            let Some(flags) = flags_of.get(&uid) else {
                continue;
            };
            if self.crash_after.is_some_and(|n| *self.effects >= n) {
                return Err(SyncError::CrashHook);
            }
            *self.effects += 1;
            match fetched {
                Fetched::Spooled(large) => {
                    large.drop_headers = self.filter_headers.to_vec();
                    self.local
                        .append_large(large, None, *flags, Some(uid))
                        .await?;
                }
                Fetched::Memory(message) if self.filter_headers.is_empty() => {
                    self.local.append(message, *flags, Some(uid)).await?;
                }
                Fetched::Memory(message) => {
                    let filtered = Message {
                        body: oi_core::headers::remove_headers(&message.body, self.filter_headers),
                        ..message.clone()
                    };
                    self.local.append(&filtered, *flags, Some(uid)).await?;
                }
            }
            self.status.set(uid, *flags)?;
            self.stats.copied_to_local += 1;
            written += 1;
        }
        Ok(written)
    }
}

/// Polls two futures to completion together (both borrow different stores). The engine
/// stays free of an async runtime dependency, so this is the small join it needs.
pub(crate) async fn join<A: std::future::Future, B: std::future::Future>(
    a: A,
    b: B,
) -> (A::Output, B::Output) {
    use std::pin::pin;
    use std::task::Poll;
    let (mut a, mut b) = (pin!(a), pin!(b));
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none()
            && let Poll::Ready(v) = a.as_mut().poll(cx)
        {
            ra = Some(v);
        }
        if rb.is_none()
            && let Poll::Ready(v) = b.as_mut().poll(cx)
        {
            rb = Some(v);
        }
        if ra.is_some()
            && rb.is_some()
            && let (Some(x), Some(y)) = (ra.take(), rb.take())
        {
            return Poll::Ready((x, y));
        }
        Poll::Pending
    })
    .await
}

/// How a folder is opened on a side under a policy.
pub fn access_for(readonly: bool, dry_run: bool) -> Access {
    if readonly || dry_run {
        Access::ReadOnly
    } else {
        Access::ReadWrite
    }
}

#[cfg(test)]
mod sleep_tests {
    #[test]
    fn sleep_wakes_the_task_without_blocking_its_thread() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        // On one thread, a task that sleeps leaves the thread to the other task, which
        // counts meanwhile; a blocking sleep would let it count only afterwards.
        let counted = rt.block_on(async {
            let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let c = count.clone();
            let counter = tokio::spawn(async move {
                loop {
                    c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            });
            super::sleep(std::time::Duration::from_millis(50)).await;
            let seen = count.load(std::sync::atomic::Ordering::Relaxed);
            counter.abort();
            seen
        });
        assert!(counted > 0, "the other task never ran during the sleep");
    }
}
