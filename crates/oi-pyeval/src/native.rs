//! The native evaluator: a small, exact subset of Python 3 expression semantics.
//!
//! Every operation either gives the value CPython would give or declines with
//! [`Unsupported`]; Python exceptions are never imitated here (the helper reports them with
//! CPython's own wording).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

use ruff_python_ast::{self as ast, BoolOp, CmpOp, Expr, Number, Operator, UnaryOp};

use crate::Value;
use crate::pyre::{self, MatchData, PyRegex, Unsupported};

type R<T> = Result<T, Unsupported>;

fn no<T>(why: impl Into<String>) -> R<T> {
    Err(why.into())
}

/// Work one evaluation may do before it declines (one unit per expression node visited,
/// per element compared or converted, more per regex run): hostile expressions such as
/// `(lambda f: f(f))(lambda f: f(f))` or doubling lambdas must end, not hang.
const FUEL: u64 = 1_000_000;
/// Nesting of expressions being evaluated, and of values walked, beyond which the native
/// evaluator declines instead of risking the stack (CPython itself stops at 1000 frames).
const MAX_DEPTH: u32 = 100;
/// Largest str the native evaluator builds (bytes), and longest list or tuple.
const MAX_STR: usize = 1 << 20;
const MAX_ITEMS: usize = 1 << 16;

thread_local! {
    /// Fuel left to the evaluation running on this thread (the free functions below spend
    /// it too, so it is not a field of [`Ctx`]).
    static FUEL_LEFT: Cell<u64> = const { Cell::new(FUEL) };
}

/// Spends `units` of the current evaluation's fuel.
pub(crate) fn spend(units: u64) -> R<()> {
    FUEL_LEFT.with(|f| {
        let left = f.get();
        if left < units {
            f.set(0);
            no("evaluation budget exhausted")
        } else {
            f.set(left - units);
            Ok(())
        }
    })
}

/// Gives the next evaluation (a new name to apply a folder function to) a full budget.
pub fn refuel() {
    FUEL_LEFT.with(|f| f.set(FUEL));
}

/// How deeply values may nest lists, tuples, dicts and closures. Kept at construction, so
/// that no walk over a value, and no drop of one, can recurse deeper than this: doubling
/// lambdas build 2^n levels in n calls.
const MAX_NESTING: u32 = 50;

/// The nesting of a value about to be put inside a new container or closure.
fn nesting(o: &Obj) -> R<u32> {
    spend(1)?;
    let deepest = |items: &mut dyn Iterator<Item = &Obj>| -> R<u32> {
        let mut d = 0;
        for x in items {
            d = d.max(nesting(x)?);
        }
        Ok(d + 1)
    };
    match o {
        Obj::List(v) | Obj::Tuple(v) => deepest(&mut v.iter()),
        Obj::Dict(d) => deepest(&mut d.iter().flat_map(|(k, v)| [k, v])),
        Obj::Lambda(l) => deepest(&mut l.scope.iter().map(|(_, v)| v)),
        _ => Ok(0),
    }
}

/// Declines when a container or closure holding `items` would nest too deeply.
fn nest_ok<'x, 'a: 'x>(items: impl IntoIterator<Item = &'x Obj<'a>>) -> R<()> {
    for x in items {
        if nesting(x)? >= MAX_NESTING {
            return no("values nested too deeply");
        }
    }
    Ok(())
}

fn str_fits(len: usize) -> R<()> {
    if len > MAX_STR {
        return no("huge string");
    }
    Ok(())
}

fn depth_ok(depth: u32) -> R<()> {
    if depth > MAX_DEPTH {
        return no("nesting too deep");
    }
    Ok(())
}

