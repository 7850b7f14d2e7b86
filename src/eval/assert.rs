//! `assert`: exact assertions report both sides of a failed comparison; `at N%` runs a
//! one-sided test.

mod one_sided;

use std::rc::Rc;

use crate::error::{BebError, ErrorKind};
use crate::eval::env::Env;
use crate::eval::interp::{Eval, Interp};
use crate::eval::natives::iterate;
use crate::eval::provenance::describe_streams;
use crate::eval::run_context::Verdict;
use crate::eval::value::Value;
use crate::stats::Estimate;
use crate::syntax::ast::*;

/// Whether an assertion held, what to say about it, and labelled spans for the diagnostic.
pub(super) type AssertOutcome = (bool, String, Vec<(Span, String)>);

impl Interp {
    pub(super) fn assert(
        &mut self,
        span: Span,
        cond: &Expr,
        confidence: Option<f64>,
        message: Option<&Expr>,
        env: &Rc<Env>,
    ) -> Eval<()> {
        let source_text = self.snippet(cond.span);
        let location = self.location(span);
        let message = match message {
            Some(m) => Some(self.eval(m, env)?.to_string()),
            None => None,
        };
        let outcome = match confidence {
            Some(level) => self.statistical_assert(cond, level, env)?,
            None => self.exact_assert(cond, env)?,
        };
        let (passed, detail, notes) = outcome;
        self.run.verdicts.push(Verdict {
            source: source_text.clone(),
            location,
            passed,
            detail: detail.clone(),
        });
        if passed {
            return Ok(());
        }
        let headline = match &message {
            Some(m) => format!("assertion failed: {m}"),
            None => format!("assertion failed: {source_text}"),
        };
        // With both sides labelled, the verdict goes under the operator: labels that overlap
        // the sides' labels would be drawn on top of each other.
        let primary = match &cond.node {
            ExprKind::Binary(op, l, r) if !notes.is_empty() => {
                self.operator_span(*op, l.span, r.span)
            }
            _ => cond.span,
        };
        let mut err = BebError::new(ErrorKind::Assertion, headline)
            .at(primary)
            .with_label(detail.clone());
        for (s, text) in notes {
            err = err.with_note(s, text);
        }
        if message.is_some() {
            err = err.with_help(format!("{source_text}: {detail}"));
        }
        Err(err.into())
    }

    /// Evaluate an exact assertion; for a comparison, report both sides.
    pub(super) fn exact_assert(&mut self, cond: &Expr, env: &Rc<Env>) -> Eval<AssertOutcome> {
        if let ExprKind::Binary(op, l, r) = &cond.node
            && op.is_comparison()
        {
            let left = self.eval(l, env)?;
            let right = self.eval(r, env)?;
            let result = self.binary_at(*op, &left, &right, cond.span)?;
            let notes = vec![
                (l.span, format!("left: {}", brief(&left))),
                (r.span, format!("right: {}", brief(&right))),
            ];
            return Ok(match truth(&result) {
                Truth::All => (
                    true,
                    format!("{} {} {}", brief(&left), op.symbol(), brief(&right)),
                    notes,
                ),
                Truth::FailsAt(i) => {
                    let pick = |v: &Value| match iterate(v) {
                        Some(items) if matches!(v, Value::List(_) | Value::Range(_)) => {
                            items.get(i).map(brief).unwrap_or_default()
                        }
                        _ => brief(v),
                    };
                    let detail = match i {
                        usize::MAX => format!(
                            "{} {} {} is false",
                            brief(&left),
                            op.symbol(),
                            brief(&right)
                        ),
                        _ => format!(
                            "false at element {i}: {} {} {}",
                            pick(&left),
                            op.symbol(),
                            pick(&right)
                        ),
                    };
                    (false, detail, notes)
                }
                Truth::NotBool(t) => {
                    return Err(BebError::type_error(format!(
                        "`assert` needs true or false, found a {t}"
                    ))
                    .at(cond.span)
                    .into());
                }
            });
        }
        let value = self.eval(cond, env)?;
        match truth(&value) {
            Truth::All => Ok((true, "true".into(), vec![])),
            Truth::FailsAt(usize::MAX) => Ok((false, "the condition is false".into(), vec![])),
            Truth::FailsAt(i) => Ok((false, format!("element {i} is false"), vec![])),
            Truth::NotBool(t) => Err(BebError::type_error(format!(
                "`assert` needs true or false, found a {t}"
            ))
            .at(cond.span)
            .into()),
        }
    }

