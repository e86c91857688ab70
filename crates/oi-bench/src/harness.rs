//! The benchmark harness: a private Dovecot with a populated account, each tool's synced
//! local copy, the scenarios, timed runs with peak RSS, and a verify of both sides.

use crate::mail::{EPOCH, Gen, Profile, Rng, SPAN};
use oi_testkit::Dovecot;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The account the benchmark syncs (one of oi-testkit's users).
pub const USER: &str = "alice";
const PASS: &str = "alicepass";

/// Errors of the harness are plain messages.
pub type Result<T> = std::result::Result<T, String>;

/// One benchmark scenario: the state a timed run starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scenario {
    /// Empty local side: a full download.
    Initial,
    /// Nothing changed since a full sync.
    Noop,
    /// 10% of the server's messages got other flags.
    Flags,
    /// 1% new messages on the server.
    New,
    /// 1% new messages in the local Maildir (half in new/, half seen in cur/).
    Push,
}

impl Scenario {
    /// Every scenario, in the order they run.
    pub const ALL: [Scenario; 5] = [
        Scenario::Initial,
        Scenario::Noop,
        Scenario::Flags,
        Scenario::New,
        Scenario::Push,
    ];

    /// Parses a scenario name.
    pub fn parse(s: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|x| x.name() == s)
    }

    /// The scenario's name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Initial => "initial",
            Scenario::Noop => "noop",
            Scenario::Flags => "flags",
            Scenario::New => "new",
            Scenario::Push => "push",
        }
    }
}

/// A sync tool under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tool {
    /// Our `offlineimap` binary.
    Ours,
    /// isync's `mbsync`, when installed.
    Mbsync,
    /// No tool: the least IMAP conversation that makes the server do the scenario's work
    /// (see [`crate::floor`]), on plain TCP, with no local side; never verified.
    Floor,
}

impl Tool {
    /// Parses `ours` or `mbsync`.
    pub fn parse(s: &str) -> Option<Tool> {
        match s {
            "ours" => Some(Tool::Ours),
            "mbsync" => Some(Tool::Mbsync),
            "floor" => Some(Tool::Floor),
            _ => None,
        }
    }

    /// The tool's name.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Ours => "ours",
            Tool::Mbsync => "mbsync",
            Tool::Floor => "floor",
        }
    }
}

/// How the tools reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain IMAP on 127.0.0.1, no TLS.
    Plain,
    /// A preauthenticated `doveadm exec imap` tunnel on stdin/stdout.
    Tunnel,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Number of messages on the server.
    pub n: usize,
    /// Number of folders (INBOX, Folder01, …).
    pub folders: usize,
    /// The mail profile.
    pub profile: Profile,
    /// Seed of the generated mail.
    pub seed: u64,
    /// Timed runs per scenario and tool.
    pub reps: usize,
    /// Scenarios to run.
    pub scenarios: Vec<Scenario>,
    /// Tools to run (interleaved within each repetition round).
    pub tools: Vec<Tool>,
    /// `fsync = false` / `FSync no` for both tools.
    pub fsync_off: bool,
    /// Plain or tunnel.
    pub transport: Transport,
    /// Our binary.
    pub ours: PathBuf,
    /// A timed run taking longer is killed and recorded as failed.
    pub timeout: Duration,
    /// Round-trip time added between the tools and the server (plain transport only):
    /// half of it each way, by a [`crate::delay::DelayProxy`]. Zero: none.
    pub latency: Duration,
    /// The `oi-bench` binary, to start each timed tool through its `--measure` launcher
    /// (see [`crate::rusage::measure_main`]: the peak RSS it reports is the tool's own).
    /// `None`: started directly, and the RSS includes this process's peak.
    pub launcher: Option<PathBuf>,
}

/// One timed run.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// The scenario.
    pub scenario: Scenario,
    /// The tool.
    pub tool: Tool,
    /// Wall-clock time of the whole process.
    pub wall: Duration,
    /// Peak resident set size of the process, KiB.
    pub max_rss_kib: u64,
    /// `Ok` when the tool succeeded and verify found both sides equal; else why not.
    pub verify: std::result::Result<(), String>,
}

/// One message as verify sees it: Message-ID and flag letters (sorted, of D F R S T).
type Entry = (String, String);

/// The benchmark: a server, a scratch directory, and the settings.
pub struct Bench {
    settings: Settings,
    server: Dovecot,
    /// With [`Settings::latency`]: the proxy the tools connect through.
    delay: Option<crate::delay::DelayProxy>,
    work: tempfile::TempDir,
    log: Box<dyn FnMut(&str)>,
    /// Each folder's UIDNEXT before the new scenario's messages arrived (for the floor).
    floor_base: BTreeMap<String, u32>,
}

