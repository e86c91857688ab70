//! The IMAP side of the store seam: [`ImapRepository`] and [`ImapFolder`].

use std::collections::BTreeMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use oi_core::{
    Access, EventSink, FlagUpdate, Flags, Folder, FolderMeta, Listing, Message, MessageMeta,
    MsgRef, Repository, Secret, Severity, StoreError, Uid, UidValidity,
};

use crate::ImapError;
use crate::client::{AuthMechanism, ConnectSettings, Connection, Security, Tunnel};
use crate::response::{RespCode, Untagged};
use crate::session::{Command, Part};
use crate::survey::{BodyAhead, Survey};
use crate::transport::{CaSource, TlsSettings};

/// A validated IMAP repository configuration.
#[derive(Debug, Clone)]
pub struct ImapConfig {
    /// Server host.
    pub host: String,
    /// Port; `None` means 993 for [`Security::Tls`], else 143.
    pub port: Option<u16>,
    /// User name.
    pub user: String,
    /// Password (not needed with a preauth tunnel).
    pub password: Option<Secret>,
    /// How the connection is secured.
    pub security: Security,
    /// Where TLS trust comes from.
    pub ca: CaSource,
    /// Accepted certificate digests (`cert_fingerprint`).
    pub fingerprints: Vec<String>,
    /// A tunnel command instead of TCP.
    pub tunnel: Option<Tunnel>,
    /// Socket timeout (`socktimeout`).
    pub timeout: Option<Duration>,
    /// Expunge `\Deleted` messages when a folder is closed.
    pub expunge: bool,
    /// Commands in flight at once per connection.
    pub pipeline_depth: usize,
    /// Authentication mechanisms to try, in order (OfflineIMAP's `auth_mechanisms`).
    pub auth_mechanisms: Vec<AuthMechanism>,
    /// SASL authorization identity for PLAIN (`remote_identity`).
    pub identity: Option<String>,
    /// OAuth2 tokens for XOAUTH2, shared by every connection.
    pub oauth2: Option<Arc<crate::oauth2::OAuth2>>,
    /// Address family, TLS versions and client certificate.
    pub net: crate::transport::NetOptions,
    /// IMAP keywords that stand for custom Maildir flag letters (`customflag_x`).
    pub keywords: crate::keywords::KeywordMap,
    /// Use CONDSTORE/QRESYNC (RFC 7162) where offered to list only what changed.
    pub condstore: bool,
    /// `retrycount`: attempts of a message fetch whose connection broke, each on a new
    /// connection (at least 1; OfflineIMAP's default is 2).
    pub fetch_attempts: u32,
    /// `reference` and `subscribedonly`.
    pub folders: crate::FolderListing,
    /// Called after each connection logged in (the binary's `--update-keyring`, which
    /// stores a password only once it worked).
    pub on_login: Option<LoginHook>,
    /// `maxconnections`: how many connections may exist at once (at least 1). The engine
    /// runs at most that many folders at once, each on one connection; the repository
    /// only needs it while a survey reads on a connection of its own (see [`Survey`]).
    pub max_connections: usize,
}

/// A callback run after a connection logged in, with the repository's event sink for any
/// warning it has.
#[derive(Clone)]
pub struct LoginHook(pub Arc<LoginFn>);

/// What a [`LoginHook`] runs.
pub type LoginFn = dyn Fn(&dyn EventSink) + Send + Sync;

impl std::fmt::Debug for LoginHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginHook")
    }
}

impl ImapConfig {
    /// A configuration with OfflineIMAP's defaults for everything but host and user.
    pub fn new(host: impl Into<String>, user: impl Into<String>) -> ImapConfig {
        ImapConfig {
            host: host.into(),
            port: None,
            user: user.into(),
            password: None,
            security: Security::Tls,
            ca: CaSource::System,
            fingerprints: Vec::new(),
            tunnel: None,
            timeout: None,
            expunge: true,
            pipeline_depth: 8,
            auth_mechanisms: AuthMechanism::DEFAULT.to_vec(),
            identity: None,
            oauth2: None,
            net: crate::transport::NetOptions::default(),
            keywords: crate::keywords::KeywordMap::default(),
            condstore: true,
            fetch_attempts: 2,
            folders: crate::FolderListing::default(),
            on_login: None,
            max_connections: 1,
        }
    }

    fn connect_settings(&self) -> ConnectSettings {
        ConnectSettings {
            host: self.host.clone(),
            port: self.port.unwrap_or(match self.security {
                Security::Tls => 993,
                _ => 143,
            }),
            security: self.security,
            tls: TlsSettings {
                ca: self.ca.clone(),
                fingerprints: self.fingerprints.clone(),
            },
            tunnel: self.tunnel.clone(),
            timeout: self.timeout,
            user: self.user.clone(),
            password: self.password.clone(),
            mechanisms: self.auth_mechanisms.clone(),
            identity: self.identity.clone(),
            oauth2: self.oauth2.clone(),
            pipeline_depth: self.pipeline_depth,
        }
    }
}

/// Authenticated connections not in use, shared by a repository and its open folders.
///
/// Reusing them saves a TCP (and TLS) handshake, a login and a server process per folder,
/// which is most of the cost of a sync that has little to do. Selecting the next folder on
/// a reused connection implicitly closes the previous one without expunging (RFC 3501
/// §6.4.2), so no UNSELECT is needed.
pub(crate) type Pool = Arc<Connections>;

/// The connections of a repository (and of the held connections it continues): those not
/// in use, and a count of all that exist.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    idle: std::sync::Mutex<Vec<Connection>>,
    /// How many exist: idle, in use by a folder, or reading a survey. Each holds a
    /// [`Counted`] of it from before it connects until it is dropped.
    live: Arc<AtomicUsize>,
}

impl Connections {
    /// Counts one more connection, from now until the returned value is dropped.
    pub(crate) fn count(&self) -> Counted {
        self.live.fetch_add(1, Ordering::SeqCst);
        Counted(self.live.clone())
    }

    /// Counts one more connection if fewer than `max` exist.
    fn reserve(&self, max: usize) -> Option<Counted> {
        self.live
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Counted(self.live.clone()))
    }
}

/// One connection counted in its pool's [`Connections::live`] while this is held.
#[derive(Debug)]
pub(crate) struct Counted(Arc<AtomicUsize>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) fn lock_pool(pool: &Pool) -> std::sync::MutexGuard<'_, Vec<Connection>> {
    // A panic while the lock was held left the Vec itself intact.
    pool.idle.lock().unwrap_or_else(|p| p.into_inner())
}

/// An IMAP repository.
pub struct ImapRepository {
    config: ImapConfig,
    events: Arc<dyn EventSink>,
    separator: AtomicU32,
    idle: Pool,
    /// Set when the pool belongs to a [`crate::HeldConnections`]: then
    /// [`ImapRepository::shutdown`] leaves it logged in for the next sync and stores here
    /// the mod-sequence mode its connections were enabled with (they do not connect again).
    held: Option<Arc<std::sync::atomic::AtomicU8>>,
    /// How this server tells changes (see [`ModSeqMode`]), learned at each connect.
    modseq_mode: std::sync::atomic::AtomicU8,
    /// Each mailbox's state as the last folder listing gave it (LIST-STATUS), taken by
    /// [`Repository::open_folder`] (see [`Listed`]).
    listed: std::sync::Mutex<std::collections::HashMap<String, Listed>>,
    /// Only a few folders are synced (see [`Repository::syncing_only`]): no LIST-STATUS.
    few: std::sync::atomic::AtomicBool,
    /// The changes of several folders asked for at once ([`Repository::prepare_listings`]).
    survey: std::sync::Mutex<Option<Arc<Survey>>>,
}

/// A mailbox's state from LIST-STATUS (RFC 5819) with CONDSTORE (RFC 7162 §3.1.6).
///
/// A folder opened with one is not SELECTed until something needs the server
/// ([`ImapFolder::ensure_selected`]). If the kept listing is of this same HIGHESTMODSEQ
/// and count, nothing changed on the server since the last sync (every new message, flag
/// change and expunge raises HIGHESTMODSEQ), and a folder with no local change either is
/// synced without a command of its own: a no-op sync of many folders costs one LIST.
/// State reported before the folder's turn is as good as a SELECT at that moment: what
/// changes in between is seen by the next sync, which finds HIGHESTMODSEQ moved on.
#[derive(Debug, Clone, Copy)]
struct Listed {
    validity: u32,
    messages: u32,
    highest_modseq: u64,
    /// UIDNEXT, when the server said.
    uid_next: Option<u32>,
}

/// At most how many messages the folders of one [`Survey`] may hold: what it reads for
/// them waits in memory until each folder's turn (a changed message takes about 40 bytes;
/// a server that lost its mod-sequences reports every message changed).
const SURVEY_MESSAGES: u64 = 50_000;

/// At most how many new messages one [`Survey`] fetches the bodies of. A message too
/// large to be fetched whole costs one whole fetch's worth of bytes more ([`NewBodies`]'s
/// `up_to`, 8 MiB by default), for its folder fetches it again its own way.
const SURVEY_NEW_MESSAGES: u64 = 1000;

/// How long [`ImapRepository::shutdown`] gives a survey still reading to end.
const SURVEY_END_WAIT: Duration = Duration::from_secs(5);

/// Up to how many folders named for a sync ([`Repository::syncing_only`]) are SELECTed
/// without asking every mailbox's state first.
const FEW_FOLDERS: usize = 4;

/// What a SELECT or EXAMINE reported.
pub(crate) struct Selected {
    pub(crate) validity: Option<u32>,
    exists: Option<u32>,
    highest_modseq: Option<u64>,
    /// The SELECT completed `OK [READ-ONLY]`: the server takes no changes here.
    read_only: bool,
}

/// What the server offers to tell changes since an earlier state (RFC 7162).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum ModSeqMode {
    /// Neither CONDSTORE nor QRESYNC: every sync lists all UIDs and flags.
    None = 0,
    /// CONDSTORE without ENABLE: `SELECT … (CONDSTORE)` turns it on per mailbox.
    CondstoreSelect = 1,
    /// CONDSTORE turned on with ENABLE: changes via `CHANGEDSINCE`, expunges by count.
    Condstore = 2,
    /// QRESYNC turned on with ENABLE: expunges are reported by `VANISHED` too.
    Qresync = 3,
}

impl ModSeqMode {
    fn from_u8(n: u8) -> ModSeqMode {
        match n {
            1 => ModSeqMode::CondstoreSelect,
            2 => ModSeqMode::Condstore,
            3 => ModSeqMode::Qresync,
            _ => ModSeqMode::None,
        }
    }
}

impl std::fmt::Debug for ImapRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImapRepository")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ImapRepository {
    /// A repository; nothing connects until a method needs the server.
    pub fn new(config: ImapConfig, events: Arc<dyn EventSink>) -> ImapRepository {
        ImapRepository {
            config,
            events,
            separator: AtomicU32::new('.' as u32),
            idle: Pool::default(),
            modseq_mode: std::sync::atomic::AtomicU8::new(ModSeqMode::None as u8),
            held: None,
            listed: Default::default(),
            few: Default::default(),
            survey: Default::default(),
        }
    }

    /// A repository whose idle connections are `held` ones (`holdconnectionopen`): it
    /// reuses those left by the previous sync and leaves its own for the next.
    pub fn with_held(
        config: ImapConfig,
        events: Arc<dyn EventSink>,
        held: &crate::HeldConnections,
    ) -> ImapRepository {
        ImapRepository {
            idle: held.pool.clone(),
            modseq_mode: std::sync::atomic::AtomicU8::new(held.modseq_mode.load(Ordering::Relaxed)),
            held: Some(held.modseq_mode.clone()),
            ..ImapRepository::new(config, events)
        }
    }

    /// An idle pooled connection, or a new one.
    async fn take(&self) -> Result<Connection, StoreError> {
        let reserved = survey_connection_back(
            &self.idle,
            self.current_survey().as_deref(),
            self.config.max_connections,
        )
        .await;
        let pooled = lock_pool(&self.idle).pop();
        match pooled {
            Some(conn) => Ok(conn),
            None => {
                self.connect_counted(reserved.unwrap_or_else(|| self.idle.count()))
                    .await
            }
        }
    }

    /// Gives a survey still reading [`SURVEY_END_WAIT`] to end (and put its connection
    /// back), then gives up on it: it then closes its connection when it ends.
    async fn wait_for_survey(&self, s: &Survey) {
        if tokio::time::timeout(SURVEY_END_WAIT, s.finished())
            .await
            .is_err()
        {
            s.abandon(&mut lock_pool(&self.idle));
        }
    }

    /// The survey of this sync, if one was started.
    fn current_survey(&self) -> Option<Arc<Survey>> {
        self.survey
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts a healthy connection back for the next folder.
    fn give_back(&self, conn: Connection) {
        lock_pool(&self.idle).push(conn);
    }

    /// A connection watching one folder with IDLE (`idlefolders`): EXAMINE, so that
    /// watching never changes the folder.
    pub async fn watch(&self, folder: &str) -> Result<Watcher, StoreError> {
        let mut conn = self.connect().await?;
        conn.run(Command {
            name: "EXAMINE".into(),
            parts: vec![Part::Raw(b"EXAMINE ".to_vec()), mailbox(folder)],
        })
        .await
        .map_err(|e| e.into_store(Severity::Folder, format!("EXAMINE {folder}")))?;
        Ok(Watcher {
            conn,
            folder: folder.to_string(),
        })
    }

    /// Deletes a folder on the server (`--delete-folder`): RFC 3501 §6.3.4 DELETE.
    pub async fn delete_folder(&self, name: &str) -> Result<(), StoreError> {
        let mut conn = self.take().await?;
        let r = conn
            .run(Command {
                name: "DELETE".into(),
                parts: vec![Part::Raw(b"DELETE ".to_vec()), mailbox(name)],
            })
            .await;
        if matches!(&r, Ok(_) | Err(ImapError::Command { .. })) {
            self.give_back(conn);
        }
        r.map(|_| ())
            .map_err(|e| e.into_store(Severity::Folder, format!("deleting folder {name}")))
    }

    /// Logs out every pooled connection (call once when the account is done).
    /// Held connections ([`ImapRepository::with_held`]) stay open.
    pub async fn shutdown(&self) {
        // A survey still reading (its folders' syncs stopped before taking their answers)
        // puts its connection back when done: given a moment, it is logged out with the
        // others (or kept, when held).
        if let Some(s) = self.current_survey() {
            self.wait_for_survey(&s).await;
        }
        if let Some(mode) = &self.held {
            mode.store(self.modseq_mode.load(Ordering::Relaxed), Ordering::Relaxed);
            return;
        }
        // Every connection's LOGOUT goes out now; none is waited for.
        let conns: Vec<Connection> = std::mem::take(&mut *lock_pool(&self.idle));
        for conn in conns {
            conn.logout_unawaited().await;
        }
    }

    /// Opens an authenticated connection.
    pub async fn connect(&self) -> Result<Connection, StoreError> {
        self.connect_counted(self.idle.count()).await
    }

    /// [`ImapRepository::connect`], counted with `counted` (a reservation, or a new count).
    async fn connect_counted(&self, counted: Counted) -> Result<Connection, StoreError> {
        let (conn, mode) = open_connection(&self.config, &*self.events, counted).await?;
        self.modseq_mode.store(mode as u8, Ordering::Relaxed);
        Ok(conn)
    }

    fn modseq_mode(&self) -> ModSeqMode {
        ModSeqMode::from_u8(self.modseq_mode.load(Ordering::Relaxed))
    }
}

