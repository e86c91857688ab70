//! Shared set-up: a Dovecot, a scratch home, a config, and readers of both sides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use oi_testkit::Dovecot;

/// A test world: one server, one scratch directory with the Maildir and metadata.
pub struct World {
    pub server: Dovecot,
    pub dir: tempfile::TempDir,
}

pub const USER: &str = "alice";
pub const PASS: &str = "alicepass";

impl World {
    /// Starts a server; `None` (after a loud SKIPPED line) when Dovecot is missing outside CI.
    pub fn new(test: &str) -> Option<World> {
        let server = Dovecot::start_or_skip(test)?;
        let dir = tempfile::tempdir().unwrap();
        Some(World { server, dir })
    }

    /// [`World::new`] with a server started with `options`.
    pub fn with_options(test: &str, options: &oi_testkit::DovecotOptions) -> Option<World> {
        let server = Dovecot::start_or_skip_with(test, options)?;
        let dir = tempfile::tempdir().unwrap();
        Some(World { server, dir })
    }

    pub fn maildir(&self) -> PathBuf {
        self.dir.path().join("Mail")
    }

    pub fn metadata(&self) -> PathBuf {
        self.dir.path().join("meta")
    }

    pub fn rc(&self) -> PathBuf {
        self.dir.path().join("offlineimaprc")
    }

    /// Writes a config for a plain-text connection; `extra_remote` / `extra_local` are added
    /// to the repository sections.
    pub fn write_config(&self, extra_remote: &str, extra_local: &str) {
        let text = format!(
            "[general]\naccounts = Test\nmetadata = {meta}\n\n\
             [Account Test]\nlocalrepository = Local\nremoterepository = Remote\n\n\
             [Repository Local]\ntype = Maildir\nlocalfolders = {mail}\n{extra_local}\n\n\
             [Repository Remote]\ntype = IMAP\nremotehost = 127.0.0.1\nremoteport = {port}\n\
             remoteuser = {USER}\nremotepass = {PASS}\nssl = no\nstarttls = no\n{extra_remote}\n",
            meta = self.metadata().display(),
            mail = self.maildir().display(),
            port = self.server.imap_port(),
        );
        std::fs::write(self.rc(), text).unwrap();
    }

    /// Writes an IMAP ↔ IMAP config: the user bob's account as the local repository, this
    /// world's user as the remote one, each line group (`account`, `local`, `remote`) added
    /// to its section as given (end each line with `\n`).
    pub fn write_imap_to_imap_config(&self, account: &str, local: &str, remote: &str) {
        let text = format!(
            "[general]\naccounts = Test\nmetadata = {meta}\n\n\
             [Account Test]\nlocalrepository = Bob\nremoterepository = Remote\n{account}\n\
             [Repository Bob]\ntype = IMAP\nremotehost = 127.0.0.1\nremoteport = {port}\n\
             remoteuser = bob\nremotepass = bobpass\nssl = no\nstarttls = no\n{local}\n\
             [Repository Remote]\ntype = IMAP\nremotehost = 127.0.0.1\nremoteport = {port}\n\
             remoteuser = {USER}\nremotepass = {PASS}\nssl = no\nstarttls = no\n{remote}",
            meta = self.metadata().display(),
            port = self.server.imap_port(),
        );
        std::fs::write(self.rc(), text).unwrap();
    }

    /// The binary with `-c rc` in this world's cleared environment ([`offlineimap`]); the
    /// caller adds flags, environment and stdio.
    pub fn command(&self) -> Command {
        offlineimap(self.dir.path(), &self.rc())
    }

    /// Runs the binary with `-c rc -o -u basic` and the given extra flags, in a cleared
    /// environment (no user config is read).
    pub fn run(&self, extra: &[&str]) -> Output {
        self.command()
            .args(["-o", "-u", "basic"])
            .args(extra)
            .output()
            .unwrap()
    }

    /// Runs and asserts success, returning stderr.
    pub fn sync_ok(&self) -> String {
        let out = self.run(&[]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.success(),
            "sync failed ({}):\n{err}\n{}",
            out.status,
            self.server.logs()
        );
        err
    }

