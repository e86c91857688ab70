//! The Python-expression reader (`oi-pyeval`, native evaluator only: python3 is never
//! started): arbitrary text is parsed as an expression and, when it parses, evaluated as a
//! plain expression with and without `re` in scope, as a folder function applied to a few
//! folder names, and as a `foldersort` comparator. Every outcome must be a value or a
//! `PyError`; a panic, a stack overflow, a hang or unbounded memory is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use oi_pyeval::{Origin, PyEnv, PyError};

const NAMES: &[&str] = &[
    "INBOX",
    "INBOX.Sent Items",
    "[Gmail]/All Mail",
    "Gelöschte Elemente",
    "Входящие",
    "",
];

fn check<T>(r: Result<T, PyError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        // The native-only environment must never try to run python3.
        Err(e @ PyError::Helper { .. }) => panic!("native-only env used the helper: {e}"),
        Err(_) => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let source = String::from_utf8_lossy(data);
    let names: Vec<String> = NAMES.iter().map(|s| s.to_string()).collect();
    let mut env = PyEnv::native_only();
    check(env.eval(&source, &Origin::new("Repository R", "folderincludes")));
    check(env.eval(&source, &Origin::new("Repository R", "remotepasseval")));
    if let Some(f) = check(env.folder_function(&source, &Origin::new("Repository R", "nametrans")))
    {
        if let Some(values) = check(env.apply(&f, &names)) {
            assert_eq!(values.len(), names.len());
        }
    }
    if let Some(order) =
        check(env.sort_order(&source, &Origin::new("Repository R", "foldersort"), &names))
    {
        let mut seen = order.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..names.len()).collect::<Vec<_>>(), "not a permutation");
    }
});
