//! Planner and executor tests: the four rules of the architecture doc (idempotence, no
//! deletion without a record, mirror symmetry, UIDVALIDITY stops) as properties, plus an
//! isync-style interruption test that stops after every effect and resumes.

use std::collections::BTreeMap;

use oi_core::{Flags, Listing, MessageMeta, NullSink, Side, Uid, UidValidity, UnsyncedMessage};
use proptest::prelude::*;

use super::*;
use crate::StatusFactory;
use crate::execute::{ExecOptions, FolderLabel, RemoteDone, SyncError, sync_folder_releasing};
use crate::memory::{MemRepository, MemStatusFactory};
use oi_core::Repository;

fn uid(n: u32) -> Uid {
    Uid::new(n).unwrap()
}

fn listing(msgs: &[(u32, &str)]) -> Listing {
    Listing {
        messages: msgs
            .iter()
            .map(|(u, f)| {
                let meta = MessageMeta {
                    flags: Flags::from_maildir(f),
                    size: None,
                };
                (uid(*u), meta)
            })
            .collect(),
        unsynced: Vec::new(),
    }
}

fn status(recs: &[(u32, &str)]) -> BTreeMap<Uid, Flags> {
    recs.iter()
        .map(|(u, f)| (uid(*u), Flags::from_maildir(f)))
        .collect()
}

#[test]
fn new_messages_go_both_ways() {
    let mut local = listing(&[]);
    local.unsynced.push(UnsyncedMessage {
        key: "k1".into(),
        flags: Flags::SEEN,
        size: None,
    });
    let p = plan(
        &listing(&[(1, "S")]),
        &local,
        &status(&[]),
        &Policy::default(),
    );
    assert_eq!(
        p.steps,
        vec![
            Step::Upload {
                key: "k1".into(),
                flags: Flags::SEEN
            },
            Step::Copy {
                from: Side::Remote,
                uid: uid(1),
                flags: Flags::SEEN
            },
        ]
    );
}

#[test]
fn deletions_follow_sync_deletes_and_readonly() {
    let r = listing(&[(1, ""), (2, "")]);
    let l = listing(&[(1, "")]);
    let s = status(&[(1, ""), (2, "")]);
    let p = plan(&r, &l, &s, &Policy::default());
    assert_eq!(
        p.steps,
        vec![Step::Delete {
            side: Side::Remote,
            uid: uid(2)
        }]
    );
    let mut keep = Policy::default();
    keep.local.sync_deletes = false;
    assert!(plan(&r, &l, &s, &keep).is_empty());
    let mut ro = Policy::default();
    ro.remote.readonly = true;
    assert!(plan(&r, &l, &s, &ro).is_empty());
}

#[test]
fn flag_changes_merge_three_way() {
    // Remote added F, local removed S since the record "S".
    let p = plan(
        &listing(&[(1, "FS")]),
        &listing(&[(1, "")]),
        &status(&[(1, "S")]),
        &Policy::default(),
    );
    assert_eq!(
        p.steps,
        vec![
            Step::SetFlags {
                side: Side::Remote,
                uid: uid(1),
                add: Flags::EMPTY,
                remove: Flags::SEEN
            },
            Step::SetFlags {
                side: Side::Local,
                uid: uid(1),
                add: Flags::FLAGGED,
                remove: Flags::EMPTY
            },
            Step::Record {
                uid: uid(1),
                flags: Flags::FLAGGED
            },
        ]
    );
}

#[test]
fn present_on_both_without_record_is_only_recorded() {
    let p = plan(
        &listing(&[(7, "S")]),
        &listing(&[(7, "S")]),
        &status(&[]),
        &Policy::default(),
    );
    assert_eq!(
        p.steps,
        vec![Step::Record {
            uid: uid(7),
            flags: Flags::SEEN
        }]
    );
}

#[test]
fn readonly_side_keeps_old_record_for_unapplied_flags() {
    let mut ro = Policy::default();
    ro.remote.readonly = true;
    let p = plan(
        &listing(&[(1, "")]),
        &listing(&[(1, "S")]),
        &status(&[(1, "")]),
        &ro,
    );
    assert!(p.is_empty(), "{p:?}");
}

// ---- properties -------------------------------------------------------------------------

fn flags_strategy() -> impl Strategy<Value = Flags> {
    (0u32..32).prop_map(|b| {
        let mut f = Flags::EMPTY;
        for (i, letter) in ['S', 'R', 'F', 'T', 'a'].into_iter().enumerate() {
            if b & (1 << i) != 0 {
                f |= Flags::from_maildir(&letter.to_string());
            }
        }
        f
    })
}

/// One UID's flags on the remote, the local side and in the status (None: absent).
type Row = (u32, Option<Flags>, Option<Flags>, Option<Flags>);

