//! One-shot commands and exit statuses.

use crate::common::*;

#[test]
fn info_lists_repositories_and_folders_without_secrets() {
    let Some(w) = World::new("info") else { return };
    w.server.create_mailbox(USER, "Archive").unwrap();
    w.write_config("", "");
    let out = w.run(&["--info"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("account Test"), "{text}");
    assert!(text.contains("Archive -> Archive"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", w.server.imap_port())),
        "{text}"
    );
    assert!(!text.contains(PASS), "password printed: {text}");
    assert!(!w.maildir().join("INBOX").exists(), "--info synced");
}

#[test]
fn delete_folder_removes_it_on_the_server() {
    let Some(w) = World::new("delete_folder") else {
        return;
    };
    w.server.create_mailbox(USER, "Old").unwrap();
    w.write_config("", "");
    let out = w.run(&["--delete-folder", "Old"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !w.server
            .mailboxes(USER)
            .unwrap()
            .contains(&"Old".to_string())
    );
    let out = w.run(&["--delete-folder", "NoSuch"]);
    assert!(!out.status.success());
}

#[test]
fn migrate_fmd5_renames_old_style_names() {
    let Some(w) = World::new("migrate_fmd5") else {
        return;
    };
    w.write_config("", "nametrans = lambda f: 'X' + f");
    let cur = w.maildir().join("INBOX/cur");
    std::fs::create_dir_all(&cur).unwrap();
    std::fs::create_dir_all(w.maildir().join("INBOX/new")).unwrap();
    std::fs::create_dir_all(w.maildir().join("INBOX/tmp")).unwrap();
    let old = format!("1700000000_0.1.host,U=7,FMD5={}:2,S", md5_hex("INBOX"));
    std::fs::write(cur.join(&old), message("m")).unwrap();
    let out = w.run(&["--migrate-fmd5-using-nametrans"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = std::fs::read_dir(&cur)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    assert_eq!(
        names,
        [format!(
            "1700000000_0.1.host,U=7,FMD5={}:2,S",
            md5_hex("XINBOX")
        )]
    );
}

#[test]
fn distinct_exit_codes_tell_synced_nothing_and_errors_apart() {
    let Some(w) = World::new("exit_codes") else {
        return;
    };
    w.put("INBOX", "a");
    w.write_config("", "");
    let code = |w: &World| w.run(&["--distinct-exit-codes"]).status.code();
    assert_eq!(code(&w), Some(0), "synced something");
    assert_eq!(code(&w), Some(3), "nothing to do");
    // Without the flag, nothing to do is a plain success, as in OfflineIMAP.
    assert_eq!(w.run(&[]).status.code(), Some(0));
    let text = std::fs::read_to_string(w.rc())
        .unwrap()
        .replace(PASS, "wrong");
    std::fs::write(w.rc(), text).unwrap();
    assert_eq!(code(&w), Some(1), "errors");
}
