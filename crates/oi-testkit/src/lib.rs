//! Test support for offlineimap: a private Dovecot on 127.0.0.1 and server-side helpers.
//!
//! [`Dovecot::start`] writes a throw-away configuration (its own base_dir, state_dir, log,
//! passwd-file, self-signed certificate and random loopback ports) into a temporary
//! directory and runs the distribution's `dovecot` on it, as `/work/shared/bench/setup-server`
//! does. The helpers that put messages in or read them back go through `doveadm`, never
//! through our IMAP client, so integration tests can check the server side independently.
//!
//! This crate is for dev-dependencies only. It must not depend on any offlineimap crate
//! (that would make the server check depend on the code under test) and uses only std and
//! tempfile.
#![deny(missing_docs)]

mod courier;
mod cyrus;
pub mod faultproxy;
pub mod oauth;
pub mod packages;
pub mod proxy;
pub mod script;

pub use courier::Courier;
pub use cyrus::Cyrus;
pub use faultproxy::{Fault, FaultProxy, Times, Trigger};
pub use oauth::MockOAuth;
pub use proxy::MockProxy;

use std::fmt;
use std::io::{self, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The users every test server knows, with their passwords.
pub const USERS: [(&str, &str); 2] = [("alice", "alicepass"), ("bob", "bobpass")];

/// The unprivileged account Dovecot's mail processes run as.
const MAIL_OWNER: &str = "nobody";
const MAIL_GROUP: &str = "nogroup";

/// Why a test server could not be started.
#[derive(Debug)]
pub enum StartError {
    /// `dovecot` is not installed on this machine (outside CI: the test should skip loudly).
    NotInstalled,
    /// An I/O error while preparing or starting the server.
    Io(io::Error),
    /// The server or a helper command failed; the text says how.
    Failed(String),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::NotInstalled => f.write_str("dovecot is not installed"),
            StartError::Io(e) => write!(f, "I/O error: {e}"),
            StartError::Failed(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for StartError {}

impl From<io::Error> for StartError {
    fn from(e: io::Error) -> Self {
        StartError::Io(e)
    }
}

/// One message as the server holds it, read back with `doveadm fetch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerMessage {
    /// The server's UID.
    pub uid: u32,
    /// The flags, as IMAP names (`\Seen`, `$Forwarded`), in the server's order.
    pub flags: Vec<String>,
    /// INTERNALDATE as seconds since the epoch (Dovecot's `date.received`).
    pub internal_date: Option<i64>,
    /// The whole message as stored (header and body).
    pub body: Vec<u8>,
}

impl ServerMessage {
    /// True when the message carries this flag (ASCII case-insensitive).
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.iter().any(|f| f.eq_ignore_ascii_case(flag))
    }
}

/// Extra authentication settings of a test Dovecot (the default is `plain login` with
/// the [`USERS`]).
#[derive(Debug, Clone, Default)]
pub struct DovecotOptions {
    /// More SASL mechanisms to offer, Dovecot's names (`cram-md5`). The passwords are
    /// stored in plain text, so every password mechanism works.
    pub extra_mechanisms: Vec<String>,
    /// Offer XOAUTH2 and OAUTHBEARER, checking tokens with this introspection URL
    /// (`POST token=…`, answered `{"active": true, "username": …}`), as [`MockOAuth`]
    /// serves it.
    pub oauth2_introspection_url: Option<String>,
    /// A master user `(name, password)`: PLAIN with authorization identity `alice`,
    /// authentication identity `name` and its password logs in as alice.
    pub master_user: Option<(String, String)>,
    /// Load the imap_zlib plugin, which offers COMPRESS=DEFLATE (RFC 4978).
    pub imap_zlib: bool,
    /// Load the acl plugin with this global ACL file (Dovecot's format, a line per
    /// `<mailbox> <identifier> <rights>`, e.g. `Shared owner lr` for a folder its owner can
    /// read but not change: Dovecot then SELECTs it `[READ-ONLY]`). The file is read
    /// again at every use, so [`Dovecot::set_global_acl`] can change it later.
    pub global_acl: Option<String>,
    /// Dovecot's `imap_capability`: the capabilities it announces after login, in place
    /// of its own (to test a client against a server without one of them).
    pub imap_capability: Option<String>,
}

/// A private Dovecot on 127.0.0.1, stopped when dropped.
#[derive(Debug)]
pub struct Dovecot {
    dir: tempfile::TempDir,
    imap_port: u16,
    imaps_port: u16,
    conf: PathBuf,
    master: Option<Child>,
}

static INSTANCE: AtomicU32 = AtomicU32::new(0);

fn dovecot_binary() -> Option<PathBuf> {
    ["/usr/sbin/dovecot", "/usr/local/sbin/dovecot"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A port that was free a moment ago. Dovecot binds it right after; a collision with
/// another test in that window fails the start loudly rather than silently.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn run(cmd: &mut Command, what: &str) -> Result<Vec<u8>, StartError> {
    let out = cmd.stdin(Stdio::null()).output()?;
    if !out.status.success() {
        return Err(StartError::Failed(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

fn id_of(flag: &str, name: &str) -> Result<String, StartError> {
    let out = run(Command::new("id").arg(flag).arg(name), "id")?;
    Ok(String::from_utf8_lossy(&out).trim().to_string())
}

fn chmod(path: &Path, mode: &str) -> Result<(), StartError> {
    run(Command::new("chmod").arg(mode).arg(path), "chmod").map(|_| ())
}

impl Dovecot {
    /// Starts a server, or returns `None` after printing a loud `SKIPPED` line when dovecot
    /// is not installed. Under CI (`CI=true`) a missing server panics instead, and so does
    /// any other start failure: a test cannot go on without its server.
    pub fn start_or_skip(test: &str) -> Option<Dovecot> {
        Dovecot::start_or_skip_with(test, &DovecotOptions::default())
    }

    /// [`Dovecot::start_or_skip`] with extra authentication settings.
    pub fn start_or_skip_with(test: &str, options: &DovecotOptions) -> Option<Dovecot> {
        match Dovecot::start_with(options) {
            Ok(d) => Some(d),
            Err(StartError::NotInstalled) => {
                eprintln!("SKIPPED: {test}: dovecot not installed (apt-get install dovecot-imapd)");
                None
            }
            Err(e) => panic!("{test}: could not start dovecot: {e}"),
        }
    }

    /// Starts a server and waits until its IMAP port accepts connections.
    ///
    /// # Panics
    /// When dovecot is not installed and `CI` is `true`: under CI a missing server is a
    /// failure, never a skip.
    pub fn start() -> Result<Dovecot, StartError> {
        Dovecot::start_with(&DovecotOptions::default())
    }

    /// [`Dovecot::start`] with extra authentication settings.
    ///
    /// # Panics
    /// As [`Dovecot::start`].
    pub fn start_with(options: &DovecotOptions) -> Result<Dovecot, StartError> {
        let Some(binary) = dovecot_binary() else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("dovecot is not installed, and CI=true: install dovecot-imapd");
            }
            return Err(StartError::NotInstalled);
        };
        let dir = tempfile::Builder::new().prefix("oi-dovecot.").tempdir()?;
        let root = dir.path().to_path_buf();
        // Dovecot's auth and mail processes run unprivileged and must traverse the chain.
        chmod(&root, "a+x")?;
        for sub in ["run", "log", "tls", "state", "mail"] {
            std::fs::create_dir(root.join(sub))?;
        }
        run(
            Command::new("chown")
                .arg(format!("{MAIL_OWNER}:{MAIL_GROUP}"))
                .arg(root.join("mail")),
            "chown mail dir",
        )?;
        let crt = root.join("tls/server.crt");
        let key = root.join("tls/server.key");
        // The name 127.0.0.1 is also a DNS entry because some clients skip IP SANs.
        // CA:FALSE because webpki (rustls) refuses a CA certificate as the server's own;
        // trusting this very certificate as the anchor still works.
        run(
            Command::new("openssl")
                .args([
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
                ])
                .args(["-subj", "/CN=127.0.0.1"])
                .args([
                    "-addext",
                    "subjectAltName=IP:127.0.0.1,DNS:127.0.0.1,DNS:localhost",
                ])
                .args(["-addext", "basicConstraints=critical,CA:FALSE"])
                .args(["-addext", "extendedKeyUsage=serverAuth"])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&crt)
                .stderr(Stdio::piped()),
            "openssl req",
        )?;
        let passwd = root.join("passwd");
        let mut pw = String::new();
        for (u, p) in USERS {
            pw.push_str(&format!("{u}:{{PLAIN}}{p}\n"));
        }
        std::fs::write(&passwd, pw)?;

        let mut mechanisms = String::from("plain login");
        for m in &options.extra_mechanisms {
            mechanisms.push(' ');
            mechanisms.push_str(m);
        }
        // An oauth2 passdb (RFC 7628 tokens checked by the identity provider's
        // introspection endpoint) for XOAUTH2 and OAUTHBEARER only; the passwd-file
        // passdb keeps serving the password mechanisms.
        let mut oauth2_passdb = String::new();
        if let Some(url) = &options.oauth2_introspection_url {
            mechanisms.push_str(" xoauth2 oauthbearer");
            let ext = root.join("oauth2.conf.ext");
            std::fs::write(
                &ext,
                format!(
                    "introspection_mode = post\nintrospection_url = {url}\n\
                     username_attribute = username\nactive_attribute = active\n\
                     active_value = true\ntimeout_msecs = 10000\n"
                ),
            )?;
            chmod(&ext, "a+r")?;
            oauth2_passdb = format!(
                "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {}\n}}\n",
                ext.display()
            );
        }
        let mut master_passdb = String::new();
        if let Some((user, pass)) = &options.master_user {
            let file = root.join("master-users");
            std::fs::write(&file, format!("{user}:{{PLAIN}}{pass}\n"))?;
            chmod(&file, "a+r")?;
            master_passdb = format!(
                "passdb {{\n  driver = passwd-file\n  master = yes\n  args = scheme=PLAIN {}\n}}\n",
                file.display()
            );
        }
        let protocol_imap = if options.imap_zlib {
            "protocol imap {\n  mail_plugins = $mail_plugins imap_zlib\n}\n"
        } else {
            ""
        };
        let mut acl = String::new();
        if let Some(text) = &options.global_acl {
            let file = root.join("global-acl");
            std::fs::write(&file, text)?;
            chmod(&file, "a+r")?;
            acl = format!(
                "mail_plugins = $mail_plugins acl\nplugin {{\n  acl = vfile:{}:cache_secs=0\n}}\n",
                file.display()
            );
        }
        let capability = options
            .imap_capability
            .as_ref()
            .map_or_else(String::new, |caps| format!("imap_capability = {caps}\n"));
        let uid = id_of("-u", MAIL_OWNER)?;
        let gid = id_of("-g", MAIL_OWNER)?;
        let imap_port = free_port()?;
        let mut imaps_port = free_port()?;
        while imaps_port == imap_port {
            imaps_port = free_port()?;
        }
        let n = INSTANCE.fetch_add(1, Ordering::Relaxed);
        let instance = format!("oitest-{}-{n}-{imap_port}", std::process::id());
        let r = root.display();
        let conf_text = format!(
            "# Private Dovecot for one offlineimap test, written by oi-testkit.
instance_name = {instance}
base_dir = {r}/run
state_dir = {r}/state
log_path = {r}/log/dovecot.log
listen = 127.0.0.1
protocols = imap
ssl = yes
ssl_cert = <{crt}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
mail_location = maildir:~/Maildir
{acl}{capability}{oauth2_passdb}{master_passdb}passdb {{
  driver = passwd-file
  args = scheme=PLAIN {passwd}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={r}/mail/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
    ssl = yes
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
{protocol_imap}",
            crt = crt.display(),
            key = key.display(),
            passwd = passwd.display(),
        );
        let conf = root.join("dovecot.conf");
        std::fs::write(&conf, conf_text)?;
        chmod(&conf, "a+r")?;

        let startup_log = std::fs::File::create(root.join("log/startup.log"))?;
        // -F keeps the master our child, so Drop can wait for it and leave no zombie.
        let master = Command::new(binary)
            .arg("-F")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(startup_log.try_clone()?)
            .stderr(startup_log)
            .spawn()?;
        let mut server = Dovecot {
            dir,
            imap_port,
            imaps_port,
            conf,
            master: Some(master),
        };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> Result<(), StartError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(child) = self.master.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.master = None;
                return Err(StartError::Failed(format!(
                    "dovecot exited ({status}): {}",
                    self.logs()
                )));
            }
            if TcpStream::connect(("127.0.0.1", self.imap_port)).is_ok()
                && TcpStream::connect(("127.0.0.1", self.imaps_port)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(StartError::Failed(format!(
                    "dovecot did not listen within 20 s: {}",
                    self.logs()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The startup and server logs, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for f in ["log/startup.log", "log/dovecot.log"] {
            if let Ok(t) = std::fs::read_to_string(self.dir.path().join(f)) {
                s.push_str(&t);
            }
        }
        s
    }

    /// The plain IMAP port (STARTTLS is offered on it).
    pub fn imap_port(&self) -> u16 {
        self.imap_port
    }

    /// The implicit-TLS IMAP port.
    pub fn imaps_port(&self) -> u16 {
        self.imaps_port
    }

    /// The self-signed server certificate in PEM, usable as a CA file.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.path().join("tls/server.crt")
    }

    /// The server certificate's SHA-256 digest of its DER form, lowercase hex, no colons.
    pub fn cert_sha256_fingerprint(&self) -> Result<String, StartError> {
        self.cert_fingerprint("sha256")
    }

    /// The server certificate's digest with an openssl digest name (`sha1`, `sha512`…),
    /// lowercase hex with no colons, as OfflineIMAP's `cert_fingerprint` takes it.
    pub fn cert_fingerprint(&self, digest: &str) -> Result<String, StartError> {
        let out = run(
            Command::new("openssl")
                .args(["x509", "-noout", "-fingerprint"])
                .arg(format!("-{digest}"))
                .arg("-in")
                .arg(self.ca_cert_path()),
            "openssl x509 -fingerprint",
        )?;
        let text = String::from_utf8_lossy(&out);
        let hex = text
            .trim()
            .rsplit('=')
            .next()
            .unwrap_or_default()
            .replace(':', "")
            .to_ascii_lowercase();
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(StartError::Failed(format!(
                "unexpected openssl output: {text}"
            )));
        }
        Ok(hex)
    }

    /// The generated dovecot.conf.
    pub fn config_path(&self) -> &Path {
        &self.conf
    }

    /// The server-side Maildir of a user.
    pub fn maildir_of(&self, user: &str) -> PathBuf {
        self.dir.path().join("mail").join(user).join("Maildir")
    }

    /// A shell command that gives a PREAUTH IMAP session for `user` on its stdin/stdout
    /// (OfflineIMAP's `preauthtunnel`). The imap binary refuses to run as root on a
    /// socket, so it is started as the mail owner.
    pub fn preauth_command(&self, user: &str) -> String {
        format!(
            "setpriv --reuid={MAIL_OWNER} --regid={MAIL_GROUP} --clear-groups doveadm -c {} exec imap -u {user} 2>>{}",
            self.conf.display(),
            self.dir.path().join("log/preauth.log").display()
        )
    }

    fn doveadm(&self) -> Command {
        let mut c = Command::new("doveadm");
        // date.received is printed in local time; pin it so parsing it as UTC is right.
        c.env("TZ", "UTC").arg("-c").arg(&self.conf);
        c
    }

    /// Replaces the global ACL file of a server started with
    /// [`DovecotOptions::global_acl`].
    pub fn set_global_acl(&self, text: &str) -> Result<(), StartError> {
        std::fs::write(self.dir.path().join("global-acl"), text)?;
        Ok(())
    }

    /// Creates a mailbox for a user.
    pub fn create_mailbox(&self, user: &str, mailbox: &str) -> Result<(), StartError> {
        run(
            self.doveadm()
                .args(["mailbox", "create", "-u", user, "--"])
                .arg(mailbox),
            "doveadm mailbox create",
        )
        .map(|_| ())
    }

    /// The user's mailboxes, as the server names them.
    pub fn mailboxes(&self, user: &str) -> Result<Vec<String>, StartError> {
        let out = run(
            self.doveadm().args(["mailbox", "list", "-u", user]),
            "doveadm mailbox list",
        )?;
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect())
    }

    /// Stores a message into a user's mailbox (which must exist, except INBOX) without
    /// going through IMAP, and returns its UID.
    pub fn put_message(
        &self,
        user: &str,
        mailbox: &str,
        message: &[u8],
    ) -> Result<u32, StartError> {
        let before = self.max_uid(user, mailbox)?;
        let mut child = self
            .doveadm()
            .args(["save", "-u", user, "-m", mailbox])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(message)?;
        }
        let out = child.wait_with_output()?;
        if !out.status.success() {
            return Err(StartError::Failed(format!(
                "doveadm save failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let after = self.max_uid(user, mailbox)?;
        if after <= before {
            return Err(StartError::Failed("doveadm save stored nothing".into()));
        }
        Ok(after)
    }

    fn max_uid(&self, user: &str, mailbox: &str) -> Result<u32, StartError> {
        Ok(self
            .messages(user, mailbox)?
            .iter()
            .map(|m| m.uid)
            .max()
            .unwrap_or(0))
    }

    /// Adds flags (IMAP names) to one message.
    pub fn add_flags(
        &self,
        user: &str,
        mailbox: &str,
        uid: u32,
        flags: &[&str],
    ) -> Result<(), StartError> {
        run(
            self.doveadm()
                .args(["flags", "add", "-u", user])
                .arg(flags.join(" "))
                .args(["mailbox", mailbox, "uid", &uid.to_string()]),
            "doveadm flags add",
        )
        .map(|_| ())
    }

    /// Every message of a mailbox as the server holds it (expunged ones are gone; messages
    /// only marked `\Deleted` are still listed), in UID order.
    pub fn messages(&self, user: &str, mailbox: &str) -> Result<Vec<ServerMessage>, StartError> {
        // The pager format separates records with a form feed line, and each field is
        // `name: value`; `text` is last and runs to the end of its record.
        let out = run(
            self.doveadm()
                .args(["-f", "pager", "fetch", "-u", user])
                .arg("uid flags date.received text")
                .args(["mailbox", mailbox]),
            "doveadm fetch",
        )?;
        parse_pager(&out)
    }
}

/// Parses `doveadm -f pager fetch 'uid flags date.received text'` output.
fn parse_pager(out: &[u8]) -> Result<Vec<ServerMessage>, StartError> {
    let mut msgs = Vec::new();
    // Records are joined by "\x0c\n"; a form feed alone may occur inside a message.
    let mut records = Vec::new();
    let mut start = 0;
    let sep = b"\x0c\nuid: ";
    let mut i = 0;
    while i + sep.len() <= out.len() {
        if &out[i..i + sep.len()] == sep {
            records.push(&out[start..i]);
            start = i + 2;
            i = start;
        } else {
            i += 1;
        }
    }
    records.push(&out[start..]);
    for record in records {
        if record.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let mut uid = None;
        let mut flags = Vec::new();
        let mut internal_date = None;
        let mut body = Vec::new();
        let mut rest = record;
        while !rest.is_empty() {
            let (line, next) = match rest.iter().position(|&b| b == b'\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &rest[rest.len()..]),
            };
            if line.starts_with(b"text:") {
                body = next.to_vec();
                break;
            }
            let line = String::from_utf8_lossy(line);
            if let Some(v) = line.strip_prefix("uid: ") {
                uid = v.trim().parse::<u32>().ok();
            } else if let Some(v) = line.strip_prefix("flags:") {
                // \Recent belongs to the session that looked first, not to the message.
                flags = v
                    .split_whitespace()
                    .filter(|f| !f.eq_ignore_ascii_case("\\Recent"))
                    .map(str::to_string)
                    .collect();
            } else if let Some(v) = line.strip_prefix("date.received: ") {
                internal_date = parse_dovecot_date(v.trim());
            }
            rest = next;
        }
        let uid = uid.ok_or_else(|| {
            StartError::Failed(format!(
                "doveadm fetch record without uid: {}",
                String::from_utf8_lossy(record)
            ))
        })?;
        msgs.push(ServerMessage {
            uid,
            flags,
            internal_date,
            body,
        });
    }
    msgs.sort_by_key(|m| m.uid);
    Ok(msgs)
}

/// `date.received` is printed as `YYYY-MM-DD HH:MM:SS` (in UTC, as we run doveadm with TZ=UTC).
fn parse_dovecot_date(s: &str) -> Option<i64> {
    let (d, t) = s.split_once(' ')?;
    let mut dp = d.split('-').map(|x| x.parse::<i64>());
    let (y, m, day) = (dp.next()?.ok()?, dp.next()?.ok()?, dp.next()?.ok()?);
    let mut tp = t.split(':').map(|x| x.parse::<i64>());
    let (hh, mm, ss) = (tp.next()?.ok()?, tp.next()?.ok()?, tp.next()?.ok()?);
    Some(days_from_civil(y, m, day) * 86400 + hh * 3600 + mm * 60 + ss)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let Some(mut child) = self.master.take() else {
            return;
        };
        // SIGTERM lets the master stop its auth/login children; SIGKILL would orphan them.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pager_output_is_parsed() {
        let out = b"uid: 1\nflags: \\Seen $Forwarded\ndate.received: 2024-02-29 12:00:01\ntext:\nSubject: a\n\nbody\x0c\n\x0c\nuid: 3\nflags: \ndate.received: 1970-01-01 00:00:10\ntext:\nX: y\n\n";
        assert_eq!(parse_pager(b"").unwrap(), vec![]);
        let m = parse_pager(out).unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].uid, 1);
        assert!(m[0].has_flag("\\seen"));
        assert_eq!(m[0].flags.len(), 2);
        assert_eq!(m[0].internal_date, Some(1709208001));
        assert_eq!(m[0].body, b"Subject: a\n\nbody\x0c\n");
        assert_eq!(m[1].uid, 3);
        assert!(m[1].flags.is_empty());
        assert_eq!(m[1].internal_date, Some(10));
    }

    #[test]
    fn server_round_trip() {
        let Some(d) = Dovecot::start_or_skip("server_round_trip") else {
            return;
        };
        d.create_mailbox("alice", "Work").unwrap();
        let uid = d
            .put_message("alice", "Work", b"Subject: hi\r\n\r\nhello\r\n")
            .unwrap();
        d.add_flags("alice", "Work", uid, &["\\Seen", "\\Flagged"])
            .unwrap();
        let msgs = d.messages("alice", "Work").unwrap();
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert_eq!(msgs[0].uid, uid);
        assert!(msgs[0].has_flag("\\Seen") && msgs[0].has_flag("\\Flagged"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let date = msgs[0].internal_date.unwrap();
        assert!((now - date).abs() < 3600, "{date} vs {now}");
        // Dovecot's Maildir keeps LF line ends; IMAP turns them back into CRLF.
        assert_eq!(msgs[0].body, b"Subject: hi\n\nhello\n");
        assert!(!msgs[0].has_flag("\\Recent"));
        assert!(
            String::from_utf8_lossy(&msgs[0].body).contains("hello"),
            "{msgs:?}"
        );
        assert!(d.mailboxes("alice").unwrap().contains(&"Work".to_string()));
        assert!(d.cert_sha256_fingerprint().unwrap().len() == 64);
        // The preauth tunnel greets with PREAUTH.
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("echo 'a LOGOUT' | {}", d.preauth_command("bob")))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.starts_with("* PREAUTH"), "{text}");
        assert!(d.maildir_of("alice").join("cur").exists() || d.maildir_of("alice").exists());
    }
}
