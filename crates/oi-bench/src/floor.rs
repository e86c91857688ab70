//! The protocol floor of a scenario: the least IMAP conversation that makes the server do
//! that scenario's work, on one connection, with every answer read and thrown away (no
//! parsing beyond finding the end of a response, no local side, no process to start).
//!
//! A sync tool on one connection cannot take less time than this, whatever it does on its
//! own side: a ratio target below `floor / mbsync` cannot be met against this server. It
//! extends `../shared/bench/floor` (which does the initial sync only) to noop, flags and
//! new. Push has no floor here: its server work is the APPENDs, which need the messages.

use crate::harness::Scenario;
use oi_testkit::script::{Script, number_after, quote};
use std::collections::BTreeMap;

/// What one server conversation does, per folder, for a scenario:
/// - initial: SELECT, then every message whole (`UID FETCH 1:* (UID FLAGS INTERNALDATE
///   BODY.PEEK[])`);
/// - noop: SELECT only (what tells a tool that nothing changed);
/// - flags: SELECT and every message's flags (`UID FETCH 1:* (UID FLAGS)`);
/// - new: as flags, plus the messages at or above the folder's UIDNEXT before the change
///   (`base`), whole.
///
/// Every answer is read and thrown away as it comes ([`Script::cmd_discard`]), except the
/// few lines of LIST and SELECT.
pub fn run(
    port: u16,
    user: &str,
    pass: &str,
    scenario: Scenario,
    base: &BTreeMap<String, u32>,
) -> Result<(), String> {
    if scenario == Scenario::Push {
        return Err("the floor has no push scenario".into());
    }
    let e = |e: oi_testkit::StartError| e.to_string();
    let mut s = Script::tcp(port).map_err(e)?;
    s.login(user, pass).map_err(e)?;
    let mut with_new = 0;
    for folder in s.list().map_err(e)? {
        let selected = s.cmd(&format!("SELECT {}", quote(&folder))).map_err(e)?;
        match scenario {
            Scenario::Noop | Scenario::Push => {}
            Scenario::Initial => {
                s.cmd_discard("UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])")
                    .map_err(e)?;
            }
            Scenario::Flags => s.cmd_discard("UID FETCH 1:* (UID FLAGS)").map_err(e)?,
            Scenario::New => {
                s.cmd_discard("UID FETCH 1:* (UID FLAGS)").map_err(e)?;
                let next = selected
                    .iter()
                    .find_map(|u| number_after(&u.text, "[UIDNEXT "));
                let from = base.get(&folder).copied().unwrap_or(1);
                // `n:*` names the last message even when no UID is n or above.
                if next.is_some_and(|n| n > from) {
                    with_new += 1;
                    s.cmd_discard(&format!(
                        "UID FETCH {from}:* (UID FLAGS INTERNALDATE BODY.PEEK[])"
                    ))
                    .map_err(e)?;
                }
            }
        }
    }
    s.logout().map_err(e)?;
    if scenario == Scenario::New && with_new == 0 {
        return Err("no folder has messages above its UIDNEXT from before the change".into());
    }
    Ok(())
}

/// Makes the server keep a modification sequence per message in every folder, as a server
/// does once a CONDSTORE client (RFC 7162: most mail clients today, and us) has selected
/// them: Dovecot starts keeping them at the first such SELECT, and until then a change
/// gives every message of the folder a new one, so that "changed since" means everything.
pub fn enable_condstore(port: u16, user: &str, pass: &str) -> Result<(), String> {
    let e = |e: oi_testkit::StartError| e.to_string();
    let mut s = Script::tcp(port).map_err(e)?;
    s.login(user, pass).map_err(e)?;
    s.cmd("ENABLE CONDSTORE").map_err(e)?;
    for folder in s.list().map_err(e)? {
        s.cmd(&format!("SELECT {}", quote(&folder))).map_err(e)?;
    }
    s.logout().map_err(e)
}