/// Opens an authenticated connection with mod-sequences turned on where the server offers
/// them: every connection of a repository, the replacement of a broken one included
/// (`retry`), goes through here, so that any of them can be pooled for any folder.
pub(crate) async fn open_connection(
    config: &ImapConfig,
    events: &dyn EventSink,
    counted: Counted,
) -> Result<(Connection, ModSeqMode), StoreError> {
    let mut conn = open_logged_in(config, events, counted).await?;
    let mode = enable_modseq(config, &mut conn)
        .await
        .map_err(|e| enable_error(config, e))?;
    Ok((conn, mode))
}

/// An ENABLE that failed, named as [`open_connection`] names it.
fn enable_error(config: &ImapConfig, e: ImapError) -> StoreError {
    e.into_store(
        Severity::Repository,
        format!("connecting to {} as {}: ENABLE", config.host, config.user),
    )
}

/// An authenticated connection, mod-sequences not turned on yet (see [`open_connection`]).
async fn open_logged_in(
    config: &ImapConfig,
    events: &dyn EventSink,
    counted: Counted,
) -> Result<Connection, StoreError> {
    let settings = config.connect_settings();
    events.emit(oi_core::Event::Connecting {
        account: None,
        repository: None,
        host: settings.host.clone(),
        port: settings.tunnel.is_none().then_some(settings.port),
    });
    let ctx = || format!("connecting to {} as {}", config.host, config.user);
    let mut conn = Connection::open_with(&settings, &config.net)
        .await
        .map_err(|e| e.into_store(Severity::Repository, ctx()))?;
    conn.counted = Some(counted);
    for message in conn.take_auth_failures() {
        events.emit(oi_core::Event::Warning {
            account: None,
            message,
        });
    }
    if let Some(hook) = &config.on_login {
        (hook.0)(events);
    }
    Ok(conn)
}

/// How mod-sequences are turned on for a connection: known without asking, or by
/// `ENABLE <what>`, whose answer [`enabled_mode`] reads.
enum Enable {
    Known(ModSeqMode),
    Ask(&'static str),
}

/// Turns on mod-sequences where the server offers them (RFC 7162 §3.1, §3.2.3), so that
/// a folder's changes since the last sync can be asked for instead of every flag.
async fn enable_modseq(
    config: &ImapConfig,
    conn: &mut Connection,
) -> Result<ModSeqMode, ImapError> {
    match enable_plan(config, conn) {
        Enable::Known(mode) => Ok(mode),
        Enable::Ask(what) => {
            let (untagged, _) = conn.run(Command::raw(format!("ENABLE {what}"))).await?;
            Ok(enabled_mode(&untagged))
        }
    }
}

/// See [`Enable`].
fn enable_plan(config: &ImapConfig, conn: &Connection) -> Enable {
    if !config.condstore {
        return Enable::Known(ModSeqMode::None);
    }
    let (condstore, qresync) = (conn.has("CONDSTORE"), conn.has("QRESYNC"));
    if !conn.has("ENABLE") {
        return Enable::Known(if condstore || qresync {
            ModSeqMode::CondstoreSelect
        } else {
            ModSeqMode::None
        });
    }
    match (condstore, qresync) {
        (_, true) => Enable::Ask("QRESYNC"),
        (true, false) => Enable::Ask("CONDSTORE"),
        (false, false) => Enable::Known(ModSeqMode::None),
    }
}

/// The mode an `ENABLE` turned on, from its answer.
fn enabled_mode(untagged: &[Untagged]) -> ModSeqMode {
    // A server may accept ENABLE and enable nothing: only what `* ENABLED` names is on.
    let enabled = |cap: &str| {
        untagged.iter().any(|u| {
            matches!(u, Untagged::Enabled(caps) if caps.iter().any(|c| c.eq_ignore_ascii_case(cap)))
        })
    };
    if enabled("QRESYNC") {
        ModSeqMode::Qresync
    } else if enabled("CONDSTORE") {
        ModSeqMode::Condstore
    } else {
        ModSeqMode::None
    }
}

/// With the pool empty while a survey reads on one of its connections: counts one more
/// connection for the caller to open while fewer than `max` exist, else waits for the
/// survey's to come back rather than open one more than `maxconnections` allows. (The
/// engine runs at most `max` folders at once, each on one connection; the survey's is the
/// one more.)
async fn survey_connection_back(
    pool: &Pool,
    survey: Option<&Survey>,
    max: usize,
) -> Option<Counted> {
    let s = survey.filter(|_| lock_pool(pool).is_empty())?;
    let reserved = pool.reserve(max);
    if reserved.is_none() {
        s.finished().await;
    }
    reserved
}

/// A pooled connection (in the folder's `mode`), else a new one. While a survey reads
/// on a connection of the pool's, that one is waited for instead (see [`Survey`]).
async fn pooled_or_new(
    pool: &Pool,
    mode: ModSeqMode,
    reconnect: &crate::retry::Reconnect,
    survey: Option<&Survey>,
) -> Result<(Connection, ModSeqMode), StoreError> {
    let reserved = survey_connection_back(pool, survey, reconnect.config.max_connections).await;
    let pooled = lock_pool(pool).pop();
    match pooled {
        Some(conn) => Ok((conn, mode)),
        None => {
            reconnect
                .connect(reserved.unwrap_or_else(|| pool.count()))
                .await
        }
    }
}

/// The verb that opens a folder for `access`.
fn verb_for(access: Access) -> &'static str {
    match access {
        Access::ReadOnly => "EXAMINE",
        Access::ReadWrite => "SELECT",
    }
}

/// A folder's SELECT (`verb`) followed by the fetch of its changes since a kept listing
/// of HIGHESTMODSEQ `since` and last UID `known` ([`changes_commands`], with the new
/// messages' bodies of up to `bodies` bytes or without), to be sent in one write: by
/// [`ImapFolder::send_listing_ahead`] for one folder, by a [`Survey`] for many.
fn listing_commands(
    verb: &str,
    name: &str,
    mode: ModSeqMode,
    (since, known): (u64, u32),
    bodies: Option<u64>,
) -> Vec<Command> {
    let mut commands = vec![select_command(verb, name, mode)];
    commands.extend(
        changes_commands(since, known, mode == ModSeqMode::Qresync, bodies)
            .into_iter()
            .map(Command::raw),
    );
    commands
}

/// `SELECT name` / `EXAMINE name`, with `(CONDSTORE)` when the server has CONDSTORE but no
/// ENABLE (RFC 7162 §3.1.8).
fn select_command(verb: &str, name: &str, mode: ModSeqMode) -> Command {
    let mut parts = vec![Part::Raw(format!("{verb} ").into_bytes()), mailbox(name)];
    if mode == ModSeqMode::CondstoreSelect {
        parts.push(Part::Raw(b" (CONDSTORE)".to_vec()));
    }
    Command {
        name: verb.into(),
        parts,
    }
}

fn mailbox(name: &str) -> Part {
    Part::Str {
        bytes: name.as_bytes().to_vec(),
        secret: false,
    }
}

impl Repository for ImapRepository {
    type Folder = ImapFolder;

    /// The server's delimiter, learned by [`Repository::list_folders`] (`.` before).
    fn separator(&self) -> char {
        char::from_u32(self.separator.load(Ordering::Relaxed)).unwrap_or('.')
    }

    /// On a new connection the ENABLE of mod-sequences goes out with the LIST rather than
    /// before it: one round trip less per run (20 ms with a server 20 ms away). HIGHESTMODSEQ
    /// is then asked for on the strength of the capability that ENABLE turns on: STATUS
    /// HIGHESTMODSEQ is valid wherever CONDSTORE is offered (RFC 7162 §3.1), and the listed
    /// states are used only if ENABLE did turn it on (see `open_folder`).
    async fn list_folders(&self) -> Result<Vec<String>, StoreError> {
        // A new sync: the last one's survey (of a repository kept between syncs) is over.
        let last_survey = self.survey.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(s) = last_survey {
            self.wait_for_survey(&s).await;
        }
        let pooled = lock_pool(&self.idle).pop();
        let (mut conn, enable) = match pooled {
            Some(conn) => (conn, None),
            None => {
                let conn = open_logged_in(&self.config, &*self.events, self.idle.count()).await?;
                match enable_plan(&self.config, &conn) {
                    Enable::Known(mode) => {
                        self.modseq_mode.store(mode as u8, Ordering::Relaxed);
                        (conn, None)
                    }
                    Enable::Ask(what) => (conn, Some(what)),
                }
            }
        };
        let ctx = "LIST";
        // HIGHESTMODSEQ is only worth asking for where SELECT would report it too, and
        // every mailbox's state only when more than a chosen few are synced.
        let status = (enable.is_some() || self.modseq_mode() != ModSeqMode::None)
            && conn.has("LIST-STATUS")
            && !self.few.load(Ordering::Relaxed);
        let mut commands: Vec<Command> = enable
            .iter()
            .map(|what| Command::raw(format!("ENABLE {what}")))
            .collect();
        commands.push(self.config.folders.command(status));
        let (untagged, completions) = conn
            .run_batch(commands)
            .await
            .map_err(|e| e.into_store(Severity::Repository, ctx))?;
        let mut completions = completions.into_iter();
        if enable.is_some() {
            if let Some(done) = completions.next() {
                done.ok().map_err(|e| enable_error(&self.config, e))?;
            }
            let mode = enabled_mode(&untagged);
            self.modseq_mode.store(mode as u8, Ordering::Relaxed);
        }
        let mut untagged = untagged;
        if let Some(done) = completions.next()
            && let Err(e) = done.ok()
        {
            // A server that offers CONDSTORE, enabled nothing and refuses STATUS
            // HIGHESTMODSEQ: the plain LIST it got before ENABLE went out with it.
            if !(status && enable.is_some() && self.modseq_mode() == ModSeqMode::None) {
                return Err(e.into_store(Severity::Repository, ctx));
            }
            untagged = conn
                .run(self.config.folders.command(false))
                .await
                .map_err(|e| e.into_store(Severity::Repository, ctx))?
                .0;
        }
        // STATUS is not meant for the mailbox selected on the connection asking (RFC 3501
        // §6.3.10): a held connection's last folder is SELECTed again instead.
        let selected = conn.selected.clone();
        self.give_back(conn);
        let mut names = Vec::new();
        let mut listed = std::collections::HashMap::new();
        for u in untagged {
            if let Untagged::MailboxStatus { name, items } = &u
                && let (Some(validity), Some(messages), Some(highest_modseq)) =
                    (items.uid_validity, items.messages, items.highest_modseq)
                // 0: the mailbox keeps no mod-sequences (RFC 7162 §3.1.2.2).
                && highest_modseq > 0
            {
                listed.insert(
                    name.clone(),
                    Listed {
                        validity,
                        messages,
                        highest_modseq,
                        uid_next: items.uid_next,
                    },
                );
            }
            if let Untagged::List {
                attributes,
                delimiter,
                name,
            } = u
            {
                if let Some(d) = delimiter {
                    self.separator.store(d as u32, Ordering::Relaxed);
                }
                if attributes.iter().any(|a| {
                    a.eq_ignore_ascii_case("\\Noselect") || a.eq_ignore_ascii_case("\\NonExistent")
                }) {
                    continue;
                }
                names.push(name);
            }
        }
        if let Some(s) = selected {
            listed.remove(&s);
        }
        *self.listed.lock().unwrap_or_else(|p| p.into_inner()) = listed;
        Ok(names)
    }

    /// `-f` and IDLE-triggered syncs: the state of every mailbox is not worth asking for.
    fn syncing_only(&self, names: &[String]) {
        self.few
            .store(names.len() <= FEW_FOLDERS, Ordering::Relaxed);
    }

