//! User interfaces of offlineimap: the renderers of engine [`Event`]s.
//!
//! OfflineIMAP's interfaces are all here: `quiet`, `basic`, `ttyui`, `machineui` (its
//! machine-readable line protocol, line for line), `syslog` and `blinkenlights`, plus the
//! `-l FILE` log and `-s` (also to syslog). Every renderer works from the same records
//! ([`model`]), so they agree on wording. This crate is the only one that prints; it
//! depends on `oi-core` alone and must not know about IMAP, Maildir, the status store or
//! the engine: it sees only events.
#![deny(missing_docs)]

#[cfg(feature = "blinkenlights")]
pub mod blinken;
pub mod model;
pub mod render;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use oi_core::{Event, EventSink, Severity, StoreError};

use model::{Level, RunSummary, State};
use render::{Lines, LogFile, Machine, Out, Renderer, Syslog, Tty};

/// Errors of setting up an interface.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// The `-l` log file cannot be opened.
    #[error("cannot open the log file {path}: {source}")]
    LogFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The system log socket cannot be reached.
    #[error("cannot reach the system log at {path}: {source}")]
    Syslog {
        /// The socket.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Reading a password from the terminal failed.
    #[error("cannot read the password from the terminal: {0}")]
    Prompt(std::io::Error),
}

impl From<UiError> for StoreError {
    fn from(e: UiError) -> StoreError {
        // Without a password or a log the run cannot go as the user asked.
        StoreError::new(Severity::Fatal, e.to_string())
    }
}

/// Which interface renders events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UiKind {
    /// Errors and warnings only.
    Quiet,
    /// A line log (for cron).
    Basic,
    /// Lines headed by their account/folder, progress on a terminal, password prompt.
    TtyUi,
    /// OfflineIMAP's machine-readable protocol.
    MachineUi,
    /// To the system log.
    Syslog,
    /// Full-screen terminal UI.
    Blinkenlights,
}

impl UiKind {
    /// OfflineIMAP's name of the interface.
    pub fn name(self) -> &'static str {
        match self {
            UiKind::Quiet => "quiet",
            UiKind::Basic => "basic",
            UiKind::TtyUi => "ttyui",
            UiKind::MachineUi => "machineui",
            UiKind::Syslog => "syslog",
            UiKind::Blinkenlights => "blinkenlights",
        }
    }
}

/// Where the system log listens.
pub const SYSLOG_SOCKET: &str = "/dev/log";

fn on_terminal() -> bool {
    std::io::stdout().is_terminal() && std::io::stdin().is_terminal()
}

/// Picks the first usable interface of an OfflineIMAP `ui` value (a comma list, case
/// insensitive). Old dotted names (`Curses.Blinkenlights`, `TTY.TTYUI`,
/// `Noninteractive.Basic`, `Noninteractive.Quiet`, `Machine.MachineUI`) are accepted with a
/// warning. `blinkenlights` needs a terminal and `syslog` a system log; an unknown or
/// unusable name is skipped with a warning. With nothing usable: `basic`.
pub fn choose(name_list: &str, warnings: &mut Vec<String>) -> UiKind {
    choose_with(
        name_list,
        warnings,
        on_terminal(),
        Path::new(SYSLOG_SOCKET).exists(),
    )
}

fn choose_with(
    name_list: &str,
    warnings: &mut Vec<String>,
    terminal: bool,
    syslog: bool,
) -> UiKind {
    for raw in name_list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let lower = raw.to_ascii_lowercase();
        let name = match lower.as_str() {
            "curses.blinkenlights" => "blinkenlights",
            "tty.ttyui" => "ttyui",
            "noninteractive.basic" => "basic",
            "noninteractive.quiet" => "quiet",
            "machine.machineui" => "machineui",
            other => other,
        };
        if name != lower {
            warnings.push(format!(
                "Using old interface name '{raw}', please use '{name}' instead."
            ));
        }
        let kind = match name {
            "quiet" => UiKind::Quiet,
            "basic" => UiKind::Basic,
            "ttyui" => UiKind::TtyUi,
            "machineui" => UiKind::MachineUi,
            "syslog" if syslog => UiKind::Syslog,
            "blinkenlights" if cfg!(feature = "blinkenlights") && terminal => UiKind::Blinkenlights,
            "syslog" | "blinkenlights" => {
                warnings.push(format!(
                    "UI '{raw}' is not usable here; trying the next one"
                ));
                continue;
            }
            _ => {
                warnings.push(format!("UI '{raw}' does not exist; trying the next one"));
                continue;
            }
        };
        return kind;
    }
    UiKind::Basic
}

