//! User interfaces: renderers of engine events. They are the only place that prints.

use std::fs::File;
use std::io::Write;
use std::sync::Mutex;

use oi_core::{Event, EventSink, Severity, SyncStats};

/// Which interface renders events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UiKind {
    /// Errors only.
    Quiet,
    /// A line log (for cron); also what `ttyui` prints for now.
    Basic,
}

impl UiKind {
    /// Picks the first usable interface of an OfflineIMAP `ui` value (a comma list), with
    /// a warning for those not implemented yet.
    pub fn choose(value: &str, warnings: &mut Vec<String>) -> UiKind {
        for name in value.split(',').map(|s| s.trim().to_ascii_lowercase()) {
            // Old dotted names ("Curses.Blinkenlights", "TTY.TTYUI") name the same UIs.
            let name = name.rsplit('.').next().unwrap_or_default().to_string();
            match name.as_str() {
                "quiet" => return UiKind::Quiet,
                "basic" | "ttyui" | "tty" => return UiKind::Basic,
                "" => continue,
                other => warnings.push(format!("not supported yet: ui {other}; using basic")),
            }
        }
        UiKind::Basic
    }
}

/// Renders events as lines on stderr (and a log file).
pub struct LineUi {
    kind: UiKind,
    log: Option<Mutex<File>>,
    errors: Mutex<usize>,
    changed: std::sync::atomic::AtomicBool,
}

impl LineUi {
    /// A renderer.
    pub fn new(kind: UiKind, log: Option<File>) -> LineUi {
        LineUi {
            kind,
            log: log.map(Mutex::new),
            errors: Mutex::new(0),
            changed: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// True when any account changed anything.
    pub fn changed(&self) -> bool {
        self.changed.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many errors were shown.
    pub fn error_count(&self) -> usize {
        *self.errors.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn line(&self, important: bool, text: &str) {
        if important || self.kind == UiKind::Basic {
            eprintln!("{text}");
        }
        if let Some(log) = &self.log {
            let mut f = log.lock().unwrap_or_else(|p| p.into_inner());
            // A log file that cannot be written must not stop the sync.
            let _ = writeln!(f, "{text}");
        }
    }
}

/// "3 copied to local, 1 deleted remote" (empty parts left out).
pub fn describe(stats: &SyncStats) -> String {
    let parts = [
        (stats.copied_to_local, "copied to local"),
        (stats.copied_to_remote, "copied to remote"),
        (stats.flagged_local, "flag changes local"),
        (stats.flagged_remote, "flag changes remote"),
        (stats.deleted_local, "deleted local"),
        (stats.deleted_remote, "deleted remote"),
    ];
    let text: Vec<String> = parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    if text.is_empty() {
        "nothing to do".to_string()
    } else {
        text.join(", ")
    }
}

impl EventSink for LineUi {
    fn emit(&self, event: Event) {
        match event {
            Event::AccountStart { account } => {
                self.line(false, &format!("*** Processing account {account}"));
            }
            Event::AccountDone {
                account,
                stats,
                failed_folders,
            } => {
                if !stats.is_empty() {
                    self.changed
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                }
                let failed = if failed_folders > 0 {
                    format!(", {failed_folders} folder(s) failed")
                } else {
                    String::new()
                };
                self.line(
                    false,
                    &format!(
                        "*** Finished account '{account}': {}{failed}",
                        describe(&stats)
                    ),
                );
            }
            Event::FolderCreated {
                account,
                side,
                folder,
            } => self.line(
                false,
                &format!("[{account}] created folder {folder} on the {side} side"),
            ),
            Event::FolderStart { .. } => {}
            Event::FolderDone {
                account,
                folder,
                stats,
            } if !stats.is_empty() => self.line(
                false,
                &format!("[{account}] folder {folder}: {}", describe(&stats)),
            ),
            Event::Planned {
                account,
                folder,
                what,
            } => self.line(true, &format!("[{account}] {folder}: would {what}")),
            Event::Warning { account, message } => {
                let prefix = account.map(|a| format!("[{a}] ")).unwrap_or_default();
                self.line(false, &format!("WARNING: {prefix}{message}"));
            }
            Event::Error {
                account,
                folder,
                severity,
                message,
            } => {
                *self.errors.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                let mut prefix = String::new();
                if let Some(a) = account {
                    prefix.push_str(&format!("[{a}] "));
                }
                if let Some(f) = folder {
                    prefix.push_str(&format!("folder {f}: "));
                }
                let what = match severity {
                    Severity::Message => "ERROR (message)",
                    Severity::Folder => "ERROR (folder skipped)",
                    Severity::Repository => "ERROR (account stopped)",
                    Severity::Fatal => "ERROR",
                };
                self.line(true, &format!("{what}: {prefix}{message}"));
            }
            Event::Info { message } => self.line(false, &message),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ui_choice_takes_first_usable() {
        let mut w = Vec::new();
        assert_eq!(
            UiKind::choose("blinkenlights, quiet", &mut w),
            UiKind::Quiet
        );
        assert_eq!(w.len(), 1);
        assert_eq!(
            UiKind::choose("Curses.Blinkenlights,TTY.TTYUI", &mut w),
            UiKind::Basic
        );
    }

    #[test]
    fn stats_are_described() {
        let s = SyncStats {
            copied_to_local: 3,
            deleted_remote: 1,
            ..SyncStats::default()
        };
        assert_eq!(describe(&s), "3 copied to local, 1 deleted remote");
        assert_eq!(describe(&SyncStats::default()), "nothing to do");
    }
}
