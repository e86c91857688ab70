//! In-memory stores for engine tests: a repository whose folders live in a shared map, so
//! tests can set up and inspect both sides, and a status store whose uncommitted writes
//! are lost when it is dropped, as a crash would lose them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use oi_core::{
    Access, Fetched, FlagUpdate, Flags, Folder, FolderMeta, Listing, Message, MessageMeta, MsgRef,
    PendingUpload, Repository, Severity, Side, StatusStore, StoreError, Uid, UidValidity,
    UnsyncedMessage,
};

use crate::account::StatusFactory;

/// One in-memory folder.
#[derive(Debug, Clone)]
pub struct MemFolderData {
    /// UIDVALIDITY reported.
    pub uid_validity: UidValidity,
    /// Next UID handed out by `append` on a UID-assigning store.
    pub next_uid: u32,
    /// Messages with a UID: body and flags.
    pub messages: BTreeMap<Uid, (Vec<u8>, Flags)>,
    /// Messages without a UID: key, body and flags.
    pub unsynced: Vec<(String, Vec<u8>, Flags)>,
    /// A message that lands right after the next append (with the next UID): a killed
    /// client's APPEND that the server commits while the next run is already going.
    pub lands_after_next_append: Option<(Vec<u8>, Flags)>,
    /// Flushes asked for by [`Folder::flush`] and by [`Folder::flush_aside`].
    pub flushes: (usize, usize),
    /// [`Folder::spool_dir`]: downloads into this folder are spooled (as into a Maildir).
    pub spool: Option<std::path::PathBuf>,
    /// [`Folder::keeps_dates`] (default true).
    pub keeps_dates: bool,
    /// The `dates` argument of each [`Folder::fetch_spooled`] from this folder.
    pub spooled_dates: Vec<bool>,
    /// [`Folder::close`] of this folder waits until this gate is open.
    pub close_waits_for: Option<Gate>,
    /// Opening this folder opens this gate.
    pub opening_opens: Option<Gate>,
    /// [`Folder::close`] of this folder gives way to the other futures of its task this
    /// many times before it ends (a slow disk, in polls rather than time).
    pub close_yields: usize,
}

/// A gate a test opens from inside a sync (see [`MemFolderData::close_waits_for`]), to
/// hold one folder's step until another folder's has happened. Runtime-free.
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<Mutex<(bool, Vec<std::task::Waker>)>>);

impl Gate {
    /// Opens the gate, waking whatever waits on it.
    pub fn open(&self) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.0 = true;
        for w in g.1.drain(..) {
            w.wake();
        }
    }

    /// Waits until the gate is open.
    pub async fn wait(&self) {
        std::future::poll_fn(|cx| {
            let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
            if g.0 {
                std::task::Poll::Ready(())
            } else {
                if !g.1.iter().any(|w| w.will_wake(cx.waker())) {
                    g.1.push(cx.waker().clone());
                }
                std::task::Poll::Pending
            }
        })
        .await
    }
}

impl Default for MemFolderData {
    fn default() -> Self {
        MemFolderData {
            uid_validity: UidValidity(1),
            next_uid: 1,
            messages: BTreeMap::new(),
            unsynced: Vec::new(),
            lands_after_next_append: None,
            flushes: (0, 0),
            spool: None,
            keeps_dates: true,
            spooled_dates: Vec::new(),
            close_waits_for: None,
            opening_opens: None,
            close_yields: 0,
        }
    }
}

type Shared = Arc<Mutex<BTreeMap<String, MemFolderData>>>;

fn lock(shared: &Shared) -> MutexGuard<'_, BTreeMap<String, MemFolderData>> {
    // A test that panicked while holding the lock has failed already; go on with the data.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// An in-memory repository.
#[derive(Debug, Clone)]
pub struct MemRepository {
    /// The folders, shared with the test.
    pub folders: Shared,
    sep: char,
    /// True for a server-like store that assigns UIDs on append; false for a Maildir-like
    /// store that takes the UID it is given.
    assigns_uids: bool,
    /// Folders opened and not closed yet, and the most there were at once.
    pub open_now_and_most: Arc<Mutex<(usize, usize)>>,
}