/// How the interface is set up (the binary's flags).
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `-l FILE`: every line also to this file.
    pub log_file: Option<PathBuf>,
    /// `-s`: every line also to the system log.
    pub syslog: bool,
    /// `--dry-run`: lines say `[DRYRUN]` where OfflineIMAP's do.
    pub dry_run: bool,
    /// Write the line UIs to stdout (as OfflineIMAP does) instead of stderr.
    pub stdout: bool,
}

/// The banner the machine UI sends as `initbanner`.
pub fn banner() -> String {
    format!(
        "offlineimap {} (Rust)\n  Licensed under the GNU GPL v2 or any later version",
        env!("CARGO_PKG_VERSION")
    )
}

/// The interface of a run: an [`EventSink`] that feeds every renderer, and the run's
/// summary.
pub struct Ui {
    kind: UiKind,
    inner: Mutex<Inner>,
}

struct Inner {
    state: State,
    renderers: Vec<Box<dyn Renderer>>,
    /// Sinks that see every event after the renderers (the binary's progress tracker).
    observers: Vec<Arc<dyn EventSink>>,
    finished: bool,
}

impl Ui {
    /// An interface over explicit renderers (tests, and combinations `build` lacks).
    pub fn from_renderers(kind: UiKind, dry_run: bool, renderers: Vec<Box<dyn Renderer>>) -> Ui {
        let mut state = State::default();
        state.dry_run = dry_run;
        Ui {
            kind,
            inner: Mutex::new(Inner {
                state,
                renderers,
                observers: Vec::new(),
                finished: false,
            }),
        }
    }

    /// Lets `sink` see every later event too (after the renderers, in order).
    pub fn observe(&self, sink: Arc<dyn EventSink>) {
        self.lock().observers.push(sink);
    }