/// A runtime object of the native evaluator.
#[derive(Clone, Debug)]
pub enum Obj<'a> {
    None,
    Bool(bool),
    Int(i64),
    /// A `re.RegexFlag`: an int whose `str()` is `re.IGNORECASE`, so it is kept apart.
    Flag(i64),
    Str(Rc<str>),
    List(Rc<Vec<Obj<'a>>>),
    Tuple(Rc<Vec<Obj<'a>>>),
    Dict(Rc<Vec<(Obj<'a>, Obj<'a>)>>),
    Lambda(Rc<Lambda<'a>>),
    ReModule,
    Pattern(Rc<PyRegex>),
    Match(Rc<MatchData>),
    Builtin(&'static str),
}

/// A lambda closed over its defining scope.
#[derive(Debug)]
pub struct Lambda<'a> {
    params: Vec<String>,
    body: &'a Expr,
    scope: Scope<'a>,
}

type Scope<'a> = Rc<Vec<(String, Obj<'a>)>>;

/// Names visible at the top level of the expression.
#[derive(Debug, Clone, Copy)]
pub struct Globals {
    /// OfflineIMAP passes `{'re': re}` for this option.
    pub re: bool,
    /// Builtins like `len` are only safe when no pythonfile could shadow them.
    pub builtins: bool,
}

/// Evaluation context: globals plus a cache of compiled patterns.
pub struct Ctx {
    globals: Globals,
    cache: RefCell<HashMap<(String, i64), Rc<PyRegex>>>,
    /// Current nesting of [`Ctx::ev`] (lambda calls included).
    depth: Cell<u32>,
}

const BUILTINS: &[&str] = &["len", "str", "bool", "int"];

impl Ctx {
    /// A context with the given top-level names.
    pub fn new(globals: Globals) -> Ctx {
        refuel();
        Ctx {
            globals,
            cache: RefCell::new(HashMap::new()),
            depth: Cell::new(0),
        }
    }

    fn regex(&self, pattern: &str, flags: i64) -> R<Rc<PyRegex>> {
        let key = (pattern.to_string(), flags);
        if let Some(r) = self.cache.borrow().get(&key) {
            return Ok(r.clone());
        }
        let r = Rc::new(PyRegex::compile(pattern, flags)?);
        self.cache.borrow_mut().insert(key, r.clone());
        Ok(r)
    }

    /// Evaluates an expression at top level.
    pub fn eval<'a>(&self, e: &'a Expr) -> R<Obj<'a>> {
        self.ev(e, &Rc::new(Vec::new()))
    }

    fn lookup<'a>(&self, name: &str, scope: &Scope<'a>) -> R<Obj<'a>> {
        if let Some((_, v)) = scope.iter().rev().find(|(n, _)| n == name) {
            return Ok(v.clone());
        }
        if name == "re" && self.globals.re {
            return Ok(Obj::ReModule);
        }
        if let Some(b) = BUILTINS.iter().find(|b| **b == name)
            && self.globals.builtins
        {
            return Ok(Obj::Builtin(b));
        }
        no(format!("name {name} is not known natively"))
    }

    fn ev<'a>(&self, e: &'a Expr, scope: &Scope<'a>) -> R<Obj<'a>> {
        spend(1)?;
        let depth = self.depth.get() + 1;
        depth_ok(depth)?;
        self.depth.set(depth);
        let r = self.ev_node(e, scope);
        self.depth.set(depth - 1);
        r
    }

    fn ev_node<'a>(&self, e: &'a Expr, scope: &Scope<'a>) -> R<Obj<'a>> {
        match e {
            Expr::StringLiteral(s) => Ok(Obj::Str(Rc::from(s.value.to_str()))),
            Expr::NumberLiteral(n) => match &n.value {
                Number::Int(i) => i.as_i64().map(Obj::Int).ok_or_else(|| "big int".into()),
                _ => no("float/complex literal"),
            },
            Expr::BooleanLiteral(b) => Ok(Obj::Bool(b.value)),
            Expr::NoneLiteral(_) => Ok(Obj::None),
            Expr::Name(n) => self.lookup(n.id.as_str(), scope),
            Expr::List(l) => {
                let items = self.ev_all(&l.elts, scope)?;
                nest_ok(&items)?;
                Ok(Obj::List(Rc::new(items)))
            }
            Expr::Tuple(t) => {
                let items = self.ev_all(&t.elts, scope)?;
                nest_ok(&items)?;
                Ok(Obj::Tuple(Rc::new(items)))
            }
            Expr::Dict(d) => {
                let mut items: Vec<(Obj<'a>, Obj<'a>)> = Vec::new();
                for it in &d.items {
                    let Some(k) = &it.key else {
                        return no("** in dict");
                    };
                    let k = self.ev(k, scope)?;
                    hashable(&k)?;
                    let v = self.ev(&it.value, scope)?;
                    nest_ok([&k, &v])?;
                    let mut found = false;
                    for slot in items.iter_mut() {
                        if py_eq(&slot.0, &k)? {
                            slot.1 = v.clone();
                            found = true;
                            break;
                        }
                    }
                    if !found {
                        items.push((k, v));
                    }
                }
                Ok(Obj::Dict(Rc::new(items)))
            }
            Expr::Lambda(l) => {
                let mut params = Vec::new();
                if let Some(p) = &l.parameters {
                    if !p.posonlyargs.is_empty()
                        || p.vararg.is_some()
                        || !p.kwonlyargs.is_empty()
                        || p.kwarg.is_some()
                    {
                        return no("complex lambda parameters");
                    }
                    for a in &p.args {
                        if a.default.is_some() {
                            return no("lambda defaults");
                        }
                        params.push(a.parameter.name.as_str().to_string());
                    }
                }
                nest_ok(scope.iter().map(|(_, v)| v))?;
                Ok(Obj::Lambda(Rc::new(Lambda {
                    params,
                    body: &l.body,
                    scope: scope.clone(),
                })))
            }
            Expr::If(i) => {
                if truthy(&self.ev(&i.test, scope)?)? {
                    self.ev(&i.body, scope)
                } else {
                    self.ev(&i.orelse, scope)
                }
            }
            Expr::BoolOp(b) => {
                let mut last = Obj::None;
                for (n, v) in b.values.iter().enumerate() {
                    last = self.ev(v, scope)?;
                    let t = truthy(&last)?;
                    let stop = match b.op {
                        BoolOp::And => !t,
                        BoolOp::Or => t,
                    };
                    if stop || n + 1 == b.values.len() {
                        return Ok(last);
                    }
                }
                Ok(last)
            }
            Expr::UnaryOp(u) => {
                let v = self.ev(&u.operand, scope)?;
                match (u.op, &v) {
                    (UnaryOp::Not, _) => Ok(Obj::Bool(!truthy(&v)?)),
                    (UnaryOp::USub, _) => {
                        Ok(Obj::Int(as_int(&v)?.checked_neg().ok_or("overflow")?))
                    }
                    _ => no("unary operator"),
                }
            }
            Expr::BinOp(b) => {
                let l = self.ev(&b.left, scope)?;
                let r = self.ev(&b.right, scope)?;
                binop(b.op, &l, &r)
            }
            Expr::Compare(c) => {
                let mut left = self.ev(&c.left, scope)?;
                for (op, right) in c.ops.iter().zip(c.comparators.iter()) {
                    let right = self.ev(right, scope)?;
                    if !compare(*op, &left, &right)? {
                        return Ok(Obj::Bool(false));
                    }
                    left = right;
                }
                Ok(Obj::Bool(true))
            }
            Expr::Subscript(s) => {
                let v = self.ev(&s.value, scope)?;
                if let Expr::Slice(sl) = &*s.slice {
                    let bound = |x: &'a Option<Box<Expr>>| -> R<Option<i64>> {
                        match x {
                            None => Ok(None),
                            Some(x) => match self.ev(x, scope)? {
                                Obj::None => Ok(None),
                                o => as_int(&o).map(Some),
                            },
                        }
                    };
                    let (lo, hi, st) = (bound(&sl.lower)?, bound(&sl.upper)?, bound(&sl.step)?);
                    return slice(&v, lo, hi, st);
                }
                let k = self.ev(&s.slice, scope)?;
                index(&v, &k)
            }
            Expr::Attribute(a) => {
                let v = self.ev(&a.value, scope)?;
                match (&v, a.attr.as_str()) {
                    (Obj::ReModule, name) => re_attr(name),
                    _ => no("attribute access"),
                }
            }
            Expr::Call(c) => self.call_expr(c, scope),
            _ => no("expression kind"),
        }
    }

    fn ev_all<'a>(&self, es: &'a [Expr], scope: &Scope<'a>) -> R<Vec<Obj<'a>>> {
        es.iter()
            .map(|e| {
                if matches!(e, Expr::Starred(_)) {
                    no("starred")
                } else {
                    self.ev(e, scope)
                }
            })
            .collect()
    }

    fn call_expr<'a>(&self, c: &'a ast::ExprCall, scope: &Scope<'a>) -> R<Obj<'a>> {
        let args = self.ev_all(&c.arguments.args, scope)?;
        let mut kwargs = Vec::new();
        for k in c.arguments.keywords.iter() {
            let Some(name) = &k.arg else {
                return no("**kwargs");
            };
            kwargs.push((name.as_str(), self.ev(&k.value, scope)?));
        }
        if let Expr::Attribute(a) = &*c.func {
            let recv = self.ev(&a.value, scope)?;
            return self.method(&recv, a.attr.as_str(), args, kwargs);
        }
        let f = self.ev(&c.func, scope)?;
        if !kwargs.is_empty() {
            return no("keyword arguments to a function");
        }
        self.call(&f, args)
    }

    /// Calls a callable object with positional arguments.
    pub fn call<'a>(&self, f: &Obj<'a>, args: Vec<Obj<'a>>) -> R<Obj<'a>> {
        match f {
            Obj::Lambda(l) => {
                if l.params.len() != args.len() {
                    return no("wrong argument count");
                }
                let mut s: Vec<(String, Obj<'a>)> = (*l.scope).clone();
                s.extend(l.params.iter().cloned().zip(args));
                self.ev(l.body, &Rc::new(s))
            }
            Obj::Builtin(b) => builtin(b, &args),
            _ => no("calling a non-function"),
        }
    }

    fn method<'a>(
        &self,
        recv: &Obj<'a>,
        name: &str,
        args: Vec<Obj<'a>>,
        kw: Vec<(&str, Obj<'a>)>,
    ) -> R<Obj<'a>> {
        match recv {
            Obj::Str(s) => {
                if !kw.is_empty() && name != "split" && name != "rsplit" {
                    return no("keywords to a str method");
                }
                str_method(s, name, &args, &kw)
            }
            Obj::Dict(d) => {
                if !kw.is_empty() {
                    return no("keywords to dict method");
                }
                match (name, args.as_slice()) {
                    ("get", [k]) | ("get", [k, _]) => {
                        hashable(k)?;
                        for (dk, dv) in d.iter() {
                            if py_eq(dk, k)? {
                                return Ok(dv.clone());
                            }
                        }
                        Ok(args.get(1).cloned().unwrap_or(Obj::None))
                    }
                    _ => no("dict method"),
                }
            }
            Obj::ReModule => self.re_function(name, args, kw),
            Obj::Pattern(p) => self.pattern_method(p.clone(), name, args, kw),
            Obj::Match(m) => {
                if !kw.is_empty() {
                    return no("keywords to match method");
                }
                match_method(m, name, &args)
            }
            _ => no(format!("method {name}")),
        }
    }

    fn re_function<'a>(
        &self,
        name: &str,
        mut args: Vec<Obj<'a>>,
        kw: Vec<(&str, Obj<'a>)>,
    ) -> R<Obj<'a>> {
        // Signatures of Python 3.11's re module.
        let params: &[&str] = match name {
            "sub" | "subn" => &["pattern", "repl", "string", "count", "flags"],
            "match" | "search" | "fullmatch" | "findall" => &["pattern", "string", "flags"],
            "split" => &["pattern", "string", "maxsplit", "flags"],
            "compile" => &["pattern", "flags"],
            "escape" => &["pattern"],
            _ => return no(format!("re.{name}")),
        };
        bind(params, &mut args, kw)?;
        if name == "escape" {
            return match &args[0] {
                Obj::Str(s) => Ok(Obj::Str(Rc::from(pyre::escape(s)))),
                _ => no("re.escape of non-str"),
            };
        }
        let flags = match args.last() {
            Some(Obj::None) | None => 0,
            Some(f) => as_int(f)?,
        };
        args.pop();
        let pat = match &args[0] {
            Obj::Str(p) => self.regex(p, flags)?,
            Obj::Pattern(p) if flags == 0 => p.clone(),
            _ => return no("pattern type"),
        };
        if name == "compile" {
            return Ok(Obj::Pattern(pat));
        }
        args.remove(0);
        let kw_none = Vec::new();
        self.pattern_method(pat, name, args, kw_none)
    }

    fn pattern_method<'a>(
        &self,
        p: Rc<PyRegex>,
        name: &str,
        mut args: Vec<Obj<'a>>,
        kw: Vec<(&str, Obj<'a>)>,
    ) -> R<Obj<'a>> {
        let params: &[&str] = match name {
            "sub" | "subn" => &["repl", "string", "count"],
            "match" | "search" | "fullmatch" | "findall" => &["string"],
            "split" => &["string", "maxsplit"],
            _ => return no(format!("Pattern.{name}")),
        };
        bind(params, &mut args, kw)?;
        let si = if name == "sub" || name == "subn" {
            1
        } else {
            0
        };
        let Obj::Str(s) = &args[si] else {
            return no("regex subject is not a str");
        };
        let s = s.clone();
        let wrap =
            |m: Option<MatchData>| Ok(m.map(|m| Obj::Match(Rc::new(m))).unwrap_or(Obj::None));
        match name {
            "search" => wrap(p.search(&s)?),
            "match" => wrap(p.match_start(&s)?),
            "fullmatch" => wrap(p.fullmatch(&s)?),
            "findall" => {
                let ms = p.iter(&s, 0)?;
                let item = |m: &MatchData, i: usize| Obj::Str(Rc::from(m.group(i).unwrap_or("")));
                Ok(Obj::List(Rc::new(
                    ms.iter()
                        .map(|m| match p.groups {
                            0 => item(m, 0),
                            1 => item(m, 1),
                            n => Obj::Tuple(Rc::new((1..=n).map(|i| item(m, i)).collect())),
                        })
                        .collect(),
                )))
            }
            "split" => {
                let max = match &args[1] {
                    Obj::None => 0,
                    o => as_int(o)?,
                };
                if max < 0 {
                    return Ok(Obj::List(Rc::new(vec![Obj::Str(s)])));
                }
                let ms = p.iter(&s, max as usize)?;
                let mut out = Vec::new();
                let mut last = 0;
                for m in &ms {
                    let (a, b) = m.spans[0].ok_or("no span")?;
                    out.push(Obj::Str(Rc::from(s.get(last..a).ok_or("span")?)));
                    for g in 1..=p.groups {
                        out.push(
                            m.group(g)
                                .map(|x| Obj::Str(Rc::from(x)))
                                .unwrap_or(Obj::None),
                        );
                    }
                    last = b;
                }
                out.push(Obj::Str(Rc::from(s.get(last..).ok_or("span")?)));
                Ok(Obj::List(Rc::new(out)))
            }
            _ => {
                let count = match &args[2] {
                    Obj::None => 0,
                    o => as_int(o)?,
                };
                let ms = if count < 0 {
                    Vec::new()
                } else {
                    p.iter(&s, count as usize)?
                };
                let template = match &args[0] {
                    Obj::Str(t) => Some(pyre::parse_template(t, &p)?),
                    Obj::Lambda(_) => None,
                    _ => return no("replacement type"),
                };
                let mut out = String::new();
                let mut last = 0;
                for m in &ms {
                    str_fits(out.len())?;
                    let (a, b) = m.spans[0].ok_or("no span")?;
                    out.push_str(s.get(last..a).ok_or("span")?);
                    match &template {
                        Some(t) => out.push_str(&pyre::expand(t, m)),
                        None => match self.call(&args[0], vec![Obj::Match(Rc::new(m.clone()))])? {
                            Obj::Str(r) => out.push_str(&r),
                            _ => return no("replacement function returned a non-str"),
                        },
                    }
                    last = b;
                }
                out.push_str(s.get(last..).ok_or("span")?);
                str_fits(out.len())?;
                let out = Obj::Str(Rc::from(out));
                if name == "subn" {
                    Ok(Obj::Tuple(Rc::new(vec![out, Obj::Int(ms.len() as i64)])))
                } else {
                    Ok(out)
                }
            }
        }
    }
}

