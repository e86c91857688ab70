//! The store seam: what the engine may ask of a repository, a folder and the LocalStatus.
//!
//! Methods return `impl Future + Send` so that the binary can run folders as tokio tasks;
//! implementors simply write `async fn`. Repositories take `&self` so that several folders
//! of one repository can be synced at once (the implementation owns its connection pool).

use std::collections::BTreeMap;
use std::future::Future;

use crate::{Flags, StoreError, Uid, UidValidity};

/// Whether a folder is opened for changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Only reads (IMAP `EXAMINE`): used for `readonly` repositories and `--dry-run`.
    ReadOnly,
    /// Reads and writes (IMAP `SELECT`).
    ReadWrite,
}

/// A folder of [`Repository::prepare_listings`]: its name in the repository, how it will
/// be opened, the token of the listing kept for it, and how its new messages will be
/// downloaded, if all of them will.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListingWish {
    /// The folder's name in the repository.
    pub name: String,
    /// How it will be opened.
    pub access: Access,
    /// The token kept with its listing ([`CachedListing::token`]).
    pub token: String,
    /// Set when every new message of the folder will be downloaded (the other side takes
    /// new messages, and no filter such as `maxage` or `maxsize` stands between), and
    /// how: a store may then fetch their bodies with the listing.
    pub new_bodies: Option<NewBodies>,
}

/// How the new messages of a folder will be fetched (see [`ListingWish::new_bodies`]):
/// those of up to `up_to` bytes by [`Folder::fetch_spooled`] into `spool_dir`, streamed
/// there when above `spool_over` bytes, without their dates; the larger ones by
/// [`Folder::fetch_large`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBodies {
    /// The largest message fetched whole.
    pub up_to: u64,
    /// The spool folder of those fetches.
    pub spool_dir: std::path::PathBuf,
    /// Bodies above this go to a file in `spool_dir` rather than memory.
    pub spool_over: u64,
}

/// What a folder tells about itself when opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderMeta {
    /// The folder's UIDVALIDITY (Maildir: OfflineIMAP's constant 42).
    pub uid_validity: UidValidity,
    /// How many messages the folder holds, when known without listing.
    pub exists: Option<u32>,
}

/// How the engine names a message of one side.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MsgRef {
    /// A message that carries a sync UID.
    Uid(Uid),
    /// A message that has none yet (a mail client dropped it into a Maildir); the key is
    /// the store's own handle for it (for Maildir, the unique part of the file name).
    Unsynced(String),
}

/// A message of a listing that carries a sync UID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageMeta {
    /// Its flags on this side.
    pub flags: Flags,
    /// RFC822.SIZE (IMAP) or the file size (Maildir), when known.
    pub size: Option<u64>,
}

/// A message without a sync UID (a new local message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsyncedMessage {
    /// The store's handle for it.
    pub key: String,
    /// Its flags.
    pub flags: Flags,
    /// Its size, when known.
    pub size: Option<u64>,
}

/// Everything one side holds in a folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Messages by sync UID.
    pub messages: BTreeMap<Uid, MessageMeta>,
    /// Messages that have no sync UID yet, in the order they should be uploaded.
    pub unsynced: Vec<UnsyncedMessage>,
}

/// A whole message, as fetched from one side and handed to the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Which message this is on the side it came from.
    pub source: MsgRef,
    /// The raw RFC 5322 bytes (CRLF or LF line ends, as the store keeps them).
    pub body: Vec<u8>,
    /// Its flags on the side it came from.
    pub flags: Flags,
    /// IMAP INTERNALDATE (or the Maildir file's mtime) as seconds since the epoch.
    pub internal_date: Option<i64>,
}

/// A large message on its way between the stores in a file rather than in memory, so
/// that memory stays flat whatever the size of a message (see [`Folder::fetch_large`]).
#[derive(Debug)]
pub struct LargeMessage {
    /// Which message this is on the side it came from.
    pub source: MsgRef,
    /// The message's bytes (read from offset 0; readers seek).
    pub file: std::fs::File,
    /// How many bytes of `file` are the message.
    pub len: u64,
    /// Its flags on the side it came from.
    pub flags: Flags,
    /// IMAP INTERNALDATE (or the Maildir file's mtime) as seconds since the epoch.
    pub internal_date: Option<i64>,
    /// The spool file to remove once the message is stored (`None`: `file` belongs to the
    /// store it came from, such as a Maildir message file).
    pub spool: Option<tempfile::TempPath>,
    /// Header fields left out when the message is read (`filterheaders`).
    pub drop_headers: Vec<String>,
}

/// A fetched message: in memory, or in a spool file ([`Folder::fetch_spooled`]).
#[derive(Debug)]
pub enum Fetched {
    /// Held in memory.
    Memory(Message),
    /// Spooled to a file as it arrived.
    Spooled(LargeMessage),
}