/// A folder state: per UID 1..=12 maybe on remote, maybe on local, maybe in status.
#[derive(Debug, Clone)]
struct World {
    rows: Vec<Row>,
    unsynced: Vec<Flags>,
    policy: Policy,
}

fn side_policy() -> impl Strategy<Value = SidePolicy> {
    (any::<bool>(), any::<bool>()).prop_map(|(readonly, sync_deletes)| SidePolicy {
        readonly,
        sync_deletes,
    })
}

fn world() -> impl Strategy<Value = World> {
    let row = (
        proptest::option::of(flags_strategy()),
        proptest::option::of(flags_strategy()),
        proptest::option::of(flags_strategy()),
    );
    (
        proptest::collection::vec(row, 0..12),
        proptest::collection::vec(flags_strategy(), 0..3),
        side_policy(),
        side_policy(),
    )
        .prop_map(|(rows, unsynced, remote, local)| World {
            rows: rows
                .into_iter()
                .enumerate()
                .map(|(i, (r, l, s))| (i as u32 + 1, r, l, s))
                .collect(),
            unsynced,
            // The guard is tested on its own; random worlds would trip it.
            policy: Policy {
                remote,
                local,
                guard: DeletionGuard { max_percent: 100 },
                ..Policy::default()
            },
        })
}

struct Setup {
    remote: MemRepository,
    local: MemRepository,
    status: MemStatusFactory,
}

