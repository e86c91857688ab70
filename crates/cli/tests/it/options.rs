//! Message and folder selection options through the binary: `maxage`, `startdate`.

use crate::common::*;
use crate::long_running::{add_to_account, add_to_general};

/// APPENDs a message as alice with an INTERNALDATE.
fn append_dated(w: &World, mailbox: &str, subject: &str, date: &str) {
    append_dated_as(w, (USER, PASS), mailbox, subject, date);
}

fn subjects(w: &World, folder: &str) -> Vec<String> {
    local_messages(&w.maildir().join(folder))
        .into_iter()
        .map(|m| m.subject)
        .collect()
}

fn server_subjects(w: &World, mailbox: &str) -> Vec<String> {
    let mut v: Vec<String> = w
        .server_messages(mailbox)
        .into_values()
        .map(|(s, _)| s)
        .collect();
    v.sort();
    v
}

const OLD: &str = "02-Jan-2020 10:00:00 +0000";

/// maxage = N days: only the server's recent messages are downloaded; a new local message
/// is uploaded; nothing else moves, and a second run has nothing to do.
#[test]
fn maxage_days_downloads_only_recent_messages() {
    let Some(w) = World::new("maxage_days") else {
        return;
    };
    append_dated(&w, "INBOX", "old one", OLD);
    append_dated(&w, "INBOX", "old two", OLD);
    w.put("INBOX", "recent");
    w.write_config("", "");
    add_to_account(&w, "maxage = 30");
    let inbox = w.maildir().join("INBOX");
    create_maildir(&inbox);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::fs::write(
        inbox.join(format!("new/{now}.local.host")),
        message("local new"),
    )
    .unwrap();
    w.sync_ok();
    assert_eq!(subjects(&w, "INBOX"), ["local new", "recent"]);
    assert_eq!(
        server_subjects(&w, "INBOX"),
        ["local new", "old one", "old two", "recent"]
    );
    assert_nothing_done(&w.sync_ok());
}

/// A message synced before maxage was set, once outside the window, is neither deleted
/// on the server when its local copy goes nor changed locally when its server flags
/// change; its record is forgotten (as OfflineIMAP forgets it), so dropping maxage later
/// brings it back instead of deleting it on the server.
#[test]
fn maxage_never_reads_an_old_message_as_deleted() {
    let Some(w) = World::new("maxage_old") else {
        return;
    };
    let old1 = {
        append_dated(&w, "INBOX", "old one", OLD);
        *w.server_messages("INBOX").keys().max().unwrap()
    };
    append_dated(&w, "INBOX", "old two", OLD);
    let old2 = *w.server_messages("INBOX").keys().max().unwrap();
    w.put("INBOX", "recent");
    w.write_config("", "");
    w.sync_ok();
    assert_eq!(subjects(&w, "INBOX"), ["old one", "old two", "recent"]);

    let plain = std::fs::read_to_string(w.rc()).unwrap();
    add_to_account(&w, "maxage = 30");
    let local = local_messages(&w.maildir().join("INBOX"));
    std::fs::remove_file(&local.iter().find(|m| m.subject == "old one").unwrap().path).unwrap();
    w.server
        .add_flags(USER, "INBOX", old2, &["\\Flagged"])
        .unwrap();
    let out = w.sync_ok();
    assert_nothing_done(&out);
    assert_eq!(
        server_subjects(&w, "INBOX"),
        ["old one", "old two", "recent"]
    );
    let local = local_messages(&w.maildir().join("INBOX"));
    let two = local.iter().find(|m| m.subject == "old two").unwrap();
    assert!(!two.flags.contains('F'), "{two:?}");
    assert!(w.server_messages("INBOX").contains_key(&old1));

    // Without maxage the whole folder is seen again: the old message comes back.
    std::fs::write(w.rc(), plain).unwrap();
    w.sync_ok();
    assert_eq!(subjects(&w, "INBOX"), ["old one", "old two", "recent"]);
    assert_eq!(
        server_subjects(&w, "INBOX"),
        ["old one", "old two", "recent"]
    );
}

