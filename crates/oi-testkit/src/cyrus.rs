//! A private Cyrus IMAP on 127.0.0.1.
//!
//! Layout, made fresh in a temporary directory owned by the `cyrus` user: `imapd.conf`
//! (config directory, one partition, sasldb authentication with plaintext allowed),
//! `cyrus.conf` (one `imap` service on a random port), the `mkimap` directories, and a
//! private sasldb written with `saslpasswd2 -f`. `cyrmaster -D` (Debian's name for
//! `master`) runs in the foreground as our child; it drops to the `cyrus` user itself.
//! The users' INBOXes are created by the `cyrus` admin over IMAP. Cyrus 3 defaults to
//! `unixhierarchysep: yes` and `altnamespace: yes`, so users see `/` as the delimiter and
//! their folders at the top level, beside `INBOX`.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::packages::{package_file, under_ci};
use crate::script::{Script, quote};
use crate::{ServerMessage, StartError, USERS, free_port, run};

/// The admin account of every test Cyrus.
const ADMIN: (&str, &str) = ("cyrus", "cyrusadminpass");

/// A private Cyrus IMAP server, stopped when dropped.
#[derive(Debug)]
pub struct Cyrus {
    dir: tempfile::TempDir,
    port: u16,
    master: Option<Child>,
}

impl Cyrus {
    /// Starts a server, or prints a loud `SKIPPED` line and returns `None` when Cyrus is
    /// not available. Under CI (`CI=true`) a missing Cyrus panics, as does any other
    /// start failure.
    pub fn start_or_skip(test: &str) -> Option<Cyrus> {
        match Cyrus::start() {
            Ok(c) => Some(c),
            Err(StartError::NotInstalled) if !under_ci() => {
                eprintln!(
                    "SKIPPED: {test}: Cyrus IMAP not available (apt-get install cyrus-common sasl2-bin; cyrus-imapd is unpacked by the test)"
                );
                None
            }
            Err(StartError::NotInstalled) => panic!(
                "{test}: Cyrus IMAP is not installed, and CI=true: apt-get install cyrus-common sasl2-bin"
            ),
            Err(e) => panic!("{test}: could not start Cyrus IMAP: {e}"),
        }
    }

