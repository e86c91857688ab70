//! The validated configuration the binary receives. Nothing here knows option names.

use oi_core::Secret;
use std::path::PathBuf;
use std::time::Duration;

/// A whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[general]`.
    pub general: General,
    /// The accounts named in `[general] accounts` (or `-a`), in that order.
    pub accounts: Vec<AccountConfig>,
    /// Things the user should know (options we ignore for now, repeated options), one line
    /// each, ready to print.
    pub warnings: Vec<String>,
    /// Options that OfflineIMAP does not know either (it ignores misspellings); worth a
    /// debug-level line only.
    pub unknown: Vec<String>,
}

/// `[general]`.
#[derive(Debug, Clone, PartialEq)]
pub struct General {
    /// Account names to sync, in order, each once.
    pub accounts: Vec<String>,
    /// State directory (status databases, locks), expanded. Default `~/.offlineimap`.
    pub metadata: PathBuf,
    /// How many accounts to sync at once. Default 1, never 0.
    pub maxsyncaccounts: usize,
    /// fsync Maildir writes and commit status per write. Default true.
    pub fsync: bool,
    /// Socket read/write timeout; `None` (unset or 0) means the OS default.
    pub socktimeout: Option<Duration>,
    /// Preferred UI name(s), as written; the `-u` flag wins over it.
    pub ui: Option<String>,
    /// `pythonfile`, expanded; the binary runs it at start.
    pub pythonfile: Option<PathBuf>,
    /// `utime_from_header`: the default of the Maildir option of that name (already
    /// applied to every [`MaildirConfig`]). Default false.
    pub utime_from_header: bool,
    /// `filename_use_mail_timestamp`: the default of the Maildir option of that name
    /// (already applied to every [`MaildirConfig`]). Default false.
    pub filename_use_mail_timestamp: bool,
    /// `[mbnames]`, when `enabled`.
    pub mbnames: Option<Mbnames>,
    /// `dry-run` (also `--dry-run`): OfflineIMAP 8's account syncs read it from the
    /// configuration, so a `dry-run = True` there makes every sync a dry run. Default false.
    pub dry_run: bool,
    /// `ignore-readonly`: no warning for the changes that a folder its server opens
    /// read-only cannot take. Default false.
    pub ignore_readonly: bool,
    /// `ignore-keyring` (also `--ignore-keyring`): never look the password up in the
    /// Python keyring. Default false.
    pub ignore_keyring: bool,
    /// `update-keyring` (also `--update-keyring`): store the password used for an IMAP
    /// login in the Python keyring. Default false.
    pub update_keyring: bool,
}

/// The `[mbnames]` section: a mailbox list for mutt and the like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mbnames {
    /// Where the list goes (expanded).
    pub filename: PathBuf,
    /// Python expression printed first.
    pub header: PyExpr,
    /// `%`-format per folder, with keys `accountname`, `foldername`, `localfolders`.
    pub peritem: String,
    /// Python expression between items.
    pub sep: PyExpr,
    /// Python expression printed last.
    pub footer: PyExpr,
    /// Rewrite the list after each account instead of once at the end.
    pub incremental: bool,
    /// Function of (account name, folder name) restricting the list.
    pub folderfilter: Option<PyExpr>,
    /// Function of an item dict giving its sort key.
    pub sort_keyfunc: Option<PyExpr>,
}

/// One `[Account NAME]` with both of its repositories resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountConfig {
    /// The account name (the part after `Account `).
    pub name: String,
    /// The `localrepository`.
    pub local: RepositoryConfig,
    /// The `remoterepository`.
    pub remote: RepositoryConfig,
    /// Re-sync period in minutes; `None` when unset or 0 (sync once).
    pub autorefresh: Option<f64>,
    /// Quick syncs between full syncs (0 never, -1 always).
    pub quick: i64,
    /// `skipsleep`: the first autorefresh sleep is skipped (a second sync follows the
    /// first at once), as OfflineIMAP does with the option SIGUSR1 sets. Default false.
    pub skipsleep: bool,
    /// `presynchook`: a shell command run (and waited for) before each sync.
    pub presynchook: Option<String>,
    /// `postsynchook`: a shell command run after each sync.
    pub postsynchook: Option<String>,
    /// `max_delete_percent` (ours, not OfflineIMAP's): a folder sync that would delete
    /// more than this share of a side's messages (and more than a handful) stops with an
    /// explanation instead. 100 turns the guard off.
    pub max_delete_percent: u8,
    /// `maxsize`: messages larger than this many bytes are left out of the sync.
    pub maxsize: Option<u64>,
    /// `maxage`: only messages newer than this take part in the sync.
    pub maxage: Option<MaxAge>,
    /// `filterheaders`: header fields removed from messages before they are uploaded to
    /// the remote.
    pub filterheaders: Vec<String>,
    /// `maildir-windows-compatible`: the account's Maildir names use `!` instead of `:`
    /// before the flags. Default false.
    pub maildir_windows_compatible: bool,
    /// `utf8foldernames`: local folder names are UTF-8 and the server's are modified UTF-7
    /// (every remote name is decoded when listed and encoded when sent). Default false.
    pub utf8foldernames: bool,
    /// `proxy`: the IMAP connection goes through this proxy. `None` when unset or empty.
    pub proxy: Option<ProxySetting>,
    /// `authproxy`: the OAuth2 token request goes through this proxy. Unset means the
    /// same as `proxy`; an empty value means none.
    pub authproxy: Option<ProxySetting>,
}

