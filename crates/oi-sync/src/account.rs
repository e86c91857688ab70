//! One account: match the folders of both repositories, create what is missing where the
//! policy allows, and sync each folder pair, isolating folder failures.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use oi_core::{
    Event, EventSink, Folder, ListingWish, Repository, Severity, Side, StatusStore, StoreError,
    SyncStats,
};

use crate::execute::{
    ExecOptions, FolderLabel, LARGE_MESSAGE_BYTES, RemoteDone, SPOOL_OVER, SyncError, access_for,
    join, prepare_local, sync_folder_releasing,
};
use crate::planner::Policy;

/// Opens the status of one folder pair.
pub trait StatusFactory: Send + Sync {
    /// The status store type.
    type Status: StatusStore;

    /// Opens the status named `status_name` (OfflineIMAP's LocalStatus file name) for the
    /// pair `remote_folder` / `local_folder` (each in its repository's own naming).
    fn open(
        &self,
        status_name: &str,
        remote_folder: &str,
        local_folder: &str,
    ) -> Result<Self::Status, StoreError>;

    /// The token of the remote listing kept in a pair's status ([`StatusStore::cached_token`]),
    /// read without opening the status for the sync: for
    /// [`Repository::prepare_listings`], before the folders' turns. The default knows none.
    fn peek_remote_token(&self, status_name: &str) -> Option<String> {
        let _ = status_name;
        None
    }

    /// Starts reading the statuses ahead, while the server answers the folder LIST, for
    /// [`StatusFactory::open`] to take what was read instead of reading it then. The
    /// default reads nothing ahead.
    fn read_ahead(&self) {}

    /// Drops everything remembered about a pair (its records and the saved UIDVALIDITY of
    /// both sides). Called when one side's folder had to be created: whatever the status
    /// says about it describes a folder that is gone, and reading it would turn every
    /// message of the other side into a deletion (OfflineIMAP purges it too).
    fn forget(
        &self,
        status_name: &str,
        remote_folder: &str,
        local_folder: &str,
    ) -> Result<(), StoreError>;
}

/// A folder name seen from the other side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Translated {
    /// The name after this side's `nametrans`, with this side's separator
    /// (OfflineIMAP's "visible name"; the remote's gives the LocalStatus name).
    pub visible: String,
    /// The name of the same folder on the other side (separators swapped).
    pub other: String,
}

/// Which folders take part and what they are called on the other side: OfflineIMAP's
/// `folderfilter`, `nametrans`, `folderincludes` and `foldersort`. The binary evaluates
/// the Python; the engine only asks, a whole list at a time (one helper round trip).
pub trait FolderNaming: Send + Sync {
    /// For each folder of `side`: `None` when its folderfilter excludes it (only asked
    /// when `filter` is true), else its visible name and its name on the other side.
    fn translate(
        &self,
        side: Side,
        names: &[String],
        own_sep: char,
        other_sep: char,
        filter: bool,
    ) -> Result<Vec<Option<Translated>>, StoreError>;

    /// `folderincludes` of a side.
    fn includes(&self, side: Side) -> Result<Vec<String>, StoreError>;

    /// The order in which to sync remote folders, given their visible names: a
    /// permutation of `0..visible.len()`.
    fn order(&self, visible: &[String]) -> Result<Vec<usize>, StoreError>;

    /// Whether the user set that order (`foldersort`): the folders are then synced in it
    /// exactly, not the busiest first (see `Repository::prepare_listings`).
    fn order_is_set(&self) -> bool {
        false
    }

    /// `copy_ignore_eval` of the remote repository: the UIDs of the remote folder (its
    /// server name) that are never copied to the local side.
    fn copy_ignore(&self, remote_folder: &str) -> Result<Vec<oi_core::Uid>, StoreError> {
        let _ = remote_folder;
        Ok(Vec::new())
    }

    /// Whether the remote repository has a `copy_ignore_eval` at all (without evaluating
    /// it: [`FolderNaming::copy_ignore`] does, for each folder when its sync starts).
    fn ignores_copies(&self) -> bool {
        false
    }
}