/// Puts keyword arguments in their positional slots; optional trailing slots become None.
fn bind<'a>(params: &[&str], args: &mut Vec<Obj<'a>>, kw: Vec<(&str, Obj<'a>)>) -> R<()> {
    if args.len() > params.len() {
        return no("too many arguments");
    }
    let mut slots: Vec<Option<Obj<'a>>> = args.drain(..).map(Some).collect();
    slots.resize(params.len(), None);
    for (k, v) in kw {
        let Some(i) = params.iter().position(|p| *p == k) else {
            return no("unknown keyword");
        };
        if slots[i].is_some() {
            return no("duplicate argument");
        }
        slots[i] = Some(v);
    }
    // Required: every slot of the leading mandatory parameters (all but count/flags/maxsplit).
    for (i, s) in slots.into_iter().enumerate() {
        match s {
            Some(v) => args.push(v),
            None if matches!(params[i], "count" | "flags" | "maxsplit") => args.push(Obj::None),
            None => return no("missing argument"),
        }
    }
    Ok(())
}

fn re_attr(name: &str) -> R<Obj<'static>> {
    Ok(Obj::Flag(match name {
        "I" | "IGNORECASE" => pyre::I,
        "M" | "MULTILINE" => pyre::M,
        "S" | "DOTALL" => pyre::S,
        "X" | "VERBOSE" => pyre::X,
        "U" | "UNICODE" => pyre::U,
        _ => return no(format!("re.{name}")),
    }))
}