/// A proxy protocol (PySocks' proxy types).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyType {
    /// `SOCKS5` (no authentication).
    Socks5,
    /// `SOCKS4` (4a for host names).
    Socks4,
    /// `HTTP` (`CONNECT`).
    Http,
}

/// A proxy (`TYPE:host:port`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxySetting {
    /// The protocol.
    pub kind: ProxyType,
    /// The proxy's host.
    pub host: String,
    /// The proxy's port.
    pub port: u16,
}

/// An `auth_mechanisms` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMech {
    /// `GSSAPI` (Kerberos; not supported, skipped).
    Gssapi,
    /// `XOAUTH2`.
    XOAuth2,
    /// `CRAM-MD5`.
    CramMd5,
    /// `PLAIN`.
    Plain,
    /// `LOGIN`.
    Login,
}

impl AuthMech {
    /// OfflineIMAP's default order.
    pub const DEFAULT: [AuthMech; 5] = [
        AuthMech::Gssapi,
        AuthMech::XOAuth2,
        AuthMech::CramMd5,
        AuthMech::Plain,
        AuthMech::Login,
    ];

    /// The name as written in `auth_mechanisms`.
    pub fn name(self) -> &'static str {
        match self {
            AuthMech::Gssapi => "GSSAPI",
            AuthMech::XOAuth2 => "XOAUTH2",
            AuthMech::CramMd5 => "CRAM-MD5",
            AuthMech::Plain => "PLAIN",
            AuthMech::Login => "LOGIN",
        }
    }
}

/// A value given either as is (`oauth2_client_id`) or as a Python expression
/// (`oauth2_client_id_eval`), evaluated by the binary.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretSource {
    /// The option's value.
    Inline(Secret),
    /// The `_eval` option's expression.
    Eval(PyExpr),
}

/// The `oauth2_*` options of an IMAP repository (each from the plain option if set,
/// else from its `_eval` form, as OfflineIMAP reads them).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OAuth2Config {
    /// `oauth2_access_token` / `_eval` (the eval is asked at every login).
    pub access_token: Option<SecretSource>,
    /// `oauth2_refresh_token` / `_eval`.
    pub refresh_token: Option<SecretSource>,
    /// `oauth2_client_id` / `_eval`.
    pub client_id: Option<SecretSource>,
    /// `oauth2_client_secret` / `_eval`.
    pub client_secret: Option<SecretSource>,
    /// `oauth2_request_url` (Gmail: Google's token endpoint by default).
    pub request_url: Option<String>,
}

impl OAuth2Config {
    /// True when XOAUTH2 can be attempted (an access or a refresh token is configured).
    pub fn configured(&self) -> bool {
        self.access_token.is_some() || self.refresh_token.is_some()
    }
}

/// `maxage` of an account: a number of days before now, or a fixed day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxAge {
    /// This many days (at least 1) before the start of each sync.
    Days(u32),
    /// Since this day (local midnight).
    Since(Day),
}

/// A calendar day of `maxage` or `startdate` (`yyyy-mm-dd`, as Python's `strptime` reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Day {
    /// The year (1900 or later).
    pub year: i32,
    /// The month, 1-12.
    pub month: u8,
    /// The day of the month, valid for the month.
    pub day: u8,
}

/// How many commands an IMAP connection keeps in flight by default (`pipelinedepth`).
pub const DEFAULT_PIPELINE_DEPTH: usize = 32;