/// No Python options: every folder, names equal but for the separators.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainNaming;

impl FolderNaming for PlainNaming {
    fn translate(
        &self,
        _side: Side,
        names: &[String],
        own_sep: char,
        other_sep: char,
        _filter: bool,
    ) -> Result<Vec<Option<Translated>>, StoreError> {
        Ok(names
            .iter()
            .map(|n| {
                Some(Translated {
                    visible: n.clone(),
                    other: local_name(n, own_sep, other_sep),
                })
            })
            .collect())
    }

    fn includes(&self, _side: Side) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    /// OfflineIMAP's default: case-insensitive by visible name (a stable sort).
    fn order(&self, visible: &[String]) -> Result<Vec<usize>, StoreError> {
        let mut idx: Vec<usize> = (0..visible.len()).collect();
        idx.sort_by_key(|&i| visible[i].to_lowercase());
        Ok(idx)
    }
}

/// A folder sync under way, and whether it has given its connection back (it is then
/// only finishing its local side).
type UnderWay<'f, T> = (
    Pin<Box<dyn Future<Output = T> + Send + 'f>>,
    Arc<AtomicBool>,
);

/// How many of the folders under way still need the server (have not given their
/// connection back).
fn needing_server<T>(running: &[UnderWay<'_, T>]) -> usize {
    running
        .iter()
        .filter(|(_, released)| !released.load(Ordering::Relaxed))
        .count()
}

/// Waits for the first of the running folder syncs to finish and removes it (`Some`), or
/// for one of them to give its connection back (`None`: another folder may start).
async fn next_done<T>(running: &mut Vec<UnderWay<'_, T>>) -> Option<T> {
    let before = needing_server(running);
    std::future::poll_fn(|cx| {
        for i in 0..running.len() {
            if let Poll::Ready(v) = running[i].0.as_mut().poll(cx) {
                drop(running.swap_remove(i));
                return Poll::Ready(Some(v));
            }
        }
        // A folder gives its connection back while polled above, in this same task.
        if needing_server(running) < before {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// The connections an account may hold at once (`maxconnections`), handed to folders as
/// they start and taken back as soon as a folder is done with the server (see
/// [`crate::execute::sync_folder_releasing`]), which can be well before it is done.
/// Runtime-free: every waiting folder is polled by the account's own loop.
struct Slots {
    free: std::sync::Mutex<usize>,
    waiting: std::sync::Mutex<Vec<std::task::Waker>>,
}

impl Slots {
    fn new(n: usize) -> Slots {
        Slots {
            free: std::sync::Mutex::new(n),
            waiting: std::sync::Mutex::new(Vec::new()),
        }
    }

    async fn take(&self) -> Slot<'_> {
        std::future::poll_fn(|cx| {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            if *free > 0 {
                *free -= 1;
                return Poll::Ready(Slot(self));
            }
            self.waiting
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }
}

/// A connection slot; dropping it frees the slot.
struct Slot<'a>(&'a Slots);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.free.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        let waiting =
            std::mem::take(&mut *self.0.waiting.lock().unwrap_or_else(|e| e.into_inner()));
        for w in waiting {
            w.wake();
        }
    }
}

/// How many folders that gave their connection back may finish their local side while
/// the next ones sync (see `sync_account`).
const FINISHING: usize = 4;

/// A folder pair's names.
struct PairNames<'a> {
    remote: &'a str,
    local: &'a str,
    status: &'a str,
}

/// What an account sync is allowed to do besides syncing messages.
#[derive(Debug, Clone, Default)]
pub struct AccountPolicy {
    /// Message policy of every folder pair.
    pub folders: Policy,
    /// `createfolders` of the remote repository.
    pub create_remote: bool,
    /// `createfolders` of the local repository.
    pub create_local: bool,
    /// `-f`: sync only these remote folders.
    pub only_folders: Option<Vec<String>>,
    /// How many folders to sync at once (`maxconnections`; 0 and 1 mean one).
    pub connections: usize,
}

/// The outcome of an account sync.
#[derive(Debug, Default)]
pub struct AccountReport {
    /// What changed.
    pub stats: SyncStats,
    /// Folders that failed, with their errors.
    pub failed: Vec<(String, SyncError)>,
    /// The worst severity seen (None when all went well).
    pub worst: Option<Severity>,
    /// Local names of the folders whose sync was started (OfflineIMAP's mbnames list).
    pub folders: Vec<String>,
    /// What each folder that synced changed, by remote name.
    pub per_folder: Vec<(String, SyncStats)>,
}

impl AccountReport {
    /// Records a folder that failed before its sync started (folder creation, the
    /// nametrans round trip), and tells the user why: the sync loop reports its own.
    fn fail_early(
        &mut self,
        events: &dyn EventSink,
        account: &str,
        folder: String,
        error: SyncError,
    ) {
        events.emit(Event::Error {
            account: Some(account.to_string()),
            folder: Some(folder.clone()),
            severity: error.severity(),
            message: error.to_string(),
        });
        self.fail(folder, error);
    }

    fn fail(&mut self, folder: String, error: SyncError) {
        let severity = error.severity();
        self.worst = Some(self.worst.map_or(severity, |w| w.max(severity)));
        self.failed.push((folder, error));
    }
}

/// The local name of a remote folder (OfflineIMAP: the separator is swapped).
pub fn local_name(remote: &str, remote_sep: char, local_sep: char) -> String {
    remote.replace(remote_sep, &local_sep.to_string())
}

/// The LocalStatus name of a remote folder (OfflineIMAP: remote separator → `.`).
pub fn status_name(remote: &str, remote_sep: char) -> String {
    remote.replace(remote_sep, ".")
}

/// Syncs every folder of one account.
#[allow(clippy::too_many_arguments)] // the account's whole context; a struct would only rename it
pub async fn sync_account<RR, LR, SF>(
    account: &str,
    remote: &RR,
    local: &LR,
    status: &SF,
    naming: &dyn FolderNaming,
    policy: &AccountPolicy,
    opts: &ExecOptions,
    events: &dyn EventSink,
) -> Result<AccountReport, SyncError>
where
    RR: Repository,
    LR: Repository,
    SF: StatusFactory,
{
    if let Some(only) = &policy.only_folders {
        remote.syncing_only(only);
    }
    // The local side is listed, and its first folders read ahead, while the server
    // answers its LIST (which, with LIST-STATUS, can take a while on a big account).
    // Not for a sync of chosen folders: their local names are not known yet.
    let local_side = async {
        // The statuses too, all of them: the folders' status names follow from the
        // remote names, which the LIST brings.
        if policy.only_folders.is_none() {
            status.read_ahead();
        }
        let listed = local.list_folders().await;
        if let Ok(names) = &listed
            && policy.only_folders.is_none()
        {
            let mut names = names.clone();
            names.sort();
            local.prepare_many(&names);
        }
        listed
    };
    // Boxed: both listings (each may connect) would otherwise sit in this future at once.
    let (listed_remote, listed_local) =
        join(Box::pin(remote.list_folders()), Box::pin(local_side)).await;
    let listed_remote = listed_remote?;
    // After LIST: the IMAP delimiter is learned from it.
    let (rsep, lsep) = (remote.separator(), local.separator());
    let listed_local: BTreeSet<String> = listed_local?.into_iter().collect();

    // Remote folders that take part: listed plus folderincludes, through folderfilter
    // (or exactly the -f list, which overrides both, as in OfflineIMAP).
    let mut remote_names: Vec<String> = listed_remote.clone();
    match &policy.only_folders {
        Some(only) => remote_names.retain(|n| only.contains(n)),
        None => {
            for extra in naming.includes(Side::Remote)? {
                if !remote_names.contains(&extra) {
                    remote_names.push(extra);
                }
            }
        }
    }
    let filtered = policy.only_folders.is_none();
    let mapped = naming.translate(Side::Remote, &remote_names, rsep, lsep, filtered)?;
    let mut remote_pairs: Vec<(String, Translated)> = remote_names
        .into_iter()
        .zip(mapped)
        .filter_map(|(name, t)| t.map(|t| (name, t)))
        .collect();
    let order = naming.order(
        &remote_pairs
            .iter()
            .map(|(_, t)| t.visible.clone())
            .collect::<Vec<_>>(),
    )?;
    remote_pairs = order
        .into_iter()
        .filter_map(|i| remote_pairs.get(i).cloned())
        .collect();
    let remote_set: BTreeSet<&str> = listed_remote.iter().map(String::as_str).collect();

    // Pairs of (remote name, local name, status name), creating what is missing.
    let mut pairs = Vec::new();
    let mut report = AccountReport::default();
    for (rname, t) in &remote_pairs {
        // A folder still to be created locally gets the local store's full name (an IMAP
        // local side with `reference` puts it under the reference).
        let lname = if listed_local.contains(&t.other) {
            t.other.clone()
        } else {
            local.new_folder_name(&t.other)
        };
        let sname = t.visible.replace(rsep, ".");
        // Two server folders that come to one local folder or one LocalStatus file (say
        // `a.b` and `a/b` on a server whose separator is `/`) would mix their messages:
        // each would see the other's as its own to upload or delete. The first one syncs.
        if let Some((other, _, _)) = pairs.iter().find(|(_, l, st)| *l == lname || *st == sname) {
            let e = StoreError::new(
                Severity::Folder,
                format!(
                    "folder {rname} would share the local folder {lname} (status {sname}) \
                     with folder {other}: not syncing it (rename one of them, or tell them \
                     apart with nametrans)"
                ),
            );
            report.fail_early(events, account, rname.clone(), e.into());
            continue;
        }
        if !remote_set.contains(rname.as_str()) {
            // A folderincludes entry the server does not list: sync it only if it exists
            // locally or can be opened; OfflineIMAP does not create it on the server.
            if !listed_local.contains(&lname) {
                continue;
            }
        }
        if !listed_local.contains(&lname) {
            if lname != t.other
                && let Err(e) = translates_back(naming, Side::Local, &lname, rname, lsep, rsep)
            {
                report.fail_early(events, account, rname.clone(), e.into());
                continue;
            }
            let allowed = policy.create_local && !policy.folders.local.readonly;
            if !create(local, Side::Local, &lname, allowed, account, opts, events).await {
                continue;
            }
            if let Err(e) = status.forget(&sname, rname, &lname) {
                report.fail_early(events, account, rname.clone(), e.into());
                continue;
            }
        }
        pairs.push((rname.clone(), lname, sname));
    }

    // Local folders the server lacks: create them there, when their names translate back.
    if policy.only_folders.is_none() {
        let local_names: Vec<String> = listed_local.iter().cloned().collect();
        let to_remote = naming.translate(Side::Local, &local_names, lsep, rsep, true)?;
        for (lname, t) in local_names.iter().zip(to_remote) {
            let Some(t) = t else { continue };
            if remote_set.contains(t.other.as_str()) || pairs.iter().any(|(_, l, _)| l == lname) {
                continue;
            }
            let rname = remote.new_folder_name(&t.other);
            // OfflineIMAP refuses to create a folder whose name would not come back to the
            // local one through the remote's nametrans: the next run would create another.
            let back = match translates_back(naming, Side::Remote, &rname, lname, rsep, lsep) {
                Ok(Some(back)) => back,
                Ok(None) => continue,
                Err(e) => {
                    report.fail_early(events, account, rname.clone(), e.into());
                    continue;
                }
            };
            let sname = back.visible.replace(rsep, ".");
            let allowed = policy.create_remote && !policy.folders.remote.readonly;
            let created =
                create_checked(remote, Side::Remote, &rname, allowed, account, opts, events).await;
            let created = created.and_then(|done| {
                if done {
                    status.forget(&sname, &rname, lname)?;
                }
                Ok(done)
            });
            match created {
                Ok(true) => pairs.push((rname, lname.clone(), sname)),
                Ok(false) => {}
                Err(e) => report.fail_early(events, account, rname, e.into()),
            }
        }
    }

    if pairs.is_empty() && report.failed.is_empty() && !opts.dry_run {
        // OfflineIMAP's "no folder to sync (folderfilter issue?)": surely a mistake.
        return Err(StoreError::new(
            Severity::Repository,
            format!("account {account}: no folder to sync (folderfilter issue?)"),
        )
        .into());
    }
    // Up to `connections` folders at once (OfflineIMAP's maxconnections), each on its own
    // connection. A stop request is honoured at every folder's own safe point: in-flight
    // folders are waited for, never dropped mid-step.
    type Outcome = (String, Result<SyncStats, SyncError>);
    // One folder more than there are connections needs the server: it starts as soon as
    // a running one no longer needs it. The folders that gave their connection back and
    // are finishing their local side (writing and syncing files, committing the status)
    // do not count: up to FINISHING of them go on meanwhile. Those hold no listing (it is
    // dropped before the effects), only their plan, the local store's file index and the
    // status connection.
    let limit = policy.connections.max(1);
    // The folders' order before those asked for ahead go first: `report.folders` keeps it
    // (mbnames writes them in it, as OfflineIMAP does).
    let listed_order: HashMap<String, usize> = pairs
        .iter()
        .enumerate()
        .map(|(i, (_, lname, _))| (lname.clone(), i))
        .collect();
    // The server may answer for every folder whose kept listing it can bring up to date,
    // all at once, while the first folders are opened (see `Repository::prepare_listings`).
    // A quick sync checks each folder its own way first.
    if !opts.quick && pairs.len() > 1 {
        let access = access_for(policy.folders.remote.readonly, opts.dry_run);
        // Whether every new message will be downloaded, as `download` will (see
        // `NewBodies`): then the server may send the bodies with the listing.
        let p = &policy.folders;
        let all_new = !opts.dry_run
            && !p.local.readonly
            && p.max_age.is_none()
            && p.start_date.is_none()
            && p.max_size.is_none()
            && !naming.ignores_copies();
        let new_bodies = |lname: &str| {
            if !all_new {
                return None;
            }
            Some(oi_core::NewBodies {
                up_to: opts.large_message_bytes.unwrap_or(LARGE_MESSAGE_BYTES),
                spool_dir: local.spool_dir(lname)?,
                spool_over: SPOOL_OVER,
            })
        };
        let wishes = pairs
            .iter()
            .filter_map(|(rname, lname, sname)| {
                let token = status.peek_remote_token(sname)?;
                Some(ListingWish {
                    name: rname.clone(),
                    access,
                    token,
                    new_bodies: new_bodies(lname),
                })
            })
            .collect::<Vec<_>>();
        if wishes.len() > 1 {
            // The folders asked for ahead go first, in the order asked (the busiest first,
            // see `Repository::prepare_listings`): one left out that went before them would
            // wait for the connection they share, holding a place among the folders under
            // way while their answers wait. The others keep their order. An order the user
            // set (`foldersort`) stays as it is.
            let in_order = naming.order_is_set();
            let ahead: HashMap<String, usize> = remote
                .prepare_listings(wishes, in_order)
                .await
                .into_iter()
                .enumerate()
                .map(|(i, name)| (name, i))
                .collect();
            if !in_order {
                pairs.sort_by_key(|(rname, _, _)| ahead.get(rname).copied().unwrap_or(usize::MAX));
            }
        }
    }
    let slots = Slots::new(limit);
    let slots = &slots;
    let mut queue = pairs.into_iter().peekable();
    let mut running: Vec<UnderWay<'_, Outcome>> = Vec::new();
    let mut stop: Option<SyncError> = None;
    loop {
        while stop.is_none()
            && needing_server(&running) < limit + 1
            && running.len() < limit + 1 + FINISHING
        {
            let Some((rname, lname, sname)) = queue.next() else {
                break;
            };
            if opts.cancel.is_cancelled() {
                stop = Some(SyncError::Cancelled);
                break;
            }
            report.folders.push(lname.clone());
            let released = Arc::new(AtomicBool::new(false));
            let gave_back = released.clone();
            let folder: Pin<Box<dyn Future<Output = Outcome> + Send + '_>> = Box::pin(async move {
                let label = FolderLabel {
                    account: account.to_string(),
                    folder: rname.clone(),
                };
                let names = PairNames {
                    remote: &rname,
                    local: &lname,
                    status: &sname,
                };
                let folder_opts = match naming.copy_ignore(&rname) {
                    Ok(ignored) if ignored.is_empty() => None,
                    Ok(ignored) => Some(ExecOptions {
                        copy_ignore: ignored,
                        ..opts.clone()
                    }),
                    Err(e) => return (rname, Err(e.into())),
                };
                let opts = folder_opts.as_ref().unwrap_or(opts);
                let result = sync_pair(
                    remote, local, status, &names, policy, opts, events, &label, slots, &gave_back,
                )
                .await;
                (rname, result)
            });
            running.push((folder, released));
            // The next folder's local side can be read while this one syncs.
            if let Some((_, next, _)) = queue.peek() {
                local.prepare(next);
            }
        }
        if running.is_empty() {
            break;
        }
        let Some((rname, result)) = next_done(&mut running).await else {
            continue;
        };
        match result {
            Ok(stats) => {
                report.stats.add(&stats);
                report.per_folder.push((rname.clone(), stats));
                events.emit(Event::FolderDone {
                    account: account.to_string(),
                    folder: rname,
                    stats,
                });
            }
            // A crash is a crash: no folder goes on.
            Err(SyncError::CrashHook) => return Err(SyncError::CrashHook),
            Err(SyncError::Cancelled) => stop = Some(SyncError::Cancelled),
            Err(e) => {
                let severity = e.severity();
                events.emit(Event::Error {
                    account: Some(account.to_string()),
                    folder: Some(rname.clone()),
                    severity,
                    message: e.to_string(),
                });
                report.fail(rname, e);
                if severity >= Severity::Repository && stop.is_none() {
                    // The repository is unusable: start nothing more, let the others end.
                    queue = Vec::new().into_iter().peekable();
                }
            }
        }
    }
    if let Some(e) = stop {
        return Err(e);
    }
    report
        .folders
        .sort_by_key(|lname| listed_order.get(lname).copied());
    Ok(report)
}

