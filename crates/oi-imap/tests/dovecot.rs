//! Integration tests of the IMAP store against a real Dovecot from oi-testkit, plus a
//! scripted fake server (named as such) for what Dovecot cannot show.

use std::sync::Arc;
use std::time::Duration;

use oi_core::{
    Access, FlagUpdate, Flags, Folder, Message, MsgRef, NullSink, Repository, Secret, Uid,
};
use oi_imap::{AuthMechanism, CaSource, ImapConfig, ImapRepository, Security, Tunnel};
use oi_testkit::Dovecot;

fn config(d: &Dovecot, security: Security) -> ImapConfig {
    let mut c = ImapConfig::new("127.0.0.1", "alice");
    c.password = Some(Secret::new("alicepass"));
    c.security = security;
    c.port = Some(match security {
        Security::Tls => d.imaps_port(),
        _ => d.imap_port(),
    });
    c.ca = CaSource::File(d.ca_cert_path());
    c.timeout = Some(Duration::from_secs(30));
    c
}

fn repo(c: ImapConfig) -> ImapRepository {
    ImapRepository::new(c, Arc::new(NullSink))
}

async fn can_list(c: ImapConfig) -> Result<Vec<String>, oi_core::StoreError> {
    repo(c).list_folders().await
}

#[tokio::test]
async fn login_mechanisms_and_transports() {
    let Some(d) = Dovecot::start_or_skip("login_mechanisms_and_transports") else {
        return;
    };
    for mech in [AuthMechanism::Login, AuthMechanism::Plain] {
        let mut c = config(&d, Security::Plain);
        c.auth_mechanisms = vec![mech];
        assert!(
            can_list(c).await.unwrap().contains(&"INBOX".to_string()),
            "{mech:?}"
        );
    }
    // Implicit TLS with the CA file.
    can_list(config(&d, Security::Tls)).await.unwrap();
    // STARTTLS.
    can_list(config(&d, Security::StartTls)).await.unwrap();
    // Fingerprint only, any digest OfflineIMAP accepts, colons and case ignored.
    for digest in ["sha256", "sha1", "sha512"] {
        let mut c = config(&d, Security::Tls);
        c.ca = CaSource::System;
        let fp = d.cert_fingerprint(digest).unwrap().to_ascii_uppercase();
        c.fingerprints = vec!["00ff".into(), fp];
        assert!(can_list(c).await.is_ok(), "{digest}");
    }
    // A wrong fingerprint is refused, at repository severity.
    let mut c = config(&d, Security::Tls);
    c.ca = CaSource::System;
    c.fingerprints = vec!["ab".repeat(32)];
    let e = can_list(c).await.unwrap_err();
    assert_eq!(e.severity(), oi_core::Severity::Repository);
    assert!(e.to_string().contains("fingerprint"), "{e}");
    // A self-signed cert without the CA is refused.
    let mut c = config(&d, Security::Tls);
    c.ca = CaSource::OsDefault;
    assert!(can_list(c).await.is_err());
    // Wrong password.
    let mut c = config(&d, Security::Plain);
    c.password = Some(Secret::new("nope"));
    let e = can_list(c).await.unwrap_err();
    assert_eq!(e.severity(), oi_core::Severity::Repository);
    // Preauth tunnel (no password needed).
    let mut c = config(&d, Security::Plain);
    c.password = None;
    c.user = "bob".into();
    c.tunnel = Some(Tunnel::Preauth(d.preauth_command("bob")));
    assert!(can_list(c).await.unwrap().contains(&"INBOX".to_string()));
}

