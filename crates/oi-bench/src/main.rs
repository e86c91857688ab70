//! `oi-bench [--smoke] [--ours BIN] [--out DIR] [N] [FOLDERS] [text|mixed|heavy]`: times
//! our offlineimap (and mbsync when installed) against a private Dovecot on 127.0.0.1.
//! Settings by environment: REPS, SCENARIOS, TOOLS, FSYNC=no, TRANSPORT=plain|tunnel,
//! SEED, RUN_TIMEOUT (seconds), LATENCY_MS (round trip added between tools and server).

use oi_bench::mail::Profile;
use oi_bench::{Bench, Scenario, Settings, Tool, Transport, report};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::time::Duration;

const USAGE: &str =
    "usage: oi-bench [--smoke] [--ours BIN] [--out DIR] [N] [FOLDERS] [text|mixed|heavy]
  N messages (default 2000) over FOLDERS folders (default 10), profile (default mixed).
  --smoke   50 messages, 3 folders, 1 run, ours only, plus a check that verify catches
            a broken local copy (a few seconds).
  --ours    our binary (default: offlineimap next to oi-bench).
  --out     where the results file goes (default: target/bench next to the binary's dir).
environment: REPS (3), SCENARIOS (initial noop flags new push), TOOLS (ours mbsync; also
  floor: the least IMAP conversation doing each scenario's server work, no push),
  FSYNC=no (fsync off in both tools), TRANSPORT=plain|tunnel, SEED (1), RUN_TIMEOUT (900 s),
  LATENCY_MS (0: round-trip time added between the tools and the server, plain only)";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn have_mbsync() -> bool {
    Command::new("mbsync")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn version(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).into_owned();
            s.push_str(&String::from_utf8_lossy(&o.stderr));
            s.lines().next().unwrap_or_default().trim().to_string()
        })
        .unwrap_or_else(|| "n/a".into())
}

fn parse() -> Result<(Settings, PathBuf, bool), String> {
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
        .unwrap_or_default();
    let mut ours = exe_dir.join("offlineimap");
    let mut out = exe_dir
        .parent()
        .map(|p| p.join("bench"))
        .unwrap_or_else(|| PathBuf::from("target/bench"));
    let mut smoke = false;
    let mut pos = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--smoke" => smoke = true,
            "--ours" => ours = args.next().ok_or("--ours needs a path")?.into(),
            "--out" => out = args.next().ok_or("--out needs a directory")?.into(),
            "-h" | "--help" => return Err(USAGE.into()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}")),
            _ => pos.push(a),
        }
    }
    if pos.len() > 3 {
        return Err(USAGE.into());
    }
    let num = |i: usize, name: &str, default: usize| -> Result<usize, String> {
        match pos.get(i) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or(format!("{name} must be a positive number, not {v:?}")),
        }
    };
    let n = num(0, "N", if smoke { 50 } else { 2000 })?;
    let folders = num(1, "FOLDERS", if smoke { 3 } else { 10 })?;
    let profile = match pos.get(2) {
        None => Profile::Mixed,
        Some(p) => {
            Profile::parse(p).ok_or(format!("unknown profile {p:?} (text, mixed, heavy)"))?
        }
    };
    let envnum = |name: &str, default: u64| -> Result<u64, String> {
        match env(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or(format!("{name} must be a positive number, not {v:?}")),
        }
    };
    let reps = if smoke {
        1
    } else {
        envnum("REPS", 3)? as usize
    };
    let scenarios = match env("SCENARIOS") {
        None => Scenario::ALL.to_vec(),
        Some(s) => s
            .split([' ', ','])
            .filter(|x| !x.is_empty())
            .map(|x| {
                Scenario::parse(x).ok_or(format!(
                    "unknown scenario {x:?} in SCENARIOS (initial noop flags new push)"
                ))
            })
            .collect::<Result<_, _>>()?,
    };
    let tools: Vec<Tool> = match env("TOOLS") {
        _ if smoke => vec![Tool::Ours],
        None => {
            if have_mbsync() {
                vec![Tool::Ours, Tool::Mbsync]
            } else {
                eprintln!("mbsync not installed: no ratios");
                vec![Tool::Ours]
            }
        }
        Some(s) => s
            .split([' ', ','])
            .filter(|x| !x.is_empty())
            .map(|x| {
                Tool::parse(x).ok_or(format!("unknown tool {x:?} in TOOLS (ours mbsync floor)"))
            })
            .collect::<Result<_, _>>()?,
    };
    if tools.contains(&Tool::Mbsync) && !have_mbsync() {
        return Err("TOOLS names mbsync, but mbsync is not installed".into());
    }
    if tools.contains(&Tool::Ours) && !ours.is_file() {
        return Err(format!(
            "our binary {} does not exist (build it, or pass --ours)",
            ours.display()
        ));
    }
    let fsync_off = match env("FSYNC").as_deref() {
        None | Some("default" | "yes") => false,
        Some("no") => true,
        Some(v) => return Err(format!("FSYNC must be no or default, not {v:?}")),
    };
    let transport = match env("TRANSPORT").as_deref() {
        None | Some("plain") => Transport::Plain,
        Some("tunnel") => Transport::Tunnel,
        Some(v) => return Err(format!("TRANSPORT must be plain or tunnel, not {v:?}")),
    };
    if tools.contains(&Tool::Floor) && transport != Transport::Plain {
        return Err("the floor (TOOLS) talks plain IMAP: it needs TRANSPORT=plain".into());
    }
    let settings = Settings {
        n,
        folders,
        profile,
        seed: envnum("SEED", 1)?,
        reps,
        scenarios,
        tools,
        fsync_off,
        transport,
        ours,
        timeout: Duration::from_secs(envnum("RUN_TIMEOUT", 900)?),
        latency: Duration::from_millis(envnum("LATENCY_MS", 0)?),
        launcher: std::env::current_exe().ok(),
    };
    Ok((settings, out, smoke))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--measure") {
        return match oi_bench::rusage::measure_main(&args[2..]) {
            Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
            Err(e) => {
                eprintln!("oi-bench --measure: {e}");
                ExitCode::from(2)
            }
        };
    }
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("oi-bench: {e}");
            ExitCode::from(2)
        }
    }
}