    /// Starts a [`Survey`] of the folders listed with a HIGHESTMODSEQ above their kept
    /// listing's, when there are two or more: one write of their SELECTs and changes
    /// fetches on the connection the LIST left in the pool. A folder with messages above
    /// its kept listing's last UID (UIDNEXT further on) is among them only if it wants
    /// their bodies ([`oi_core::ListingWish::new_bodies`]), which the survey then fetches
    /// too, for up to [`SURVEY_NEW_MESSAGES`] in all. Their messages count against
    /// [`SURVEY_MESSAGES`], the bound on what the survey may hold until the folders take
    /// it.
    ///
    /// The folders are chosen in the order of the wishes (the listing's), and then, unless
    /// `in_order`, asked for most new messages first, then largest first: the server
    /// answers in that order, and the local work of the busiest folders (writing new mail,
    /// renaming for flags) goes on while it answers for the others, instead of trailing
    /// the last byte.
    /// ../shared/bench, 20000 messages, new: 0.76 -> 0.61-0.68 × mbsync. (Ordering the
    /// choice itself by size too put the largest folder in first and left fewer in: at
    /// 100000 messages, new took 0.67 s instead of 0.55 and 41 MiB instead of 32.)
    async fn prepare_listings(
        &self,
        wishes: Vec<oi_core::ListingWish>,
        in_order: bool,
    ) -> Vec<String> {
        let mode = self.modseq_mode();
        if mode == ModSeqMode::None || self.few.load(Ordering::Relaxed) {
            return Vec::new();
        }
        let mut wanted = Vec::new();
        let mut messages = 0u64;
        let mut new_messages = 0u64;
        {
            let listed = self.listed.lock().unwrap_or_else(|p| p.into_inner());
            for w in wishes {
                let Some(l) = listed.get(&w.name).copied() else {
                    continue;
                };
                let Some((since, Some(known))) =
                    token_parts(&w.token, l.validity, &self.config.keywords)
                else {
                    continue;
                };
                if known == 0 || since >= l.highest_modseq {
                    continue;
                }
                // At most this many new messages (some may be gone already); unknown
                // without UIDNEXT.
                let Some(new) = l
                    .uid_next
                    .map(|n| n.saturating_sub(known.saturating_add(1)))
                else {
                    continue;
                };
                let bodies = match &w.new_bodies {
                    _ if new == 0 => None,
                    Some(b) if new_messages + u64::from(new) <= SURVEY_NEW_MESSAGES => Some(b),
                    _ => continue,
                };
                if messages + u64::from(l.messages) > SURVEY_MESSAGES
                    || wanted.len() == crate::survey::SURVEY_FOLDERS
                {
                    continue;
                }
                messages += u64::from(l.messages);
                new_messages += u64::from(new);
                let verb = verb_for(w.access);
                let up_to = bodies.map(|b| b.up_to);
                let commands = listing_commands(verb, &w.name, mode, (since, known), up_to);
                let work = std::cmp::Reverse((new, l.messages));
                wanted.push((
                    work,
                    crate::survey::Wanted {
                        commands,
                        since,
                        known,
                        bodies: bodies.cloned(),
                        name: w.name,
                    },
                ));
            }
        }
        if !in_order {
            wanted.sort_by_key(|(work, _)| *work);
        }
        let wanted: Vec<_> = wanted.into_iter().map(|(_, w)| w).collect();
        if wanted.len() < 2 {
            return Vec::new();
        }
        let Some(conn) = lock_pool(&self.idle).pop() else {
            return Vec::new();
        };
        let names = wanted.iter().map(|w| w.name.clone()).collect();
        let survey = Survey::start(
            conn,
            wanted,
            self.config.keywords.clone(),
            self.idle.clone(),
        );
        match survey.await {
            Some(s) => {
                *self.survey.lock().unwrap_or_else(|p| p.into_inner()) = Some(s);
                names
            }
            None => Vec::new(),
        }
    }

    fn new_folder_name(&self, name: &str) -> String {
        self.config.folders.create_name(name, self.separator())
    }

    fn holds_connections(&self) -> bool {
        true
    }

    async fn create_folder(&self, name: &str) -> Result<(), StoreError> {
        let mut conn = self.take().await?;
        let r = conn
            .run(Command {
                name: "CREATE".into(),
                parts: vec![Part::Raw(b"CREATE ".to_vec()), mailbox(name)],
            })
            .await;
        // A NO leaves the connection usable; anything worse is not pooled again.
        if matches!(&r, Ok(_) | Err(ImapError::Command { .. })) {
            self.give_back(conn);
        }
        r.map(|_| ())
            .map_err(|e| e.into_store(Severity::Folder, format!("creating folder {name}")))?;
        self.events.emit(oi_core::Event::Info {
            message: format!("created IMAP folder {name}"),
        });
        Ok(())
    }

    async fn open_folder(&self, name: &str, access: Access) -> Result<ImapFolder, StoreError> {
        let verb = verb_for(access);
        let mode = self.modseq_mode();
        let listed = self
            .listed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        let mut folder = ImapFolder {
            conn: None,
            unselected: false,
            mode,
            name: name.to_string(),
            meta: FolderMeta {
                uid_validity: UidValidity(0),
                exists: None,
            },
            expunge: self.config.expunge && access == Access::ReadWrite,
            deleted: Vec::new(),
            pool: self.idle.clone(),
            failed: std::sync::atomic::AtomicBool::new(false),
            keywords: self.config.keywords.clone(),
            highest_modseq: None,
            qresync: mode == ModSeqMode::Qresync,
            server_read_only: false,
            ahead: None,
            survey: None,
            surveyed: false,
            bodies_ahead: BTreeMap::new(),
            fetch_plan: Default::default(),
            plan_sent: 0,
            fetches_ahead: Default::default(),
            fetched_early: BTreeMap::new(),
            reconnect: crate::retry::Reconnect {
                config: self.config.clone(),
                events: self.events.clone(),
                fetch_attempts: self.config.fetch_attempts.max(1),
                verb,
            },
        };
        folder.survey = self.current_survey();
        if let Some(l) = listed.filter(|_| mode != ModSeqMode::None) {
            folder.surveyed = folder.survey.as_ref().is_some_and(|s| s.has(name));
            folder.unselected = true;
            folder.meta = FolderMeta {
                uid_validity: UidValidity(l.validity),
                exists: Some(l.messages),
            };
            folder.highest_modseq = Some(l.highest_modseq);
            return Ok(folder);
        }
        folder.select_now(None).await?;
        // What a new connection enabled, as `connect` keeps it.
        self.modseq_mode.store(folder.mode as u8, Ordering::Relaxed);
        Ok(folder)
    }
}

/// `SELECT`/`EXAMINE` of `name`, and what it reported.
pub(crate) async fn select(
    conn: &mut Connection,
    verb: &str,
    name: &str,
    mode: ModSeqMode,
) -> Result<Selected, ImapError> {
    let (untagged, done) = conn.run(select_command(verb, name, mode)).await?;
    Ok(selected_from(&untagged, &done, mode))
}

/// What a SELECT's answer reported (its untagged responses and its completion).
fn selected_from(
    untagged: &[Untagged],
    done: &crate::client::Completion,
    mode: ModSeqMode,
) -> Selected {
    let mut validity = None;
    let mut exists = None;
    let mut highest_modseq = None;
    let mut no_modseq = false;
    for u in untagged {
        match u {
            Untagged::Exists(n) => exists = Some(*n),
            Untagged::Status {
                code: Some(RespCode::UidValidity(v)),
                ..
            } => validity = Some(*v),
            Untagged::Status {
                code: Some(RespCode::HighestModSeq(m)),
                ..
            } => highest_modseq = Some(*m),
            Untagged::Status {
                code: Some(RespCode::NoModSeq),
                ..
            } => no_modseq = true,
            _ => {}
        }
    }
    Selected {
        validity,
        exists,
        highest_modseq: highest_modseq.filter(|_| mode != ModSeqMode::None && !no_modseq),
        read_only: matches!(done.code, Some(RespCode::ReadOnly)),
    }
}

/// An IDLE watch on one folder (see [`ImapRepository::watch`]).
pub struct Watcher {
    conn: Connection,
    folder: String,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("folder", &self.folder)
            .finish()
    }
}

impl Watcher {
    /// Waits up to `max` for a change; true when the folder changed. An error means the
    /// connection is gone: make a new watcher.
    pub async fn wait(&mut self, max: Duration) -> Result<bool, StoreError> {
        let folder = &self.folder;
        self.conn
            .idle(max)
            .await
            .map_err(|e| e.into_store(Severity::Repository, format!("IDLE on {folder}")))
    }

    /// The folder watched.
    pub fn folder(&self) -> &str {
        &self.folder
    }

    /// Ends the watch politely.
    pub async fn close(self) {
        self.conn.logout().await;
    }
}

/// One selected IMAP folder on its own connection.
#[derive(Debug)]
pub struct ImapFolder {
    conn: Option<Connection>,
    /// Opened from its LIST-STATUS entry ([`Listed`]) and not selected yet.
    unselected: bool,
    /// The mod-sequence mode to select with.
    mode: ModSeqMode,
    name: String,
    meta: FolderMeta,
    expunge: bool,
    deleted: Vec<Uid>,
    /// Where the connection goes back after a clean close.
    pool: Pool,
    /// Set by any error: such a connection may be mid-response and is never pooled.
    failed: std::sync::atomic::AtomicBool,
    /// Keyword ↔ custom letter map.
    keywords: crate::keywords::KeywordMap,
    /// HIGHESTMODSEQ when the folder was opened, when the server keeps mod-sequences.
    highest_modseq: Option<u64>,
    /// QRESYNC is on: `VANISHED` reports expunges.
    qresync: bool,
    /// A SELECT (not an EXAMINE, which is always read-only) completed `[READ-ONLY]`.
    server_read_only: bool,
    /// How to open the folder again when a fetch loses its connection (`retrycount`).
    reconnect: crate::retry::Reconnect,
    /// A SELECT and the fetch of the changes since the kept listing, sent ahead by
    /// [`Folder::prepare_listing`] and not read yet.
    ahead: Option<ListingAhead>,
    /// The repository's survey, when one was started: its connection is waited for.
    survey: Option<Arc<Survey>>,
    /// The survey holds this folder's changes, not taken yet.
    surveyed: bool,
    /// The whole bodies of new messages that came with the listing from the survey, and
    /// their flags then, until a fetch takes them ([`ImapFolder::take_bodies_ahead`]).
    bodies_ahead: BTreeMap<Uid, (Flags, BodyAhead)>,
    /// The download batches announced by [`Folder::will_fetch`] and not fetched yet.
    fetch_plan: std::collections::VecDeque<Vec<Uid>>,
    /// How many of the first `fetch_plan` batches were sent ahead (`fetches_ahead`).
    plan_sent: usize,
    /// Body fetches sent ahead of their turn and not read yet, in order.
    fetches_ahead: std::collections::VecDeque<FetchAhead>,
    /// Messages of those that came while an earlier fetch was read (a server may run
    /// pipelined fetches concurrently, RFC 3501 §5.5), until their own fetch.
    fetched_early: BTreeMap<Uid, oi_core::Fetched>,
}

/// A body fetch sent ahead of its turn ([`Folder::will_fetch`]): its UIDs, whether it
/// asks for dates, and its command's tag.
#[derive(Debug)]
struct FetchAhead {
    uids: Vec<Uid>,
    dates: bool,
    tag: String,
}

/// How many announced download batches are asked for ahead of the one being read: the
/// server sends them while the engine writes the earlier ones. Their answers wait in the
/// socket until their turn, except what a server that runs the fetches concurrently
/// sends while an earlier one is read (`fetched_early`, in memory: at most this many
/// batches more). With the server 20 ms away, each batch of a download otherwise costs a
/// round trip.
const FETCHES_AHEAD: usize = 2;

/// The `UID FETCH` of whole messages (with INTERNALDATE when `dates`).
fn body_fetch_command(uids: &[Uid], dates: bool) -> Command {
    Command::raw(format!(
        "UID FETCH {} (UID FLAGS{} BODY.PEEK[])",
        uid_set(uids),
        if dates { " INTERNALDATE" } else { "" }
    ))
}

/// A literal sink that keeps nothing: answers read only to be dropped.
struct Discard;

impl crate::client::LiteralSink for Discard {
    fn start(&mut self, _len: u64) -> std::io::Result<()> {
        Ok(())
    }

    fn data(&mut self, _piece: &[u8]) -> std::io::Result<()> {
        Ok(())
    }
}

/// What [`ImapFolder::finish_ahead`] made of the answers sent ahead.
enum Ahead {
    /// The kept listing's HIGHESTMODSEQ, the listing with the changes since applied, and
    /// the message count they leave.
    Read(u64, Listing, u32),
    /// No changes applied: the kept listing given, untouched (`None` when it was given
    /// none, or when part of the changes had gone into it before the connection broke).
    NotRead(Option<(u64, Listing)>),
}

/// The commands [`ImapFolder::send_listing_ahead`] sent: their tags (the SELECT's first),
/// and the kept listing they ask the changes of (its HIGHESTMODSEQ and last UID).
#[derive(Debug)]
struct ListingAhead {
    tags: Vec<String>,
    since: u64,
    known: u32,
}

/// The piece size of [`Folder::fetch_large`] on IMAP.
const LARGE_CHUNK: u64 = 1 << 20;
/// How many pieces are requested at once.
const LARGE_DEPTH: u64 = 4;

