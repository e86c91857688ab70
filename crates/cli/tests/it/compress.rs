//! `usecompression`: COMPRESS=DEFLATE (RFC 4978) against a Dovecot with the imap_zlib
//! plugin, and against one without it.

use std::collections::BTreeSet;

use oi_testkit::{Dovecot, DovecotOptions};

use crate::common::{USER, World, assert_nothing_done, create_maildir, message};

fn output(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A message of about `size` bytes whose body compresses poorly.
fn big_message(subject: &str, size: usize) -> Vec<u8> {
    let mut m = message(subject).into_bytes();
    let mut seed = subject.len() as u32 + 7;
    while m.len() < size {
        for _ in 0..76 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            m.push(b'#' + ((seed >> 16) % 88) as u8);
        }
        m.extend_from_slice(b"\r\n");
    }
    m
}

/// A message as compared across the sides: line endings and the X-OfflineIMAP header
/// added to uploaded messages do not matter.
fn normal(body: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(body)
        .replace("\r\n", "\n")
        .split_inclusive('\n')
        .filter(|l| !l.starts_with("X-OfflineIMAP: "))
        .collect::<String>()
        .into_bytes()
}

/// Compares sets of messages without printing megabytes on failure.
fn same(got: &BTreeSet<Vec<u8>>, want: &BTreeSet<Vec<u8>>, side: &str) {
    let missing = want.difference(got).count();
    let extra = got.difference(want).count();
    assert!(
        missing == 0 && extra == 0,
        "{side}: {} messages, {missing} missing, {extra} unexpected",
        got.len()
    );
}

fn local_bodies(w: &World) -> BTreeSet<Vec<u8>> {
    let mut set = BTreeSet::new();
    for sub in ["cur", "new"] {
        if let Ok(rd) = std::fs::read_dir(w.maildir().join("INBOX").join(sub)) {
            for e in rd {
                set.insert(normal(&std::fs::read(e.unwrap().path()).unwrap()));
            }
        }
    }
    set
}

fn server_bodies(w: &World) -> BTreeSet<Vec<u8>> {
    w.server
        .messages(USER, "INBOX")
        .unwrap()
        .iter()
        .map(|m| normal(&m.body))
        .collect()
}

/// Puts 40 small messages and a 9 MiB one on each side (over the 8 MiB from which
/// messages are streamed through files).
fn fill_both_sides(w: &World) -> BTreeSet<Vec<u8>> {
    let mut all = BTreeSet::new();
    let inbox = w.maildir().join("INBOX");
    create_maildir(&inbox);
    for n in 0..41 {
        let (remote, local) = if n == 0 {
            (
                big_message("remote big", 9 << 20),
                big_message("local big one", 9 << 20),
            )
        } else {
            (
                message(&format!("remote {n}")).into_bytes(),
                message(&format!("local {n}")).into_bytes(),
            )
        };
        w.server.put_message(USER, "INBOX", &remote).unwrap();
        std::fs::write(
            inbox.join("new").join(format!("1700000000.L{n}.test")),
            &local,
        )
        .unwrap();
        all.insert(normal(&remote));
        all.insert(normal(&local));
    }
    all
}

#[test]
fn usecompression_syncs_both_ways_compressed() {
    let Some(server) = Dovecot::start_or_skip_with(
        "usecompression_syncs_both_ways_compressed",
        &DovecotOptions {
            imap_zlib: true,
            ..DovecotOptions::default()
        },
    ) else {
        return;
    };
    let w = World {
        server,
        dir: tempfile::tempdir().unwrap(),
    };
    let all = fill_both_sides(&w);
    w.write_config("usecompression = yes", "");
    let out = w.run(&["-d", "imap"]);
    let text = output(&out);
    assert!(out.status.success(), "{text}\n{}", w.server.logs());
    // The trace shows the protocol itself, the negotiation included.
    let command = text
        .lines()
        .find(|l| l.contains("C: ") && l.contains("COMPRESS DEFLATE"))
        .unwrap_or_else(|| panic!("no COMPRESS DEFLATE in the trace:\n{text}"));
    let tag = command
        .split("C: ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .unwrap();
    assert!(text.contains(&format!("S: {tag} OK")), "{command}");
    // The trace goes on (above the compression) after it.
    let at = text.find(command).unwrap();
    assert!(
        text[at..].contains(" SELECT "),
        "no trace after compression"
    );
    assert!(!text.contains(crate::common::PASS), "password in the trace");
    // Both sides hold all 82 messages, byte for byte.
    same(&server_bodies(&w), &all, "server");
    same(&local_bodies(&w), &all, "local");
    // And a second compressed run finds nothing to do.
    w.write_config("usecompression = yes", "");
    let again = w.sync_ok();
    assert_nothing_done(&again);
}

#[test]
fn usecompression_without_server_support_syncs_uncompressed() {
    let Some(w) = World::new("usecompression_without_server_support_syncs_uncompressed") else {
        return;
    };
    let all = fill_both_sides(&w);
    w.write_config("usecompression = yes", "");
    let out = w.run(&["-d", "imap"]);
    let text = output(&out);
    assert!(out.status.success(), "{text}\n{}", w.server.logs());
    assert!(!text.contains("COMPRESS DEFLATE"), "{text}");
    assert!(
        text.contains("does not offer COMPRESS=DEFLATE"),
        "no debug note:\n{text}"
    );
    same(&server_bodies(&w), &all, "server");
    same(&local_bodies(&w), &all, "local");
}