    /// Which interface this is.
    pub fn kind(&self) -> UiKind {
        self.kind
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A renderer that panicked left only its own output half-written.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What the run did so far.
    pub fn summary(&self) -> RunSummary {
        self.lock().state.summary.clone()
    }

    /// How many errors were shown.
    pub fn error_count(&self) -> usize {
        self.lock().state.summary.errors
    }

    /// Ends the run: the errors again, the summary, the machine UI's `terminate` line, and
    /// the terminal restored. Only the first call does anything.
    pub fn finish(&self, exit_code: i32) {
        let mut inner = self.lock();
        if inner.finished {
            return;
        }
        inner.finished = true;
        let Inner {
            state, renderers, ..
        } = &mut *inner;
        let closing = state.terminate_records();
        for r in renderers.iter_mut() {
            r.finish(state, &closing, exit_code);
        }
    }

    /// A sink for one repository's store: events that do not know their account or
    /// repository (connections) get them, the rest pass unchanged.
    pub fn labelled(self: &Arc<Self>, account: &str, repository: &str) -> Arc<dyn EventSink> {
        Arc::new(Labelled {
            inner: self.clone(),
            account: account.to_string(),
            repository: repository.to_string(),
        })
    }
}

impl EventSink for Ui {
    fn emit(&self, event: Event) {
        let mut inner = self.lock();
        let Inner {
            state,
            renderers,
            observers,
            ..
        } = &mut *inner;
        let records = state.records(&event);
        for r in renderers.iter_mut() {
            r.render(&event, &records, state);
        }
        for o in observers.iter() {
            o.emit(event.clone());
        }
    }
}

/// Fills in the account and repository of events from a store (see [`Ui::labelled`]).
pub struct Labelled {
    inner: Arc<dyn EventSink>,
    account: String,
    repository: String,
}

impl Labelled {
    /// Labels the events going to `inner`.
    pub fn new(inner: Arc<dyn EventSink>, account: &str, repository: &str) -> Labelled {
        Labelled {
            inner,
            account: account.to_string(),
            repository: repository.to_string(),
        }
    }
}

impl EventSink for Labelled {
    fn emit(&self, event: Event) {
        let event = match event {
            Event::Connecting {
                account,
                repository,
                host,
                port,
            } => Event::Connecting {
                account: account.or_else(|| Some(self.account.clone())),
                repository: repository.or_else(|| Some(self.repository.clone())),
                host,
                port,
            },
            other => other,
        };
        self.inner.emit(event);
    }
}

/// Sends every event to several sinks.
pub struct Tee(pub Vec<Arc<dyn EventSink>>);

impl EventSink for Tee {
    fn emit(&self, event: Event) {
        for s in &self.0 {
            s.emit(event.clone());
        }
    }
}

fn output(stdout: bool) -> Out {
    if stdout {
        Box::new(std::io::stdout())
    } else {
        Box::new(std::io::stderr())
    }
}

/// The terminal size from `stty` (no unsafe ioctl); 24x80 when unknown.
#[cfg(feature = "blinkenlights")]
fn terminal_size() -> (u16, u16) {
    let size = std::fs::File::open("/dev/tty").ok().and_then(|tty| {
        std::process::Command::new("stty")
            .arg("size")
            .stdin(tty)
            .output()
            .ok()
    });
    let parsed = size.and_then(|o| {
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        let mut it = text.split_whitespace().map(|n| n.parse::<u16>().ok());
        Some((it.next()??, it.next()??))
    });
    parsed.unwrap_or((24, 80))
}

/// Builds the interface of a run.
pub fn build(kind: UiKind, options: &Options) -> Result<Arc<Ui>, UiError> {
    let min = if kind == UiKind::Quiet {
        Level::Warning
    } else {
        Level::Info
    };
    let mut renderers: Vec<Box<dyn Renderer>> = Vec::new();
    let syslog = |min| {
        Syslog::connect(Path::new(SYSLOG_SOCKET), min).map_err(|source| UiError::Syslog {
            path: SYSLOG_SOCKET.into(),
            source,
        })
    };
    match kind {
        UiKind::Quiet => renderers.push(Box::new(Lines::new(output(options.stdout), min, false))),
        UiKind::Basic => renderers.push(Box::new(Lines::new(output(options.stdout), min, true))),
        UiKind::TtyUi => {
            let terminal = if options.stdout {
                std::io::stdout().is_terminal()
            } else {
                std::io::stderr().is_terminal()
            };
            renderers.push(Box::new(Tty::new(output(options.stdout), terminal)));
        }
        UiKind::MachineUi => renderers.push(Box::new(Machine::new(
            Box::new(std::io::stdout()),
            &banner(),
        ))),
        UiKind::Syslog => renderers.push(Box::new(syslog(min)?)),
        #[cfg(feature = "blinkenlights")]
        UiKind::Blinkenlights => {
            let (rows, cols) = terminal_size();
            renderers.push(Box::new(blinken::Blinken::new(
                Box::new(std::io::stdout()),
                rows,
                cols,
            )));
        }
        #[cfg(not(feature = "blinkenlights"))]
        UiKind::Blinkenlights => {
            renderers.push(Box::new(Tty::new(output(options.stdout), false)));
        }
    }
    // OfflineIMAP's syslog UI ignores -s: it logs there already.
    if options.syslog && kind != UiKind::Syslog {
        renderers.push(Box::new(syslog(min)?));
    }
    if let Some(path) = &options.log_file {
        let log = LogFile::open(path, min).map_err(|source| UiError::LogFile {
            path: path.clone(),
            source,
        })?;
        renderers.push(Box::new(log));
    }
    Ok(Arc::new(Ui::from_renderers(
        kind,
        options.dry_run,
        renderers,
    )))
}

/// Asks for a password on the terminal without echo (`ttyui`'s `getpass`):
/// `Enter password for user 'NAME': `. Echo is switched off with `stty`, which keeps this
/// crate free of unsafe terminal calls.
pub fn prompt_password(user: &str) -> Result<String, UiError> {
    use std::io::{BufRead, Write};
    let tty = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/tty")
    };
    let stty = |arg: &str| -> Result<(), UiError> {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(tty().map_err(UiError::Prompt)?)
            .status()
            .map_err(UiError::Prompt)
            .map(|_| ())
    };
    let mut out = tty().map_err(UiError::Prompt)?;
    write!(out, "Enter password for user '{user}': ").map_err(UiError::Prompt)?;
    out.flush().map_err(UiError::Prompt)?;
    stty("-echo")?;
    let mut line = String::new();
    let read = std::io::BufReader::new(tty().map_err(UiError::Prompt)?).read_line(&mut line);
    // Echo comes back even when reading failed.
    let restored = stty("echo");
    let _ = writeln!(out);
    read.map_err(UiError::Prompt)?;
    restored?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oi_core::{Side, SyncStats, Uid};
    use render::Captured;