fn real_main() -> Result<bool, String> {
    let (settings, out_dir, smoke) = parse()?;
    let server = oi_testkit::Dovecot::start().map_err(|e| format!("cannot start dovecot: {e}"))?;
    let log = Box::new(|s: &str| eprintln!("[oi-bench] {s}"));
    let mut bench = Bench::new(server, settings.clone(), log)?;
    bench.populate()?;
    let results = bench.run_all()?;
    let all_ok = results.iter().all(|r| r.verify.is_ok());
    if smoke {
        bench.self_check(Tool::Ours)?;
        eprintln!(
            "[oi-bench] self-check: verify catches a deleted, a foreign and a re-flagged local message"
        );
    }
    let s = &settings;
    let mut text = format!(
        "# offlineimap benchmark\n\n\
         {} messages in {} folders, profile {}, seed {}, {} run(s) each, transport {}, fsync {}\n\n\
         dovecot {}; ours {} ({}); mbsync {}\n\n",
        s.n,
        s.folders,
        s.profile.name(),
        s.seed,
        s.reps,
        match s.transport {
            Transport::Plain => "plain",
            Transport::Tunnel => "tunnel",
        },
        if s.fsync_off { "off" } else { "default" },
        version(Command::new("dovecot").arg("--version")),
        version(Command::new(&s.ours).arg("--version")),
        s.ours.display(),
        if s.tools.contains(&Tool::Mbsync) {
            version(Command::new("mbsync").arg("--version"))
        } else {
            "not run (no ratios)".into()
        },
    );
    text.push_str(&report::table(&results));
    print!("{text}");
    std::fs::create_dir_all(&out_dir).map_err(|e| format!("{}: {e}", out_dir.display()))?;
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let file = out_dir.join(format!(
        "bench-{}-{}-{}{}.md",
        s.n,
        s.profile.name(),
        secs,
        if smoke { "-smoke" } else { "" }
    ));
    std::fs::write(&file, &text).map_err(|e| format!("{}: {e}", file.display()))?;
    eprintln!("[oi-bench] results written to {}", file.display());
    Ok(all_ok)
}
