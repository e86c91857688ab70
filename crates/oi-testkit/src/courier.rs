//! A private Courier IMAP, over TCP with LOGIN and through a preauth tunnel.
//!
//! Courier's `imapd` is the post-login half of the server: started with `AUTHENTICATED`
//! set, in the user's home, with the Maildir as its argument, it greets `* PREAUTH` and
//! speaks IMAP on stdin/stdout. That is exactly OfflineIMAP's `preauthtunnel` (and how
//! people tunnel Courier over ssh); [`Courier::preauth_command`] gives it.
//!
//! Over TCP, `couriertcpd` runs `imaplogin`, which asks `authdaemond` and then execs
//! `imapd`. authdaemond's configuration (`/etc/courier`) and socket directory
//! (`/run/courier/authdaemon`) are compiled in, so the whole TCP server runs in a private
//! mount namespace (`unshare --mount`) where both are bind mounts of directories of this
//! instance, with a private `authuserdb`: the system's files and any system authdaemond
//! are never touched. The process group is killed when the server is dropped.
//! The environment mirrors the `/etc/courier/imapd` that the package ships.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::packages::{package_file, under_ci};
use crate::script::{Script, quote};
use crate::{ServerMessage, StartError, USERS, free_port};

/// The capabilities Debian's `/etc/courier/imapd` advertises.
const CAPABILITY: &str =
    "IMAP4rev1 UIDPLUS CHILDREN NAMESPACE THREAD=ORDEREDSUBJECT THREAD=REFERENCES SORT QUOTA IDLE";

/// A private Courier IMAP: one Maildir per test user, served over TCP and by tunnels.
#[derive(Debug)]
pub struct Courier {
    dir: tempfile::TempDir,
    port: u16,
    /// `unshare` running authdaemond and couriertcpd, leader of its own process group.
    tcp: Option<Child>,
}

/// The `IMAP_*` settings of Debian's `/etc/courier/imapd`, as `env` arguments.
fn imap_env(root: &str, capability: &str) -> String {
    format!(
        "IMAP_CAPABILITY='{capability}' IMAP_KEYWORDS=1 IMAP_ACL=1 IMAP_USELOCKS=1 \\
  IMAP_IDLE_TIMEOUT=60 IMAP_MAILBOX_SANITY_CHECK=1 IMAP_DISABLETHREADSORT=0 \\
  IMAP_CHECK_ALL_FOLDERS=0 IMAP_OBSOLETE_CLIENT=0 IMAP_UMASK=022 IMAP_ENHANCEDIDLE=0 \\
  IMAP_SHAREDINDEXFILE='{root}/shared/index' IMAP_TRASHFOLDERNAME=Trash \\
  IMAP_EMPTYTRASH=Trash:7 IMAP_MOVE_EXPUNGE_TO_TRASH=0"
    )
}

impl Courier {
    /// Sets a server up, or prints a loud `SKIPPED` line and returns `None` when Courier is
    /// not available. Under CI (`CI=true`) a missing Courier panics, as does any other
    /// failure.
    pub fn start_or_skip(test: &str) -> Option<Courier> {
        Courier::start_or_skip_with(test, true)
    }

    /// Like [`Courier::start_or_skip`], choosing whether `UIDPLUS` is advertised: without
    /// it a client must find appended messages by a header search.
    pub fn start_or_skip_with(test: &str, uidplus: bool) -> Option<Courier> {
        match Courier::start(uidplus) {
            Ok(c) => Some(c),
            Err(StartError::NotInstalled) if !under_ci() => {
                eprintln!(
                    "SKIPPED: {test}: Courier IMAP not available (apt-get install courier-base; courier-imap is unpacked by the test)"
                );
                None
            }
            Err(StartError::NotInstalled) => panic!(
                "{test}: Courier IMAP is not installed, and CI=true: apt-get install courier-base"
            ),
            Err(e) => panic!("{test}: could not set up Courier IMAP: {e}"),
        }
    }