#[allow(clippy::too_many_arguments)] // the pair's whole context; a struct would only rename it
async fn sync_pair<RR, LR, SF>(
    remote: &RR,
    local: &LR,
    status: &SF,
    names: &PairNames<'_>,
    policy: &AccountPolicy,
    opts: &ExecOptions,
    events: &dyn EventSink,
    label: &FolderLabel,
    slots: &Slots,
    released: &AtomicBool,
) -> Result<SyncStats, SyncError>
where
    RR: Repository,
    LR: Repository,
    SF: StatusFactory,
{
    let p = &policy.folders;
    let (rname, lname) = (names.remote, names.local);
    // A local side that holds connections of its own (IMAP ↔ IMAP) takes the folder's slot
    // before anything is opened and keeps it to the end: no overlap, one folder at a time
    // per connection, as before.
    let holds = local.holds_connections();
    let early = if holds {
        Some(slots.take().await)
    } else {
        None
    };
    let mut status = status.open(names.status, rname, lname)?;
    let remote_token = status.cached_token(Side::Remote)?;
    let mut lfolder = local
        .open_folder(lname, access_for(p.local.readonly, opts.dry_run))
        .await?;
    // The server side waits for a connection (held by the folder before this one while
    // that one talks to the server) and then for the SELECT (which a folder opened from
    // its listed state sends only if that state is not the one of the kept listing; see
    // `Folder::prepare_listing`); the local side is read meanwhile. The server side is
    // polled first, so that a free connection sends its SELECT before the local reading,
    // which never waits, keeps this task busy.
    let server_side = async move {
        let slot = match early {
            Some(slot) => slot,
            None => slots.take().await,
        };
        if opts.cancel.is_cancelled() {
            return Err(SyncError::Cancelled);
        }
        events.emit(Event::FolderStart {
            account: label.account.clone(),
            folder: rname.to_string(),
        });
        events.emit(Event::SyncingFolder {
            account: label.account.clone(),
            folder: rname.to_string(),
            local_folder: lname.to_string(),
        });
        let mut rfolder = remote
            .open_folder(rname, access_for(p.remote.readonly, opts.dry_run))
            .await?;
        // Not for a quick sync, whose check needs the folder selected before any listing
        // (the changes a store would ask for ahead would be dropped there).
        if !opts.quick {
            rfolder.prepare_listing(remote_token.as_deref()).await?;
        }
        Ok((slot, rfolder))
    };
    let (opened, prep) = join(server_side, prepare_local(&mut lfolder, &mut status, opts)).await;
    let (slot, mut rfolder) = opened?;
    let prep = prep?;
    // The slot is freed with the remote folder, or, for a local side that holds its own
    // connection, only when this function ends.
    let (remote_done, _held_to_end) = if holds {
        (None, Some(slot))
    } else {
        let done: RemoteDone<'_> = Box::new(move || {
            drop(slot);
            released.store(true, Ordering::Relaxed);
        });
        (Some(done), None)
    };
    sync_folder_releasing(
        &mut rfolder,
        &mut lfolder,
        &mut status,
        p,
        opts,
        events,
        label,
        remote_done,
        prep,
    )
    .await
}