#[tokio::test]
async fn folders_messages_flags_and_expunge() {
    let Some(d) = Dovecot::start_or_skip("folders_messages_flags_and_expunge") else {
        return;
    };
    let r = repo(config(&d, Security::Plain));
    r.create_folder("Work").await.unwrap();
    r.create_folder("Work.Sub").await.unwrap();
    let names = r.list_folders().await.unwrap();
    assert!(names.contains(&"Work.Sub".to_string()), "{names:?}");
    assert_eq!(r.separator(), '.');
    assert!(
        d.mailboxes("alice")
            .unwrap()
            .contains(&"Work.Sub".to_string())
    );
    // A folder that does not exist is a folder-level error.
    let e = r.open_folder("Nope", Access::ReadWrite).await.unwrap_err();
    assert_eq!(e.severity(), oi_core::Severity::Folder);

    let mut f = r.open_folder("Work", Access::ReadWrite).await.unwrap();
    let meta = f.meta().await.unwrap();
    assert_eq!(meta.exists, Some(0));
    assert!(f.list().await.unwrap().messages.is_empty());
    let msg = Message {
        source: MsgRef::Unsynced("k".into()),
        body: b"Subject: one\r\nFrom: a@b\r\n\r\nhello \xe4 world\r\n".to_vec(),
        flags: Flags::EMPTY,
        internal_date: Some(1_000_000_000),
    };
    let uid1 = f
        .append(&msg, Flags::SEEN | Flags::FLAGGED, None)
        .await
        .unwrap()
        .unwrap();
    let uid2 = f.append(&msg, Flags::EMPTY, None).await.unwrap().unwrap();
    assert!(uid2 > uid1);
    // Server side, read without our client.
    let server = d.messages("alice", "Work").unwrap();
    assert_eq!(server.len(), 2);
    assert_eq!(server[0].uid, uid1.get());
    assert!(server[0].has_flag("\\Seen") && server[0].has_flag("\\Flagged"));
    assert_eq!(server[0].internal_date, Some(1_000_000_000));
    assert!(server[1].flags.is_empty());
    // A message put there independently of our client is fetched back.
    let uid3 = Uid::new(
        d.put_message("alice", "Work", b"Subject: three\n\nx\n")
            .unwrap(),
    )
    .unwrap();

    let mut f = r.open_folder("Work", Access::ReadWrite).await.unwrap();
    let listing = f.list().await.unwrap();
    assert_eq!(listing.messages.len(), 3);
    assert_eq!(listing.messages[&uid1].flags, Flags::SEEN | Flags::FLAGGED);
    assert_eq!(listing.messages[&uid1].size, Some(msg.body.len() as u64));
    let got = f
        .fetch(&[
            MsgRef::Uid(uid1),
            MsgRef::Uid(uid3),
            MsgRef::Uid(Uid::new(999).unwrap()),
        ])
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].body, msg.body);
    assert_eq!(got[0].internal_date, Some(1_000_000_000));
    assert_eq!(got[0].flags, Flags::SEEN | Flags::FLAGGED);
    assert_eq!(got[1].body, b"Subject: three\r\n\r\nx\r\n");

    f.set_flags(&[
        FlagUpdate {
            uid: uid1,
            add: Flags::ANSWERED,
            remove: Flags::SEEN,
        },
        FlagUpdate {
            uid: uid2,
            add: Flags::ANSWERED,
            remove: Flags::EMPTY,
        },
        FlagUpdate {
            uid: uid3,
            add: Flags::DRAFT,
            remove: Flags::EMPTY,
        },
    ])
    .await
    .unwrap();
    let server = d.messages("alice", "Work").unwrap();
    assert!(server[0].has_flag("\\Answered") && !server[0].has_flag("\\Seen"));
    assert!(server[0].has_flag("\\Flagged"));
    assert!(server[1].has_flag("\\Answered"));
    assert!(server[2].has_flag("\\Draft"));

    f.delete(&[uid2]).await.unwrap();
    assert!(d.messages("alice", "Work").unwrap()[1].has_flag("\\Deleted"));
    f.close().await.unwrap();
    let uids: Vec<u32> = d
        .messages("alice", "Work")
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(uids, vec![uid1.get(), uid3.get()]);

    // Read-only: EXAMINE, and close does not expunge.
    let mut f = r.open_folder("Work", Access::ReadOnly).await.unwrap();
    assert_eq!(f.list().await.unwrap().messages.len(), 2);
    f.close().await.unwrap();
}

