//! Bounded memory: a message far larger than the process may grow goes both ways through
//! files (partial FETCHes into the Maildir's tmp/, APPEND literals streamed from the file),
//! and the process's peak resident memory stays a fraction of the message's size.

use std::io::Write;
use std::os::unix::fs::chown;
use std::process::{Command, Stdio};

use crate::common::*;

const BIG: usize = 100 << 20;

/// A text message of about `size` bytes with LF line ends.
pub(crate) fn big_message(id: &str, size: usize) -> Vec<u8> {
    let mut m = format!(
        "From: big@example.org\nTo: b@example.org\nSubject: {id}\nMessage-ID: <{id}@large>\n\
         Date: Mon, 2 Nov 2026 10:00:00 +0000\n\n"
    )
    .into_bytes();
    let mut n = 0u64;
    while m.len() < size {
        n += 1;
        m.extend_from_slice(format!("line {n:09} of a very large message body.\n").as_bytes());
    }
    m
}

/// Writes [`big_message`] to a file a line at a time: nothing large is ever allocated
/// before the measured run (a child's peak RSS as wait4 reports it includes what its
/// parent held when it was spawned).
fn write_big(path: &std::path::Path, id: &str, size: usize) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let head = big_message(id, 0);
    f.write_all(&head).unwrap();
    let (mut len, mut n) = (head.len(), 0u64);
    while len < size {
        n += 1;
        let line = format!("line {n:09} of a very large message body.\n");
        f.write_all(line.as_bytes()).unwrap();
        len += line.len();
    }
    f.flush().unwrap();
}

/// The message as its bytes without CRs and without our upload marker line.
pub(crate) fn normalized(bytes: &[u8]) -> Vec<u8> {
    let text: Vec<u8> = bytes.iter().copied().filter(|&b| b != b'\r').collect();
    let mut out = Vec::with_capacity(text.len());
    for line in text.split_inclusive(|&b| b == b'\n') {
        if !line.starts_with(b"X-OfflineIMAP: ") {
            out.extend_from_slice(line);
        }
    }
    out
}

