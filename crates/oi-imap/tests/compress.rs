//! COMPRESS=DEFLATE (RFC 4978) against a real Dovecot with the imap_zlib plugin: after
//! login the connection is compressed both ways and large literals and pipelined
//! commands survive it; without the plugin, or without `usecompression`, nothing changes.
// Shared helpers are not #[test] fns, so clippy's test allowances miss them.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use oi_core::Secret;
use oi_imap::client::{ConnectSettings, Security};
use oi_imap::response::Untagged;
use oi_imap::session::{Command, Part};
use oi_imap::transport::TlsSettings;
use oi_imap::{AuthMechanism, CaSource, Connection, NetOptions};
use oi_testkit::{Dovecot, DovecotOptions};

fn settings(d: &Dovecot, security: Security) -> ConnectSettings {
    ConnectSettings {
        host: "127.0.0.1".into(),
        port: if security == Security::Tls {
            d.imaps_port()
        } else {
            d.imap_port()
        },
        security,
        tls: TlsSettings {
            ca: CaSource::File(d.ca_cert_path()),
            fingerprints: Vec::new(),
        },
        tunnel: None,
        timeout: Some(Duration::from_secs(60)),
        user: "alice".into(),
        password: Some(Secret::new("alicepass")),
        mechanisms: vec![AuthMechanism::Plain],
        identity: None,
        oauth2: None,
        pipeline_depth: 4,
    }
}

fn compress(on: bool) -> NetOptions {
    NetOptions {
        compress: on,
        ..NetOptions::default()
    }
}

/// A message of about `size` bytes whose body does not compress well.
fn message(n: usize, size: usize) -> Vec<u8> {
    let mut m = format!("From: a@example.org\r\nSubject: message {n}\r\n\r\n").into_bytes();
    let mut seed = n as u32 + 1;
    while m.len() < size {
        for _ in 0..76 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            m.push(b'!' + ((seed >> 16) % 90) as u8);
        }
        m.extend_from_slice(b"\r\n");
    }
    m
}

fn append(mailbox: &str, body: Vec<u8>) -> Command {
    Command {
        name: "APPEND".into(),
        parts: vec![
            Part::Raw(format!("APPEND {mailbox} ").into_bytes()),
            Part::Literal(body),
        ],
    }
}

async fn bodies(conn: &mut Connection, mailbox: &str) -> Vec<Vec<u8>> {
    conn.run(Command::raw(format!("SELECT {mailbox}")))
        .await
        .unwrap();
    let (untagged, _) = conn
        .run(Command::raw("UID FETCH 1:* (UID BODY.PEEK[])"))
        .await
        .unwrap();
    let mut got: Vec<(u32, Vec<u8>)> = untagged
        .into_iter()
        .filter_map(|u| match u {
            Untagged::Fetch(f) => Some((f.uid?, f.body?)),
            _ => None,
        })
        .collect();
    got.sort();
    got.into_iter().map(|(_, b)| b).collect()
}

#[tokio::test]
async fn compressed_connection_carries_large_and_many_messages() {
    let Some(d) = Dovecot::start_or_skip_with(
        "compressed_connection_carries_large_and_many_messages",
        &DovecotOptions {
            imap_zlib: true,
            ..DovecotOptions::default()
        },
    ) else {
        return;
    };
    for (security, mailbox) in [(Security::StartTls, "Plain"), (Security::Tls, "Tls")] {
        let s = settings(&d, security);
        let mut conn = Connection::open_with(&s, &compress(true)).await.unwrap();
        assert!(conn.has("COMPRESS=DEFLATE"), "{:?}", conn.capabilities());
        assert!(conn.is_compressed());
        conn.run(Command::raw(format!("CREATE {mailbox}")))
            .await
            .unwrap();
        // A 3 MB message and 60 small ones, pipelined.
        let mut sent = vec![message(0, 3 * 1024 * 1024)];
        sent.extend((1..=60).map(|n| message(n, 2000)));
        let (_, done) = conn
            .run_batch(sent.iter().map(|m| append(mailbox, m.clone())).collect())
            .await
            .unwrap();
        assert!(done.into_iter().all(|c| c.ok().is_ok()));
        assert_eq!(bodies(&mut conn, mailbox).await, sent);
        // IDLE reads through the inflater too.
        assert!(!conn.idle(Duration::from_millis(300)).await.unwrap());
        conn.run(Command::raw("NOOP")).await.unwrap();
        conn.logout().await;
        // An uncompressed connection sees the same messages.
        let mut plain = Connection::open_with(&s, &compress(false)).await.unwrap();
        assert!(!plain.is_compressed());
        assert_eq!(bodies(&mut plain, mailbox).await, sent);
        plain.logout().await;
    }
}

#[tokio::test]
async fn server_without_compress_deflate_stays_uncompressed() {
    let Some(d) = Dovecot::start_or_skip("server_without_compress_deflate_stays_uncompressed")
    else {
        return;
    };
    let mut conn = Connection::open_with(&settings(&d, Security::StartTls), &compress(true))
        .await
        .unwrap();
    assert!(!conn.has("COMPRESS=DEFLATE"));
    assert!(!conn.is_compressed());
    let (_, done) = conn
        .run_batch(vec![append("INBOX", message(1, 5000))])
        .await
        .unwrap();
    assert!(done.into_iter().all(|c| c.ok().is_ok()));
    assert_eq!(bodies(&mut conn, "INBOX").await, vec![message(1, 5000)]);
    conn.logout().await;
}