impl Fetched {
    /// Which message this is on the side it came from.
    pub fn source(&self) -> &MsgRef {
        match self {
            Fetched::Memory(m) => &m.source,
            Fetched::Spooled(m) => &m.source,
        }
    }
}

/// How the names of [`spool_file`]s begin (a store may remove those a killed sync left).
pub const SPOOL_PREFIX: &str = ".offlineimap-spool-";

/// Creates a spool file in `dir` for a message on its way to a store: readable and
/// writable, with the permissions of a new Maildir file (0666 less the umask), since a
/// Maildir store renames it into place rather than copying it.
pub fn spool_file(dir: &std::path::Path) -> std::io::Result<tempfile::NamedTempFile> {
    let mut b = tempfile::Builder::new();
    b.prefix(SPOOL_PREFIX);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        b.permissions(std::fs::Permissions::from_mode(0o666));
    }
    b.tempfile_in(dir)
}

/// The longest header section a large message may have for the upload marker to be
/// inserted while streaming.
pub const LARGE_HEAD_MAX: u64 = 1 << 20;

impl LargeMessage {
    /// Spools a message held in memory (the fallback of stores that cannot stream).
    pub fn spool_message(message: &Message, dir: &std::path::Path) -> std::io::Result<Self> {
        use std::io::Write;
        let mut tmp = spool_file(dir)?;
        tmp.write_all(&message.body)?;
        let (file, path) = tmp.into_parts();
        Ok(LargeMessage {
            source: message.source.clone(),
            file,
            len: message.body.len() as u64,
            flags: message.flags,
            internal_date: message.internal_date,
            spool: Some(path),
            drop_headers: Vec::new(),
        })
    }

    /// The start of the message up to at least the end of its header section (or the
    /// whole message when it has no body), read a few KiB at a time and at most
    /// [`LARGE_HEAD_MAX`] bytes: what the marker and `filterheaders` need, without
    /// reading a megabyte of body with it.
    pub fn header(&mut self) -> std::io::Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        const STEP: u64 = 16 << 10;
        self.file.seek(SeekFrom::Start(0))?;
        let max = LARGE_HEAD_MAX.min(self.len);
        let mut head = Vec::new();
        while (head.len() as u64) < max {
            let want = STEP.min(max - head.len() as u64);
            let got = (&mut self.file).take(want).read_to_end(&mut head)?;
            // Look again from a little before the new bytes: the blank line may straddle.
            let from = head.len().saturating_sub(got + 3);
            if got == 0 || crate::marker::has_header_end(&head[from..]) {
                break;
            }
        }
        Ok(head)
    }

    /// The bytes to store: the message, with the upload marker inserted into its header
    /// when one is given; returns their length and a reader of them.
    pub fn reader(
        &mut self,
        marker: Option<&str>,
    ) -> std::io::Result<(u64, impl std::io::Read + Send + '_)> {
        use std::io::{Read, Seek, SeekFrom};
        let (head, skip) = if marker.is_some() || !self.drop_headers.is_empty() {
            let prefix = self.header()?;
            if prefix.len() as u64 >= LARGE_HEAD_MAX && !crate::marker::has_header_end(&prefix) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the message's header is longer than 1 MiB",
                ));
            }
            let mut head = crate::headers::remove_headers(&prefix, &self.drop_headers);
            if let Some(marker) = marker {
                head = crate::marker::insert_marker(&head, marker);
            }
            (head, prefix.len() as u64)
        } else {
            (Vec::new(), 0)
        };
        self.file.seek(SeekFrom::Start(skip))?;
        let rest = self.len.saturating_sub(skip);
        let total = head.len() as u64 + rest;
        Ok((
            total,
            std::io::Cursor::new(head).chain((&mut self.file).take(rest)),
        ))
    }

    /// The whole message in memory (marked when a marker is given): the fallback of stores
    /// that cannot stream.
    pub fn to_message(&mut self, marker: Option<&str>) -> std::io::Result<Message> {
        use std::io::Read;
        let mut body = Vec::new();
        {
            let (len, mut r) = self.reader(marker)?;
            body.reserve(usize::try_from(len).unwrap_or(0));
            r.read_to_end(&mut body)?;
        }
        Ok(Message {
            source: self.source.clone(),
            body,
            flags: self.flags,
            internal_date: self.internal_date,
        })
    }
}

/// OfflineIMAP's quick-sync check of a folder: its message count and its last UID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuickState {
    /// How many messages the folder holds.
    pub count: u32,
    /// The UID of the last message (`None` when empty).
    pub last_uid: Option<Uid>,
}

