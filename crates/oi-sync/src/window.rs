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

use oi_core::{AgeCutoff, Flags, Folder, Listing, MsgRef, StatusStore, StoreError, Uid};

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
