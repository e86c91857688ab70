//! Tests against a scripted FAKE server on 127.0.0.1 (not a real IMAP server): behaviour
//! Dovecot cannot show, such as a server without UIDPLUS or a malformed reply.
// The fake server is test code: a failure in it should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use oi_core::{Access, Flags, Folder, Message, MsgRef, NullSink, Repository, Secret, Uid};
use oi_imap::{ImapConfig, ImapRepository, Security};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the fake server received, for assertions.
type Log = Arc<tokio::sync::Mutex<Vec<u8>>>;

/// Serves one connection: answers each command line by its verb with `script`, which
/// returns the untagged lines to send before the tagged reply (and the tagged text).
async fn fake_server(script: fn(&str, &[u8]) -> (String, String)) -> (u16, Log) {
    fake_server_offering("IMAP4rev1 AUTH=PLAIN", script).await
}

/// [`fake_server`] with these capabilities in its greeting.
async fn fake_server_offering(
    capabilities: &'static str,
    script: fn(&str, &[u8]) -> (String, String),
) -> (u16, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log: Log = Arc::default();
    let log2 = log.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let log = log2.clone();
            tokio::spawn(async move {
                let (r, mut w) = sock.into_split();
                let mut r = BufReader::new(r);
                w.write_all(format!("* OK [CAPABILITY {capabilities}] fake ready\r\n").as_bytes())
                    .await
                    .unwrap();
                let mut line = Vec::new();
                loop {
                    line.clear();
                    if r.read_until(b'\n', &mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let mut literal = Vec::new();
                    // A synchronizing literal at the end: ask for it and read it.
                    let text = String::from_utf8_lossy(&line).to_string();
                    if let Some(n) = text
                        .trim_end()
                        .strip_suffix('}')
                        .and_then(|t| t.rsplit_once('{'))
                        .and_then(|(_, n)| n.parse::<usize>().ok())
                    {
                        w.write_all(b"+ go\r\n").await.unwrap();
                        literal.resize(n, 0);
                        r.read_exact(&mut literal).await.unwrap();
                        let mut rest = Vec::new();
                        r.read_until(b'\n', &mut rest).await.unwrap();
                    }
                    log.lock().await.extend_from_slice(&line);
                    log.lock().await.extend_from_slice(&literal);
                    let mut it = text.split_whitespace();
                    let tag = it.next().unwrap_or("*").to_string();
                    let verb = it.collect::<Vec<_>>().join(" ");
                    let (untagged, tagged) = script(&verb, &literal);
                    w.write_all(untagged.as_bytes()).await.unwrap();
                    w.write_all(format!("{tag} {tagged}\r\n").as_bytes())
                        .await
                        .unwrap();
                    if verb.starts_with("LOGOUT") {
                        return;
                    }
                }
            });
        }
    });
    (port, log)
}

fn config(port: u16) -> ImapConfig {
    let mut c = ImapConfig::new("127.0.0.1", "u");
    c.port = Some(port);
    c.security = Security::Plain;
    c.password = Some(Secret::new("p"));
    c.timeout = Some(Duration::from_secs(10));
    c
}

fn no_uidplus(verb: &str, literal: &[u8]) -> (String, String) {
    let ok = |s: &str| (String::new(), s.to_string());
    if verb.starts_with("SELECT") {
        return (
            "* 0 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n".into(),
            "OK [READ-WRITE] done".into(),
        );
    }
    if verb.starts_with("APPEND") {
        // The fake remembers nothing; it checks the header is there, once, last.
        let text = String::from_utf8_lossy(literal);
        let ok_header = text.starts_with("Subject: s\r\nX-OfflineIMAP: ")
            && text.matches("X-OfflineIMAP").count() == 1;
        return ok(if ok_header {
            "OK appended"
        } else {
            "NO header missing"
        });
    }
    if verb.starts_with("UID SEARCH HEADER X-OfflineIMAP") {
        return ("* SEARCH 42\r\n".into(), "OK searched".into());
    }
    ok("OK done")
}

