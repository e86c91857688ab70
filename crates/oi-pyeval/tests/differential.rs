//! Differential test: the native evaluator (and the helper) against CPython run directly.
//!
//! Every expression in `tests/data/expressions.txt` is a folder function; each is applied to
//! every name in `tests/data/folders.txt`. Whatever the native evaluator accepts must be
//! identical to CPython's result, and lines without a leading `@` (the idioms seen in real
//! configs) must all be accepted natively. `⏎` in the data stands for a newline, as in a
//! multi-line config value.

#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::process::{Command, Stdio};

use oi_pyeval::{Origin, PyEnv, Value};
use serde_json::{Value as Json, json};

/// Evaluates like OfflineIMAP's LocalEval with `{'re': re}`; encodes like the helper.
const ORACLE: &str = r#"
import json, re, sys
def enc(v):
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, int):
        if -2 ** 63 <= v < 2 ** 63:
            return int(v)
    elif isinstance(v, str):
        return str(v)
    elif type(v) is list:
        return {'t': 'list', 'v': [enc(x) for x in v]}
    elif type(v) is tuple:
        return {'t': 'tuple', 'v': [enc(x) for x in v]}
    elif type(v) is dict:
        return {'t': 'dict', 'v': [[enc(k), enc(x)] for k, x in v.items()]}
    return {'t': 'other', 'type': type(v).__name__, 'truthy': bool(v)}
req = json.loads(sys.stdin.read())
out = []
for src in req['exprs']:
    try:
        f = eval(src, {'re': re})
    except Exception as e:
        out.append({'error': '%s: %s' % (type(e).__name__, e)})
        continue
    cells = []
    for n in req['names']:
        try:
            cells.append({'ok': enc(f(n))})
        except Exception as e:
            cells.append({'error': '%s: %s' % (type(e).__name__, e)})
    out.append({'cells': cells})
print(json.dumps(out))
"#;

fn to_json(v: &Value) -> Json {
    match v {
        Value::None => Json::Null,
        Value::Bool(b) => json!(b),
        Value::Int(i) => json!(i),
        Value::Str(s) => json!(s),
        Value::List(l) => json!({"t": "list", "v": l.iter().map(to_json).collect::<Vec<_>>()}),
        Value::Tuple(l) => json!({"t": "tuple", "v": l.iter().map(to_json).collect::<Vec<_>>()}),
        Value::Dict(d) => {
            json!({"t": "dict", "v": d.iter().map(|(k, v)| json!([to_json(k), to_json(v)])).collect::<Vec<_>>()})
        }
        Value::Other { type_name, truthy } => {
            json!({"t": "other", "type": type_name, "truthy": truthy})
        }
    }
}

fn python3_available() -> bool {
    let ok = Command::new("python3")
        .arg("-c")
        .arg("pass")
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "python3 is required under CI"
        );
        eprintln!("SKIPPED: python3 not found");
    }
    ok
}

fn load(name: &str) -> Vec<String> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.replace('⏎', "\n"))
        .collect()
}

fn oracle(exprs: &[String], names: &[String]) -> Vec<Json> {
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(ORACLE)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let req = json!({"exprs": exprs, "names": names}).to_string();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(req.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    serde_json::from_slice::<Vec<Json>>(&out.stdout).unwrap()
}

#[test]
fn native_and_helper_agree_with_cpython() {
    if !python3_available() {
        return;
    }
    let lines = load("expressions.txt");
    let names = load("folders.txt");
    assert!(lines.len() >= 300 && names.len() >= 15);
    let exprs: Vec<String> = lines
        .iter()
        .map(|l| l.strip_prefix('@').unwrap_or(l).to_string())
        .collect();
    let expected = oracle(&exprs, &names);
    let origin = Origin::new("Repository R", "nametrans");
    let mut native = PyEnv::native_only();
    let mut helper = PyEnv::new(None).helper_only();
    let (mut native_cells, mut fallback_cells) = (0, 0);
    let mut failures = Vec::new();
    for ((line, src), want) in lines.iter().zip(&exprs).zip(&expected) {
        // Per name, so that one name the native path declines does not hide the others.
        let func = native.folder_function(src, &origin);
        for (k, name) in names.iter().enumerate() {
            let got = match &func {
                Ok(f) => native
                    .apply(f, std::slice::from_ref(name))
                    .map(|mut v| v.remove(0)),
                Err(e) => Err(oi_pyeval::PyError::Unsupported {
                    origin: origin.clone(),
                    reason: e.to_string(),
                }),
            };
            let cell = &want["cells"][k];
            match (&got, cell.get("ok")) {
                (Ok(val), Some(ok)) => {
                    native_cells += 1;
                    if to_json(val) != *ok {
                        failures.push(format!(
                            "MISMATCH {src:?} on {name:?}: native {} python {ok}",
                            to_json(val)
                        ));
                    }
                }
                (Ok(val), None) => failures.push(format!(
                    "native gave {val:?} on {name:?} where CPython raised {} for {src:?}",
                    want.get("error").unwrap_or(&cell["error"])
                )),
                (Err(e), _) => {
                    fallback_cells += 1;
                    // Idioms must be native; names beyond the stable Unicode blocks may not be.
                    if !line.starts_with('@') && name.is_ascii() {
                        failures.push(format!("idiom not native: {src:?} on {name:?}: {e}"));
                    }
                }
            }
        }
        // The helper must reproduce CPython too, errors included.
        let via_helper = helper
            .folder_function(src, &origin)
            .and_then(|f| helper.apply(&f, &names));
        // apply() stops at the first name that raises, as OfflineIMAP does.
        let first_error = want.get("error").or_else(|| {
            want["cells"]
                .as_array()
                .unwrap()
                .iter()
                .find_map(|c| c.get("error"))
        });
        let all_ok = first_error.is_none().then(|| {
            Json::Array(
                want["cells"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["ok"].clone())
                    .collect(),
            )
        });
        match (via_helper, all_ok) {
            (Ok(vals), Some(ok)) => {
                let vals = Json::Array(vals.iter().map(to_json).collect());
                if vals != ok {
                    failures.push(format!(
                        "HELPER MISMATCH {src:?}\n  helper {vals}\n  python {ok}"
                    ));
                }
            }
            (Err(e), None) => {
                let msg = e.to_string();
                let want = first_error.and_then(Json::as_str).unwrap();
                if !msg.ends_with(want) {
                    failures.push(format!("helper error {msg:?} != python {want:?}"));
                }
            }
            (r, w) => failures.push(format!("helper {r:?} vs python {w:?} for {src:?}")),
        }
    }
    println!(
        "{} expressions x {} folder names: {native_cells} evaluations native, {fallback_cells} left to python3",
        lines.len(),
        names.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
