//! Shared scenarios of the interruption tests (`kill`, `powerloss`, `longrun`): a server
//! INBOX filled straight into Dovecot's Maildir, readers of both sides by Message-ID, and the
//! randomized two-way sync in which both sides keep changing between interrupted runs.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

/// A small deterministic generator (xorshift): the tests must replay from their seed.
pub(crate) struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A number from the environment variable `name`, `default` when unset or not a number.
pub(crate) fn env_number<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A message with Message-ID `<id@tag>` (and From `<first letter of tag>@example.org`),
/// padded to at least `size` bytes.
fn body(id: &str, size: usize, tag: &str) -> String {
    let mut text = format!(
        "From: {}@example.org\r\nSubject: {id}\r\nMessage-ID: <{id}@{tag}>\r\n\r\n",
        &tag[..1]
    );
    while text.len() < size {
        text.push_str("Some text of a message that is long enough to matter.\r\n");
    }
    text
}

/// The mail owner's uid and gid (Dovecot's mail processes run as `nobody`).
pub(crate) fn nobody() -> (u32, u32) {
    let id = |flag: &str| {
        let out = Command::new("id").args([flag, "nobody"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    };
    (id("-u"), id("-g"))
}

/// Writes a message (Message-ID `<id@kill>`) straight into the server's Maildir, as a
/// delivery agent would.
pub(crate) fn deliver(maildir: &Path, owner: (u32, u32), id: &str, size: usize) {
    let path = maildir.join("new").join(format!("{id}.kill"));
    std::fs::write(&path, body(id, size, "kill")).unwrap();
    chown(&path, Some(owner.0), Some(owner.1)).unwrap();
}

/// Delivers `n` messages into the server's INBOX Maildir ([`deliver`]; `message(i)` gives
/// the id and size of the i-th), then gives the whole Maildir to the mail owner. Returns
/// the Maildir and its owner, for later deliveries.
pub(crate) fn deliver_to_server(
    w: &World,
    n: usize,
    mut message: impl FnMut(usize) -> (String, usize),
) -> (PathBuf, (u32, u32)) {
    let maildir = w.server.maildir_of(USER);
    let owner = nobody();
    create_maildir(&maildir);
    for i in 0..n {
        let (id, size) = message(i);
        deliver(&maildir, owner, &id, size);
    }
    Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", owner.0, owner.1))
        .arg(&maildir)
        .status()
        .unwrap();
    (maildir, owner)
}

/// Message-ID → sorted flags, for the server (doveadm) and the local Maildir.
pub(crate) fn server_state(w: &World) -> BTreeMap<String, String> {
    let out = w.doveadm(&[
        "-f",
        "flow",
        "fetch",
        "-u",
        USER,
        "flags hdr",
        "mailbox",
        "INBOX",
    ]);
    let mut map = BTreeMap::new();
    // flow format: one record per line, `flags=... hdr=...` with the header's line ends
    // kept, so a record is split across lines; collect per "flags=" start.
    let mut current: Option<(String, String)> = None;
    let flush = |c: Option<(String, String)>, map: &mut BTreeMap<String, String>| {
        if let Some((flags, hdr)) = c {
            let id = oi_core::message_id_of(hdr.as_bytes()).expect("message without Message-ID");
            let mut letters: Vec<char> = flags
                .split_whitespace()
                .filter_map(|f| match f {
                    "\\Seen" => Some('S'),
                    "\\Answered" => Some('R'),
                    "\\Flagged" => Some('F'),
                    "\\Deleted" => Some('T'),
                    "\\Draft" => Some('D'),
                    _ => None,
                })
                .collect();
            letters.sort();
            assert!(
                map.insert(id.clone(), letters.into_iter().collect())
                    .is_none(),
                "duplicate on the server: {id}"
            );
        }
    };
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("flags=") {
            flush(current.take(), &mut map);
            let (flags, hdr) = rest.split_once(" hdr=").unwrap_or((rest, ""));
            current = Some((flags.to_string(), format!("{hdr}\n")));
        } else if let Some((_, hdr)) = current.as_mut() {
            hdr.push_str(line);
            hdr.push('\n');
        }
    }
    flush(current.take(), &mut map);
    map
}

pub(crate) fn local_state(w: &World) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for m in local_messages(&w.maildir().join("INBOX")) {
        let text = std::fs::read(&m.path).unwrap();
        let id = oi_core::message_id_of(&text).expect("local message without Message-ID");
        let mut flags: Vec<char> = m.flags.chars().filter(|c| "DFRST".contains(*c)).collect();
        flags.sort();
        assert!(
            map.insert(id.clone(), flags.into_iter().collect::<String>())
                .is_none(),
            "duplicate locally: {id}"
        );
    }
    map
}