/// A compact UID set (`1:3,7,9:10`), RFC 3501 §9 `sequence-set`.
pub fn uid_set(uids: &[Uid]) -> String {
    let mut v: Vec<u32> = uids.iter().map(|u| u.get()).collect();
    v.sort_unstable();
    v.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < v.len() {
        let start = v[i];
        let mut end = start;
        while i + 1 < v.len() && v[i + 1] == end + 1 {
            i += 1;
            end = v[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

/// The CRC-32 (IEEE) of OfflineIMAP's `binascii.crc32`.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// OfflineIMAP's `X-OfflineIMAP` value: `<crc32 of the message>-<random 0..=9999999999>`.
pub fn unique_header_value(body: &[u8]) -> String {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(body);
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{}-{}", crc32(body), h.finish() % 10_000_000_000)
}

/// Adds `X-OfflineIMAP: value` as the last header line, as Python's `add_header` does,
/// keeping the message's own line ends (the engine's upload marker is the same header).
pub fn insert_header(body: &[u8], value: &str) -> Vec<u8> {
    oi_core::marker::insert_marker(body, value)
}

/// IMAP `date-time` (RFC 3501 §9) in UTC.
fn imap_date(secs: i64) -> Option<String> {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|d| d.format("%d-%b-%Y %H:%M:%S +0000").to_string())
}

impl ImapFolder {
    fn conn(&mut self) -> Result<&mut Connection, StoreError> {
        debug_assert!(
            !self.unselected && self.ahead.is_none(),
            "{}: used before ensure_selected",
            self.name
        );
        open_conn(&mut self.conn, &self.name)
    }

    /// SELECTs a folder opened from its LIST-STATUS entry, now that something needs the
    /// server: on a pooled connection, else on a new one. It must still have the
    /// UIDVALIDITY that was listed, which the engine has already compared with the status.
    async fn ensure_selected(&mut self) -> Result<(), StoreError> {
        if !self.fetches_ahead.is_empty() {
            // Something else needs the connection: the bodies asked for ahead are read and
            // dropped, and the rest of the download plan with them.
            Box::pin(self.drain_fetches_ahead()).await?;
        }
        if self.ahead.is_some() {
            // Something else needs the connection first: the changes sent for are read
            // and dropped (the listing asks again). A connection lost meanwhile leaves
            // the folder unselected, to be selected below on a new one.
            Box::pin(self.finish_ahead(None)).await?;
        }
        if !self.unselected {
            return Ok(());
        }
        // Boxed: connecting is a large future, and every folder operation awaits this one.
        let listed = self.meta.uid_validity.0;
        Box::pin(self.select_now(Some(listed))).await
    }

    /// A pooled connection, else a new one (see [`pooled_or_new`]). Not an `async fn`:
    /// the future borrows only the fields it needs (a folder is not `Sync`).
    fn pooled_or_new(
        &self,
    ) -> impl std::future::Future<Output = Result<(Connection, ModSeqMode), StoreError>> + Send + '_
    {
        let survey = self.survey.as_deref();
        pooled_or_new(&self.pool, self.mode, &self.reconnect, survey)
    }

    /// SELECTs (or EXAMINEs) the folder on a pooled connection, else on a new one; `listed`:
    /// the UIDVALIDITY it must show. A pooled connection the server closed while it sat
    /// idle, or one lost under this SELECT: once more on a new connection. If the server is
    /// gone, connecting fails and stops the account; otherwise only this folder can fail.
    /// (A failed SELECT drops the connection with the error: simple and rare.)
    async fn select_now(&mut self, listed: Option<u32>) -> Result<(), StoreError> {
        self.unselected = false;
        // Selected for something else first: what a survey read for the folder is older
        // than what that may change, and the listing asks anew.
        self.surveyed = false;
        let verb = self.reconnect.verb;
        let ctx = format!("{verb} {}", self.name);
        let connect = || self.reconnect.connect(self.pool.count());
        let (mut conn, mut mode) = self.pooled_or_new().await?;
        let selected = match select(&mut conn, verb, &self.name, mode).await {
            Err(e) if crate::retry::connection_unusable(&e) => {
                (conn, mode) = connect().await?;
                select(&mut conn, verb, &self.name, mode)
                    .await
                    .map_err(|e| StoreError::with_source(Severity::Folder, ctx, e))?
            }
            r => r.map_err(|e| e.into_store(Severity::Folder, ctx))?,
        };
        self.mode = mode;
        self.qresync = mode == ModSeqMode::Qresync;
        self.set_selected(conn, selected, listed)
    }

    /// Sends the SELECT of a folder opened from its LIST-STATUS entry together with the
    /// fetch of the changes since the kept listing (HIGHESTMODSEQ `since`, last UID
    /// `known`), without waiting: the server answers while the engine reads the local
    /// side, and the listing ([`Folder::list_since`]) reads the answers. One round trip
    /// per changed folder instead of two (SELECT, then FETCH): with the server 20 ms away,
    /// 10 changed folders, 0.2 s. The FETCH of a SELECT that fails finds no mailbox
    /// selected (RFC 3501 §6.3.1) and fails too, harmlessly.
    async fn send_listing_ahead(&mut self, since: u64, known: u32) -> Result<(), StoreError> {
        let verb = self.reconnect.verb;
        let ctx = format!("{verb} {}", self.name);
        let connect = || self.reconnect.connect(self.pool.count());
        let (mut conn, mut mode) = self.pooled_or_new().await?;
        if mode == ModSeqMode::None {
            // A new connection that lost CONDSTORE: select the plain way.
            lock_pool(&self.pool).push(conn);
            return self.ensure_selected().await;
        }
        let commands =
            |mode: ModSeqMode| listing_commands(verb, &self.name, mode, (since, known), None);
        let tags = match conn.send_ahead(commands(mode)).await {
            Err(e) if crate::retry::connection_unusable(&e) => {
                (conn, mode) = connect().await?;
                conn.send_ahead(commands(mode))
                    .await
                    .map_err(|e| StoreError::with_source(Severity::Folder, ctx, e))?
            }
            r => r.map_err(|e| e.into_store(Severity::Folder, ctx))?,
        };
        self.unselected = false;
        self.mode = mode;
        self.qresync = mode == ModSeqMode::Qresync;
        self.conn = Some(conn);
        self.ahead = Some(ListingAhead { tags, since, known });
        Ok(())
    }

    /// Reads the answers of [`ImapFolder::send_listing_ahead`]: the SELECT's is taken in as
    /// [`ImapFolder::select_now`] would; the changes go into `kept` when it is the listing
    /// they were asked for (its HIGHESTMODSEQ and last UID), else they are dropped.
    ///
    /// Only what comes after the SELECT's completion is this folder's: a server may first
    /// send the news of the mailbox selected before on the connection (RFC 7162 §3.2.11:
    /// everything before `[CLOSED]` is the old mailbox's), UIDs that mean other messages
    /// here. So changes are applied, and the SELECT read, only from their own part.
    async fn finish_ahead(&mut self, kept: Option<(u64, Listing)>) -> Result<Ahead, StoreError> {
        let Some(ahead) = self.ahead.take() else {
            return Ok(Ahead::NotRead(kept));
        };
        let listed = self.meta.uid_validity.0;
        let ctx = format!("{} {}", self.reconnect.verb, self.name);
        let (mut kept, unfit) = match kept {
            Some(k) if asked_since(&k, ahead.since, ahead.known) => (Some(k), None),
            other => (None, other),
        };
        let ImapFolder {
            conn,
            keywords,
            name,
            ..
        } = self;
        let Some(mut c) = conn.take() else {
            return Err(StoreError::new(
                Severity::Folder,
                format!("folder {name} is closed"),
            ));
        };
        let select_tag = ahead.tags.first().cloned().unwrap_or_default();
        let selected_done = std::sync::atomic::AtomicBool::new(false);
        // Whether a change went into `kept` (which is then no longer the kept listing).
        let mut touched = false;
        let mut select_part = Vec::new();
        let mut each = |u: Untagged| {
            if !selected_done.load(Ordering::Relaxed) {
                select_part.push(u);
                return None;
            }
            match u {
                Untagged::Fetch(f) => {
                    if let Some((_, l)) = kept.as_mut() {
                        touched = true;
                        apply_fetch(keywords, l, f);
                    }
                    None
                }
                other => Some(other),
            }
        };
        let mut done = |tag: &str, _: &crate::client::Completion| {
            if tag == select_tag {
                selected_done.store(true, Ordering::Relaxed);
            }
        };
        let r = c.collect(ahead.tags, &mut each, &mut done).await;
        let untouched = |kept: Option<(u64, Listing)>, unfit: Option<(u64, Listing)>| {
            if touched { None } else { kept.or(unfit) }
        };
        let (others, completions) = match r {
            Ok(v) => v,
            Err(e) if crate::retry::connection_unusable(&e) => {
                // Selected again (on a new connection) by whatever comes next; the kept
                // listing goes back unless a change already went into it.
                self.unselected = true;
                return Ok(Ahead::NotRead(untouched(kept, unfit)));
            }
            Err(e) => return Err(e.into_store(Severity::Folder, ctx)),
        };
        let mut completions = completions.into_iter();
        let Some(select_done) = completions.next() else {
            return Err(StoreError::new(
                Severity::Folder,
                format!("{ctx}: no answer"),
            ));
        };
        // A failed SELECT drops the connection with the error, as in select_now.
        let select_done = select_done
            .ok()
            .map_err(|e| e.into_store(Severity::Folder, ctx))?;
        let selected = selected_from(&select_part, &select_done, self.mode);
        self.set_selected(c, selected, Some(listed))?;
        if completions.any(|done| done.ok().is_err()) {
            // A FETCH refused (CHANGEDSINCE after a SELECT that reported NOMODSEQ, say):
            // the connection is fine, the listing asks again its own way.
            return Ok(Ahead::NotRead(untouched(kept, unfit)));
        }
        Ok(match kept {
            Some((since, mut listing)) => {
                let exists = apply_changes(&mut listing, others, self.meta.exists.unwrap_or(0));
                Ahead::Read(since, listing, exists)
            }
            None => Ahead::NotRead(unfit),
        })
    }

    /// Takes what a SELECT reported; `listed`: the UIDVALIDITY the folder must have.
    fn set_selected(
        &mut self,
        mut conn: Connection,
        selected: Selected,
        listed: Option<u32>,
    ) -> Result<(), StoreError> {
        let verb = self.reconnect.verb;
        let Some(validity) = selected.validity else {
            return Err(StoreError::new(
                Severity::Folder,
                format!("{verb} {}: no UIDVALIDITY", self.name),
            ));
        };
        if let Some(listed) = listed.filter(|&l| l != validity) {
            lock_pool(&self.pool).push(conn);
            return Err(StoreError::new(
                Severity::Folder,
                format!(
                    "folder {}: UIDVALIDITY changed from {listed} to {validity} since the \
                     folder list was read; the next sync takes it up",
                    self.name
                ),
            ));
        }
        self.take_in(validity, &selected);
        conn.selected = Some(self.name.clone());
        self.conn = Some(conn);
        Ok(())
    }

    /// Takes in what a SELECT of UIDVALIDITY `validity` reported.
    fn take_in(&mut self, validity: u32, selected: &Selected) {
        self.meta = FolderMeta {
            uid_validity: UidValidity(validity),
            exists: selected.exists,
        };
        self.highest_modseq = selected.highest_modseq;
        self.server_read_only = selected.read_only && self.reconnect.verb == "SELECT";
    }

    /// Whether a listing brought up to date (`what`) holds as many messages as the folder
    /// does (`exists`); when not, says so in the debug log: the caller lists in full.
    fn adds_up(&self, listing: &Listing, exists: u32, what: &str) -> bool {
        let ok = listing.messages.len() == exists as usize;
        if !ok {
            tracing::debug!(
                folder = %self.name,
                kept = listing.messages.len(),
                exists,
                "{what} do not add up; listing in full"
            );
        }
        ok
    }

    /// Finds the one message carrying `X-OfflineIMAP: value`; NOOP first so that the
    /// server has announced a message appended just before (OfflineIMAP does the same).
    async fn search_marker(&mut self, value: &str) -> Result<Vec<Uid>, StoreError> {
        self.ensure_selected().await?;
        let value = value.to_string();
        let cmd = Command {
            name: "UID SEARCH".into(),
            parts: vec![
                Part::Raw(b"UID SEARCH HEADER X-OfflineIMAP ".to_vec()),
                Part::Str {
                    bytes: value.into_bytes(),
                    secret: false,
                },
            ],
        };
        let r = self
            .conn()?
            .run_batch(vec![Command::raw("NOOP"), cmd])
            .await;
        let (untagged, done) =
            r.map_err(|e| self.err(e, Severity::Message, "searching the new message"))?;
        for d in done {
            d.ok()
                .map_err(|e| self.err(e, Severity::Message, "searching the new message"))?;
        }
        let found: Vec<u32> = untagged
            .into_iter()
            .filter_map(|u| match u {
                Untagged::Search(v) => Some(v),
                _ => None,
            })
            .flatten()
            .collect();
        let mut found: Vec<Uid> = found.into_iter().filter_map(Uid::new).collect();
        found.sort();
        found.dedup();
        Ok(found)
    }

    /// Runs a listing FETCH, applying each FETCH response to `listing` as it is parsed;
    /// returns the other untagged responses.
    async fn fetch_into(
        &mut self,
        command: String,
        listing: &mut Listing,
        what: &str,
    ) -> Result<Vec<Untagged>, StoreError> {
        self.fetch_all_into(vec![command], listing, what).await
    }

    /// [`ImapFolder::fetch_into`] for several FETCH commands sent at once.
    async fn fetch_all_into(
        &mut self,
        commands: Vec<String>,
        listing: &mut Listing,
        what: &str,
    ) -> Result<Vec<Untagged>, StoreError> {
        self.ensure_selected().await?;
        let ImapFolder {
            conn,
            keywords,
            name,
            ..
        } = self;
        let conn = open_conn(conn, name)?;
        let mut each = |u: Untagged| match u {
            Untagged::Fetch(f) => {
                apply_fetch(keywords, listing, f);
                None
            }
            other => Some(other),
        };
        let commands = commands.into_iter().map(Command::raw).collect();
        let r = conn.run_each_all(commands, &mut each).await;
        r.map_err(|e| self.err(e, Severity::Folder, what))
    }

    /// The token kept with a listing: the state it shows (UIDVALIDITY, HIGHESTMODSEQ), the
    /// keyword map it was read through (a changed `customflag_x` reads flags anew), and
    /// the listing's last UID (0: none), which lets the next run ask for the changes with
    /// the SELECT (see [`ImapFolder::send_listing_ahead`]).
    fn modseq_token(&self, modseq: u64, listing: &Listing) -> String {
        format!(
            "{MODSEQ_TOKEN} {} {modseq} {} {}",
            self.meta.uid_validity.0,
            self.keywords_digest(),
            last_uid(listing)
        )
    }

    /// Whether a folder opened from its listed state (not selected) is still in the state
    /// of a kept listing: the listed HIGHESTMODSEQ is the token's, and the listed message
    /// count the listing's (see [`Listed`]). Then the kept listing is the folder's, and
    /// no command is needed to know it.
    fn kept_is_current(&self, c: &oi_core::CachedListing) -> bool {
        self.unselected
            && self.highest_modseq.is_some()
            && self.token_modseq(&c.token) == self.highest_modseq
            && self
                .meta
                .exists
                .is_some_and(|n| c.listing.messages.len() == n as usize)
    }

    /// The HIGHESTMODSEQ of a token made by [`ImapFolder::modseq_token`] for this folder's
    /// UIDVALIDITY and keyword map; `None` for any other token.
    fn token_modseq(&self, token: &str) -> Option<u64> {
        self.token_parts(token).map(|(modseq, _)| modseq)
    }

    /// The HIGHESTMODSEQ of a token (see [`ImapFolder::token_modseq`]) and the last UID of
    /// its listing (0: none), which tokens made before it was kept do not say.
    fn token_parts(&self, token: &str) -> Option<(u64, Option<u32>)> {
        token_parts(token, self.meta.uid_validity.0, &self.keywords)
    }

    fn keywords_digest(&self) -> String {
        keywords_digest(&self.keywords)
    }

    /// Takes in what a survey read for this folder (see [`Survey`]), as
    /// [`ImapFolder::finish_ahead`] takes in the answers it sent ahead: the listing and its
    /// token when the changes were asked since `kept` (which is then used up), else `None`
    /// (and `kept` untouched) for the folder to ask again its own way. The folder stays
    /// unselected: it selects again only if something else needs the server.
    fn take_surveyed(
        &mut self,
        s: crate::survey::Surveyed,
        kept: &mut Option<(u64, Listing)>,
    ) -> Option<(Listing, Option<String>)> {
        let select_done = s.select_done.ok().ok()?;
        let selected = selected_from(&s.select_part, &select_done, self.mode);
        let modseq = selected.highest_modseq?;
        let validity = self.meta.uid_validity.0;
        if selected.validity != Some(validity)
            || s.since > modseq
            || !kept
                .as_ref()
                .is_some_and(|k| asked_since(k, s.since, s.known))
        {
            return None;
        }
        let (_, mut listing) = kept.take()?;
        crate::survey::merge_changed(&mut listing, s.changed);
        let exists = apply_changes(&mut listing, s.others, selected.exists.unwrap_or(0));
        if !self.adds_up(&listing, exists, "surveyed changes") {
            return None;
        }
        self.take_in(validity, &selected);
        let token = self.modseq_token(modseq, &listing);
        self.bodies_ahead = s.bodies;
        Some((listing, Some(token)))
    }

    /// Takes out of `uids` the messages whose bodies came with the listing (see
    /// [`Survey`]) and returns those, as the fetch would have: not when it asks for dates
    /// (the survey did not), and a body in a spool file only for a fetch spooling into
    /// that file's folder (`spool`: its folder and the size above which it streams). A
    /// UID's body never changes, so the body is the message's whenever it is asked.
    fn take_bodies_ahead(
        &mut self,
        uids: &mut Vec<Uid>,
        spool: Option<(&std::path::Path, u64)>,
        dates: bool,
    ) -> BTreeMap<Uid, oi_core::Fetched> {
        let mut taken = BTreeMap::new();
        if dates || self.bodies_ahead.is_empty() {
            return taken;
        }
        uids.retain(|&uid| {
            let fetched = match self.bodies_ahead.remove(&uid) {
                Some((flags, BodyAhead::Memory(body)))
                    if spool.is_none_or(|(_, over)| body.len() as u64 <= over) =>
                {
                    oi_core::Fetched::Memory(Message {
                        source: MsgRef::Uid(uid),
                        body,
                        flags,
                        internal_date: None,
                    })
                }
                Some((flags, BodyAhead::Spooled(file, path, len)))
                    if spool.is_some_and(|(dir, _)| path.parent() == Some(dir)) =>
                {
                    oi_core::Fetched::Spooled(oi_core::LargeMessage {
                        source: MsgRef::Uid(uid),
                        file,
                        len,
                        flags,
                        internal_date: None,
                        spool: Some(path),
                        drop_headers: Vec::new(),
                    })
                }
                _ => return true,
            };
            taken.insert(uid, fetched);
            false
        });
        taken
    }

    /// Takes the next batch of the download plan ([`Folder::will_fetch`]) when it is
    /// `uids`; any other fetch drops the plan. True when it was the next one.
    fn next_in_plan(&mut self, uids: &[Uid]) -> bool {
        if self.fetch_plan.front().is_some_and(|b| b == uids) {
            self.fetch_plan.pop_front();
            self.plan_sent = self.plan_sent.saturating_sub(1);
            return true;
        }
        self.fetch_plan.clear();
        self.plan_sent = 0;
        false
    }

    /// Sends this batch's fetch (unless it went ahead already: `sent`, its tag) together
    /// with those of the next planned batches, up to [`FETCHES_AHEAD`] in flight, and
    /// reads this one's answer only.
    async fn fetch_pipelined(
        &mut self,
        cmd: Command,
        sent: Option<String>,
        spool: Option<(u64, &mut dyn crate::client::LiteralSink)>,
        dates: bool,
    ) -> Result<(Vec<Untagged>, crate::client::Completion), ImapError> {
        let mut ahead = Vec::new();
        while self.fetches_ahead.len() + ahead.len() < FETCHES_AHEAD
            && let Some(batch) = self.fetch_plan.get(self.plan_sent)
        {
            ahead.push(batch.clone());
            self.plan_sent += 1;
        }
        let mut commands: Vec<Command> = Vec::new();
        if sent.is_none() {
            commands.push(cmd);
        }
        commands.extend(ahead.iter().map(|uids| body_fetch_command(uids, dates)));
        let Some(conn) = self.conn.as_mut() else {
            return Err(ImapError::Protocol(format!(
                "folder {} is closed",
                self.name
            )));
        };
        let mut tags = if commands.is_empty() {
            Vec::new()
        } else {
            conn.send_ahead(commands).await?
        };
        let tag = match sent {
            Some(tag) => tag,
            None if tags.is_empty() => {
                return Err(ImapError::Protocol("a fetch without its tag".into()));
            }
            None => tags.remove(0),
        };
        for (uids, tag) in ahead.into_iter().zip(tags) {
            self.fetches_ahead
                .push_back(FetchAhead { uids, dates, tag });
        }
        let mut each = Some;
        conn.collect_one(tag, spool, &mut each).await
    }

    /// Reads and drops the answers of the body fetches sent ahead, and forgets the
    /// download plan: something else needs the connection.
    async fn drain_fetches_ahead(&mut self) -> Result<(), StoreError> {
        self.fetch_plan.clear();
        self.plan_sent = 0;
        self.fetched_early.clear();
        let ahead: Vec<FetchAhead> = self.fetches_ahead.drain(..).collect();
        for a in ahead {
            let conn = open_conn(&mut self.conn, &self.name)?;
            let mut drop_all = |_: Untagged| None;
            // Bodies are streamed to nowhere rather than held.
            let r = conn
                .collect_one(a.tag, Some((0, &mut Discard)), &mut drop_all)
                .await;
            match r {
                Ok(_) | Err(ImapError::Command { .. }) => {}
                Err(e) => return Err(self.err(e, Severity::Folder, "reading fetches sent ahead")),
            }
        }
        Ok(())
    }

    /// The UID of the one message carrying the upload marker `value`; several matches would
    /// mean the value is not unique: better no UID than a wrong one.
    async fn uid_by_marker(&mut self, value: &str) -> Result<Option<Uid>, StoreError> {
        Ok(match self.search_marker(value).await?.as_slice() {
            [one] => Some(*one),
            _ => None,
        })
    }

    /// `APPEND <this folder>`: the start of every APPEND command.
    fn append_start(&self) -> Vec<Part> {
        vec![Part::Raw(b"APPEND ".to_vec()), mailbox(&self.name)]
    }

    /// One message's ` (flags) "date" ` before its literal (RFC 3501 §6.3.11; repeated per
    /// message in a MULTIAPPEND, RFC 3502).
    fn push_append_args(&self, parts: &mut Vec<Part>, flags: Flags, date: Option<i64>) {
        parts.push(Part::Raw(
            format!(" ({})", self.flag_list(flags)).into_bytes(),
        ));
        if let Some(date) = date.and_then(imap_date) {
            parts.push(Part::Raw(format!(" \"{date}\"").into_bytes()));
        }
        parts.push(Part::Raw(b" ".to_vec()));
    }

    /// The IMAP flags and keywords of a set, space-separated (unmapped letters dropped).
    fn flag_list(&self, flags: Flags) -> String {
        self.keywords.imap_flag_names(flags).join(" ")
    }

    /// A local I/O error while streaming: the connection stays usable only if nothing
    /// was sent, which the caller cannot tell, so it is not pooled again.
    fn io_err(&self, e: std::io::Error, what: &str) -> StoreError {
        self.failed.store(true, Ordering::Relaxed);
        StoreError::new(
            Severity::Message,
            format!("folder {}: {what}: {e}", self.name),
        )
    }

    /// Whether the folder has not been selected and nothing is under way on a connection
    /// of its own: an APPEND may then go out on a pooled connection as it is.
    fn could_append_unselected(&self) -> bool {
        self.unselected
            && self.conn.is_none()
            && self.ahead.is_none()
            && self.fetches_ahead.is_empty()
    }

    /// A connection to APPEND on without selecting the folder first, where that is enough:
    /// APPEND needs no mailbox selected (RFC 3501 §6.3.11), and with UIDPLUS (RFC 4315) its
    /// completion names each new message's UID and the folder's UIDVALIDITY, checked
    /// against the listed one ([`ImapFolder::appended_to`]). For a folder opened from its
    /// LIST-STATUS entry that nothing has selected: one with only new local messages to
    /// send needs no SELECT at all, a round trip less (with the server 20 ms away, 10 such
    /// folders wait 0.2 s less). `None`: the folder has been selected, and the APPEND goes
    /// on its own connection (without UIDPLUS the UIDs are found by a SEARCH in it). A
    /// borrowed connection goes back to the pool after the command
    /// ([`ImapFolder::run_append`]).
    async fn borrow_for_append(&mut self) -> Result<Option<Connection>, StoreError> {
        if self.could_append_unselected() {
            let (conn, _) = self.pooled_or_new().await?;
            if conn.has("UIDPLUS") {
                return Ok(Some(conn));
            }
            lock_pool(&self.pool).push(conn);
        }
        self.ensure_selected().await?;
        Ok(None)
    }

    /// Runs an APPEND made of `parts` on the `borrowed` connection, else on the folder's
    /// own, and then [`ImapFolder::after_append`].
    async fn run_append(
        &mut self,
        mut borrowed: Option<Connection>,
        parts: Vec<Part>,
    ) -> Result<Result<(Vec<Untagged>, crate::client::Completion), ImapError>, StoreError> {
        let command = Command {
            name: "APPEND".into(),
            parts,
        };
        let r = match borrowed.as_mut() {
            Some(conn) => conn.run(command).await,
            None => self.conn()?.run(command).await,
        };
        self.after_append(borrowed, r).await
    }

    /// After an APPEND: puts a connection of [`ImapFolder::borrow_for_append`] back unless
    /// the failure left it unusable. An APPEND the server refused (NO) in a folder it opens
    /// `[READ-ONLY]` (selected now if it was not) becomes a [`StoreError::read_only`]: a
    /// shared folder without the right to insert, which a SELECT before it would have
    /// told. Nothing of that APPEND landed.
    async fn after_append<T>(
        &mut self,
        borrowed: Option<Connection>,
        r: Result<T, ImapError>,
    ) -> Result<Result<T, ImapError>, StoreError> {
        if let Some(conn) = borrowed {
            if matches!(&r, Err(e) if crate::retry::connection_unusable(e)) {
                return Ok(r);
            }
            lock_pool(&self.pool).push(conn);
        }
        if matches!(&r, Err(ImapError::Command { .. })) {
            self.ensure_selected().await?;
            if self.server_read_only {
                return Err(StoreError::read_only(format!(
                    "folder {}: the server refused an APPEND, and opens the folder \
                     read-only",
                    self.name
                )));
            }
        }
        Ok(r)
    }

    /// Refuses the UIDs of an APPENDUID (RFC 4315) of another UIDVALIDITY than the
    /// folder's: the mailbox was deleted and created again since it was selected, and the
    /// UIDs name messages of that new mailbox. The uploads are recorded as under way, so
    /// the next sync finds them (see `oi_core::marker`) along with the new UIDVALIDITY.
    fn appended_to(&self, validity: u32) -> Result<(), StoreError> {
        let ours = self.meta.uid_validity.0;
        if validity == ours {
            return Ok(());
        }
        Err(StoreError::new(
            Severity::Folder,
            format!(
                "folder {}: UIDVALIDITY changed from {ours} to {validity} under an APPEND; \
                 the next sync takes it up",
                self.name
            ),
        ))
    }

    fn err(&self, e: ImapError, severity: Severity, what: &str) -> StoreError {
        self.failed.store(true, Ordering::Relaxed);
        let context = format!("folder {}: {what}", self.name);
        if crate::retry::connection_unusable(&e) {
            // This folder's own connection broke: the folder stops, the next folder opens
            // a connection of its own (OfflineIMAP too fails only the folder's sync).
            return StoreError::with_source(severity.max(Severity::Folder), context, e);
        }
        e.into_store(severity, context)
    }
}

/// A folder's connection, or the error of a closed folder (a free function so that it can
/// be borrowed beside the folder's other fields).
fn open_conn<'a>(
    conn: &'a mut Option<Connection>,
    name: &str,
) -> Result<&'a mut Connection, StoreError> {
    conn.as_mut()
        .ok_or_else(|| StoreError::new(Severity::Folder, format!("folder {name} is closed")))
}

/// The kind of the tokens of kept IMAP listings. Version 2: the changes of known messages
/// are fetched without their sizes since, so a listing kept by version 1 (whose code let a
/// flags-only FETCH arriving mid-listing drop a message's size) is read in full once, for
/// every size to be there.
const MODSEQ_TOKEN: &str = "imap-modseq/2";

/// The HIGHESTMODSEQ and last UID (0: none; `None`: not said, in tokens made before it
/// was kept) of a token made by [`ImapFolder::modseq_token`], when it was made for a
/// folder of UIDVALIDITY `validity` read through `keywords`.
fn token_parts(
    token: &str,
    validity: u32,
    keywords: &crate::keywords::KeywordMap,
) -> Option<(u64, Option<u32>)> {
    let mut it = token.split(' ');
    if it.next()? != MODSEQ_TOKEN || it.next()? != validity.to_string() {
        return None;
    }
    let modseq = it.next()?.parse().ok()?;
    if it.next()? != keywords_digest(keywords) {
        return None;
    }
    match it.next() {
        None => Some((modseq, None)),
        Some(known) => {
            let known = known.parse().ok()?;
            it.next().is_none().then_some((modseq, Some(known)))
        }
    }
}

/// The keyword map's part of a token: a changed `customflag_x` reads flags anew.
fn keywords_digest(keywords: &crate::keywords::KeywordMap) -> String {
    let names = keywords.imap_flag_names(keywords.mapped_letters());
    format!("{:08x}", crc32(names.join(" ").as_bytes()))
}

/// Whether a kept listing (with its HIGHESTMODSEQ) is the one changes were asked since:
/// HIGHESTMODSEQ `since` and last UID `known`.
fn asked_since((modseq, listing): &(u64, Listing), since: u64, known: u32) -> bool {
    *modseq == since && last_uid(listing) == known
}

/// The last UID of a listing, 0 when it has none: the `known` of [`changes_commands`],
/// kept in the token ([`ImapFolder::modseq_token`]).
fn last_uid(listing: &Listing) -> u32 {
    listing.messages.keys().next_back().map_or(0, |u| u.get())
}

/// The fetch of the changes since a kept listing whose HIGHESTMODSEQ was `since` and last
/// UID `known`: of the known messages only their changed flags (their sizes are kept,
/// which spares the server a size per changed message: a mass flag change is
/// thousands); messages above them are new: all of them, with their sizes, and with
/// `bodies` each one's body if it has at most that many bytes (one byte more is asked
/// for, so that a whole body is told from a cut one; see [`Survey`]). `n:*` names the
/// last message when none is n or above; its answer is then a known message's current
/// state, applied like any other. With QRESYNC on, expunges come as VANISHED.
fn changes_commands(since: u64, known: u32, qresync: bool, bodies: Option<u64>) -> Vec<String> {
    let vanished = if qresync { " VANISHED" } else { "" };
    let mut commands = Vec::new();
    if known > 0 {
        commands.push(format!(
            "UID FETCH 1:{known} (UID FLAGS) (CHANGEDSINCE {since}{vanished})"
        ));
    }
    if let Some(first_new) = known.checked_add(1) {
        // A partial length is a 32-bit number (RFC 3501 §9, nz-number).
        let body = match bodies {
            Some(up_to) => format!(
                " BODY.PEEK[]<0.{}>",
                up_to.saturating_add(1).min(u64::from(u32::MAX))
            ),
            None => String::new(),
        };
        commands.push(format!(
            "UID FETCH {first_new}:* (UID FLAGS RFC822.SIZE{body})"
        ));
    }
    commands
}

/// Applies what else came with a listing's FETCH responses: the UIDs expunged (VANISHED,
/// RFC 7162) leave the listing, and the message count follows EXISTS, EXPUNGE and a
/// VANISHED of messages expunged just now (without EARLIER: RFC 7162 §3.2.10, in place of
/// EXPUNGE; one with EARLIER reports the past, which the count from SELECT already shows).
/// Returns the message count.
fn apply_changes(listing: &mut Listing, untagged: Vec<Untagged>, mut exists: u32) -> u32 {
    for u in untagged {
        match u {
            Untagged::Vanished { earlier, uids } => {
                for (lo, hi) in uids {
                    if !earlier {
                        let n = u64::from(hi.saturating_sub(lo)) + 1;
                        exists = exists.saturating_sub(u32::try_from(n).unwrap_or(u32::MAX));
                    }
                    let (Some(lo), Some(hi)) = (Uid::new(lo), Uid::new(hi)) else {
                        continue;
                    };
                    let gone: Vec<Uid> = listing.messages.range(lo..=hi).map(|(u, _)| *u).collect();
                    for uid in gone {
                        listing.messages.remove(&uid);
                    }
                }
            }
            Untagged::Exists(n) => exists = n,
            Untagged::Expunge(_) => exists = exists.saturating_sub(1),
            _ => {}
        }
    }
    exists
}

/// Adds (or replaces) one message of a FETCH response in a listing. A response without
/// RFC822.SIZE keeps the size the listing has (a message never changes: only the flags of
/// a known one are asked for again).
pub(crate) fn apply_fetch(
    keywords: &crate::keywords::KeywordMap,
    listing: &mut Listing,
    f: crate::response::FetchData,
) {
    if let Some(uid) = f.uid.and_then(Uid::new) {
        let flags = keywords
            .flags_from_imap(f.flags.as_deref().unwrap_or_default())
            .0;
        let size = match f.size {
            Some(s) => Some(u64::from(s)),
            None => listing.messages.get(&uid).and_then(|m| m.size),
        };
        listing.messages.insert(uid, MessageMeta { flags, size });
    }
}

impl Folder for ImapFolder {
    async fn meta(&mut self) -> Result<FolderMeta, StoreError> {
        Ok(self.meta.clone())
    }

    async fn accepts_changes(&mut self) -> Result<bool, StoreError> {
        // A folder opened from its LIST-STATUS entry learns it from the SELECT.
        self.ensure_selected().await?;
        Ok(!self.server_read_only)
    }

    /// Yes without a SELECT for a folder not selected yet: its new messages are appended
    /// without one ([`ImapFolder::borrow_for_append`]), and an APPEND refused in a folder
    /// that the server then opens `[READ-ONLY]` is a [`StoreError::read_only`].
    async fn accepts_copies(&mut self) -> Result<bool, StoreError> {
        if self.could_append_unselected() {
            // A survey's SELECT may have told already.
            return Ok(!self.server_read_only);
        }
        self.accepts_changes().await
    }

    async fn list(&mut self) -> Result<Listing, StoreError> {
        self.ensure_selected().await?;
        let mut listing = Listing::default();
        if self.meta.exists == Some(0) {
            return Ok(listing);
        }
        self.fetch_into(
            "UID FETCH 1:* (UID FLAGS RFC822.SIZE)".into(),
            &mut listing,
            "listing",
        )
        .await?;
        Ok(listing)
    }

    /// With CONDSTORE/QRESYNC (RFC 7162): nothing to ask when HIGHESTMODSEQ and the message
    /// count are those of the kept listing; otherwise only the messages changed since
    /// (`CHANGEDSINCE`, which includes new ones) and, with QRESYNC, the UIDs expunged since
    /// (`VANISHED`). A count that does not add up afterwards (expunges that CONDSTORE alone
    /// does not report) falls back to a full listing, as does anything unexpected.
    async fn list_since(
        &mut self,
        earlier: Option<oi_core::CachedListing>,
    ) -> Result<(Listing, Option<String>), StoreError> {
        // Listed unchanged since the kept listing: no need to select.
        if let (Some(modseq), Some(c)) = (self.highest_modseq, earlier.as_ref())
            && self.kept_is_current(c)
        {
            let token = self.modseq_token(modseq, &c.listing);
            return Ok((earlier.map(|c| c.listing).unwrap_or_default(), Some(token)));
        }
        // The kept listing and the HIGHESTMODSEQ it was made at.
        let mut kept = earlier.and_then(|c| Some((self.token_modseq(&c.token)?, c.listing)));
        if std::mem::take(&mut self.surveyed)
            && let Some(survey) = self.survey.clone()
            && let Some(surveyed) = survey.take(&self.name).await
            && let Some(done) = self.take_surveyed(surveyed, &mut kept)
        {
            return Ok(done);
        }
        let mut changed = None;
        if kept.is_none()
            && self
                .ahead
                .as_ref()
                .is_some_and(|a| (a.since, a.known) == (0, 0))
        {
            // The whole listing was asked for with the SELECT (see `prepare_listing`): the
            // changes since an empty one.
            kept = Some((0, Listing::default()));
        }
        if self.ahead.is_some() {
            // The changes were asked for with the SELECT (see `send_listing_ahead`).
            match self.finish_ahead(kept.take()).await? {
                Ahead::Read(since, listing, exists) => changed = Some((since, listing, exists)),
                // Asked for below, as without the answers sent ahead.
                Ahead::NotRead(back) => kept = back,
            }
        }
        self.ensure_selected().await?;
        let Some(modseq) = self.highest_modseq else {
            // A mailbox without mod-sequences (SELECT said NOMODSEQ): a whole listing read
            // with the SELECT is as good as one asked for now.
            if let Some((0, listing, exists)) = changed
                && self.adds_up(&listing, exists, "messages listed with the SELECT")
            {
                return Ok((listing, None));
            }
            return Ok((self.list().await?, None));
        };
        // A kept HIGHESTMODSEQ above the server's (which went back) is not trusted: nothing
        // asked "since" it is, and the folder is listed in full.
        let (listing, exists) = match changed {
            Some((since, listing, exists)) if since <= modseq => (listing, exists),
            _ => {
                let Some((since, mut listing)) = kept.filter(|(m, _)| *m <= modseq) else {
                    let listing = self.list().await?;
                    let token = self.modseq_token(modseq, &listing);
                    return Ok((listing, Some(token)));
                };
                let mut exists = self.meta.exists.unwrap_or(0);
                if since < modseq || listing.messages.len() != exists as usize {
                    let commands = changes_commands(since, last_uid(&listing), self.qresync, None);
                    let untagged = self
                        .fetch_all_into(commands, &mut listing, "listing changes")
                        .await?;
                    exists = apply_changes(&mut listing, untagged, exists);
                }
                (listing, exists)
            }
        };
        if !self.adds_up(&listing, exists, "changes since the kept listing") {
            let listing = self.list().await?;
            let token = self.modseq_token(modseq, &listing);
            return Ok((listing, Some(token)));
        }
        let token = self.modseq_token(modseq, &listing);
        Ok((listing, Some(token)))
    }

    /// A folder opened from its listed state whose kept listing is not of that state
    /// is selected now, while the engine reads the local side, rather than when listed.
    async fn prepare_listing(&mut self, token: Option<&str>) -> Result<(), StoreError> {
        if !self.unselected || self.surveyed {
            return Ok(());
        }
        let (since, known) = token
            .and_then(|t| self.token_parts(t))
            .map_or((None, None), |(since, known)| (Some(since), known));
        match (since, known, self.highest_modseq) {
            // Unchanged: the kept listing is the folder's (see `kept_is_current`).
            (Some(since), _, Some(listed)) if since == listed => {}
            // The changes since the kept listing are asked for with the SELECT.
            (Some(since), Some(known), Some(listed)) if since < listed => {
                self.send_listing_ahead(since, known).await?;
            }
            // Nothing kept (a first sync, a folder new on either side): the whole listing
            // is asked for with the SELECT, as the changes since an empty listing made at
            // mod-sequence 0. One round trip per folder less: with the server 20 ms away,
            // a first sync of 10 folders waits 0.2 s less.
            // (An empty one has nothing to list: `list` asks nothing of it, as some servers
            // refuse `1:*` there.)
            (None, _, Some(_)) if self.meta.exists != Some(0) => {
                self.send_listing_ahead(0, 0).await?;
            }
            _ => self.ensure_selected().await?,
        }
        Ok(())
    }

    async fn fetch(&mut self, which: &[MsgRef]) -> Result<Vec<Message>, StoreError> {
        let fetched = self.fetch_bodies(which, None, true).await?;
        Ok(fetched
            .into_iter()
            .filter_map(|f| match f {
                oi_core::Fetched::Memory(m) => Some(m),
                oi_core::Fetched::Spooled(_) => None,
            })
            .collect())
    }

    /// Bodies of up to `over` bytes in memory, larger ones written to spool files in
    /// `spool_dir` as the server sends them: the session hands such literals out in pieces
    /// ([`Connection::run_spooling`]), so memory holds one read, not one message.
    async fn fetch_spooled(
        &mut self,
        which: &[MsgRef],
        spool_dir: &std::path::Path,
        over: u64,
        dates: bool,
    ) -> Result<Vec<oi_core::Fetched>, StoreError> {
        self.fetch_bodies(which, Some((spool_dir, over)), dates)
            .await
    }

    /// Keeps the plan: each fetch of it sends the next ones ahead ([`FETCHES_AHEAD`]).
    fn will_fetch(&mut self, batches: Vec<Vec<MsgRef>>) {
        let uids = |b: Vec<MsgRef>| {
            b.into_iter()
                .filter_map(|m| match m {
                    MsgRef::Uid(u) => Some(u),
                    MsgRef::Unsynced(_) => None,
                })
                .collect::<Vec<Uid>>()
        };
        self.fetch_plan = batches.into_iter().map(uids).collect();
        self.plan_sent = 0;
    }

    async fn append(
        &mut self,
        message: &Message,
        flags: Flags,
        _uid: Option<Uid>,
    ) -> Result<Option<Uid>, StoreError> {
        let borrowed = self.borrow_for_append().await?;
        let uidplus = borrowed.is_some() || self.conn()?.has("UIDPLUS");
        // The engine marks every upload (oi_core::marker); reuse its marker for the
        // no-UIDPLUS search rather than adding a second header.
        let (body, header) = match oi_core::marker::marker_of(&message.body) {
            _ if uidplus => (message.body.clone(), None),
            Some(value) => (message.body.clone(), Some(value)),
            None => {
                let value = unique_header_value(&message.body);
                (insert_header(&message.body, &value), Some(value))
            }
        };
        let mut parts = self.append_start();
        self.push_append_args(&mut parts, flags, message.internal_date);
        parts.push(Part::Literal(body));
        let r = self.run_append(borrowed, parts).await?;
        let (_, done) = r.map_err(|e| self.err(e, Severity::Message, "appending"))?;
        if let Some(RespCode::AppendUid { uid_validity, uid }) = done.code {
            self.appended_to(uid_validity)?;
            return Ok(Uid::new(uid));
        }
        let Some(value) = header else {
            return Ok(None);
        };
        self.uid_by_marker(&value).await
    }

    /// A large message in pieces of [`LARGE_CHUNK`] bytes (`BODY.PEEK[]<offset.length>`,
    /// RFC 3501 §6.4.5), a few requests in flight, each piece written to the spool file
    /// as it comes: memory holds a few pieces, whatever the size of the message.
    async fn fetch_large(
        &mut self,
        which: &MsgRef,
        spool_dir: &std::path::Path,
    ) -> Result<Option<oi_core::LargeMessage>, StoreError> {
        use std::io::Write;
        let MsgRef::Uid(uid) = which else {
            return Ok(None);
        };
        self.ensure_selected().await?;
        let r = self
            .conn()?
            .run(Command::raw(format!(
                "UID FETCH {uid} (UID FLAGS INTERNALDATE RFC822.SIZE)"
            )))
            .await;
        let (untagged, _) = r.map_err(|e| self.err(e, Severity::Folder, "fetching"))?;
        let Some(meta) = untagged.into_iter().find_map(|u| match u {
            Untagged::Fetch(f) if f.uid == Some(uid.get()) && f.flags.is_some() => Some(f),
            _ => None,
        }) else {
            return Ok(None);
        };
        let folder = self.name.clone();
        let spool_err = |e: std::io::Error| {
            StoreError::new(
                Severity::Folder,
                format!("folder {folder}: spooling message {uid}: {e}"),
            )
        };
        let mut tmp = oi_core::spool_file(spool_dir).map_err(spool_err)?;
        let mut offset = 0u64;
        'pieces: loop {
            let cmds: Vec<Command> = (0..LARGE_DEPTH)
                .map(|i| {
                    Command::raw(format!(
                        "UID FETCH {uid} (UID BODY.PEEK[]<{}.{LARGE_CHUNK}>)",
                        offset + i * LARGE_CHUNK
                    ))
                })
                .collect();
            let r = self.conn()?.run_batch(cmds).await;
            let (untagged, done) = r.map_err(|e| self.err(e, Severity::Folder, "fetching"))?;
            for d in done {
                d.ok()
                    .map_err(|e| self.err(e, Severity::Folder, "fetching"))?;
            }
            // The server answers the requests in order (RFC 3501 §5.5 allows no other
            // order for FETCHes of one message without side effects on each other).
            let mut pieces = 0;
            for u in untagged {
                let Untagged::Fetch(f) = u else { continue };
                if f.uid != Some(uid.get()) {
                    continue;
                }
                let Some(piece) = f.body else { continue };
                pieces += 1;
                tmp.write_all(&piece).map_err(spool_err)?;
                offset += piece.len() as u64;
                if (piece.len() as u64) < LARGE_CHUNK {
                    break 'pieces;
                }
            }
            if pieces == 0 {
                if offset == 0 {
                    return Ok(None); // expunged meanwhile
                }
                break;
            }
        }
        tmp.flush().map_err(spool_err)?;
        let (file, path) = tmp.into_parts();
        Ok(Some(oi_core::LargeMessage {
            source: which.clone(),
            file,
            len: offset,
            flags: self
                .keywords
                .flags_from_imap(meta.flags.as_deref().unwrap_or_default())
                .0,
            internal_date: meta.internal_date,
            spool: Some(path),
            drop_headers: Vec::new(),
        }))
    }

    /// APPENDs a large message with its literal read from the file as it is sent.
    async fn append_large(
        &mut self,
        message: &mut oi_core::LargeMessage,
        marker: Option<&str>,
        flags: Flags,
        _uid: Option<Uid>,
    ) -> Result<Option<Uid>, StoreError> {
        let mut borrowed = self.borrow_for_append().await?;
        let uidplus = borrowed.is_some() || self.conn()?.has("UIDPLUS");
        let value = match marker {
            Some(m) => Some(m.to_string()),
            None if uidplus => None,
            None => {
                let head = message
                    .header()
                    .map_err(|e| self.io_err(e, "reading a large message"))?;
                Some(unique_header_value(&head))
            }
        };
        let mut parts = self.append_start();
        self.push_append_args(&mut parts, flags, message.internal_date);
        let (len, mut reader) = message
            .reader(value.as_deref())
            .map_err(|e| self.io_err(e, "reading a large message"))?;
        parts.push(Part::Stream(len));
        let conn = match borrowed.as_mut() {
            Some(conn) => conn,
            None => open_conn(&mut self.conn, &self.name)?,
        };
        let r = conn
            .run_streaming(
                Command {
                    name: "APPEND".into(),
                    parts,
                },
                &mut reader,
            )
            .await;
        drop(reader);
        let r = self.after_append(borrowed, r).await?;
        let (_, done) = r.map_err(|e| self.err(e, Severity::Message, "appending"))?;
        if let Some(RespCode::AppendUid { uid_validity, uid }) = done.code {
            self.appended_to(uid_validity)?;
            return Ok(Uid::new(uid));
        }
        let Some(value) = value else {
            return Ok(None);
        };
        self.uid_by_marker(&value).await
    }

    /// One MULTIAPPEND (RFC 3502) for the whole batch where the server offers it: the
    /// server stores the messages in one transaction (one fsync rather than one per
    /// message) and answers with their UIDs in order. Elsewhere, one APPEND each.
    async fn append_batch(
        &mut self,
        messages: &[(&Message, Flags)],
    ) -> Result<Vec<Option<Uid>>, StoreError> {
        let borrowed = self.borrow_for_append().await?;
        let multi = match borrowed.as_ref() {
            // Borrowed only with UIDPLUS.
            Some(conn) => conn.has("MULTIAPPEND"),
            None => {
                let conn = self.conn()?;
                conn.has("MULTIAPPEND") && conn.has("UIDPLUS")
            }
        };
        if messages.len() < 2 || !multi {
            // One APPEND each (which borrow a connection again, as this one goes back).
            if let Some(conn) = borrowed {
                lock_pool(&self.pool).push(conn);
            }
            let mut uids = Vec::with_capacity(messages.len());
            for (m, f) in messages {
                match self.append(m, *f, None).await {
                    Ok(uid) => uids.push(uid),
                    // A read-only refusal says that nothing of the call landed: not so
                    // once earlier messages of the batch did (their markers find them).
                    Err(e) if e.is_read_only() && !uids.is_empty() => {
                        return Err(StoreError::new(Severity::Folder, e.to_string()));
                    }
                    Err(e) => return Err(e),
                }
            }
            return Ok(uids);
        }
        let mut parts = self.append_start();
        for (m, flags) in messages {
            self.push_append_args(&mut parts, *flags, m.internal_date);
            parts.push(Part::Literal(m.body.clone()));
        }
        let r = self.run_append(borrowed, parts).await?;
        let (_, done) = r.map_err(|e| self.err(e, Severity::Folder, "appending"))?;
        let mut uids: Vec<Option<Uid>> = Vec::with_capacity(messages.len());
        match done.code {
            Some(RespCode::AppendUidSet {
                uid_validity,
                uids: ranges,
            }) => {
                self.appended_to(uid_validity)?;
                for (a, b) in ranges {
                    let step: i64 = if b >= a { 1 } else { -1 };
                    let mut n = i64::from(a);
                    loop {
                        // Never more UIDs than messages: a hostile range cannot grow this.
                        if uids.len() > messages.len() {
                            break;
                        }
                        uids.push(u32::try_from(n).ok().and_then(Uid::new));
                        if n == i64::from(b) {
                            break;
                        }
                        n += step;
                    }
                }
            }
            Some(RespCode::AppendUid { uid_validity, uid }) => {
                self.appended_to(uid_validity)?;
                uids.push(Uid::new(uid));
            }
            _ => {}
        }
        if uids.len() == messages.len() {
            return Ok(uids);
        }
        // No usable APPENDUID: find each message by its upload marker.
        let mut found = Vec::with_capacity(messages.len());
        for (m, _) in messages {
            let uid = match oi_core::marker::marker_of(&m.body) {
                Some(value) => self.uid_by_marker(&value).await?,
                None => None,
            };
            found.push(uid);
        }
        Ok(found)
    }

    async fn identities(&mut self) -> Result<Vec<(MsgRef, oi_core::Identity)>, StoreError> {
        self.ensure_selected().await?;
        if self.meta.exists == Some(0) {
            return Ok(Vec::new());
        }
        let r = self
            .conn()?
            .run(Command::raw(
                "UID FETCH 1:* (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])",
            ))
            .await;
        let (untagged, _) = r.map_err(|e| self.err(e, Severity::Folder, "fetching Message-IDs"))?;
        Ok(untagged
            .into_iter()
            .filter_map(|u| match u {
                Untagged::Fetch(f) => {
                    let uid = f.uid.and_then(Uid::new)?;
                    let id = oi_core::Identity {
                        message_id: f.header.as_deref().and_then(oi_core::message_id_of),
                        size: f.size.map(u64::from),
                    };
                    Some((MsgRef::Uid(uid), id))
                }
                _ => None,
            })
            .collect())
    }

    /// Without a SELECT when the folder was listed unchanged since the kept listing (see
    /// [`ImapFolder::kept_is_current`]): its count and last UID are then the kept ones.
    async fn quick_state(
        &mut self,
        kept: Option<&oi_core::CachedListing>,
    ) -> Result<Option<oi_core::QuickState>, StoreError> {
        if let Some(c) = kept
            && self.kept_is_current(c)
        {
            return Ok(Some(oi_core::QuickState {
                count: u32::try_from(c.listing.messages.len()).unwrap_or(u32::MAX),
                last_uid: c.listing.messages.keys().next_back().copied(),
            }));
        }
        self.ensure_selected().await?;
        let count = self.meta.exists.unwrap_or(0);
        if count == 0 {
            return Ok(Some(oi_core::QuickState {
                count,
                last_uid: None,
            }));
        }
        // OfflineIMAP's quickchanged: the UID of the last message by sequence number.
        let r = self
            .conn()?
            .run(Command::raw(format!("FETCH {count} (UID)")))
            .await;
        let (untagged, _) = r.map_err(|e| self.err(e, Severity::Folder, "quick check"))?;
        let last_uid = untagged.into_iter().find_map(|u| match u {
            Untagged::Fetch(f) if f.seq == count => f.uid.and_then(Uid::new),
            _ => None,
        });
        Ok(Some(oi_core::QuickState { count, last_uid }))
    }

    async fn find_marker(&mut self, marker: &str) -> Result<Vec<Uid>, StoreError> {
        self.search_marker(marker).await
    }

    async fn messages_since(
        &mut self,
        since: oi_core::AgeCutoff,
    ) -> Result<Option<Vec<MsgRef>>, StoreError> {
        self.search_since(since).await.map(Some)
    }

    async fn set_flags(&mut self, updates: &[FlagUpdate]) -> Result<(), StoreError> {
        // Group messages that get the same change into one UID STORE each way.
        let mut add: BTreeMap<Flags, Vec<Uid>> = BTreeMap::new();
        let mut remove: BTreeMap<Flags, Vec<Uid>> = BTreeMap::new();
        for u in updates {
            if !u.add.is_empty() && !self.flag_list(u.add).is_empty() {
                add.entry(u.add).or_default().push(u.uid);
            }
            if !u.remove.is_empty() && !self.flag_list(u.remove).is_empty() {
                remove.entry(u.remove).or_default().push(u.uid);
            }
        }
        let mut cmds = Vec::new();
        for (sign, groups) in [('+', add), ('-', remove)] {
            for (flags, uids) in groups {
                cmds.push(Command::raw(format!(
                    "UID STORE {} {sign}FLAGS.SILENT ({})",
                    uid_set(&uids),
                    self.flag_list(flags)
                )));
            }
        }
        if cmds.is_empty() {
            return Ok(());
        }
        self.ensure_selected().await?;
        let r = self.conn()?.run_batch(cmds).await;
        let (_, done) = r.map_err(|e| self.err(e, Severity::Folder, "storing flags"))?;
        for d in done {
            d.ok()
                .map_err(|e| self.err(e, Severity::Message, "storing flags"))?;
        }
        Ok(())
    }

    async fn delete(&mut self, uids: &[Uid]) -> Result<(), StoreError> {
        if uids.is_empty() {
            return Ok(());
        }
        self.ensure_selected().await?;
        let cmd = Command::raw(format!(
            "UID STORE {} +FLAGS.SILENT (\\Deleted)",
            uid_set(uids)
        ));
        let r = self.conn()?.run(cmd).await;
        r.map_err(|e| self.err(e, Severity::Message, "marking deleted"))?;
        self.deleted.extend_from_slice(uids);
        Ok(())
    }

    async fn assign_uid(&mut self, _which: &MsgRef, _uid: Uid) -> Result<(), StoreError> {
        // IMAP messages always have their UID; there are no unsynced messages here.
        Ok(())
    }

    async fn close(&mut self) -> Result<(), StoreError> {
        // Never selected: nothing to close, and nothing may select it any more (its
        // connection slot is given back after this).
        self.unselected = false;
        if self.ahead.is_some() {
            // Answers still unread (the folder was never listed): read before the
            // connection goes back to the pool; a failure leaves no connection to pool.
            let drained = Box::pin(self.finish_ahead(None)).await;
            self.unselected = false;
            drained?;
        }
        if !self.fetches_ahead.is_empty() {
            // A download stopped before its last batches (a stop request): their answers
            // are read and dropped before the connection goes back to the pool.
            Box::pin(self.drain_fetches_ahead()).await?;
        }
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        let mut result = Ok(());
        if self.expunge && !self.deleted.is_empty() {
            // UID EXPUNGE (RFC 4315) leaves alone messages other clients marked \Deleted.
            let cmd = if conn.has("UIDPLUS") {
                Command::raw(format!("UID EXPUNGE {}", uid_set(&self.deleted)))
            } else {
                Command::raw("EXPUNGE")
            };
            result = conn
                .run(cmd)
                .await
                .map(|_| ())
                .map_err(|e| self.err(e, Severity::Folder, "expunging"));
            self.deleted.clear();
        }
        if result.is_ok() && !self.failed.load(Ordering::Relaxed) {
            lock_pool(&self.pool).push(conn);
        } else {
            // A connection in an unknown state (it may be mid-response, or its server
            // gone) is closed at once: no LOGOUT to wait on, and no socket left open while
            // the next folder connects (servers limit connections per user).
            drop(conn);
        }
        result
    }
}

