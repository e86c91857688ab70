//! `maxage`: only the messages of a recent window take part in a folder's sync.
//!
//! OfflineIMAP's `cachemessagelists_upto_date`: the window is a UID range, not a set of
//! dates, so that both sides and the status see the same messages. The server is asked for
//! the messages since the cutoff; the smallest such UID starts the window on both sides.
//! When the server has none, the local side's own dates give that smallest UID instead
//! (and its new messages without a UID are taken only when recent). Everything below the
//! window is hidden from both listings, so a message that left the window is neither
//! copied nor read as deleted, and its status record is forgotten as OfflineIMAP forgets it
//! ("not being tracked (e.g. because of maxage)"): should the window ever grow back over
//! it, a copy deleted meanwhile on one side is copied again rather than deleted on the
//! other.

use std::collections::{BTreeMap, BTreeSet};

use oi_core::{
    AgeCutoff, Flags, Folder, Listing, MsgRef, Severity, Side, StatusStore, StoreError, Uid,
};

/// The two cutoffs of `maxage`. They differ as in OfflineIMAP: the server is searched
/// from the day after the local cutoff (`accounts.py` adds a day before `SEARCH SINCE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxAge {
    /// What the remote side is searched with.
    pub remote: AgeCutoff,
    /// What the local side's messages are compared with.
    pub local: AgeCutoff,
}

/// Narrows both listings and the status records to the window of `max_age`; the records
/// left out are removed from `status` too, unless `dry_run`.
#[allow(clippy::too_many_arguments)]
pub async fn apply_max_age<R: Folder, L: Folder, S: StatusStore>(
    remote: &mut R,
    local: &mut L,
    status: &mut S,
    dry_run: bool,
    max_age: MaxAge,
    remote_list: &mut Listing,
    local_list: &mut Listing,
    records: &mut BTreeMap<Uid, Flags>,
) -> Result<(), StoreError> {
    let remote_recent = uids_of(remote.messages_since(max_age.remote).await?, remote_list);
    let start = match remote_recent.first() {
        Some(&start) => Some(start),
        None => {
            // No recent mail on the server: the local side's dates decide, and only its
            // recent new messages are uploaded.
            let within = local.messages_since(max_age.local).await?;
            if let Some(within) = &within {
                let keys: BTreeSet<&str> = within
                    .iter()
                    .filter_map(|r| match r {
                        MsgRef::Unsynced(k) => Some(k.as_str()),
                        MsgRef::Uid(_) => None,
                    })
                    .collect();
                local_list
                    .unsynced
                    .retain(|m| keys.contains(m.key.as_str()));
            }
            uids_of(within, local_list).first().copied()
        }
    };
    let in_window = |uid: &Uid| start.is_some_and(|start| *uid >= start);
    remote_list.messages.retain(|uid, _| in_window(uid));
    local_list.messages.retain(|uid, _| in_window(uid));
    let forgotten: Vec<Uid> = records.keys().copied().filter(|u| !in_window(u)).collect();
    records.retain(|uid, _| in_window(uid));
    if !dry_run && !forgotten.is_empty() {
        for uid in forgotten {
            status.remove(uid)?;
        }
        status.commit()?;
    }
    Ok(())
}

/// The UIDs of `within` that the listing holds, in order (every UID of the listing when
/// the store cannot tell dates).
fn uids_of(within: Option<Vec<MsgRef>>, listing: &Listing) -> Vec<Uid> {
    let mut uids: Vec<Uid> = match within {
        None => listing.messages.keys().copied().collect(),
        Some(refs) => refs
            .into_iter()
            .filter_map(|r| match r {
                MsgRef::Uid(uid) if listing.messages.contains_key(&uid) => Some(uid),
                _ => None,
            })
            .collect(),
    };
    uids.sort();
    uids
}

/// `startdate` on one repository (OfflineIMAP's `cachemessagelists_startdate`): that side
/// (the "partial" one) takes part only from its first message since the day; the other
/// side must be empty when the folder is first synced this way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartDate {
    /// The side whose repository has `startdate`.
    pub partial: Side,
    /// The day (IMAP: `SEARCH SINCE` that day; Maildir: local midnight).
    pub since: AgeCutoff,
}

