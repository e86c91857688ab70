//! The randomized kill test: a two-way sync of a 2000-message mailbox, killed (SIGKILL) at
//! random instants while both sides keep changing, each time followed by a clean run and
//! a check of both sides: the same messages (by Message-ID), none twice, the same flags,
//! and every message that should exist still there. `KILL_RUNS` sets the number of kills
//! (50 by default), `KILL_SEED` the seed; a failure prints the seed and the run.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::chown;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

/// A small deterministic generator (xorshift): the test must replay from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn body(id: &str, size: usize) -> String {
    let mut text =
        format!("From: k@example.org\r\nSubject: {id}\r\nMessage-ID: <{id}@kill>\r\n\r\n");
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

/// Writes a message straight into the server's Maildir, as a delivery agent would.
pub(crate) fn deliver(maildir: &Path, owner: (u32, u32), id: &str, size: usize) {
    let path = maildir.join("new").join(format!("{id}.kill"));
    std::fs::write(&path, body(id, size)).unwrap();
    chown(&path, Some(owner.0), Some(owner.1)).unwrap();
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

/// Waits (a hang guard of a minute, not a timing assertion) until Dovecot has no session
/// of the user left.
fn wait_for_no_sessions(w: &World) {
    for _ in 0..600 {
        let out = Command::new("doveadm")
            .arg("-c")
            .arg(w.server.config_path())
            .args(["who", "-1", USER])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !text.lines().any(|l| l.starts_with(USER)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("Dovecot still has a session of {USER} a minute after the kill");
}

#[test]
fn randomized_kills_during_two_way_sync_lose_and_duplicate_nothing() {
    let runs: usize = std::env::var("KILL_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let seed: u64 = std::env::var("KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x5eed);
    let Some(w) = World::new("randomized_kills") else {
        return;
    };
    let mut rng = Rng(seed | 1);
    let server_maildir = w.server.maildir_of(USER);
    let owner = nobody();
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(server_maildir.join(sub)).unwrap();
    }
    let mut alive: BTreeSet<String> = BTreeSet::new();
    for i in 0..2000 {
        let id = format!("s{i}");
        deliver(&server_maildir, owner, &id, 500 + rng.below(6000) as usize);
        alive.insert(format!("<{id}@kill>"));
    }
    Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", owner.0, owner.1))
        .arg(w.server.maildir_of(USER))
        .status()
        .unwrap();
    w.write_config("", "");
    let inbox = w.maildir().join("INBOX");
    let mut counter = 0;
    for run in 0..runs {
        let ctx = format!("seed {seed}, run {run}");
        if run > 0 {
            // Both sides change: new mail, flags, deletions.
            for _ in 0..rng.below(30) {
                counter += 1;
                let id = format!("n{counter}");
                deliver(&server_maildir, owner, &id, 800);
                alive.insert(format!("<{id}@kill>"));
            }
            let local = local_messages(&inbox);
            for _ in 0..rng.below(15) {
                counter += 1;
                let id = format!("l{counter}");
                std::fs::write(
                    inbox.join(format!("new/{counter}.local.host")),
                    body(&id, 600),
                )
                .unwrap();
                alive.insert(format!("<{id}@kill>"));
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
                    alive.remove(&id);
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
        // Start a sync and kill it at a random instant (the first one, a 2000-message
        // download, gets a longer window).
        let mut child = w
            .command()
            .args(["-o", "-u", "quiet"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let window = if run == 0 { 1500 } else { 250 };
        std::thread::sleep(Duration::from_millis(rng.below(window)));
        let _ = child.kill();
        let _ = child.wait();
        // The server finishes what the killed client had sent (a MULTIAPPEND already on
        // the wire is still committed, seconds later on a loaded machine) before the
        // next run starts, as it has long finished when a user runs the next sync. The
        // engine also looks for such late copies (a grace period, a second look before
        // the expunge, and every later run), but no client can out-wait a server that is
        // still working for a connection that is gone.
        wait_for_no_sessions(&w);
        let out = w.run(&[]);
        assert!(
            out.status.success(),
            "{ctx}: clean run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (server, local) = (server_state(&w), local_state(&w));
        let server_ids: BTreeSet<String> = server.keys().cloned().collect();
        let missing: Vec<_> = alive.difference(&server_ids).collect();
        assert!(missing.is_empty(), "{ctx}: lost {missing:?}");
        assert_eq!(
            server_ids, alive,
            "{ctx}: unexpected messages on the server"
        );
        assert_eq!(server, local, "{ctx}: the sides differ");
    }
}