/// The randomized two-way sync of a 2000-message INBOX: both sides change between runs,
/// a run is interrupted at a random instant, and a clean run must then converge. Tracks
/// which Message-IDs must exist.
pub(crate) struct TwoWaySync<'a> {
    w: &'a World,
    rng: Rng,
    server_maildir: PathBuf,
    owner: (u32, u32),
    /// Every Message-ID that must exist on both sides.
    alive: BTreeSet<String>,
    counter: usize,
    /// The Message-ID domain of messages written locally.
    local_tag: &'static str,
}

impl<'a> TwoWaySync<'a> {
    /// 2000 messages of random sizes on the server, and the world's config written.
    pub(crate) fn new(w: &'a World, seed: u64, local_tag: &'static str) -> TwoWaySync<'a> {
        let mut rng = Rng(seed | 1);
        let mut alive = BTreeSet::new();
        let (server_maildir, owner) = deliver_to_server(w, 2000, |i| {
            let id = format!("s{i}");
            alive.insert(format!("<{id}@kill>"));
            (id, 500 + rng.below(6000) as usize)
        });
        w.write_config("", "");
        TwoWaySync {
            w,
            rng,
            server_maildir,
            owner,
            alive,
            counter: 0,
            local_tag,
        }
    }

    /// Both sides change: new mail, flags, deletions.
    pub(crate) fn change_both_sides(&mut self) {
        let (w, rng) = (self.w, &mut self.rng);
        let inbox = w.maildir().join("INBOX");
        for _ in 0..rng.below(30) {
            self.counter += 1;
            let id = format!("n{}", self.counter);
            deliver(&self.server_maildir, self.owner, &id, 800);
            self.alive.insert(format!("<{id}@kill>"));
        }
        let local = local_messages(&inbox);
        for _ in 0..rng.below(15) {
            self.counter += 1;
            let id = format!("l{}", self.counter);
            std::fs::write(
                inbox.join(format!("new/{}.local.host", self.counter)),
                body(&id, 600, self.local_tag),
            )
            .unwrap();
            self.alive.insert(format!("<{id}@{}>", self.local_tag));
        }
        for _ in 0..rng.below(20) {
            let m = &local[rng.below(local.len() as u64) as usize];
            if m.path.exists() {
                let flags = ["", "S", "FS", "RS", "F"][rng.below(5) as usize];
                set_local_flags(m, flags);
            }
        }
        for _ in 0..rng.below(3) {
            let m = &local[rng.below(local.len() as u64) as usize];
            if m.path.exists() {
                let id = oi_core::message_id_of(&std::fs::read(&m.path).unwrap()).unwrap();
                std::fs::remove_file(&m.path).unwrap();
                self.alive.remove(&id);
            }
        }
        if rng.below(2) == 0 {
            let flag = ["\\Seen", "\\Flagged", "\\Answered"][rng.below(3) as usize];
            let uid = 1 + rng.below(2000);
            let verb = if rng.below(2) == 0 { "add" } else { "remove" };
            // The UID may be gone already; doveadm then changes nothing.
            let _ = Command::new("doveadm")
                .arg("-c")
                .arg(w.server.config_path())
                .args([
                    "flags",
                    verb,
                    "-u",
                    USER,
                    flag,
                    "mailbox",
                    "INBOX",
                    "uid",
                    &uid.to_string(),
                ])
                .output();
        }
    }

    /// Starts a sync and kills it (SIGKILL) after a random time below `window_ms`.
    pub(crate) fn kill_within(&mut self, window_ms: u64) {
        let mut child = self
            .w
            .command()
            .args(["-o", "-u", "quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(self.rng.below(window_ms)));
        let _ = child.kill();
        let _ = child.wait();
    }

    /// A clean run succeeds (else fails with `ctx: failure`), and then both sides hold
    /// exactly the messages that must exist, once each, with the same flags.
    pub(crate) fn clean_run_converges(&self, ctx: &str, failure: &str) {
        let out = self.w.run(&[]);
        assert!(
            out.status.success(),
            "{ctx}: {failure}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (server, local) = (server_state(self.w), local_state(self.w));
        let server_ids: BTreeSet<String> = server.keys().cloned().collect();
        let missing: Vec<_> = self.alive.difference(&server_ids).collect();
        assert!(missing.is_empty(), "{ctx}: lost {missing:?}");
        assert_eq!(
            server_ids, self.alive,
            "{ctx}: unexpected messages on the server"
        );
        assert_eq!(server, local, "{ctx}: the sides differ");
    }
}