    /// Makes the users' Maildirs and the tunnel script, and checks that a tunnel greets.
    pub fn start(uidplus: bool) -> Result<Courier, StartError> {
        // Its libraries come with courier-base (libcourier-unicode, gdbm, idn, gamin).
        if !PathBuf::from("/usr/sbin/couriertcpd").exists() {
            return Err(StartError::NotInstalled);
        }
        let imapd = match package_file("courier-imap", "usr/bin/imapd") {
            Ok(p) => p,
            Err(e) if !under_ci() => {
                eprintln!("courier-imap could not be unpacked: {e}");
                return Err(StartError::NotInstalled);
            }
            Err(e) => return Err(e),
        };
        let dir = tempfile::Builder::new().prefix("oi-courier.").tempdir()?;
        let root = dir.path().to_path_buf();
        std::fs::create_dir(root.join("log"))?;
        std::fs::create_dir(root.join("shared"))?;
        for (user, _) in USERS {
            for sub in ["cur", "new", "tmp"] {
                std::fs::create_dir_all(root.join("home").join(user).join("Maildir").join(sub))?;
            }
        }
        let capability = if uidplus {
            CAPABILITY.to_string()
        } else {
            CAPABILITY.replace(" UIDPLUS", "")
        };
        let r = root.display().to_string();
        let env = imap_env(&r, &capability);
        let script = format!(
            "#!/bin/sh
# Preauth tunnel to a private Courier IMAP, written by oi-testkit. Usage: imapd.sh USER
cd '{r}/home/'\"$1\" || exit 1
exec env -i PATH=/usr/bin:/bin HOME='{r}/home/'\"$1\" AUTHENTICATED=\"$1\" \\
  {env} \\
  '{imapd}' Maildir 2>>'{r}/log/imapd.log'
",
            imapd = imapd.display()
        );
        std::fs::write(root.join("imapd.sh"), script)?;

        let imaplogin = package_file("courier-imap", "usr/lib/courier/courier/imaplogin")?;
        std::fs::create_dir(root.join("etc"))?;
        std::fs::create_dir(root.join("authrun"))?;
        std::fs::write(
            root.join("etc/authdaemonrc"),
            "authmodulelist=\"authuserdb\"\ndaemons=1\nauthdaemonvar=/run/courier/authdaemon\nDEBUG_LOGIN=0\nDEFAULTOPTIONS=\"\"\nLOGGEROPTS=\"\"\n",
        )?;
        let mut users = String::new();
        for (user, pass) in USERS {
            users.push_str(&format!(
                "userdb {user} set home='{r}/home/{user}' mail='{r}/home/{user}/Maildir' uid=0 gid=0 systempw=\"$(echo '{pass}' | userdbpw -md5)\"\n"
            ));
        }
        let port = free_port()?;
        let tcp_script = format!(
            "#!/bin/sh
# Private Courier IMAP over TCP, written by oi-testkit; runs inside `unshare --mount`.
set -e
PATH=/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p /etc/courier /run/courier/authdaemon
mount --bind '{r}/etc' /etc/courier
mount --bind '{r}/authrun' /run/courier/authdaemon
{users}makeuserdb
/usr/lib/courier/courier-authlib/authdaemond 2>>'{r}/log/authdaemond.log' &
exec env -i PATH=/usr/bin:/bin:/usr/sbin \\
  {env} \\
  /usr/sbin/couriertcpd -address=127.0.0.1 -nodnslookup -noidentlookup \\
  -stderr='{r}/log/imapd.log' {port} '{imaplogin}' '{imapd}' Maildir
",
            imaplogin = imaplogin.display(),
            imapd = imapd.display()
        );
        std::fs::write(root.join("tcp.sh"), tcp_script)?;
        let log = std::fs::File::create(root.join("log/tcp.log"))?;
        let tcp = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh"])
            .arg(root.join("tcp.sh"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own group, so Drop can stop authdaemond and every session with it.
            .process_group(0)
            .spawn()?;
        let mut server = Courier {
            dir,
            port,
            tcp: Some(tcp),
        };
        server.wait_ready()?;
        // Fail here, with the log, rather than in the middle of a test.
        let s = server.session(USERS[0].0)?;
        if !s.greeting.starts_with("* PREAUTH") {
            return Err(StartError::Failed(format!(
                "Courier did not greet PREAUTH: {} {}",
                s.greeting,
                server.logs()
            )));
        }
        s.logout()?;
        Ok(server)
    }

    /// Waits until a LOGIN over TCP works (authdaemond comes up after the port).
    fn wait_ready(&mut self) -> Result<(), StartError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(child) = self.tcp.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.tcp = None;
                return Err(StartError::Failed(format!(
                    "Courier TCP server exited ({status}): {}",
                    self.logs()
                )));
            }
            let login = TcpStream::connect(("127.0.0.1", self.port))
                .is_ok()
                .then(|| self.tcp_session(USERS[0].0))
                .and_then(Result::ok);
            if let Some(s) = login {
                return s.logout();
            }
            if Instant::now() > deadline {
                return Err(StartError::Failed(format!(
                    "Courier did not accept a LOGIN within 20 s: {}",
                    self.logs()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The plain IMAP port (LOGIN with the [`USERS`] passwords; no TLS).
    pub fn imap_port(&self) -> u16 {
        self.port
    }

    /// A scripted session over TCP, logged in as `user` with LOGIN.
    pub fn tcp_session(&self, user: &str) -> Result<Script, StartError> {
        let pass = USERS
            .iter()
            .find(|(u, _)| *u == user)
            .map(|(_, p)| *p)
            .ok_or_else(|| StartError::Failed(format!("unknown test user {user}")))?;
        let mut s = Script::tcp(self.port)?;
        s.login(user, pass)?;
        Ok(s)
    }

    /// The shell command for OfflineIMAP's `preauthtunnel` giving `user` a session.
    pub fn preauth_command(&self, user: &str) -> String {
        format!(
            "sh '{}' '{user}'",
            self.dir.path().join("imapd.sh").display()
        )
    }

    /// The server's logs (imapd, couriertcpd, authdaemond, the namespace script).
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for f in ["log/tcp.log", "log/authdaemond.log", "log/imapd.log"] {
            if let Ok(t) = std::fs::read_to_string(self.dir.path().join(f)) {
                s.push_str(&t);
            }
        }
        s
    }

    /// The hierarchy delimiter; folders live under `INBOX.`.
    pub fn separator(&self) -> char {
        '.'
    }

    /// The user's Maildir on disk.
    pub fn maildir_of(&self, user: &str) -> PathBuf {
        self.dir.path().join("home").join(user).join("Maildir")
    }

    /// A scripted session as `user`, through its own tunnel process.
    pub fn session(&self, user: &str) -> Result<Script, StartError> {
        if !USERS.iter().any(|(u, _)| *u == user) {
            return Err(StartError::Failed(format!("unknown test user {user}")));
        }
        let child = Command::new("sh")
            .arg("-c")
            .arg(self.preauth_command(user))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        Script::child(child)
    }

    /// Creates a mailbox (a full name such as `INBOX.Work`).
    pub fn create_mailbox(&self, user: &str, mailbox: &str) -> Result<(), StartError> {
        let mut s = self.session(user)?;
        s.cmd(&format!("CREATE {}", quote(mailbox)))?;
        s.logout()
    }

    /// The user's mailboxes, as LIST names them.
    pub fn mailboxes(&self, user: &str) -> Result<Vec<String>, StartError> {
        let mut s = self.session(user)?;
        let v = s.list()?;
        s.logout()?;
        Ok(v)
    }

    /// APPENDs a message with flags outside our client and returns its UID.
    pub fn put_message(
        &self,
        user: &str,
        mailbox: &str,
        flags: &[&str],
        message: &[u8],
    ) -> Result<u32, StartError> {
        let mut s = self.session(user)?;
        let uid = s.append(mailbox, flags, message)?;
        s.logout()?;
        uid.ok_or_else(|| StartError::Failed("APPEND gave no new UID".into()))
    }

    /// Every message of a mailbox, in UID order (`\Deleted` ones included until expunged).
    pub fn messages(&self, user: &str, mailbox: &str) -> Result<Vec<ServerMessage>, StartError> {
        let mut s = self.session(user)?;
        let v = s.messages(mailbox)?;
        s.logout()?;
        Ok(v)
    }
}

impl Drop for Courier {
    fn drop(&mut self) {
        let Some(mut child) = self.tcp.take() else {
            return;
        };
        // The negative pid addresses the group: couriertcpd, authdaemond, imapd sessions.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg("--")
            .arg(format!("-{}", child.id()))
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = Command::new("kill")
                        .arg("-KILL")
                        .arg("--")
                        .arg(format!("-{}", child.id()))
                        .status();
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
    fn courier_round_trip() {
        let Some(c) = Courier::start_or_skip("courier_round_trip") else {
            return;
        };
        c.create_mailbox("alice", "INBOX.Work").unwrap();
        let names = c.mailboxes("alice").unwrap();
        assert!(names.contains(&"INBOX.Work".to_string()), "{names:?}");
        let uid = c
            .put_message(
                "alice",
                "INBOX.Work",
                &["\\Flagged"],
                b"Subject: hi\r\n\r\nhello\r\n",
            )
            .unwrap();
        let msgs = c.messages("alice", "INBOX.Work").unwrap();
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert_eq!(msgs[0].uid, uid);
        assert!(msgs[0].has_flag("\\Flagged") && !msgs[0].has_flag("\\Seen"));
        assert_eq!(msgs[0].body, b"Subject: hi\r\n\r\nhello\r\n");
        assert!(c.maildir_of("alice").join(".Work").exists());
        assert!(
            !c.mailboxes("bob")
                .unwrap()
                .contains(&"INBOX.Work".to_string())
        );
        assert!(c.session("mallory").is_err());
        // The same Maildirs over TCP with LOGIN; a wrong password is refused.
        let mut t = c.tcp_session("alice").unwrap();
        assert!(t.list().unwrap().contains(&"INBOX.Work".to_string()));
        t.logout().unwrap();
        let mut t = Script::tcp(c.imap_port()).unwrap();
        assert!(t.login("alice", "wrong").is_err());
    }
}