    /// `doveadm` against the test server.
    pub fn doveadm(&self, args: &[&str]) -> String {
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(self.server.config_path())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "doveadm {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Expunges a message on the server (`doveadm expunge`).
    pub fn expunge(&self, mailbox: &str, uid: u32) {
        self.doveadm(&[
            "expunge",
            "-u",
            USER,
            "mailbox",
            mailbox,
            "uid",
            &uid.to_string(),
        ]);
    }

    pub fn put(&self, mailbox: &str, subject: &str) -> u32 {
        self.server
            .put_message(USER, mailbox, message(subject).as_bytes())
            .unwrap()
    }

    /// The server's messages of a mailbox: UID → (Subject, flags).
    pub fn server_messages(&self, mailbox: &str) -> BTreeMap<u32, (String, Vec<String>)> {
        self.server
            .messages(USER, mailbox)
            .unwrap()
            .into_iter()
            .map(|m| {
                let mut flags = m.flags.clone();
                flags.retain(|f| f != "\\Recent");
                flags.sort();
                (m.uid, (subject_of(&m.body), flags))
            })
            .collect()
    }
}

/// `program -c rc` in a cleared environment: PATH kept, HOME set to `home` (so no user
/// config is read); the caller adds flags, environment and stdio.
pub fn isolated(program: impl AsRef<std::ffi::OsStr>, home: &Path, rc: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .arg("-c")
        .arg(rc);
    cmd
}

/// The binary under test, [`isolated`].
pub fn offlineimap(home: &Path, rc: &Path) -> Command {
    isolated(env!("CARGO_BIN_EXE_offlineimap"), home, rc)
}

/// Creates a Maildir folder (its cur, new and tmp) with any missing parents.
pub fn create_maildir(folder: &Path) {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(folder.join(sub)).unwrap();
    }
}

pub fn message(subject: &str) -> String {
    format!(
        "From: a@example.org\r\nTo: b@example.org\r\nSubject: {subject}\r\n\
         Message-ID: <{}@example.org>\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\nBody of {subject}.\r\n",
        subject.replace(' ', "-")
    )
}

pub fn subject_of(body: &[u8]) -> String {
    String::from_utf8_lossy(body)
        .lines()
        .find_map(|l| l.strip_prefix("Subject: ").map(|s| s.trim().to_string()))
        .unwrap_or_default()
}

/// One local message file.
#[derive(Debug, Clone)]
pub struct LocalMessage {
    pub path: PathBuf,
    pub uid: Option<u32>,
    pub fmd5: Option<String>,
    pub flags: String,
    pub subject: String,
}

/// Every message of a local Maildir folder (cur and new).
pub fn local_messages(folder: &Path) -> Vec<LocalMessage> {
    let mut v = Vec::new();
    for sub in ["cur", "new"] {
        let Ok(rd) = std::fs::read_dir(folder.join(sub)) else {
            continue;
        };
        for e in rd {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let (base, flags) = match name.split_once(":2,") {
                Some((b, f)) => (b.to_string(), f.to_string()),
                None => (name.clone(), String::new()),
            };
            let field = |key: &str| {
                base.split(',')
                    .find_map(|p| p.strip_prefix(key).map(str::to_string))
            };
            let subject = subject_of(&std::fs::read(&path).unwrap());
            v.push(LocalMessage {
                uid: field("U=").and_then(|u| u.parse().ok()),
                fmd5: field("FMD5="),
                path,
                flags,
                subject,
            });
        }
    }
    v.sort_by(|a, b| a.subject.cmp(&b.subject));
    v
}