#[tokio::test]
async fn fetch_spooled_writes_large_bodies_to_files_and_survives_a_failing_disk() {
    use std::io::{Read, Seek};
    let Some(d) = Dovecot::start_or_skip("fetch_spooled") else {
        return;
    };
    let small = b"Subject: small\r\n\r\nshort body\r\n".to_vec();
    let mut large = b"Subject: large\r\n\r\n".to_vec();
    while large.len() < 300_000 {
        large.extend_from_slice(b"a line of a body too long to keep in memory\r\n");
    }
    let uid_small = Uid::new(d.put_message("alice", "INBOX", &small).unwrap()).unwrap();
    let uid_large = Uid::new(d.put_message("alice", "INBOX", &large).unwrap()).unwrap();
    let r = repo(config(&d, Security::Plain));
    let mut f = r.open_folder("INBOX", Access::ReadWrite).await.unwrap();
    f.meta().await.unwrap();
    let which = [MsgRef::Uid(uid_small), MsgRef::Uid(uid_large)];
    let spool = tempfile::tempdir().unwrap();

    // With dates: the message's INTERNALDATE. Without (a Maildir keeps none), the server
    // is not asked for it.
    for dates in [true, false] {
        let got = f
            .fetch_spooled(&which[..1], spool.path(), 64 << 10, dates)
            .await
            .unwrap();
        match &got[..] {
            [oi_core::Fetched::Memory(m)] => {
                assert_eq!(m.body, small);
                assert_eq!(m.internal_date.is_some(), dates, "dates={dates}");
            }
            other => panic!("the small message was spooled: {other:?}"),
        }
    }
    let got = f
        .fetch_spooled(&which, spool.path(), 64 << 10, false)
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    match &got[0] {
        oi_core::Fetched::Memory(m) => assert_eq!(m.body, small),
        other => panic!("the small message was spooled: {other:?}"),
    }
    let oi_core::Fetched::Spooled(m) = &got[1] else {
        panic!("the large message came in memory");
    };
    assert_eq!(m.source, MsgRef::Uid(uid_large));
    assert_eq!(m.len, large.len() as u64);
    let path = m.spool.as_deref().unwrap().to_path_buf();
    assert_eq!(path.parent(), Some(spool.path()));
    let mut bytes = Vec::new();
    let mut file = m.file.try_clone().unwrap();
    file.rewind().unwrap();
    file.read_to_end(&mut bytes).unwrap();
    assert!(bytes == large, "spooled bytes differ");
    drop(got);
    assert!(!path.exists(), "a dropped spool file is removed");

    // A spool folder that cannot be written: a folder-level error naming the disk, and the
    // connection stays usable for the next fetch.
    let gone = spool.path().join("missing");
    let e = f
        .fetch_spooled(&which, &gone, 64 << 10, false)
        .await
        .unwrap_err();
    assert_eq!(e.severity(), oi_core::Severity::Folder);
    assert!(e.to_string().contains("to disk"), "{e}");
    let again = f.fetch(&which).await.unwrap();
    assert_eq!(again.len(), 2);
    assert!(again[1].body == large);
}

