//! Continuing OfflineIMAP 8's state, and OfflineIMAP 8 continuing ours.

use std::path::PathBuf;
use std::process::Command;

use crate::common::*;

pub(crate) fn offlineimap8() -> Option<PathBuf> {
    let path = PathBuf::from(
        std::env::var("OFFLINEIMAP8")
            .unwrap_or_else(|_| "/opt/offlineimap8-venv/bin/offlineimap".into()),
    );
    if path.exists() {
        return Some(path);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "OfflineIMAP 8 not found at {} under CI (scripts/install-deps installs it)",
            path.display()
        );
    }
    eprintln!(
        "SKIPPED: OfflineIMAP 8 not installed at {} (run scripts/install-deps)",
        path.display()
    );
    None
}

pub(crate) fn run_offlineimap8(bin: &PathBuf, w: &World) {
    let out = Command::new(bin)
        .env("HOME", w.dir.path())
        .arg("-c")
        .arg(w.rc())
        .args(["-o", "-u", "basic"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "offlineimap 8 failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn snapshot(w: &World) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    let mut stack = vec![w.maildir()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                v.push((
                    p.strip_prefix(w.maildir()).unwrap().display().to_string(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    v.sort();
    v
}

#[test]
fn continues_offlineimap8_state_without_transfers_and_back() {
    let Some(bin) = offlineimap8() else { return };
    let Some(w) = World::new("compat_offlineimap8") else {
        return;
    };
    w.server.create_mailbox(USER, "Archive").unwrap();
    for i in 0..5 {
        let uid = w.put("INBOX", &format!("m{i}"));
        if i % 2 == 0 {
            w.server.add_flags(USER, "INBOX", uid, &["\\Seen"]).unwrap();
        }
    }
    w.put("Archive", "old");
    w.write_config("", "");
    run_offlineimap8(&bin, &w);
    let local_before = snapshot(&w);
    let server_before = w.server_messages("INBOX");
    assert_eq!(
        local_before.len(),
        6,
        "offlineimap 8 did not sync: {local_before:?}"
    );

    let out = w.sync_ok();
    assert_nothing_done(&out);
    assert_eq!(snapshot(&w), local_before, "our run changed the local tree");
    assert_eq!(w.server_messages("INBOX"), server_before);

    // Now changes made under our management, then OfflineIMAP 8 again: nothing to do for it.
    let uid = w.put("INBOX", "new on server");
    std::fs::write(
        w.maildir().join("INBOX/new/1700000003.z.host"),
        message("new local"),
    )
    .unwrap();
    w.sync_ok();
    let ours = snapshot(&w);
    let server_ours = w.server_messages("INBOX");
    assert!(server_ours.contains_key(&uid));
    run_offlineimap8(&bin, &w);
    assert_eq!(snapshot(&w), ours, "offlineimap 8 changed our local tree");
    assert_eq!(w.server_messages("INBOX"), server_ours);
}

/// The same Python folder options (filter, nametrans both ways, pythonfile password) give
/// the same local tree, server folders and LocalStatus names with OfflineIMAP 8 and ours.
#[test]
fn python_folder_options_match_offlineimap8() {
    let Some(bin) = offlineimap8() else { return };
    let setup = |test: &str| -> Option<World> {
        let w = World::new(test)?;
        for mbox in ["Archive", "Trash", "Lists", "Lists.rust", "Lists.go"] {
            w.server.create_mailbox(USER, mbox).unwrap();
        }
        w.put("Lists.rust", "rust list");
        w.put("Lists.go", "go list");
        w.put("Trash", "trashed");
        w.put("INBOX", "inbox");
        let py = w.dir.path().join("helpers.py");
        std::fs::write(
            &py,
            "import re\ndef get_pass(user):\n    return {'alice': 'alicepass'}[user]\n",
        )
        .unwrap();
        let text = format!(
            "[general]\naccounts = Test\nmetadata = {meta}\npythonfile = {py}\n\n\
             [Account Test]\nlocalrepository = Local\nremoterepository = Remote\n\n\
             [Repository Local]\ntype = Maildir\nlocalfolders = {mail}\n\
             nametrans = lambda f: re.sub('^L-', 'Lists.', f)\n\n\
             [Repository Remote]\ntype = IMAP\nremotehost = 127.0.0.1\nremoteport = {port}\n\
             remoteuser = {USER}\nremotepasseval = get_pass(\"%(remoteuser)s\")\nssl = no\nstarttls = no\n\
             folderfilter = lambda f: f not in ['Trash', 'Lists']\n\
             nametrans = lambda f: re.sub(r'^Lists\\.', 'L-', f)\n",
            meta = w.metadata().display(),
            mail = w.maildir().display(),
            py = py.display(),
            port = w.server.imap_port(),
        );
        std::fs::write(w.rc(), text).unwrap();
        create_maildir(&w.maildir().join("L-new"));
        std::fs::write(
            w.maildir().join("L-new/new/1700000009.x.host"),
            message("made locally"),
        )
        .unwrap();
        Some(w)
    };
    let describe = |w: &World| {
        let mut tree = Vec::new();
        let mut dirs: Vec<_> = std::fs::read_dir(w.maildir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        dirs.sort();
        for d in dirs {
            let subjects: Vec<_> = local_messages(&d)
                .into_iter()
                .map(|m| (m.subject, m.fmd5))
                .collect();
            tree.push((
                d.file_name().unwrap().to_string_lossy().to_string(),
                subjects,
            ));
        }
        let mut mailboxes = w.server.mailboxes(USER).unwrap();
        mailboxes.sort();
        let mut status: Vec<_> =
            std::fs::read_dir(w.metadata().join("Account-Test/LocalStatus-sqlite"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .collect();
        status.sort();
        (tree, mailboxes, status)
    };
    let Some(theirs) = setup("python_options_offlineimap8") else {
        return;
    };
    run_offlineimap8(&bin, &theirs);
    let ours = setup("python_options_ours").unwrap();
    ours.sync_ok();
    assert_eq!(describe(&ours), describe(&theirs));
}

/// [mbnames] writes the same mailbox list and the same intermediate JSON as OfflineIMAP 8.
#[test]
fn mbnames_matches_offlineimap8() {
    let Some(bin) = offlineimap8() else { return };
    let setup = |test: &str| -> Option<World> {
        let w = World::new(test)?;
        for mbox in ["Archive", "Lists.rust", "Sent"] {
            w.server.create_mailbox(USER, mbox).unwrap();
        }
        w.put("Sent", "s");
        w.write_config("", "");
        let mut text = std::fs::read_to_string(w.rc()).unwrap();
        text.push_str(&format!(
            "\n[mbnames]\nenabled = yes\nfilename = {}/mailboxes\nheader = \"mailboxes \"\n\
             peritem = \"+%(accountname)s/%(foldername)s\"\nsep = \" \"\nfooter = \"\\n\"\n\
             folderfilter = lambda accountname, foldername: foldername != 'Archive'\n\
             sort_keyfunc = lambda d: d['foldername'].lower()\n",
            w.dir.path().display()
        ));
        std::fs::write(w.rc(), text).unwrap();
        Some(w)
    };
    let read = |w: &World| {
        let list = std::fs::read_to_string(w.dir.path().join("mailboxes")).unwrap();
        let json = std::fs::read_to_string(w.metadata().join("mbnames/Test.json"))
            .unwrap()
            .replace(&w.maildir().display().to_string(), "ROOT");
        (list, json)
    };
    let Some(theirs) = setup("mbnames_offlineimap8") else {
        return;
    };
    run_offlineimap8(&bin, &theirs);
    let ours = setup("mbnames_ours").unwrap();
    ours.sync_ok();
    let (list, json) = read(&ours);
    assert_eq!((list.clone(), json), read(&theirs));
    assert_eq!(
        list,
        "mailboxes \"+Test/INBOX\" \"+Test/Lists.rust\" \"+Test/Sent\"\n"
    );
    // --mbnames-prune keeps configured accounts' files.
    let out = ours.run(&["--mbnames-prune"]);
    assert!(out.status.success());
    assert!(ours.metadata().join("mbnames/Test.json").exists());
}