fn match_method<'a>(m: &MatchData, name: &str, args: &[Obj<'a>]) -> R<Obj<'a>> {
    let idx = |o: &Obj<'a>| -> R<usize> {
        match o {
            Obj::Int(i) if *i >= 0 && (*i as usize) < m.spans.len() => Ok(*i as usize),
            Obj::Str(n) => m.index_of(n).ok_or_else(|| "no such group".into()),
            _ => no("bad group index"),
        }
    };
    let grp = |i: usize| {
        m.group(i)
            .map(|s| Obj::Str(Rc::from(s)))
            .unwrap_or(Obj::None)
    };
    match (name, args) {
        ("group", []) => Ok(grp(0)),
        ("group", [a]) => Ok(grp(idx(a)?)),
        ("group", many) => Ok(Obj::Tuple(Rc::new(
            many.iter().map(|a| idx(a).map(grp)).collect::<R<_>>()?,
        ))),
        ("groups", []) => Ok(Obj::Tuple(Rc::new((1..m.spans.len()).map(grp).collect()))),
        ("start", []) | ("end", []) => {
            let (a, b) = m.spans[0].ok_or("no span")?;
            Ok(Obj::Int(
                m.char_pos(if name == "start" { a } else { b }) as i64
            ))
        }
        _ => no(format!("Match.{name}")),
    }
}

fn hashable(o: &Obj) -> R<()> {
    hashable_at(o, 0)
}

fn hashable_at(o: &Obj, depth: u32) -> R<()> {
    spend(1)?;
    depth_ok(depth)?;
    match o {
        Obj::None | Obj::Bool(_) | Obj::Int(_) | Obj::Flag(_) | Obj::Str(_) => Ok(()),
        Obj::Tuple(t) => t.iter().try_for_each(|x| hashable_at(x, depth + 1)),
        _ => no("unhashable or identity-hashed key"),
    }
}

fn as_int(o: &Obj) -> R<i64> {
    match o {
        Obj::Int(i) | Obj::Flag(i) => Ok(*i),
        Obj::Bool(b) => Ok(*b as i64),
        _ => no("not an int"),
    }
}

/// Python truthiness.
pub fn truthy(o: &Obj) -> R<bool> {
    Ok(match o {
        Obj::None => false,
        Obj::Bool(b) => *b,
        Obj::Int(i) | Obj::Flag(i) => *i != 0,
        Obj::Str(s) => !s.is_empty(),
        Obj::List(l) | Obj::Tuple(l) => !l.is_empty(),
        Obj::Dict(d) => !d.is_empty(),
        _ => true,
    })
}