pub fn md5_hex(s: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import hashlib,sys; print(hashlib.md5(sys.argv[1].encode()).hexdigest())",
            s,
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Renames a local message file to carry other flags (as a mail client would).
pub fn set_local_flags(m: &LocalMessage, flags: &str) {
    let name = m.path.file_name().unwrap().to_string_lossy().to_string();
    let base = name.split(":2,").next().unwrap().to_string();
    let folder = m.path.parent().unwrap().parent().unwrap();
    std::fs::rename(
        &m.path,
        folder.join("cur").join(format!("{base}:2,{flags}")),
    )
    .unwrap();
}

/// A TCP proxy on 127.0.0.1 in front of the test server that a test can break: in
/// `Blackhole` mode it accepts connections and never forwards a byte (a laptop after
/// suspend, a dead NAT entry), and existing connections freeze. Used for the fault tests.
pub struct Proxy {
    pub port: u16,
    mode: std::sync::Arc<std::sync::atomic::AtomicU8>,
}

/// Forward normally.
pub const PROXY_FORWARD: u8 = 0;
/// Accept, then silence.
pub const PROXY_BLACKHOLE: u8 = 1;

impl Proxy {
    pub fn start(target: u16) -> Proxy {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mode = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(PROXY_FORWARD));
        let m = mode.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let m = m.clone();
                std::thread::spawn(move || {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                        return;
                    };
                    let pipe =
                        |mut from: TcpStream,
                         mut to: TcpStream,
                         m: std::sync::Arc<std::sync::atomic::AtomicU8>| {
                            let mut buf = [0u8; 16384];
                            loop {
                                let Ok(n) = from.read(&mut buf) else { return };
                                if n == 0 {
                                    let _ = to.shutdown(std::net::Shutdown::Write);
                                    return;
                                }
                                // Blackholed: swallow everything from now on.
                                if m.load(Ordering::SeqCst) == PROXY_BLACKHOLE {
                                    continue;
                                }
                                if to.write_all(&buf[..n]).is_err() {
                                    return;
                                }
                            }
                        };
                    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                    let m2 = m.clone();
                    std::thread::spawn(move || pipe(s2, c2, m2));
                    pipe(client, server, m);
                });
            }
        });
        Proxy { port, mode }
    }

    pub fn set(&self, mode: u8) {
        self.mode.store(mode, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Asserts that a run changed nothing anywhere, from its end-of-run summary.
pub fn assert_nothing_done(out: &str) {
    assert!(
        out.contains(
            "copied 0 to local, 0 to remote; flags changed on 0 local, 0 remote; deleted 0 local, 0 remote"
        ),
        "the run changed something (or printed no summary):\n{out}"
    );
}

/// APPENDs a message with an INTERNALDATE over IMAP as `user` (doveadm save would date it
/// now); returns the UID from the server's APPENDUID.
pub fn append_dated_as(
    w: &World,
    (user, pass): (&str, &str),
    mailbox: &str,
    subject: &str,
    date: &str,
) -> u32 {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", w.server.imap_port())).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut writer = stream;
    let mut line = String::new();
    let mut read_until = |prefix: &str| -> String {
        loop {
            line.clear();
            assert!(reader.read_line(&mut line).unwrap() > 0, "server closed");
            if line.starts_with(prefix) {
                assert!(!line.contains(" NO ") && !line.contains(" BAD "), "{line}");
                return line.clone();
            }
        }
    };
    read_until("* OK");
    writer
        .write_all(format!("a LOGIN {user} {pass}\r\n").as_bytes())
        .unwrap();
    read_until("a ");
    let body = message(subject);
    writer
        .write_all(format!("b APPEND {mailbox} \"{date}\" {{{}}}\r\n", body.len()).as_bytes())
        .unwrap();
    read_until("+");
    writer.write_all(body.as_bytes()).unwrap();
    writer.write_all(b"\r\n").unwrap();
    // b OK [APPENDUID <validity> <uid>] ...
    let done = read_until("b ");
    writer.write_all(b"c LOGOUT\r\n").unwrap();
    let uid = done
        .split("APPENDUID ")
        .nth(1)
        .and_then(|r| r.split([' ', ']']).nth(1))
        .and_then(|u| u.parse().ok());
    uid.unwrap_or_else(|| panic!("no APPENDUID in {done:?}"))
}
