//! The core IMAP store operations against servers other than Dovecot: a private Cyrus IMAP
//! over TCP (LOGIN and AUTHENTICATE PLAIN, `/` delimiter, UIDPLUS) and a private Courier
//! IMAP over TCP with LOGIN and through a preauth tunnel (`INBOX.` prefix with `.`, with
//! and without UIDPLUS).
//! Server-side checks go through oi-testkit's own scripted client, never through ours.
// Shared scenario helpers are not #[test] fns, so clippy's test allowances miss them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

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

fn courier_tcp_config(c: &Courier) -> ImapConfig {
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
    // Over TCP: imaplogin + a private authdaemond; Debian advertises no AUTH= without
    // TLS, so the default mechanism list must fall back to LOGIN.
    let r = repo(courier_tcp_config(&c));
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
async fn courier_login() {
    let Some(c) = Courier::start_or_skip("courier_login") else {
        return;
    };
    let mut cfg = courier_tcp_config(&c);
    cfg.auth_mechanisms = vec![AuthMechanism::Login];
    assert_eq!(
        repo(cfg).list_folders().await.unwrap(),
        vec!["INBOX".to_string()]
    );
    let mut cfg = courier_tcp_config(&c);
    cfg.password = Some(Secret::new("wrong"));
    let e = repo(cfg).list_folders().await.unwrap_err();
    assert_eq!(e.severity(), Severity::Repository, "{e}");
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

// ---- Recorded transcripts of servers we cannot run here (Gmail, Exchange/Office 365). ----

mod transcripts {
    use oi_imap::response::{FetchData, GreetingType, Outcome, RespCode, Response, Untagged};
    use oi_imap::session::{Command, Event, Part, Session, SessionConfig};

    /// Replays `tests/data/transcripts/<name>` through a session: every command is queued,
    /// every server byte fed, and every event returned. Framing or parse errors fail.
    fn replay(name: &str) -> Vec<Event> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/transcripts")
            .join(name);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut commands: Vec<(String, Vec<u8>)> = Vec::new();
        let mut literal: Option<Vec<u8>> = None;
        let mut server = Vec::new();
        let flush = |commands: &mut Vec<(String, Vec<u8>)>, literal: &mut Option<Vec<u8>>| {
            if let (Some(l), Some(last)) = (literal.take(), commands.last_mut()) {
                last.1 = l;
            }
        };
        for line in text.lines() {
            let body = |p: &str| {
                line.strip_prefix(p)
                    .map(|r| r.strip_prefix(' ').unwrap_or(r))
            };
            if line.starts_with('#') || line.is_empty() {
                continue;
            } else if let Some(c) = body("C:") {
                flush(&mut commands, &mut literal);
                commands.push((c.to_string(), Vec::new()));
            } else if let Some(l) = body("L:") {
                let lit = literal.get_or_insert_with(Vec::new);
                lit.extend_from_slice(l.as_bytes());
                lit.extend_from_slice(b"\r\n");
            } else if let Some(s) = body("S:") {
                server.extend_from_slice(s.as_bytes());
                server.extend_from_slice(b"\r\n");
            } else {
                panic!("{name}: bad transcript line {line:?}");
            }
        }
        flush(&mut commands, &mut literal);

        let mut session = Session::new(SessionConfig::default());
        for (i, (text, lit)) in commands.iter().enumerate() {
            let cmd = if lit.is_empty() {
                Command::raw(text.clone())
            } else {
                Command {
                    name: text.split(' ').next().unwrap_or("").to_string(),
                    parts: vec![
                        Part::Raw(text.clone().into_bytes()),
                        Part::Literal(lit.clone()),
                    ],
                }
            };
            assert_eq!(session.enqueue(cmd), format!("A{}", i + 1));
        }
        session.feed(&server);
        let mut events = Vec::new();
        loop {
            match session.next_event() {
                Ok(Some(e)) => events.push(e),
                Ok(None) => break,
                Err(e) => panic!("{name}: after {} events: {e}", events.len()),
            }
            let _ = session.take_output();
        }
        assert_eq!(session.buffered_input(), 0, "{name}: bytes left unparsed");
        assert_eq!(session.pending(), 0, "{name}: commands never completed");
        events
    }

    fn untagged(events: &[Event]) -> impl Iterator<Item = &Untagged> {
        events.iter().filter_map(|e| match e {
            Event::Untagged(u) => Some(u),
            _ => None,
        })
    }

    fn lists(events: &[Event]) -> Vec<(Vec<String>, Option<char>, String)> {
        untagged(events)
            .filter_map(|u| match u {
                Untagged::List {
                    attributes,
                    delimiter,
                    name,
                } => Some((attributes.clone(), *delimiter, name.clone())),
                _ => None,
            })
            .collect()
    }

    fn fetches(events: &[Event]) -> Vec<FetchData> {
        untagged(events)
            .filter_map(|u| match u {
                Untagged::Fetch(f) => Some(f.clone()),
                _ => None,
            })
            .collect()
    }

    /// (tag, outcome, code, text) of every completion.
    fn dones(events: &[Event]) -> Vec<(String, Outcome, Option<RespCode>, String)> {
        events
            .iter()
            .filter_map(|e| match e {
                Event::Done {
                    tag,
                    outcome,
                    code,
                    text,
                    ..
                } => Some((tag.clone(), *outcome, code.clone(), text.clone())),
                _ => None,
            })
            .collect()
    }

    fn has_attr(l: &(Vec<String>, Option<char>, String), a: &str) -> bool {
        l.0.iter().any(|x| x.eq_ignore_ascii_case(a))
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn gmail() {
        let ev = replay("gmail.txt");
        let Event::Greeting(Response::Greeting { kind, code, text }) = &ev[0] else {
            panic!("{:?}", ev[0]);
        };
        assert_eq!(*kind, GreetingType::Ok);
        assert_eq!(*code, None);
        assert!(text.starts_with("Gimap ready"), "{text}");
        let caps = untagged(&ev)
            .find_map(|u| match u {
                Untagged::Capability(c) => Some(c.clone()),
                _ => None,
            })
            .unwrap();
        assert!(caps.iter().any(|c| c == "X-GM-EXT-1"), "{caps:?}");
        let d = dones(&ev);
        assert_eq!(d.len(), 9, "{d:?}");
        assert!(d.iter().all(|x| x.1 == Outcome::Ok), "{d:?}");
        let Some(RespCode::Capability(login_caps)) = &d[1].2 else {
            panic!("{:?}", d[1]);
        };
        assert!(login_caps.iter().any(|c| c == "UIDPLUS"));
        assert!(login_caps.iter().any(|c| c == "LITERAL-"));
        assert_eq!(
            d[6].2,
            Some(RespCode::AppendUid {
                uid_validity: 11,
                uid: 420
            })
        );

        let l = lists(&ev);
        assert_eq!(l.len(), 12, "{l:?}");
        assert!(l.iter().all(|x| x.1 == Some('/')));
        let names: Vec<&str> = l.iter().map(|x| x.2.as_str()).collect();
        assert_eq!(
            names,
            [
                "INBOX",
                "[Gmail]",
                "[Gmail]/All Mail",
                "[Gmail]/Drafts",
                "[Gmail]/Important",
                "[Gmail]/Sent Mail",
                "[Gmail]/Spam",
                "[Gmail]/Starred",
                "[Gmail]/Trash",
                "Receipts",
                "Receipts/2024",
                "&ANw-bersicht",
            ]
        );
        assert!(has_attr(&l[1], "\\Noselect"));
        assert!(has_attr(&l[2], "\\All"));
        assert!(has_attr(&l[5], "\\Sent"));
        assert!(has_attr(&l[8], "\\Trash"));

        let f = fetches(&ev);
        assert_eq!(f.len(), 5, "{f:?}");
        // X-GM-LABELS (with quoted, backslashed and empty label lists) does not hide
        // the items we use.
        assert_eq!(f[0].uid, Some(417));
        assert_eq!(f[0].flags, Some(strings(&["\\Seen"])));
        assert_eq!(f[0].size, Some(22));
        assert_eq!(f[1].uid, Some(418));
        assert_eq!(f[1].flags, Some(vec![]));
        assert_eq!(f[2].uid, Some(419));
        assert_eq!(
            f[2].flags,
            Some(strings(&["\\Seen", "\\Flagged", "$NotPhishing"]))
        );
        assert_eq!(f[3].uid, Some(417));
        assert_eq!(
            f[3].body.as_deref(),
            Some(&b"Subject: hello\r\n\r\nhi\r\n"[..])
        );
        assert_eq!(f[3].internal_date, Some(1_709_373_600));
        // A label change echoes a FETCH with UID but no FLAGS.
        assert_eq!(f[4].uid, Some(418));
        assert_eq!(f[4].flags, None);
        assert!(
            untagged(&ev).any(|u| matches!(u, Untagged::Exists(4))),
            "APPEND's EXISTS"
        );
        assert!(untagged(&ev).any(|u| matches!(
            u,
            Untagged::Status {
                code: Some(RespCode::UidValidity(11)),
                ..
            }
        )));
        assert!(matches!(ev.last(), Some(Event::Done { .. })));
    }

    #[test]
    fn gmail_login_refusals() {
        let ev = replay("gmail-auth.txt");
        let d = dones(&ev);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d.iter().all(|x| x.1 == Outcome::No), "{d:?}");
        assert!(
            d[0].3.contains("Application-specific password required"),
            "{d:?}"
        );
        // ALERT, AUTHENTICATIONFAILED and UNAVAILABLE are codes we do not act on.
        assert_eq!(d[0].2, Some(RespCode::Other));
        assert_eq!(d[1].2, Some(RespCode::Other));
        assert_eq!(d[1].3, "Invalid credentials (Failure)");
        assert!(untagged(&ev).any(|u| matches!(u, Untagged::Bye(t) if t.contains("Temporary"))));
    }

    #[test]
    fn exchange() {
        let ev = replay("exchange.txt");
        let Event::Greeting(Response::Greeting { kind, code, text }) = &ev[0] else {
            panic!("{:?}", ev[0]);
        };
        assert_eq!(*kind, GreetingType::Ok);
        // The bracketed blob at the end is text, not a response code.
        assert_eq!(*code, None);
        assert!(text.contains("Microsoft Exchange"), "{text}");

        let l = lists(&ev);
        let names: Vec<&str> = l.iter().map(|x| x.2.as_str()).collect();
        assert_eq!(
            names,
            [
                "Archive",
                "Calendar",
                "Calendar/Birthdays",
                "Deleted Items",
                "Drafts",
                "INBOX",
                "INBOX/Project X",
                "Junk Email",
                "Sent Items",
            ]
        );
        assert!(l.iter().all(|x| x.1 == Some('/')));
        assert!(has_attr(&l[3], "\\Trash") && has_attr(&l[8], "\\Sent"));

        let f = fetches(&ev);
        assert_eq!(f.len(), 5, "{f:?}");
        assert_eq!((f[0].uid, f[0].size), (Some(1233), Some(3104)));
        assert_eq!(f[1].flags, Some(vec![]));
        // BODY[] before UID and FLAGS; the reported size is not the body's.
        assert_eq!(f[2].uid, Some(1233));
        assert_eq!(f[2].flags, Some(strings(&["\\Seen"])));
        assert_eq!(
            f[2].body.as_deref(),
            Some(&b"Subject: one\r\n\r\nbody one\r\n"[..])
        );
        assert_eq!(f[2].internal_date, Some(1_709_367_302));
        assert_eq!(f[3].uid, Some(1234));
        assert_eq!(
            f[3].body.as_deref(),
            Some(&b"Subject: two\r\n\r\nbody two\r\n"[..])
        );
        assert_eq!(f[3].internal_date, Some(1_710_266_400));
        // An unsolicited flag change: no UID, so a client must not take it for a message.
        assert_eq!(f[4].seq, 2);
        assert_eq!(f[4].uid, None);
        assert_eq!(f[4].flags, Some(strings(&["\\Seen"])));
        // The empty SEARCH with a trailing space is an empty result, not an error.
        assert!(untagged(&ev).any(|u| matches!(u, Untagged::Search(v) if v.is_empty())));

        let d = dones(&ev);
        assert_eq!(d.len(), 10, "{d:?}");
        assert!(d[..8].iter().all(|x| x.1 == Outcome::Ok), "{d:?}");
        assert_eq!(
            d[7].2,
            Some(RespCode::AppendUid {
                uid_validity: 14,
                uid: 7
            })
        );
        assert_eq!(d[8].1, Outcome::No);
        assert_eq!(d[8].2, Some(RespCode::Other));
        assert_eq!(d[9].1, Outcome::Bad);
        assert_eq!(d[9].3, "User is authenticated but not connected.");
        assert!(matches!(
            ev.last(),
            Some(Event::Untagged(Untagged::Bye(t))) if t == "Connection closed. 14"
        ));
    }
}
