//! One account: match the folders of both repositories, create what is missing where the
//! policy allows, and sync each folder pair, isolating folder failures.

use std::collections::BTreeSet;

use oi_core::{Event, EventSink, Repository, Severity, Side, StatusStore, StoreError, SyncStats};

use crate::execute::{ExecOptions, FolderLabel, SyncError, access_for, sync_folder};
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
}

impl AccountReport {
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
pub async fn sync_account<RR, LR, SF>(
    account: &str,
    remote: &RR,
    local: &LR,
    status: &SF,
    policy: &AccountPolicy,
    opts: &ExecOptions,
    events: &dyn EventSink,
) -> Result<AccountReport, SyncError>
where
    RR: Repository,
    LR: Repository,
    SF: StatusFactory,
{
    let (rsep, lsep) = (remote.separator(), local.separator());
    let remote_folders: BTreeSet<String> = remote.list_folders().await?.into_iter().collect();
    let local_folders: BTreeSet<String> = local.list_folders().await?.into_iter().collect();
    let wanted = |remote_name: &str| {
        policy
            .only_folders
            .as_ref()
            .is_none_or(|only| only.iter().any(|f| f == remote_name))
    };

    // Pairs of (remote name, local name), and what must be created first.
    let mut pairs = Vec::new();
    let mut report = AccountReport::default();
    for rname in &remote_folders {
        if !wanted(rname) {
            continue;
        }
        let lname = local_name(rname, rsep, lsep);
        if !local_folders.contains(&lname) {
            let allowed = policy.create_local && !policy.folders.local.readonly;
            if !create(local, Side::Local, &lname, allowed, account, opts, events).await {
                continue;
            }
            if let Err(e) = status.forget(&status_name(rname, rsep), rname, &lname) {
                report.fail(rname.clone(), e.into());
                continue;
            }
        }
        pairs.push((rname.clone(), lname));
    }
    for lname in &local_folders {
        let rname = local_name(lname, lsep, rsep);
        if remote_folders.contains(&rname) || !wanted(&rname) {
            continue;
        }
        let allowed = policy.create_remote && !policy.folders.remote.readonly;
        let created =
            create_checked(remote, Side::Remote, &rname, allowed, account, opts, events).await;
        let created = created.and_then(|done| {
            if done {
                status.forget(&status_name(&rname, rsep), &rname, lname)?;
            }
            Ok(done)
        });
        match created {
            Ok(true) => pairs.push((rname, lname.clone())),
            Ok(false) => {}
            Err(e) => report.fail(rname, e.into()),
        }
    }

    for (rname, lname) in pairs {
        if opts.cancel.is_cancelled() {
            return Err(SyncError::Cancelled);
        }
        let label = FolderLabel {
            account: account.to_string(),
            folder: rname.clone(),
        };
        events.emit(Event::FolderStart {
            account: account.to_string(),
            folder: rname.clone(),
        });
        let result = sync_pair(
            remote, local, status, &rname, &lname, policy, opts, events, &label,
        )
        .await;
        match result {
            Ok(stats) => {
                report.stats.add(&stats);
                events.emit(Event::FolderDone {
                    account: account.to_string(),
                    folder: rname,
                    stats,
                });
            }
            Err(e @ (SyncError::CrashHook | SyncError::Cancelled)) => return Err(e),
            Err(e) => {
                let severity = e.severity();
                events.emit(Event::Error {
                    account: Some(account.to_string()),
                    folder: Some(rname.clone()),
                    severity,
                    message: e.to_string(),
                });
                report.fail(rname, e);
                if severity >= Severity::Repository {
                    break;
                }
            }
        }
    }
    Ok(report)
}

#[allow(clippy::too_many_arguments)] // the pair's whole context; a struct would only rename it
async fn sync_pair<RR, LR, SF>(
    remote: &RR,
    local: &LR,
    status: &SF,
    rname: &str,
    lname: &str,
    policy: &AccountPolicy,
    opts: &ExecOptions,
    events: &dyn EventSink,
    label: &FolderLabel,
) -> Result<SyncStats, SyncError>
where
    RR: Repository,
    LR: Repository,
    SF: StatusFactory,
{
    let p = &policy.folders;
    let mut status = status.open(&status_name(rname, remote.separator()), rname, lname)?;
    let mut rfolder = remote
        .open_folder(rname, access_for(p.remote.readonly, opts.dry_run))
        .await?;
    let mut lfolder = local
        .open_folder(lname, access_for(p.local.readonly, opts.dry_run))
        .await?;
    sync_folder(
        &mut rfolder,
        &mut lfolder,
        &mut status,
        p,
        opts,
        events,
        label,
    )
    .await
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
