//! Expressions: literals, operators, indexing, sweeps and model literals.

use std::rc::Rc;

use crate::error::{BebError, BebResult, ErrorKind};
use crate::eval::env::Env;
use crate::eval::interp::{Eval, Interp};
use crate::eval::natives::iterate;
use crate::eval::value::access::{field, index_value, integer, length, slice};
use crate::eval::value::format_spec::format_with_spec;
use crate::eval::value::ops;
use crate::eval::value::{RangeValue, Record, Table, Value};
use crate::eval::{builtins, suggest};
use crate::report::progress::Progress;
use crate::syntax::ast::*;

impl Interp {
    pub(super) fn binary_at(
        &self,
        op: BinaryOp,
        l: &Value,
        r: &Value,
        span: Span,
    ) -> BebResult<Value> {
        ops::binary(op, l, r).map_err(|e| e.at(span))
    }

    pub fn eval(&mut self, expr: &Expr, env: &Rc<Env>) -> Eval<Value> {
        let span = expr.span;
        Ok(match &expr.node {
            ExprKind::Number(x) => Value::Num(*x),
            ExprKind::Bool(b) => Value::Bool(*b),
            ExprKind::None => Value::None,
            ExprKind::Str(parts) => self.interpolate(parts, env)?,
            ExprKind::Ident(name) => match env.get(name) {
                Some(v) => v,
                None => return Err(self.unknown_name(name, span, env).into()),
            },
            ExprKind::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    out.push(self.eval(item, env)?);
                }
                Value::list(out)
            }
            ExprKind::Record(fields) => {
                let mut out: Vec<(Name, Value)> = Vec::with_capacity(fields.len());
                for f in fields {
                    if out.iter().any(|(n, _)| *n == f.name.node) {
                        return Err(BebError::value(format!(
                            "field `{}` is given twice",
                            f.name.node
                        ))
                        .at(f.name.span)
                        .into());
                    }
                    out.push((f.name.node.clone(), self.eval(&f.value, env)?));
                }
                Value::Record(Rc::new(Record { fields: out }))
            }
            ExprKind::Range {
                start,
                end,
                inclusive,
            } => {
                let bound = |this: &mut Interp, e: &Option<Box<Expr>>| -> Eval<Option<i64>> {
                    match e {
                        None => Ok(None),
                        Some(e) => {
                            let v = this.eval(e, env)?;
                            Ok(Some(integer(&v).map_err(|err| err.at(e.span))?))
                        }
                    }
                };
                let s = bound(self, start)?;
                let e = bound(self, end)?;
                match (s, e) {
                    (Some(start), Some(end)) => Value::Range(RangeValue {
                        start,
                        end,
                        inclusive: *inclusive,
                    }),
                    _ => {
                        return Err(BebError::value(
                            "an open range like `..n` can only be used inside `[...]`",
                        )
                        .at(span)
                        .into());
                    }
                }
            }
            ExprKind::Unary(op, e) => {
                let v = self.eval(e, env)?;
                ops::unary(*op, &v).map_err(|err| err.at(span))?
            }
            ExprKind::Binary(op, l, r) => self.eval_binary(*op, l, r, span, env)?,
            ExprKind::Call { callee, args, site } => {
                self.eval_call(callee, args, site, span, env)?
            }
            ExprKind::Index { target, index } => {
                let t = self.eval(target, env)?;
                self.eval_index(&t, index, env)?
            }
            ExprKind::Field { target, name } => {
                let t = self.eval(target, env)?;
                field(&t, &name.node).map_err(|e| e.at(name.span))?
            }
            ExprKind::Lambda(def) => self.closure(def, env),
            ExprKind::If {
                cond,
                then,
                otherwise,
            } => match self.eval(cond, env)? {
                Value::Bool(true) => self.eval(then, env)?,
                Value::Bool(false) => match otherwise {
                    Some(e) => self.eval(e, env)?,
                    None => Value::None,
                },
                other => {
                    return Err(BebError::type_error(format!(
                        "`if` needs true or false, found a {}",
                        other.type_name()
                    ))
                    .at(cond.span)
                    .into());
                }
            },
            ExprKind::Block(stmts) => {
                let scope = Env::child(env);
                self.exec_block(stmts, &scope)?
            }
            ExprKind::Sweep { vars, body, fields } => self.eval_sweep(vars, body, fields, env)?,
            ExprKind::Sentences(entries) => {
                let name = self.model_name(None, "sentences");
                let mut evaluated = Vec::with_capacity(entries.len());
                for entry in entries {
                    let text = match self.eval(&entry.text, env)? {
                        Value::Str(s) => s.to_string(),
                        other => {
                            return Err(BebError::type_error(format!(
                                "a sentence must be a string, found a {}",
                                other.type_name()
                            ))
                            .at(entry.text.span)
                            .into());
                        }
                    };
                    let prob = self.number(&entry.prob, env, "a probability")?;
                    let score = match &entry.score {
                        Some(s) => Some(self.number(s, env, "a behavior score")?),
                        None => None,
                    };
                    evaluated.push((text, prob, score));
                }
                builtins::models::categorical(name, evaluated, false).map_err(|e| e.at(span))?
            }
        })
    }

    pub(super) fn number(&mut self, expr: &Expr, env: &Rc<Env>, what: &str) -> Eval<f64> {
        match self.eval(expr, env)? {
            Value::Num(x) => Ok(x),
            other => Err(BebError::type_error(format!(
                "expected {what} (a number), found a {}",
                other.type_name()
            ))
            .at(expr.span)
            .into()),
        }
    }

    pub(super) fn unknown_name(&self, name: &str, span: Span, env: &Rc<Env>) -> BebError {
        let names = env.names();
        let mut err = BebError::new(ErrorKind::Name, format!("unknown name `{name}`"))
            .at(span)
            .with_label("not defined");
        if let Some(best) = suggest::closest(name, names.iter().map(|n| &**n)) {
            err = err.with_help(format!("did you mean `{best}`?"));
        }
        err
    }

    pub(super) fn eval_binary(
        &mut self,
        op: BinaryOp,
        l: &Expr,
        r: &Expr,
        span: Span,
        env: &Rc<Env>,
    ) -> Eval<Value> {
        let left = self.eval(l, env)?;
        // `and`/`or` short-circuit on booleans.
        match (op, &left) {
            (BinaryOp::And, Value::Bool(false)) => return Ok(Value::Bool(false)),
            (BinaryOp::Or, Value::Bool(true)) => return Ok(Value::Bool(true)),
            _ => {}
        }
        let right = self.eval(r, env)?;
        Ok(self.binary_at(op, &left, &right, span)?)
    }

    pub(super) fn interpolate(&mut self, parts: &[StrPart], env: &Rc<Env>) -> Eval<Value> {
        let mut out = String::new();
        for part in parts {
            match part {
                StrPart::Text(t) => out.push_str(t),
                StrPart::Interp { expr, spec } => {
                    let v = self.eval(expr, env)?;
                    match spec {
                        None => out.push_str(&v.to_string()),
                        Some(spec) => {
                            out.push_str(&format_with_spec(&v, spec).map_err(|e| e.at(expr.span))?)
                        }
                    }
                }
            }
        }
        Ok(Value::Str(Rc::from(out)))
    }

    pub(super) fn eval_index(
        &mut self,
        target: &Value,
        index: &Expr,
        env: &Rc<Env>,
    ) -> Eval<Value> {
        // Slices: `[a..b]`, `[..n]`, `[n..]`.
        if let ExprKind::Range {
            start,
            end,
            inclusive,
        } = &index.node
        {
            let len = length(target).ok_or_else(|| {
                BebError::type_error(format!("cannot slice a {}", target.type_name()))
                    .at(index.span)
            })?;
            let mut bound = |e: &Option<Box<Expr>>, default: i64| -> Eval<i64> {
                match e {
                    None => Ok(default),
                    Some(e) => {
                        let v = self.eval(e, env)?;
                        Ok(integer(&v).map_err(|err| err.at(e.span))?)
                    }
                }
            };
            let lo = bound(start, 0)?;
            let hi = bound(end, len as i64)? + i64::from(*inclusive && end.is_some());
            if lo < 0 || hi < lo || hi as usize > len {
                return Err(BebError::new(
                    ErrorKind::Index,
                    format!(
                        "slice {lo}..{hi} is out of range for a {} of length {len}",
                        target.type_name()
                    ),
                )
                .at(index.span)
                .into());
            }
            return Ok(slice(target, lo as usize, hi as usize));
        }
        let key = self.eval(index, env)?;
        if let Value::Range(r) = key {
            let len = length(target).unwrap_or(0);
            if r.start < 0 || r.stop() < r.start || r.stop() as usize > len {
                return Err(BebError::new(
                    ErrorKind::Index,
                    format!(
                        "slice {}..{} is out of range for length {len}",
                        r.start,
                        r.stop()
                    ),
                )
                .at(index.span)
                .into());
            }
            return Ok(slice(target, r.start as usize, r.stop() as usize));
        }
        Ok(index_value(target, &key).map_err(|e| e.at(index.span))?)
    }

    pub(super) fn eval_sweep(
        &mut self,
        vars: &[(Spanned<Name>, Expr)],
        body: &[Stmt],
        fields: &[Field],
        env: &Rc<Env>,
    ) -> Eval<Value> {
        let mut domains = Vec::with_capacity(vars.len());
        for (name, e) in vars {
            let v = self.eval(e, env)?;
            let items = match &v {
                Value::Range(_) => ops::elements(&v),
                _ => iterate(&v).ok_or_else(|| {
                    BebError::type_error(format!(
                        "`sweep {} in ...` needs a list or range, found a {}",
                        name.node,
                        v.type_name()
                    ))
                }),
            }
            .map_err(|err| err.at(e.span))?;
            domains.push(items);
        }
        let mut columns: Vec<Name> = vars.iter().map(|(n, _)| n.node.clone()).collect();
        for f in fields {
            if columns.contains(&f.name.node) {
                return Err(
                    BebError::value(format!("column `{}` appears twice", f.name.node))
                        .at(f.name.span)
                        .into(),
                );
            }
            columns.push(f.name.node.clone());
        }
        let total = domains
            .iter()
            .try_fold(1usize, |n, d| n.checked_mul(d.len()))
            .ok_or_else(|| {
                let span = vars
                    .iter()
                    .map(|(_, e)| e.span)
                    .reduce(Span::to)
                    .unwrap_or_default();
                BebError::value("this sweep has more rows than can be counted").at(span)
            })?;
        let bar = (self.sweep_depth == 0 && total > 1).then(|| {
            let names: Vec<&str> = vars.iter().map(|(n, _)| &*n.node).collect();
            self.progress(total as u64, &format!("sweep {}", names.join(", ")))
        });
        self.sweep_depth += 1;
        let rows = self.sweep_rows(
            vars,
            body,
            fields,
            env,
            &domains,
            total,
            columns.len(),
            bar.as_ref(),
        );
        self.sweep_depth -= 1;
        Ok(Value::Table(Rc::new(Table {
            columns,
            rows: rows?,
        })))
    }

    /// The rows of a sweep, one per combination of the swept values.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn sweep_rows(
        &mut self,
        vars: &[(Spanned<Name>, Expr)],
        body: &[Stmt],
        fields: &[Field],
        env: &Rc<Env>,
        domains: &[Vec<Value>],
        total: usize,
        width: usize,
        bar: Option<&Progress>,
    ) -> Eval<Vec<Vec<Value>>> {
        let mut rows = Vec::with_capacity(total.min(1 << 16));
        for step in 0..total {
            self.check_interrupt()?;
            let scope = Env::child(env);
            let mut row = Vec::with_capacity(width);
            let mut rest = step;
            let mut picks = vec![0usize; domains.len()];
            for (i, d) in domains.iter().enumerate().rev() {
                picks[i] = rest % d.len();
                rest /= d.len();
            }
            for ((name, _), (d, &k)) in vars.iter().zip(domains.iter().zip(&picks)) {
                scope.define(name.node.clone(), d[k].clone());
                row.push(d[k].clone());
            }
            self.exec_block(body, &scope)?;
            for f in fields {
                let v = self.eval(&f.value, &scope)?;
                scope.define_at(f.name.node.clone(), v.clone(), f.name.span);
                row.push(v);
            }
            rows.push(row);
            if let Some(bar) = bar {
                bar.inc(1);
            }
        }
        Ok(rows)
    }
}
