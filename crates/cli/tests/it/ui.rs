//! The user interfaces seen from outside: `-u machineui` prints the same lines as
//! OfflineIMAP 8 for the same sync, and `-u blinkenlights` draws folder names and counts in
//! a real terminal (tmux, installed by scripts/install-deps).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::common::*;
use crate::tmux::{Tmux, have_tmux};

fn offlineimap8() -> Option<PathBuf> {
    let path = PathBuf::from(
        std::env::var("OFFLINEIMAP8")
            .unwrap_or_else(|_| "/opt/offlineimap8-venv/bin/offlineimap".into()),
    );
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "OfflineIMAP 8 missing under CI"
    );
    eprintln!("SKIPPED: OfflineIMAP 8 not installed at {}", path.display());
    None
}

/// The same starting point for both programs: three messages in INBOX (one \Seen) and an
/// empty Archive, on a fresh server and in a fresh scratch directory.
fn fresh_world(name: &str) -> Option<World> {
    let w = World::new(name)?;
    w.server.create_mailbox(USER, "Archive").unwrap();
    for i in 0..3 {
        let uid = w.put("INBOX", &format!("m{i}"));
        if i == 0 {
            w.server.add_flags(USER, "INBOX", uid, &["\\Seen"]).unwrap();
        }
    }
    w.write_config("", "");
    Some(w)
}

/// Changes between the two runs: one local deletion, one local flag, one new local message.
fn local_changes(w: &World) {
    let inbox = w.maildir().join("INBOX");
    let mut files: Vec<PathBuf> = ["cur", "new"]
        .iter()
        .flat_map(|d| std::fs::read_dir(inbox.join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    files.sort_by_key(|p| local_uid(p));
    std::fs::remove_file(&files[0]).unwrap();
    let f = files[1].display().to_string();
    std::fs::rename(&files[1], format!("{f}F")).unwrap();
    std::fs::write(
        w.maildir().join("Archive/new/123.abc.host"),
        message("uploaded"),
    )
    .unwrap();
}

fn local_uid(p: &Path) -> u32 {
    let name = p.file_name().unwrap().to_string_lossy().to_string();
    name.split(",U=")
        .nth(1)
        .and_then(|r| r.split([',', ':']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn run_machine(bin: &Path, w: &World) -> String {
    let out = isolated(bin, w.dir.path(), &w.rc())
        .args(["-o", "-u", "machineui"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} failed:\n{}{}",
        bin.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// The machine lines with what legitimately differs taken out: the port, the banner, the
/// Python thread bookkeeping (register/unregister/exited and per-copy threads), and
/// OfflineIMAP's "Creating new Local Status db" notes. Compared as sets, because the
/// order of folders and of the two directions is a scheduling detail.
fn normalise(text: &str, port: u16) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with("msg:") || l.starts_with("warn:") || l.starts_with("error:"))
        .filter(|l| {
            let cmd = l.split(':').nth(1).unwrap_or_default();
            !matches!(
                cmd,
                "initbanner" | "registerthread" | "unregisterthread" | "threadExited"
            )
        })
        .filter(|l| !l.contains("imaplib2") && !l.contains("Local+Status+db"))
        .map(|l| l.replace(&port.to_string(), "PORT"))
        .collect()
}

#[test]
fn machineui_lines_equal_offlineimap8() {
    let Some(bin8) = offlineimap8() else { return };
    let ours = PathBuf::from(env!("CARGO_BIN_EXE_offlineimap"));
    let (Some(a), Some(b)) = (fresh_world("ui_machine_8"), fresh_world("ui_machine_rs")) else {
        return;
    };
    for round in 0..2 {
        let theirs = normalise(&run_machine(&bin8, &a), a.server.imap_port());
        let mine = normalise(&run_machine(&ours, &b), b.server.imap_port());
        let missing: Vec<_> = theirs.difference(&mine).collect();
        let extra: Vec<_> = mine.difference(&theirs).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "round {round}: lines only OfflineIMAP 8 printed: {missing:#?}\n\
             lines only we printed: {extra:#?}"
        );
        if round == 0 {
            local_changes(&a);
            local_changes(&b);
        }
    }
}

#[test]
fn blinkenlights_draws_folders_and_counts_in_tmux() {
    if !have_tmux() {
        return;
    }
    let Some(w) = fresh_world("ui_blinkenlights") else {
        return;
    };
    let session = format!("oi-blinken-{}", std::process::id());
    let tmux = Tmux::start(&w, session, (120, 40), "-o -u blinkenlights");
    // Wait (bounded) for the run to end; the screen is then left and the last frame
    // printed on the normal screen.
    let mut screen = String::new();
    for _ in 0..300 {
        screen = tmux.screen(false);
        if screen.contains("EXIT=") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    tmux.kill();
    assert!(screen.contains("EXIT=0"), "{screen}");
    let inbox = screen
        .lines()
        .find(|l| l.trim_start().starts_with("INBOX"))
        .unwrap_or_else(|| panic!("no INBOX line:\n{screen}"));
    assert!(inbox.contains("3/3") && inbox.contains("done"), "{screen}");
    assert!(screen.contains("Archive"), "{screen}");
    assert!(
        screen.contains("*** Summary: 1 account(s); copied 3 to local"),
        "{screen}"
    );
}