/// maxage = yyyy-mm-dd; a day in the future and a bad value are refused with the option
/// named; quick syncs are turned off with OfflineIMAP's warning.
#[test]
fn maxage_date_and_errors() {
    let Some(w) = World::new("maxage_date") else {
        return;
    };
    append_dated(&w, "INBOX", "ancient", "02-Jan-2010 10:00:00 +0000");
    append_dated(&w, "INBOX", "old", OLD);
    w.write_config("", "");
    let plain = std::fs::read_to_string(w.rc()).unwrap();
    add_to_account(&w, "maxage = 2015-06-01");
    let out = w.run(&["-q"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("not supported in conjunction with maxage"),
        "{err}"
    );
    assert_eq!(subjects(&w, "INBOX"), ["old"]);

    for (value, expect) in [
        ("2999-01-01", "future date 2999-01-01"),
        ("0", "invalid maxage value 0"),
        ("2020-02-30", "invalid maxage value"),
        ("last week", "invalid maxage value"),
    ] {
        std::fs::write(w.rc(), &plain).unwrap();
        add_to_account(&w, &format!("maxage = {value}"));
        let out = w.run(&[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{value}: {err}");
        assert!(err.contains(expect), "{value}: {err}");
        assert!(err.contains("maxage"), "{value}: {err}");
    }
}

fn add_to_section(w: &World, header: &str, option: &str) {
    let text = std::fs::read_to_string(w.rc())
        .unwrap()
        .replace(header, &format!("{header}\n{option}"));
    std::fs::write(w.rc(), text).unwrap();
}

/// startdate on the remote repository: the first sync takes the server's messages since the
/// day and saves the first one's UID in Repository-Remote/StartUID/INBOX (OfflineIMAP's
/// file); later syncs take every UID from there on, whatever its date.
#[test]
fn startdate_on_remote_saves_the_first_uid() {
    let Some(w) = World::new("startdate") else {
        return;
    };
    append_dated(&w, "INBOX", "before", OLD);
    append_dated(&w, "INBOX", "after", "05-Mar-2022 10:00:00 +0000");
    let after = *w.server_messages("INBOX").keys().max().unwrap();
    w.put("INBOX", "recent");
    w.write_config("startdate = 2021-01-01", "");
    let out = w.run(&["-q"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("not supported in conjunction with maxage or startdate"),
        "{err}"
    );
    assert_eq!(subjects(&w, "INBOX"), ["after", "recent"]);
    let saved = w.metadata().join("Repository-Remote/StartUID/INBOX");
    assert_eq!(
        std::fs::read_to_string(&saved).unwrap(),
        format!("{after}\n")
    );
    assert_nothing_done(&w.sync_ok());

    // An old-dated message arriving later has a UID above the saved one: it is synced.
    append_dated(&w, "INBOX", "late but old", "01-Jan-2019 10:00:00 +0000");
    w.sync_ok();
    assert_eq!(subjects(&w, "INBOX"), ["after", "late but old", "recent"]);
    assert_eq!(
        server_subjects(&w, "INBOX"),
        ["after", "before", "late but old", "recent"]
    );
}

/// The other side must be empty when a folder is first synced with startdate: the folder
/// fails with OfflineIMAP's explanation and nothing is saved or changed.
#[test]
fn startdate_needs_an_empty_other_side_at_first() {
    let Some(w) = World::new("startdate_nonempty") else {
        return;
    };
    append_dated(&w, "INBOX", "after", "05-Mar-2022 10:00:00 +0000");
    w.write_config("startdate = 2021-01-01", "");
    let inbox = w.maildir().join("INBOX");
    create_maildir(&inbox);
    std::fs::write(inbox.join("new/1700000000.x.host"), message("local")).unwrap();
    let out = w.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("must be empty"), "{err}");
    assert!(
        !w.metadata()
            .join("Repository-Remote/StartUID/INBOX")
            .exists()
    );
    assert_eq!(server_subjects(&w, "INBOX"), ["after"]);
    assert_eq!(subjects(&w, "INBOX"), ["local"]);
}

/// Bad startdate values and forbidden combinations are configuration errors naming the
/// option.
#[test]
fn startdate_errors() {
    let Some(w) = World::new("startdate_errors") else {
        return;
    };
    w.write_config("", "");
    let plain = std::fs::read_to_string(w.rc()).unwrap();
    for (remote, local, account, expect) in [
        ("startdate = 2021-13-01", "", "", "invalid startdate value"),
        ("startdate = 2999-01-01", "", "", "future date 2999-01-01"),
        (
            "startdate = 2021-01-01",
            "startdate = 2021-01-01",
            "",
            "both repositories",
        ),
        (
            "startdate = 2021-01-01",
            "",
            "maxage = 3",
            "cannot be used together",
        ),
    ] {
        std::fs::write(w.rc(), &plain).unwrap();
        add_to_section(&w, "[Repository Remote]", remote);
        add_to_section(&w, "[Repository Local]", local);
        add_to_account(&w, account);
        let out = w.run(&[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{remote}: {err}");
        assert!(err.contains(expect), "{remote} {local} {account}: {err}");
        assert!(err.contains("startdate"), "{err}");
    }
}

/// copy_ignore_eval: the UIDs the function returns for a folder (by its visible name) are
/// never downloaded, never deleted from the server for it, and come down once the option
/// is gone.
#[test]
fn copy_ignore_eval_skips_listed_uids() {
    let Some(w) = World::new("copy_ignore") else {
        return;
    };
    w.put("INBOX", "one");
    let two = w.put("INBOX", "two");
    w.put("INBOX", "three");
    w.write_config("", "");
    let plain = std::fs::read_to_string(w.rc()).unwrap();
    add_to_section(
        &w,
        "[Repository Remote]",
        &format!("copy_ignore_eval = lambda folder: [{two}] if folder == 'INBOX' else None"),
    );
    w.sync_ok();
    assert_eq!(subjects(&w, "INBOX"), ["one", "three"]);
    assert_nothing_done(&w.sync_ok());
    assert_eq!(server_subjects(&w, "INBOX"), ["one", "three", "two"]);

    std::fs::write(w.rc(), &plain).unwrap();
    w.sync_ok();
    assert_eq!(subjects(&w, "INBOX"), ["one", "three", "two"]);

    // A result that is not a list of UIDs fails the folder with the option named.
    add_to_section(
        &w,
        "[Repository Remote]",
        "copy_ignore_eval = lambda folder: 'x'",
    );
    let out = w.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("copy_ignore_eval"), "{err}");
}

/// filterheaders ([Account]): the named header fields are removed from the copy uploaded to
/// the server (OfflineIMAP's IMAP savemessage), every occurrence and any case; the local
/// file keeps them.
#[test]
fn filterheaders_strips_uploaded_copies() {
    let Some(w) = World::new("filterheaders") else {
        return;
    };
    w.write_config("", "");
    add_to_account(&w, "filterheaders = X-Spam-Score , x-junk");
    let inbox = w.maildir().join("INBOX");
    create_maildir(&inbox);
    let body = message("filtered").replacen(
        "Subject:",
        "X-Spam-Score: 5\r\n  more\r\nX-Junk: 1\r\nX-Keep: yes\r\nx-spam-score: 6\r\nSubject:",
        1,
    );
    std::fs::write(inbox.join("new/1700000000.f.host"), &body).unwrap();
    w.sync_ok();
    let server = w.server.messages(USER, "INBOX").unwrap();
    assert_eq!(server.len(), 1);
    let text = String::from_utf8_lossy(&server[0].body).to_string();
    assert!(text.contains("X-Keep: yes"), "{text}");
    assert!(text.contains("Subject: filtered"), "{text}");
    assert!(
        !text.to_ascii_lowercase().contains("x-spam-score"),
        "{text}"
    );
    assert!(!text.contains("more"), "{text}");
    assert!(!text.contains("X-Junk"), "{text}");
    let local = local_messages(&inbox);
    let kept = std::fs::read_to_string(&local[0].path).unwrap();
    assert!(kept.contains("X-Spam-Score: 5"), "{kept}");
    assert_nothing_done(&w.sync_ok());
}

fn local_folders(w: &World) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(w.maildir())
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// subscribedonly: only the folders the server lists with LSUB are synced.
#[test]
fn subscribedonly_syncs_subscribed_folders() {
    let Some(w) = World::new("subscribedonly") else {
        return;
    };
    for name in ["Sub", "Unsub"] {
        w.server.create_mailbox(USER, name).unwrap();
        w.put(name, &format!("in {name}"));
    }
    w.put("INBOX", "inbox");
    w.doveadm(&["mailbox", "subscribe", "-u", USER, "Sub"]);
    w.write_config("subscribedonly = yes", "");
    w.sync_ok();
    assert_eq!(local_folders(&w), ["Sub"]);
    assert_eq!(subjects(&w, "Sub"), ["in Sub"]);
}

/// reference: only the folders under the reference are listed (`LIST Work "*"`), synced under
/// their full server names through nametrans; a folder made locally is created on the server
/// under the reference, as OfflineIMAP's makefolder does, and found there by the next run.
#[test]
fn reference_lists_and_creates_under_the_prefix() {
    let Some(w) = World::new("reference") else {
        return;
    };
    for name in ["Work", "Work.Projects", "Other"] {
        w.server.create_mailbox(USER, name).unwrap();
    }
    w.put("Work.Projects", "project mail");
    w.put("Other", "other mail");
    w.put("INBOX", "inbox mail");
    w.write_config(
        "reference = Work\nnametrans = lambda f: re.sub(r'^Work\\.', '', f)",
        "",
    );
    w.sync_ok();
    assert_eq!(local_folders(&w), ["Projects", "Work"]);
    assert_eq!(subjects(&w, "Projects"), ["project mail"]);

    // A local folder goes to the server under the reference.
    let drafts = w.maildir().join("Drafts");
    create_maildir(&drafts);
    std::fs::write(drafts.join("new/1.local"), message("a draft")).unwrap();
    w.sync_ok();
    let mut boxes = w.server.mailboxes(USER).unwrap();
    boxes.sort();
    assert_eq!(
        boxes,
        ["INBOX", "Other", "Work", "Work.Drafts", "Work.Projects"]
    );
    assert_eq!(server_subjects(&w, "Work.Drafts"), ["a draft"]);
    // The next run pairs Work.Drafts with Drafts: nothing is created or copied again.
    assert_nothing_done(&w.sync_ok());
    assert_eq!(local_folders(&w), ["Drafts", "Projects", "Work"]);
}

/// reference without a nametrans that strips it: a local folder would be created on the server
/// as `Work.New`, which would come back as another local folder; it is refused with the reason,
/// and the server is left alone.
#[test]
fn reference_refuses_a_folder_that_would_not_come_back() {
    let Some(w) = World::new("reference_no_strip") else {
        return;
    };
    w.server.create_mailbox(USER, "Work").unwrap();
    w.put("Work", "work mail");
    w.write_config("reference = Work", "");
    w.sync_ok();
    assert_eq!(local_folders(&w), ["Work"]);
    let new = w.maildir().join("New");
    create_maildir(&new);
    let out = w.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("would be created on the server as Work.New") && err.contains("reference"),
        "{err}"
    );
    let mut boxes = w.server.mailboxes(USER).unwrap();
    boxes.sort();
    assert_eq!(boxes, ["INBOX", "Work"]);
}

/// dynamic_folderfilter: in autorefresh mode each sync applies folderfilter afresh, so a
/// filter whose answer changes (here: it reads a file) brings in the new folder at the next
/// sync, without a restart.
#[test]
fn dynamic_folderfilter_is_evaluated_at_each_sync() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let Some(w) = World::new("dynamic_folderfilter") else {
        return;
    };
    w.server.create_mailbox(USER, "Extra").unwrap();
    w.put("Extra", "extra mail");
    w.put("INBOX", "inbox mail");
    let list = w.dir.path().join("folders");
    std::fs::write(&list, "INBOX\n").unwrap();
    let py = w.dir.path().join("filter.py");
    std::fs::write(
        &py,
        format!(
            "def wanted(name):\n    with open({:?}) as f:\n        return name in f.read().split()\n",
            list.display().to_string()
        ),
    )
    .unwrap();
    w.write_config("folderfilter = wanted\ndynamic_folderfilter = yes", "");
    add_to_general(&w, &format!("pythonfile = {}", py.display()));
    add_to_account(&w, "autorefresh = 10");
    let mut child = w
        .command()
        .args(["-u", "basic"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let eventually = |what: &str, f: &mut dyn FnMut() -> bool| {
        // A bound against hangs, not a speed assertion.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !f() {
            assert!(Instant::now() < deadline, "never happened: {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    eventually("first sync", &mut || {
        subjects(&w, "INBOX") == ["inbox mail"]
    });
    assert!(!w.maildir().join("Extra").exists());
    std::fs::write(&list, "INBOX\nExtra\n").unwrap();
    let pid = child.id().to_string();
    eventually("Extra synced after the filter changed", &mut || {
        let _ = Command::new("kill").args(["-USR1", &pid]).status();
        std::thread::sleep(Duration::from_millis(300));
        subjects(&w, "Extra") == ["extra mail"]
    });
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// issue #3 point 6: an inline `# comment` after a path stays in the value, as Python's
/// configparser keeps it; a file that then does not exist is an error that says so, and a
/// directory OfflineIMAP would create is created under that name, with a warning.
#[test]
fn inline_comment_after_a_path_is_part_of_it() {
    let Some(w) = World::new("inline_comment") else {
        return;
    };
    w.put("INBOX", "hello");
    w.write_config("", "");
    let plain = std::fs::read_to_string(w.rc()).unwrap();
    let mail = w.maildir().display().to_string();
    std::fs::write(
        w.rc(),
        plain.replace(
            &format!("localfolders = {mail}\n"),
            &format!("localfolders = {mail}  # my mail\n"),
        ),
    )
    .unwrap();
    let err = w.sync_ok();
    assert!(
        err.contains("inline comments are not comments in offlineimaprc"),
        "{err}"
    );
    let kept = w.dir.path().join("Mail  # my mail");
    assert_eq!(
        local_messages(&kept.join("INBOX")).len(),
        1,
        "the folder should be under {}",
        kept.display()
    );

    let helpers = w.dir.path().join("helpers.py");
    std::fs::write(&helpers, "X = 1\n").unwrap();
    std::fs::write(
        w.rc(),
        plain.replacen(
            "[general]\n",
            &format!("[general]\npythonfile = {} # helpers\n", helpers.display()),
            1,
        ),
    )
    .unwrap();
    let out = w.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("pythonfile"), "{err}");
    assert!(err.contains(":2:"), "the error names the line: {err}");
    assert!(
        err.contains("inline comments are not comments in offlineimaprc"),
        "{err}"
    );
}

/// OfflineIMAP 8 and we agree on maxage and startdate: after its syncs of the same server,
/// ours has nothing to do (reading its StartUID files).
#[test]
fn maxage_and_startdate_continue_offlineimap8() {
    use crate::compat::{offlineimap8, run_offlineimap8};
    let Some(bin) = offlineimap8() else { return };
    for option in ["maxage", "startdate"] {
        let Some(w) = World::new("window_compat") else {
            return;
        };
        append_dated(&w, "INBOX", "old", OLD);
        append_dated(&w, "INBOX", "after", "05-Mar-2022 10:00:00 +0000");
        w.put("INBOX", "recent");
        w.server.create_mailbox(USER, "Quiet").unwrap();
        append_dated(&w, "Quiet", "old quiet", OLD);
        match option {
            "maxage" => {
                w.write_config("", "");
                add_to_account(&w, "maxage = 30");
            }
            _ => {
                w.write_config("startdate = 2021-01-01", "");
                // OfflineIMAP 8 races its folder threads on mkdir of this directory
                // (FileExistsError fails a folder now and then): have it already.
                std::fs::create_dir_all(w.metadata().join("Repository-Remote/StartUID")).unwrap();
            }
        }
        // Twice: a second run of OfflineIMAP itself still moves mail with startdate.
        run_offlineimap8(&bin, &w);
        run_offlineimap8(&bin, &w);
        let theirs = (subjects(&w, "INBOX"), subjects(&w, "Quiet"));
        let out = w.sync_ok();
        assert_nothing_done(&out);
        assert_eq!(
            (subjects(&w, "INBOX"), subjects(&w, "Quiet")),
            theirs,
            "{option}"
        );
        match option {
            "maxage" => assert_eq!(theirs.0, ["recent"]),
            _ => {
                assert_eq!(theirs.0, ["after", "recent"]);
                let start = w.metadata().join("Repository-Remote/StartUID");
                assert_eq!(std::fs::read_to_string(start.join("INBOX")).unwrap(), "2\n");
                // OfflineIMAP's quirk, kept: a folder with nothing since the day saves 1,
                // so its old mail comes down from the second sync on.
                assert_eq!(std::fs::read_to_string(start.join("Quiet")).unwrap(), "1\n");
                assert_eq!(theirs.1, ["old quiet"]);
            }
        }
    }
}

/// startdate on the local Maildir: the first sync uploads only its messages since the day
/// (the remote must be empty) and saves StartUID 1 in Repository-Local (nothing had a UID);
/// from then on every local message takes part, as in OfflineIMAP, so the old one follows.
#[test]
fn startdate_on_local_maildir() {
    let Some(w) = World::new("startdate_local") else {
        return;
    };
    w.write_config("", "startdate = 2021-01-01");
    let inbox = w.maildir().join("INBOX");
    create_maildir(&inbox);
    // 1500000000 is in 2017, 1700000000 in 2023.
    std::fs::write(inbox.join("new/1500000000.old.host"), message("old local")).unwrap();
    std::fs::write(inbox.join("new/1700000000.new.host"), message("new local")).unwrap();
    w.server.create_mailbox(USER, "INBOX").ok();
    w.sync_ok();
    assert_eq!(server_subjects(&w, "INBOX"), ["new local"]);
    let start = w.metadata().join("Repository-Local/StartUID/INBOX");
    assert_eq!(std::fs::read_to_string(&start).unwrap(), "1\n");
    w.sync_ok();
    assert_eq!(server_subjects(&w, "INBOX"), ["new local", "old local"]);
    assert_nothing_done(&w.sync_ok());
}

/// filterheaders with an IMAP local repository: OfflineIMAP filters whatever an IMAP folder
/// saves, so the fields go from downloads into the local server as well as from uploads.
#[test]
fn filterheaders_imap_to_imap_filters_both_ways() {
    let Some(w) = World::new("filterheaders_imap") else {
        return;
    };
    let with_junk =
        |subject: &str| message(subject).replacen("Subject:", "X-Junk: 1\r\nSubject:", 1);
    w.server
        .put_message(USER, "INBOX", with_junk("from alice").as_bytes())
        .unwrap();
    w.server
        .put_message("bob", "INBOX", with_junk("from bob").as_bytes())
        .unwrap();
    w.write_imap_to_imap_config("filterheaders = X-Junk\n", "", "");
    w.sync_ok();
    for user in [USER, "bob"] {
        let msgs = w.server.messages(user, "INBOX").unwrap();
        assert_eq!(msgs.len(), 2, "{user}");
        for m in msgs {
            let body = String::from_utf8_lossy(&m.body).to_string();
            let subject = subject_of(&m.body);
            // Each side's own message keeps the field; the copy does not.
            let own = (user == USER) == (subject == "from alice");
            assert_eq!(body.contains("X-Junk"), own, "{user}: {body}");
        }
    }
    assert_nothing_done(&w.sync_ok());
}
