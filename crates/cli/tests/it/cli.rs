//! Command line, configuration and exit status.

use std::process::Command;

use crate::common::*;

#[test]
fn version_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_offlineimap"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("offlineimap "));
}

#[test]
fn config_error_names_file_line_and_option() {
    let dir = tempfile::tempdir().unwrap();
    let rc = dir.path().join("rc");
    std::fs::write(
        &rc,
        "[general]\naccounts = A\n\n[Account A]\nlocalrepository = L\nremoterepository = R\n\
         [Repository L]\ntype = Maildir\nlocalfolders = /tmp/x\n\
         [Repository R]\ntype = IMAP\nremotehost = 127.0.0.1\nssl = maybe\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_offlineimap"))
        .env("HOME", dir.path())
        .arg("-c")
        .arg(&rc)
        .arg("-o")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains(&format!("{}:13", rc.display())), "{err}");
    assert!(err.contains("ssl"), "{err}");
}

#[test]
fn config_found_in_xdg_then_home() {
    let dir = tempfile::tempdir().unwrap();
    // No config anywhere: the error names the home file it looked for.
    let out = Command::new(env!("CARGO_BIN_EXE_offlineimap"))
        .env_clear()
        .env("HOME", dir.path())
        .arg("-o")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(".offlineimaprc"));
}

#[test]
fn dry_run_changes_nothing_anywhere() {
    let Some(w) = World::new("dry_run") else {
        return;
    };
    w.put("INBOX", "a");
    w.write_config("", "");
    let out = w.run(&["--dry-run"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("would"), "{err}");
    assert!(
        !w.maildir().join("INBOX").exists(),
        "dry run created the local folder"
    );
    assert!(
        !w.metadata()
            .join("Account-Test/LocalStatus-sqlite/INBOX")
            .exists()
    );
    // After a real sync, local changes are planned but not carried out.
    w.sync_ok();
    let inbox = w.maildir().join("INBOX");
    let m = &local_messages(&inbox)[0];
    set_local_flags(m, "FS");
    let before = w.server_messages("INBOX");
    let out = w.run(&["--dry-run"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("flags"));
    assert_eq!(w.server_messages("INBOX"), before);
    // `dry-run = True` in [general] is a dry run too (OfflineIMAP's accounts read the
    // option), given in the file or with -k.
    let rc = std::fs::read_to_string(w.rc()).unwrap();
    std::fs::write(
        w.rc(),
        rc.replace("[general]\n", "[general]\ndry-run = True\n"),
    )
    .unwrap();
    let out = w.run(&[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("would") && !err.contains("not supported"),
        "{err}"
    );
    assert_eq!(w.server_messages("INBOX"), before);
    std::fs::write(w.rc(), rc).unwrap();
    let out = w.run(&["-k", "dry-run=yes"]);
    assert!(out.status.success());
    assert_eq!(w.server_messages("INBOX"), before);
    // Without it the change goes through.
    w.sync_ok();
    assert_ne!(w.server_messages("INBOX"), before);
}

#[test]
fn folder_and_account_selection_and_overrides() {
    let Some(w) = World::new("selection") else {
        return;
    };
    w.server.create_mailbox(USER, "Other").unwrap();
    w.put("INBOX", "a");
    w.put("Other", "o");
    // The config names a wrong password: -k fixes it.
    w.write_config("", "");
    let text = std::fs::read_to_string(w.rc())
        .unwrap()
        .replace("remotepass = alicepass", "remotepass = wrong");
    std::fs::write(w.rc(), text).unwrap();
    let out = w.run(&["-f", "Other"]);
    assert!(!out.status.success(), "a wrong password logged in");
    let out = w.run(&[
        "-f",
        "Other",
        "-k",
        "Repository_Remote:remotepass=alicepass",
        "-a",
        "Test",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(local_messages(&w.maildir().join("Other")).len(), 1);
    assert!(
        !w.maildir().join("INBOX").exists(),
        "-f Other synced INBOX too"
    );
    let out = w.run(&["-a", "NoSuchAccount"]);
    assert!(!out.status.success());
}

#[test]
fn password_never_appears_in_debug_output() {
    let Some(w) = World::new("password_redacted") else {
        return;
    };
    w.put("INBOX", "a");
    w.write_config("", "");
    let out = w.run(&["-d", "ALL"]);
    assert!(out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("LOGIN") || all.contains("AUTHENTICATE"),
        "no protocol trace: {all}"
    );
    assert!(!all.contains(PASS), "password in the debug output");
}

#[test]
fn a_second_instance_is_locked_out() {
    let Some(w) = World::new("account_lock") else {
        return;
    };
    w.write_config("", "");
    std::fs::create_dir_all(w.metadata()).unwrap();
    // Hold OfflineIMAP's lock with python's fcntl.lockf, as OfflineIMAP itself does.
    let lock = w.metadata().join("Test.lock");
    let mut holder = Command::new("python3")
        .args([
            "-c",
            "import fcntl,sys,time; f=open(sys.argv[1],'w'); fcntl.lockf(f, fcntl.LOCK_EX|fcntl.LOCK_NB); print('locked', flush=True); time.sleep(30)",
        ])
        .arg(&lock)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let out = w.run(&[]);
    holder.kill().unwrap();
    let _ = holder.wait();
    assert!(
        !out.status.success(),
        "synced while another instance held the lock"
    );
    w.sync_ok();
}
