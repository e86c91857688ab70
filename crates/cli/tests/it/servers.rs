//! The core two-way scenario through the binary against other servers than Dovecot:
//! Cyrus (`/` separator, folders beside INBOX) and Courier (`INBOX.` prefix), with and
//! without UIDPLUS (then new UIDs are found by the X-OfflineIMAP header search).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oi_testkit::{Courier, Cyrus, ServerMessage};

use crate::common::*;

type Put<'a> = Box<dyn Fn(&str, &str) + 'a>;
type Read<'a> = Box<dyn Fn(&str) -> Vec<ServerMessage> + 'a>;

/// A server as the scenario needs it.
struct Server<'a> {
    port: u16,
    work: &'a str,
    create: Box<dyn Fn(&str) + 'a>,
    put: Put<'a>,
    messages: Read<'a>,
}

/// The [`Server`] of a started Cyrus or Courier (the same methods, but no common trait),
/// with `work` as the name of the second folder.
macro_rules! server_of {
    ($c:expr, $work:expr) => {
        Server {
            port: $c.imap_port(),
            work: $work,
            create: Box::new(|m| $c.create_mailbox("alice", m).unwrap()),
            put: Box::new(|m, subject| {
                $c.put_message("alice", m, &[], message(subject).as_bytes())
                    .unwrap();
            }),
            messages: Box::new(|m| $c.messages("alice", m).unwrap()),
        }
    };
}

fn by_subject(msgs: Vec<ServerMessage>) -> BTreeMap<String, Vec<String>> {
    msgs.into_iter()
        .filter(|m| !m.has_flag("\\Deleted"))
        .map(|m| {
            let mut f: Vec<String> = m.flags.into_iter().filter(|f| f != "\\Recent").collect();
            f.sort();
            (subject_of(&m.body), f)
        })
        .collect()
}

/// Writes, into `dir`, a config for the user alice of the server at `port` (not the
/// World's Dovecot), with the Maildir in `dir/Mail` and the metadata in `dir/meta`;
/// `account` and `remote` lines (each ending in `\n`) are added to those sections.
/// Returns the Maildir and the config file.
pub(crate) fn write_config_in(
    dir: &Path,
    port: u16,
    account: &str,
    remote: &str,
) -> (PathBuf, PathBuf) {
    let mail = dir.join("Mail");
    let rc = dir.join("rc");
    std::fs::write(
        &rc,
        format!(
            "[general]\naccounts = T\nmetadata = {meta}\n\n[Account T]\nlocalrepository = L\n\
             remoterepository = R\n{account}\n[Repository L]\ntype = Maildir\nlocalfolders = {mail}\n\n\
             [Repository R]\ntype = IMAP\nremotehost = 127.0.0.1\nremoteport = {port}\n\
             remoteuser = alice\nremotepass = alicepass\nssl = no\nstarttls = no\n{remote}",
            meta = dir.join("meta").display(),
            mail = mail.display(),
        ),
    )
    .unwrap();
    (mail, rc)
}

fn scenario(s: &Server, dir: &tempfile::TempDir) {
    (s.create)(s.work);
    (s.put)("INBOX", "a");
    (s.put)("INBOX", "b");
    (s.put)(s.work, "w");
    let (mail, rc) = write_config_in(dir.path(), s.port, "", "");
    let run = || {
        let out = offlineimap(dir.path(), &rc)
            .args(["-o", "-u", "basic"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{err}");
        err
    };
    let inbox = mail.join("INBOX");
    create_maildir(&inbox);
    std::fs::write(inbox.join("new/1700000000.l.host"), message("from local")).unwrap();
    run();
    let subjects: Vec<String> = local_messages(&inbox)
        .into_iter()
        .map(|m| m.subject)
        .collect();
    assert_eq!(subjects, ["a", "b", "from local"]);
    let work: Vec<String> = local_messages(&mail.join(s.work))
        .into_iter()
        .map(|m| m.subject)
        .collect();
    assert_eq!(work, ["w"]);
    let server = by_subject((s.messages)("INBOX"));
    assert_eq!(
        server.keys().cloned().collect::<Vec<_>>(),
        ["a", "b", "from local"]
    );
    // Local flag and deletion go up; the last run has nothing to do.
    let local = local_messages(&inbox);
    set_local_flags(&local[0], "FS");
    std::fs::remove_file(&local[1].path).unwrap();
    run();
    let server = by_subject((s.messages)("INBOX"));
    assert_eq!(
        server.keys().cloned().collect::<Vec<_>>(),
        ["a", "from local"]
    );
    assert_eq!(server["a"], ["\\Flagged", "\\Seen"]);
    assert_nothing_done(&run());
}

#[test]
fn core_scenario_against_cyrus() {
    let Some(c) = Cyrus::start_or_skip("core_scenario_against_cyrus") else {
        return;
    };
    scenario(&server_of!(c, "Work"), &tempfile::tempdir().unwrap());
}

fn courier(uidplus: bool) {
    let Some(c) = Courier::start_or_skip_with("core_scenario_against_courier", uidplus) else {
        return;
    };
    scenario(&server_of!(c, "INBOX.Work"), &tempfile::tempdir().unwrap());
}

#[test]
fn core_scenario_against_courier() {
    courier(true);
}

#[test]
fn core_scenario_against_courier_without_uidplus() {
    courier(false);
}
