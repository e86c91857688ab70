//! Turns engine events into OfflineIMAP's log records: the text its `UIBase` prints and the
//! command and payload its machine UI prints, from one place so that every renderer agrees.

use std::collections::HashMap;
use std::time::Instant;

use oi_core::{Event, Flags, Severity, Side, SyncStats, Uid};

/// A log level, as Python's `logging` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Shown only when debugging.
    Debug,
    /// Progress.
    Info,
    /// Something worth attention that did not stop anything.
    Warning,
    /// Something failed.
    Error,
}

impl Level {
    /// Python's level name (`INFO`), as the log file prints it.
    pub fn name(self) -> &'static str {
        match self {
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
        }
    }
}

/// One line (possibly with embedded newlines) of OfflineIMAP's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Level of the human-readable text.
    pub level: Level,
    /// The human-readable text (`UIBase`'s wording).
    pub text: String,
    /// OfflineIMAP's thread name the line would come from (`Account sync NAME`,
    /// `Folder NAME [acc: ACCOUNT]`, `MainThread`); TTYUI and the machine UI show it.
    pub whoami: String,
    /// What the machine UI prints instead: level, command and payload. `None` means the
    /// machine UI prints the text under an empty command, as OfflineIMAP does for plain
    /// `ui.info` calls.
    pub machine: Option<(Level, &'static str, String)>,
}

/// Names remembered from earlier events, so that later events can stay small.
#[derive(Debug, Default)]
pub struct State {
    repos: HashMap<String, Repos>,
    local_folder: HashMap<(String, String), String>,
    started: HashMap<String, Instant>,
    /// Totals of the run so far.
    pub summary: RunSummary,
    /// `--dry-run`: OfflineIMAP prefixes some lines with `[DRYRUN] `.
    pub dry_run: bool,
}

#[derive(Debug, Clone, Default)]
struct Repos {
    remote_name: String,
    remote_kind: String,
    local_name: String,
    local_kind: String,
}

/// What a run did, for the end-of-run summary and the exit code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Messages copied, flagged and deleted, per direction, over all accounts.
    pub stats: SyncStats,
    /// Accounts that finished.
    pub accounts: usize,
    /// Folders that failed.
    pub failed_folders: usize,
    /// Errors shown.
    pub errors: usize,
    /// Warnings shown.
    pub warnings: usize,
    /// The errors' texts, repeated at the end as OfflineIMAP does.
    pub error_texts: Vec<String>,
}

impl RunSummary {
    /// The summary as lines of text (empty parts are still shown: a cron mail that always
    /// has the same shape is easier to read).
    pub fn lines(&self) -> Vec<String> {
        let s = &self.stats;
        vec![format!(
            "*** Summary: {} account(s); copied {} to local, {} to remote; flags changed on \
             {} local, {} remote; deleted {} local, {} remote; {} folder(s) failed; \
             {} error(s), {} warning(s)",
            self.accounts,
            s.copied_to_local,
            s.copied_to_remote,
            s.flagged_local,
            s.flagged_remote,
            s.deleted_local,
            s.deleted_remote,
            self.failed_folders,
            self.errors,
            self.warnings
        )]
    }
}

fn account_thread(account: &str) -> String {
    format!("Account sync {account}")
}

fn folder_thread(account: &str, folder: &str) -> String {
    format!("Folder {folder} [acc: {account}]")
}

/// OfflineIMAP's `uid_sequence`: runs of consecutive UIDs as `a:b`, joined by commas.
pub fn uid_sequence(uids: &[Uid]) -> String {
    let mut sorted: Vec<u32> = uids.iter().map(|u| u.get()).collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}:{end}")
        });
        i += 1;
    }
    parts.join(",")
}

impl State {
    fn repos(&self, account: &str) -> Repos {
        self.repos.get(account).cloned().unwrap_or_else(|| Repos {
            remote_name: "Remote".into(),
            remote_kind: "IMAP".into(),
            local_name: "Local".into(),
            local_kind: "Maildir".into(),
        })
    }