impl ImapFolder {
    /// `UID FETCH` of whole messages, retried on a new connection when the connection
    /// drops (`retrycount`); with `spool`, bodies above its size go to files in its folder.
    /// Without `dates`, INTERNALDATE is not asked for.
    async fn fetch_bodies(
        &mut self,
        which: &[MsgRef],
        spool: Option<(&std::path::Path, u64)>,
        dates: bool,
    ) -> Result<Vec<oi_core::Fetched>, StoreError> {
        let mut uids: Vec<Uid> = which
            .iter()
            .filter_map(|m| match m {
                MsgRef::Uid(u) => Some(*u),
                MsgRef::Unsynced(_) => None,
            })
            .collect();
        let planned = self.next_in_plan(&uids);
        let mut by_uid = self.take_bodies_ahead(&mut uids, spool, dates);
        if uids.is_empty() {
            return Ok(by_uid.into_values().collect());
        }
        // This batch asked for ahead: its answer is the next on the connection.
        let sent = match self.fetches_ahead.front() {
            Some(a) if planned && a.uids == uids && a.dates == dates => {
                self.fetches_ahead.pop_front().map(|a| a.tag)
            }
            _ => None,
        };
        // Its messages that came while an earlier fetch was read.
        uids.retain(|u| match self.fetched_early.remove(u) {
            Some(f) => {
                by_uid.insert(*u, f);
                false
            }
            None => true,
        });
        if sent.is_none() {
            if uids.is_empty() {
                return Ok(by_uid.into_values().collect());
            }
            self.ensure_selected().await?;
        }
        let cmd = body_fetch_command(&uids, dates);
        let pipelined = sent.is_some() || (planned && self.bodies_ahead.is_empty());
        let mut sent = sent;
        let attempts = self.reconnect.fetch_attempts;
        let mut attempt = 1;
        let (untagged, spooled) = loop {
            if attempt > 1 && uids.is_empty() {
                // Everything came early, with an earlier fetch: nothing to ask again.
                break (Vec::new(), Vec::new());
            }
            let mut sink = spool.map(|(dir, _)| SpoolSink::new(dir));
            let over = spool.map(|(_, over)| over);
            let r = match (spool, sink.as_mut()) {
                _ if pipelined && attempt == 1 => {
                    let sink = sink
                        .as_mut()
                        .map(|s| s as &mut dyn crate::client::LiteralSink);
                    self.fetch_pipelined(cmd.clone(), sent.take(), over.zip(sink), dates)
                        .await
                }
                (Some((_, over)), Some(sink)) => {
                    self.conn()?.run_spooling(cmd.clone(), over, sink).await
                }
                _ => self.conn()?.run(cmd.clone()).await,
            };
            match r {
                Ok((untagged, _)) => {
                    let spooled = match sink {
                        Some(sink) => sink.finish().map_err(|e| {
                            StoreError::new(
                                Severity::Folder,
                                format!("folder {}: spooling messages: {e}", self.name),
                            )
                        })?,
                        None => Vec::new(),
                    };
                    break (untagged, spooled);
                }
                Err(e) if crate::retry::connection_lost(&e) && attempt < attempts => {
                    attempt += 1;
                    // What was asked for ahead went with the connection.
                    self.fetches_ahead.clear();
                    self.plan_sent = 0;
                    self.reconnect.events.emit(oi_core::Event::Warning {
                        account: None,
                        message: format!(
                            "folder {}: fetching messages failed ({e}); retrying on a new \
                             connection (attempt {attempt} of {attempts}, retrycount)",
                            self.name
                        ),
                    });
                    // The broken connection is dropped, not logged out: it is gone.
                    self.conn = None;
                    let conn = self
                        .reconnect
                        .reopen(&self.name, self.meta.uid_validity, self.pool.count())
                        .await?;
                    self.conn = Some(conn);
                }
                Err(e) => {
                    let what = if attempt > 1 {
                        format!("fetching (gave up after {attempt} attempts, retrycount)")
                    } else {
                        "fetching".to_string()
                    };
                    return Err(self.err(e, Severity::Folder, &what));
                }
            }
        };
        // The k-th streamed response owns the k-th spool file.
        let mut spooled = spooled.into_iter();
        for u in untagged {
            let Untagged::Fetch(f) = u else { continue };
            let file = match f.streamed {
                Some(len) => {
                    let Some((file, path, written)) = spooled.next() else {
                        return Err(StoreError::new(
                            Severity::Folder,
                            format!("folder {}: a streamed message without its file", self.name),
                        ));
                    };
                    if written != len {
                        return Err(StoreError::new(
                            Severity::Folder,
                            format!(
                                "folder {}: spooled {written} of a {len}-byte message",
                                self.name
                            ),
                        ));
                    }
                    Some((file, path, len))
                }
                None => None,
            };
            let Some(uid) = f.uid.and_then(Uid::new) else {
                continue;
            };
            // A message of a fetch sent ahead, answered along with this one: kept for it.
            let current = uids.contains(&uid);
            if !current && !self.fetches_ahead.iter().any(|a| a.uids.contains(&uid)) {
                continue;
            }
            let flags = self
                .keywords
                .flags_from_imap(f.flags.as_deref().unwrap_or_default())
                .0;
            let fetched = match (file, f.body) {
                (Some((file, path, len)), _) => oi_core::Fetched::Spooled(oi_core::LargeMessage {
                    source: MsgRef::Uid(uid),
                    file,
                    len,
                    flags,
                    internal_date: f.internal_date,
                    spool: Some(path),
                    drop_headers: Vec::new(),
                }),
                (None, Some(body)) => oi_core::Fetched::Memory(Message {
                    source: MsgRef::Uid(uid),
                    body,
                    flags,
                    internal_date: f.internal_date,
                }),
                (None, None) => continue,
            };
            if current {
                by_uid.insert(uid, fetched);
            } else {
                self.fetched_early.insert(uid, fetched);
            }
        }
        Ok(by_uid.into_values().collect())
    }
}