    #[test]
    fn choice_takes_the_first_usable_and_warns_for_dotted_names() {
        let mut w = Vec::new();
        assert_eq!(
            choose_with("blinkenlights, quiet", &mut w, false, false),
            UiKind::Quiet
        );
        assert_eq!(w.len(), 1, "{w:?}");
        w.clear();
        assert_eq!(
            choose_with("Curses.Blinkenlights,TTY.TTYUI", &mut w, true, false),
            UiKind::Blinkenlights
        );
        assert_eq!(
            w,
            [
                "Using old interface name 'Curses.Blinkenlights', please use 'blinkenlights' instead."
            ]
        );
        w.clear();
        for (name, kind) in [
            ("Noninteractive.Basic", UiKind::Basic),
            ("Noninteractive.Quiet", UiKind::Quiet),
            ("Machine.MachineUI", UiKind::MachineUi),
            ("TTY.TTYUI", UiKind::TtyUi),
            ("MachineUI", UiKind::MachineUi),
        ] {
            assert_eq!(choose_with(name, &mut w, false, false), kind);
        }
        assert_eq!(w.len(), 4);
        w.clear();
        assert_eq!(
            choose_with("syslog,nonsense", &mut w, false, false),
            UiKind::Basic
        );
        assert_eq!(w.len(), 2);
        assert_eq!(choose_with("syslog", &mut w, false, true), UiKind::Syslog);
    }

    fn feed(ui: &Ui) {
        for e in [
            Event::AccountStart {
                account: "Test".into(),
            },
            Event::SyncFolders {
                account: "Test".into(),
                remote_name: "Remote".into(),
                remote_kind: "IMAP".into(),
                local_name: "Local".into(),
                local_kind: "Maildir".into(),
            },
            Event::Connecting {
                account: Some("Test".into()),
                repository: Some("Remote".into()),
                host: "127.0.0.1".into(),
                port: Some(143),
            },
            Event::SyncingFolder {
                account: "Test".into(),
                folder: "INBOX".into(),
                local_folder: "INBOX".into(),
            },
            Event::MessageListLoading {
                account: "Test".into(),
                folder: "INBOX".into(),
                side: Side::Local,
            },
            Event::CopyingMessage {
                account: "Test".into(),
                folder: "INBOX".into(),
                from: Side::Remote,
                uid: Uid::new(1),
                num: 1,
                total: 1,
            },
            Event::DeletingMessages {
                account: "Test".into(),
                folder: "INBOX".into(),
                side: Side::Remote,
                uids: vec![Uid::new(4).unwrap(), Uid::new(5).unwrap()],
            },
            Event::Warning {
                account: None,
                message: "careful".into(),
            },
            Event::AccountDone {
                account: "Test".into(),
                stats: SyncStats {
                    copied_to_local: 1,
                    deleted_remote: 2,
                    ..SyncStats::default()
                },
                failed_folders: 0,
            },
        ] {
            ui.emit(e);
        }
        ui.finish(0);
        ui.finish(0);
    }