/// The guard's default: deleting more than half of a folder at once is far more often a
/// vanished directory or a changed nametrans than a user's wish.
pub const DEFAULT_MAX_DELETE_PERCENT: u8 = 50;

/// One `[Repository NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct RepositoryConfig {
    /// The repository name (the part after `Repository `).
    pub name: String,
    /// Never modify this side. Default false.
    pub readonly: bool,
    /// Folders may be created on this side. Default true.
    pub createfolders: bool,
    /// Deletions made on this side propagate to the other. Default true.
    pub sync_deletes: bool,
    /// The Python folder options (nametrans, folderfilter, folderincludes, foldersort).
    pub folders: FolderOptions,
    /// `startdate`: this side takes part only from its first message since the day
    /// (saved as the folder's StartUID on the first sync, when the other side is empty).
    pub startdate: Option<Day>,
    /// What kind of store it is, with its own options.
    pub kind: RepositoryKind,
}

/// A Python expression from the configuration, with where it was written (for errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PyExpr {
    /// The expression's text (interpolated, as OfflineIMAP evaluates it).
    pub source: String,
    /// The section it came from (`Repository X`).
    pub section: String,
    /// The option (`nametrans`).
    pub option: String,
}

/// A repository's folder selection and naming, as Python expressions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FolderOptions {
    /// `nametrans`: a function of a folder name giving the name on the other side.
    pub nametrans: Option<PyExpr>,
    /// `folderfilter`: a predicate on this repository's (untranslated) folder names.
    pub folderfilter: Option<PyExpr>,
    /// `folderincludes`: a list of extra folder names.
    pub folderincludes: Option<PyExpr>,
    /// `foldersort`: a cmp-style function ordering folders (IMAP repositories only).
    pub foldersort: Option<PyExpr>,
}

/// The store behind a repository.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // built once per repository: boxing would buy nothing
pub enum RepositoryKind {
    /// `type = Maildir` (local side only).
    Maildir(MaildirConfig),
    /// `type = IMAP`.
    Imap(ImapConfig),
}

/// Options of a Maildir repository.
#[derive(Debug, Clone, PartialEq)]
pub struct MaildirConfig {
    /// Root of the Maildir tree, expanded.
    pub localfolders: PathBuf,
    /// Hierarchy separator on disk. Default `.`.
    pub sep: char,
    /// `restoreatime`: put the access times of `cur/` and `new/` back after syncing.
    pub restoreatime: bool,
    /// `utime_from_header` (default: `[general]`'s): file times from the Date header.
    pub utime_from_header: bool,
    /// `filename_use_mail_timestamp` (default: `[general]`'s): file name time prefix from
    /// the Date (else Delivery-date) header.
    pub filename_use_mail_timestamp: bool,
    /// `customflag_a` … `customflag_z`: `(letter, IMAP keyword)`, sorted by letter.
    pub custom_flags: Vec<(char, String)>,
    /// `type = GmailMaildir` (a Maildir; label sync is not supported).
    pub gmail: bool,
}