/// Runs the binary and asserts it succeeded; returns its stderr and its peak RSS in KiB,
/// read from the child's own `VmHWM` while it runs (wait4's figure would include what the
/// test process held when it spawned the child).
fn run_measured(w: &World, extra: &[&str]) -> (String, u64) {
    let err_path = w.dir.path().join("stderr.log");
    let err_file = std::fs::File::create(&err_path).unwrap();
    let mut child = w
        .command()
        .args(["-o", "-u", "basic"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(err_file)
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0u64;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            let hwm = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            peak = peak.max(hwm.unwrap_or(0));
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert!(
        status.success(),
        "sync failed:\n{}",
        &err[err.len().saturating_sub(4000)..]
    );
    (err, peak)
}

#[test]
fn hundred_megabyte_messages_go_both_ways_in_bounded_memory() {
    let Some(w) = World::new("large_messages") else {
        return;
    };
    w.write_config("", "");
    // On the server: a big message delivered straight into its Maildir, and a small one.
    let server_maildir = w.server.maildir_of(USER);
    create_maildir(&server_maildir);
    let path = server_maildir.join("new/1700000000.big.host");
    write_big(&path, "remote-big", BIG);
    let owner = crate::scenarios::nobody();
    Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", owner.0, owner.1))
        .arg(&server_maildir)
        .status()
        .unwrap();
    let _ = chown(&path, Some(owner.0), Some(owner.1));
    w.put("INBOX", "small one");
    // Locally: a big new message for the server.
    let inbox = w.maildir().join("INBOX");
    create_maildir(&inbox);
    write_big(
        &inbox.join("new/1700000001.localbig.host"),
        "local-big",
        BIG,
    );

    let (err, rss_kib) = run_measured(&w, &["-d", "imap"]);
    assert!(
        err.contains("BODY.PEEK[]<0.1048576>"),
        "the big message was not fetched in pieces"
    );
    assert!(
        err.contains("bytes streamed>"),
        "the big upload was not streamed: {}",
        err.lines()
            .filter(|l| l.contains("APPEND"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Both messages are 100 MiB; holding either in memory even once would exceed this.
    assert!(
        rss_kib < 64 * 1024,
        "peak RSS {} MiB for two 100 MiB messages",
        rss_kib / 1024
    );

    let (local_big, remote_big) = (
        big_message("local-big", BIG),
        big_message("remote-big", BIG),
    );
    // The server holds the local message, byte for byte (line ends and marker aside).
    let server = w.server.messages(USER, "INBOX").unwrap();
    assert_eq!(server.len(), 3, "messages on the server");
    let up = server
        .iter()
        .find(|m| subject_of(&m.body) == "local-big")
        .expect("the local message reached the server");
    assert!(normalized(&up.body) == local_big, "uploaded copy differs");
    // The Maildir holds the server's message.
    let local = local_messages(&inbox);
    assert_eq!(local.len(), 3, "local messages");
    let down = local.iter().find(|m| m.subject == "remote-big").unwrap();
    assert!(down.uid.is_some());
    let bytes = std::fs::read(&down.path).unwrap();
    assert!(normalized(&bytes) == remote_big, "downloaded copy differs");
    let up_local = local.iter().find(|m| m.subject == "local-big").unwrap();
    assert!(up_local.uid.is_some(), "the uploaded message got its UID");
    // No spool file is left behind.
    let leftovers: Vec<_> = std::fs::read_dir(inbox.join("tmp")).unwrap().collect();
    assert!(leftovers.is_empty(), "tmp/ not empty: {leftovers:?}");

    // And the next run has nothing to do.
    assert_nothing_done(&run_measured(&w, &[]).0);
}

#[test]
fn attachments_go_from_the_socket_into_tmp_and_are_renamed_into_place() {
    let Some(w) = World::new("spooled_downloads") else {
        return;
    };
    w.write_config("", "");
    // Twelve messages from 300 KiB to 3 MiB (each above the 128 KiB spool threshold, all below the
    // partial-fetch size) between short ones.
    let sizes: Vec<usize> = (0..12).map(|i| (300 << 10) + i * (250 << 10)).collect();
    for (i, size) in sizes.iter().enumerate() {
        w.put("INBOX", &format!("short {i}"));
        w.server
            .put_message(USER, "INBOX", &big_message(&format!("attached-{i}"), *size))
            .unwrap();
    }
    let (err, rss_kib) = run_measured(&w, &["-d", "imap"]);
    assert!(
        !err.contains("BODY.PEEK[]<0."),
        "a message below the partial-fetch size was fetched in pieces"
    );
    // The same sync with short messages only: the attachments may not cost more than a
    // read buffer or two (held in memory, each batch of them would add several MiB).
    let text = World::new("spooled_downloads_text").expect("a second server");
    text.write_config("", "");
    for i in 0..24 {
        text.put("INBOX", &format!("short {i}"));
    }
    let (_, text_kib) = run_measured(&text, &[]);
    eprintln!("peak RSS {rss_kib} KiB with attachments, {text_kib} KiB without");
    assert!(
        rss_kib < text_kib + 3072,
        "peak RSS {rss_kib} KiB with attachments, {text_kib} KiB without"
    );
    let inbox = w.maildir().join("INBOX");
    let local = local_messages(&inbox);
    assert_eq!(local.len(), 24, "local messages");
    let mode = |p: &std::path::Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
    };
    let short_mode = mode(&local.iter().find(|m| m.subject == "short 0").unwrap().path);
    for (i, size) in sizes.iter().enumerate() {
        let id = format!("attached-{i}");
        let m = local.iter().find(|m| m.subject == id).expect("downloaded");
        assert!(m.uid.is_some());
        let bytes = std::fs::read(&m.path).unwrap();
        assert!(
            normalized(&bytes) == big_message(&id, *size),
            "{id}: downloaded copy differs"
        );
        // Renamed from the spool file, yet with the mode of any other message file.
        assert_eq!(mode(&m.path), short_mode, "{id}: file mode");
    }
    let leftovers: Vec<_> = std::fs::read_dir(inbox.join("tmp")).unwrap().collect();
    assert!(leftovers.is_empty(), "tmp/ not empty: {leftovers:?}");
    assert_nothing_done(&run_measured(&w, &[]).0);
}

/// A download of many batches asks for the next batches while the first are written
/// (pipelined `UID FETCH`es, so that a server far away sends them without a round trip
/// each). Dovecot runs such fetches concurrently and interleaves their answers (RFC 3501
/// §5.5): every message still goes to its own batch, spooled attachments included. All
/// arrive once and whole, and none is reported vanished.
#[test]
fn download_batches_are_pipelined_and_each_message_lands_once() {
    let Some(w) = World::new("pipelined_batches") else {
        return;
    };
    w.write_config("", "");
    let mut attached = Vec::new();
    for i in 0..260 {
        w.put("INBOX", &format!("short {i}"));
        if i % 90 == 0 {
            let id = format!("attached-{i}");
            let body = big_message(&id, 300 << 10);
            w.server.put_message(USER, "INBOX", &body).unwrap();
            attached.push((id, body));
        }
    }
    let (err, _) = run_measured(&w, &["-d", "imap"]);
    assert!(!err.contains("vanished"), "a message went missing:\n{err}");
    // The second body fetch goes out before the first one's answer is complete.
    let lines: Vec<&str> = err.lines().collect();
    let fetches: Vec<usize> = (0..lines.len())
        .filter(|&i| lines[i].contains("C: ") && lines[i].contains("BODY.PEEK[])"))
        .collect();
    assert!(fetches.len() >= 4, "not several batches:\n{err}");
    let first_tag = lines[fetches[0]]
        .split("C: ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .unwrap();
    let first_done = (0..lines.len())
        .find(|&i| lines[i].contains(&format!("S: {first_tag} OK")))
        .expect("first fetch completed");
    assert!(
        fetches[1] < first_done,
        "the fetches were not pipelined:\n{err}"
    );

    let inbox = w.maildir().join("INBOX");
    let local = local_messages(&inbox);
    assert_eq!(local.len(), 263, "local messages");
    let mut subjects: Vec<&str> = local.iter().map(|m| m.subject.as_str()).collect();
    subjects.sort_unstable();
    subjects.dedup();
    assert_eq!(subjects.len(), 263, "a message twice");
    for (id, body) in &attached {
        let m = local.iter().find(|m| m.subject == *id).expect("downloaded");
        let bytes = std::fs::read(&m.path).unwrap();
        assert!(normalized(&bytes) == *body, "{id}: downloaded copy differs");
    }
    let leftovers: Vec<_> = std::fs::read_dir(inbox.join("tmp")).unwrap().collect();
    assert!(leftovers.is_empty(), "tmp/ not empty: {leftovers:?}");
    assert_nothing_done(&run_measured(&w, &[]).0);
}