/// The spool files of one [`ImapFolder::fetch_spooled`], in the order the literals came.
struct SpoolSink {
    dir: std::path::PathBuf,
    current: Option<(tempfile::NamedTempFile, u64)>,
    done: Vec<(std::fs::File, tempfile::TempPath, u64)>,
}

impl SpoolSink {
    fn new(dir: &std::path::Path) -> SpoolSink {
        SpoolSink {
            dir: dir.to_path_buf(),
            current: None,
            done: Vec::new(),
        }
    }

    fn close_current(&mut self) -> std::io::Result<()> {
        use std::io::Write;
        if let Some((mut tmp, written)) = self.current.take() {
            tmp.flush()?;
            let (file, path) = tmp.into_parts();
            self.done.push((file, path, written));
        }
        Ok(())
    }

    /// The files, each with how many bytes went into it.
    fn finish(mut self) -> std::io::Result<Vec<(std::fs::File, tempfile::TempPath, u64)>> {
        self.close_current()?;
        Ok(self.done)
    }
}

impl crate::client::LiteralSink for SpoolSink {
    fn start(&mut self, _len: u64) -> std::io::Result<()> {
        self.close_current()?;
        self.current = Some((oi_core::spool_file(&self.dir)?, 0));
        Ok(())
    }

    fn data(&mut self, piece: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        let Some((tmp, written)) = self.current.as_mut() else {
            return Err(std::io::Error::other("literal data before its start"));
        };
        tmp.write_all(piece)?;
        *written += piece.len() as u64;
        Ok(())
    }
}