    /// `assert estimate >= x at 95%`: a one-sided test at the given confidence level.
    pub(super) fn statistical_assert(
        &mut self,
        cond: &Expr,
        level: f64,
        env: &Rc<Env>,
    ) -> Eval<AssertOutcome> {
        let ExprKind::Binary(op, l, r) = &cond.node else {
            return Err(
                BebError::type_error("`at N%` needs a comparison such as `estimate >= x`")
                    .at(cond.span)
                    .into(),
            );
        };
        let mark = self.observe();
        let evaluated = self
            .eval_series(l, env)
            .and_then(|left| Ok((left, self.eval(r, env)?)));
        let drawn = self.streams_since(mark);
        let ((left, x_values), right) = evaluated?;
        let (left, x_values) = (left, x_values.map(|(name, xs, _)| (name, xs)));
        let inline = describe_streams(&drawn);
        let stream_of = |e: &Estimate| -> Option<String> {
            self.estimate_stream(e)
                .map(|s| s.to_string())
                .or_else(|| (!drawn.is_empty()).then(|| inline.clone()))
        };
        let test = one_sided::one_sided(
            &left,
            *op,
            &right,
            level / 100.0,
            &stream_of,
            x_values.as_ref(),
        )
        .map_err(|e| e.at(cond.span))?;
        let notes = vec![
            (l.span, format!("left: {}", brief(&left))),
            (r.span, format!("right: {}", brief(&right))),
        ];
        Ok((test.passed, test.detail, notes))
    }

    /// The span of the operator written between two operands (the whole gap if it is not found).
    pub(super) fn operator_span(&self, op: BinaryOp, left: Span, right: Span) -> Span {
        let gap = Span {
            start: left.end,
            end: right.start,
            file: left.file,
        };
        match self.snippet(gap).find(op.symbol()) {
            Some(i) => Span::new(
                gap.file,
                gap.start as usize + i,
                gap.start as usize + i + op.symbol().len(),
            ),
            None => gap,
        }
    }

    pub(crate) fn snippet(&self, span: Span) -> String {
        self.source(span.file)
            .and_then(|s| s.text.get(span.start as usize..span.end as usize))
            .unwrap_or("?")
            .to_string()
    }
}

pub(super) enum Truth {
    All,
    /// Index of the first false element (`usize::MAX` for a plain `false`).
    FailsAt(usize),
    NotBool(&'static str),
}

pub(super) fn truth(v: &Value) -> Truth {
    match v {
        Value::Bool(true) => Truth::All,
        Value::Bool(false) => Truth::FailsAt(usize::MAX),
        Value::List(items) => {
            for (i, item) in items.iter().enumerate() {
                match item {
                    Value::Bool(true) => {}
                    Value::Bool(false) => return Truth::FailsAt(i),
                    other => return Truth::NotBool(other.type_name()),
                }
            }
            Truth::All
        }
        other => Truth::NotBool(other.type_name()),
    }
}

/// A short rendering for diagnostics (long lists are elided).
pub(super) fn brief(v: &Value) -> String {
    let text = match v {
        Value::Table(t) => format!(
            "<table {} rows × {} columns>",
            t.rows.len(),
            t.columns.len()
        ),
        other => other.repr(),
    };
    if text.chars().count() > 120 {
        let cut: String = text.chars().take(117).collect();
        format!("{cut}...")
    } else {
        text
    }
}