impl fmt::Debug for Bench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bench")
            .field("settings", &self.settings)
            .field("work", &self.work.path())
            .finish()
    }
}

fn folder_names(f: usize) -> Vec<String> {
    let mut v = vec!["INBOX".to_string()];
    v.extend((1..f.max(1)).map(|i| format!("Folder{i:02}")));
    v
}

fn io_err(what: impl fmt::Display) -> impl FnOnce(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

fn run_cmd(cmd: &mut Command, what: &str) -> Result<Vec<u8>> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(io_err(format!("cannot run {what}")))?;
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes `dst` an exact copy of `src` (rsync when installed: only changed files are copied).
fn mirror(src: &Path, dst: &Path) -> Result<()> {
    if have("rsync") {
        std::fs::create_dir_all(dst).map_err(io_err(dst.display()))?;
        run_cmd(
            Command::new("rsync")
                .arg("-a")
                .arg("--delete")
                .arg(format!("{}/", src.display()))
                .arg(format!("{}/", dst.display())),
            "rsync",
        )?;
    } else {
        if dst.exists() {
            std::fs::remove_dir_all(dst).map_err(io_err(dst.display()))?;
        }
        run_cmd(Command::new("cp").arg("-a").arg(src).arg(dst), "cp -a")?;
    }
    Ok(())
}

/// Writes a message into a maildir the way a delivery agent does (tmp/, then rename).
fn deliver(dir: &Path, sub: &str, name: &str, data: &[u8], mtime: i64) -> Result<()> {
    let tmp = dir.join("tmp").join(name);
    let mut f = std::fs::File::create(&tmp).map_err(io_err(tmp.display()))?;
    f.write_all(data).map_err(io_err(tmp.display()))?;
    let t = std::time::UNIX_EPOCH + Duration::from_secs(mtime.max(0) as u64);
    f.set_modified(t).map_err(io_err(tmp.display()))?;
    drop(f);
    let fin = dir.join(sub).join(name);
    std::fs::rename(&tmp, &fin).map_err(io_err(fin.display()))
}

fn make_maildir(path: &Path) -> Result<()> {
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(path.join(sub)).map_err(io_err(path.display()))?;
    }
    Ok(())
}

/// The flag letters verify compares, from IMAP flag names.
fn flag_letters<'a>(flags: impl Iterator<Item = &'a str>) -> String {
    let mut v: Vec<char> = flags
        .filter_map(|f| match f.to_ascii_lowercase().as_str() {
            "\\draft" => Some('D'),
            "\\flagged" => Some('F'),
            "\\answered" => Some('R'),
            "\\seen" => Some('S'),
            "\\deleted" => Some('T'),
            _ => None,
        })
        .collect();
    v.sort_unstable();
    v.into_iter().collect()
}