/// `maxage` on an IMAP folder.
impl ImapFolder {
    /// The UIDs of the messages whose internal date is on or after the cutoff's day
    /// (`UID SEARCH SINCE`, as OfflineIMAP's `SEARCH SINCE` for `maxage`).
    async fn search_since(&mut self, since: oi_core::AgeCutoff) -> Result<Vec<MsgRef>, StoreError> {
        self.ensure_selected().await?;
        if self.meta.exists == Some(0) {
            return Ok(Vec::new());
        }
        let Some(day) = search_day(since.day) else {
            return Err(StoreError::new(
                Severity::Folder,
                format!("folder {}: maxage led to an impossible date", self.name),
            ));
        };
        let r = self
            .conn()?
            .run(Command::raw(format!("UID SEARCH SINCE {day}")))
            .await;
        let (untagged, _) = r.map_err(|e| self.err(e, Severity::Folder, "searching by date"))?;
        let mut uids: Vec<Uid> = untagged
            .into_iter()
            .filter_map(|u| match u {
                Untagged::Search(v) => Some(v),
                _ => None,
            })
            .flatten()
            .filter_map(Uid::new)
            .collect();
        uids.sort();
        uids.dedup();
        Ok(uids.into_iter().map(MsgRef::Uid).collect())
    }
}

