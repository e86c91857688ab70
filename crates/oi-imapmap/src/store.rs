//! [`MappedImapRepository`] and [`MappedImapFolder`]: an IMAP repository seen through the
//! UID mapping.
//!
//! # When the mapping is written, and what a crash does
//!
//! - After each APPEND of a downloaded message, the new entry is written at once (the
//!   whole file, tmp + fsync + rename), as OfflineIMAP's `savemessage` does, and before the
//!   engine records the message in the LocalStatus.
//! - After [`Folder::assign_uid`] (a local message was uploaded to the remote), likewise.
//! - Entries of local messages that are gone are dropped when the folder is listed; entries
//!   of messages this run deleted are dropped only after [`Folder::close`] has expunged them,
//!   so that an interrupted deletion is carried out again rather than turned into an upload.
//!
//! The window OfflineIMAP leaves open: a crash after the local server stored a message but
//! before the mapping names it. The next run sees a local message unknown to the mapping,
//! i.e. a new local message, and uploads it to the remote, while the remote original, with
//! no record, is downloaded again: a duplicate on both sides. We close it with a journal
//! ([`MapFile::journal_path`]): before each APPEND the sync UID and a fingerprint of the
//! message are made durable, and the next listing looks among the unmapped local messages
//! above the UID floor of the time for one with that fingerprint, and maps it instead.
//! The same repair adopts a message whose UID the server would not tell.
//!
//! The other direction is the engine's: a crash after a local message was APPENDed to the
//! *remote* and before [`Folder::assign_uid`] maps it is repaired by the engine's upload
//! marker (`oi_core::marker`), which finds the remote copy and calls `assign_uid` with the
//! unsynced key, which here is the local UID and so stays valid across runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use oi_core::{
    Access, AgeCutoff, Event, EventSink, FlagUpdate, Flags, Folder, FolderMeta, Listing, Message,
    MsgRef, Repository, StoreError, Uid, UnsyncedMessage,
};
use oi_imap::{ImapFolder, ImapRepository};

use crate::error::MapError;
use crate::mapfile::{MapFile, PendingAppend, UidMap, fingerprint};

/// How many messages the journal repair fetches at once.
const REPAIR_BATCH: usize = 16;

/// `copy_ignore_eval` of the local repository: given a local folder's name and the
/// repository's separator, the local server UIDs of that folder never uploaded.
pub type CopyIgnore = Arc<dyn Fn(&str, char) -> Result<Vec<Uid>, StoreError> + Send + Sync>;

/// An IMAP repository used as an account's `localrepository`.
pub struct MappedImapRepository {
    inner: ImapRepository,
    repository_dir: PathBuf,
    fsync: bool,
    events: Arc<dyn EventSink>,
    copy_ignore: Option<CopyIgnore>,
}

impl std::fmt::Debug for MappedImapRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedImapRepository")
            .field("inner", &self.inner)
            .field("repository_dir", &self.repository_dir)
            .finish_non_exhaustive()
    }
}

impl MappedImapRepository {
    /// Wraps the IMAP repository named `repository` (the name after `[Repository `) whose
    /// state lives under `metadata` (`[general] metadata`): the mappings go to
    /// `<metadata>/Repository-<repository>/UIDMapping/`. `fsync` is `[general] fsync`.
    pub fn new(
        inner: ImapRepository,
        metadata: &Path,
        repository: &str,
        fsync: bool,
        events: Arc<dyn EventSink>,
    ) -> MappedImapRepository {
        MappedImapRepository {
            inner,
            repository_dir: metadata.join(format!("Repository-{repository}")),
            fsync,
            events,
            copy_ignore: None,
        }
    }

    /// Sets the local repository's `copy_ignore_eval`.
    ///
    /// OfflineIMAP 8 evaluates it on the local side too, but compares the local server
    /// UIDs it returns with the mapped folder's copy list, which holds remote UIDs and
    /// negative placeholders for the unsynced local messages: a listed local message is
    /// uploaded anyway (the binary's test
    /// `imaplocal::offlineimap8_uploads_local_uids_listed_by_copy_ignore_eval` shows it).
    /// We do what the option evidently means: the listed local messages are left out of
    /// the unsynced ones, so they are never uploaded to the remote (nor read as deleted);
    /// a message already mapped still has its flags and deletion synced.
    pub fn with_copy_ignore(mut self, copy_ignore: Option<CopyIgnore>) -> MappedImapRepository {
        self.copy_ignore = copy_ignore;
        self
    }

    /// The wrapped IMAP repository.
    pub fn inner(&self) -> &ImapRepository {
        &self.inner
    }

