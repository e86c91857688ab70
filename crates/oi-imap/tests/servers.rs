//! The core IMAP store operations against servers other than Dovecot: a private Cyrus IMAP
//! over TCP (LOGIN and AUTHENTICATE PLAIN, `/` delimiter, UIDPLUS) and a private Courier
//! IMAP through a preauth tunnel (`INBOX.` prefix with `.`, with and without UIDPLUS).
//! Server-side checks go through oi-testkit's own scripted client, never through ours.

use std::sync::Arc;
use std::time::Duration;

use oi_core::{
    Access, FlagUpdate, Flags, Folder, Message, MsgRef, NullSink, Repository, Secret, Severity, Uid,
};
use oi_imap::{AuthMechanism, ImapConfig, ImapRepository, Security, Tunnel};
use oi_testkit::{Courier, Cyrus, ServerMessage, StartError};

/// Server-side access to a test server, independent of oi-imap.
trait ServerSide {
    fn messages(&self, mailbox: &str) -> Result<Vec<ServerMessage>, StartError>;
    fn put(&self, mailbox: &str, message: &[u8]) -> Result<u32, StartError>;
    fn mailboxes(&self) -> Result<Vec<String>, StartError>;
}

impl ServerSide for Cyrus {
    fn messages(&self, mailbox: &str) -> Result<Vec<ServerMessage>, StartError> {
        Cyrus::messages(self, "alice", mailbox)
    }
    fn put(&self, mailbox: &str, message: &[u8]) -> Result<u32, StartError> {
        self.put_message("alice", mailbox, &[], message)
    }
    fn mailboxes(&self) -> Result<Vec<String>, StartError> {
        Cyrus::mailboxes(self, "alice")
    }
}

impl ServerSide for Courier {
    fn messages(&self, mailbox: &str) -> Result<Vec<ServerMessage>, StartError> {
        Courier::messages(self, "alice", mailbox)
    }
    fn put(&self, mailbox: &str, message: &[u8]) -> Result<u32, StartError> {
        self.put_message("alice", mailbox, &[], message)
    }
    fn mailboxes(&self) -> Result<Vec<String>, StartError> {
        Courier::mailboxes(self, "alice")
    }
}

fn repo(c: ImapConfig) -> ImapRepository {
    ImapRepository::new(c, Arc::new(NullSink))
}

fn cyrus_config(c: &Cyrus) -> ImapConfig {
    let mut cfg = ImapConfig::new("127.0.0.1", "alice");
    cfg.password = Some(Secret::new("alicepass"));
    cfg.security = Security::Plain;
    cfg.port = Some(c.imap_port());
    cfg.timeout = Some(Duration::from_secs(30));
    cfg
}

fn courier_config(c: &Courier) -> ImapConfig {
    let mut cfg = ImapConfig::new("127.0.0.1", "alice");
    cfg.security = Security::Plain;
    cfg.tunnel = Some(Tunnel::Preauth(c.preauth_command("alice")));
    cfg.timeout = Some(Duration::from_secs(30));
    cfg
}

/// The folder operations the sync engine uses, on folder `top` and its child `sub`
/// (full server names). `uidplus` says whether APPENDUID is expected, else the
/// X-OfflineIMAP header search must find the UIDs.
async fn core_scenario(
    r: &ImapRepository,
    server: &dyn ServerSide,
    top: &str,
    sub: &str,
    sep: char,
    uidplus: bool,
) {
    r.create_folder(top).await.unwrap();
    r.create_folder(sub).await.unwrap();
    let names = r.list_folders().await.unwrap();
    assert!(names.contains(&"INBOX".to_string()), "{names:?}");
    assert!(names.contains(&top.to_string()), "{names:?}");
    assert!(names.contains(&sub.to_string()), "{names:?}");
    assert_eq!(r.separator(), sep);
    assert!(server.mailboxes().unwrap().contains(&sub.to_string()));
    // Creating it again is a NO, at folder level, and the connection stays usable.
    let e = r.create_folder(top).await.unwrap_err();
    assert_eq!(e.severity(), Severity::Folder, "{e}");
    let e = r.open_folder("Nope", Access::ReadWrite).await.unwrap_err();
    assert_eq!(e.severity(), Severity::Folder, "{e}");

    let mut f = r.open_folder(top, Access::ReadWrite).await.unwrap();
    let meta = f.meta().await.unwrap();
    assert_eq!(meta.exists, Some(0));
    assert!(meta.uid_validity.0 > 0);
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
        .expect("a UID for the first APPEND");
    let uid2 = f
        .append(&msg, Flags::EMPTY, None)
        .await
        .unwrap()
        .expect("a UID for the second APPEND");
    assert!(uid2 > uid1);

    let held = server.messages(top).unwrap();
    assert_eq!(held.len(), 2, "{held:?}");
    assert_eq!(held[0].uid, uid1.get());
    assert_eq!(held[1].uid, uid2.get());
    assert!(held[0].has_flag("\\Seen") && held[0].has_flag("\\Flagged"));
    assert!(held[1].flags.is_empty(), "{:?}", held[1].flags);
    assert_eq!(held[0].internal_date, Some(1_000_000_000));
    let marker = b"X-OfflineIMAP: ";
    let has_marker = held[0].body.windows(marker.len()).any(|w| w == marker);
    // With UIDPLUS the message goes up as it is; without it, a unique header is added.
    assert_eq!(
        has_marker,
        !uidplus,
        "{:?}",
        String::from_utf8_lossy(&held[0].body)
    );
    if uidplus {
        assert_eq!(held[0].body, msg.body);
    }

    let uid3 = Uid::new(server.put(top, b"Subject: three\r\n\r\nx\r\n").unwrap()).unwrap();
    let mut f = r.open_folder(top, Access::ReadWrite).await.unwrap();
    let listing = f.list().await.unwrap();
    assert_eq!(listing.messages.len(), 3, "{listing:?}");
    assert_eq!(listing.messages[&uid1].flags, Flags::SEEN | Flags::FLAGGED);
    assert_eq!(
        listing.messages[&uid1].size,
        Some(held[0].body.len() as u64)
    );
    let got = f
        .fetch(&[
            MsgRef::Uid(uid1),
            MsgRef::Uid(uid3),
            MsgRef::Uid(Uid::new(999).unwrap()),
        ])
        .await
        .unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].body, held[0].body);
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
    let held = server.messages(top).unwrap();
    assert!(held[0].has_flag("\\Answered") && !held[0].has_flag("\\Seen"));
    assert!(held[0].has_flag("\\Flagged"));
    assert!(held[1].has_flag("\\Answered"));
    assert!(held[2].has_flag("\\Draft"));

    f.delete(&[uid2]).await.unwrap();
    assert!(server.messages(top).unwrap()[1].has_flag("\\Deleted"));
    f.close().await.unwrap();
    let uids: Vec<u32> = server
        .messages(top)
        .unwrap()
        .iter()
        .map(|m| m.uid)
        .collect();
    assert_eq!(uids, vec![uid1.get(), uid3.get()]);

    // Read-only: EXAMINE, and close does not expunge.
    let mut f = r.open_folder(top, Access::ReadOnly).await.unwrap();
    assert_eq!(f.list().await.unwrap().messages.len(), 2);
    f.close().await.unwrap();

    // The child folder is independent and empty.
    let mut f = r.open_folder(sub, Access::ReadWrite).await.unwrap();
    assert!(f.list().await.unwrap().messages.is_empty());
    f.close().await.unwrap();
    r.shutdown().await;
}