    /// (repository name, kind, folder name) of a folder pair's side.
    fn side(&self, account: &str, folder: &str, side: Side) -> (String, String, String) {
        let r = self.repos(account);
        match side {
            Side::Remote => (r.remote_name, r.remote_kind, folder.to_string()),
            Side::Local => {
                let local = self
                    .local_folder
                    .get(&(account.to_string(), folder.to_string()))
                    .cloned()
                    .unwrap_or_else(|| folder.to_string());
                (r.local_name, r.local_kind, local)
            }
        }
    }

    /// The local folder name of a pair, when known.
    pub fn local_name(&self, account: &str, folder: &str) -> Option<&str> {
        self.local_folder
            .get(&(account.to_string(), folder.to_string()))
            .map(String::as_str)
    }

    /// The records of an event, updating what is remembered.
    pub fn records(&mut self, event: &Event) -> Vec<Record> {
        let rec = |level, text: String, whoami: String, machine| Record {
            level,
            text,
            whoami,
            machine,
        };
        let dry = if self.dry_run { "[DRYRUN] " } else { "" };
        match event {
            Event::AccountStart { account } => {
                self.started.insert(account.clone(), Instant::now());
                vec![rec(
                    Level::Info,
                    format!("*** Processing account {account}"),
                    account_thread(account),
                    Some((Level::Info, "acct", account.clone())),
                )]
            }
            Event::AccountDone {
                account,
                stats,
                failed_folders,
            } => {
                self.summary.stats.add(stats);
                self.summary.accounts += 1;
                self.summary.failed_folders += failed_folders;
                let secs = self
                    .started
                    .remove(account)
                    .map_or(0, |t| t.elapsed().as_secs());
                vec![rec(
                    Level::Info,
                    format!(
                        "*** Finished account '{account}' in {}:{:02}",
                        secs / 60,
                        secs % 60
                    ),
                    account_thread(account),
                    Some((Level::Info, "acctdone", account.clone())),
                )]
            }
            Event::SyncFolders {
                account,
                remote_name,
                remote_kind,
                local_name,
                local_kind,
            } => {
                self.repos.insert(
                    account.clone(),
                    Repos {
                        remote_name: remote_name.clone(),
                        remote_kind: remote_kind.clone(),
                        local_name: local_name.clone(),
                        local_kind: local_kind.clone(),
                    },
                );
                vec![rec(
                    Level::Debug,
                    format!("Copying folder structure from {remote_name} to {local_name}"),
                    account_thread(account),
                    Some((
                        Level::Info,
                        "syncfolders",
                        format!("{remote_kind}\n{local_kind}"),
                    )),
                )]
            }
            Event::Connecting {
                account,
                repository,
                host,
                port,
            } => {
                let repo = repository.clone().unwrap_or_default();
                let port_text = port.map(|p| p.to_string()).unwrap_or_default();
                let target = if host.is_empty() {
                    String::new()
                } else {
                    format!(" to {host}:{port_text}")
                };
                vec![rec(
                    Level::Info,
                    format!("Establishing connection{target} ({repo})"),
                    account
                        .as_deref()
                        .map_or_else(|| "MainThread".to_string(), account_thread),
                    Some((
                        Level::Info,
                        "connecting",
                        format!("{host}\n{port_text}\n{repo}"),
                    )),
                )]
            }
            Event::FolderCreated {
                account,
                side,
                folder,
            } => {
                let r = self.repos(account);
                let repo = match side {
                    Side::Remote => r.remote_name,
                    Side::Local => r.local_name,
                };
                vec![rec(
                    Level::Info,
                    format!("{dry}Creating folder {folder}[{repo}]"),
                    account_thread(account),
                    None,
                )]
            }
            Event::FolderStart { .. } => Vec::new(),
            Event::SyncingFolder {
                account,
                folder,
                local_folder,
            } => {
                self.local_folder
                    .insert((account.clone(), folder.clone()), local_folder.clone());
                let r = self.repos(account);
                vec![rec(
                    Level::Info,
                    format!("Syncing {folder}: {} -> {}", r.remote_kind, r.local_kind),
                    folder_thread(account, folder),
                    Some((
                        Level::Info,
                        "syncingfolder",
                        format!(
                            "{}\n{folder}\n{}\n{local_folder}\n",
                            r.remote_kind, r.local_kind
                        ),
                    )),
                )]
            }
            Event::MessageListLoading {
                account,
                folder,
                side,
            } => {
                let (_, kind, name) = self.side(account, folder, *side);
                vec![rec(
                    Level::Debug,
                    format!("Loading message list for {kind}[{name}]"),
                    folder_thread(account, folder),
                    Some((Level::Info, "loadmessagelist", format!("{kind}\n{name}"))),
                )]
            }
            Event::MessageListLoaded {
                account,
                folder,
                side,
                count,
            } => {
                let (_, kind, name) = self.side(account, folder, *side);
                // OfflineIMAP's IMAP folder returns early, without this line, from an
                // empty mailbox.
                if *count == 0 && kind == "IMAP" {
                    return Vec::new();
                }
                vec![rec(
                    Level::Debug,
                    format!("Message list for {kind}[{name}] loaded: {count} messages"),
                    folder_thread(account, folder),
                    Some((
                        Level::Info,
                        "messagelistloaded",
                        format!("{kind}\n{name}\n{count}"),
                    )),
                )]
            }
            Event::SyncingMessages {
                account,
                folder,
                from,
            } => {
                let (_, skind, sname) = self.side(account, folder, *from);
                let (_, dkind, dname) = self.side(account, folder, from.other());
                vec![rec(
                    Level::Debug,
                    format!("Syncing messages {skind}[{sname}] -> {dkind}[{dname}]"),
                    folder_thread(account, folder),
                    Some((
                        Level::Info,
                        "syncingmessages",
                        format!("{skind}\n{sname}\n{dkind}\n{dname}\n"),
                    )),
                )]
            }
            Event::CopyingMessage {
                account,
                folder,
                from,
                uid,
                num,
                total,
            } => {
                let (srepo, skind, sname) = self.side(account, folder, *from);
                let (drepo, dkind, dname) = self.side(account, folder, from.other());
                // A new local message has no UID yet; OfflineIMAP numbers them -1, -2, ...
                let uid = uid.map_or_else(|| format!("-{num}"), |u| u.get().to_string());
                vec![rec(
                    Level::Info,
                    format!(
                        "Copy message UID {uid} ({num}/{total}) {srepo}:{sname} -> {drepo}:{dname}"
                    ),
                    folder_thread(account, folder),
                    Some((
                        Level::Info,
                        "copyingmessage",
                        format!("{uid}\n{skind}\n{sname}\n{dkind}[{dname}]"),
                    )),
                )]
            }
            Event::DeletingMessages {
                account,
                folder,
                side,
                uids,
            } => {
                let (_, kind, name) = self.side(account, folder, *side);
                let list: Vec<String> = uids.iter().map(|u| u.get().to_string()).collect();
                vec![rec(
                    Level::Info,
                    format!(
                        "{dry}Deleting {} messages ({}) in {kind}[{name}]",
                        uids.len(),
                        uid_sequence(uids)
                    ),
                    folder_thread(account, folder),
                    Some((
                        Level::Info,
                        "deletingmessages",
                        format!("{}\n{kind}\t{name}", list.join("\u{c}")),
                    )),
                )]
            }
            Event::ChangingFlags {
                account,
                folder,
                side,
                updates,
            } => {
                let (_, _, name) = self.side(account, folder, *side);
                // OfflineIMAP reports one line per flag letter, listing the messages.
                let mut out = Vec::new();
                for adding in [true, false] {
                    let mut per_flag: Vec<(char, Vec<u32>)> = Vec::new();
                    for u in updates {
                        let f: Flags = if adding { u.add } else { u.remove };
                        for letter in f.letters() {
                            match per_flag.iter_mut().find(|(l, _)| *l == letter) {
                                Some((_, v)) => v.push(u.uid.get()),
                                None => per_flag.push((letter, vec![u.uid.get()])),
                            }
                        }
                    }
                    per_flag.sort();
                    for (letter, uids) in per_flag {
                        let (text, command) = if adding {
                            (
                                format!(
                                    "Adding flag {letter} to {} messages on {name}",
                                    uids.len()
                                ),
                                "addingflags",
                            )
                        } else {
                            (
                                format!(
                                    "Deleting flag {letter} from {} messages on {name}",
                                    uids.len()
                                ),
                                "deletingflags",
                            )
                        };
                        let list: Vec<String> = uids.iter().map(u32::to_string).collect();
                        out.push(rec(
                            Level::Info,
                            text,
                            folder_thread(account, folder),
                            Some((
                                Level::Info,
                                command,
                                format!("{}\n{letter}\n{name}", list.join("\u{c}")),
                            )),
                        ));
                    }
                }
                out
            }
            Event::FolderDone { .. } => Vec::new(),
            Event::Planned {
                account,
                folder,
                what,
            } => vec![rec(
                Level::Info,
                format!("[DRYRUN] {folder}: would {what}"),
                folder_thread(account, folder),
                None,
            )],
            Event::Warning { account, message } => {
                self.summary.warnings += 1;
                vec![rec(
                    Level::Warning,
                    message.clone(),
                    account
                        .as_deref()
                        .map_or_else(|| "MainThread".to_string(), account_thread),
                    Some((Level::Warning, "", message.clone())),
                )]
            }
            Event::Error {
                account,
                folder,
                severity,
                message,
            } => {
                self.summary.errors += 1;
                let text = match (account, folder) {
                    (Some(a), Some(f)) => {
                        format!("ERROR: Aborting sync, folder '{f}' [acc: '{a}']\n  {message}")
                    }
                    (Some(a), None) if *severity >= Severity::Repository => {
                        format!("ERROR: While attempting to sync account '{a}'\n  {message}")
                    }
                    _ => format!("ERROR: {message}"),
                };
                self.summary.error_texts.push(text.clone());
                let whoami = match (account, folder) {
                    (Some(a), Some(f)) => folder_thread(a, f),
                    (Some(a), None) => account_thread(a),
                    _ => "MainThread".to_string(),
                };
                vec![rec(Level::Error, text, whoami, None)]
            }
            Event::Info { message } => vec![rec(
                Level::Info,
                message.clone(),
                "MainThread".to_string(),
                Some((Level::Info, "_display", message.clone())),
            )],
            _ => Vec::new(),
        }
    }