/// Options of an IMAP repository.
#[derive(Debug, Clone, PartialEq)]
pub struct ImapConfig {
    /// `remotehost`; empty when a tunnel replaces the connection.
    pub host: String,
    /// `remoteport`; `None` means 993 with ssl, else 143.
    pub port: Option<u16>,
    /// `remoteuser`; `None` means ask netrc or the user.
    pub user: Option<String>,
    /// Where the password comes from.
    pub password: PasswordSource,
    /// Implicit TLS. Default true.
    pub ssl: bool,
    /// STARTTLS on plain connections. Default true.
    pub starttls: bool,
    /// Which CA certificates verify the server.
    pub ca: CaCerts,
    /// Allowed server certificate digests: lowercase hex, no colons or spaces.
    pub cert_fingerprints: Vec<String>,
    /// Command giving an already authenticated IMAP stream on stdin/stdout.
    pub preauthtunnel: Option<String>,
    /// Command giving a transport that still needs a login.
    pub transporttunnel: Option<String>,
    /// EXPUNGE after marking messages \Deleted. Default true.
    pub expunge: bool,
    /// `remotehosteval`: replaces `remotehost` when set.
    pub hosteval: Option<PyExpr>,
    /// `remoteporteval`: replaces `remoteport` when set.
    pub porteval: Option<PyExpr>,
    /// `remoteusereval`: replaces `remoteuser` when set.
    pub usereval: Option<PyExpr>,
    /// `idlefolders`: a Python list of folders watched with IDLE between autorefresh syncs.
    pub idlefolders: Option<PyExpr>,
    /// `holdconnectionopen` (true too when `idlefolders` is set): IMAP connections stay
    /// logged in between autorefresh syncs instead of being logged out after each.
    pub holdconnectionopen: bool,
    /// `keepalive`: while waiting for the next autorefresh sync, a NOOP is sent on every held
    /// connection this often (29 minutes by default with `idlefolders`). Any keepalive also
    /// holds the connections, as OfflineIMAP's keepalive thread opens them if needed.
    pub keepalive: Option<Duration>,
    /// `newmail_hook`: a Python callable called after new mail was copied from INBOX.
    pub newmail_hook: Option<PyExpr>,
    /// `copy_ignore_eval`: a function of the folder's visible name giving the UIDs of
    /// messages never copied from this repository.
    pub copy_ignore_eval: Option<PyExpr>,
    /// `subscribedonly`: only subscribed folders (LSUB). Default false.
    pub subscribedonly: bool,
    /// `reference`: the LIST reference, as written (OfflineIMAP's default `""` means none).
    pub reference: Option<String>,
    /// `maxconnections`: folders synced at once, each on its own connection. Default 1.
    pub maxconnections: usize,
    /// `retrycount`: attempts of a message fetch whose connection broke, each on a new
    /// connection (OfflineIMAP's `_fetch_from_imap`). Default 2; at least 1.
    pub retrycount: u32,
    /// `pipelinedepth` (ours; OfflineIMAP ignores it): how many commands a connection
    /// keeps in flight before it waits for an answer. Default
    /// [`crate::DEFAULT_PIPELINE_DEPTH`]; at least 1 (1: one command at a time).
    pub pipelinedepth: usize,
    /// `ipv6`: `Some(true)` IPv6 only, `Some(false)` IPv4 only, `None` either.
    pub ipv6: Option<bool>,
    /// `usecompression`: COMPRESS=DEFLATE (RFC 4978) after login when the server offers
    /// it. Default false.
    pub usecompression: bool,
    /// `ssl_version` within `tls_level`, as far as TLS 1.2/1.3 can honour it.
    pub tls_version: TlsVersion,
    /// `sslclientcert`, expanded: PEM certificate (chain) for client authentication.
    pub sslclientcert: Option<PathBuf>,
    /// `sslclientkey`, expanded: its private key (else read from `sslclientcert`).
    pub sslclientkey: Option<PathBuf>,
    /// `decodefoldernames` (deprecated): the visible name of each remote folder is its
    /// modified UTF-7 name decoded (undecodable names stay as they are).
    pub decodefoldernames: bool,
    /// `type = Gmail`: the Gmail-specific options (label sync is not supported).
    pub gmail: Option<GmailOptions>,
    /// `auth_mechanisms`, in order (default [`AuthMech::DEFAULT`]).
    pub auth_mechanisms: Vec<AuthMech>,
    /// `remote_identity`: the SASL authorization identity for PLAIN.
    pub remote_identity: Option<String>,
    /// The `oauth2_*` options.
    pub oauth2: OAuth2Config,
}

/// Which TLS versions an IMAP connection may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsVersion {
    /// `ssl_version` unset or `ssl23`: negotiate (TLS 1.2 or 1.3).
    #[default]
    Negotiate,
    /// `ssl_version = tls1_2`: TLS 1.2 only.
    Tls12,
}

/// Options of `type = Gmail`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GmailOptions {
    /// `trashfolder`. Default `[Gmail]/Trash`.
    pub trashfolder: String,
    /// `spamfolder`. Default `[Gmail]/Spam`.
    pub spamfolder: String,
}

/// Where an IMAP password comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum PasswordSource {
    /// Not configured: netrc, keyring or a prompt (decided by the binary).
    None,
    /// `remotepass`.
    Inline(Secret),
    /// `remotepassfile` (expanded): its first line is the password.
    File(PathBuf),
    /// `remotepasseval`: a Python expression (usually calling a pythonfile function).
    Eval(PyExpr),
}

/// Which CA certificates verify an IMAP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaCerts {
    /// `sslcacertfile` unset.
    SystemDefault,
    /// `sslcacertfile = OS-DEFAULT`: the distribution's bundle.
    OsDefault,
    /// A CA bundle file, expanded.
    File(PathBuf),
}
