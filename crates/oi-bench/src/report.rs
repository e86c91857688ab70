//! The Markdown table of a benchmark's results.

use crate::harness::{RunResult, Scenario, Tool};
use std::collections::BTreeMap;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The table: one row per scenario and tool, with the ratio of the median wall time to
/// mbsync's on our rows and the floor's (when mbsync ran). The floor is no process: no
/// peak RSS.
pub fn table(results: &[RunResult]) -> String {
    let mut groups: BTreeMap<(Scenario, Tool), Vec<&RunResult>> = BTreeMap::new();
    for r in results {
        groups.entry((r.scenario, r.tool)).or_default().push(r);
    }
    let medians: BTreeMap<(Scenario, Tool), f64> = groups
        .iter()
        .map(|(k, v)| {
            let mut w: Vec<f64> = v.iter().map(|r| r.wall.as_secs_f64()).collect();
            (*k, median(&mut w))
        })
        .collect();
    let mut out = String::from(
        "| scenario | tool | median wall s | min–max s | peak RSS MiB | verify | ÷ mbsync |\n\
         |---|---|---:|---:|---:|---|---:|\n",
    );
    for ((scenario, tool), runs) in &groups {
        let walls: Vec<f64> = runs.iter().map(|r| r.wall.as_secs_f64()).collect();
        let min = walls.iter().copied().fold(f64::INFINITY, f64::min);
        let max = walls.iter().copied().fold(0.0, f64::max);
        let rss = runs.iter().map(|r| r.max_rss_kib).max().unwrap_or(0) as f64 / 1024.0;
        let ok = runs.iter().filter(|r| r.verify.is_ok()).count();
        let verify = if ok == runs.len() {
            format!("{ok}/{} OK", runs.len())
        } else {
            format!("{ok}/{} OK, FAIL", runs.len())
        };
        let ratio = match (tool, medians.get(&(*scenario, Tool::Mbsync))) {
            (Tool::Ours | Tool::Floor, Some(m)) if *m > 0.0 => {
                format!(
                    "{:.2}",
                    medians
                        .get(&(*scenario, *tool))
                        .copied()
                        .unwrap_or(f64::NAN)
                        / m
                )
            }
            _ => "–".to_string(),
        };
        let rss = if *tool == Tool::Floor {
            "–".to_string()
        } else {
            format!("{rss:.1}")
        };
        out.push_str(&format!(
            "| {} | {} | {:.3} | {:.3}–{:.3} | {} | {} | {} |\n",
            scenario.name(),
            tool.name(),
            medians
                .get(&(*scenario, *tool))
                .copied()
                .unwrap_or(f64::NAN),
            min,
            max,
            rss,
            verify,
            ratio
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn r(s: Scenario, t: Tool, ms: u64, ok: bool) -> RunResult {
        RunResult {
            scenario: s,
            tool: t,
            wall: Duration::from_millis(ms),
            max_rss_kib: 2048,
            verify: if ok { Ok(()) } else { Err("x".into()) },
        }
    }

    #[test]
    fn medians_and_ratios() {
        let t = table(&[
            r(Scenario::Noop, Tool::Ours, 100, true),
            r(Scenario::Noop, Tool::Mbsync, 400, true),
            r(Scenario::Noop, Tool::Ours, 300, true),
            r(Scenario::Noop, Tool::Mbsync, 200, true),
            r(Scenario::Noop, Tool::Ours, 200, false),
            r(Scenario::Noop, Tool::Mbsync, 100, true),
            r(Scenario::Initial, Tool::Ours, 1000, true),
            r(Scenario::Noop, Tool::Floor, 50, true),
        ]);
        assert!(
            t.contains("| noop | ours | 0.200 | 0.100–0.300 | 2.0 | 2/3 OK, FAIL | 1.00 |"),
            "{t}"
        );
        assert!(
            t.contains("| noop | mbsync | 0.200 | 0.100–0.400 | 2.0 | 3/3 OK | – |"),
            "{t}"
        );
        assert!(
            t.contains("| initial | ours | 1.000 | 1.000–1.000 | 2.0 | 1/1 OK | – |"),
            "{t}"
        );
        assert!(
            t.contains("| noop | floor | 0.050 | 0.050–0.050 | – | 1/1 OK | 0.25 |"),
            "{t}"
        );
        // Scenarios in run order: initial before noop.
        assert!(t.find("| initial").unwrap_or(0) < t.find("| noop").unwrap_or(0));
    }
}