/// A listing a store made earlier, kept by the engine in the status between runs, with
/// the store's token that says which state of the folder it shows (IMAP: UIDVALIDITY and
/// HIGHESTMODSEQ, RFC 7162). Only the store that made it reads the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedListing {
    /// The store's description of the state the listing shows.
    pub token: String,
    /// The listing.
    pub listing: Listing,
}

impl CachedListing {
    /// A compact binary form for storage: per message its UID, flag bits and size.
    pub fn encode_messages(listing: &Listing) -> Vec<u8> {
        let mut out = Vec::with_capacity(listing.messages.len() * 16);
        for (uid, m) in &listing.messages {
            out.extend_from_slice(&uid.get().to_le_bytes());
            out.extend_from_slice(&m.flags.bits().to_le_bytes());
            out.extend_from_slice(&m.size.map_or(u64::MAX, |s| s).to_le_bytes());
        }
        out
    }

    /// Reads [`CachedListing::encode_messages`]; `None` for anything malformed (the
    /// caller then lists in full).
    pub fn decode_messages(data: &[u8]) -> Option<Listing> {
        if !data.len().is_multiple_of(16) {
            return None;
        }
        let mut listing = Listing::default();
        for rec in data.chunks_exact(16) {
            let uid = Uid::new(u32::from_le_bytes(rec[0..4].try_into().ok()?))?;
            let flags = Flags::from_bits(u32::from_le_bytes(rec[4..8].try_into().ok()?));
            let size = u64::from_le_bytes(rec[8..16].try_into().ok()?);
            let meta = MessageMeta {
                flags,
                size: (size != u64::MAX).then_some(size),
            };
            if listing.messages.insert(uid, meta).is_some() {
                return None;
            }
        }
        Some(listing)
    }
}

/// An upload that was about to happen: recorded in the status before the APPEND, cleared
/// once the new UID is recorded (see [`crate::marker`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// The `X-OfflineIMAP` value the uploaded copy carries.
    pub marker: String,
    /// The local message that was being uploaded.
    pub source: MsgRef,
}

impl MsgRef {
    /// A text form for storage: `uid:<n>` or `key:<key>`.
    pub fn to_text(&self) -> String {
        match self {
            MsgRef::Uid(uid) => format!("uid:{uid}"),
            MsgRef::Unsynced(key) => format!("key:{key}"),
        }
    }

    /// Parses [`MsgRef::to_text`]; `None` for anything else.
    pub fn from_text(text: &str) -> Option<MsgRef> {
        if let Some(n) = text.strip_prefix("uid:") {
            return n.parse().ok().and_then(Uid::new).map(MsgRef::Uid);
        }
        text.strip_prefix("key:")
            .map(|k| MsgRef::Unsynced(k.to_string()))
    }
}

/// What identifies a message across stores when UIDs cannot: used to re-pair messages
/// after a UIDVALIDITY change and to adopt a Maildir that has no usable state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// The Message-ID header's value, trimmed (`<x@y>`).
    pub message_id: Option<String>,
    /// The size with CRLF line ends (IMAP's RFC822.SIZE; for a file, bytes plus bare LFs).
    pub size: Option<u64>,
}

impl Identity {
    /// The identity of a whole message.
    pub fn of_message(body: &[u8]) -> Identity {
        let bare_lf = body
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b == b'\n' && (i == 0 || body[i - 1] != b'\r'))
            .count();
        Identity {
            message_id: message_id_of(body),
            size: Some((body.len() + bare_lf) as u64),
        }
    }
}

/// The Message-ID of a message (or of its header section alone), unfolded and trimmed.
pub fn message_id_of(message: &[u8]) -> Option<String> {
    let mut lines = message.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if !line[..colon].eq_ignore_ascii_case(b"message-id") {
            continue;
        }
        let mut value = String::from_utf8_lossy(&line[colon + 1..]).into_owned();
        // Folded continuation lines start with white space (RFC 5322 §2.2.3).
        while let Some(next) = lines.peek() {
            if next.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
                let next = next.strip_suffix(b"\r").unwrap_or(next);
                value.push_str(&String::from_utf8_lossy(next));
                lines.next();
            } else {
                break;
            }
        }
        let value = value.trim().to_string();
        return (!value.is_empty()).then_some(value);
    }
    None
}

/// A flag change for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlagUpdate {
    /// The message.
    pub uid: Uid,
    /// Flags to set.
    pub add: Flags,
    /// Flags to clear.
    pub remove: Flags,
}

/// Where `maxage` starts, as each kind of store can test it (see [`Folder::messages_since`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgeCutoff {
    /// The calendar day of an IMAP `SEARCH SINCE` (year, month 1-12, day 1-31).
    pub day: (i32, u8, u8),
    /// Seconds since the epoch: a Maildir message whose file name starts with an older
    /// delivery time is outside the window.
    pub epoch: i64,
}