    #[test]
    fn basic_prints_offlineimap_lines_and_a_summary() {
        let cap = Captured::default();
        let ui = Ui::from_renderers(
            UiKind::Basic,
            false,
            vec![Box::new(Lines::new(
                Box::new(cap.clone()),
                Level::Info,
                true,
            ))],
        );
        feed(&ui);
        let text = cap.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..6],
            [
                "*** Processing account Test",
                "Establishing connection to 127.0.0.1:143 (Remote)",
                "Syncing INBOX: IMAP -> Maildir",
                "Copy message UID 1 (1/1) Remote:INBOX -> Local:INBOX",
                "Deleting 2 messages (4:5) in IMAP[INBOX]",
                "careful",
            ]
        );
        assert_eq!(lines[6], "*** Finished account 'Test' in 0:00");
        assert!(lines[7].starts_with("*** Summary: 1 account(s); copied 1 to local"));
        assert_eq!(lines.len(), 8, "finish twice prints once: {text}");
        assert_eq!(ui.summary().stats.deleted_remote, 2);
    }

    #[test]
    fn quiet_prints_warnings_and_errors_only() {
        let cap = Captured::default();
        let ui = Ui::from_renderers(
            UiKind::Quiet,
            false,
            vec![Box::new(Lines::new(
                Box::new(cap.clone()),
                Level::Warning,
                false,
            ))],
        );
        feed(&ui);
        ui.emit(Event::Error {
            account: None,
            folder: None,
            severity: Severity::Fatal,
            message: "late".into(),
        });
        assert_eq!(cap.text(), "careful\nERROR: late\n");
        assert_eq!(ui.error_count(), 1);
    }

    #[test]
    fn machine_lines_are_url_encoded_like_offlineimap() {
        let cap = Captured::default();
        let ui = Ui::from_renderers(
            UiKind::MachineUi,
            false,
            vec![Box::new(Machine::new(Box::new(cap.clone()), "B x"))],
        );
        feed(&ui);
        let text = cap.text();
        let expected = [
            "msg:protocol:MainThread:7.2.0",
            "msg:initbanner:MainThread:B+x",
            "msg:acct:Account+sync+Test:Test",
            "msg:syncfolders:Account+sync+Test:IMAP%0AMaildir",
            "msg:connecting:Account+sync+Test:127.0.0.1%0A143%0ARemote",
            "msg:syncingfolder:Folder+INBOX+%5Bacc%3A+Test%5D:IMAP%0AINBOX%0AMaildir%0AINBOX%0A",
            "msg:loadmessagelist:Folder+INBOX+%5Bacc%3A+Test%5D:Maildir%0AINBOX",
            "msg:copyingmessage:Folder+INBOX+%5Bacc%3A+Test%5D:1%0AIMAP%0AINBOX%0AMaildir%5BINBOX%5D",
            "msg:deletingmessages:Folder+INBOX+%5Bacc%3A+Test%5D:4%0C5%0AIMAP%09INBOX",
            "warn::MainThread:careful",
            "msg:acctdone:Account+sync+Test:Test",
            "msg:terminate:MainThread:0%0A%0A",
        ];
        assert_eq!(text.lines().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn tty_heads_lines_with_their_thread_and_shows_progress_on_a_terminal() {
        let cap = Captured::default();
        let ui = Ui::from_renderers(
            UiKind::TtyUi,
            false,
            vec![Box::new(Tty::new(Box::new(cap.clone()), true))],
        );
        feed(&ui);
        let text = cap.text();
        assert!(
            text.contains("Account sync Test:\n *** Processing account Test\n Establishing"),
            "{text}"
        );
        assert!(
            text.contains("[Test] INBOX (remote -> local): 1/1 copied"),
            "{text}"
        );
        assert!(!text.contains("Copy message UID"), "{text}");
        assert!(text.contains("*** Summary:"), "{text}");
    }

    #[test]
    fn syslog_datagrams_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let server = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        let ui = Ui::from_renderers(
            UiKind::Syslog,
            false,
            vec![Box::new(Syslog::connect(&path, Level::Info).unwrap())],
        );
        ui.emit(Event::AccountStart {
            account: "Test".into(),
        });
        ui.emit(Event::Error {
            account: None,
            folder: None,
            severity: Severity::Fatal,
            message: "bad".into(),
        });
        let mut buf = [0u8; 512];
        let n = server.recv(&mut buf).unwrap();
        let pid = std::process::id();
        assert_eq!(
            &buf[..n],
            format!("<14>offlineimap[{pid}]: *** Processing account Test\0").as_bytes()
        );
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            format!("<11>offlineimap[{pid}]: ERROR: bad\0").as_bytes()
        );
    }

    #[test]
    fn log_file_lines_carry_time_and_level_and_tee_duplicates() {
        let cap = Captured::default();
        let ui = Arc::new(Ui::from_renderers(
            UiKind::Basic,
            false,
            vec![Box::new(LogFile::new(Box::new(cap.clone()), Level::Info))],
        ));
        let other = Arc::new(Ui::from_renderers(UiKind::Quiet, false, Vec::new()));
        let tee = Tee(vec![ui.clone(), other.clone()]);
        tee.emit(Event::Warning {
            account: None,
            message: "w".into(),
        });
        let text = cap.text();
        // "2026-11-02 10:00:00 WARNING: w"
        assert_eq!(
            text.len(),
            "2026-11-02 10:00:00 WARNING: w\n".len(),
            "{text}"
        );
        assert!(text.ends_with(" WARNING: w\n"), "{text}");
        assert_eq!(other.summary().warnings, 1);
    }

    #[test]
    fn labelled_sinks_fill_in_account_and_repository() {
        let cap = Captured::default();
        let ui = Arc::new(Ui::from_renderers(
            UiKind::Basic,
            false,
            vec![Box::new(Lines::new(
                Box::new(cap.clone()),
                Level::Info,
                false,
            ))],
        ));
        ui.labelled("Acc", "Remote").emit(Event::Connecting {
            account: None,
            repository: None,
            host: "h".into(),
            port: None,
        });
        assert_eq!(cap.text(), "Establishing connection to h: (Remote)\n");
    }
}