    /// OfflineIMAP's closing lines (`UIBase.terminate`): the errors of the run again.
    pub fn terminate_records(&self) -> Vec<Record> {
        let mut out = Vec::new();
        if self.summary.error_texts.is_empty() {
            return out;
        }
        let warn = |text: String| Record {
            level: Level::Warning,
            text: text.clone(),
            whoami: "MainThread".to_string(),
            machine: Some((Level::Warning, "", text)),
        };
        out.push(warn(
            "ERROR: Exceptions occurred during the run!".to_string(),
        ));
        for e in &self.summary.error_texts {
            out.push(warn(e.clone()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oi_core::FlagUpdate;

    fn uid(n: u32) -> Uid {
        Uid::new(n).unwrap()
    }

    #[test]
    fn uid_sequences_collapse_runs() {
        let v: Vec<Uid> = [5, 1, 2, 3, 9, 10].into_iter().map(uid).collect();
        assert_eq!(uid_sequence(&v), "1:3,5,9:10");
        assert_eq!(uid_sequence(&[]), "");
    }

    #[test]
    fn copy_lines_name_repositories_and_folders() {
        let mut s = State::default();
        s.records(&Event::SyncFolders {
            account: "A".into(),
            remote_name: "R".into(),
            remote_kind: "IMAP".into(),
            local_name: "L".into(),
            local_kind: "Maildir".into(),
        });
        s.records(&Event::SyncingFolder {
            account: "A".into(),
            folder: "INBOX.x".into(),
            local_folder: "INBOX/x".into(),
        });
        let r = s.records(&Event::CopyingMessage {
            account: "A".into(),
            folder: "INBOX.x".into(),
            from: Side::Local,
            uid: None,
            num: 2,
            total: 3,
        });
        assert_eq!(
            r[0].text,
            "Copy message UID -2 (2/3) L:INBOX/x -> R:INBOX.x"
        );
        assert_eq!(r[0].whoami, "Folder INBOX.x [acc: A]");
        assert_eq!(
            r[0].machine,
            Some((
                Level::Info,
                "copyingmessage",
                "-2\nMaildir\nINBOX/x\nIMAP[INBOX.x]".to_string()
            ))
        );
    }

    #[test]
    fn flag_changes_are_one_line_per_letter() {
        let mut s = State::default();
        let r = s.records(&Event::ChangingFlags {
            account: "A".into(),
            folder: "INBOX".into(),
            side: Side::Remote,
            updates: vec![
                FlagUpdate {
                    uid: uid(2),
                    add: Flags::from_maildir("SF"),
                    remove: Flags::EMPTY,
                },
                FlagUpdate {
                    uid: uid(3),
                    add: Flags::SEEN,
                    remove: Flags::DRAFT,
                },
            ],
        });
        let texts: Vec<&str> = r.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "Adding flag F to 1 messages on INBOX",
                "Adding flag S to 2 messages on INBOX",
                "Deleting flag D from 1 messages on INBOX"
            ]
        );
        assert_eq!(r[1].machine.as_ref().unwrap().2, "2\u{c}3\nS\nINBOX");
    }

    #[test]
    fn empty_imap_listing_is_silent_like_offlineimap() {
        let mut s = State::default();
        let loaded = |side, count| Event::MessageListLoaded {
            account: "A".into(),
            folder: "INBOX".into(),
            side,
            count,
        };
        assert!(s.records(&loaded(Side::Remote, 0)).is_empty());
        assert_eq!(s.records(&loaded(Side::Local, 0)).len(), 1);
        assert_eq!(s.records(&loaded(Side::Remote, 4)).len(), 1);
    }

    #[test]
    fn account_done_adds_to_the_summary_and_errors_are_repeated() {
        let mut s = State::default();
        s.records(&Event::AccountStart {
            account: "A".into(),
        });
        let stats = SyncStats {
            copied_to_local: 3,
            deleted_remote: 1,
            ..SyncStats::default()
        };
        let r = s.records(&Event::AccountDone {
            account: "A".into(),
            stats,
            failed_folders: 1,
        });
        assert_eq!(r[0].text, "*** Finished account 'A' in 0:00");
        s.records(&Event::Error {
            account: Some("A".into()),
            folder: Some("INBOX".into()),
            severity: Severity::Folder,
            message: "boom".into(),
        });
        assert_eq!(s.summary.stats, stats);
        assert_eq!(s.summary.errors, 1);
        let line = &s.summary.lines()[0];
        assert!(line.contains("copied 3 to local, 0 to remote"), "{line}");
        assert!(line.contains("deleted 0 local, 1 remote"), "{line}");
        assert!(line.contains("1 folder(s) failed; 1 error(s)"), "{line}");
        let t = s.terminate_records();
        assert_eq!(t.len(), 2);
        assert_eq!(
            t[1].text,
            "ERROR: Aborting sync, folder 'INBOX' [acc: 'A']\n  boom"
        );
    }
}