impl MemRepository {
    /// A server-like repository (assigns UIDs).
    pub fn server(sep: char) -> Self {
        MemRepository {
            folders: Shared::default(),
            sep,
            assigns_uids: true,
            open_now_and_most: Arc::default(),
        }
    }

    /// A Maildir-like repository (keeps the UIDs it is given).
    pub fn maildir(sep: char) -> Self {
        MemRepository {
            folders: Shared::default(),
            sep,
            assigns_uids: false,
            open_now_and_most: Arc::default(),
        }
    }

    /// Runs `f` on a folder's data, creating the folder if needed.
    pub fn with<T>(&self, folder: &str, f: impl FnOnce(&mut MemFolderData) -> T) -> T {
        f(lock(&self.folders).entry(folder.to_string()).or_default())
    }
}

impl Repository for MemRepository {
    type Folder = MemFolder;

    fn separator(&self) -> char {
        self.sep
    }

    async fn list_folders(&self) -> Result<Vec<String>, StoreError> {
        Ok(lock(&self.folders).keys().cloned().collect())
    }

    async fn create_folder(&self, name: &str) -> Result<(), StoreError> {
        lock(&self.folders).entry(name.to_string()).or_default();
        Ok(())
    }

    async fn open_folder(&self, name: &str, access: Access) -> Result<MemFolder, StoreError> {
        let Some(data) = lock(&self.folders).get(name).cloned() else {
            return Err(StoreError::new(
                Severity::Folder,
                format!("no folder {name}"),
            ));
        };
        if let Some(gate) = data.opening_opens {
            gate.open();
        }
        {
            let mut open = self
                .open_now_and_most
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            open.0 += 1;
            open.1 = open.1.max(open.0);
        }
        Ok(MemFolder {
            folders: self.folders.clone(),
            name: name.to_string(),
            access,
            assigns_uids: self.assigns_uids,
            open: self.open_now_and_most.clone(),
            closed: false,
        })
    }
}

/// An opened in-memory folder.
#[derive(Debug)]
pub struct MemFolder {
    folders: Shared,
    name: String,
    access: Access,
    assigns_uids: bool,
    /// The repository's count of open folders (this one counts until its first close).
    open: Arc<Mutex<(usize, usize)>>,
    closed: bool,
}

impl MemFolder {
    fn data<T>(&self, f: impl FnOnce(&mut MemFolderData) -> T) -> Result<T, StoreError> {
        let mut folders = lock(&self.folders);
        let data = folders
            .get_mut(&self.name)
            .ok_or_else(|| StoreError::new(Severity::Folder, "folder vanished"))?;
        Ok(f(data))
    }

    fn writable(&self) -> Result<(), StoreError> {
        match self.access {
            Access::ReadWrite => Ok(()),
            Access::ReadOnly => Err(StoreError::new(
                Severity::Fatal,
                format!("write to read-only folder {}", self.name),
            )),
        }
    }
}

impl Folder for MemFolder {
    fn spool_dir(&self) -> Option<std::path::PathBuf> {
        self.data(|d| d.spool.clone()).ok().flatten()
    }

    fn keeps_dates(&self) -> bool {
        self.data(|d| d.keeps_dates).unwrap_or(true)
    }

    async fn fetch_spooled(
        &mut self,
        which: &[MsgRef],
        _spool_dir: &std::path::Path,
        _over: u64,
        dates: bool,
    ) -> Result<Vec<Fetched>, StoreError> {
        self.data(|d| d.spooled_dates.push(dates))?;
        let fetched = self.fetch(which).await?;
        Ok(fetched.into_iter().map(Fetched::Memory).collect())
    }

    async fn meta(&mut self) -> Result<FolderMeta, StoreError> {
        self.data(|d| FolderMeta {
            uid_validity: d.uid_validity,
            exists: Some(d.messages.len() as u32),
        })
    }

