//! Name resolution without running: `beb check`, and the runner before it starts, report
//! every unknown name up front instead of an hour into a long measurement.

use std::collections::HashSet;

use crate::error::{BebError, ErrorKind};
use crate::eval::suggest;
use crate::syntax::ast::*;

/// Scopes of names known at each point of the program.
struct Resolver<'a> {
    scopes: Vec<HashSet<Name>>,
    errors: Vec<BebError>,
    /// Names of modules, resolved when `import`ed.
    module_names: &'a dyn Fn(&str) -> Option<Vec<String>>,
    /// How many function bodies enclose the current point (`return` needs at least one).
    fn_depth: usize,
    /// Loops around the statement being checked, within the current function.
    loop_depth: usize,
    /// Whether a name is a builtin's (for the shadowing warning).
    is_builtin: &'a dyn Fn(&str) -> bool,
    /// `let`s and sweep columns in scope that hide a builtin: name, binding span, scope depth.
    shadows: Vec<(Name, Span, usize)>,
    /// Calls through such a binding: name, binding span, call span.
    shadowed_calls: Vec<Shadowed>,
}

/// A call `NAME(...)` that reaches a `let` or sweep column named like a builtin, not the
/// builtin (`sweep n in ... { kl: ..., mc: kl(...) }` calls the column).
#[derive(Clone, Debug, PartialEq)]
pub struct Shadowed {
    pub name: Name,
    pub bound: Span,
    pub called: Span,
}

/// Check that every name used in `program` is defined where it is used.
/// `known` are the names visible before the program (builtins, `--set` variables).
pub fn check_names(
    program: &[Stmt],
    known: impl IntoIterator<Item = Name>,
    module_names: &dyn Fn(&str) -> Option<Vec<String>>,
) -> Vec<BebError> {
    resolve(program, known, module_names, &|_| false).0
}

/// The calls in `program` that go through a binding hiding a builtin (`is_builtin`).
pub fn shadowed_builtins(
    program: &[Stmt],
    known: impl IntoIterator<Item = Name>,
    is_builtin: &dyn Fn(&str) -> bool,
) -> Vec<Shadowed> {
    resolve(program, known, &|_| None, is_builtin).1
}

fn resolve(
    program: &[Stmt],
    known: impl IntoIterator<Item = Name>,
    module_names: &dyn Fn(&str) -> Option<Vec<String>>,
    is_builtin: &dyn Fn(&str) -> bool,
) -> (Vec<BebError>, Vec<Shadowed>) {
    let mut r = Resolver {
        scopes: vec![known.into_iter().collect()],
        errors: Vec::new(),
        module_names,
        fn_depth: 0,
        loop_depth: 0,
        is_builtin,
        shadows: Vec::new(),
        shadowed_calls: Vec::new(),
    };
    r.block(program);
    (r.errors, r.shadowed_calls)
}