fn py_eq(a: &Obj, b: &Obj) -> R<bool> {
    py_eq_at(a, b, 0)
}

fn py_eq_at(a: &Obj, b: &Obj, depth: u32) -> R<bool> {
    spend(1)?;
    depth_ok(depth)?;
    Ok(match (a, b) {
        (Obj::None, Obj::None) => true,
        (Obj::Str(x), Obj::Str(y)) => {
            spend((x.len().min(y.len()) / 64) as u64)?;
            x == y
        }
        (Obj::Int(_) | Obj::Bool(_) | Obj::Flag(_), Obj::Int(_) | Obj::Bool(_) | Obj::Flag(_)) => {
            as_int(a)? == as_int(b)?
        }
        (Obj::List(x), Obj::List(y)) | (Obj::Tuple(x), Obj::Tuple(y)) => {
            if x.len() != y.len() {
                return Ok(false);
            }
            for (p, q) in x.iter().zip(y.iter()) {
                if !py_eq_at(p, q, depth + 1)? {
                    return Ok(false);
                }
            }
            true
        }
        (
            Obj::Lambda(_)
            | Obj::Match(_)
            | Obj::Pattern(_)
            | Obj::ReModule
            | Obj::Builtin(_)
            | Obj::Dict(_),
            _,
        )
        | (
            _,
            Obj::Lambda(_)
            | Obj::Match(_)
            | Obj::Pattern(_)
            | Obj::ReModule
            | Obj::Builtin(_)
            | Obj::Dict(_),
        ) => {
            return no("equality of objects");
        }
        _ => false,
    })
}

fn compare(op: CmpOp, a: &Obj, b: &Obj) -> R<bool> {
    let ord = |a: &Obj, b: &Obj| -> R<std::cmp::Ordering> {
        match (a, b) {
            (Obj::Str(x), Obj::Str(y)) => {
                spend((x.len().min(y.len()) / 64) as u64)?;
                Ok(x.cmp(y))
            }
            (
                Obj::Int(_) | Obj::Bool(_) | Obj::Flag(_),
                Obj::Int(_) | Obj::Bool(_) | Obj::Flag(_),
            ) => Ok(as_int(a)?.cmp(&as_int(b)?)),
            _ => no("ordering of these types"),
        }
    };
    Ok(match op {
        CmpOp::Eq => py_eq(a, b)?,
        CmpOp::NotEq => !py_eq(a, b)?,
        CmpOp::Lt => ord(a, b)?.is_lt(),
        CmpOp::LtE => ord(a, b)?.is_le(),
        CmpOp::Gt => ord(a, b)?.is_gt(),
        CmpOp::GtE => ord(a, b)?.is_ge(),
        CmpOp::In => contains(b, a)?,
        CmpOp::NotIn => !contains(b, a)?,
        CmpOp::Is | CmpOp::IsNot => {
            let same = match (a, b) {
                (Obj::None, Obj::None) => true,
                (Obj::None, _) | (_, Obj::None) => false,
                (Obj::Bool(x), Obj::Bool(y)) => x == y,
                _ => return no("identity comparison"),
            };
            same == (op == CmpOp::Is)
        }
    })
}