#[tokio::test]
async fn fake_server_without_uidplus_gets_uid_via_header_search() {
    let (port, log) = fake_server(no_uidplus).await;
    let repo = ImapRepository::new(config(port), Arc::new(NullSink));
    let mut f = repo.open_folder("INBOX", Access::ReadWrite).await.unwrap();
    assert_eq!(f.meta().await.unwrap().uid_validity.0, 7);
    let msg = Message {
        source: MsgRef::Unsynced("k".into()),
        body: b"Subject: s\r\n\r\nbody\r\n".to_vec(),
        flags: Flags::EMPTY,
        internal_date: None,
    };
    let uid = f.append(&msg, Flags::SEEN, None).await.unwrap();
    assert_eq!(uid, Uid::new(42));
    f.delete(&[Uid::new(42).unwrap()]).await.unwrap();
    f.close().await.unwrap();
    let log = String::from_utf8_lossy(&log.lock().await).to_string();
    // The searched value is the one inserted into the uploaded message.
    let value = log
        .split("X-OfflineIMAP: ")
        .nth(1)
        .and_then(|s| s.split("\r\n").next())
        .unwrap()
        .to_string();
    assert!(
        log.contains(&format!("UID SEARCH HEADER X-OfflineIMAP \"{value}\"")),
        "{log}"
    );
    // No UIDPLUS: plain EXPUNGE, not UID EXPUNGE.
    assert!(
        log.contains(" EXPUNGE\r\n") && !log.contains("UID EXPUNGE"),
        "{log}"
    );
}

fn recreated_under_append(verb: &str, _: &[u8]) -> (String, String) {
    if verb.starts_with("SELECT") {
        return (
            "* 0 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n".into(),
            "OK [READ-WRITE] done".into(),
        );
    }
    if verb.starts_with("APPEND") {
        return (String::new(), "OK [APPENDUID 8 5] appended".into());
    }
    (String::new(), "OK done".into())
}

/// An APPENDUID of another UIDVALIDITY than the selected folder's (the mailbox was deleted
/// and created again meanwhile) names UIDs of another mailbox: the append is an error
/// naming both UIDVALIDITYs, not a UID.
#[tokio::test]
async fn fake_server_appenduid_of_another_uidvalidity_is_refused() {
    let (port, _) =
        fake_server_offering("IMAP4rev1 AUTH=PLAIN UIDPLUS", recreated_under_append).await;
    let repo = ImapRepository::new(config(port), Arc::new(NullSink));
    let mut f = repo.open_folder("INBOX", Access::ReadWrite).await.unwrap();
    let msg = Message {
        source: MsgRef::Unsynced("k".into()),
        body: b"Subject: s\r\n\r\nbody\r\n".to_vec(),
        flags: Flags::EMPTY,
        internal_date: None,
    };
    let e = f.append(&msg, Flags::SEEN, None).await.unwrap_err();
    assert!(
        e.to_string().contains("UIDVALIDITY changed from 7 to 8"),
        "{e}"
    );
    let two = [(&msg, Flags::SEEN), (&msg, Flags::EMPTY)];
    let e = f.append_batch(&two).await.unwrap_err();
    assert!(
        e.to_string().contains("UIDVALIDITY changed from 7 to 8"),
        "{e}"
    );
}

fn malformed(verb: &str, _: &[u8]) -> (String, String) {
    if verb.starts_with("SELECT") {
        return (
            "* 3 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n".into(),
            "OK done".into(),
        );
    }
    if verb.starts_with("UID FETCH") {
        return (
            "* 1 FETCH (UID 5 FLAGS (\\Seen\r\n".into(),
            "OK done".into(),
        );
    }
    (String::new(), "OK done".into())
}

#[tokio::test]
async fn fake_server_malformed_reply_is_an_error_not_a_panic() {
    let (port, _) = fake_server(malformed).await;
    let repo = ImapRepository::new(config(port), Arc::new(NullSink));
    let mut f = repo.open_folder("INBOX", Access::ReadWrite).await.unwrap();
    let e = f.list().await.unwrap_err();
    assert!(e.to_string().contains("protocol error"), "{e}");
}