    /// Logs out every pooled connection (call once when the account is done).
    pub async fn shutdown(&self) {
        self.inner.shutdown().await;
    }

    /// The mapping state of a local folder.
    pub fn map_file(&self, folder: &str) -> MapFile {
        MapFile::new(&self.repository_dir, folder, self.fsync)
    }
}

impl Repository for MappedImapRepository {
    type Folder = MappedImapFolder;

    fn separator(&self) -> char {
        self.inner.separator()
    }

    async fn list_folders(&self) -> Result<Vec<String>, StoreError> {
        self.inner.list_folders().await
    }

    fn new_folder_name(&self, name: &str) -> String {
        self.inner.new_folder_name(name)
    }

    fn holds_connections(&self) -> bool {
        self.inner.holds_connections()
    }

    /// Creates the folder and drops any mapping left from an earlier folder of that name:
    /// its local UIDs would name the new folder's messages.
    async fn create_folder(&self, name: &str) -> Result<(), StoreError> {
        self.inner.create_folder(name).await?;
        self.map_file(name).purge().map_err(|e| e.into_store(name))
    }

    async fn open_folder(
        &self,
        name: &str,
        access: Access,
    ) -> Result<MappedImapFolder, StoreError> {
        // Read-only opens (`readonly`, `--dry-run`) write nothing, as OfflineIMAP's dry run.
        let writable = access == Access::ReadWrite;
        let file = self.map_file(name);
        let (map, leftover) = file.load(writable).map_err(|e| e.into_store(name))?;
        if leftover {
            self.events.emit(Event::Warning {
                account: None,
                message: format!(
                    "{}: a previous run might have left the UID mapping in an incorrect state \
                     ({}.tmp exists); some messages may be synced again",
                    name,
                    file.path().display()
                ),
            });
        }
        let journal = file.read_journal().map_err(|e| e.into_store(name))?;
        let ignored = match &self.copy_ignore {
            Some(f) => f(name, self.inner.separator())?.into_iter().collect(),
            None => BTreeSet::new(),
        };
        let inner = self.inner.open_folder(name, access).await?;
        Ok(MappedImapFolder {
            inner,
            name: name.to_string(),
            journal_on_disk: !journal.is_empty(),
            file,
            map,
            writable,
            journal,
            floor: 0,
            deleted: Vec::new(),
            ignored,
            reported: BTreeSet::new(),
            events: self.events.clone(),
        })
    }
}

/// A local IMAP folder as the engine sees it: messages under their sync UIDs.
pub struct MappedImapFolder {
    inner: ImapFolder,
    name: String,
    file: MapFile,
    map: UidMap,
    writable: bool,
    /// Appends not yet known to have been mapped (from an earlier run, or in flight).
    journal: Vec<PendingAppend>,
    journal_on_disk: bool,
    /// The highest local UID of the last listing.
    floor: u32,
    /// Local UIDs marked `\Deleted` by this run, unmapped after the expunge at close.
    deleted: Vec<Uid>,
    /// `copy_ignore_eval`: local UIDs never uploaded (left out of the unsynced messages).
    ignored: BTreeSet<Uid>,
    /// The ignored UIDs already reported by this run's listings.
    reported: BTreeSet<Uid>,
    events: Arc<dyn EventSink>,
}

impl std::fmt::Debug for MappedImapFolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedImapFolder")
            .field("name", &self.name)
            .field("map", &self.map)
            .finish_non_exhaustive()
    }
}

/// The system flags a flag replacement clears when absent.
fn system_flags() -> Flags {
    Flags::SEEN | Flags::ANSWERED | Flags::FLAGGED | Flags::DELETED | Flags::DRAFT
}

impl MappedImapFolder {
    /// The current mapping (local UID ↔ sync UID).
    pub fn mapping(&self) -> &UidMap {
        &self.map
    }

    fn fail(&self, e: MapError) -> StoreError {
        e.into_store(&self.name)
    }

    fn save(&self) -> Result<(), StoreError> {
        if self.writable {
            self.file.save(&self.map).map_err(|e| self.fail(e))?;
        }
        Ok(())
    }

    fn warn(&self, message: String) {
        self.events.emit(Event::Warning {
            account: None,
            message: format!("{}: {message}", self.name),
        });
    }

    fn local_of(&self, sync: Uid) -> Result<Uid, StoreError> {
        self.map
            .local_of(sync)
            .ok_or_else(|| self.fail(MapError::UnknownUid(sync)))
    }

    fn key_uid(&self, key: &str) -> Result<Uid, StoreError> {
        key.parse::<u32>()
            .ok()
            .and_then(Uid::new)
            .ok_or_else(|| self.fail(MapError::UnknownKey(key.to_string())))
    }

