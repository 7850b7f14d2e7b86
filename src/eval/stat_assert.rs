//! `assert estimate >= x at 95%`: a one-sided test of a claim about a Monte Carlo estimate.
//! The claim is the null hypothesis: the assertion fails only when the data refute it at the
//! stated level, so sampling noise alone fails a true claim with probability at most 1 - level.

use crate::error::{BebError, BebResult};
use crate::eval::value::Value;
use crate::format;
use crate::stats::{Direction, Estimate, one_sided as test};
use crate::syntax::ast::BinaryOp;

pub struct Outcome {
    pub passed: bool,
    pub detail: String,
}

fn estimate_of(v: &Value) -> Option<Estimate> {
    match v {
        Value::Estimate(e) => Some(*e),
        Value::Num(x) => Some(Estimate {
            mean: *x,
            stderr: 0.0,
            n: 0,
        }),
        _ => None,
    }
}

/// Test `left op right` where one side is an estimate (or both numbers: then it is exact).
pub fn one_sided(left: &Value, op: BinaryOp, right: &Value, level: f64) -> BebResult<Outcome> {
    let (Some(l), Some(r)) = (estimate_of(left), estimate_of(right)) else {
        return Err(BebError::type_error(format!(
            "`at N%` compares estimates or numbers, found a {} and a {}",
            left.type_name(),
            right.type_name()
        )));
    };
    // Put the estimate on the left: `x <= e` is `e >= x`.
    let (estimate, threshold, direction) = match (
        op,
        matches!(left, Value::Estimate(_)) || !matches!(right, Value::Estimate(_)),
    ) {
        (BinaryOp::Ge | BinaryOp::Gt, true) => (l, r.mean, Direction::AtLeast),
        (BinaryOp::Le | BinaryOp::Lt, true) => (l, r.mean, Direction::AtMost),
        (BinaryOp::Ge | BinaryOp::Gt, false) => (r, l.mean, Direction::AtMost),
        (BinaryOp::Le | BinaryOp::Lt, false) => (r, l.mean, Direction::AtLeast),
        _ => {
            return Err(BebError::type_error(format!(
                "`at N%` needs <, <=, > or >=, found `{}`",
                op.symbol()
            )));
        }
    };
    if matches!(left, Value::Estimate(_)) && matches!(right, Value::Estimate(_)) {
        return Err(BebError::type_error("`at N%` compares one estimate with a number")
            .with_help("estimates of two quantities are correlated in ways beb cannot know; test their difference measured directly"));
    }
    let verdict =
        test(&estimate, direction, threshold, level).map_err(|e| BebError::value(e.to_string()))?;
    let (lo, hi) = verdict.interval;
    let claim = match direction {
        Direction::AtLeast => ">=",
        Direction::AtMost => "<=",
    };
    let detail = format!(
        "estimate {} (n={}), {}% interval [{}, {}], claim {claim} {}, one-sided p = {}: {}",
        format_estimate(&estimate),
        estimate.n,
        format::number(level * 100.0),
        format::significant(lo, 6),
        format::significant(hi, 6),
        format::number(threshold),
        format::significant(verdict.p_value, 3),
        if verdict.holds {
            "consistent with the claim"
        } else {
            "refuted"
        }
    );
    Ok(Outcome {
        passed: verdict.holds,
        detail,
    })
}

fn format_estimate(e: &Estimate) -> String {
    format!(
        "{} ± {}",
        format::significant(e.mean, 6),
        format::significant(e.stderr, 2)
    )
}
