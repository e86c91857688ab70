//! What every account and folder task is doing, learned from the events the engine and the
//! stores emit: dumped on SIGQUIT, and written as a per-folder timing profile with `-P DIR`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use oi_core::{Event, EventSink, SyncStats};

/// Watches the events of a run.
pub struct Tracker {
    state: Mutex<State>,
    /// `-P DIR`: where the per-folder profiles go.
    profile: Option<PathBuf>,
}

#[derive(Default)]
struct State {
    accounts: BTreeMap<String, Phase>,
    /// Folders being synced, by (account, remote folder name).
    folders: BTreeMap<(String, String), FolderTrack>,
    /// The first profile file that could not be written (reported once).
    profile_error: Option<String>,
}

struct Phase {
    what: String,
    since: Instant,
}

struct FolderTrack {
    started: Instant,
    started_wall: SystemTime,
    phase: Phase,
    /// Finished phases and how long each took, in order.
    done: Vec<(String, Duration)>,
    remote_count: Option<usize>,
    local_count: Option<usize>,
    /// (copied so far, copies planned) of the current direction.
    progress: Option<(usize, usize)>,
}

impl FolderTrack {
    fn enter(&mut self, what: String) {
        if self.phase.what == what {
            return;
        }
        let now = Instant::now();
        let old = std::mem::replace(&mut self.phase, Phase { what, since: now });
        self.done.push((old.what, now - old.since));
        self.progress = None;
    }
}