    /// Maps unmapped local messages that the journal says this tool stored (see the module
    /// doc). True when the mapping changed.
    async fn repair(&mut self, local: &Listing) -> Result<bool, StoreError> {
        let mut wanted = self.journal.clone();
        let Some(floor) = wanted.iter().map(|p| p.floor).min() else {
            return Ok(false);
        };
        // Newest first: a retried APPEND's copy is the one to keep mapped.
        let candidates: Vec<Uid> = local
            .messages
            .keys()
            .rev()
            .copied()
            .filter(|l| l.get() > floor && self.map.remote_of(*l).is_none())
            .collect();
        let mut changed = false;
        for chunk in candidates.chunks(REPAIR_BATCH) {
            if wanted.is_empty() {
                break;
            }
            let refs: Vec<MsgRef> = chunk.iter().map(|u| MsgRef::Uid(*u)).collect();
            let mut found = self.inner.fetch(&refs).await?;
            found.sort_by(|a, b| b.source.cmp(&a.source));
            for m in found {
                let MsgRef::Uid(l) = m.source else { continue };
                let fp = fingerprint(&m.body);
                let Some(pos) = wanted
                    .iter()
                    .position(|p| p.fingerprint == fp && l.get() > p.floor)
                else {
                    continue;
                };
                let p = wanted.remove(pos);
                self.map.insert(l, p.sync_uid).map_err(|e| self.fail(e))?;
                self.warn(format!(
                    "local message {l} was stored for UID {} by an interrupted run; \
                     mapped to it instead of uploading it again",
                    p.sync_uid
                ));
                changed = true;
            }
        }
        Ok(changed)
    }

    fn write_journal(&mut self) -> Result<(), StoreError> {
        if !self.writable {
            return Ok(());
        }
        self.file
            .write_journal(&self.journal)
            .map_err(|e| e.into_store(&self.name))?;
        self.journal_on_disk = !self.journal.is_empty();
        Ok(())
    }
}

impl Folder for MappedImapFolder {
    async fn meta(&mut self) -> Result<FolderMeta, StoreError> {
        self.inner.meta().await
    }

    async fn accepts_changes(&mut self) -> Result<bool, StoreError> {
        self.inner.accepts_changes().await
    }

    async fn list(&mut self) -> Result<Listing, StoreError> {
        let local = self.inner.list().await?;
        self.floor = local.messages.keys().next_back().map_or(0, |u| u.get());
        // Entries that were mapped when the mapping was read are settled, even if their
        // message is gone now: only the others may be repaired.
        let map = &self.map;
        self.journal.retain(|p| map.local_of(p.sync_uid).is_none());
        // As OfflineIMAP: entries of messages gone from the local server are forgotten.
        let mut changed = self.map.retain_locals(|l| local.messages.contains_key(&l));
        if !self.journal.is_empty() {
            changed |= self.repair(&local).await?;
        }
        // The mapping first: the journal must outlive every repair that is not on disk.
        if changed {
            self.save()?;
        }
        if self.journal_on_disk {
            self.journal.clear();
            self.write_journal()?;
        }

        let mut listing = Listing::default();
        for (local_uid, meta) in local.messages {
            match self.map.remote_of(local_uid) {
                Some(sync) => {
                    listing.messages.insert(sync, meta);
                }
                // An unmapped message already marked \Deleted is not worth uploading: it is
                // one this tool deleted without expunging (`expunge = no`), or one the user
                // deleted before it was ever synced. OfflineIMAP uploads it.
                None if meta.flags.contains(Flags::DELETED) => {}
                None if self.ignored.contains(&local_uid) => {
                    if self.reported.insert(local_uid) {
                        self.events.emit(Event::Info {
                            message: format!(
                                "IGNORED: Copy message UID {local_uid} of local folder {} to the remote: listed by copy_ignore_eval",
                                self.name
                            ),
                        });
                    }
                }
                None => listing.unsynced.push(UnsyncedMessage {
                    key: local_uid.to_string(),
                    flags: meta.flags,
                    size: meta.size,
                }),
            }
        }
        Ok(listing)
    }

    /// The local messages since the day, under the references of the listing (sync UIDs
    /// for the mapped ones, unsynced keys for the others).
    async fn messages_since(
        &mut self,
        since: AgeCutoff,
    ) -> Result<Option<Vec<MsgRef>>, StoreError> {
        let Some(found) = self.inner.messages_since(since).await? else {
            return Ok(None);
        };
        Ok(Some(
            found
                .into_iter()
                .filter_map(|r| match r {
                    MsgRef::Uid(local) => Some(match self.map.remote_of(local) {
                        Some(sync) => MsgRef::Uid(sync),
                        None => MsgRef::Unsynced(local.to_string()),
                    }),
                    MsgRef::Unsynced(_) => None,
                })
                .collect(),
        ))
    }

