//! The packaging files in contrib/ match the command line and the config reader.

#[path = "../../src/args.rs"]
#[allow(dead_code)]
mod args;
#[path = "../../src/packaging.rs"]
mod generator;

use std::path::Path;

fn contrib() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../contrib")
}

#[test]
fn man_page_and_completions_are_generated_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    generator::generate(dir.path()).unwrap();
    for file in [
        "man/offlineimap.1",
        "completions/offlineimap.bash",
        "completions/_offlineimap",
        "completions/offlineimap.fish",
    ] {
        let fresh = std::fs::read(dir.path().join(file)).unwrap();
        let committed = std::fs::read(contrib().join(file)).unwrap_or_default();
        assert!(
            fresh == committed,
            "contrib/{file} is stale: run cargo run -p offlineimap --example gen_packaging -- contrib"
        );
    }
    let man = std::fs::read_to_string(dir.path().join("man/offlineimap.1")).unwrap();
    for flag in [
        "dry\\-run",
        "SIGUSR1",
        "distinct\\-exit\\-codes",
        "LocalStatus",
    ] {
        assert!(man.contains(flag), "man page lacks {flag}");
    }
}

#[test]
fn example_config_loads_and_systemd_units_name_the_binary() {
    let config = oi_config::load(&contrib().join("offlineimaprc.example"), &[]).unwrap();
    assert_eq!(config.accounts.len(), 1);
    assert_eq!(config.accounts[0].autorefresh, Some(10.0));
    for unit in [
        "offlineimap.service",
        "offlineimap-oneshot.service",
        "offlineimap@.service",
    ] {
        let text = std::fs::read_to_string(contrib().join("systemd").join(unit)).unwrap();
        assert!(text.contains("ExecStart=/usr/bin/offlineimap"), "{unit}");
    }
}
