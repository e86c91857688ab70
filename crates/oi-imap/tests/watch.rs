//! Watching folders for changes against a real Dovecot: one folder with EXAMINE + IDLE
//! ([`ImapRepository::watch`]), several on one connection with NOTIFY
//! ([`ImapRepository::watch_with_notify`], RFC 5465, which Dovecot offers).

use std::sync::Arc;
use std::time::Duration;

use oi_core::{NullSink, Secret};
use oi_imap::{ImapConfig, ImapRepository, Security};
use oi_testkit::Dovecot;

const MSG: &[u8] = b"From: a@example.org\r\nSubject: w\r\n\r\nbody\r\n";

fn repo(d: &Dovecot) -> ImapRepository {
    let mut c = ImapConfig::new("127.0.0.1", "alice");
    c.password = Some(Secret::new("alicepass"));
    c.security = Security::Plain;
    c.port = Some(d.imap_port());
    c.timeout = Some(Duration::from_secs(30));
    ImapRepository::new(c, Arc::new(NullSink))
}

/// Generous: a bound against hangs, not a speed requirement.
const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn idle_reports_new_mail_in_the_watched_folder() {
    let Some(d) = Dovecot::start_or_skip("watch_idle") else {
        return;
    };
    let d = Arc::new(d);
    let r = repo(&d);
    let mut w = r.watch("INBOX").await.unwrap();
    // Nothing happens: the wait ends by time with no change.
    assert!(!w.wait(Duration::from_millis(300)).await.unwrap());
    let d2 = d.clone();
    let put = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(300));
        d2.put_message("alice", "INBOX", MSG).unwrap();
    });
    assert!(w.wait(WAIT).await.unwrap(), "no change reported");
    put.await.unwrap();
    w.close().await;
}

#[tokio::test]
async fn notify_reports_which_folders_changed_on_one_connection() {
    let Some(d) = Dovecot::start_or_skip("watch_notify") else {
        return;
    };
    d.create_mailbox("alice", "Other").unwrap();
    d.create_mailbox("alice", "Unwatched").unwrap();
    let uid = d.put_message("alice", "INBOX", MSG).unwrap();
    let d = Arc::new(d);
    let r = repo(&d);
    let folders = vec!["INBOX".to_string(), "Other".to_string()];
    let mut w = r
        .watch_with_notify(&folders)
        .await
        .unwrap()
        .expect("Dovecot offers NOTIFY");
    assert_eq!(w.folders(), folders);
    assert!(w.wait(Duration::from_millis(300)).await.unwrap().is_empty());

    // New mail in an unwatched folder is not reported; in a watched one it is.
    let d2 = d.clone();
    let put = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(300));
        d2.put_message("alice", "Unwatched", MSG).unwrap();
        d2.put_message("alice", "Other", MSG).unwrap();
    });
    let mut seen = Vec::new();
    while !seen.contains(&"Other".to_string()) {
        let changed = w.wait(WAIT).await.unwrap();
        assert!(!changed.is_empty(), "no change reported");
        seen.extend(changed);
    }
    put.await.unwrap();
    assert_eq!(seen, ["Other"]);

    // A flag change that alters no STATUS count is reported too (through HIGHESTMODSEQ).
    let d3 = d.clone();
    let flag = tokio::task::spawn_blocking(move || {
        std::thread::sleep(Duration::from_millis(300));
        d3.add_flags("alice", "INBOX", uid, &["\\Flagged"]).unwrap();
    });
    assert_eq!(w.wait(WAIT).await.unwrap(), ["INBOX"]);
    flag.await.unwrap();
    w.close().await;
}
