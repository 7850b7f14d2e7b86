//! Calls: argument binding for user functions and builtins, and the call-depth limit.

use std::rc::Rc;

use crate::error::{BebError, BebResult};
use crate::eval::env::Env;
use crate::eval::interp::{Control, Eval, Interp, MAX_CALL_DEPTH};

use crate::eval::natives::Args;
use crate::eval::value::{Closure, Value};
use crate::syntax::ast::*;

impl Interp {
    pub(super) fn eval_call(
        &mut self,
        callee: &Expr,
        args: &[Arg],
        site: &CallSite,
        span: Span,
        env: &Rc<Env>,
    ) -> Eval<Value> {
        // The `let` name is meant for this call, not for calls among its arguments.
        let hint = self.name_hint.take();
        let f = self.eval(callee, env)?;
        let mut positional = Vec::new();
        let mut named = Vec::new();
        for a in args {
            let v = self.eval(&a.value, env)?;
            match &a.name {
                Some(n) => {
                    if named
                        .iter()
                        .any(|(m, _, _): &(String, Value, Span)| **m == *n.node)
                    {
                        return Err(BebError::argument(format!("`{}` is given twice", n.node))
                            .at(n.span)
                            .into());
                    }
                    named.push((n.node.to_string(), v, n.span));
                }
                None => positional.push((v, a.value.span)),
            }
        }
        self.name_hint = hint;
        let result = self.call_at(&f, positional, named, span, Some(site));
        self.name_hint = None;
        Ok(result.map_err(|e| self.where_bound(e, &f, callee, env))?)
    }

    /// A "not a function" error for a callee that is a name says where that name was bound,
    /// and which builtin the binding hides.
    fn where_bound(&self, error: BebError, f: &Value, callee: &Expr, env: &Rc<Env>) -> BebError {
        let ExprKind::Ident(name) = &callee.node else {
            return error;
        };
        if matches!(f, Value::Func(_) | Value::Native(_)) {
            return error;
        }
        let mut error = error.with_label(format!("`{name}` is a {} here", f.type_name()));
        let bound = env.bound_at(name);
        if let Some(at) = bound {
            error = error.with_note(at, format!("`{name}` is bound here"));
        }
        let place = bound
            .map(|at| format!("`{name}` was bound at {}", self.location(at)))
            .unwrap_or_else(|| format!("`{name}` is a variable or parameter"));
        if self.builtins.contains_key(&**name) {
            error.with_help(format!(
                "{place}, which hides the builtin `{name}`; give it another name to call the builtin"
            ))
        } else {
            error.with_help(place)
        }
    }

    /// Call any function value with evaluated arguments.
    pub fn call(
        &mut self,
        f: &Value,
        positional: Vec<(Value, Span)>,
        named: Vec<(String, Value, Span)>,
        span: Span,
    ) -> BebResult<Value> {
        self.call_at(f, positional, named, span, None)
    }

    /// A call written at `site` in a source (`None` when a builtin calls a function value).
    fn call_at(
        &mut self,
        f: &Value,
        positional: Vec<(Value, Span)>,
        named: Vec<(String, Value, Span)>,
        span: Span,
        site: Option<&CallSite>,
    ) -> BebResult<Value> {
        self.check_interrupt().map_err(|e| e.at(span))?;
        if self.depth >= MAX_CALL_DEPTH {
            return Err(BebError::value(format!(
                "calls nested deeper than {MAX_CALL_DEPTH} (runaway recursion?)"
            ))
            .at(span));
        }
        self.depth += 1;
        let result = match f {
            Value::Native(b) => {
                let mark = self.observe();
                let result = Args::bind(b.clone(), positional, named, span, site)
                    .and_then(|args| (b.func)(self, &args))
                    .map_err(|e| self.interrupted_instead(e).at(span));
                let drawn = self.streams_since(mark);
                if let Ok(v) = &result {
                    self.note_provenance(v, &drawn);
                }
                result
            }
            Value::Func(c) => {
                self.name_hint = None;
                self.call_closure(c, positional, named, span)
            }
            other => Err(BebError::type_error(format!(
                "{} {} is not a function",
                if other.type_name().starts_with(['a', 'e', 'i', 'o', 'u']) {
                    "an"
                } else {
                    "a"
                },
                other.type_name()
            ))
            .at(span)),
        };
        self.depth -= 1;
        result
    }

    /// Convenience for builtins: call with positional values only.
    pub fn call_simple(&mut self, f: &Value, args: Vec<Value>, span: Span) -> BebResult<Value> {
        self.call(
            f,
            args.into_iter().map(|v| (v, span)).collect(),
            Vec::new(),
            span,
        )
    }

    pub(super) fn call_closure(
        &mut self,
        c: &Rc<Closure>,
        positional: Vec<(Value, Span)>,
        named: Vec<(String, Value, Span)>,
        span: Span,
    ) -> BebResult<Value> {
        let def = &c.def;
        let scope = Env::child(&c.env);
        let signature = || signature_of(def);
        if positional.len() > def.params.len() {
            return Err(BebError::argument(format!(
                "{} takes {} argument{}, {} given",
                signature(),
                def.params.len(),
                if def.params.len() == 1 { "" } else { "s" },
                positional.len()
            ))
            .at(span)
            .with_help(format!("signature: {}", signature())));
        }
        let mut given: Vec<Option<Value>> = vec![None; def.params.len()];
        for (i, (v, _)) in positional.into_iter().enumerate() {
            given[i] = Some(v);
        }
        for (name, v, nspan) in named {
            match def.params.iter().position(|p| *p.name.node == *name) {
                Some(i) if given[i].is_some() => {
                    return Err(BebError::argument(format!("`{name}` is given twice")).at(nspan));
                }
                Some(i) => given[i] = Some(v),
                None => {
                    return Err(BebError::argument(format!(
                        "{} has no parameter `{name}`",
                        signature()
                    ))
                    .at(nspan)
                    .with_help(format!("signature: {}", signature())));
                }
            }
        }
        for (p, v) in def.params.iter().zip(given) {
            let value = match (v, &p.default) {
                (Some(v), _) => v,
                (None, Some(d)) => match self.eval(d, &scope) {
                    Ok(v) | Err(Control::Return(v)) => v,
                    Err(other) => return Err(other.outside_loop()),
                },
                (None, None) => {
                    return Err(BebError::argument(format!(
                        "{} is missing the argument `{}`",
                        signature(),
                        p.name.node
                    ))
                    .at(span)
                    .with_help(format!("signature: {}", signature())));
                }
            };
            scope.define(p.name.node.clone(), value);
        }
        match self.eval(&def.body, &scope) {
            Ok(v) | Err(Control::Return(v)) => Ok(v),
            Err(other) => Err(other.outside_loop()),
        }
    }
}

/// `name(a, b = ...)`, as argument errors and `:help` show a user function.
pub(super) fn signature_of(def: &FnDef) -> String {
    let params: Vec<String> = def
        .params
        .iter()
        .map(|p| match p.default {
            Some(_) => format!("{} = ...", p.name.node),
            None => p.name.node.to_string(),
        })
        .collect();
    format!(
        "{}({})",
        def.name.as_deref().unwrap_or("lambda"),
        params.join(", ")
    )
}