    /// Starts a server with the users of [`USERS`] and waits until it serves IMAP.
    pub fn start() -> Result<Cyrus, StartError> {
        let master_bin = PathBuf::from("/usr/sbin/cyrmaster");
        let saslpasswd = PathBuf::from("/usr/sbin/saslpasswd2");
        let ctl = PathBuf::from("/usr/lib/cyrus/bin/ctl_cyrusdb");
        if !master_bin.exists() || !saslpasswd.exists() || !ctl.exists() {
            return Err(StartError::NotInstalled);
        }
        let imapd = match package_file("cyrus-imapd", "usr/lib/cyrus/bin/imapd") {
            Ok(p) => p,
            // Without the package lists or network, outside CI, this is "not available".
            Err(e) if !under_ci() => {
                eprintln!("cyrus-imapd could not be unpacked: {e}");
                return Err(StartError::NotInstalled);
            }
            Err(e) => return Err(e),
        };
        let dir = tempfile::Builder::new().prefix("oi-cyrus.").tempdir()?;
        let root = dir.path().to_path_buf();
        crate::chmod(&root, "a+x")?;
        let conf = root.join("conf");
        for sub in [
            "db", "log", "msg", "proc", "ptclient", "quota", "socket", "user", "sieve", "lock",
        ] {
            std::fs::create_dir_all(conf.join(sub))?;
        }
        std::fs::create_dir(root.join("part"))?;
        std::fs::create_dir(root.join("run"))?;
        let port = free_port()?;
        let r = root.display();
        let imapd_conf = root.join("imapd.conf");
        std::fs::write(
            &imapd_conf,
            format!(
                "# Private Cyrus for one offlineimap test, written by oi-testkit.
configdirectory: {r}/conf
partition-default: {r}/part
admins: {admin}
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {r}/sasldb2
sasl_mech_list: PLAIN LOGIN
allowplaintext: yes
virtdomains: no
syslog_prefix: oitest-cyrus-{port}
idlesocket: {r}/conf/socket/idle
notifysocket: {r}/conf/socket/notify
lmtpsocket: {r}/conf/socket/lmtp
mboxname_lockpath: {r}/conf/lock
",
                admin = ADMIN.0
            ),
        )?;
        std::fs::write(
            root.join("cyrus.conf"),
            format!(
                "START {{
  recover cmd=\"{ctl} -C {r}/imapd.conf -r\"
}}
SERVICES {{
  imap cmd=\"{imapd} -C {r}/imapd.conf\" listen=\"127.0.0.1:{port}\" prefork=0
}}
EVENTS {{
}}
",
                ctl = ctl.display(),
                imapd = imapd.display()
            ),
        )?;
        let sasldb = root.join("sasldb2");
        for (user, pass) in USERS.iter().copied().chain([ADMIN]) {
            let mut child = Command::new(&saslpasswd)
                .arg("-f")
                .arg(&sasldb)
                .args(["-p", "-c", user])
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()?;
            if let Some(mut stdin) = child.stdin.take() {
                std::io::Write::write_all(&mut stdin, pass.as_bytes())?;
            }
            let out = child.wait_with_output()?;
            if !out.status.success() {
                return Err(StartError::Failed(format!(
                    "saslpasswd2 failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
        }
        run(
            Command::new("chown").arg("-R").arg("cyrus:mail").arg(&root),
            "chown cyrus",
        )?;
        let log = std::fs::File::create(root.join("master.log"))?;
        let master = Command::new(&master_bin)
            .arg("-C")
            .arg(&imapd_conf)
            .arg("-M")
            .arg(root.join("cyrus.conf"))
            .arg("-p")
            .arg(root.join("run/master.pid"))
            .arg("-D")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let mut server = Cyrus {
            dir,
            port,
            master: Some(master),
        };
        server.wait_ready()?;
        let mut admin = server.session_as(ADMIN.0, ADMIN.1)?;
        for (user, _) in USERS {
            admin.cmd(&format!("CREATE {}", quote(&format!("user/{user}"))))?;
        }
        admin.logout()?;
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
                    "cyrmaster exited ({status}): {}",
                    self.logs()
                )));
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(StartError::Failed(format!(
                    "Cyrus did not listen within 20 s: {}",
                    self.logs()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The master's output (Cyrus itself logs to syslog).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("master.log")).unwrap_or_default()
    }

    /// The plain IMAP port (no TLS is configured).
    pub fn imap_port(&self) -> u16 {
        self.port
    }

    /// The hierarchy delimiter users see.
    pub fn separator(&self) -> char {
        '/'
    }

    /// A scripted session logged in as `user` (one of [`USERS`]).
    pub fn session(&self, user: &str) -> Result<Script, StartError> {
        let pass = USERS
            .iter()
            .find(|(u, _)| *u == user)
            .map(|(_, p)| *p)
            .ok_or_else(|| StartError::Failed(format!("unknown test user {user}")))?;
        self.session_as(user, pass)
    }

    fn session_as(&self, user: &str, pass: &str) -> Result<Script, StartError> {
        let mut s = Script::tcp(self.port)?;
        s.login(user, pass)?;
        Ok(s)
    }

    /// Creates a mailbox for a user.
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

impl Drop for Cyrus {
    fn drop(&mut self) {
        let Some(mut child) = self.master.take() else {
            return;
        };
        // SIGTERM makes the master stop its service processes before it exits.
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
    fn cyrus_round_trip() {
        let Some(c) = Cyrus::start_or_skip("cyrus_round_trip") else {
            return;
        };
        c.create_mailbox("alice", "Work").unwrap();
        let names = c.mailboxes("alice").unwrap();
        assert!(names.contains(&"INBOX".to_string()), "{names:?}");
        assert!(names.contains(&"Work".to_string()), "{names:?}");
        let uid = c
            .put_message(
                "alice",
                "Work",
                &["\\Seen"],
                b"Subject: hi\r\n\r\nhello\r\n",
            )
            .unwrap();
        let msgs = c.messages("alice", "Work").unwrap();
        assert_eq!(msgs.len(), 1, "{msgs:?}");
        assert_eq!(msgs[0].uid, uid);
        assert!(msgs[0].has_flag("\\Seen"));
        assert_eq!(msgs[0].body, b"Subject: hi\r\n\r\nhello\r\n");
        assert!(msgs[0].internal_date.is_some());
        // bob cannot see alice's folders.
        assert!(
            !c.mailboxes("bob")
                .unwrap()
                .iter()
                .any(|m| m.contains("Work"))
        );
        assert!(c.session("mallory").is_err());
    }
}