impl Resolver<'_> {
    fn define(&mut self, name: &Name) {
        if let Some(scope) = self.scopes.last_mut() {
            scope.insert(name.clone());
        }
    }

    /// A `let` or sweep column: defined, and remembered when it hides a builtin.
    fn define_at(&mut self, name: &Name, span: Span) {
        self.define(name);
        if (self.is_builtin)(name) {
            self.shadows.push((name.clone(), span, self.scopes.len()));
        } else {
            // A later binding of the name hides an earlier shadowing one too.
            let depth = self.scopes.len();
            self.shadows.retain(|(n, _, d)| !(n == name && *d == depth));
        }
    }

    fn is_known(&self, name: &str) -> bool {
        self.scopes.iter().any(|s| s.contains(name))
    }

    fn use_name(&mut self, name: &Name, span: Span) {
        if self.is_known(name) {
            return;
        }
        let mut err = BebError::new(ErrorKind::Name, format!("unknown name `{name}`"))
            .at(span)
            .with_label("not defined");
        let all: Vec<&str> = self
            .scopes
            .iter()
            .flat_map(|s| s.iter().map(|n| &**n))
            .collect();
        if let Some(best) = suggest::closest(name, all) {
            err = err.with_help(format!("did you mean `{best}`?"));
        }
        self.errors.push(err);
        // Report each unknown name once.
        self.define(name);
    }

    fn scoped(&mut self, f: impl FnOnce(&mut Self)) {
        self.scopes.push(HashSet::new());
        f(self);
        self.scopes.pop();
        let depth = self.scopes.len();
        self.shadows.retain(|(_, _, d)| *d <= depth);
    }

    fn block(&mut self, stmts: &[Stmt]) {
        for s in stmts {
            if let StmtKind::Fn(def) = &s.node
                && let Some(n) = &def.name
            {
                self.define(n);
            }
        }
        for s in stmts {
            self.stmt(s);
        }
    }

    fn function(&mut self, def: &FnDef) {
        self.fn_depth += 1;
        // A function body starts outside any loop: `break` cannot leave through a call.
        let loops = std::mem::take(&mut self.loop_depth);
        self.scoped(|r| {
            for p in &def.params {
                if let Some(d) = &p.default {
                    r.expr(d);
                }
                r.define(&p.name.node);
            }
            r.expr(&def.body);
        });
        self.fn_depth -= 1;
        self.loop_depth = loops;
    }

    fn stmt(&mut self, stmt: &Stmt) {
        match &stmt.node {
            StmtKind::Let(name, e) => {
                self.expr(e);
                self.define_at(&name.node, name.span);
            }
            StmtKind::Assign(name, _, e) => {
                self.use_name(&name.node, name.span);
                self.expr(e);
            }
            StmtKind::Fn(def) => self.function(def),
            StmtKind::Import { module, alias, all } => {
                if *all {
                    match (self.module_names)(&module.node) {
                        Some(names) => {
                            for n in names {
                                self.define(&Name::from(n.as_str()));
                            }
                        }
                        None => self.errors.push(
                            BebError::new(
                                ErrorKind::Name,
                                format!("there is no module `{}`", module.node),
                            )
                            .at(module.span),
                        ),
                    }
                } else {
                    let bound = alias.as_ref().unwrap_or(module);
                    self.define(&bound.node);
                }
            }
            StmtKind::Assert { cond, message, .. } => {
                self.expr(cond);
                if let Some(m) = message {
                    self.expr(m);
                }
            }
            StmtKind::Print(es) => es.iter().for_each(|e| self.expr(e)),
            StmtKind::Save { value, path } => {
                self.expr(value);
                self.expr(path);
            }
            StmtKind::Plot {
                series,
                path,
                options,
            } => {
                series.iter().for_each(|e| self.expr(e));
                self.expr(path);
                if let Some(o) = options {
                    self.expr(o);
                }
            }
            StmtKind::For { var, iter, body } => {
                self.expr(iter);
                self.loop_depth += 1;
                self.scoped(|r| {
                    r.define(&var.node);
                    r.block(body);
                });
                self.loop_depth -= 1;
            }
            StmtKind::While { cond, body } => {
                self.expr(cond);
                self.loop_depth += 1;
                self.scoped(|r| r.block(body));
                self.loop_depth -= 1;
            }
            StmtKind::Break | StmtKind::Continue => {
                if self.loop_depth == 0 {
                    let word = if matches!(stmt.node, StmtKind::Break) {
                        "break"
                    } else {
                        "continue"
                    };
                    self.errors.push(
                        BebError::new(ErrorKind::Syntax, format!("`{word}` outside a loop"))
                            .at(stmt.span)
                            .with_label("not inside a `for` or `while`"),
                    );
                }
            }
            StmtKind::Return(e) => {
                if self.fn_depth == 0 {
                    self.errors.push(
                        BebError::new(ErrorKind::Syntax, "`return` outside a function")
                            .at(stmt.span)
                            .with_label("not inside a `fn` or a lambda"),
                    );
                }
                if let Some(e) = e {
                    self.expr(e);
                }
            }
            StmtKind::Expr(e) => self.expr(e),
            StmtKind::Doc => {}
        }
    }

    fn expr(&mut self, expr: &Expr) {
        match &expr.node {
            ExprKind::Number(_) | ExprKind::Bool(_) | ExprKind::None => {}
            ExprKind::Str(parts) => {
                for p in parts {
                    if let StrPart::Interp { expr, .. } = p {
                        self.expr(expr);
                    }
                }
            }
            ExprKind::Ident(name) => self.use_name(name, expr.span),
            ExprKind::List(items) => items.iter().for_each(|e| self.expr(e)),
            ExprKind::Record(fields) => fields.iter().for_each(|f| self.expr(&f.value)),
            ExprKind::Range { start, end, .. } => {
                for e in [start, end].into_iter().flatten() {
                    self.expr(e);
                }
            }
            ExprKind::Unary(_, e) => self.expr(e),
            ExprKind::Binary(_, l, r) => {
                self.expr(l);
                self.expr(r);
            }
            ExprKind::Call { callee, args, .. } => {
                if let ExprKind::Ident(name) = &callee.node
                    && let Some((_, bound, _)) = self.shadows.iter().rev().find(|(n, ..)| n == name)
                {
                    self.shadowed_calls.push(Shadowed {
                        name: name.clone(),
                        bound: *bound,
                        called: callee.span,
                    });
                }
                self.expr(callee);
                args.iter().for_each(|a| self.expr(&a.value));
            }
            ExprKind::Index { target, index } => {
                self.expr(target);
                self.expr(index);
            }
            ExprKind::Field { target, .. } => self.expr(target),
            ExprKind::Lambda(def) => self.function(def),
            ExprKind::If {
                cond,
                then,
                otherwise,
            } => {
                self.expr(cond);
                self.expr(then);
                if let Some(o) = otherwise {
                    self.expr(o);
                }
            }
            ExprKind::Block(stmts) => self.scoped(|r| r.block(stmts)),
            ExprKind::Sweep { vars, body, fields } => {
                vars.iter().for_each(|(_, e)| self.expr(e));
                self.scoped(|r| {
                    vars.iter().for_each(|(n, _)| r.define_at(&n.node, n.span));
                    r.block(body);
                    for f in fields {
                        r.expr(&f.value);
                        r.define_at(&f.name.node, f.name.span);
                    }
                });
            }
            ExprKind::Sentences(entries) => {
                for e in entries {
                    self.expr(&e.text);
                    self.expr(&e.prob);
                    if let Some(s) = &e.score {
                        self.expr(s);
                    }
                }
            }
        }
    }
}