/// A folder listed with its state (LIST-STATUS, RFC 5819) is opened without a SELECT. One
/// unchanged since the kept listing is answered from it without a single command; one that
/// changed, or anything that needs the server, SELECTs it then, and that SELECT checks the
/// folder is still the one listed. The SELECTs are seen by a fault proxy in front of the
/// real Dovecot that answers every SELECT with NO.
#[tokio::test]
async fn listed_folders_are_selected_only_when_needed() {
    use oi_testkit::faultproxy::{Fault, FaultProxy, Times, Trigger};
    let Some(d) = Dovecot::start_or_skip("listed_folders_are_selected_only_when_needed") else {
        return;
    };
    let direct = repo(config(&d, Security::Plain));
    for name in ["Kept", "Changed", "Gone"] {
        direct.create_folder(name).await.unwrap();
        d.put_message("alice", name, b"Subject: k\n\nx\n").unwrap();
    }
    // A first sync: nothing kept yet, every folder is listed in full.
    direct.list_folders().await.unwrap();
    let mut kept = std::collections::BTreeMap::new();
    for name in ["Kept", "Changed"] {
        let mut f = direct.open_folder(name, Access::ReadWrite).await.unwrap();
        let (listing, token) = f.list_since(None).await.unwrap();
        assert_eq!(listing.messages.len(), 1, "{name}");
        f.close().await.unwrap();
        kept.insert(
            name,
            oi_core::CachedListing {
                token: token.expect("Dovecot has CONDSTORE"),
                listing,
            },
        );
    }
    d.add_flags("alice", "Changed", 1, &["\\Flagged"]).unwrap();

    let proxy = FaultProxy::start(
        d.imap_port(),
        Trigger::command(&["SELECT "]),
        Fault::No,
        Times::Always,
    )
    .unwrap();
    let mut c = config(&d, Security::Plain);
    c.port = Some(proxy.port());
    let r = repo(c);
    let names = r.list_folders().await.unwrap();
    assert!(names.contains(&"Kept".to_string()), "{names:?}");
    let mut f = r.open_folder("Kept", Access::ReadWrite).await.unwrap();
    let (listing, _) = f.list_since(kept.get("Kept").cloned()).await.unwrap();
    assert_eq!(listing, kept["Kept"].listing);
    f.close().await.unwrap();
    assert_eq!(proxy.fired(), 0, "the unchanged folder was selected");

    let mut f = r.open_folder("Changed", Access::ReadWrite).await.unwrap();
    let e = f
        .list_since(kept.get("Changed").cloned())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("injected"), "{e}");
    assert_eq!(proxy.fired(), 1, "the changed folder was not selected");
    proxy.disarm();
    let mut f = r.open_folder("Changed", Access::ReadWrite).await.unwrap();
    let (listing, _) = f.list_since(kept.get("Changed").cloned()).await.unwrap();
    let m = listing.messages.values().next().unwrap();
    assert_eq!(m.flags, Flags::FLAGGED);
    f.close().await.unwrap();

    // Anything else that needs the server selects too: here a flag change on a folder
    // opened from its listed state.
    r.list_folders().await.unwrap();
    let mut f = r.open_folder("Kept", Access::ReadWrite).await.unwrap();
    f.set_flags(&[FlagUpdate {
        uid: Uid::new(1).unwrap(),
        add: Flags::SEEN,
        remove: Flags::EMPTY,
    }])
    .await
    .unwrap();
    f.close().await.unwrap();
    assert!(d.messages("alice", "Kept").unwrap()[0].has_flag("\\Seen"));

    // The pooled connection still has Kept selected: the next LIST asks on it, and STATUS
    // is not meant for the selected mailbox, so Kept is SELECTed again when opened.
    r.list_folders().await.unwrap();
    proxy.rearm();
    let e = r.open_folder("Kept", Access::ReadWrite).await.unwrap_err();
    assert!(e.to_string().contains("injected"), "{e}");
    let mut f = r.open_folder("Changed", Access::ReadWrite).await.unwrap();
    f.close().await.unwrap();
    assert_eq!(proxy.fired(), 2, "only Kept is selected");
    proxy.disarm();

    // A folder deleted and made again after the listing has another UIDVALIDITY: the
    // late SELECT refuses it rather than mix up two folders' UIDs.
    r.list_folders().await.unwrap();
    direct.delete_folder("Gone").await.unwrap();
    direct.create_folder("Gone").await.unwrap();
    let mut f = r.open_folder("Gone", Access::ReadWrite).await.unwrap();
    let listed = f.meta().await.unwrap().uid_validity;
    let e = f.list().await.unwrap_err();
    assert_eq!(e.severity(), oi_core::Severity::Folder);
    assert!(
        e.to_string().contains("UIDVALIDITY changed"),
        "{e} (listed {listed:?})"
    );
    r.shutdown().await;
    direct.shutdown().await;
}