/// An IMAP `date` (RFC 3501 §9: `d-Mon-yyyy`).
fn search_day((year, month, day): (i32, u8, u8)) -> Option<String> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let name = MONTHS.get(usize::from(month).checked_sub(1)?)?;
    ((1..=31).contains(&day) && year > 0).then(|| format!("{day:02}-{name}-{year}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_counts_its_connections_until_dropped_and_reserves_below_the_limit() {
        let pool = Connections::default();
        let first = pool.count();
        let second = pool.reserve(2).expect("room for a second");
        assert!(pool.reserve(2).is_none(), "a third beside two of two");
        drop(first);
        let third = pool.reserve(2).expect("room again once one is gone");
        drop((second, third));
        assert_eq!(pool.live.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn changes_with_a_listing_keep_the_count_right() {
        let listing_of = |uids: &[u32]| {
            let mut l = Listing::default();
            for &n in uids {
                l.messages.insert(
                    Uid::new(n).unwrap(),
                    MessageMeta {
                        flags: Flags::EMPTY,
                        size: Some(1),
                    },
                );
            }
            l
        };
        let kept = |l: &Listing| l.messages.keys().map(|u| u.get()).collect::<Vec<_>>();
        // VANISHED (EARLIER): the past, which the count from SELECT (3) already shows.
        let mut l = listing_of(&[1, 2, 3, 4, 5]);
        let earlier = vec![Untagged::Vanished {
            earlier: true,
            uids: vec![(2, 3)],
        }];
        assert_eq!(apply_changes(&mut l, earlier, 3), 3);
        assert_eq!(kept(&l), [1, 4, 5]);
        // Expunged just now, during the listing: VANISHED without EARLIER lowers the count
        // too, so the listing and the count still agree.
        let now = vec![Untagged::Vanished {
            earlier: false,
            uids: vec![(4, 4)],
        }];
        let n = apply_changes(&mut l, now, 3);
        assert_eq!((n, kept(&l)), (2, vec![1, 5]));
        // An EXPUNGE names no UID: the count drops, the listing cannot, and the caller
        // lists in full.
        let n = apply_changes(&mut l, vec![Untagged::Expunge(1)], n);
        assert_eq!((n, l.messages.len()), (1, 2));
        // EXISTS is absolute; a range larger than the count only brings it to zero.
        let mut l = listing_of(&[1]);
        let n = apply_changes(&mut l, vec![Untagged::Exists(7)], 1);
        assert_eq!(n, 7);
        let huge = vec![Untagged::Vanished {
            earlier: false,
            uids: vec![(1, u32::MAX)],
        }];
        assert_eq!(apply_changes(&mut l, huge, 7), 0);
        assert!(l.messages.is_empty());
    }

    #[test]
    fn uid_sets_are_compact() {
        let u = |v: &[u32]| v.iter().filter_map(|&n| Uid::new(n)).collect::<Vec<_>>();
        assert_eq!(uid_set(&u(&[5, 1, 2, 3, 9, 10, 7, 3])), "1:3,5,7,9:10");
        assert_eq!(uid_set(&u(&[42])), "42");
        assert_eq!(uid_set(&[]), "");
    }

    #[test]
    fn header_goes_after_the_last_header_line() {
        assert_eq!(
            insert_header(b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore", "9-1"),
            b"A: 1\r\nB: 2\r\nX-OfflineIMAP: 9-1\r\n\r\nbody\r\n\r\nmore"
        );
        assert_eq!(
            insert_header(b"A: 1\n\nb", "v"),
            b"A: 1\nX-OfflineIMAP: v\n\nb"
        );
        assert_eq!(insert_header(b"A: 1", "v"), b"A: 1\nX-OfflineIMAP: v\n");
    }

    #[test]
    fn unique_value_has_offlineimap_shape() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        let v = unique_header_value(b"x");
        let (crc, rnd) = v.split_once('-').unwrap();
        assert_eq!(crc, crc32(b"x").to_string());
        assert!(rnd.parse::<u64>().unwrap() < 10_000_000_000);
        assert_ne!(unique_header_value(b"x"), unique_header_value(b"x"));
    }

    #[test]
    fn search_day_format() {
        assert_eq!(search_day((2024, 3, 7)).as_deref(), Some("07-Mar-2024"));
        assert_eq!(search_day((2024, 12, 31)).as_deref(), Some("31-Dec-2024"));
        assert_eq!(search_day((2024, 13, 1)), None);
        assert_eq!(search_day((2024, 0, 1)), None);
    }

    #[test]
    fn date_format() {
        assert_eq!(imap_date(837596665).unwrap(), "17-Jul-1996 09:44:25 +0000");
    }
}