/// One repository of an account: a tree of folders.
pub trait Repository: Send + Sync {
    /// The folder type this repository opens.
    type Folder: Folder;

    /// The hierarchy delimiter of folder names in this repository (IMAP: the server's
    /// LIST delimiter; Maildir: `sep`).
    fn separator(&self) -> char;

    /// The names of all folders, with this repository's separator.
    fn list_folders(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// The full name under which a folder the sync wants as `name` (the other side's name
    /// through nametrans) is created here. IMAP with `reference`: `<reference><sep><name>`,
    /// as OfflineIMAP's makefolder does; everywhere else `name` itself.
    fn new_folder_name(&self, name: &str) -> String {
        name.to_string()
    }

    /// Creates a folder with exactly this name (and, where the store needs it, its parents).
    fn create_folder(&self, name: &str) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// A hint that this folder will be opened soon: a store may start reading it in the
    /// background (Maildir: the directory listing, on another thread) so that the work
    /// overlaps the folder synced now. The default ignores it.
    fn prepare(&self, name: &str) {
        let _ = name;
    }

    /// A hint that only these folders (as this store names them, before any folder filter)
    /// are synced this time (`-f`, or a sync set off by IDLE): a store may list less. The
    /// default ignores it.
    fn syncing_only(&self, names: &[String]) {
        let _ = names;
    }

    /// A hint that these folders will be opened, about in this order, once the other
    /// side has listed its folders: a store may start reading as many of them as it sees
    /// fit (Maildir: directory listings up to a memory budget), so that the work overlaps
    /// the wait. The default ignores it.
    fn prepare_many(&self, names: &[String]) {
        let _ = names;
    }

    /// A hint, once the folders are listed and before any is opened: these folders (in
    /// listing order) will be listed from the listings kept with these tokens (see
    /// [`Folder::list_since`]). A store may ask the server for the changes of all of them
    /// at once (IMAP: one write of every changed folder's SELECT and changes fetch, read
    /// in the background), so that the folders find their changes waiting instead of
    /// asking one after the other; and with them the bodies of the new messages of the
    /// folders that want them ([`ListingWish::new_bodies`]), which their fetches then take
    /// without asking. Returns the names of the folders asked for so, in the order asked,
    /// which may differ from the wishes' (IMAP: most to do first) unless `in_order` (the
    /// user set the order, `foldersort`): the account syncs them first, in that order,
    /// since the others may have to wait for what they share (IMAP: the connection). The
    /// default does nothing and returns none.
    fn prepare_listings(
        &self,
        wishes: Vec<ListingWish>,
        in_order: bool,
    ) -> impl Future<Output = Vec<String>> + Send {
        let _ = (wishes, in_order);
        async { Vec::new() }
    }

    /// Where [`Folder::spool_dir`] of the folder `name` will be, when the store knows it
    /// before the folder is opened and the folder keeps no dates ([`Folder::keeps_dates`]
    /// false): a store on the other side may spool new messages there ahead of the
    /// download (see [`NewBodies`]). The default: `None`.
    fn spool_dir(&self, name: &str) -> Option<std::path::PathBuf> {
        let _ = name;
        None
    }

    /// True when an open folder holds a server connection (IMAP). The account sync opens
    /// the local side of the next folder ahead of its turn only when this is false, so that
    /// `maxconnections` bounds the connections of an IMAP local side too.
    fn holds_connections(&self) -> bool {
        false
    }

    /// Opens one folder for a sync.
    fn open_folder(
        &self,
        name: &str,
        access: Access,
    ) -> impl Future<Output = Result<Self::Folder, StoreError>> + Send;
}

/// One opened folder of one side.
pub trait Folder: Send {
    /// Opens (IMAP: SELECT/EXAMINE) the folder and reports its UIDVALIDITY.
    fn meta(&mut self) -> impl Future<Output = Result<FolderMeta, StoreError>> + Send;

    /// Lists every message with its flags.
    fn list(&mut self) -> impl Future<Output = Result<Listing, StoreError>> + Send;

    /// Fetches whole messages. Callers pass small batches, so memory stays bounded; the
    /// result may come in any order and leaves out messages that vanished meanwhile.
    fn fetch(
        &mut self,
        which: &[MsgRef],
    ) -> impl Future<Output = Result<Vec<Message>, StoreError>> + Send;

    /// A hint before the engine lists this folder: `token` is the one of the listing kept
    /// from the last run (see [`Folder::list_since`]). A store that can tell now that it
    /// will need the server may start on it (IMAP: SELECT a folder opened from its listed
    /// state whose HIGHESTMODSEQ moved on, with the fetch of the changes since the token's
    /// state sent along), so that the wait overlaps the reading of the other side. The
    /// default does nothing.
    fn prepare_listing(
        &mut self,
        token: Option<&str>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let _ = token;
        async { Ok(()) }
    }

