//! The line renderers: quiet, basic, ttyui, machineui, the log file and syslog.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use oi_core::Event;

use crate::model::{Level, Record, State};

/// Something that shows records. Called with the [`crate::Ui`]'s state locked, so
/// renderers see events one at a time and in order.
pub trait Renderer: Send {
    /// Shows the records of one event (the event itself is there for progress displays).
    fn render(&mut self, event: &Event, records: &[Record], state: &State);
    /// The run is over: closing lines, summary, terminal restored.
    fn finish(&mut self, state: &State, closing: &[Record], exit_code: i32);
}

/// A boxed writer shared by the line renderers.
pub type Out = Box<dyn Write + Send>;

fn put(out: &mut Out, text: &str) {
    // An output that cannot be written must not stop the sync.
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// `quiet` and `basic`: OfflineIMAP's `Noninteractive` UIs, the text of each record at or
/// above a level.
pub struct Lines {
    out: Out,
    min: Level,
    summary: bool,
}

impl Lines {
    /// Lines at or above `min`; `summary` adds the end-of-run summary.
    pub fn new(out: Out, min: Level, summary: bool) -> Lines {
        Lines { out, min, summary }
    }
}

impl Renderer for Lines {
    fn render(&mut self, _event: &Event, records: &[Record], _state: &State) {
        for r in records.iter().filter(|r| r.level >= self.min) {
            put(&mut self.out, &r.text);
        }
    }

    fn finish(&mut self, state: &State, closing: &[Record], _exit_code: i32) {
        self.render(
            &Event::Info {
                message: String::new(),
            },
            closing,
            state,
        );
        if self.summary {
            for l in state.summary.lines() {
                put(&mut self.out, &l);
            }
        }
    }
}

/// `ttyui`: lines headed by the thread they come from (OfflineIMAP's `TTYFormatter`), and
/// on a terminal a progress line with counts and rates that later lines overwrite.
pub struct Tty {
    out: Out,
    terminal: bool,
    last_thread: Option<String>,
    progress: Option<(String, Instant, usize)>,
    progress_shown: bool,
}

impl Tty {
    /// A TTY UI writing to `out`; `terminal` enables the progress line.
    pub fn new(out: Out, terminal: bool) -> Tty {
        Tty {
            out,
            terminal,
            last_thread: None,
            progress: None,
            progress_shown: false,
        }
    }

    fn clear_progress(&mut self) {
        if self.progress_shown {
            let _ = write!(self.out, "\r\x1b[K");
            self.progress_shown = false;
        }
    }

    fn line(&mut self, r: &Record) {
        self.clear_progress();
        if r.whoami == "MainThread" {
            put(&mut self.out, &r.text);
        } else if self.last_thread.as_deref() == Some(r.whoami.as_str()) {
            put(&mut self.out, &format!(" {}", r.text));
        } else {
            put(&mut self.out, &format!("{}:\n {}", r.whoami, r.text));
            self.last_thread = Some(r.whoami.clone());
        }
    }
}

/// "12/340 copied, 25.3 msg/s": the progress of a folder's copies.
pub fn progress_text(what: &str, num: usize, total: usize, secs: f64) -> String {
    let rate = if secs > 0.0 { num as f64 / secs } else { 0.0 };
    format!("{what}: {num}/{total} copied, {rate:.1} msg/s")
}

impl Renderer for Tty {
    fn render(&mut self, event: &Event, records: &[Record], _state: &State) {
        if let Event::CopyingMessage {
            account,
            folder,
            num,
            total,
            from,
            ..
        } = event
            && self.terminal
        {
            let key = format!("[{account}] {folder} ({from} -> {})", from.other());
            let start = match &self.progress {
                Some((k, t, _)) if *k == key => *t,
                _ => Instant::now(),
            };
            self.progress = Some((key.clone(), start, *num));
            self.clear_progress();
            let text = progress_text(&key, *num, *total, start.elapsed().as_secs_f64());
            let _ = write!(self.out, "{text}");
            let _ = self.out.flush();
            self.progress_shown = true;
            return;
        }
        for r in records.iter().filter(|r| r.level >= Level::Info) {
            self.line(r);
        }
    }

    fn finish(&mut self, state: &State, closing: &[Record], _exit_code: i32) {
        self.clear_progress();
        for r in closing {
            self.line(r);
        }
        for l in state.summary.lines() {
            put(&mut self.out, &l);
        }
    }
}

/// Python's `urllib.parse.quote_plus`, which the machine UI applies to every field.
pub fn quote_plus(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// OfflineIMAP's machine UI protocol version.
pub const MACHINE_PROTOCOL: &str = "7.2.0";

/// `machineui`: `level:command:thread:payload`, fields URL-encoded, one line each.
pub struct Machine {
    out: Out,
}

impl Machine {
    /// A machine UI; prints the protocol and banner lines at once, as OfflineIMAP's
    /// `init_banner` does.
    pub fn new(out: Out, banner: &str) -> Machine {
        let mut m = Machine { out };
        m.line(Level::Info, "protocol", "MainThread", MACHINE_PROTOCOL);
        m.line(Level::Info, "initbanner", "MainThread", banner);
        m
    }

    fn line(&mut self, level: Level, command: &str, whoami: &str, payload: &str) {
        let severity = match level {
            Level::Debug => "debug",
            Level::Info => "msg",
            Level::Warning => "warn",
            Level::Error => "error",
        };
        put(
            &mut self.out,
            &format!(
                "{severity}:{command}:{}:{}",
                quote_plus(whoami),
                quote_plus(payload)
            ),
        );
    }

    fn records(&mut self, records: &[Record]) {
        for r in records {
            let (level, command, payload) = match &r.machine {
                Some((l, c, p)) => (*l, *c, p.as_str()),
                None => (r.level, "", r.text.as_str()),
            };
            if level >= Level::Info {
                self.line(level, command, &r.whoami, payload);
            }
        }
    }
}

impl Renderer for Machine {
    fn render(&mut self, _event: &Event, records: &[Record], _state: &State) {
        self.records(records);
    }

    fn finish(&mut self, _state: &State, closing: &[Record], exit_code: i32) {
        self.records(closing);
        self.line(
            Level::Info,
            "terminate",
            "MainThread",
            &format!("{exit_code}\n\n"),
        );
    }
}

/// `-l FILE`: every line also to a file, with OfflineIMAP's `asctime LEVEL: message`.
pub struct LogFile {
    out: Out,
    min: Level,
}

impl LogFile {
    /// Appends to `path`, starting with a line that names the program and its arguments.
    pub fn open(path: &Path, min: Level) -> std::io::Result<LogFile> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let mut l = LogFile::new(Box::new(file), min);
        let args: Vec<String> = std::env::args().collect();
        l.write(
            Level::Info,
            &format!(
                "offlineimap {} starting...\n  Args: {}",
                env!("CARGO_PKG_VERSION"),
                args.join(" ")
            ),
        );
        Ok(l)
    }

    /// A log over any writer (tests).
    pub fn new(out: Out, min: Level) -> LogFile {
        LogFile { out, min }
    }

    fn write(&mut self, level: Level, text: &str) {
        let now = chrono::Local::now().format("%Y-%m-%d %H:%M:%S");
        put(&mut self.out, &format!("{now} {}: {text}", level.name()));
    }
}

impl Renderer for LogFile {
    fn render(&mut self, _event: &Event, records: &[Record], _state: &State) {
        let min = self.min;
        for r in records.iter().filter(|r| r.level >= min) {
            self.write(r.level, &r.text);
        }
    }

    fn finish(&mut self, state: &State, closing: &[Record], _exit_code: i32) {
        for r in closing {
            self.write(r.level, &r.text);
        }
        for l in state.summary.lines() {
            self.write(Level::Info, &l);
        }
    }
}

/// `syslog` and `-s`: datagrams to the system log, as Python's `SysLogHandler` sends them
/// (`<PRI>offlineimap[PID]: message` and a NUL, facility user), so that journald and
/// rsyslog file them exactly as they filed OfflineIMAP's.
pub struct Syslog {
    socket: Option<UnixDatagram>,
    min: Level,
    pid: u32,
}

impl Syslog {
    /// Connects to a syslog socket (normally `/dev/log`).
    pub fn connect(path: &Path, min: Level) -> std::io::Result<Syslog> {
        let socket = UnixDatagram::unbound()?;
        socket.connect(path)?;
        // A stalled log daemon must not stall the sync: lines are dropped instead.
        socket.set_nonblocking(true)?;
        Ok(Syslog {
            socket: Some(socket),
            min,
            pid: std::process::id(),
        })
    }

    /// The datagram for a line.
    pub fn datagram(pid: u32, level: Level, text: &str) -> Vec<u8> {
        // RFC 3164 §4.1.1: PRI = facility * 8 + severity; facility 1 is "user".
        let severity = match level {
            Level::Debug => 7,
            Level::Info => 6,
            Level::Warning => 4,
            Level::Error => 3,
        };
        let mut d = format!("<{}>offlineimap[{pid}]: {text}", 8 + severity).into_bytes();
        d.push(0);
        d
    }

    fn send(&mut self, level: Level, text: &str) {
        if let Some(s) = &self.socket {
            let _ = s.send(&Syslog::datagram(self.pid, level, text));
        }
    }
}

impl Renderer for Syslog {
    fn render(&mut self, _event: &Event, records: &[Record], _state: &State) {
        let min = self.min;
        for r in records.iter().filter(|r| r.level >= min) {
            self.send(r.level, &r.text);
        }
    }

    fn finish(&mut self, state: &State, closing: &[Record], _exit_code: i32) {
        for r in closing {
            self.send(r.level, &r.text);
        }
        for l in state.summary.lines() {
            self.send(Level::Info, &l);
        }
    }
}

/// A writer whose bytes tests can read back.
#[derive(Clone, Default)]
pub struct Captured(pub std::sync::Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// What was written, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
