//! `blinkenlights`: a full-screen terminal UI drawn with plain ANSI escapes. One status
//! light per connection of each account, a progress line per folder, and a log pane.
//! When the run ends the screen is left and its last frame printed, so the result stays
//! in the terminal's scrollback.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use oi_core::{Event, Side};

use crate::model::{Level, Record, State};
use crate::render::{Out, Renderer};

#[derive(Debug, Default, Clone)]
struct FolderRow {
    copied: usize,
    to_copy: usize,
    flags: usize,
    deleted: usize,
    state: &'static str,
}

#[derive(Debug, Default)]
struct AccountRow {
    connections: usize,
    folders: BTreeMap<String, FolderRow>,
    order: Vec<String>,
    done: bool,
}

/// The blinkenlights screen.
pub struct Blinken {
    out: Out,
    rows: u16,
    cols: u16,
    accounts: BTreeMap<String, AccountRow>,
    log: Vec<String>,
    last_draw: Option<Instant>,
    started: bool,
}

impl Blinken {
    /// A screen of `rows` x `cols` over `out` (a terminal).
    pub fn new(out: Out, rows: u16, cols: u16) -> Blinken {
        Blinken {
            out,
            rows: rows.max(8),
            cols: cols.max(20),
            accounts: BTreeMap::new(),
            log: Vec::new(),
            last_draw: None,
            started: false,
        }
    }

    fn folder(&mut self, account: &str, folder: &str) -> &mut FolderRow {
        let acc = self.accounts.entry(account.to_string()).or_default();
        if !acc.folders.contains_key(folder) {
            acc.order.push(folder.to_string());
        }
        acc.folders.entry(folder.to_string()).or_default()
    }

    fn update(&mut self, event: &Event) {
        match event {
            Event::AccountStart { account } => {
                self.accounts.entry(account.clone()).or_default();
            }
            Event::AccountDone { account, .. } => {
                self.accounts.entry(account.clone()).or_default().done = true;
            }
            Event::Connecting {
                account: Some(account),
                ..
            } => {
                self.accounts
                    .entry(account.clone())
                    .or_default()
                    .connections += 1
            }
            Event::FolderStart { account, folder } => {
                self.folder(account, folder).state = "syncing";
            }
            Event::CopyingMessage {
                account,
                folder,
                num,
                total,
                from,
                ..
            } => {
                let f = self.folder(account, folder);
                f.state = match from {
                    Side::Remote => "downloading",
                    Side::Local => "uploading",
                };
                f.copied += 1;
                f.to_copy = f.to_copy.max(*total).max(*num);
            }
            Event::ChangingFlags {
                account,
                folder,
                updates,
                ..
            } => self.folder(account, folder).flags += updates.len(),
            Event::DeletingMessages {
                account,
                folder,
                uids,
                ..
            } => self.folder(account, folder).deleted += uids.len(),
            Event::FolderDone {
                account, folder, ..
            } => self.folder(account, folder).state = "done",
            Event::Error {
                account: Some(account),
                folder: Some(folder),
                ..
            } => self.folder(account, folder).state = "FAILED",
            _ => {}
        }
    }

    /// The frame's lines, without escapes (also printed at the end).
    fn frame(&self) -> Vec<String> {
        let width = usize::from(self.cols);
        let mut lines = vec!["offlineimap blinkenlights".to_string()];
        for (name, acc) in &self.accounts {
            let lights = "*".repeat(acc.connections.min(width.saturating_sub(40)));
            let state = if acc.done { "done" } else { "syncing" };
            lines.push(format!("{name}: [{lights}] {state}"));
            for folder in &acc.order {
                let Some(f) = acc.folders.get(folder) else {
                    continue;
                };
                lines.push(format!(
                    "  {folder:<24} {:>5}/{:<5} copied {:>4} flags {:>4} deleted  {}",
                    f.copied, f.to_copy, f.flags, f.deleted, f.state
                ));
            }
        }
        lines
            .iter()
            .map(|l| l.chars().take(width).collect())
            .collect()
    }

    fn draw(&mut self, force: bool) {
        // Redraws are throttled: a fast sync emits thousands of events a second.
        if !force
            && self
                .last_draw
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last_draw = Some(Instant::now());
        let rows = usize::from(self.rows);
        let top = self.frame();
        let log_rows = rows.saturating_sub(top.len().min(rows / 2) + 2).max(1);
        let mut screen = String::new();
        if !self.started {
            // Alternate screen, cursor hidden.
            screen.push_str("\x1b[?1049h\x1b[?25l");
            self.started = true;
        }
        screen.push_str("\x1b[H\x1b[2J");
        for l in top.iter().take(rows / 2) {
            screen.push_str(l);
            screen.push_str("\r\n");
        }
        screen.push_str(&"-".repeat(usize::from(self.cols)));
        screen.push_str("\r\n");
        let skip = self.log.len().saturating_sub(log_rows);
        for l in &self.log[skip..] {
            let l: String = l.chars().take(usize::from(self.cols)).collect();
            screen.push_str(&l);
            screen.push_str("\r\n");
        }
        let _ = self.out.write_all(screen.as_bytes());
        let _ = self.out.flush();
    }
}

impl Renderer for Blinken {
    fn render(&mut self, event: &Event, records: &[Record], _state: &State) {
        self.update(event);
        for r in records.iter().filter(|r| r.level >= Level::Info) {
            self.log.extend(r.text.lines().map(str::to_string));
        }
        // Keep the log bounded; only the tail is ever shown.
        if self.log.len() > 1000 {
            self.log.drain(..500);
        }
        self.draw(false);
    }

    fn finish(&mut self, state: &State, closing: &[Record], _exit_code: i32) {
        let mut text = String::new();
        if self.started {
            text.push_str("\x1b[?25h\x1b[?1049l");
        }
        for l in self.frame() {
            text.push_str(&l);
            text.push('\n');
        }
        for r in closing {
            text.push_str(&r.text);
            text.push('\n');
        }
        for l in state.summary.lines() {
            text.push_str(&l);
            text.push('\n');
        }
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::Captured;

    #[test]
    fn the_last_frame_shows_folders_and_counts() {
        let cap = Captured::default();
        let mut b = Blinken::new(Box::new(cap.clone()), 24, 100);
        let mut state = State::default();
        let events = [
            Event::AccountStart {
                account: "Test".into(),
            },
            Event::Connecting {
                account: Some("Test".into()),
                repository: Some("Remote".into()),
                host: "h".into(),
                port: Some(1),
            },
            Event::FolderStart {
                account: "Test".into(),
                folder: "INBOX".into(),
            },
            Event::CopyingMessage {
                account: "Test".into(),
                folder: "INBOX".into(),
                from: Side::Remote,
                uid: oi_core::Uid::new(7),
                num: 1,
                total: 2,
            },
            Event::FolderDone {
                account: "Test".into(),
                folder: "INBOX".into(),
                stats: Default::default(),
            },
        ];
        for e in &events {
            let r = state.records(e);
            b.render(e, &r, &state);
        }
        b.finish(&state, &[], 0);
        let text = cap.text();
        assert!(text.starts_with("\x1b[?1049h"), "{text:?}");
        let tail = text.rsplit("\x1b[?1049l").next().unwrap();
        assert!(tail.contains("Test: [*] syncing"), "{tail}");
        assert!(tail.contains("INBOX") && tail.contains("1/2"), "{tail}");
        assert!(tail.contains("done"), "{tail}");
    }
}