fn contains(container: &Obj, item: &Obj) -> R<bool> {
    match (container, item) {
        (Obj::Str(h), Obj::Str(n)) => {
            spend(((h.len() + n.len()) / 64) as u64)?;
            Ok(h.contains(&**n))
        }
        (Obj::Str(_), _) => no("'in <string>' with a non-str"),
        (Obj::List(l) | Obj::Tuple(l), _) => {
            for x in l.iter() {
                if py_eq(x, item)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        (Obj::Dict(d), _) => {
            hashable(item)?;
            for (k, _) in d.iter() {
                if py_eq(k, item)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        _ => no("'in' on this type"),
    }
}

fn binop<'a>(op: Operator, l: &Obj<'a>, r: &Obj<'a>) -> R<Obj<'a>> {
    let ints = || -> R<(i64, i64)> { Ok((as_int(l)?, as_int(r)?)) };
    let isnum = |o: &Obj| matches!(o, Obj::Int(_) | Obj::Bool(_) | Obj::Flag(_));
    match op {
        Operator::Add => match (l, r) {
            (Obj::Str(a), Obj::Str(b)) => {
                str_fits(a.len() + b.len())?;
                spend(((a.len() + b.len()) / 64) as u64)?;
                Ok(Obj::Str(Rc::from(format!("{a}{b}"))))
            }
            (Obj::List(a), Obj::List(b)) | (Obj::Tuple(a), Obj::Tuple(b)) => {
                if a.len() + b.len() > MAX_ITEMS {
                    return no("huge list");
                }
                spend((a.len() + b.len()) as u64)?;
                let items = Rc::new(a.iter().chain(b.iter()).cloned().collect());
                Ok(if matches!(l, Obj::List(_)) {
                    Obj::List(items)
                } else {
                    Obj::Tuple(items)
                })
            }
            _ if isnum(l) && isnum(r) => {
                let (a, b) = ints()?;
                Ok(Obj::Int(a.checked_add(b).ok_or("overflow")?))
            }
            _ => no("+ on these types"),
        },
        Operator::Sub if isnum(l) && isnum(r) => {
            let (a, b) = ints()?;
            Ok(Obj::Int(a.checked_sub(b).ok_or("overflow")?))
        }
        Operator::Mult => match (l, r) {
            (Obj::Str(s), n) | (n, Obj::Str(s)) if isnum(n) => {
                let n = as_int(n)?.max(0) as usize;
                str_fits(s.len().saturating_mul(n))?;
                spend((s.len() * n / 64) as u64)?;
                Ok(Obj::Str(Rc::from(s.repeat(n))))
            }
            (Obj::List(v), n) | (n, Obj::List(v)) if isnum(n) => {
                let n = as_int(n)?.max(0) as usize;
                if v.len().saturating_mul(n) > MAX_ITEMS {
                    return no("huge list");
                }
                spend((v.len() * n) as u64)?;
                Ok(Obj::List(Rc::new(
                    v.iter().cloned().cycle().take(v.len() * n).collect(),
                )))
            }
            _ if isnum(l) && isnum(r) => {
                let (a, b) = ints()?;
                Ok(Obj::Int(a.checked_mul(b).ok_or("overflow")?))
            }
            _ => no("* on these types"),
        },
        Operator::Mod => match l {
            Obj::Str(f) => percent_format(f, r),
            _ if isnum(l) && isnum(r) => {
                let (a, b) = ints()?;
                if b == 0 {
                    return no("modulo by zero");
                }
                let mut m = a.checked_rem(b).ok_or("overflow")?;
                if m != 0 && ((m < 0) != (b < 0)) {
                    m += b;
                }
                Ok(Obj::Int(m))
            }
            _ => no("% on these types"),
        },
        Operator::BitOr
            if isnum(l) && isnum(r) && !matches!((l, r), (Obj::Bool(_), Obj::Bool(_))) =>
        {
            let (a, b) = ints()?;
            if matches!(l, Obj::Flag(_)) || matches!(r, Obj::Flag(_)) {
                Ok(Obj::Flag(a | b))
            } else {
                Ok(Obj::Int(a | b))
            }
        }
        _ => no("binary operator"),
    }
}

/// `str()` of simple values.
fn to_str(o: &Obj) -> R<String> {
    Ok(match o {
        Obj::Str(s) => s.to_string(),
        Obj::Int(i) => i.to_string(),
        Obj::Bool(true) => "True".into(),
        Obj::Bool(false) => "False".into(),
        Obj::None => "None".into(),
        _ => return no("str() of this type"),
    })
}

fn percent_format<'a>(f: &str, r: &Obj<'a>) -> R<Obj<'a>> {
    let args: Vec<Obj> = match r {
        Obj::Tuple(t) => t.to_vec(),
        Obj::Dict(_) | Obj::List(_) => return no("% with a mapping or list"),
        o => vec![o.clone()],
    };
    let mut it = args.iter();
    let mut out = String::new();
    let mut chars = f.chars();
    while let Some(c) = chars.next() {
        str_fits(out.len())?;
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('s') => out.push_str(&to_str(it.next().ok_or("not enough arguments")?)?),
            Some('d') | Some('i') => match it.next() {
                Some(o @ (Obj::Int(_) | Obj::Bool(_) | Obj::Flag(_))) => {
                    out.push_str(&as_int(o)?.to_string())
                }
                _ => return no("%d argument"),
            },
            _ => return no("% conversion"),
        }
    }
    if it.next().is_some() {
        return no("not all arguments converted");
    }
    str_fits(out.len())?;
    Ok(Obj::Str(Rc::from(out)))
}

fn norm_index(i: i64, len: usize) -> R<usize> {
    let len = len as i64;
    let j = if i < 0 { i + len } else { i };
    if j < 0 || j >= len {
        return no("index out of range");
    }
    Ok(j as usize)
}

fn index<'a>(v: &Obj<'a>, k: &Obj<'a>) -> R<Obj<'a>> {
    match v {
        Obj::Str(s) => {
            spend((s.len() / 64) as u64)?;
            let i = as_int(k)?;
            let chars: Vec<char> = s.chars().collect();
            let j = norm_index(i, chars.len())?;
            Ok(Obj::Str(Rc::from(chars[j].to_string())))
        }
        Obj::List(l) | Obj::Tuple(l) => Ok(l[norm_index(as_int(k)?, l.len())?].clone()),
        Obj::Dict(d) => {
            hashable(k)?;
            for (dk, dv) in d.iter() {
                if py_eq(dk, k)? {
                    return Ok(dv.clone());
                }
            }
            no("KeyError")
        }
        Obj::Match(m) => match_method(m, "group", std::slice::from_ref(k)),
        _ => no("subscript of this type"),
    }
}

/// Indices a Python slice selects (PySlice_AdjustIndices).
fn slice_indices(len: usize, lo: Option<i64>, hi: Option<i64>, step: Option<i64>) -> R<Vec<usize>> {
    let len = len as i64;
    let step = step.unwrap_or(1);
    if step == 0 {
        return no("slice step 0");
    }
    let adjust = |v: Option<i64>, default: i64| -> i64 {
        match v {
            None => default,
            Some(v) => {
                if v < 0 {
                    let v = v + len;
                    if v < 0 {
                        if step < 0 { -1 } else { 0 }
                    } else {
                        v
                    }
                } else if v >= len {
                    if step < 0 { len - 1 } else { len }
                } else {
                    v
                }
            }
        }
    };
    let (start, stop) = if step > 0 {
        (adjust(lo, 0), adjust(hi, len))
    } else {
        (adjust(lo, len - 1), adjust(hi, -1))
    };
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0 && i < stop) || (step < 0 && i > stop) {
        out.push(i as usize);
        i += step;
    }
    Ok(out)
}

fn slice<'a>(v: &Obj<'a>, lo: Option<i64>, hi: Option<i64>, st: Option<i64>) -> R<Obj<'a>> {
    match v {
        Obj::Str(s) => {
            spend((s.len() / 64) as u64)?;
            let chars: Vec<char> = s.chars().collect();
            let idx = slice_indices(chars.len(), lo, hi, st)?;
            Ok(Obj::Str(Rc::from(
                idx.iter().map(|i| chars[*i]).collect::<String>(),
            )))
        }
        Obj::List(l) | Obj::Tuple(l) => {
            spend(l.len() as u64)?;
            let idx = slice_indices(l.len(), lo, hi, st)?;
            let items = Rc::new(idx.iter().map(|i| l[*i].clone()).collect());
            Ok(if matches!(v, Obj::List(_)) {
                Obj::List(items)
            } else {
                Obj::Tuple(items)
            })
        }
        _ => no("slice of this type"),
    }
}