/// Checks that a folder about to be created as `name` on `side` comes back through that
/// side's nametrans as `want`, the name it was made for. `Ok(None)` when the folder filter
/// drops it (nothing to create then).
fn translates_back(
    naming: &dyn FolderNaming,
    side: Side,
    name: &str,
    want: &str,
    from: char,
    to: char,
) -> Result<Option<Translated>, StoreError> {
    let back = naming.translate(side, &[name.to_string()], from, to, false)?;
    let Some(Some(back)) = back.into_iter().next() else {
        return Ok(None);
    };
    if back.other != want {
        let (this, other) = match side {
            Side::Remote => ("on the server", "remote"),
            Side::Local => ("locally", "local"),
        };
        return Err(StoreError::new(
            Severity::Folder,
            format!(
                "folder {want} would be created {this} as {name}, which the {other} nametrans \
                 maps to {} and not back to {want}; not creating it (fix the nametrans options \
                 so that they invert each other, and with `reference` strip its prefix)",
                back.other
            ),
        ));
    }
    Ok(Some(back))
}

async fn create<R: Repository>(
    repo: &R,
    side: Side,
    name: &str,
    allowed: bool,
    account: &str,
    opts: &ExecOptions,
    events: &dyn EventSink,
) -> bool {
    match create_checked(repo, side, name, allowed, account, opts, events).await {
        Ok(done) => done,
        Err(e) => {
            events.emit(Event::Error {
                account: Some(account.to_string()),
                folder: Some(name.to_string()),
                severity: e.severity(),
                message: e.to_string(),
            });
            false
        }
    }
}

/// Creates a missing folder when allowed. `Ok(true)` when the pair can be synced (created,
/// or would be in a dry run).
async fn create_checked<R: Repository>(
    repo: &R,
    side: Side,
    name: &str,
    allowed: bool,
    account: &str,
    opts: &ExecOptions,
    events: &dyn EventSink,
) -> Result<bool, StoreError> {
    if !allowed {
        events.emit(Event::Info {
            message: format!(
                "{account}: folder {name} is missing on the {side} side and may not be created \
                 there (createfolders/readonly); not syncing it"
            ),
        });
        return Ok(false);
    }
    if opts.dry_run {
        events.emit(Event::Planned {
            account: account.to_string(),
            folder: name.to_string(),
            what: format!("create folder {name} on {side}"),
        });
        return Ok(false);
    }
    repo.create_folder(name).await?;
    events.emit(Event::FolderCreated {
        account: account.to_string(),
        side,
        folder: name.to_string(),
    });
    Ok(true)
}