    /// The local server's UID: `startdate` on a local IMAP repository keeps its StartUID
    /// in those, as OfflineIMAP does (it reads the local folder from `UID <start>:*`).
    fn own_uid(&self, which: &MsgRef) -> Option<u32> {
        match which {
            MsgRef::Uid(sync) => self.map.local_of(*sync).map(Uid::get),
            MsgRef::Unsynced(key) => key.parse::<u32>().ok(),
        }
    }

    async fn fetch(&mut self, which: &[MsgRef]) -> Result<Vec<Message>, StoreError> {
        // The caller gets each message back under the reference it asked with.
        let mut asked: BTreeMap<Uid, MsgRef> = BTreeMap::new();
        for r in which {
            let local = match r {
                MsgRef::Uid(sync) => match self.map.local_of(*sync) {
                    Some(l) => l,
                    // Gone meanwhile: fetch leaves out what vanished.
                    None => continue,
                },
                MsgRef::Unsynced(key) => self.key_uid(key)?,
            };
            asked.insert(local, r.clone());
        }
        if asked.is_empty() {
            return Ok(Vec::new());
        }
        let refs: Vec<MsgRef> = asked.keys().map(|l| MsgRef::Uid(*l)).collect();
        let mut messages = self.inner.fetch(&refs).await?;
        messages.retain_mut(|m| match &m.source {
            MsgRef::Uid(l) => match asked.get(l) {
                Some(r) => {
                    m.source = r.clone();
                    true
                }
                None => false,
            },
            MsgRef::Unsynced(_) => false,
        });
        Ok(messages)
    }

    async fn append(
        &mut self,
        message: &Message,
        flags: Flags,
        uid: Option<Uid>,
    ) -> Result<Option<Uid>, StoreError> {
        let Some(sync) = uid else {
            return Err(self.fail(MapError::NoSyncUid));
        };
        if let Some(local) = self.map.local_of(sync) {
            // Already here (OfflineIMAP's savemessage): only the flags are set.
            self.inner
                .set_flags(&[FlagUpdate {
                    uid: local,
                    add: flags,
                    remove: system_flags().minus(flags),
                }])
                .await?;
            return Ok(Some(sync));
        }
        self.journal.push(PendingAppend {
            sync_uid: sync,
            fingerprint: fingerprint(&message.body),
            floor: self.floor,
        });
        self.write_journal()?;
        let stored = self.inner.append(message, flags, None).await?;
        let Some(local) = stored else {
            // The journal entry stays: the next listing finds the copy and maps it.
            return Err(self.fail(MapError::NoLocalUid(sync)));
        };
        self.map.insert(local, sync).map_err(|e| self.fail(e))?;
        self.save()?;
        // The entry is resolved; the file keeps the stale line until the next rewrite,
        // which is harmless (a mapped sync UID is never repaired).
        self.journal.retain(|p| p.sync_uid != sync);
        Ok(Some(sync))
    }

    async fn set_flags(&mut self, updates: &[FlagUpdate]) -> Result<(), StoreError> {
        let local = updates
            .iter()
            .map(|u| {
                Ok(FlagUpdate {
                    uid: self.local_of(u.uid)?,
                    ..*u
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.inner.set_flags(&local).await
    }

    async fn delete(&mut self, uids: &[Uid]) -> Result<(), StoreError> {
        let local = uids
            .iter()
            .map(|u| self.local_of(*u))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.inner.delete(&local).await?;
        self.deleted.extend(local);
        Ok(())
    }

    async fn assign_uid(&mut self, which: &MsgRef, uid: Uid) -> Result<(), StoreError> {
        let local = match which {
            MsgRef::Unsynced(key) => self.key_uid(key)?,
            MsgRef::Uid(old) => self.local_of(*old)?,
        };
        self.map.insert(local, uid).map_err(|e| self.fail(e))?;
        self.save()
    }

    async fn close(&mut self) -> Result<(), StoreError> {
        self.inner.close().await?;
        if !self.deleted.is_empty() {
            for l in std::mem::take(&mut self.deleted) {
                self.map.remove_local(l);
            }
            self.save()?;
        }
        if self.journal.is_empty() && self.journal_on_disk {
            self.write_journal()?;
        }
        Ok(())
    }
}
