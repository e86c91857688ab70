//! isync-style interruption against a real server: the binary dies (crash hook, nothing
//! committed) after every number of effects N, then a normal run must end in exactly the
//! state an uninterrupted run reaches: nothing lost, nothing duplicated, on either side.

use std::collections::BTreeMap;

use crate::common::*;

/// Builds the scenario: a synced folder, then changes on both sides.
fn scenario(test: &str) -> Option<World> {
    let w = World::new(test)?;
    prepare(&w);
    Some(w)
}

/// The scenario in an existing world (the `powerloss` module puts its Maildir on a disk
/// of its own first).
pub(crate) fn prepare(w: &World) {
    let uids: Vec<u32> = (0..6).map(|i| w.put("INBOX", &format!("old{i}"))).collect();
    w.write_config("", "");
    w.sync_ok();
    let inbox = w.maildir().join("INBOX");
    let local = local_messages(&inbox);
    // Local: a flag change, a deletion, two new messages.
    set_local_flags(&local[0], "FS");
    std::fs::remove_file(&local[1].path).unwrap();
    for i in 0..2 {
        std::fs::write(
            inbox.join(format!("new/17000000{i}.local.host")),
            message(&format!("local{i}")),
        )
        .unwrap();
    }
    // Server: a flag change, a deletion, two new messages.
    w.server
        .add_flags(USER, "INBOX", uids[2], &["\\Answered"])
        .unwrap();
    w.expunge("INBOX", uids[3]);
    for i in 0..2 {
        w.put("INBOX", &format!("remote{i}"));
    }
}

/// Subjects with flags on the server and locally.
pub(crate) type State = (BTreeMap<String, Vec<String>>, BTreeMap<String, String>);

/// Subjects with flags on both sides, as a comparable value.
pub(crate) fn state(w: &World) -> State {
    let mut server = BTreeMap::new();
    for (_, (subject, flags)) in w.server_messages("INBOX") {
        assert!(
            server.insert(subject.clone(), flags).is_none(),
            "duplicate on the server: {subject}"
        );
    }
    let mut local = BTreeMap::new();
    for m in local_messages(&w.maildir().join("INBOX")) {
        assert!(
            local.insert(m.subject.clone(), m.flags).is_none(),
            "duplicate locally: {}",
            m.subject
        );
    }
    (server, local)
}

/// The state an uninterrupted run reaches from the scenario (`None`: no server, skipped).
pub(crate) fn reference_state(test: &str) -> Option<State> {
    let w = scenario(test)?;
    w.sync_ok();
    Some(state(&w))
}

/// Runs the binary with the crash hook set to die before effect `n`: `true` when the run
/// finished (it has fewer effects), `false` when the hook ended it; any other exit panics,
/// naming `ctx`.
pub(crate) fn run_dying_before(w: &World, n: usize, ctx: &str) -> bool {
    let out = w
        .command()
        .env("OFFLINEIMAP_TEST_CRASH_AFTER", n.to_string())
        .args(["-o", "-u", "quiet"])
        .output()
        .unwrap();
    match out.status.code() {
        Some(99) => false,
        Some(0) => true,
        other => panic!("{ctx}: {other:?}: {}", String::from_utf8_lossy(&out.stderr)),
    }
}

#[test]
fn killed_at_every_step_then_resumed_converges() {
    let Some(expected) = reference_state("crash_reference") else {
        return;
    };
    assert_eq!(expected.0.len(), 8, "{expected:?}");
    let mut crashes = 0;
    for n in 0..40 {
        let w = scenario("crash_at_n").unwrap();
        if run_dying_before(&w, n, &format!("n={n}")) {
            assert_eq!(state(&w), expected, "uninterrupted with the hook at {n}");
            break;
        }
        crashes += 1;
        w.sync_ok();
        assert_eq!(state(&w), expected, "after dying before effect {n}");
        let quiet = w.sync_ok();
        assert_nothing_done(&quiet);
    }
    assert!(crashes >= 6, "the hook fired only {crashes} times");
}