#[tokio::test]
async fn cyrus_login_mechanisms() {
    let Some(c) = Cyrus::start_or_skip("cyrus_login_mechanisms") else {
        return;
    };
    for mech in [AuthMechanism::Login, AuthMechanism::Plain] {
        let mut cfg = cyrus_config(&c);
        cfg.auth_mechanisms = vec![mech];
        let names = repo(cfg).list_folders().await.unwrap();
        assert!(names.contains(&"INBOX".to_string()), "{mech:?}: {names:?}");
    }
    let mut cfg = cyrus_config(&c);
    cfg.password = Some(Secret::new("wrong"));
    let e = repo(cfg).list_folders().await.unwrap_err();
    assert_eq!(e.severity(), Severity::Repository, "{e}");
}

#[tokio::test]
async fn cyrus_core_operations() {
    let Some(c) = Cyrus::start_or_skip("cyrus_core_operations") else {
        return;
    };
    let r = repo(cyrus_config(&c));
    // altnamespace + unixhierarchysep: personal folders at top level, `/` between levels.
    core_scenario(&r, &c, "Work", "Work/Sub", '/', true).await;
    // A name with a dot is one level on Cyrus, not two.
    r.create_folder("a.b").await.unwrap();
    assert!(r.list_folders().await.unwrap().contains(&"a.b".to_string()));
}

#[tokio::test]
async fn courier_core_operations_with_uidplus() {
    let Some(c) = Courier::start_or_skip_with("courier_core_operations_with_uidplus", true) else {
        return;
    };
    let r = repo(courier_config(&c));
    core_scenario(&r, &c, "INBOX.Work", "INBOX.Work.Sub", '.', true).await;
    assert!(c.maildir_of("alice").join(".Work.Sub").exists());
}

#[tokio::test]
async fn courier_core_operations_without_uidplus() {
    let Some(c) = Courier::start_or_skip_with("courier_core_operations_without_uidplus", false)
    else {
        return;
    };
    let r = repo(courier_config(&c));
    core_scenario(&r, &c, "INBOX.Work", "INBOX.Work.Sub", '.', false).await;
}

#[tokio::test]
async fn courier_preauth_tunnel_needs_no_password() {
    let Some(c) = Courier::start_or_skip("courier_preauth_tunnel_needs_no_password") else {
        return;
    };
    let mut cfg = courier_config(&c);
    cfg.user = "bob".into();
    cfg.tunnel = Some(Tunnel::Preauth(c.preauth_command("bob")));
    let r = repo(cfg);
    assert_eq!(r.list_folders().await.unwrap(), vec!["INBOX".to_string()]);
    r.create_folder("INBOX.Bobs").await.unwrap();
    assert!(
        c.mailboxes("bob")
            .unwrap()
            .contains(&"INBOX.Bobs".to_string())
    );
    assert!(
        !c.mailboxes("alice")
            .unwrap()
            .contains(&"INBOX.Bobs".to_string())
    );
    // Courier refuses folders outside INBOX.
    assert!(r.create_folder("Outside").await.is_err());
}