/// Every maildir (a directory with cur/ and new/) under `root`, by its relative name.
pub fn local_folders(root: &Path) -> Result<BTreeMap<String, PathBuf>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, PathBuf>) -> Result<()> {
        if dir.join("cur").is_dir() && dir.join("new").is_dir() {
            let rel = dir.strip_prefix(root).unwrap_or(dir);
            out.insert(rel.to_string_lossy().into_owned(), dir.to_path_buf());
        }
        for e in std::fs::read_dir(dir).map_err(io_err(dir.display()))? {
            let e = e.map_err(io_err(dir.display()))?;
            let name = e.file_name();
            if e.file_type().is_ok_and(|t| t.is_dir())
                && !matches!(name.to_str(), Some("cur" | "new" | "tmp"))
            {
                walk(root, &e.path(), out)?;
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    if root.is_dir() {
        walk(root, root, &mut out)?;
    }
    Ok(out)
}

/// The Message-ID of a message file (from its header) or `<none>`.
fn message_id(path: &Path) -> Result<String> {
    let mut head = Vec::with_capacity(16384);
    std::fs::File::open(path)
        .map_err(io_err(path.display()))?
        .take(16384)
        .read_to_end(&mut head)
        .map_err(io_err(path.display()))?;
    let text = String::from_utf8_lossy(&head);
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("message-id")
        {
            return Ok(value.trim().to_string());
        }
    }
    Ok("<none>".into())
}

/// Every message of a local tree, per folder.
pub fn local_state(root: &Path) -> Result<BTreeMap<String, Vec<Entry>>> {
    let mut out = BTreeMap::new();
    for (name, dir) in local_folders(root)? {
        let mut v = Vec::new();
        for sub in ["cur", "new"] {
            let d = dir.join(sub);
            for e in std::fs::read_dir(&d).map_err(io_err(d.display()))? {
                let e = e.map_err(io_err(d.display()))?;
                let file = e.file_name().to_string_lossy().into_owned();
                let flags = file
                    .split_once(":2,")
                    .map(|(_, f)| {
                        let mut c: Vec<char> = f.chars().filter(char::is_ascii_uppercase).collect();
                        c.sort_unstable();
                        c.into_iter().collect()
                    })
                    .unwrap_or_default();
                v.push((message_id(&e.path())?, flags));
            }
        }
        out.insert(name, v);
    }
    Ok(out)
}

/// Compares the server's and a local side's folders, Message-IDs (duplicates count) and
/// flags. `Ok` when equal, else the mismatches.
pub fn compare(
    server: &BTreeMap<String, Vec<(u32, Entry)>>,
    local: &BTreeMap<String, Vec<Entry>>,
) -> std::result::Result<(), String> {
    let mut problems = Vec::new();
    let names: BTreeSet<&String> = server.keys().chain(local.keys()).collect();
    for f in names {
        let (Some(s), Some(l)) = (server.get(f), local.get(f)) else {
            let side = if server.contains_key(f) {
                "server"
            } else {
                "local side"
            };
            problems.push(format!("{f}: only on the {side}"));
            continue;
        };
        let mut sid: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (_, (mid, fl)) in s {
            sid.entry(mid).or_default().push(fl);
        }
        let mut lid: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (mid, fl) in l {
            lid.entry(mid).or_default().push(fl);
        }
        let missing: Vec<&str> = sid
            .iter()
            .filter(|(k, v)| lid.get(*k).map_or(0, Vec::len) < v.len())
            .map(|(k, _)| *k)
            .collect();
        let extra: Vec<&str> = lid
            .iter()
            .filter(|(k, v)| sid.get(*k).map_or(0, Vec::len) < v.len())
            .map(|(k, _)| *k)
            .collect();
        let badflags: Vec<&str> = sid
            .iter()
            .filter(|(k, v)| {
                lid.get(*k).is_some_and(|lv| {
                    let (mut a, mut b) = ((*v).clone(), lv.clone());
                    a.sort_unstable();
                    b.sort_unstable();
                    a.len() == b.len() && a != b
                })
            })
            .map(|(k, _)| *k)
            .collect();
        if s.len() != l.len() || !missing.is_empty() || !extra.is_empty() || !badflags.is_empty() {
            let first = |v: &[&str]| v.iter().take(3).copied().collect::<Vec<_>>().join(" ");
            problems.push(format!(
                "{f}: server {} local {} messages; missing locally {} [{}]; extra or duplicate locally {} [{}]; flag mismatches {} [{}]",
                s.len(),
                l.len(),
                missing.len(),
                first(&missing),
                extra.len(),
                first(&extra),
                badflags.len(),
                first(&badflags),
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

impl Bench {
    /// A benchmark on this server, with a fresh scratch directory. `log` receives progress
    /// lines.
    pub fn new(server: Dovecot, settings: Settings, log: Box<dyn FnMut(&str)>) -> Result<Bench> {
        let work = tempfile::Builder::new()
            .prefix("oi-bench.")
            .tempdir()
            .map_err(io_err("cannot create a scratch directory"))?;
        let delay = if settings.latency.is_zero() {
            None
        } else {
            if settings.transport != Transport::Plain {
                return Err("LATENCY_MS needs TRANSPORT=plain".into());
            }
            Some(
                crate::delay::DelayProxy::start(server.imap_port(), settings.latency / 2)
                    .map_err(io_err("cannot start the delay proxy"))?,
            )
        };
        Ok(Bench {
            settings,
            server,
            delay,
            work,
            log,
            floor_base: BTreeMap::new(),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The server.
    pub fn server(&self) -> &Dovecot {
        &self.server
    }

    fn home(&self) -> PathBuf {
        let m = self.server.maildir_of(USER);
        m.parent().map(Path::to_path_buf).unwrap_or(m)
    }

    fn snap(&self, what: &str) -> PathBuf {
        self.work.path().join("snap").join(what)
    }

    /// A tool's working tree: `local/` (one maildir per folder) and `meta/`.
    pub fn tool_dir(&self, tool: Tool) -> PathBuf {
        self.work.path().join(format!("work-{}", tool.name()))
    }

    /// A tool's local Maildir tree.
    pub fn local_root(&self, tool: Tool) -> PathBuf {
        self.tool_dir(tool).join("local")
    }

    fn doveadm(&self) -> Command {
        let mut c = Command::new("doveadm");
        c.arg("-c").arg(self.server.config_path());
        c
    }

    /// Writes the messages straight into the server's Maildir, lets Dovecot index them, and
    /// keeps the result as the baseline every run starts from.
    pub fn populate(&mut self) -> Result<()> {
        let s = self.settings.clone();
        let maildir = self.server.maildir_of(USER);
        let names = folder_names(s.folders);
        let dirs: Vec<PathBuf> = names
            .iter()
            .map(|n| {
                if n == "INBOX" {
                    maildir.clone()
                } else {
                    maildir.join(format!(".{n}"))
                }
            })
            .collect();
        for d in &dirs {
            make_maildir(d)?;
        }
        let subs: String = names.iter().map(|n| format!("{n}\n")).collect();
        std::fs::write(maildir.join("subscriptions"), subs).map_err(io_err("subscriptions"))?;
        let mut g = Gen::new(s.seed, s.profile);
        let mut total = 0usize;
        let n = s.n.max(1) as i64;
        for i in 0..s.n {
            let dir = &dirs[g.rng.zipf(dirs.len())];
            let ts = EPOCH + i as i64 * SPAN / n + g.rng.below(3600) as i64;
            let data = g.message(&format!("<p{}.{i}@bench.invalid>", s.seed), ts);
            let seen = g.rng.unit()
                < if (i as f64) < s.n as f64 * 0.95 {
                    0.9
                } else {
                    0.3
                };
            let mut flags = String::new();
            if g.rng.unit() < 0.04 {
                flags.push('F');
            }
            if seen && g.rng.unit() < 0.15 {
                flags.push('R');
            }
            if seen {
                flags.push('S');
            }
            let vsize = data.len() + data.iter().filter(|&&b| b == b'\n').count();
            let name = format!(
                "{ts}.M{i}P{}.bench,S={},W={vsize}:2,{flags}",
                s.seed,
                data.len()
            );
            deliver(dir, "cur", &name, &data, ts)?;
            total += data.len();
        }
        run_cmd(
            Command::new("chown")
                .arg("-R")
                .arg("nobody:nogroup")
                .arg(self.home()),
            "chown",
        )?;
        // Dovecot assigns UIDs and builds its indexes now, not during the first timed run.
        run_cmd(
            self.doveadm()
                .args(["mailbox", "status", "-u", USER, "messages", "*"]),
            "doveadm mailbox status",
        )?;
        // And keeps each message's modification sequence from now on, as a server that a
        // CONDSTORE client has used does (see crate::floor::enable_condstore); without it,
        // every change to a folder would be "all of it changed" for such a client.
        crate::floor::enable_condstore(self.server.imap_port(), USER, PASS)
            .map_err(|e| format!("cannot select the folders with CONDSTORE: {e}"))?;
        mirror(&self.home(), &self.snap("server"))?;
        (self.log)(&format!(
            "populated {} messages ({:.1} MiB, profile {}) in {} folders",
            s.n,
            total as f64 / 1048576.0,
            s.profile.name(),
            names.len()
        ));
        Ok(())
    }

    /// The server's messages per folder (UID, Message-ID, flag letters), read with doveadm.
    pub fn server_state(&self) -> Result<BTreeMap<String, Vec<(u32, Entry)>>> {
        let out = run_cmd(
            self.doveadm().args([
                "-f",
                "tab",
                "fetch",
                "-u",
                USER,
                "mailbox uid flags hdr.message-id",
                "all",
            ]),
            "doveadm fetch",
        )?;
        let mut state: BTreeMap<String, Vec<(u32, Entry)>> = BTreeMap::new();
        for name in run_cmd(
            self.doveadm().args(["mailbox", "list", "-u", USER]),
            "doveadm mailbox list",
        )
        .map(|o| String::from_utf8_lossy(&o).into_owned())?
        .lines()
        .filter(|l| !l.is_empty())
        {
            state.entry(name.to_string()).or_default();
        }
        let text = String::from_utf8_lossy(&out);
        for line in text.lines().skip(1) {
            let mut parts = line.splitn(4, '\t');
            let (Some(mailbox), Some(uid), Some(flags), Some(mid)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("unexpected doveadm fetch line: {line:?}"));
            };
            let uid = uid
                .parse::<u32>()
                .map_err(|_| format!("unexpected doveadm fetch line: {line:?}"))?;
            let mid = if mid.trim().is_empty() {
                "<none>"
            } else {
                mid.trim()
            };
            state.entry(mailbox.to_string()).or_default().push((
                uid,
                (mid.to_string(), flag_letters(flags.split_whitespace())),
            ));
        }
        Ok(state)
    }

    /// Compares the server with a tool's local tree.
    pub fn verify(&self, tool: Tool) -> std::result::Result<(), String> {
        let server = self.server_state()?;
        let local = local_state(&self.local_root(tool))?;
        compare(&server, &local)
    }

    fn write_configs(&self, tool: Tool) -> Result<(PathBuf, Command)> {
        let dir = self.tool_dir(tool);
        let local = dir.join("local");
        let conf = self.work.path().join(format!("{}.conf", tool.name()));
        let port = match &self.delay {
            Some(d) => d.port(),
            None => self.server.imap_port(),
        };
        let tunnel = self.server.preauth_command(USER);
        let s = &self.settings;
        let (text, cmd) = match tool {
            Tool::Ours => {
                let net = match s.transport {
                    Transport::Plain => format!(
                        "remotehost = 127.0.0.1\nremoteport = {port}\nssl = no\nstarttls = no\n\
                         remoteuser = {USER}\nremotepass = {PASS}\n"
                    ),
                    Transport::Tunnel => format!("preauthtunnel = {tunnel}\n"),
                };
                let text = format!(
                    "[general]\naccounts = bench\nmetadata = {meta}\n{fsync}\n\
                     [Account bench]\nlocalrepository = bench-local\nremoterepository = bench-remote\n\n\
                     [Repository bench-local]\ntype = Maildir\nlocalfolders = {local}\n\n\
                     [Repository bench-remote]\ntype = IMAP\n{net}",
                    meta = dir.join("meta").display(),
                    local = local.display(),
                    fsync = if s.fsync_off { "fsync = false\n" } else { "" },
                );
                let mut c = Command::new(&s.ours);
                c.arg("-c").arg(&conf).args(["-o", "-u", "quiet"]);
                (text, c)
            }
            Tool::Mbsync => {
                let net = match s.transport {
                    Transport::Plain => format!(
                        "Host 127.0.0.1\nPort {port}\nSSLType None\nAuthMechs PLAIN\nUser {USER}\nPass {PASS}\n"
                    ),
                    Transport::Tunnel => format!("Tunnel \"{tunnel}\"\n"),
                };
                let text = format!(
                    "{fsync}IMAPAccount bench\n{net}\n\
                     IMAPStore remote\nAccount bench\n\n\
                     MaildirStore local\nPath {local}/\nInbox {local}/INBOX\nSubFolders Verbatim\n\n\
                     Channel bench\nFar :remote:\nNear :local:\nPatterns *\nCreate Both\nSyncState *\n",
                    local = local.display(),
                    fsync = if s.fsync_off { "FSync no\n" } else { "" },
                );
                let mut c = Command::new("mbsync");
                c.arg("-c").arg(&conf).args(["-q", "-a"]);
                (text, c)
            }
            Tool::Floor => return Err("the floor is no tool: it has no configuration".into()),
        };
        std::fs::write(&conf, text).map_err(io_err(conf.display()))?;
        Ok((conf, cmd))
    }

    /// Puts the server and the tool's local side in the scenario's starting state. Returns
    /// false for a non-initial scenario when the tool has no synced copy yet.
    fn prepare(&mut self, tool: Tool, scenario: Scenario) -> Result<bool> {
        mirror(&self.snap("server"), &self.home())?;
        if tool == Tool::Floor {
            match scenario {
                Scenario::Initial | Scenario::Noop => {}
                Scenario::Flags => self.server_flags()?,
                Scenario::New => {
                    self.floor_base = self.uid_next()?;
                    self.server_new()?;
                }
                Scenario::Push => return Err("the floor has no push scenario".into()),
            }
            run_cmd(&mut Command::new("sync"), "sync")?;
            return Ok(true);
        }
        let dir = self.tool_dir(tool);
        if scenario == Scenario::Initial {
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(io_err(dir.display()))?;
            }
            for sub in ["local", "meta"] {
                std::fs::create_dir_all(dir.join(sub)).map_err(io_err(dir.display()))?;
            }
            // The tools create the folders themselves: nothing to wait out, only flush.
            run_cmd(&mut Command::new("sync"), "sync")?;
            return Ok(true);
        }
        let snap = self.snap(&format!("local-{}", tool.name()));
        if !snap.exists() {
            return Ok(false);
        }
        mirror(&snap, &dir)?;
        let s = self.settings.clone();
        let count = s.n.div_ceil(100);
        match scenario {
            Scenario::Initial | Scenario::Noop => {}
            Scenario::Flags => self.server_flags()?,
            Scenario::New => self.server_new()?,
            Scenario::Push => {
                let mut folders: Vec<(String, PathBuf)> =
                    local_folders(&self.local_root(tool))?.into_iter().collect();
                folders.sort_by_key(|(n, _)| (n != "INBOX", n.clone()));
                let mut g = Gen::new(s.seed * 1000 + 7, s.profile);
                for i in 0..count {
                    let (_, dir) = &folders[g.rng.zipf(folders.len())];
                    let ts = EPOCH + SPAN + 86_400 + i as i64 * 60;
                    let data = g.message(&format!("<l{}.{i}@bench.invalid>", s.seed), ts);
                    let seen = i % 2 == 1;
                    let name = format!(
                        "{ts}.M{i}Q{}.benchpush{}",
                        s.seed,
                        if seen { ":2,S" } else { "" }
                    );
                    deliver(dir, if seen { "cur" } else { "new" }, &name, &data, ts)?;
                }
            }
        }
        self.settle(tool)?;
        Ok(true)
    }

    /// Mail is seldom fresher than a second: mbsync waits out a maildir changed in the
    /// current second, so a tree the harness or the previous run just touched would add
    /// that wait to the timing. Sleeps until every directory of the tool's tree is over
    /// 1.1 s old, then flushes the page cache's dirty data (`sync`) so the timed run does
    /// not pay for the harness's writes.
    fn settle(&self, tool: Tool) -> Result<()> {
        fn newest(dir: &Path, acc: &mut std::time::SystemTime) -> Result<()> {
            let meta = std::fs::metadata(dir).map_err(io_err(dir.display()))?;
            if let Ok(m) = meta.modified() {
                *acc = (*acc).max(m);
            }
            for e in std::fs::read_dir(dir).map_err(io_err(dir.display()))? {
                let e = e.map_err(io_err(dir.display()))?;
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    newest(&e.path(), acc)?;
                }
            }
            Ok(())
        }
        let mut t = std::time::UNIX_EPOCH;
        newest(&self.tool_dir(tool), &mut t)?;
        let age = std::time::SystemTime::now()
            .duration_since(t)
            .unwrap_or_default();
        let want = Duration::from_millis(1100);
        if age < want {
            std::thread::sleep(want - age);
        }
        run_cmd(&mut Command::new("sync"), "sync")?;
        Ok(())
    }

    /// The new scenario's change: 1% more messages on the server.
    fn server_new(&mut self) -> Result<()> {
        let s = &self.settings;
        let mut g = Gen::new(s.seed * 1000 + 3, s.profile);
        let names = folder_names(s.folders);
        let seed = s.seed;
        for i in 0..s.n.div_ceil(100) {
            let folder = &names[g.rng.zipf(names.len())];
            let ts = EPOCH + SPAN + i as i64 * 60;
            let data = g.message(&format!("<n{seed}.{i}@bench.invalid>"), ts);
            self.save(folder, &data)?;
        }
        Ok(())
    }

    /// Each folder's UIDNEXT.
    fn uid_next(&self) -> Result<BTreeMap<String, u32>> {
        let out = run_cmd(
            self.doveadm()
                .args(["-f", "tab", "mailbox", "status", "-u", USER, "uidnext", "*"]),
            "doveadm mailbox status",
        )?;
        let text = String::from_utf8_lossy(&out);
        let mut next = BTreeMap::new();
        for line in text.lines().skip(1) {
            let bad = || format!("unexpected doveadm mailbox status line: {line:?}");
            let (name, n) = line.rsplit_once('\t').ok_or_else(bad)?;
            next.insert(name.to_string(), n.trim().parse().map_err(|_| bad())?);
        }
        Ok(next)
    }

    fn save(&self, folder: &str, data: &[u8]) -> Result<()> {
        let mut child = self
            .doveadm()
            .args(["save", "-u", USER, "-m", folder])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io_err("doveadm save"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(data).map_err(io_err("doveadm save"))?;
        }
        let out = child.wait_with_output().map_err(io_err("doveadm save"))?;
        if !out.status.success() {
            return Err(format!(
                "doveadm save failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    /// Changes the flags of 10% of the server's messages (Seen toggled, Flagged 30% and
    /// Answered 20% of the time).
    fn server_flags(&mut self) -> Result<()> {
        let state = self.server_state()?;
        let all: Vec<(&String, u32, &String)> = state
            .iter()
            .flat_map(|(f, v)| v.iter().map(move |(uid, (_, fl))| (f, *uid, fl)))
            .collect();
        let mut rng = Rng::new(self.settings.seed.wrapping_mul(31).wrapping_add(17));
        let k = (all.len() / 10).max(1).min(all.len());
        let mut idx: Vec<usize> = (0..all.len()).collect();
        for i in 0..k {
            let j = i + rng.below(idx.len() - i);
            idx.swap(i, j);
        }
        // (folder, flag, add?) -> UIDs
        let mut groups: BTreeMap<(String, &str, bool), Vec<u32>> = BTreeMap::new();
        for &i in &idx[..k] {
            let (f, uid, letters) = all[i];
            for (flag, letter, p) in [
                ("\\Seen", 'S', 1.0),
                ("\\Flagged", 'F', 0.3),
                ("\\Answered", 'R', 0.2),
            ] {
                if rng.unit() < p {
                    let add = !letters.contains(letter);
                    groups.entry((f.clone(), flag, add)).or_default().push(uid);
                }
            }
        }
        for ((folder, flag, add), uids) in groups {
            for chunk in uids.chunks(500) {
                let set: Vec<String> = chunk.iter().map(u32::to_string).collect();
                run_cmd(
                    self.doveadm()
                        .args([
                            "flags",
                            if add { "add" } else { "remove" },
                            "-u",
                            USER,
                            flag,
                        ])
                        .args(["mailbox", &folder, "uid", &set.join(",")]),
                    "doveadm flags",
                )?;
            }
        }
        Ok(())
    }

    /// Runs the tool once, timed, in the current state; returns wall time, peak RSS and
    /// whether it exited successfully.
    fn timed_run(&self, tool: Tool, scenario: Scenario) -> Result<(Duration, u64, Option<String>)> {
        let (_, mut cmd) = self.write_configs(tool)?;
        let logs = self.work.path().join("logs");
        std::fs::create_dir_all(&logs).map_err(io_err(logs.display()))?;
        let log = logs.join(format!("{}-{}.log", tool.name(), scenario.name()));
        let out = std::fs::File::create(&log).map_err(io_err(log.display()))?;
        let err = out.try_clone().map_err(io_err(log.display()))?;
        let measured = self.work.path().join("measured");
        if let Some(launcher) = &self.settings.launcher {
            let mut via = Command::new(launcher);
            via.arg("--measure")
                .arg(&measured)
                .arg(self.settings.timeout.as_millis().to_string())
                .arg(cmd.get_program())
                .args(cmd.get_args());
            cmd = via;
        }
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let start = Instant::now();
        let child = cmd
            .spawn()
            .map_err(io_err(format!("cannot start {}", tool.name())))?;
        let grace = Duration::from_secs(if self.settings.launcher.is_some() {
            30
        } else {
            0
        });
        let r = crate::rusage::wait_with_rusage(child, self.settings.timeout + grace)
            .map_err(io_err(format!("waiting for {}", tool.name())))?;
        let mut wall = start.elapsed();
        let r = if self.settings.launcher.is_some() {
            let (r, w) = crate::rusage::read_measured(&measured)
                .map_err(io_err(format!("measuring {}", tool.name())))?;
            wall = w;
            r
        } else {
            r
        };
        let failure = match r.exit {
            Some(0) => None,
            other => {
                let tail = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: Vec<&str> = tail.lines().rev().take(5).collect();
                Some(format!(
                    "{} {}: {}",
                    tool.name(),
                    if r.timed_out {
                        "timed out".to_string()
                    } else {
                        match other {
                            Some(c) => format!("exited with status {c}"),
                            None => "was killed by a signal".to_string(),
                        }
                    },
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ))
            }
        };
        Ok((wall, r.max_rss_kib, failure))
    }

    /// One timed and verified run of a scenario, from its starting state. A verified
    /// initial run becomes the tool's synced copy for the other scenarios (made untimed on
    /// demand when missing).
    pub fn run(&mut self, tool: Tool, scenario: Scenario) -> Result<RunResult> {
        if tool == Tool::Floor {
            return self.run_floor(scenario);
        }
        if !self.prepare(tool, scenario)? {
            (self.log)(&format!(
                "{}: no synced local copy yet, doing an untimed initial sync first",
                tool.name()
            ));
            let r = self.run(tool, Scenario::Initial)?;
            if let Err(e) = r.verify {
                // Recorded as a failed run (no timing), so the other tools still run.
                return Ok(RunResult {
                    scenario,
                    tool,
                    wall: Duration::ZERO,
                    max_rss_kib: 0,
                    verify: Err(format!("the untimed initial sync failed: {e}")),
                });
            }
            if !self.prepare(tool, scenario)? {
                return Err(format!("no synced copy for {}", tool.name()));
            }
        }
        // The starting state must differ from a synced one exactly when the scenario
        // changes something, or the timing would measure the wrong thing.
        match (scenario, self.verify(tool)) {
            (Scenario::Noop, Err(e)) => {
                return Err(format!(
                    "{}: the synced copy does not verify: {e}",
                    tool.name()
                ));
            }
            (Scenario::Initial | Scenario::Flags | Scenario::New | Scenario::Push, Ok(())) => {
                return Err(format!(
                    "{}: scenario {} left nothing to sync",
                    tool.name(),
                    scenario.name()
                ));
            }
            _ => {}
        }
        let (wall, max_rss_kib, failure) = self.timed_run(tool, scenario)?;
        let verify = match failure {
            Some(f) => Err(f),
            None => self.verify(tool),
        };
        if scenario == Scenario::Initial && verify.is_ok() {
            mirror(
                &self.tool_dir(tool),
                &self.snap(&format!("local-{}", tool.name())),
            )?;
        }
        Ok(RunResult {
            scenario,
            tool,
            wall,
            max_rss_kib,
            verify,
        })
    }

    /// The floor of a scenario (see [`crate::floor`]), timed from the connection to the
    /// end of LOGOUT. No process, so no peak RSS; nothing to verify.
    fn run_floor(&mut self, scenario: Scenario) -> Result<RunResult> {
        self.prepare(Tool::Floor, scenario)?;
        let port = match &self.delay {
            Some(d) => d.port(),
            None => self.server.imap_port(),
        };
        let start = Instant::now();
        let done = crate::floor::run(port, USER, PASS, scenario, &self.floor_base);
        let wall = start.elapsed();
        Ok(RunResult {
            scenario,
            tool: Tool::Floor,
            wall,
            max_rss_kib: 0,
            verify: done.map_err(|e| format!("floor {}: {e}", scenario.name())),
        })
    }

    /// Every scenario, `reps` rounds each with the tools interleaved (the floor skips
    /// push, which it has no conversation for).
    pub fn run_all(&mut self) -> Result<Vec<RunResult>> {
        let s = self.settings.clone();
        let mut results = Vec::new();
        for &scenario in &s.scenarios {
            for rep in 1..=s.reps {
                for &tool in &s.tools {
                    if tool == Tool::Floor && scenario == Scenario::Push {
                        continue;
                    }
                    let r = self.run(tool, scenario)?;
                    (self.log)(&format!(
                        "{} {} (run {rep}/{}): {:.3} s, {:.1} MiB, verify {}",
                        tool.name(),
                        scenario.name(),
                        s.reps,
                        r.wall.as_secs_f64(),
                        r.max_rss_kib as f64 / 1024.0,
                        match &r.verify {
                            Ok(()) => "OK".to_string(),
                            Err(e) => format!("FAIL: {e}"),
                        }
                    ));
                    results.push(r);
                }
            }
        }
        Ok(results)
    }
}

impl Bench {
    /// Proves that verify can fail: after a verified sync of `tool`, a deleted local message
    /// and then a changed local flag must each make verify report a mismatch. Leaves the
    /// tool's tree broken (the next run restores it).
    pub fn self_check(&mut self, tool: Tool) -> Result<()> {
        let r = self.run(tool, Scenario::Noop)?;
        r.verify
            .map_err(|e| format!("verify failed on a clean sync: {e}"))?;
        let inbox = self.local_root(tool).join("INBOX").join("cur");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&inbox)
            .map_err(io_err(inbox.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        let [victim, other, ..] = files.as_slice() else {
            return Err(format!("{}: fewer than two messages", inbox.display()));
        };
        std::fs::remove_file(victim).map_err(io_err(victim.display()))?;
        match self.verify(tool) {
            Err(e) if e.contains("missing locally 1") => {}
            Err(e) => return Err(format!("verify did not name the deleted message: {e}")),
            Ok(()) => return Err("verify passed with a local message deleted".into()),
        }
        std::fs::write(victim, b"Message-ID: <restored@bench.invalid>\n\nx\n")
            .map_err(io_err(victim.display()))?;
        match self.verify(tool) {
            Err(e) if e.contains("extra or duplicate locally 1") => {}
            other => return Err(format!("verify missed a foreign message: {other:?}")),
        }
        std::fs::remove_file(victim).map_err(io_err(victim.display()))?;
        mirror(
            &self.snap(&format!("local-{}", tool.name())),
            &self.tool_dir(tool),
        )?;
        self.verify(tool)
            .map_err(|e| format!("verify failed on the restored copy: {e}"))?;
        // Toggle \Flagged on one message by renaming its file.
        let name = other
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (base, flags) = name.split_once(":2,").unwrap_or((&name, ""));
        let flags: String = if flags.contains('F') {
            flags.replace('F', "")
        } else {
            let mut c: Vec<char> = flags.chars().chain(['F']).collect();
            c.sort_unstable();
            c.into_iter().collect()
        };
        std::fs::rename(other, inbox.join(format!("{base}:2,{flags}")))
            .map_err(io_err(other.display()))?;
        match self.verify(tool) {
            Err(e) if e.contains("flag mismatches 1") => Ok(()),
            other => Err(format!("verify missed a changed flag: {other:?}")),
        }
    }
}
