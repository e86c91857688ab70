//! The offlineimaprc reader: the raw configparser-compatible parse, `%(name)s`
//! interpolation of every value in every section, `~`/`$VAR` expansion, `-k` overrides and
//! the typed load, all against a fixed fake environment (no process environment, no
//! `/etc/passwd`, no file I/O).
//!
//! Input: the configuration text (invalid UTF-8 is replaced, as the UTF-8 check happens
//! before parsing in `load_with_env`). Comment lines of the form `#!k section:opt=value`
//! also become `-k` overrides, so one input drives both.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use oi_config::raw::{DEFAULT_SECTION, RawConfig};
use oi_config::{Env, Override, load_str};

fn env() -> Env {
    Env::from_vars([
        ("HOME", "/home/fuzz"),
        ("USER", "fuzz"),
        ("XDG_CONFIG_HOME", "/home/fuzz/.config"),
        ("MAILDIR", "/home/fuzz/Mail"),
    ])
    .with_user_home("alice", "/home/alice")
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let path = Path::new("/home/fuzz/.offlineimaprc");
    let env = env();

    let (raw, errors) = RawConfig::parse(&text, path);
    for e in &errors {
        let _ = e.to_string();
        let _ = e.line();
    }
    let mut sections: Vec<&str> = raw.section_names().collect();
    sections.push(DEFAULT_SECTION);
    for section in sections {
        assert!(section == DEFAULT_SECTION || raw.has_section(section));
        for entry in raw.keys(section) {
            match raw.get(section, &entry.key) {
                Some(Ok((value, _))) => {
                    let _ = env.expand_path(&value);
                }
                Some(Err(e)) => {
                    let _ = e.to_string();
                }
                None => panic!("[{section}] {} is listed but cannot be read", entry.key),
            }
        }
    }

    let overrides: Vec<Override> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#!k "))
        .filter_map(|k| Override::parse(k).ok())
        .chain(
            text.lines()
                .filter_map(|l| l.strip_prefix("#!a "))
                .map(Override::accounts),
        )
        .collect();
    match load_str(&text, path, &overrides, &env) {
        Ok(cfg) => {
            let _ = format!("{cfg:?}");
        }
        Err(errs) => {
            assert!(!errs.errors().is_empty(), "an error list without errors");
            for e in errs.errors() {
                let _ = e.to_string();
            }
        }
    }
});
