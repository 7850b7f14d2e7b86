//! Statements: blocks (with hoisted functions), bindings, loops (`for`, `while`, `break`,
//! `continue`), print and save.

use std::rc::Rc;

use crate::error::{BebError, ErrorKind};
use crate::eval::env::Env;
use crate::eval::interp::{Control, Eval, Interp};
use crate::eval::natives::iterate;
use crate::eval::value::Value;
use crate::syntax::ast::*;

impl Interp {
    pub(super) fn exec_block(&mut self, stmts: &[Stmt], env: &Rc<Env>) -> Eval<Value> {
        // Functions are hoisted so they can call each other regardless of order.
        for stmt in stmts {
            if let StmtKind::Fn(def) = &stmt.node {
                let name = def.name.clone().unwrap_or_else(|| Rc::from("?"));
                let closure = self.closure(def, env);
                env.define(name, closure);
            }
        }
        let mut last = Value::None;
        for stmt in stmts {
            last = self.exec(stmt, env)?;
        }
        Ok(last)
    }

    pub(super) fn exec(&mut self, stmt: &Stmt, env: &Rc<Env>) -> Eval<Value> {
        match &stmt.node {
            StmtKind::Expr(e) => return self.eval(e, env),
            StmtKind::Let(name, e) => {
                self.name_hint = Some(name.node.clone());
                let value = self.eval(e, env);
                self.name_hint = None;
                env.define_at(name.node.clone(), value?, name.span);
            }
            StmtKind::Assign(name, op, e) => {
                let current = env.get(&name.node).ok_or_else(|| {
                    BebError::new(ErrorKind::Name, format!("`{}` is not defined", name.node))
                        .at(name.span)
                        .with_help(format!("define it first with `let {} = ...`", name.node))
                })?;
                let rhs = self.eval(e, env)?;
                let value = match op {
                    AssignOp::Set => rhs,
                    AssignOp::Add => self.binary_at(BinaryOp::Add, &current, &rhs, stmt.span)?,
                    AssignOp::Sub => self.binary_at(BinaryOp::Sub, &current, &rhs, stmt.span)?,
                    AssignOp::Mul => self.binary_at(BinaryOp::Mul, &current, &rhs, stmt.span)?,
                    AssignOp::Div => self.binary_at(BinaryOp::Div, &current, &rhs, stmt.span)?,
                };
                env.assign(&name.node, value);
            }
            StmtKind::Fn(_) | StmtKind::Doc => {}
            StmtKind::Import { module, alias, all } => {
                self.import(module, alias.as_ref(), *all, env)?
            }
            StmtKind::Assert {
                cond,
                confidence,
                message,
            } => self.assert(stmt.span, cond, *confidence, message.as_ref(), env)?,
            StmtKind::Print(exprs) => {
                let mut parts = Vec::with_capacity(exprs.len());
                for e in exprs {
                    parts.push(self.eval(e, env)?.to_string());
                }
                self.print_line(&parts.join(" "))
                    .map_err(|e| e.at(stmt.span))?;
            }
            StmtKind::Save { value, path } => {
                let v = self.eval(value, env)?;
                let p = match self.eval(path, env)? {
                    Value::Str(s) => s,
                    other => {
                        return Err(BebError::type_error(format!(
                            "`save ... to` needs a file name string, found a {}",
                            other.type_name()
                        ))
                        .at(path.span)
                        .into());
                    }
                };
                let written =
                    crate::eval::export::save(&v, &p, &self.run.out_dir, &self.run.allow_write)
                        .map_err(|e| e.at(path.span))?;
                self.run.saved.push((written, v));
            }
            StmtKind::Plot {
                series,
                path,
                options,
            } => self.exec_plot(series, path, options.as_ref(), env)?,
            StmtKind::For { var, iter, body } => {
                let iterable = self.eval(iter, env)?;
                // Ranges are walked lazily: a loop over 0..10^9 needs no list of 10^9 numbers.
                let items: Box<dyn Iterator<Item = Value>> = match &iterable {
                    Value::Range(r) => Box::new(r.iter().map(|i| Value::Num(i as f64))),
                    _ => Box::new(
                        iterate(&iterable)
                            .ok_or_else(|| {
                                BebError::type_error(format!(
                                    "cannot iterate over a {}",
                                    iterable.type_name()
                                ))
                                .at(iter.span)
                            })?
                            .into_iter(),
                    ),
                };
                for item in items {
                    self.check_interrupt().map_err(|e| e.at(stmt.span))?;
                    let scope = Env::child(env);
                    scope.define(var.node.clone(), item);
                    match self.exec_block(body, &scope) {
                        Ok(_) | Err(Control::Continue(_)) => {}
                        Err(Control::Break(_)) => break,
                        Err(other) => return Err(other),
                    }
                }
            }
            StmtKind::While { cond, body } => loop {
                self.check_interrupt().map_err(|e| e.at(stmt.span))?;
                match self.eval(cond, env)? {
                    Value::Bool(true) => {}
                    Value::Bool(false) => break,
                    other => {
                        return Err(BebError::type_error(format!(
                            "`while` needs true or false, found a {}",
                            other.type_name()
                        ))
                        .at(cond.span)
                        .into());
                    }
                }
                match self.exec_block(body, &Env::child(env)) {
                    Ok(_) | Err(Control::Continue(_)) => {}
                    Err(Control::Break(_)) => break,
                    Err(other) => return Err(other),
                }
            },
            StmtKind::Break => return Err(Control::Break(stmt.span)),
            StmtKind::Continue => return Err(Control::Continue(stmt.span)),
            StmtKind::Return(e) => {
                let value = match e {
                    Some(e) => self.eval(e, env)?,
                    None => Value::None,
                };
                return Err(Control::Return(value));
            }
        }
        Ok(Value::None)
    }
}