/// Narrows the partial side's listing to its window: on the first sync, to its messages
/// since the day (whose smallest UID is saved as the folder's StartUID, 1 when there is
/// none); afterwards, to the UIDs from the saved one on.
///
/// The UIDs compared and saved are the partial folder's own ([`Folder::own_uid`]), as
/// OfflineIMAP saves them: for a local IMAP folder of an IMAP↔IMAP sync, the local
/// server's UIDs, not the remote ones its listing is keyed by. Asking the folder for each
/// message's own UID keeps this one code path for every store, rather than teaching the
/// engine about the mapping.
#[allow(clippy::too_many_arguments)]
pub async fn apply_start_date<R: Folder, L: Folder, S: StatusStore>(
    remote: &mut R,
    local: &mut L,
    status: &mut S,
    dry_run: bool,
    start: StartDate,
    remote_list: &mut Listing,
    local_list: &mut Listing,
    folder: &str,
) -> Result<(), StoreError> {
    match start.partial {
        Side::Remote => {
            narrow_partial(
                remote,
                remote_list,
                local_list,
                status,
                dry_run,
                start,
                folder,
            )
            .await
        }
        Side::Local => {
            narrow_partial(
                local,
                local_list,
                remote_list,
                status,
                dry_run,
                start,
                folder,
            )
            .await
        }
    }
}

/// [`apply_start_date`] on the partial side's folder and listing.
async fn narrow_partial<F: Folder, S: StatusStore>(
    partial: &mut F,
    partial_list: &mut Listing,
    new_list: &Listing,
    status: &mut S,
    dry_run: bool,
    start: StartDate,
    folder: &str,
) -> Result<(), StoreError> {
    if let Some(first) = status.start_uid(start.partial)? {
        // Messages without a UID of their own yet are new, so always taken.
        keep_own_uids(&*partial, partial_list, |own, _| {
            own.is_none_or(|own| own >= first)
        });
        return Ok(());
    }
    if !new_list.messages.is_empty() || !new_list.unsynced.is_empty() {
        return Err(StoreError::new(
            Severity::Folder,
            format!(
                "folder {folder}: to use startdate on the {} repository, the {} repository must be empty (it is only read from the day on when the folder is first synced)",
                start.partial,
                start.partial.other(),
            ),
        ));
    }
    if let Some(within) = partial.messages_since(start.since).await? {
        let keys: BTreeSet<&str> = within
            .iter()
            .filter_map(|r| match r {
                MsgRef::Unsynced(k) => Some(k.as_str()),
                MsgRef::Uid(_) => None,
            })
            .collect();
        let listed = |r: &MsgRef| match r {
            MsgRef::Uid(uid) => partial_list.messages.contains_key(uid),
            MsgRef::Unsynced(k) => partial_list.unsynced.iter().any(|m| &m.key == k),
        };
        let recent = within
            .iter()
            .filter(|r| listed(r))
            .filter_map(|r| partial.own_uid(r))
            .min();
        // As OfflineIMAP's Maildir scan: older messages above the first recent UID (a
        // re-uploaded copy) are kept, so that the list is the UID range it saves. Those
        // without a UID of their own are taken when recent.
        keep_own_uids(&*partial, partial_list, |own, key| match own {
            Some(own) => recent.is_some_and(|first| own >= first),
            None => key.is_some_and(|k| keys.contains(k)),
        });
    }
    let first = own_uids(&*partial, partial_list).min().unwrap_or(1);
    if !dry_run {
        status.save_start_uid(start.partial, first)?;
    }
    Ok(())
}

/// Keeps the messages of `listing` for which `keep(own UID, unsynced key)` holds.
fn keep_own_uids<F: Folder>(
    folder: &F,
    listing: &mut Listing,
    keep: impl Fn(Option<u32>, Option<&str>) -> bool,
) {
    listing
        .messages
        .retain(|uid, _| keep(folder.own_uid(&MsgRef::Uid(*uid)), None));
    listing.unsynced.retain(|m| {
        keep(
            folder.own_uid(&MsgRef::Unsynced(m.key.clone())),
            Some(&m.key),
        )
    });
}

/// The own UIDs of the messages of `listing` that have one.
fn own_uids<'a, F: Folder>(folder: &'a F, listing: &'a Listing) -> impl Iterator<Item = u32> + 'a {
    listing
        .messages
        .keys()
        .map(|uid| MsgRef::Uid(*uid))
        .chain(
            listing
                .unsynced
                .iter()
                .map(|m| MsgRef::Unsynced(m.key.clone())),
        )
        .filter_map(|r| folder.own_uid(&r))
}

/// `copy_ignore_eval`: drops the downloads of the listed remote UIDs from a plan (only
/// copies: the messages still get their flags and deletions synced once recorded).
pub fn skip_ignored_copies(
    mut plan: crate::planner::Plan,
    ignored: &[Uid],
    events: &dyn oi_core::EventSink,
    label: &crate::execute::FolderLabel,
) -> crate::planner::Plan {
    if ignored.is_empty() {
        return plan;
    }
    plan.steps.retain(|step| match step {
        crate::planner::Step::Copy {
            from: Side::Remote,
            uid,
            ..
        } if ignored.contains(uid) => {
            events.emit(oi_core::Event::Info {
                message: format!(
                    "IGNORED: Copy message UID {uid} of folder {} (account {}): listed by copy_ignore_eval",
                    label.folder, label.account
                ),
            });
            false
        }
        _ => true,
    });
    plan
}