    /// Fetches whole messages like [`Folder::fetch`], except that a message larger than
    /// `over` bytes may come as a spool file in `spool_dir`, written as it arrives, so that
    /// memory holds none of it. Without `dates` the store need not tell the messages'
    /// internal dates (see [`Folder::keeps_dates`]). The default keeps everything in
    /// memory.
    fn fetch_spooled(
        &mut self,
        which: &[MsgRef],
        spool_dir: &std::path::Path,
        over: u64,
        dates: bool,
    ) -> impl Future<Output = Result<Vec<Fetched>, StoreError>> + Send {
        let _ = (spool_dir, over, dates);
        let which = which.to_vec();
        async move {
            let fetched = self.fetch(&which).await?;
            Ok(fetched.into_iter().map(Fetched::Memory).collect())
        }
    }

    /// Whether a message stored here keeps the internal date it comes with (IMAP: the
    /// date of the APPEND). The default says yes. OfflineIMAP's Maildir keeps none: its
    /// `savemessage` ignores the time it is given (`utime_from_header` and
    /// `filename_use_mail_timestamp` read the message's own Date header), so a download
    /// into it need not ask the server for INTERNALDATE, which costs Dovecot a tenth of
    /// its work in a download of small messages.
    fn keeps_dates(&self) -> bool {
        true
    }

    /// Whether this folder takes changes. The default says yes. An IMAP folder that the
    /// server opens `[READ-ONLY]` (a shared folder without write rights) says no: the
    /// engine then syncs it as if its repository were `readonly`, as OfflineIMAP skips
    /// what it cannot do there with a warning, where every APPEND, STORE and EXPUNGE
    /// would fail. Asked only when a plan would change the folder (IMAP: it may SELECT).
    fn accepts_changes(&mut self) -> impl Future<Output = Result<bool, StoreError>> + Send {
        async { Ok(true) }
    }

    /// [`Folder::accepts_changes`] for a plan that only copies new messages in. A store
    /// may answer yes without asking the server when a copy it cannot make fails with
    /// [`StoreError::read_only`] instead (IMAP: APPEND needs no SELECT, and the right to
    /// insert is not what `[READ-ONLY]` tells). The default asks as for any change.
    fn accepts_copies(&mut self) -> impl Future<Output = Result<bool, StoreError>> + Send {
        self.accepts_changes()
    }

    /// A hint before a download in several batches: they will be fetched in this order,
    /// each by one [`Folder::fetch`] or [`Folder::fetch_spooled`] of exactly those
    /// messages, with the same arguments. A store may send the requests of the next ones
    /// ahead of each call (IMAP: pipelined `UID FETCH` commands), so that the server
    /// answers them while the caller writes the earlier ones; a call that is not the
    /// next announced one drops the rest of the plan. The default ignores it.
    fn will_fetch(&mut self, batches: Vec<Vec<MsgRef>>) {
        let _ = batches;
    }

    /// Where large messages coming into this folder are spooled (Maildir: its `tmp/`, so
    /// that a spooled message is renamed into place, not copied); `None`: the system's
    /// temporary directory.
    fn spool_dir(&self) -> Option<std::path::PathBuf> {
        None
    }

    /// One message, in a file rather than in memory (see [`LargeMessage`]): a spool file
    /// in `spool_dir` filled in bounded pieces (IMAP: partial `BODY[]<offset.length>`
    /// fetches), or the store's own file. `None` when the message vanished. The default
    /// fetches it whole and spools it.
    fn fetch_large(
        &mut self,
        which: &MsgRef,
        spool_dir: &std::path::Path,
    ) -> impl Future<Output = Result<Option<LargeMessage>, StoreError>> + Send {
        let which = which.clone();
        let dir = spool_dir.to_path_buf();
        async move {
            let fetched = self.fetch(std::slice::from_ref(&which)).await?;
            let Some(message) = fetched.into_iter().find(|m| m.source == which) else {
                return Ok(None);
            };
            LargeMessage::spool_message(&message, &dir)
                .map(Some)
                .map_err(|e| StoreError::new(crate::Severity::Folder, format!("spooling: {e}")))
        }
    }

    /// Stores a [`LargeMessage`] as [`Folder::append`] stores a message, streaming it
    /// (IMAP: the APPEND literal is sent from the file), with the upload marker inserted
    /// into its header when one is given. The default reads it into memory.
    fn append_large(
        &mut self,
        message: &mut LargeMessage,
        marker: Option<&str>,
        flags: Flags,
        uid: Option<Uid>,
    ) -> impl Future<Output = Result<Option<Uid>, StoreError>> + Send {
        let whole = message.to_message(marker).map_err(|e| {
            StoreError::new(
                crate::Severity::Message,
                format!("reading a large message: {e}"),
            )
        });
        async move { self.append(&whole?, flags, uid).await }
    }