impl Tracker {
    /// A tracker; with `profile`, each finished folder sync appends its timings there.
    pub fn new(profile: Option<PathBuf>) -> Tracker {
        Tracker {
            state: Mutex::new(State::default()),
            profile,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Only plain maps are behind the lock; a panic cannot leave them inconsistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What every account and folder is doing now, one line each.
    pub fn dump(&self) -> String {
        let state = self.lock();
        let now = Instant::now();
        let mut out = String::from("SIGQUIT: what every task is doing\n");
        if state.accounts.is_empty() {
            out.push_str("  no account has started yet\n");
        }
        for (account, phase) in &state.accounts {
            let _ = writeln!(
                out,
                "  account {account}: {} ({:.1}s)",
                phase.what,
                (now - phase.since).as_secs_f64()
            );
            for ((a, folder), f) in &state.folders {
                if a != account {
                    continue;
                }
                let mut line = format!(
                    "    folder {folder}: {} ({:.1}s, folder {:.1}s)",
                    f.phase.what,
                    (now - f.phase.since).as_secs_f64(),
                    (now - f.started).as_secs_f64()
                );
                if let Some((n, total)) = f.progress {
                    let _ = write!(line, ", message {n} of {total}");
                }
                if let Some(n) = f.remote_count {
                    let _ = write!(line, ", remote {n} messages");
                }
                if let Some(n) = f.local_count {
                    let _ = write!(line, ", local {n} messages");
                }
                out.push_str(&line);
                out.push('\n');
            }
        }
        out
    }

    fn folder_done(&self, state: &mut State, key: &(String, String), outcome: &str) {
        let Some(mut f) = state.folders.remove(key) else {
            return;
        };
        let Some(dir) = &self.profile else { return };
        f.enter(String::new());
        let total = f.started.elapsed();
        let since_epoch = f
            .started_wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut text = format!(
            "# account {} folder {} sync started at {since_epoch} (Unix time)\n",
            key.0, key.1
        );
        for (what, took) in &f.done {
            let _ = writeln!(text, "{what}\t{:.6}", took.as_secs_f64());
        }
        let _ = writeln!(text, "total\t{:.6}", total.as_secs_f64());
        let _ = writeln!(text, "outcome\t{outcome}");
        let path = dir.join(profile_file_name(&key.0, &key.1));
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut file| file.write_all(text.as_bytes()));
        if let Err(e) = written
            && state.profile_error.is_none()
        {
            let message = format!("profile {}: {e}", path.display());
            eprintln!("WARNING: {message}");
            state.profile_error = Some(message);
        }
    }
}

/// `ACCOUNT.FOLDER.prof`, with path separators in the folder name replaced so that each
/// folder gets one file directly in the profile directory.
pub fn profile_file_name(account: &str, folder: &str) -> String {
    let clean = |s: &str| s.replace(['/', '\\', '\0'], "_");
    format!("{}.{}.prof", clean(account), clean(folder))
}

fn stats_text(s: &SyncStats) -> String {
    format!(
        "copied {} to local, {} to remote; flags {} local, {} remote; deleted {} local, {} remote",
        s.copied_to_local,
        s.copied_to_remote,
        s.flagged_local,
        s.flagged_remote,
        s.deleted_local,
        s.deleted_remote
    )
}

impl EventSink for Tracker {
    fn emit(&self, event: Event) {
        let mut state = self.lock();
        let now = Instant::now();
        let state = &mut *state;
        let set_account = |accounts: &mut BTreeMap<String, Phase>, account: &str, what: &str| {
            accounts.insert(
                account.to_string(),
                Phase {
                    what: what.to_string(),
                    since: now,
                },
            );
        };
        match event {
            Event::AccountStart { account } => {
                set_account(&mut state.accounts, &account, "syncing");
                // Folders left over by a sync that failed as a whole.
                state.folders.retain(|(a, _), _| *a != account);
            }
            Event::AccountDone { account, .. } => {
                set_account(&mut state.accounts, &account, "waiting for the next sync");
                state.folders.retain(|(a, _), _| *a != account);
            }
            Event::FolderStart { account, folder } => {
                state.folders.insert(
                    (account, folder),
                    FolderTrack {
                        started: now,
                        started_wall: SystemTime::now(),
                        phase: Phase {
                            what: "opening".to_string(),
                            since: now,
                        },
                        done: Vec::new(),
                        remote_count: None,
                        local_count: None,
                        progress: None,
                    },
                );
            }
            Event::MessageListLoading {
                account,
                folder,
                side,
            } => {
                if let Some(f) = state.folders.get_mut(&(account, folder)) {
                    f.enter(format!("listing {side}"));
                }
            }
            Event::MessageListLoaded {
                account,
                folder,
                side,
                count,
            } => {
                if let Some(f) = state.folders.get_mut(&(account, folder)) {
                    match side {
                        oi_core::Side::Remote => f.remote_count = Some(count),
                        oi_core::Side::Local => f.local_count = Some(count),
                    }
                }
            }
            Event::SyncingMessages {
                account,
                folder,
                from,
            } => {
                if let Some(f) = state.folders.get_mut(&(account, folder)) {
                    f.enter(format!("syncing {from} to {}", from.other()));
                }
            }
            Event::CopyingMessage {
                account,
                folder,
                from,
                num,
                total,
                ..
            } => {
                if let Some(f) = state.folders.get_mut(&(account, folder)) {
                    f.enter(format!("copying {from} to {}", from.other()));
                    f.progress = Some((num, total));
                }
            }
            Event::DeletingMessages {
                account,
                folder,
                side,
                ..
            } => {
                if let Some(f) = state.folders.get_mut(&(account, folder)) {
                    f.enter(format!("deleting on {side}"));
                }
            }
            Event::ChangingFlags {
                account,
                folder,
                side,
                ..
            } => {
                if let Some(f) = state.folders.get_mut(&(account, folder)) {
                    f.enter(format!("changing flags on {side}"));
                }
            }
            Event::FolderDone {
                account,
                folder,
                stats,
            } => {
                let key = (account, folder);
                self.folder_done(state, &key, &stats_text(&stats));
            }
            Event::Error {
                account: Some(account),
                folder: Some(folder),
                ..
            } => {
                let key = (account, folder);
                self.folder_done(state, &key, "failed");
            }
            Event::Error {
                account: Some(account),
                folder: None,
                severity,
                ..
            } if severity >= oi_core::Severity::Repository => {
                set_account(
                    &mut state.accounts,
                    &account,
                    "waiting for the next sync (the last one failed)",
                );
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oi_core::Side;

    fn ev(tracker: &Tracker, events: Vec<Event>) {
        for e in events {
            tracker.emit(e);
        }
    }

    #[test]
    fn dump_names_the_phase_and_counts_of_each_folder() {
        let t = Tracker::new(None);
        assert!(t.dump().contains("no account has started yet"));
        let (a, f) = ("Acc".to_string(), "INBOX".to_string());
        ev(
            &t,
            vec![
                Event::AccountStart { account: a.clone() },
                Event::FolderStart {
                    account: a.clone(),
                    folder: f.clone(),
                },
                Event::MessageListLoaded {
                    account: a.clone(),
                    folder: f.clone(),
                    side: Side::Remote,
                    count: 2000,
                },
                Event::CopyingMessage {
                    account: a.clone(),
                    folder: f.clone(),
                    from: Side::Remote,
                    uid: None,
                    num: 7,
                    total: 2000,
                },
            ],
        );
        let d = t.dump();
        assert!(d.contains("account Acc: syncing"), "{d}");
        assert!(d.contains("folder INBOX: copying remote to local"), "{d}");
        assert!(d.contains("message 7 of 2000"), "{d}");
        assert!(d.contains("remote 2000 messages"), "{d}");
        t.emit(Event::AccountDone {
            account: a,
            stats: SyncStats::default(),
            failed_folders: 0,
        });
        let d = t.dump();
        assert!(d.contains("account Acc: waiting for the next sync"), "{d}");
        assert!(!d.contains("INBOX"), "{d}");
        // A sync that fails as a whole (no AccountDone) does not stay "syncing".
        ev(
            &t,
            vec![
                Event::AccountStart {
                    account: "Acc".into(),
                },
                Event::Error {
                    account: Some("Acc".into()),
                    folder: None,
                    severity: oi_core::Severity::Repository,
                    message: "connection refused".into(),
                },
            ],
        );
        let d = t.dump();
        assert!(d.contains("(the last one failed)"), "{d}");
    }

    #[test]
    fn profile_lists_the_phases_of_each_folder_sync() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tracker::new(Some(dir.path().to_path_buf()));
        let (a, f) = ("Acc".to_string(), "Sub/Dir".to_string());
        ev(
            &t,
            vec![
                Event::FolderStart {
                    account: a.clone(),
                    folder: f.clone(),
                },
                Event::MessageListLoading {
                    account: a.clone(),
                    folder: f.clone(),
                    side: Side::Local,
                },
                Event::SyncingMessages {
                    account: a.clone(),
                    folder: f.clone(),
                    from: Side::Local,
                },
                Event::FolderDone {
                    account: a,
                    folder: f,
                    stats: SyncStats::default(),
                },
            ],
        );
        let text = std::fs::read_to_string(dir.path().join("Acc.Sub_Dir.prof")).unwrap();
        let phases: Vec<&str> = text
            .lines()
            .skip(1)
            .map(|l| l.split('\t').next().unwrap())
            .collect();
        assert_eq!(
            phases,
            [
                "opening",
                "listing local",
                "syncing local to remote",
                "total",
                "outcome"
            ],
            "{text}"
        );
    }
}