fn builtin<'a>(name: &str, args: &[Obj<'a>]) -> R<Obj<'a>> {
    match (name, args) {
        ("len", [Obj::Str(s)]) => Ok(Obj::Int(s.chars().count() as i64)),
        ("len", [Obj::List(l) | Obj::Tuple(l)]) => Ok(Obj::Int(l.len() as i64)),
        ("len", [Obj::Dict(d)]) => Ok(Obj::Int(d.len() as i64)),
        ("bool", [o]) => Ok(Obj::Bool(truthy(o)?)),
        ("bool", []) => Ok(Obj::Bool(false)),
        ("str", [o]) => Ok(Obj::Str(Rc::from(to_str(o)?))),
        ("str", []) => Ok(Obj::Str(Rc::from(""))),
        ("int", [o @ (Obj::Int(_) | Obj::Bool(_))]) => Ok(Obj::Int(as_int(o)?)),
        ("int", [Obj::Str(s)]) => {
            let t = s.strip_prefix(['-', '+']).unwrap_or(s);
            if t.is_empty() || t.len() > 18 || !t.bytes().all(|b| b.is_ascii_digit()) {
                return no("int() of this string");
            }
            s.parse::<i64>()
                .map(Obj::Int)
                .map_err(|_| "int parse".into())
        }
        _ => no(format!("builtin {name} with these arguments")),
    }
}

/// Python's str.isspace (adds the ASCII separators 0x1c-0x1f to Unicode White_Space).
fn py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Case mapping is only trusted where Unicode has not changed for many versions, so Python
/// 3.x and Rust agree; title-casing also skips the characters with a distinct title case.
fn case_safe(s: &str, title: bool) -> bool {
    s.chars().all(|c| {
        let u = c as u32;
        let stable = u < 0x0530
            || (0x0590..=0x06FF).contains(&u)
            || (0x3000..=0x9FFF).contains(&u)
            || (0xAC00..=0xD7A3).contains(&u);
        let sigma = matches!(c, 'Σ' | 'ς' | 'σ');
        let special_title = matches!(c, 'ß' | 'ŉ' | 'ǰ' | 'ΐ' | 'ΰ')
            || ('\u{1C4}'..='\u{1CC}').contains(&c)
            || ('\u{1F1}'..='\u{1F3}').contains(&c);
        stable && !sigma && !(title && special_title)
    })
}

fn upper_char(c: char, out: &mut String) {
    out.extend(c.to_uppercase());
}

fn lower_char(c: char, out: &mut String) {
    out.extend(c.to_lowercase());
}

