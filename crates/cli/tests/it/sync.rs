//! The two-way sync against Dovecot.

use crate::common::*;
use crate::long_running::add_to_account;

#[test]
fn initial_sync_downloads_everything_in_offlineimap_layout() {
    let Some(w) = World::new("initial_sync") else {
        return;
    };
    w.server.create_mailbox(USER, "Archive").unwrap();
    w.put("INBOX", "one");
    let uid2 = w.put("INBOX", "two");
    w.server
        .add_flags(USER, "INBOX", uid2, &["\\Seen", "\\Flagged"])
        .unwrap();
    w.put("Archive", "three");
    w.write_config("", "");
    w.sync_ok();

    let inbox = local_messages(&w.maildir().join("INBOX"));
    assert_eq!(inbox.len(), 2, "{inbox:?}");
    let md5 = md5_hex("INBOX");
    for m in &inbox {
        assert_eq!(m.fmd5.as_deref(), Some(md5.as_str()), "{m:?}");
        assert!(m.uid.is_some());
    }
    let two = inbox.iter().find(|m| m.subject == "two").unwrap();
    assert_eq!(two.uid, Some(uid2));
    assert_eq!(two.flags, "FS");
    assert_eq!(local_messages(&w.maildir().join("Archive")).len(), 1);

    // OfflineIMAP's state layout.
    let status = w.metadata().join("Account-Test/LocalStatus-sqlite/INBOX");
    let db = rusqlite::Connection::open(&status).unwrap();
    let rows: Vec<(i64, String)> = db
        .prepare("SELECT id, flags FROM status ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 2);
    assert!(rows.contains(&(i64::from(uid2), "FS".to_string())));
    let version: String = db
        .query_row(
            "SELECT value FROM metadata WHERE key='db_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, "2");
    let validity =
        std::fs::read_to_string(w.metadata().join("Repository-Remote/FolderValidity/INBOX"))
            .unwrap();
    assert!(validity.trim().parse::<u32>().unwrap() > 0);

    // A second run changes nothing.
    let before: Vec<_> = inbox.iter().map(|m| m.path.clone()).collect();
    let out = w.sync_ok();
    assert_nothing_done(&out);
    let after: Vec<_> = local_messages(&w.maildir().join("INBOX"))
        .into_iter()
        .map(|m| m.path)
        .collect();
    assert_eq!(before, after);
}

#[test]
fn changes_go_both_ways() {
    let Some(w) = World::new("changes_go_both_ways") else {
        return;
    };
    let a = w.put("INBOX", "a");
    let b = w.put("INBOX", "b");
    let c = w.put("INBOX", "c");
    let d = w.put("INBOX", "d");
    w.write_config("", "");
    w.sync_ok();
    let inbox = w.maildir().join("INBOX");
    let local = local_messages(&inbox);

    // Local: flag a, delete b, add a new message. Server: flag c, delete d, add e.
    set_local_flags(&local[0], "RS");
    std::fs::remove_file(&local[1].path).unwrap();
    std::fs::write(
        inbox.join("new/1700000000.local-new.host"),
        message("from local"),
    )
    .unwrap();
    w.server
        .add_flags(USER, "INBOX", c, &["\\Flagged"])
        .unwrap();
    w.expunge("INBOX", d);
    let e = w.put("INBOX", "e");
    w.sync_ok();

    let server = w.server_messages("INBOX");
    assert_eq!(server[&a].1, ["\\Answered", "\\Seen"]);
    assert!(
        !server.contains_key(&b),
        "local deletion reached the server"
    );
    assert_eq!(server[&c].1, ["\\Flagged"]);
    let uploaded = server
        .iter()
        .find(|(_, (s, _))| s == "from local")
        .map(|(u, _)| *u);
    let uploaded = uploaded.expect("local message uploaded");

    let local = local_messages(&inbox);
    let subjects: Vec<_> = local.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(subjects, ["a", "c", "e", "from local"]);
    assert_eq!(local[1].flags, "F");
    assert_eq!(local[2].uid, Some(e));
    assert_eq!(
        local[3].uid,
        Some(uploaded),
        "uploaded file renamed with its UID"
    );
    assert_eq!(local[3].fmd5.as_deref(), Some(md5_hex("INBOX").as_str()));

    // And the next run has nothing to do.
    let out = w.sync_ok();
    assert_nothing_done(&out);
}

#[test]
fn readonly_remote_is_never_changed() {
    let Some(w) = World::new("readonly_remote") else {
        return;
    };
    let a = w.put("INBOX", "a");
    w.put("INBOX", "b");
    w.write_config("readonly = yes", "");
    w.sync_ok();
    let inbox = w.maildir().join("INBOX");
    let local = local_messages(&inbox);
    set_local_flags(&local[0], "S");
    std::fs::remove_file(&local[1].path).unwrap();
    std::fs::write(inbox.join("new/1700000001.x.host"), message("local only")).unwrap();
    let before = w.server_messages("INBOX");
    w.sync_ok();
    assert_eq!(w.server_messages("INBOX"), before);
    assert_eq!(before[&a].1, Vec::<String>::new());
    // The local side keeps its changes, and nothing is downloaded again.
    let subjects: Vec<_> = local_messages(&inbox)
        .into_iter()
        .map(|m| m.subject)
        .collect();
    assert_eq!(subjects, ["a", "local only"]);
}

#[test]
fn sync_deletes_no_keeps_the_other_side() {
    let Some(w) = World::new("sync_deletes_no") else {
        return;
    };
    let a = w.put("INBOX", "a");
    w.put("INBOX", "b");
    w.write_config("", "sync_deletes = no");
    w.sync_ok();
    let inbox = w.maildir().join("INBOX");
    let local = local_messages(&inbox);
    std::fs::remove_file(&local[0].path).unwrap();
    w.sync_ok();
    assert!(
        w.server_messages("INBOX").contains_key(&a),
        "deletion was propagated"
    );
    assert_eq!(local_messages(&inbox).len(), 1, "deleted message came back");
}

#[test]
fn folders_are_created_on_both_sides() {
    let Some(w) = World::new("folders_created") else {
        return;
    };
    w.server.create_mailbox(USER, "Remote Only").unwrap();
    w.put("Remote Only", "r");
    w.write_config("", "");
    std::fs::create_dir_all(w.maildir()).unwrap();
    create_maildir(&w.maildir().join("LocalOnly"));
    std::fs::write(
        w.maildir().join("LocalOnly/new/1700000002.y.host"),
        message("l"),
    )
    .unwrap();
    w.sync_ok();
    assert!(
        w.server
            .mailboxes(USER)
            .unwrap()
            .contains(&"LocalOnly".to_string())
    );
    assert_eq!(w.server_messages("LocalOnly").len(), 1);
    assert_eq!(local_messages(&w.maildir().join("Remote Only")).len(), 1);
}

#[test]
fn createfolders_false_creates_nothing() {
    let Some(w) = World::new("createfolders_false") else {
        return;
    };
    w.server.create_mailbox(USER, "Elsewhere").unwrap();
    w.write_config("createfolders = false", "createfolders = false");
    std::fs::create_dir_all(w.maildir().join("LocalOnly/cur")).unwrap();
    std::fs::create_dir_all(w.maildir().join("LocalOnly/new")).unwrap();
    std::fs::create_dir_all(w.maildir().join("LocalOnly/tmp")).unwrap();
    // No folder exists on both sides and none may be created: OfflineIMAP's error.
    let out = w.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("no folder to sync"), "{err}");
    assert!(
        !w.server
            .mailboxes(USER)
            .unwrap()
            .contains(&"LocalOnly".to_string())
    );
    assert!(!w.maildir().join("Elsewhere").exists());
}

/// A mailbox recreated on the server (new UIDVALIDITY, every UID new) is re-paired by
/// Message-ID: nothing downloaded twice, nothing uploaded twice, local flags kept.
#[test]
fn uidvalidity_change_is_repaired_without_duplicates() {
    let Some(w) = World::new("uidvalidity_change") else {
        return;
    };
    w.server.create_mailbox(USER, "Other").unwrap();
    w.put("INBOX", "a");
    w.put("Other", "o1");
    w.put("Other", "o2");
    w.write_config("", "");
    w.sync_ok();
    let other = w.maildir().join("Other");
    set_local_flags(&local_messages(&other)[0], "FS");
    // Recreate the mailbox with the same messages (in another order) and one more.
    w.doveadm(&["mailbox", "delete", "-u", USER, "Other"]);
    w.server.create_mailbox(USER, "Other").unwrap();
    w.put("Other", "fresh");
    w.put("Other", "o2");
    w.put("Other", "o1");
    let err = w.sync_ok();
    assert!(err.contains("re-paired 2 message(s)"), "{err}");
    let local: Vec<_> = local_messages(&other)
        .into_iter()
        .map(|m| (m.subject, m.flags))
        .collect();
    assert_eq!(
        local,
        [
            ("fresh".into(), String::new()),
            ("o1".into(), "FS".into()),
            ("o2".into(), String::new())
        ]
    );
    let server: Vec<_> = w.server_messages("Other").into_values().collect();
    assert_eq!(server.len(), 3, "{server:?}");
    assert!(server.contains(&(
        "o1".to_string(),
        vec!["\\Flagged".to_string(), "\\Seen".to_string()]
    )));
    let again = w.sync_ok();
    assert_nothing_done(&again);
}

/// A Maildir made by another tool (mbsync's names: a U= of its own, no FMD5) and no
/// OfflineIMAP state: the messages the server has are adopted, not uploaded again.
#[test]
fn foreign_maildir_without_state_is_adopted() {
    let Some(w) = World::new("adopt_foreign_maildir") else {
        return;
    };
    w.put("INBOX", "a");
    w.put("INBOX", "b");
    w.write_config("", "");
    let cur = w.maildir().join("INBOX/cur");
    std::fs::create_dir_all(&cur).unwrap();
    std::fs::create_dir_all(w.maildir().join("INBOX/new")).unwrap();
    std::fs::create_dir_all(w.maildir().join("INBOX/tmp")).unwrap();
    std::fs::write(cur.join("1700000000.1_1.host,U=1:2,S"), message("a")).unwrap();
    std::fs::write(cur.join("1700000000.2_1.host,U=2:2,"), message("b")).unwrap();
    std::fs::write(
        cur.join("1700000000.3_1.host,U=3:2,S"),
        message("only local"),
    )
    .unwrap();
    let err = w.sync_ok();
    assert!(err.contains("adopted 2 local message(s)"), "{err}");
    let server: Vec<_> = w
        .server_messages("INBOX")
        .into_values()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(server.len(), 3, "{server:?}");
    assert_eq!(local_messages(&w.maildir().join("INBOX")).len(), 3);
}

#[test]
fn two_accounts_sync_in_one_run() {
    let Some(w) = World::new("two_accounts") else {
        return;
    };
    w.put("INBOX", "for alice");
    w.server
        .put_message("bob", "INBOX", message("for bob").as_bytes())
        .unwrap();
    let text = format!(
        "[general]\naccounts = A, B\nmetadata = {meta}\nmaxsyncaccounts = 2\n\n\
         [Account A]\nlocalrepository = LA\nremoterepository = RA\n\
         [Account B]\nlocalrepository = LB\nremoterepository = RB\n\
         [Repository LA]\ntype = Maildir\nlocalfolders = {mail}/a\n\
         [Repository LB]\ntype = Maildir\nlocalfolders = {mail}/b\n\
         [DEFAULT]\nremotehost = 127.0.0.1\nremoteport = {port}\nssl = no\nstarttls = no\n\
         [Repository RA]\ntype = IMAP\nremoteuser = alice\nremotepass = alicepass\n\
         [Repository RB]\ntype = IMAP\nremoteuser = bob\nremotepass = bobpass\n",
        meta = w.metadata().display(),
        mail = w.maildir().display(),
        port = w.server.imap_port(),
    );
    std::fs::write(w.rc(), text).unwrap();
    w.sync_ok();
    let a: Vec<_> = local_messages(&w.maildir().join("a/INBOX"))
        .into_iter()
        .map(|m| m.subject)
        .collect();
    let b: Vec<_> = local_messages(&w.maildir().join("b/INBOX"))
        .into_iter()
        .map(|m| m.subject)
        .collect();
    assert_eq!(a, ["for alice"]);
    assert_eq!(b, ["for bob"]);
}

/// A local folder removed by hand is created again and downloaded again; the stale status
/// must not turn into deletions on the server (OfflineIMAP purges it too).
#[test]
fn removed_local_folder_is_downloaded_again_not_deleted_remotely() {
    let Some(w) = World::new("removed_local_folder") else {
        return;
    };
    w.put("INBOX", "a");
    w.put("INBOX", "b");
    w.write_config("", "");
    w.sync_ok();
    std::fs::remove_dir_all(w.maildir().join("INBOX")).unwrap();
    w.sync_ok();
    assert_eq!(w.server_messages("INBOX").len(), 2, "the server lost mail");
    assert_eq!(local_messages(&w.maildir().join("INBOX")).len(), 2);
}

/// The same the other way: a mailbox deleted on the server is created again and the local
/// messages are uploaded, not deleted.
#[test]
fn removed_remote_folder_is_uploaded_again_not_deleted_locally() {
    let Some(w) = World::new("removed_remote_folder") else {
        return;
    };
    w.server.create_mailbox(USER, "Keep").unwrap();
    w.put("Keep", "a");
    w.put("Keep", "b");
    w.write_config("", "");
    w.sync_ok();
    w.doveadm(&["mailbox", "delete", "-u", USER, "Keep"]);
    w.sync_ok();
    let subjects: Vec<_> = local_messages(&w.maildir().join("Keep"))
        .into_iter()
        .map(|m| m.subject)
        .collect();
    assert_eq!(subjects, ["a", "b"], "local mail lost");
    let server: Vec<_> = w
        .server_messages("Keep")
        .into_values()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(server.len(), 2, "{server:?}");
    // The renamed local files carry the new UIDs, and a further run is quiet.
    let out = w.sync_ok();
    assert_nothing_done(&out);
}

/// A message moved by a mail client from one folder to another (it keeps INBOX's FMD5) is
/// uploaded to its new folder and deleted from the old one.
#[test]
fn message_moved_between_local_folders_follows_on_the_server() {
    let Some(w) = World::new("moved_between_folders") else {
        return;
    };
    w.server.create_mailbox(USER, "Archive").unwrap();
    let uid = w.put("INBOX", "moved");
    w.write_config("", "");
    w.sync_ok();
    let m = &local_messages(&w.maildir().join("INBOX"))[0];
    let name = m.path.file_name().unwrap();
    std::fs::rename(&m.path, w.maildir().join("Archive/cur").join(name)).unwrap();
    w.sync_ok();
    assert!(!w.server_messages("INBOX").contains_key(&uid));
    let archive: Vec<_> = w
        .server_messages("Archive")
        .into_values()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(archive, ["moved"]);
    let local = local_messages(&w.maildir().join("Archive"));
    assert_eq!(local[0].fmd5.as_deref(), Some(md5_hex("Archive").as_str()));
}

/// Most of a folder deleted locally at once stops that folder with an explanation; the
/// user's explicit override lets it through.
#[test]
fn mass_deletion_is_refused_until_allowed() {
    let Some(w) = World::new("mass_deletion_guard") else {
        return;
    };
    for i in 0..10 {
        w.put("INBOX", &format!("m{i}"));
    }
    w.write_config("", "");
    w.sync_ok();
    for m in local_messages(&w.maildir().join("INBOX")).iter().take(8) {
        std::fs::remove_file(&m.path).unwrap();
    }
    let out = w.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("refusing to delete 8 of the 10 messages"),
        "{err}"
    );
    assert_eq!(w.server_messages("INBOX").len(), 10);
    let out = w.run(&["-k", "Account_Test:max_delete_percent=100"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(w.server_messages("INBOX").len(), 2);
}

/// IMAP <-> IMAP: two accounts of one Dovecot (alice remote, bob local) synced both ways,
/// with OfflineIMAP's UIDMapping state.
#[test]
fn imap_to_imap_both_ways() {
    let Some(w) = World::new("imap_to_imap") else {
        return;
    };
    w.put("INBOX", "from alice");
    w.server
        .put_message("bob", "INBOX", message("from bob").as_bytes())
        .unwrap();
    w.write_imap_to_imap_config("", "", "");
    w.sync_ok();
    let subjects = |user: &str| {
        let mut v: Vec<String> = w
            .server
            .messages(user, "INBOX")
            .unwrap()
            .into_iter()
            .map(|m| subject_of(&m.body))
            .collect();
        v.sort();
        v
    };
    assert_eq!(subjects("alice"), ["from alice", "from bob"]);
    assert_eq!(subjects("bob"), ["from alice", "from bob"]);
    let mapping =
        std::fs::read_to_string(w.metadata().join("Repository-Bob/UIDMapping/INBOX")).unwrap();
    assert_eq!(mapping.lines().count(), 2, "{mapping}");
    let again = w.sync_ok();
    assert_nothing_done(&again);
}

/// folderfilter, nametrans on both sides (inverting each other), folderincludes, and a
/// password from a pythonfile helper through remotepasseval.
#[test]
fn python_folder_options_and_pythonfile_password() {
    let Some(w) = World::new("python_options") else {
        return;
    };
    for mbox in ["Archive", "Trash", "Lists", "Lists.rust"] {
        w.server.create_mailbox(USER, mbox).unwrap();
    }
    w.put("Lists.rust", "rust list");
    w.put("Trash", "trashed");
    w.put("INBOX", "inbox");
    let py = w.dir.path().join("helpers.py");
    std::fs::write(
        &py,
        "def get_pass(user):\n    return {'alice': 'alicepass'}[user]\n",
    )
    .unwrap();
    let text = format!(
        "[general]\naccounts = Test\nmetadata = {meta}\npythonfile = {py}\n\n\
         [Account Test]\nlocalrepository = Local\nremoterepository = Remote\n\n\
         [Repository Local]\ntype = Maildir\nlocalfolders = {mail}\n\
         nametrans = lambda f: re.sub('^L-', 'Lists.', f)\n\n\
         [Repository Remote]\ntype = IMAP\nremotehost = 127.0.0.1\nremoteport = {port}\n\
         remoteuser = {USER}\nremotepasseval = get_pass(\"%(remoteuser)s\")\nssl = no\nstarttls = no\n\
         folderfilter = lambda f: f not in ['Trash',\n    'Lists']\n\
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
    w.sync_ok();
    let mut local: Vec<String> = std::fs::read_dir(w.maildir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    local.sort();
    assert_eq!(local, ["Archive", "INBOX", "L-new", "L-rust"]);
    let rust = local_messages(&w.maildir().join("L-rust"));
    assert_eq!(rust[0].subject, "rust list");
    // FMD5 is the MD5 of the local visible name (through the local nametrans).
    assert_eq!(
        rust[0].fmd5.as_deref(),
        Some(md5_hex("Lists.rust").as_str())
    );
    assert!(
        w.metadata()
            .join("Account-Test/LocalStatus-sqlite/L-rust")
            .exists()
    );
    // L-new went to the server as Lists.new, which the remote nametrans maps back.
    assert!(
        w.server
            .mailboxes(USER)
            .unwrap()
            .contains(&"Lists.new".to_string())
    );
    assert_eq!(w.server_messages("Lists.new").len(), 1);
    let again = w.sync_ok();
    assert_nothing_done(&again);
    assert!(!again.contains("Creating folder"), "{again}");
}

/// Quick sync (-q): a server-side flag change alone waits for a full sync, as in
/// OfflineIMAP; new mail and local changes go through.
#[test]
fn quick_sync_skips_unchanged_folders_only() {
    let Some(w) = World::new("quick_sync") else {
        return;
    };
    let a = w.put("INBOX", "a");
    w.write_config("", "");
    w.sync_ok();
    w.server
        .add_flags(USER, "INBOX", a, &["\\Flagged"])
        .unwrap();
    let out = w.run(&["-q"]);
    assert!(out.status.success());
    let inbox = w.maildir().join("INBOX");
    assert_eq!(
        local_messages(&inbox)[0].flags,
        "",
        "quick sync fetched flags"
    );
    w.put("INBOX", "b");
    assert!(w.run(&["-q"]).status.success());
    assert_eq!(
        local_messages(&inbox).len(),
        2,
        "quick sync missed new mail"
    );
    assert_eq!(
        local_messages(&inbox)[0].flags,
        "F",
        "a changed folder is synced fully"
    );
    set_local_flags(&local_messages(&inbox)[1], "S");
    assert!(w.run(&["-q"]).status.success());
    assert!(
        w.server_messages("INBOX")
            .values()
            .any(|(s, f)| s == "b" && f == &["\\Seen"])
    );
}

/// utf8foldernames: server names in modified UTF-7, local names in UTF-8, both ways.
#[test]
fn utf8_folder_names_both_ways() {
    let Some(w) = World::new("utf8foldernames") else {
        return;
    };
    // doveadm speaks UTF-8 names; over IMAP this mailbox is "Gel&APY-schte".
    w.server.create_mailbox(USER, "Gelöschte").unwrap();
    w.put("Gelöschte", "deleted items");
    w.write_config("", "");
    add_to_account(&w, "utf8foldernames = yes");
    create_maildir(&w.maildir().join("Ünïcode"));
    w.sync_ok();
    assert_eq!(local_messages(&w.maildir().join("Gelöschte")).len(), 1);
    // Created over IMAP as "&ANw-n&AO8-code", which doveadm shows decoded.
    assert!(
        w.server
            .mailboxes(USER)
            .unwrap()
            .contains(&"Ünïcode".to_string())
    );
    assert_nothing_done(&w.sync_ok());
}

/// customflag_x: an IMAP keyword is a Maildir letter, both ways; a letter with no keyword
/// stays local and is never stripped.
#[test]
fn custom_flags_map_keywords_to_letters() {
    let Some(w) = World::new("customflags") else {
        return;
    };
    let a = w.put("INBOX", "labelled");
    w.server.add_flags(USER, "INBOX", a, &["$Label1"]).unwrap();
    w.put("INBOX", "plain");
    w.write_config("", "customflag_a = $Label1");
    w.sync_ok();
    let inbox = w.maildir().join("INBOX");
    let local = local_messages(&inbox);
    assert_eq!(local[0].subject, "labelled");
    assert_eq!(local[0].flags, "a");
    set_local_flags(&local[1], "Sab");
    w.sync_ok();
    let server = w.server_messages("INBOX");
    let plain = server.values().find(|(s, _)| s == "plain").unwrap();
    assert_eq!(plain.1, ["$Label1", "\\Seen"]);
    assert_nothing_done(&w.sync_ok());
    let local = local_messages(&inbox);
    assert_eq!(local[1].flags, "Sab", "a local-only letter was stripped");
}

/// maildir-windows-compatible: `!` instead of `:` in local names.
#[test]
fn windows_compatible_names() {
    let Some(w) = World::new("windows_compatible") else {
        return;
    };
    w.put("INBOX", "x");
    w.write_config("", "");
    add_to_account(&w, "maildir-windows-compatible = yes");
    w.sync_ok();
    let names: Vec<String> = std::fs::read_dir(w.maildir().join("INBOX/new"))
        .unwrap()
        .chain(std::fs::read_dir(w.maildir().join("INBOX/cur")).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(names.len(), 1);
    assert!(
        names[0].contains("!2,") && !names[0].contains(':'),
        "{names:?}"
    );
    assert_nothing_done(&w.sync_ok());
}

/// Credentials from ~/.netrc when the configuration has none (OfflineIMAP's fallback),
/// over IPv4 only.
#[test]
fn netrc_supplies_user_and_password() {
    let Some(w) = World::new("netrc") else { return };
    w.put("INBOX", "x");
    w.write_config("ipv6 = no", "");
    let text = std::fs::read_to_string(w.rc())
        .unwrap()
        .replace(&format!("remoteuser = {USER}\n"), "")
        .replace(&format!("remotepass = {PASS}\n"), "");
    std::fs::write(w.rc(), text).unwrap();
    let netrc = w.dir.path().join(".netrc");
    std::fs::write(
        &netrc,
        format!("machine 127.0.0.1\n  login {USER}\n  password {PASS}\n"),
    )
    .unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(&netrc).unwrap().permissions(),
        0o600,
    );
    std::fs::set_permissions(&netrc, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    w.sync_ok();
    assert_eq!(local_messages(&w.maildir().join("INBOX")).len(), 1);
}

/// maxconnections: folders synced at once over several connections end as one at a time.
#[test]
fn several_connections_sync_folders_at_once() {
    let Some(w) = World::new("maxconnections") else {
        return;
    };
    for f in ["A", "B", "C", "D"] {
        w.server.create_mailbox(USER, f).unwrap();
        for i in 0..5 {
            w.put(f, &format!("{f}{i}"));
        }
    }
    w.write_config("maxconnections = 3", "");
    w.sync_ok();
    for f in ["A", "B", "C", "D"] {
        assert_eq!(local_messages(&w.maildir().join(f)).len(), 5, "{f}");
    }
    assert_nothing_done(&w.sync_ok());
}

/// maxsize: larger messages are neither downloaded nor uploaded, and a large message that
/// was synced before is not deleted anywhere because of it.
#[test]
fn maxsize_leaves_large_messages_alone() {
    let Some(w) = World::new("maxsize") else {
        return;
    };
    w.put("INBOX", "small");
    let big = format!("{}{}", message("big"), "x".repeat(20_000));
    w.server.put_message(USER, "INBOX", big.as_bytes()).unwrap();
    w.write_config("", "");
    add_to_account(&w, "maxsize = 10000");
    let inbox = w.maildir().join("INBOX");
    create_maildir(&inbox);
    let big_local = format!("{}{}", message("big local"), "y".repeat(20_000));
    std::fs::write(inbox.join("new/1700000010.big.host"), big_local).unwrap();
    w.sync_ok();
    let subjects: Vec<_> = local_messages(&inbox)
        .into_iter()
        .map(|m| m.subject)
        .collect();
    assert_eq!(subjects, ["big local", "small"]);
    let server: Vec<_> = w
        .server_messages("INBOX")
        .into_values()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(server.len(), 2, "{server:?}");
    assert!(!server.contains(&"big local".to_string()));
    assert_nothing_done(&w.sync_ok());
}

/// A local folder whose name would not come back through the remote nametrans is not
/// created on the server (OfflineIMAP's check), and the run says why.
#[test]
fn folder_that_would_not_translate_back_is_refused_with_the_reason() {
    let Some(w) = World::new("nametrans_not_inverse") else {
        return;
    };
    w.put("INBOX", "inbox");
    w.write_config("", "nametrans = lambda f: f.upper()");
    create_maildir(&w.maildir().join("lower"));
    let out = w.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("folder lower would be created on the server as LOWER")
            && err.contains("not creating it"),
        "the reason was not shown:\n{err}"
    );
    assert!(
        !w.server
            .mailboxes(USER)
            .unwrap()
            .contains(&"LOWER".to_string())
    );
    assert_eq!(local_messages(&w.maildir().join("INBOX")).len(), 1);
}

/// A folder whose only change is new local mail sends it without a SELECT (see
/// `incremental::new_local_mail_is_sent_without_selecting_its_folder`); where the server
/// refuses the APPEND and opens the folder [READ-ONLY] (a Dovecot ACL of lookup and read
/// only), the message waits with the same warning as when the SELECT came first, the
/// sync succeeds, nothing is left to look for on the next run (no marker SEARCH), and the
/// message goes up once the rights come back. The same with a server without UIDPLUS,
/// where the folder is selected before its APPEND.
#[test]
fn new_local_mail_refused_by_a_read_only_folder_waits_with_a_warning() {
    refused_by_a_read_only_folder(None);
    let without_uidplus = "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT MULTIAPPEND \
                           UNSELECT CHILDREN NAMESPACE LIST-EXTENDED CONDSTORE QRESYNC ESEARCH \
                           LIST-STATUS MOVE LITERAL+";
    refused_by_a_read_only_folder(Some(without_uidplus));
}

fn refused_by_a_read_only_folder(capabilities: Option<&str>) {
    let options = oi_testkit::DovecotOptions {
        global_acl: Some(String::new()),
        imap_capability: capabilities.map(str::to_string),
        ..Default::default()
    };
    let Some(w) = World::with_options("readonly-append", &options) else {
        return;
    };
    let case = if capabilities.is_some() {
        "without UIDPLUS"
    } else {
        "with UIDPLUS"
    };
    w.server.create_mailbox(USER, "Shared").unwrap();
    w.put("Shared", "there");
    w.write_config("", "");
    w.sync_ok();
    w.server.set_global_acl("Shared owner lr\n").unwrap();
    let shared = w.maildir().join("Shared");
    std::fs::write(
        shared.join("new/1700000001.local.host"),
        message("new local"),
    )
    .unwrap();
    let err = w.sync_ok();
    assert!(
        err.contains(
            "folder Shared is read-only on the remote server: 1 message(s) not copied to it, \
             0 flag change(s) and 0 deletion(s) not made"
        ),
        "{case}: {err}"
    );
    assert_eq!(w.server_messages("Shared").len(), 1, "{case}");
    assert_eq!(local_messages(&shared).len(), 2, "{case}");
    // ignore-readonly: the same, without the warning, and no marker is searched for.
    let out = w.run(&["-k", "ignore-readonly=yes", "-d", "imap"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{case}: {err}");
    assert!(!err.contains("read-only"), "{case}: {err}");
    assert!(
        !err.contains("SEARCH HEADER X-OfflineIMAP"),
        "{case}: a marker searched for:\n{err}"
    );
    assert_eq!(w.server_messages("Shared").len(), 1, "{case}");
    // The right to insert again: it goes up, once.
    w.server.set_global_acl("").unwrap();
    let err = w.sync_ok();
    assert!(!err.contains("read-only"), "{case}: {err}");
    let subjects: Vec<String> = w
        .server_messages("Shared")
        .into_values()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(subjects.len(), 2, "{case}: {subjects:?}");
    assert!(subjects.contains(&"new local".to_string()), "{case}");
    assert_eq!(local_messages(&shared).len(), 2, "{case}");
    assert_nothing_done(&w.sync_ok());
}

/// A folder that the server opens [READ-ONLY] (here a Dovecot ACL granting its owner only
/// lookup and read; a shared folder in real life) is synced one way with a warning, where
/// every APPEND, STORE and EXPUNGE would fail the folder; ignore-readonly silences the
/// warning, and the local changes go through once the rights come back.
#[test]
fn folder_read_only_on_the_server_waits_with_a_warning() {
    let options = oi_testkit::DovecotOptions {
        global_acl: Some(String::new()),
        ..Default::default()
    };
    let Some(w) = World::with_options("readonly-server", &options) else {
        return;
    };
    w.server.create_mailbox(USER, "Shared").unwrap();
    w.put("Shared", "seen later");
    w.put("Shared", "deleted later");
    w.put("INBOX", "inbox");
    w.write_config("", "");
    w.sync_ok();
    let shared = w.maildir().join("Shared");
    let before = w.server_messages("Shared");
    assert_eq!(before.len(), 2);
    w.server.set_global_acl("Shared owner lr\n").unwrap();
    // Local changes: a flag, a deletion, a new message; and a new message in INBOX.
    for m in local_messages(&shared) {
        match m.subject.as_str() {
            "seen later" => set_local_flags(&m, "S"),
            _ => std::fs::remove_file(&m.path).unwrap(),
        }
    }
    std::fs::write(
        shared.join("new/1700000001.local.host"),
        message("new local"),
    )
    .unwrap();
    std::fs::write(
        w.maildir().join("INBOX/new/1700000002.local.host"),
        message("inbox local"),
    )
    .unwrap();
    let err = w.sync_ok();
    assert!(
        err.contains(
            "folder Shared is read-only on the remote server: 1 message(s) not copied to it, \
             1 flag change(s) and 1 deletion(s) not made"
        ),
        "{err}"
    );
    assert_eq!(w.server_messages("Shared"), before);
    assert_eq!(
        w.server_messages("INBOX").len(),
        2,
        "INBOX is not read-only"
    );
    // Nothing came back locally: the deletion and the flag wait in the status.
    let subjects = |f: &std::path::Path| {
        let mut s: Vec<(String, String)> = local_messages(f)
            .into_iter()
            .map(|m| (m.subject, m.flags))
            .collect();
        s.sort();
        s
    };
    let waiting = vec![
        ("new local".to_string(), String::new()),
        ("seen later".to_string(), "S".to_string()),
    ];
    assert_eq!(subjects(&shared), waiting);
    // ignore-readonly: the same, without the warning.
    let out = w.run(&["-k", "ignore-readonly=yes"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("read-only"), "{err}");
    assert_eq!(w.server_messages("Shared"), before);
    assert_eq!(subjects(&shared), waiting);
    // Write rights again: everything that waited is done.
    w.server.set_global_acl("").unwrap();
    let err = w.sync_ok();
    assert!(!err.contains("read-only"), "{err}");
    let mut now: Vec<(String, Vec<String>)> = w.server_messages("Shared").into_values().collect();
    now.sort();
    assert_eq!(
        now,
        vec![
            ("new local".to_string(), vec![]),
            ("seen later".to_string(), vec!["\\Seen".to_string()]),
        ]
    );
    assert_eq!(subjects(&shared), waiting);
    assert_nothing_done(&w.sync_ok());
}
