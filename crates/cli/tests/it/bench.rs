//! The benchmark harness (crates/oi-bench) at smoke size: every scenario once with our
//! binary, each run verified, and verify shown to catch a broken local copy; the protocol
//! floor of each scenario but push. The full-size benchmark is `scripts/bench`, never run
//! by the test suite.

use oi_bench::mail::Profile;
use oi_bench::{Bench, Scenario, Settings, Tool, Transport, report};
use oi_testkit::Dovecot;
use std::time::Duration;

#[test]
fn bench_smoke_every_scenario_verifies_and_verify_catches_breakage() {
    let Some(server) = Dovecot::start_or_skip("bench_smoke") else {
        return;
    };
    let settings = Settings {
        n: 50,
        folders: 3,
        profile: Profile::Mixed,
        seed: 1,
        reps: 1,
        scenarios: Scenario::ALL.to_vec(),
        tools: vec![Tool::Ours, Tool::Floor],
        fsync_off: true,
        transport: Transport::Plain,
        ours: env!("CARGO_BIN_EXE_offlineimap").into(),
        timeout: Duration::from_secs(120),
        // Through the delay proxy of LATENCY_MS, so that its forwarding is checked too.
        latency: Duration::from_millis(2),
        launcher: None,
    };
    let mut bench = Bench::new(server, settings, Box::new(|s| eprintln!("{s}"))).unwrap();
    bench.populate().unwrap();
    let server = bench.server_state().unwrap();
    assert_eq!(server.len(), 3, "{:?}", server.keys());
    assert_eq!(server.values().map(Vec::len).sum::<usize>(), 50);

    let results = bench.run_all().unwrap();
    let ran = |tool| -> Vec<Scenario> {
        results
            .iter()
            .filter(|r| r.tool == tool)
            .map(|r| r.scenario)
            .collect()
    };
    assert_eq!(ran(Tool::Ours), Scenario::ALL.to_vec());
    // The floor has no push.
    assert_eq!(ran(Tool::Floor), Scenario::ALL[..4].to_vec());
    for r in &results {
        assert!(
            r.verify.is_ok(),
            "{:?} {:?}: {:?}",
            r.tool,
            r.scenario,
            r.verify
        );
        assert_eq!(r.max_rss_kib > 0, r.tool == Tool::Ours, "{r:?}");
        assert!(r.wall > Duration::ZERO, "{r:?}");
    }
    // new and push each added 1% (one message) to the server.
    let after: usize = bench.server_state().unwrap().values().map(Vec::len).sum();
    assert_eq!(
        after, 51,
        "push starts from the baseline: 50 + its one message"
    );
    let table = report::table(&results);
    for s in Scenario::ALL {
        assert!(
            table.contains(&format!("| {} | ours |", s.name())),
            "{table}"
        );
        assert_eq!(
            table.contains(&format!("| {} | floor |", s.name())),
            s != Scenario::Push,
            "{table}"
        );
    }
    assert!(!table.contains("FAIL"), "{table}");

    // A deleted, a foreign and a re-flagged local message each fail verify.
    bench.self_check(Tool::Ours).unwrap();
    assert!(bench.verify(Tool::Ours).is_err());
}
