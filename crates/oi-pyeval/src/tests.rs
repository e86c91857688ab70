use std::path::PathBuf;

use super::*;

fn origin(option: &str) -> Origin {
    Origin::new("Repository Remote", option)
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn python3() -> bool {
    let ok = std::process::Command::new("python3")
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

fn pythonfile(dir: &tempfile::TempDir, body: &str) -> PathBuf {
    let p = dir.path().join("helpers.py");
    std::fs::write(&p, body).unwrap();
    p
}

#[test]
fn nametrans_idioms_run_natively() {
    let mut env = PyEnv::native_only();
    let f = env
        .folder_function(
            "lambda f: {'[Gmail]/All Mail': 'archive'}.get(f, re.sub(r'^INBOX\\.', '', f).replace(' ', '_'))",
            &origin("nametrans"),
        )
        .unwrap();
    let out = env
        .apply(
            &f,
            &names(&["[Gmail]/All Mail", "INBOX.Sent Items", "Gelöschte Elemente"]),
        )
        .unwrap();
    assert_eq!(
        out,
        vec![
            Value::Str("archive".into()),
            Value::Str("Sent_Items".into()),
            Value::Str("Gelöschte_Elemente".into())
        ]
    );
    assert_eq!(env.last_path(), Some(EvalPath::Native));
}

#[test]
fn folderfilter_truthiness_of_match_objects() {
    let mut env = PyEnv::native_only();
    let f = env
        .folder_function(
            "lambda f: re.search('Spam|Trash', f)",
            &origin("folderfilter"),
        )
        .unwrap();
    let out = env.apply(&f, &names(&["INBOX", "[Gmail]/Spam"])).unwrap();
    assert!(!out[0].is_truthy());
    assert!(out[1].is_truthy());
    assert_eq!(
        out[1],
        Value::Other {
            type_name: "Match".into(),
            truthy: true
        }
    );
}

#[test]
fn plain_expressions_and_multiline_values() {
    let mut env = PyEnv::native_only();
    let v = env
        .eval(
            "['INBOX.Shared',\n 'Archive', # kept for 2023\n 'Lists/rust',\n]",
            &origin("folderincludes"),
        )
        .unwrap();
    assert_eq!(
        v,
        Value::List(vec![
            Value::Str("INBOX.Shared".into()),
            Value::Str("Archive".into()),
            Value::Str("Lists/rust".into())
        ])
    );
    // CPython's eval() skips leading blanks of the string.
    assert_eq!(
        env.eval("  993", &origin("remoteporteval")).unwrap(),
        Value::Int(993)
    );
}

#[test]
fn re_is_only_in_scope_where_offlineimap_injects_it() {
    let mut env = PyEnv::native_only();
    assert!(
        env.eval("re.escape('a.b')", &origin("folderincludes"))
            .is_ok()
    );
    let e = env
        .eval("re.escape('a.b')", &origin("remotepasseval"))
        .unwrap_err();
    assert!(matches!(e, PyError::Unsupported { .. }), "{e}");
}

#[test]
fn native_only_reports_why_it_declined() {
    let mut env = PyEnv::native_only();
    let e = env
        .eval("get_password('x')", &origin("remotepasseval"))
        .unwrap_err();
    assert_eq!(e.origin(), &origin("remotepasseval"));
    assert!(
        e.to_string()
            .starts_with("[Repository Remote] remotepasseval: not evaluated natively"),
        "{e}"
    );
}

#[test]
fn sort_with_a_consistent_comparator_is_native() {
    let mut env = PyEnv::native_only();
    let src = "lambda a, b: -1 if a == 'INBOX' else (1 if b == 'INBOX' else (a > b) - (a < b))";
    // `(a > b) - (a < b)`, the usual Python 3 replacement for cmp, is bool arithmetic.
    let v = env
        .sort_folders(src, &origin("foldersort"), &names(&["b", "INBOX", "a"]))
        .unwrap();
    assert_eq!(v, names(&["INBOX", "a", "b"]));
    let src = "lambda a, b: 0 if a == b else (-1 if a < b else 1)";
    let v = env
        .sort_folders(
            src,
            &origin("foldersort"),
            &names(&["c", "INBOX", "a", "b"]),
        )
        .unwrap();
    assert_eq!(v, names(&["INBOX", "a", "b", "c"]));
    assert_eq!(env.last_path(), Some(EvalPath::Native));
}

#[test]
fn inconsistent_comparators_are_left_to_cpython() {
    let mut env = PyEnv::native_only();
    // Returns bools: `True < 0` is False, so nothing is ever "less"; stable order is kept
    // by every sort, which the check accepts. A comparator that is not a strict weak
    // order must not be sorted natively.
    let v = env
        .sort_folders(
            "lambda a, b: a < b",
            &origin("foldersort"),
            &names(&["b", "a"]),
        )
        .unwrap();
    assert_eq!(v, names(&["b", "a"]));
    let e = env
        .sort_folders(
            "lambda a, b: -1 if len(a) != len(b) else 0",
            &origin("foldersort"),
            &names(&["aa", "b", "c"]),
        )
        .unwrap_err();
    assert!(matches!(e, PyError::Unsupported { .. }), "{e}");
}

#[test]
fn python2_cmp_in_foldersort() {
    // OfflineIMAP 8 runs Python 3, where `cmp` does not exist: the NameError surfaces as
    // soon as two folders are compared, and never with a single folder.
    let mut env = PyEnv::native_only();
    let one = env
        .sort_folders(
            "lambda x, y: cmp(x, y)",
            &origin("foldersort"),
            &names(&["INBOX"]),
        )
        .unwrap();
    assert_eq!(one, names(&["INBOX"]));
    if !python3() {
        return;
    }
    let mut env = PyEnv::new(None);
    let e = env
        .sort_folders(
            "lambda x, y: cmp(x, y)",
            &origin("foldersort"),
            &names(&["b", "a"]),
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "[Repository Remote] foldersort: NameError: name 'cmp' is not defined"
    );
}

#[test]
fn foldersort_with_cmp_from_pythonfile() {
    if !python3() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = pythonfile(
        &dir,
        "def cmp(a, b):\n    return (a > b) - (a < b)\n\ndef mysort(a, b):\n    if a == 'INBOX': return -1\n    if b == 'INBOX': return 1\n    return cmp(a, b)\n",
    );
    let mut env = PyEnv::new(Some(file));
    let v = env
        .sort_folders(
            "mysort",
            &origin("foldersort"),
            &names(&["b", "INBOX", "a"]),
        )
        .unwrap();
    assert_eq!(v, names(&["INBOX", "a", "b"]));
    let v = env
        .sort_folders(
            "lambda x, y: -cmp(x, y)",
            &origin("foldersort"),
            &names(&["a", "c", "b"]),
        )
        .unwrap();
    assert_eq!(v, names(&["c", "b", "a"]));
    assert_eq!(env.last_path(), Some(EvalPath::Helper));
}

#[test]
fn pythonfile_functions_go_to_the_helper_once() {
    if !python3() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = pythonfile(
        &dir,
        "import re\ncalls = []\ndef get_pass(account):\n    print('noise on stdout must not break the protocol')\n    return 'secret-' + account\ndef trans(f):\n    calls.append(f)\n    return re.sub('^INBOX.', '', f)\ndef count():\n    return len(calls)\n",
    );
    let mut env = PyEnv::new(Some(file));
    let v = env
        .eval("get_pass('work')", &origin("remotepasseval"))
        .unwrap();
    assert_eq!(v, Value::Str("secret-work".into()));
    assert_eq!(env.last_path(), Some(EvalPath::Helper));
    let f = env.folder_function("trans", &origin("nametrans")).unwrap();
    let out = env.apply(&f, &names(&["INBOX.a", "INBOX.b", "c"])).unwrap();
    assert_eq!(
        out,
        vec![
            Value::Str("a".into()),
            Value::Str("b".into()),
            Value::Str("c".into())
        ]
    );
    // The pythonfile was loaded once: its module state survives across calls.
    assert_eq!(
        env.eval("count()", &origin("remoteusereval")).unwrap(),
        Value::Int(3)
    );
    // Builtins may be shadowed by the pythonfile, so with one loaded `len` is not native.
    assert_eq!(
        env.eval("len('abc')", &origin("remoteusereval")).unwrap(),
        Value::Int(3)
    );
    assert_eq!(env.last_path(), Some(EvalPath::Helper));
}

#[test]
fn only_declined_names_go_to_the_helper() {
    if !python3() {
        return;
    }
    let mut env = PyEnv::new(None);
    // U+0301 (combining acute) is `\w` for Rust but not for Python: that name is declined.
    let f = env
        .folder_function("lambda f: re.sub(r'\\w', '.', f)", &origin("nametrans"))
        .unwrap();
    let out = env.apply(&f, &names(&["ab", "e\u{301}x"])).unwrap();
    assert_eq!(
        out,
        vec![Value::Str("..".into()), Value::Str(".\u{301}.".into())]
    );
    assert_eq!(env.last_path(), Some(EvalPath::Helper));
}

#[test]
fn python_errors_name_section_option_and_exception() {
    if !python3() {
        return;
    }
    let mut env = PyEnv::new(None);
    let e = env
        .folder_function("lambda f: undefined_helper(f)", &origin("nametrans"))
        .unwrap();
    let err = env.apply(&e, &names(&["INBOX"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "[Repository Remote] nametrans: NameError: name 'undefined_helper' is not defined"
    );
    let err = env.eval("[1, 2", &origin("folderincludes")).unwrap_err();
    match &err {
        PyError::Python { kind, .. } => assert_eq!(kind, "SyntaxError"),
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string()
            .starts_with("[Repository Remote] folderincludes: SyntaxError: "),
        "{err}"
    );
    let store: StoreError = err.into();
    assert_eq!(store.severity(), Severity::Fatal);
}

#[test]
fn raising_and_missing_pythonfiles() {
    if !python3() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = pythonfile(&dir, "raise RuntimeError('vault locked')\n");
    let mut env = PyEnv::new(Some(file));
    let err = env.eval("x", &origin("remotepasseval")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "[general] pythonfile: RuntimeError: vault locked"
    );
    let mut env = PyEnv::new(Some(dir.path().join("nope.py")));
    let err = env.load_pythonfile().unwrap_err();
    assert!(
        err.to_string()
            .starts_with("[general] pythonfile: FileNotFoundError: "),
        "{err}"
    );
}

#[test]
fn missing_python3_is_a_clear_error() {
    let mut env = PyEnv::new(None).with_interpreter("/nonexistent/python3");
    let err = env
        .eval("get_pass()", &origin("remotepasseval"))
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, PyError::Helper { .. }), "{msg}");
    assert!(
        msg.starts_with("[Repository Remote] remotepasseval: python3 is needed"),
        "{msg}"
    );
    assert!(msg.contains("/nonexistent/python3"), "{msg}");
    // Native expressions need no interpreter at all.
    assert_eq!(
        env.eval("'x' + 'y'", &origin("remotepasseval")).unwrap(),
        Value::Str("xy".into())
    );
}

#[test]
fn helper_only_mode_matches_native() {
    if !python3() {
        return;
    }
    let src = "lambda f: re.sub('(?P<a>[^.]+)\\.(?P<b>.*)', r'\\g<b>@\\g<a>', f)";
    let ns = names(&["INBOX.Sent", "x"]);
    let mut native = PyEnv::native_only();
    let f = native.folder_function(src, &origin("nametrans")).unwrap();
    let a = native.apply(&f, &ns).unwrap();
    let mut helper = PyEnv::new(None).helper_only();
    let f = helper.folder_function(src, &origin("nametrans")).unwrap();
    let b = helper.apply(&f, &ns).unwrap();
    assert_eq!(a, b);
    assert_eq!(a[0], Value::Str("Sent@INBOX".into()));
    assert_eq!(helper.last_path(), Some(EvalPath::Helper));
}

#[test]
fn environment_can_move_to_a_blocking_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<PyEnv>();
    assert_send::<FolderFn>();
    assert_send::<PyError>();
}

/// Expressions that would loop, recurse or allocate without bound are declined (and so
/// left to CPython, which raises RecursionError/MemoryError or takes its time), never a
/// stack overflow, a hang or an out-of-memory abort in our process.
#[track_caller]
fn declined(src: &str, option: &str) {
    let mut env = PyEnv::native_only();
    let err = env.eval(src, &origin(option)).unwrap_err();
    assert!(matches!(err, PyError::Unsupported { .. }), "{src}: {err}");
}

#[test]
fn self_application_runs_out_of_depth_not_stack() {
    declined("(lambda f: f(f))(lambda f: f(f))", "folderincludes");
    // Doubling: 2^100 calls, each shallow; only the fuel bound ends it.
    declined(
        "(lambda t: t(t(t(t(t(t(t(lambda x: x)))))))(lambda g: lambda x: g(g(x)))(1)",
        "folderincludes",
    );
    let mut env = PyEnv::native_only();
    let f = env
        .folder_function(
            "lambda n: (lambda f: f(f, n))(lambda f, s: f(f, s + 'x'))",
            &origin("nametrans"),
        )
        .unwrap();
    assert!(env.apply(&f, &names(&["INBOX"])).is_err());
}

#[test]
fn values_nested_beyond_the_depth_limit_are_declined() {
    // Sixteen doublings wrap 0 in 2^16 tuples: cheap to build, deep to walk.
    let deep = format!(
        "(lambda d: {}lambda x: (x,){})(lambda g: lambda x: g(g(x)))(0)",
        "d(".repeat(16),
        ")".repeat(16)
    );
    declined(&deep, "folderincludes");
    declined(&format!("(lambda v: v == v)({deep})"), "folderincludes");
    declined(&format!("{{{deep}: 1}}"), "folderincludes");
    // The same with closures: each wrap captures the previous one.
    declined(
        &format!(
            "(lambda d: {}lambda h: lambda: h{})(lambda g: lambda x: g(g(x)))(0)",
            "d(".repeat(16),
            ")".repeat(16)
        ),
        "folderincludes",
    );
}

#[test]
fn deeply_nested_source_is_declined_without_overflowing() {
    declined(
        &format!("{}0{}", "[".repeat(200), "]".repeat(200)),
        "folderincludes",
    );
    // Parentheses alone make no nodes: only the parser's stack is at stake here.
    let parens = format!("{}0{}", "(".repeat(1000), ")".repeat(1000));
    let _ = PyEnv::native_only().eval(&parens, &origin("folderincludes"));
    declined(&format!("{}1", "-".repeat(200)), "folderincludes");
    declined(&format!("0{}", " + 0".repeat(200)), "folderincludes");
}

#[test]
fn strings_and_lists_cannot_grow_without_bound() {
    for src in [
        "'a' * 10**9",
        "'a' * 1000000000",
        "(lambda d: d(d(d(d(d(d('x' * 1000)))))))(lambda s: s + s + s + s)",
        "[[0] * 65536] * 65536",
        "(lambda d: d(d(d(d([0] * 60000)))))(lambda l: l + l)",
        "re.sub('', 'x' * 1000000, 'a' * 1000)",
        "('x' * 1000000).join(['a'] * 65536)",
        "('a' * 1000000).replace('a', 'bb')",
        "('%s%s' % ('a' * 1000000, 'b' * 1000000))",
    ] {
        declined(src, "folderincludes");
    }
    // Below the limits the same operations still work natively.
    let mut env = PyEnv::native_only();
    assert_eq!(
        env.eval(
            "len(('ab' * 1000).replace('a', 'xyz'))",
            &origin("remoteusereval")
        )
        .unwrap(),
        Value::Int(4000)
    );
}

#[test]
fn catastrophic_regexes_on_long_subjects_end() {
    declined("re.search('(a|aa)*\\\\1c', 'a' * 5000)", "folderincludes");
    declined("re.findall('(a*)*\\\\1b', 'a' * 100000)", "folderincludes");
    declined("re.sub('a', 'b', 'a' * 1000000)", "folderincludes");
}