    async fn list(&mut self) -> Result<Listing, StoreError> {
        self.data(|d| Listing {
            messages: d
                .messages
                .iter()
                .map(|(uid, (body, flags))| {
                    let meta = MessageMeta {
                        flags: *flags,
                        size: Some(body.len() as u64),
                    };
                    (*uid, meta)
                })
                .collect(),
            unsynced: d
                .unsynced
                .iter()
                .map(|(key, body, flags)| UnsyncedMessage {
                    key: key.clone(),
                    flags: *flags,
                    size: Some(body.len() as u64),
                })
                .collect(),
        })
    }

    async fn fetch(&mut self, which: &[MsgRef]) -> Result<Vec<Message>, StoreError> {
        self.data(|d| {
            which
                .iter()
                .filter_map(|r| {
                    let (body, flags) = match r {
                        MsgRef::Uid(uid) => d.messages.get(uid).cloned()?,
                        MsgRef::Unsynced(key) => d
                            .unsynced
                            .iter()
                            .find(|(k, _, _)| k == key)
                            .map(|(_, b, f)| (b.clone(), *f))?,
                    };
                    Some(Message {
                        source: r.clone(),
                        body,
                        flags,
                        internal_date: None,
                    })
                })
                .collect()
        })
    }

    async fn append(
        &mut self,
        message: &Message,
        flags: Flags,
        uid: Option<Uid>,
    ) -> Result<Option<Uid>, StoreError> {
        self.writable()?;
        let assigns = self.assigns_uids;
        self.data(|d| {
            let uid = if assigns {
                let uid = Uid::new(d.next_uid.max(1));
                d.next_uid = d.next_uid.max(1) + 1;
                uid
            } else {
                uid
            };
            if let Some(uid) = uid {
                d.messages.insert(uid, (message.body.clone(), flags));
                if uid.get() >= d.next_uid {
                    d.next_uid = uid.get() + 1;
                }
            }
            if let Some((body, flags)) = d.lands_after_next_append.take()
                && let Some(late) = Uid::new(d.next_uid.max(1))
            {
                d.next_uid = late.get() + 1;
                d.messages.insert(late, (body, flags));
            }
            uid
        })
    }

    async fn set_flags(&mut self, updates: &[FlagUpdate]) -> Result<(), StoreError> {
        self.writable()?;
        self.data(|d| {
            for u in updates {
                if let Some((_, flags)) = d.messages.get_mut(&u.uid) {
                    *flags = (*flags | u.add).minus(u.remove);
                }
            }
        })
    }

    async fn delete(&mut self, uids: &[Uid]) -> Result<(), StoreError> {
        self.writable()?;
        self.data(|d| {
            for uid in uids {
                d.messages.remove(uid);
            }
        })
    }

    async fn assign_uid(&mut self, which: &MsgRef, uid: Uid) -> Result<(), StoreError> {
        self.writable()?;
        self.data(|d| {
            let taken = d.messages.contains_key(&uid);
            match which {
                MsgRef::Uid(old) if *old == uid => Ok(()),
                _ if taken => Err(StoreError::new(
                    Severity::Folder,
                    format!("UID {uid} in use"),
                )),
                MsgRef::Uid(old) => {
                    if let Some(m) = d.messages.remove(old) {
                        d.messages.insert(uid, m);
                    }
                    Ok(())
                }
                MsgRef::Unsynced(key) => {
                    if let Some(pos) = d.unsynced.iter().position(|(k, _, _)| k == key) {
                        let (_, body, flags) = d.unsynced.remove(pos);
                        d.messages.insert(uid, (body, flags));
                    }
                    Ok(())
                }
            }
        })?
    }

    async fn identities(&mut self) -> Result<Vec<(MsgRef, oi_core::Identity)>, StoreError> {
        self.data(|d| {
            d.messages
                .iter()
                .map(|(uid, (body, _))| (MsgRef::Uid(*uid), oi_core::Identity::of_message(body)))
                .chain(d.unsynced.iter().map(|(k, body, _)| {
                    (
                        MsgRef::Unsynced(k.clone()),
                        oi_core::Identity::of_message(body),
                    )
                }))
                .collect()
        })
    }