fn setup(w: &World) -> Setup {
    let remote = MemRepository::server('/');
    let local = MemRepository::maildir('.');
    let status = MemStatusFactory::default();
    let max = w.rows.len() as u32;
    remote.with("INBOX", |d| {
        d.uid_validity = UidValidity(7);
        d.next_uid = max + 1;
        for (u, r, _, _) in &w.rows {
            if let Some(f) = r {
                d.messages.insert(
                    uid(*u),
                    (
                        format!("Subject: msg {u}\nMessage-ID: <m{u}@test>\n\nbody\n").into_bytes(),
                        *f,
                    ),
                );
            }
        }
    });
    local.with("INBOX", |d| {
        d.uid_validity = UidValidity(42);
        for (u, _, l, _) in &w.rows {
            if let Some(f) = l {
                d.messages.insert(
                    uid(*u),
                    (
                        format!("Subject: msg {u}\nMessage-ID: <m{u}@test>\n\nbody\n").into_bytes(),
                        *f,
                    ),
                );
            }
        }
        for (i, f) in w.unsynced.iter().enumerate() {
            d.unsynced.push((
                format!("new{i}"),
                format!("Subject: new {i}\n\nbody\n").into_bytes(),
                *f,
            ));
        }
    });
    let mut data = crate::memory::MemStatusData::default();
    for (u, _, _, s) in &w.rows {
        if let Some(f) = s {
            data.records.insert(uid(*u), *f);
        }
    }
    data.validity = [Some(UidValidity(7)), Some(UidValidity(42))];
    status
        .committed
        .lock()
        .unwrap()
        .insert("INBOX".to_string(), data);
    Setup {
        remote,
        local,
        status,
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

async fn run(s: &Setup, policy: &Policy, opts: &ExecOptions) -> Result<(), SyncError> {
    run_releasing(s, policy, opts, None).await
}

/// [`run`], telling `remote_done` when the remote folder is no longer needed.
async fn run_releasing(
    s: &Setup,
    policy: &Policy,
    opts: &ExecOptions,
    remote_done: Option<RemoteDone<'_>>,
) -> Result<(), SyncError> {
    let mut r = s
        .remote
        .open_folder("INBOX", oi_core::Access::ReadWrite)
        .await?;
    let mut l = s
        .local
        .open_folder("INBOX", oi_core::Access::ReadWrite)
        .await?;
    let mut st = s.status.open("INBOX", "INBOX", "INBOX")?;
    let label = FolderLabel {
        account: "test".into(),
        folder: "INBOX".into(),
    };
    sync_folder_releasing(
        &mut r,
        &mut l,
        &mut st,
        policy,
        opts,
        &NullSink,
        &label,
        remote_done,
        None,
    )
    .await?;
    Ok(())
}

async fn replan(s: &Setup, policy: &Policy) -> Plan {
    use oi_core::{Folder, StatusStore};
    let mut r = s
        .remote
        .open_folder("INBOX", oi_core::Access::ReadOnly)
        .await
        .unwrap();
    let mut l = s
        .local
        .open_folder("INBOX", oi_core::Access::ReadOnly)
        .await
        .unwrap();
    let mut st = s.status.open("INBOX", "INBOX", "INBOX").unwrap();
    plan(
        &r.list().await.unwrap(),
        &l.list().await.unwrap(),
        &st.load().unwrap(),
        policy,
    )
}

fn listings(w: &World) -> (Listing, Listing, BTreeMap<Uid, Flags>) {
    let mut r = Listing::default();
    let mut l = Listing::default();
    let mut s = BTreeMap::new();
    for (u, rf, lf, sf) in &w.rows {
        let meta = |f: Flags| MessageMeta {
            flags: f,
            size: None,
        };
        if let Some(f) = rf {
            r.messages.insert(uid(*u), meta(*f));
        }
        if let Some(f) = lf {
            l.messages.insert(uid(*u), meta(*f));
        }
        if let Some(f) = sf {
            s.insert(uid(*u), *f);
        }
    }
    for (i, f) in w.unsynced.iter().enumerate() {
        l.unsynced.push(UnsyncedMessage {
            key: format!("new{i}"),
            flags: *f,
            size: None,
        });
    }
    (r, l, s)
}

fn mirror(step: &Step) -> Step {
    match step.clone() {
        Step::Copy { from, uid, flags } => Step::Copy {
            from: from.other(),
            uid,
            flags,
        },
        Step::Delete { side, uid } => Step::Delete {
            side: side.other(),
            uid,
        },
        Step::SetFlags {
            side,
            uid,
            add,
            remove,
        } => Step::SetFlags {
            side: side.other(),
            uid,
            add,
            remove,
        },
        other => other,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Applying a plan and planning again yields nothing to do.
    #[test]
    fn sync_then_replan_is_empty(w in world(), large in proptest::option::of(0u64..40)) {
        let s = setup(&w);
        let opts = ExecOptions { large_message_bytes: large, ..ExecOptions::default() };
        block_on(run(&s, &w.policy, &opts)).unwrap();
        let again = block_on(replan(&s, &w.policy));
        prop_assert!(again.is_empty(), "second plan not empty: {:?}", again.steps);
    }

    /// Nothing is deleted on a side unless the status says both sides once had it.
    #[test]
    fn deletes_need_a_record(w in world()) {
        let (r, l, s) = listings(&w);
        for step in plan(&r, &l, &s, &w.policy).steps {
            if let Step::Delete { uid, side } = step {
                prop_assert!(s.contains_key(&uid), "delete of {uid} on {side} without record");
                let there = match side { Side::Remote => &r, Side::Local => &l };
                prop_assert!(there.messages.contains_key(&uid));
            }
        }
    }

    /// Swapping the sides mirrors the plan (for messages that carry UIDs).
    #[test]
    fn swapping_sides_mirrors_the_plan(mut w in world()) {
        w.unsynced.clear();
        let (r, l, s) = listings(&w);
        let swapped = Policy { remote: w.policy.local, local: w.policy.remote, ..w.policy };
        let mut a: Vec<Step> = plan(&r, &l, &s, &w.policy).steps.iter().map(mirror).collect();
        let mut b = plan(&l, &r, &s, &swapped).steps;
        a.sort();
        b.sort();
        prop_assert_eq!(a, b);
    }
}

/// The state both sides and the status end in, without UIDs of uploads (which a server
/// chooses) and without the upload marker header (random): message bodies with flags.
type Contents = Vec<(Vec<u8>, Flags)>;

fn final_state(s: &Setup) -> (Contents, Contents) {
    let collect = |repo: &MemRepository| {
        repo.with("INBOX", |d| {
            let strip = |b: &Vec<u8>| {
                let text = String::from_utf8_lossy(b).to_string();
                let kept: Vec<&str> = text
                    .split_inclusive('\n')
                    .filter(|l| !l.starts_with("X-OfflineIMAP:"))
                    .collect();
                kept.concat().into_bytes()
            };
            let mut v: Vec<_> = d.messages.values().map(|(b, f)| (strip(b), *f)).collect();
            v.extend(d.unsynced.iter().map(|(_, b, f)| (b.clone(), *f)));
            v.sort();
            v
        })
    };
    (collect(&s.remote), collect(&s.local))
}

/// isync-style: stop after every number of effects, resume, and end where an
/// uninterrupted run ends: uploads included, which the upload marker finds again.
#[test]
fn interrupted_at_every_step_converges() {
    let mut w = World {
        rows: Vec::new(),
        unsynced: Vec::new(),
        policy: Policy::default(),
    };
    let f = Flags::from_maildir;
    for u in 1..=6 {
        w.rows.push((u, Some(f("S")), Some(f("S")), Some(f("S"))));
    }
    w.rows[0].1 = Some(f("FS")); // flag change on the remote
    w.rows[1].2 = Some(f("")); // flag change locally
    w.rows[2].1 = None; // deleted on the remote
    w.rows[3].2 = None; // deleted locally
    for u in 7..=10 {
        w.rows.push((u, Some(f("R")), None, None)); // new on the remote
    }
    w.unsynced = vec![f("S"), f(""), f("F")]; // new locally
    let expected = {
        let s = setup(&w);
        block_on(run(&s, &w.policy, &ExecOptions::default())).unwrap();
        final_state(&s)
    };
    // Every message small (in memory), then every message "large" (through files).
    for large in [None, Some(0)] {
        let mut crashed = 0;
        for n in 0..64 {
            let s = setup(&w);
            let opts = ExecOptions {
                crash_after: Some(n),
                large_message_bytes: large,
                ..ExecOptions::default()
            };
            match block_on(run(&s, &w.policy, &opts)) {
                Err(SyncError::CrashHook) => crashed += 1,
                Ok(()) => {
                    assert_eq!(final_state(&s), expected, "uninterrupted at n={n}");
                    break;
                }
                Err(e) => panic!("n={n}: {e}"),
            }
            let resume = ExecOptions {
                large_message_bytes: large,
                ..ExecOptions::default()
            };
            block_on(run(&s, &w.policy, &resume)).unwrap();
            assert_eq!(
                final_state(&s),
                expected,
                "after a stop at effect {n} ({large:?})"
            );
            assert!(block_on(replan(&s, &w.policy)).is_empty(), "n={n}");
        }
        assert!(crashed > 5, "the hook never fired often enough: {crashed}");
    }
}

/// The server renumbers the folder (new UIDVALIDITY): messages are re-paired by
/// Message-ID, whatever the new numbering (shifted, swapped), nothing is lost or
/// duplicated, and a local flag change survives.
#[test]
fn uidvalidity_change_is_repaired_by_message_id() {
    for renumber in [[11, 12, 13, 14], [2, 1, 4, 3], [3, 4, 1, 2]] {
        let w = World {
            rows: (1..=4)
                .map(|u| (u, Some(Flags::SEEN), Some(Flags::SEEN), Some(Flags::SEEN)))
                .collect(),
            unsynced: Vec::new(),
            policy: Policy::default(),
        };
        let s = setup(&w);
        s.remote.with("INBOX", |d| {
            d.uid_validity = UidValidity(99);
            let old = std::mem::take(&mut d.messages);
            for (i, (_, m)) in old.into_iter().enumerate() {
                if i != 1 {
                    // message 2 vanished in the reset
                    d.messages.insert(uid(renumber[i]), m);
                }
            }
            d.messages.insert(
                uid(20),
                (
                    b"Subject: fresh\nMessage-ID: <fresh@test>\n\nb\n".to_vec(),
                    Flags::EMPTY,
                ),
            );
            d.next_uid = 21;
        });
        s.local.with("INBOX", |d| {
            d.messages.get_mut(&uid(3)).unwrap().1 = Flags::SEEN | Flags::FLAGGED;
        });
        block_on(run(&s, &w.policy, &ExecOptions::default())).unwrap();
        let (remote, local) = final_state(&s);
        assert_eq!(remote, local, "{renumber:?}");
        let subjects: Vec<String> = remote
            .iter()
            .map(|(b, _)| {
                String::from_utf8_lossy(b)
                    .lines()
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            subjects,
            [
                "Subject: fresh",
                "Subject: msg 1",
                "Subject: msg 2",
                "Subject: msg 3",
                "Subject: msg 4"
            ],
            "{renumber:?}"
        );
        assert!(
            remote.iter().any(
                |(b, f)| b.starts_with(b"Subject: msg 3") && *f == Flags::SEEN | Flags::FLAGGED
            )
        );
        assert!(block_on(replan(&s, &w.policy)).is_empty(), "{renumber:?}");
        let st = s.status.committed.lock().unwrap()["INBOX"].clone();
        assert_eq!(st.validity[0], Some(UidValidity(99)));
    }
}

/// A local side that no longer matches the saved UIDVALIDITY is not guessed at.
#[test]
fn local_uidvalidity_change_stops_the_folder_and_touches_nothing() {
    let w = World {
        rows: vec![(1, Some(Flags::SEEN), Some(Flags::SEEN), Some(Flags::SEEN))],
        unsynced: Vec::new(),
        policy: Policy::default(),
    };
    let s = setup(&w);
    s.local.with("INBOX", |d| d.uid_validity = UidValidity(7));
    s.remote.with("INBOX", |d| {
        d.messages.insert(uid(5), (b"x".to_vec(), Flags::EMPTY));
    });
    let err = block_on(run(&s, &w.policy, &ExecOptions::default())).unwrap_err();
    assert!(
        matches!(
            err,
            SyncError::UidValidity {
                side: Side::Local,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.severity(), oi_core::Severity::Folder);
    assert_eq!(s.local.with("INBOX", |d| d.messages.len()), 1);
}

/// UIDs 1..=n, seen, on the server only: nothing local, nothing recorded.
fn on_server_only(n: u32) -> World {
    World {
        rows: (1..=n)
            .map(|u| (u, Some(Flags::SEEN), None, None))
            .collect(),
        unsynced: Vec::new(),
        policy: Policy::default(),
    }
}

/// A local folder with messages but no state (mbsync's, or state lost) is adopted: what
/// the server has is paired, not uploaded again.
#[test]
fn stateless_local_messages_are_adopted_not_duplicated() {
    let w = on_server_only(3);
    let s = setup(&w);
    s.status.committed.lock().unwrap().clear();
    s.local.with("INBOX", |d| {
        for u in 1..=3 {
            let body = format!("Subject: msg {u}\nMessage-ID: <m{u}@test>\n\nbody\n");
            d.unsynced
                .push((format!("mbsync{u}"), body.into_bytes(), Flags::EMPTY));
        }
        d.unsynced.push((
            "mine".into(),
            b"Subject: mine\n\nx\n".to_vec(),
            Flags::EMPTY,
        ));
    });
    block_on(run(&s, &w.policy, &ExecOptions::default())).unwrap();
    let (remote, local) = final_state(&s);
    assert_eq!(remote.len(), 4, "{remote:?}");
    assert_eq!(remote, local);
    assert!(block_on(replan(&s, &w.policy)).is_empty());
}

#[test]
fn first_sync_saves_validity_and_dry_run_changes_nothing() {
    let w = World {
        rows: vec![(1, Some(Flags::SEEN), None, None)],
        unsynced: Vec::new(),
        policy: Policy::default(),
    };
    let s = setup(&w);
    s.status.committed.lock().unwrap().clear();
    let dry = ExecOptions {
        dry_run: true,
        ..ExecOptions::default()
    };
    block_on(run(&s, &w.policy, &dry)).unwrap();
    assert!(s.status.committed.lock().unwrap().is_empty());
    assert!(s.local.with("INBOX", |d| d.messages.is_empty()));
    block_on(run(&s, &w.policy, &ExecOptions::default())).unwrap();
    let st = s.status.committed.lock().unwrap()["INBOX"].clone();
    assert_eq!(st.validity, [Some(UidValidity(7)), Some(UidValidity(42))]);
    assert_eq!(st.records.len(), 1);
}

/// A mailbox recreated on the server numbers from 1 again: local messages whose UIDs
/// nobody knows are uploaded and renamed, and a new UID equal to a pending old one must
/// neither merge nor lose a message.
#[test]
fn reupload_with_colliding_uids_loses_nothing() {
    for (olds, next_uid) in [
        (vec![1, 2], 1),
        (vec![5, 9], 4),
        (vec![1, 2], 2),
        (vec![3, 4, 7], 4),
    ] {
        let w = World {
            rows: Vec::new(),
            unsynced: Vec::new(),
            policy: Policy::default(),
        };
        let s = setup(&w);
        s.remote.with("INBOX", |d| d.next_uid = next_uid);
        s.local.with("INBOX", |d| {
            for o in &olds {
                d.messages.insert(
                    uid(*o),
                    (format!("Subject: m{o}\n\nb\n").into_bytes(), Flags::SEEN),
                );
            }
        });
        s.status.committed.lock().unwrap().clear();
        block_on(run(&s, &w.policy, &ExecOptions::default())).unwrap();
        let (remote, local) = final_state(&s);
        assert_eq!(remote.len(), olds.len(), "{olds:?}/{next_uid}: {remote:?}");
        assert_eq!(remote, local, "{olds:?}/{next_uid}");
        assert!(block_on(replan(&s, &w.policy)).is_empty());
    }
}

#[test]
fn mass_deletion_guard_stops_the_folder_unless_allowed() {
    // Everything was synced, then the local folder lost 8 of its 10 messages.
    let mut w = World {
        rows: (1..=10)
            .map(|u| (u, Some(Flags::SEEN), Some(Flags::SEEN), Some(Flags::SEEN)))
            .collect(),
        unsynced: Vec::new(),
        policy: Policy::default(),
    };
    for row in w.rows.iter_mut().take(8) {
        row.2 = None;
    }
    let s = setup(&w);
    let err = block_on(run(&s, &w.policy, &ExecOptions::default())).unwrap_err();
    assert!(
        matches!(
            err,
            SyncError::MassDeletion {
                deletes: 8,
                total: 10,
                side: Side::Remote,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("max_delete_percent=100"), "{err}");
    assert_eq!(
        s.remote.with("INBOX", |d| d.messages.len()),
        10,
        "the guard let deletions through"
    );
    let mut allowed = w.policy;
    allowed.guard.max_percent = 100;
    block_on(run(&s, &allowed, &ExecOptions::default())).unwrap();
    assert_eq!(s.remote.with("INBOX", |d| d.messages.len()), 2);
}

#[test]
fn guard_allows_small_and_partial_deletions() {
    let g = DeletionGuard::default();
    assert!(!g.trips(5, 5), "emptying a small folder is normal");
    assert!(!g.trips(40, 100));
    assert!(g.trips(60, 100));
    assert!(!DeletionGuard { max_percent: 100 }.trips(100, 100));
}

/// Custom letters the server has no keyword for stay local: not pushed, never read back as
/// removed (which would strip them from the local file).
#[test]
fn letters_the_remote_cannot_hold_stay_local() {
    let policy = Policy {
        remote_flags: RemoteFlags(Flags::from_maildir("DFRST")),
        ..Policy::default()
    };

    // Synced with "S"; locally "a" was added; the server shows only S.
    let p = plan(
        &listing(&[(1, "S")]),
        &listing(&[(1, "Sa")]),
        &status(&[(1, "S")]),
        &policy,
    );
    assert_eq!(
        p.steps,
        vec![Step::Record {
            uid: uid(1),
            flags: Flags::from_maildir("Sa")
        }]
    );
    // Next run: nothing to do, and the local letter is not removed.
    let p = plan(
        &listing(&[(1, "S")]),
        &listing(&[(1, "Sa")]),
        &status(&[(1, "Sa")]),
        &policy,
    );
    assert!(p.is_empty(), "{p:?}");
    // A server flag change still reaches the local side, keeping the letter.
    let p = plan(
        &listing(&[(1, "FS")]),
        &listing(&[(1, "Sa")]),
        &status(&[(1, "Sa")]),
        &policy,
    );
    assert_eq!(
        p.steps[0],
        Step::SetFlags {
            side: Side::Local,
            uid: uid(1),
            add: Flags::FLAGGED,
            remove: Flags::EMPTY
        }
    );
}

/// A killed client's APPEND can land on the server after the next run looked for it: that
/// run uploads the message again, and the late copy (it carries the old marker, kept in
/// the status) is deleted by the run after.
#[test]
fn late_landing_upload_is_removed_as_our_duplicate() {
    let w = World {
        rows: Vec::new(),
        unsynced: vec![Flags::SEEN],
        policy: Policy::default(),
    };
    let s = setup(&w);
    // A previous run recorded the upload of new0 under marker "M1" and died in the APPEND.
    {
        use oi_core::StatusStore;
        let mut st = s.status.open("INBOX", "INBOX", "INBOX").unwrap();
        st.add_pending_upload(&oi_core::PendingUpload {
            marker: "M1".into(),
            source: oi_core::MsgRef::Unsynced("new0".into()),
        })
        .unwrap();
        st.commit().unwrap();
    }
    // This run does not see it on the server yet: it uploads the message again.
    block_on(run(&s, &w.policy, &ExecOptions::default())).unwrap();
    assert_eq!(s.remote.with("INBOX", |d| d.messages.len()), 1);
    // Now the first APPEND lands.
    s.remote.with("INBOX", |d| {
        let body = oi_core::marker::insert_marker(b"Subject: new 0\n\nbody\n", "M1");
        let uid = uid(d.next_uid);
        d.next_uid += 1;
        d.messages.insert(uid, (body, Flags::SEEN));
    });
    block_on(run(&s, &w.policy, &ExecOptions::default())).unwrap();
    let (remote, local) = final_state(&s);
    assert_eq!(remote.len(), 1, "the late copy stayed: {remote:?}");
    assert_eq!(remote, local);
    assert!(block_on(replan(&s, &w.policy)).is_empty());
    let pending = s.status.committed.lock().unwrap()["INBOX"].pending.clone();
    assert!(pending.is_empty(), "{pending:?}");
}

/// The late copy lands while the next run is going (after it looked for it, before it
/// ends): that same run removes it, so no run ends with a duplicate it could have seen.
#[test]
fn upload_landing_during_the_next_run_is_removed_by_that_run() {
    let w = World {
        rows: Vec::new(),
        unsynced: vec![Flags::SEEN],
        policy: Policy::default(),
    };
    let s = setup(&w);
    {
        use oi_core::StatusStore;
        let mut st = s.status.open("INBOX", "INBOX", "INBOX").unwrap();
        st.add_pending_upload(&oi_core::PendingUpload {
            marker: "M1".into(),
            source: oi_core::MsgRef::Unsynced("new0".into()),
        })
        .unwrap();
        st.commit().unwrap();
    }
    s.remote.with("INBOX", |d| {
        let body = oi_core::marker::insert_marker(b"Subject: new 0\n\nbody\n", "M1");
        d.lands_after_next_append = Some((body, Flags::SEEN));
    });
    block_on(run(&s, &w.policy, &ExecOptions::default())).unwrap();
    let (remote, local) = final_state(&s);
    assert_eq!(remote.len(), 1, "the late copy stayed: {remote:?}");
    assert_eq!(remote, local);
    let pending = s.status.committed.lock().unwrap()["INBOX"].pending.clone();
    assert!(pending.is_empty(), "{pending:?}");
    assert!(block_on(replan(&s, &w.policy)).is_empty());
}

/// An account sync of two in-memory repositories, with default options.
fn sync_mem_account(
    remote: &MemRepository,
    local: &MemRepository,
    status: &MemStatusFactory,
    policy: &crate::account::AccountPolicy,
) -> Result<crate::account::AccountReport, SyncError> {
    block_on(crate::account::sync_account(
        "acc",
        remote,
        local,
        status,
        &crate::account::PlainNaming,
        policy,
        &ExecOptions::default(),
        &NullSink,
    ))
}

/// Several folders at once (maxconnections) end exactly where one at a time ends.
#[test]
fn parallel_folders_match_sequential() {
    use crate::account::AccountPolicy;
    let build = || {
        let remote = MemRepository::server('.');
        let local = MemRepository::maildir('.');
        for f in ["INBOX", "A", "B", "C", "D"] {
            remote.with(f, |d| {
                d.next_uid = 10;
                for u in 1..=3 {
                    d.messages.insert(
                        uid(u),
                        (format!("Subject: {f}{u}\n\nx\n").into_bytes(), Flags::SEEN),
                    );
                }
            });
        }
        local.with("L", |d| {
            d.unsynced
                .push(("k".into(), b"Subject: l\n\nx\n".to_vec(), Flags::EMPTY))
        });
        (remote, local, MemStatusFactory::default())
    };
    let state = |r: &MemRepository, l: &MemRepository| {
        let all = |m: &MemRepository| {
            let names: Vec<String> = m.folders.lock().unwrap().keys().cloned().collect();
            names
                .into_iter()
                .map(|n| {
                    // Upload markers are random: compare without them.
                    let msgs: Vec<_> = m.with(&n, |d| {
                        d.messages
                            .values()
                            .map(|(b, f)| {
                                let t = String::from_utf8_lossy(b).replace(
                                    &format!(
                                        "X-OfflineIMAP: {}\n",
                                        oi_core::marker::marker_of(b).unwrap_or_default()
                                    ),
                                    "",
                                );
                                (t, *f)
                            })
                            .collect()
                    });
                    (n, msgs)
                })
                .collect::<Vec<_>>()
        };
        (all(r), all(l))
    };
    let mut results = Vec::new();
    for connections in [1, 3] {
        let (r, l, st) = build();
        let policy = AccountPolicy {
            create_remote: true,
            create_local: true,
            connections,
            ..AccountPolicy::default()
        };
        let report = sync_mem_account(&r, &l, &st, &policy).unwrap();
        assert!(report.failed.is_empty());
        assert_eq!(report.per_folder.len(), 6);
        results.push(state(&r, &l));
    }
    assert_eq!(results[0], results[1]);
}

/// A folder that gave its connection back and is finishing its local side does not keep
/// the next folders from starting: with one connection, A's and B's local close wait
/// until C is opened on the server. Counting them as under way (two, one more than the
/// connections) would never start C, and the sync would never end.
#[test]
fn folders_finishing_locally_do_not_hold_back_the_next() {
    use crate::account::AccountPolicy;
    use crate::memory::Gate;
    let remote = MemRepository::server('.');
    let local = MemRepository::maildir('.');
    let gate = Gate::default();
    for f in ["A", "B", "C"] {
        remote.with(f, |d| {
            d.next_uid = 2;
            d.messages.insert(
                uid(1),
                (format!("Subject: {f}\n\nx\n").into_bytes(), Flags::SEEN),
            );
        });
        local.with(f, |d| {
            if f != "C" {
                d.close_waits_for = Some(gate.clone());
            }
        });
    }
    remote.with("C", |d| d.opening_opens = Some(gate.clone()));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let (r, l) = (remote.clone(), local.clone());
    std::thread::spawn(move || {
        let policy = AccountPolicy {
            connections: 1,
            ..AccountPolicy::default()
        };
        let st = MemStatusFactory::default();
        let report = sync_mem_account(&r, &l, &st, &policy);
        let _ = done_tx.send(report.map(|r| (r.failed.len(), r.per_folder.len())));
    });
    // A hang guard, not a timing assertion: the sync takes milliseconds or never ends.
    let report = done_rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the sync never ended: C waited for A and B to finish their local side");
    assert_eq!(report.unwrap(), (0, 3));
    for f in ["A", "B", "C"] {
        assert_eq!(local.with(f, |d| d.messages.len()), 1, "{f}");
    }
}

/// ... but no more than four of them: with one connection and seven folders whose local
/// close takes a hundred turns (a slow disk), folders start as soon as the one before gives
/// its connection back, until six are open (one syncing, one more, four finishing); the
/// seventh waits for one of them to end.
#[test]
fn at_most_four_folders_finish_while_the_next_sync() {
    use crate::account::AccountPolicy;
    let remote = MemRepository::server('.');
    let local = MemRepository::maildir('.');
    let names = ["A", "B", "C", "D", "E", "F", "G"];
    for f in names {
        remote.with(f, |d| {
            d.next_uid = 2;
            d.messages.insert(
                uid(1),
                (format!("Subject: {f}\n\nx\n").into_bytes(), Flags::SEEN),
            );
        });
        local.with(f, |d| d.close_yields = 100);
    }
    let policy = AccountPolicy {
        connections: 1,
        ..AccountPolicy::default()
    };
    let report = sync_mem_account(&remote, &local, &MemStatusFactory::default(), &policy).unwrap();
    assert!(report.failed.is_empty());
    assert_eq!(report.per_folder.len(), names.len());
    assert_eq!(
        *local.open_now_and_most.lock().unwrap(),
        (0, 6),
        "folders open (now, at most at once)"
    );
}

/// Downloads into a store with a spool (a Maildir) go through fetch_spooled, asking the
/// server for internal dates only when the store keeps them (a Maildir does not).
#[test]
fn downloads_ask_for_dates_only_where_they_are_kept() {
    for keeps in [false, true] {
        let w = on_server_only(3);
        let s = setup(&w);
        let spool = tempfile::tempdir().unwrap();
        s.local.with("INBOX", |d| {
            d.spool = Some(spool.path().to_path_buf());
            d.keeps_dates = keeps;
        });
        block_on(run(&s, &Policy::default(), &ExecOptions::default())).unwrap();
        assert_eq!(s.local.with("INBOX", |d| d.messages.len()), 3);
        let asked = s.remote.with("INBOX", |d| d.spooled_dates.clone());
        assert!(!asked.is_empty());
        assert!(
            asked.iter().all(|&d| d == keeps),
            "keeps={keeps}: {asked:?}"
        );
    }
}

/// Two server folders that translate to one local folder and one status (`a.b` and `a/b`
/// on a `/` server) are not both synced into it: the first is, the second fails with a
/// message, and neither side gets the other's messages.
#[test]
fn folders_that_collide_locally_are_not_mixed() {
    use crate::account::AccountPolicy;
    let remote = MemRepository::server('/');
    let local = MemRepository::maildir('.');
    for f in ["a.b", "a/b"] {
        remote.with(f, |d| {
            d.next_uid = 2;
            d.messages.insert(
                uid(1),
                (format!("Subject: {f}\n\nx\n").into_bytes(), Flags::SEEN),
            );
        });
    }
    let status = MemStatusFactory::default();
    let policy = AccountPolicy {
        create_remote: true,
        create_local: true,
        ..AccountPolicy::default()
    };
    let report = sync_mem_account(&remote, &local, &status, &policy).unwrap();
    let failed: Vec<&str> = report.failed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(failed, ["a/b"]);
    let message = report.failed[0].1.to_string();
    assert!(
        message.contains("would share the local folder a.b"),
        "{message}"
    );
    let subjects = |m: &MemRepository, f: &str| -> Vec<String> {
        m.with(f, |d| {
            d.messages
                .values()
                .map(|(b, _)| String::from_utf8_lossy(b).into_owned())
                .collect()
        })
    };
    assert_eq!(subjects(&local, "a.b"), ["Subject: a.b\n\nx\n"]);
    assert_eq!(subjects(&remote, "a/b"), ["Subject: a/b\n\nx\n"]);
    assert_eq!(subjects(&remote, "a.b"), ["Subject: a.b\n\nx\n"]);
}

/// Once a folder handed its connection to the next one, its flushes and its last commit
/// may wait for the disk aside (Folder::flush_aside, StatusStore::commit_aside), so that the
/// next folder's exchange with the server runs meanwhile; before that, or with no one to
/// hand over to, the plain flush and commit.
#[test]
fn a_folder_flushes_aside_only_once_its_connection_is_handed_over() {
    for hand_over in [false, true] {
        let w = on_server_only(3);
        let s = setup(&w);
        let flushes = block_on(async {
            let released = std::sync::atomic::AtomicBool::new(false);
            let done: Option<RemoteDone<'_>> = hand_over.then(|| {
                Box::new(|| released.store(true, std::sync::atomic::Ordering::SeqCst))
                    as RemoteDone<'_>
            });
            run_releasing(&s, &Policy::default(), &ExecOptions::default(), done)
                .await
                .unwrap();
            assert_eq!(released.into_inner(), hand_over);
            s.local.with("INBOX", |d| d.flushes)
        });
        let copied = s.local.with("INBOX", |d| d.messages.len());
        assert_eq!(copied, 3, "hand_over={hand_over}");
        // The folder's last commit too, and only that one.
        let status = s.status.committed.lock().unwrap()["INBOX"].clone();
        assert_eq!(status.records.len(), 3);
        assert_eq!(status.aside_commits, usize::from(hand_over));
        if hand_over {
            assert_eq!(flushes.0, 0, "{flushes:?}");
            assert!(flushes.1 > 0, "{flushes:?}");
        } else {
            assert!(flushes.0 > 0, "{flushes:?}");
            assert_eq!(flushes.1, 0, "{flushes:?}");
        }
    }
}