/// A FAKE server that runs pipelined body fetches the way RFC 3501 §5.5 allows: once two
/// `UID FETCH` commands are in, it answers them interleaved (one message of each in turn)
/// and completes the second before the first. Messages are `UID n` → body `message n`.
async fn concurrent_fetch_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (sock, _) = listener.accept().await.unwrap();
        let (r, mut w) = sock.into_split();
        let mut r = BufReader::new(r);
        w.write_all(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake ready\r\n")
            .await
            .unwrap();
        // Held fetches: tag and UIDs.
        let mut held: Vec<(String, Vec<u32>)> = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            let mut it = line.split_whitespace();
            let tag = it.next().unwrap_or("*").to_string();
            let verb = it.collect::<Vec<_>>().join(" ");
            let mut out = String::new();
            if verb.starts_with("SELECT") {
                out.push_str("* 9 EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n");
                out.push_str(&format!("{tag} OK [READ-WRITE] done\r\n"));
            } else if let Some(set) = verb.strip_prefix("UID FETCH ") {
                let set = set.split(' ').next().unwrap();
                let (lo, hi) = set.split_once(':').unwrap_or((set, set));
                let uids: Vec<u32> = (lo.parse().unwrap()..=hi.parse().unwrap()).collect();
                held.push((tag, uids));
                if held.len() < 2 {
                    continue;
                }
                let msg = |u: u32| {
                    let body = format!("message {u}\r\n");
                    format!(
                        "* {u} FETCH (UID {u} FLAGS (\\Seen) BODY[] {{{}}}\r\n{body})\r\n",
                        body.len()
                    )
                };
                let (a, b) = (held.remove(0), held.remove(0));
                for i in 0..a.1.len().max(b.1.len()) {
                    for (_, uids) in [&a, &b] {
                        if let Some(&u) = uids.get(i) {
                            out.push_str(&msg(u));
                        }
                    }
                }
                out.push_str(&format!("{} OK second first\r\n{} OK done\r\n", b.0, a.0));
            } else {
                let done = verb.starts_with("LOGOUT");
                out.push_str(&format!("{tag} OK done\r\n"));
                w.write_all(out.as_bytes()).await.unwrap();
                if done {
                    return;
                }
                continue;
            }
            w.write_all(out.as_bytes()).await.unwrap();
        }
    });
    port
}

/// Download batches announced ahead are asked for pipelined; a server that answers them
/// concurrently (interleaved, the later completed first) still gives each batch exactly
/// its own messages, and nothing waits for a completion that was already read.
#[tokio::test]
async fn fake_server_answering_pipelined_fetches_out_of_order() {
    let port = concurrent_fetch_server().await;
    let repo = ImapRepository::new(config(port), Arc::new(NullSink));
    let mut f = repo.open_folder("INBOX", Access::ReadWrite).await.unwrap();
    let batch = |r: std::ops::RangeInclusive<u32>| -> Vec<MsgRef> {
        r.map(|u| MsgRef::Uid(Uid::new(u).unwrap())).collect()
    };
    let batches = vec![batch(1..=3), batch(4..=6), batch(7..=8), batch(9..=9)];
    f.will_fetch(batches.clone());
    for b in &batches {
        let got = tokio::time::timeout(Duration::from_secs(5), f.fetch(b))
            .await
            .expect("a fetch waited for an answer already read")
            .unwrap();
        let mut got: Vec<(MsgRef, Vec<u8>)> = got.into_iter().map(|m| (m.source, m.body)).collect();
        got.sort();
        let want: Vec<(MsgRef, Vec<u8>)> = b
            .iter()
            .map(|m| {
                let MsgRef::Uid(u) = m else { unreachable!() };
                (m.clone(), format!("message {}\r\n", u.get()).into_bytes())
            })
            .collect();
        assert_eq!(got, want);
    }
    f.close().await.unwrap();
}