    async fn find_marker(&mut self, marker: &str) -> Result<Vec<Uid>, StoreError> {
        self.data(|d| {
            d.messages
                .iter()
                .filter(|(_, (body, _))| {
                    oi_core::marker::marker_of(body).as_deref() == Some(marker)
                })
                .map(|(uid, _)| *uid)
                .collect()
        })
    }

    async fn flush(&mut self) -> Result<(), StoreError> {
        self.data(|d| d.flushes.0 += 1)
    }

    async fn flush_aside(&mut self) -> Result<(), StoreError> {
        self.data(|d| d.flushes.1 += 1)
    }

    async fn close(&mut self) -> Result<(), StoreError> {
        if let Some(gate) = self.data(|d| d.close_waits_for.clone())? {
            gate.wait().await;
        }
        for _ in 0..self.data(|d| d.close_yields)? {
            crate::execute::yield_once().await;
        }
        if !std::mem::replace(&mut self.closed, true) {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            open.0 = open.0.saturating_sub(1);
        }
        Ok(())
    }
}

/// The committed state of one folder's status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemStatusData {
    /// Records.
    pub records: BTreeMap<Uid, Flags>,
    /// Saved UIDVALIDITY of the remote and the local side.
    pub validity: [Option<UidValidity>; 2],
    /// Uploads in flight.
    pub pending: Vec<PendingUpload>,
    /// How many commits were [`StatusStore::commit_aside`].
    pub aside_commits: usize,
}

/// Opens in-memory status stores, keyed by status name.
#[derive(Debug, Clone, Default)]
pub struct MemStatusFactory {
    /// Committed state, shared with the test.
    pub committed: Arc<Mutex<BTreeMap<String, MemStatusData>>>,
}

impl StatusFactory for MemStatusFactory {
    type Status = MemStatus;

    fn open(&self, status_name: &str, _: &str, _: &str) -> Result<MemStatus, StoreError> {
        let committed = self
            .committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(status_name)
            .cloned()
            .unwrap_or_default();
        Ok(MemStatus {
            factory: self.clone(),
            name: status_name.to_string(),
            working: committed,
        })
    }

    fn forget(&self, status_name: &str, _: &str, _: &str) -> Result<(), StoreError> {
        self.committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(status_name);
        Ok(())
    }
}

/// An open in-memory status: writes become visible to the next open only on commit.
#[derive(Debug)]
pub struct MemStatus {
    factory: MemStatusFactory,
    name: String,
    working: MemStatusData,
}

impl StatusStore for MemStatus {
    fn load(&mut self) -> Result<BTreeMap<Uid, Flags>, StoreError> {
        Ok(self.working.records.clone())
    }

    fn set(&mut self, uid: Uid, flags: Flags) -> Result<(), StoreError> {
        self.working.records.insert(uid, flags);
        Ok(())
    }

    fn remove(&mut self, uid: Uid) -> Result<(), StoreError> {
        self.working.records.remove(&uid);
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        self.factory
            .committed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(self.name.clone(), self.working.clone());
        Ok(())
    }

    async fn commit_aside(&mut self) -> Result<(), StoreError> {
        self.working.aside_commits += 1;
        self.commit()
    }

    fn pending_uploads(&mut self) -> Result<Vec<PendingUpload>, StoreError> {
        Ok(self.working.pending.clone())
    }

    fn add_pending_upload(&mut self, pending: &PendingUpload) -> Result<(), StoreError> {
        self.working.pending.retain(|p| p.marker != pending.marker);
        self.working.pending.push(pending.clone());
        Ok(())
    }

    fn clear_pending_upload(&mut self, marker: &str) -> Result<(), StoreError> {
        self.working.pending.retain(|p| p.marker != marker);
        Ok(())
    }

    fn saved_validity(&self, side: Side) -> Result<Option<UidValidity>, StoreError> {
        Ok(self.working.validity[side.index()])
    }

    fn save_validity(&mut self, side: Side, value: UidValidity) -> Result<(), StoreError> {
        self.working.validity[side.index()] = Some(value);
        self.commit()
    }
}