fn str_method<'a>(s: &Rc<str>, name: &str, args: &[Obj<'a>], kw: &[(&str, Obj<'a>)]) -> R<Obj<'a>> {
    // Every str method is linear in the subject (at least).
    spend(1 + (s.len() / 64) as u64)?;
    let st = |x: String| Ok(Obj::Str(Rc::from(x)));
    let arg_str = |i: usize| -> R<Rc<str>> {
        match args.get(i) {
            Some(Obj::Str(a)) => Ok(a.clone()),
            _ => no("str argument expected"),
        }
    };
    match (name, args.len()) {
        ("lower", 0) | ("upper", 0) | ("title", 0) | ("capitalize", 0) | ("swapcase", 0) => {
            if !case_safe(s, name == "title" || name == "capitalize") {
                return no("case mapping of these characters");
            }
            let mut out = String::new();
            match name {
                "lower" => s.chars().for_each(|c| lower_char(c, &mut out)),
                "upper" => s.chars().for_each(|c| upper_char(c, &mut out)),
                "swapcase" => s.chars().for_each(|c| {
                    if c.is_uppercase() {
                        lower_char(c, &mut out)
                    } else if c.is_lowercase() {
                        upper_char(c, &mut out)
                    } else {
                        out.push(c)
                    }
                }),
                "capitalize" => {
                    let mut it = s.chars();
                    if let Some(c) = it.next() {
                        upper_char(c, &mut out);
                    }
                    it.for_each(|c| lower_char(c, &mut out));
                }
                _ => {
                    let mut prev_cased = false;
                    for c in s.chars() {
                        if prev_cased {
                            lower_char(c, &mut out)
                        } else {
                            upper_char(c, &mut out)
                        }
                        prev_cased = c.is_uppercase() || c.is_lowercase();
                    }
                }
            }
            st(out)
        }
        ("strip" | "lstrip" | "rstrip", 0 | 1) => {
            let set: Option<Vec<char>> = match args.first() {
                None | Some(Obj::None) => None,
                Some(Obj::Str(c)) => Some(c.chars().collect()),
                _ => return no("strip argument"),
            };
            let pred = |c: char| match &set {
                None => py_space(c),
                Some(v) => v.contains(&c),
            };
            let r = match name {
                "strip" => s.trim_matches(pred),
                "lstrip" => s.trim_start_matches(pred),
                _ => s.trim_end_matches(pred),
            };
            st(r.to_string())
        }
        ("startswith" | "endswith", 1) => {
            let pats: Vec<Rc<str>> = match &args[0] {
                Obj::Str(p) => vec![p.clone()],
                Obj::Tuple(t) => t
                    .iter()
                    .map(|o| match o {
                        Obj::Str(p) => Ok(p.clone()),
                        _ => no("tuple of non-str"),
                    })
                    .collect::<R<_>>()?,
                _ => return no("startswith argument"),
            };
            let hit = pats.iter().any(|p| {
                if name == "startswith" {
                    s.starts_with(&**p)
                } else {
                    s.ends_with(&**p)
                }
            });
            Ok(Obj::Bool(hit))
        }
        ("replace", 2 | 3) => {
            let (old, new) = (arg_str(0)?, arg_str(1)?);
            let count = match args.get(2) {
                None => -1,
                Some(o) => as_int(o)?,
            };
            if old.is_empty() {
                return no("replace of the empty string");
            }
            if new.len() > old.len() {
                let n = s.matches(&*old).count();
                let n = if count < 0 { n } else { n.min(count as usize) };
                str_fits(s.len() + n.saturating_mul(new.len() - old.len()))?;
            }
            if count < 0 {
                st(s.replace(&*old, &new))
            } else {
                st(s.replacen(&*old, &new, count as usize))
            }
        }
        ("find" | "rfind" | "count", 1) => {
            let sub = arg_str(0)?;
            if sub.is_empty() {
                return no("find of the empty string");
            }
            let cp = |b: usize| s[..b].chars().count() as i64;
            Ok(Obj::Int(match name {
                "find" => s.find(&*sub).map(cp).unwrap_or(-1),
                "rfind" => s.rfind(&*sub).map(cp).unwrap_or(-1),
                _ => s.matches(&*sub).count() as i64,
            }))
        }
        ("join", 1) => {
            let items = match &args[0] {
                Obj::List(l) | Obj::Tuple(l) => l.clone(),
                _ => return no("join argument"),
            };
            spend(items.len() as u64)?;
            let total = items.iter().fold(0usize, |n, o| match o {
                Obj::Str(x) => n.saturating_add(x.len()),
                _ => n,
            });
            str_fits(total.saturating_add(s.len().saturating_mul(items.len())))?;
            let parts: Vec<String> = items
                .iter()
                .map(|o| match o {
                    Obj::Str(x) => Ok(x.to_string()),
                    _ => no("join of non-str"),
                })
                .collect::<R<_>>()?;
            st(parts.join(s))
        }
        ("split" | "rsplit", 0..=2) => {
            let mut sep = args.first().cloned().unwrap_or(Obj::None);
            let mut max = match args.get(1) {
                None => -1,
                Some(o) => as_int(o)?,
            };
            for (k, v) in kw {
                match *k {
                    "sep" if args.is_empty() => sep = v.clone(),
                    "maxsplit" if args.len() < 2 => max = as_int(v)?,
                    _ => return no("split keyword"),
                }
            }
            let parts: Vec<String> = match sep {
                Obj::None => {
                    if max >= 0 && name == "rsplit" {
                        return no("rsplit with maxsplit");
                    }
                    let mut parts = Vec::new();
                    let mut rest = s.trim_start_matches(py_space);
                    while !rest.is_empty() {
                        if max >= 0 && parts.len() as i64 == max {
                            parts.push(rest.to_string());
                            break;
                        }
                        let end = rest.find(py_space).unwrap_or(rest.len());
                        parts.push(rest[..end].to_string());
                        rest = rest[end..].trim_start_matches(py_space);
                    }
                    parts
                }
                Obj::Str(p) => {
                    if p.is_empty() {
                        return no("empty separator");
                    }
                    if max < 0 {
                        s.split(&*p).map(String::from).collect()
                    } else if name == "split" {
                        s.splitn(max as usize + 1, &*p).map(String::from).collect()
                    } else {
                        let mut v: Vec<String> =
                            s.rsplitn(max as usize + 1, &*p).map(String::from).collect();
                        v.reverse();
                        v
                    }
                }
                _ => return no("split separator"),
            };
            Ok(Obj::List(Rc::new(
                parts.into_iter().map(|p| Obj::Str(Rc::from(p))).collect(),
            )))
        }
        ("partition" | "rpartition", 1) => {
            let sep = arg_str(0)?;
            if sep.is_empty() {
                return no("empty separator");
            }
            let found = if name == "partition" {
                s.find(&*sep)
            } else {
                s.rfind(&*sep)
            };
            let (a, b, c) = match found {
                Some(i) => (&s[..i], &*sep, &s[i + sep.len()..]),
                None if name == "partition" => (&**s, "", ""),
                None => ("", "", &**s),
            };
            Ok(Obj::Tuple(Rc::new(vec![
                Obj::Str(Rc::from(a)),
                Obj::Str(Rc::from(b)),
                Obj::Str(Rc::from(c)),
            ])))
        }
        ("isdigit" | "isalpha" | "isalnum" | "islower" | "isupper" | "isspace", 0) => {
            if !s.is_ascii() {
                return no("character class of non-ASCII");
            }
            let b = s.bytes();
            Ok(Obj::Bool(match name {
                "isdigit" => !s.is_empty() && b.clone().all(|c| c.is_ascii_digit()),
                "isalpha" => !s.is_empty() && b.clone().all(|c| c.is_ascii_alphabetic()),
                "isalnum" => !s.is_empty() && b.clone().all(|c| c.is_ascii_alphanumeric()),
                "isspace" => !s.is_empty() && s.chars().all(py_space),
                "islower" => {
                    s.bytes().any(|c| c.is_ascii_lowercase())
                        && !s.bytes().any(|c| c.is_ascii_uppercase())
                }
                _ => {
                    s.bytes().any(|c| c.is_ascii_uppercase())
                        && !s.bytes().any(|c| c.is_ascii_lowercase())
                }
            }))
        }
        _ => no(format!("str.{name}")),
    }
}

/// Converts a native result to the public value type.
pub fn to_value(o: &Obj) -> R<Value> {
    to_value_at(o, 0)
}

fn to_value_at(o: &Obj, depth: u32) -> R<Value> {
    spend(1)?;
    depth_ok(depth)?;
    let to_value = |o: &Obj| to_value_at(o, depth + 1);
    Ok(match o {
        Obj::None => Value::None,
        Obj::Bool(b) => Value::Bool(*b),
        Obj::Int(i) | Obj::Flag(i) => Value::Int(*i),
        Obj::Str(s) => {
            spend((s.len() / 64) as u64)?;
            Value::Str(s.to_string())
        }
        Obj::List(l) => Value::List(l.iter().map(to_value).collect::<R<_>>()?),
        Obj::Tuple(l) => Value::Tuple(l.iter().map(to_value).collect::<R<_>>()?),
        Obj::Dict(d) => Value::Dict(
            d.iter()
                .map(|(k, v)| Ok((to_value(k)?, to_value(v)?)))
                .collect::<R<_>>()?,
        ),
        Obj::Lambda(_) => other("function"),
        Obj::Match(_) => other("Match"),
        Obj::Pattern(_) => other("Pattern"),
        Obj::ReModule => other("module"),
        Obj::Builtin(_) => other("builtin_function_or_method"),
    })
}

fn other(t: &str) -> Value {
    Value::Other {
        type_name: t.to_string(),
        truthy: true,
    }
}