    /// Stores a message with the given flags. `uid` is the sync UID the message must carry
    /// (Maildir: written into the file name); stores that assign UIDs themselves (IMAP)
    /// ignore it and return the UID they learned (`APPENDUID`, or a search for the
    /// unique header), or `None` when the server would not say.
    fn append(
        &mut self,
        message: &Message,
        flags: Flags,
        uid: Option<Uid>,
    ) -> impl Future<Output = Result<Option<Uid>, StoreError>> + Send;

    /// Stores several messages as [`Folder::append`] does (stores that assign UIDs only:
    /// no UID is given), in one go where the store can (IMAP: one MULTIAPPEND, RFC 3502,
    /// which the server commits at once). Returns the UIDs in the order of `messages`.
    /// All or nothing is not promised: after an error, any prefix may be stored.
    fn append_batch(
        &mut self,
        messages: &[(&Message, Flags)],
    ) -> impl Future<Output = Result<Vec<Option<Uid>>, StoreError>> + Send {
        async move {
            let mut uids = Vec::with_capacity(messages.len());
            for (m, f) in messages {
                uids.push(self.append(m, *f, None).await?);
            }
            Ok(uids)
        }
    }

    /// Applies flag changes, batched by the store as it likes.
    fn set_flags(
        &mut self,
        updates: &[FlagUpdate],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes messages (IMAP: `\Deleted`, then expunged at [`Folder::close`] when the
    /// repository's `expunge` allows).
    fn delete(&mut self, uids: &[Uid]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Gives a message its (new) sync UID after it was uploaded (Maildir: renames the file
    /// to carry `,U=<uid>`): an unsynced message, or one whose old UID neither the server
    /// nor the status knew. Must refuse, not merge, when another message already carries
    /// `uid`. Stores that assign UIDs themselves (IMAP) never see this call.
    fn assign_uid(
        &mut self,
        which: &MsgRef,
        uid: Uid,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Lists like [`Folder::list`], starting from a listing this store made on an earlier
    /// run when it can tell what changed since (IMAP: CONDSTORE/QRESYNC, RFC 7162). Returns
    /// the listing and, when the store can continue from it next time, the token to keep
    /// with it. The default lists in full and keeps nothing.
    fn list_since(
        &mut self,
        earlier: Option<CachedListing>,
    ) -> impl Future<Output = Result<(Listing, Option<String>), StoreError>> + Send {
        let _ = earlier;
        async { Ok((self.list().await?, None)) }
    }

    /// What a quick sync needs to tell whether the folder changed, cheaply (IMAP: the
    /// message count from SELECT and the UID of the last message): `None` when the store
    /// cannot say more cheaply than a listing, which the engine then does. `kept` is the
    /// listing the engine kept for this side ([`Folder::list_since`]): a store that can
    /// tell, without asking, that the folder is still in the state it shows may answer
    /// from it.
    fn quick_state(
        &mut self,
        kept: Option<&CachedListing>,
    ) -> impl Future<Output = Result<Option<QuickState>, StoreError>> + Send {
        let _ = kept;
        async { Ok(None) }
    }

    /// The identity of every message (recovery only: may read every message's header).
    /// Stores that cannot tell answer an empty list, which disables re-pairing.
    fn identities(
        &mut self,
    ) -> impl Future<Output = Result<Vec<(MsgRef, Identity)>, StoreError>> + Send {
        async { Ok(Vec::new()) }
    }

    /// Every message that carries the upload marker `marker` (IMAP: `UID SEARCH HEADER
    /// X-OfflineIMAP`), in UID order: more than one when an interrupted APPEND landed after
    /// the message was uploaded again. Stores that are never uploaded to answer none.
    fn find_marker(
        &mut self,
        marker: &str,
    ) -> impl Future<Output = Result<Vec<Uid>, StoreError>> + Send {
        let _ = marker;
        async { Ok(Vec::new()) }
    }

    /// `maxage`: the messages this side considers newer than `since` (IMAP: `SEARCH SINCE`
    /// the cutoff's day; Maildir: the delivery time at the start of the file name), or
    /// `None` when the store cannot tell, which keeps every message in the window.
    fn messages_since(
        &mut self,
        since: AgeCutoff,
    ) -> impl Future<Output = Result<Option<Vec<MsgRef>>, StoreError>> + Send {
        let _ = since;
        async { Ok(None) }
    }

    /// The store's own UID of a message of its listing, for `startdate`, whose StartUID
    /// OfflineIMAP keeps in the partial side's own UIDs: by default the sync UID itself,
    /// and `None` for a message without one (a new Maildir message, always taken). A
    /// store whose own UIDs are not the sync UIDs (IMAP↔IMAP's mapped local folder) gives
    /// its own, for unsynced messages too.
    fn own_uid(&self, which: &MsgRef) -> Option<u32> {
        match which {
            MsgRef::Uid(uid) => Some(uid.get()),
            MsgRef::Unsynced(_) => None,
        }
    }

    /// Makes the changes so far durable (Maildir: fsyncs the directories that new files
    /// were renamed into). The engine calls it before committing the status, so that a
    /// record never outlives the message it describes. Stores that are durable at each
    /// call need not override it.
    fn flush(&mut self) -> impl Future<Output = Result<(), StoreError>> + Send {
        async { Ok(()) }
    }

    /// [`Folder::flush`] when the caller has other work that could use the wait (the
    /// engine: once this folder handed its connection to the next one): a store whose
    /// flush waits for the disk may wait on a thread of its own, so that the task's other
    /// futures run meanwhile. Where nothing else would run, that only costs a thread and
    /// a hand-over, so it is not the default flush. The default is [`Folder::flush`].
    fn flush_aside(&mut self) -> impl Future<Output = Result<(), StoreError>> + Send {
        self.flush()
    }

    /// Ends the folder's sync (IMAP: expunge if configured, then release the connection).
    fn close(&mut self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The last-synced state of one folder: OfflineIMAP's LocalStatus plus the saved
/// UIDVALIDITY of each side.
///
/// Writes are intent records: the engine writes a row *before* the effect that makes it
/// true wherever a crash in between could otherwise duplicate or lose a message, and calls
/// [`StatusStore::commit`] at safe points.
pub trait StatusStore: Send {
    /// Every record: sync UID to the flags both sides last agreed on.
    fn load(&mut self) -> Result<BTreeMap<Uid, Flags>, StoreError>;

    /// Inserts or replaces a record (keeping any other columns, such as Gmail labels).
    fn set(&mut self, uid: Uid, flags: Flags) -> Result<(), StoreError>;

    /// Removes a record.
    fn remove(&mut self, uid: Uid) -> Result<(), StoreError>;

    /// Makes the writes so far durable.
    fn commit(&mut self) -> Result<(), StoreError>;

    /// The commit of an engine checkpoint, which nothing needs at once: a store may leave
    /// the writes for a later [`StatusStore::commit`] (LocalStatus with `fsync` off:
    /// OfflineIMAP batches its transactions), since a record that never reaches the disk
    /// only makes the next run pair the message again. The default commits.
    fn checkpoint_commit(&mut self) -> Result<(), StoreError> {
        self.commit()
    }

    /// [`StatusStore::checkpoint_commit`] for a caller with other work to do meanwhile
    /// (see [`StatusStore::commit_aside`]). The default commits in place as
    /// `checkpoint_commit` does.
    fn checkpoint_commit_aside(&mut self) -> impl Future<Output = Result<(), StoreError>> + Send {
        async { self.checkpoint_commit() }
    }

    /// [`StatusStore::commit`] for a caller with other work to do meanwhile: the engine
    /// ends a folder with it once the folder's connection went to the next folder, whose
    /// futures share the task and would wait for a blocking commit (its fsyncs, and on a
    /// journaled file system the data written since). The default commits in place.
    fn commit_aside(&mut self) -> impl Future<Output = Result<(), StoreError>> + Send {
        async { self.commit() }
    }

    /// Uploads recorded as about to happen and not yet finished.
    fn pending_uploads(&mut self) -> Result<Vec<PendingUpload>, StoreError>;

    /// Records an upload about to happen; the engine commits before the APPEND (one commit
    /// for a whole batch of uploads).
    fn add_pending_upload(&mut self, pending: &PendingUpload) -> Result<(), StoreError>;

    /// Forgets a pending upload (with the next commit).
    fn clear_pending_upload(&mut self, marker: &str) -> Result<(), StoreError>;

    /// The listing of a side kept by [`StatusStore::save_listing`], if any. Stores that
    /// keep none answer `None` (the engine then lists in full).
    fn cached_listing(&mut self, side: crate::Side) -> Result<Option<CachedListing>, StoreError> {
        let _ = side;
        Ok(None)
    }

    /// The token of the listing of a side kept by [`StatusStore::save_listing`], without
    /// the listing.
    fn cached_token(&mut self, side: crate::Side) -> Result<Option<String>, StoreError> {
        Ok(self.cached_listing(side)?.map(|c| c.token))
    }

    /// Keeps a side's listing for the next run (with the next commit); `None` forgets it.
    fn save_listing(
        &mut self,
        side: crate::Side,
        cached: Option<&CachedListing>,
    ) -> Result<(), StoreError> {
        let _ = (side, cached);
        Ok(())
    }

    /// The UIDVALIDITY saved for a side (`Repository-<name>/FolderValidity/<folder>`).
    fn saved_validity(&self, side: crate::Side) -> Result<Option<UidValidity>, StoreError>;

    /// Saves the UIDVALIDITY of a side.
    fn save_validity(&mut self, side: crate::Side, value: UidValidity) -> Result<(), StoreError>;

    /// `startdate`: the first UID of a side's folder that takes part in the sync, saved on
    /// the first sync (OfflineIMAP's `Repository-<name>/StartUID/<folder>`); `None` before.
    fn start_uid(&self, side: crate::Side) -> Result<Option<u32>, StoreError> {
        let _ = side;
        Ok(None)
    }

    /// Saves [`StatusStore::start_uid`]. Stores without such a file refuse.
    fn save_start_uid(&mut self, side: crate::Side, uid: u32) -> Result<(), StoreError> {
        let _ = (side, uid);
        Err(StoreError::new(
            crate::Severity::Folder,
            "this status store cannot keep a startdate's first UID",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_reads_folded_message_id_and_crlf_size() {
        let m = b"Subject: x\nMessage-ID:\n <a@b>\nTo: y\n\nMessage-ID: <not@this>\n";
        let id = Identity::of_message(m);
        assert_eq!(id.message_id.as_deref(), Some("<a@b>"));
        assert_eq!(id.size, Some((m.len() + 6) as u64));
        let crlf = b"message-id: <c@d>\r\n\r\nbody\r\n";
        assert_eq!(Identity::of_message(crlf).size, Some(crlf.len() as u64));
        assert_eq!(message_id_of(b"Subject: none\r\n\r\n"), None);
    }

    #[test]
    fn cached_listing_round_trips_and_rejects_garbage() {
        let mut l = Listing::default();
        for (n, f, s) in [
            (1, "S", Some(10)),
            (7, "FRa", None),
            (u32::MAX, "", Some(0)),
        ] {
            l.messages.insert(
                Uid::new(n).unwrap(),
                MessageMeta {
                    flags: Flags::from_maildir(f),
                    size: s,
                },
            );
        }
        let data = CachedListing::encode_messages(&l);
        assert_eq!(CachedListing::decode_messages(&data), Some(l));
        assert_eq!(CachedListing::decode_messages(&data[..15]), None);
        assert_eq!(CachedListing::decode_messages(&[0u8; 16]), None);
        let twice = [&data[..16], &data[..16]].concat();
        assert_eq!(CachedListing::decode_messages(&twice), None);
    }

    fn spooled(body: &[u8]) -> (tempfile::TempDir, LargeMessage) {
        let dir = tempfile::tempdir().unwrap();
        let m = Message {
            source: MsgRef::Unsynced("k".into()),
            body: body.to_vec(),
            flags: Flags::default(),
            internal_date: None,
        };
        let large = LargeMessage::spool_message(&m, dir.path()).unwrap();
        (dir, large)
    }

    #[test]
    fn header_reads_past_the_blank_line_only_as_far_as_it_must() {
        use std::io::Read;
        // A header whose blank line straddles the 16 KiB steps, and a long body.
        for pad in [16 * 1024 - 3, 16 * 1024 - 2, 16 * 1024 - 1, 16 * 1024] {
            let mut body = b"Subject: s\r\nX-Pad: ".to_vec();
            body.resize(pad, b'p');
            body.extend_from_slice(b"\r\n\r\n");
            body.resize(body.len() + (3 << 20), b'b');
            let (_dir, mut m) = spooled(&body);
            let head = m.header().unwrap();
            assert!(crate::marker::has_header_end(&head), "pad {pad}");
            assert!(
                head.len() <= 48 * 1024,
                "pad {pad}: read {} bytes",
                head.len()
            );
            // The marker goes into the header, and the rest of the message follows whole.
            let (len, mut r) = m.reader(Some("mark")).unwrap();
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out.len() as u64, len);
            let expect = crate::marker::insert_marker(&body, "mark");
            assert!(out == expect, "pad {pad}: marked message differs");
        }
        // No body at all: the whole message; a header longer than the limit: an error.
        let (_dir, mut m) = spooled(b"Subject: only\n");
        assert_eq!(m.header().unwrap(), b"Subject: only\n");
        let mut long = b"X-Long: ".to_vec();
        long.resize((LARGE_HEAD_MAX + 10) as usize, b'x');
        let (_dir, mut m) = spooled(&long);
        assert!(m.reader(Some("mark")).is_err());
    }

    #[test]
    fn msgref_text_round_trip() {
        for r in [
            MsgRef::Uid(Uid::new(7).unwrap()),
            MsgRef::Unsynced("a:b,c".into()),
        ] {
            assert_eq!(MsgRef::from_text(&r.to_text()), Some(r));
        }
        assert_eq!(MsgRef::from_text("uid:0"), None);
        assert_eq!(MsgRef::from_text("junk"), None);
    }
}
