//! Operators on values: arithmetic, comparison, element-wise over lists, and the few
//! operations that make sense on estimates. A result that is not a number is an error.

use std::rc::Rc;

use crate::error::{BebError, BebResult, ErrorKind};
use crate::eval::natives::iterate;
use crate::eval::value::{Text, Value};
use crate::stats::{Estimate, Shape};
use crate::syntax::ast::{BinaryOp, UnaryOp};

pub fn unary(op: UnaryOp, value: &Value) -> BebResult<Value> {
    match (op, value) {
        (UnaryOp::Neg, Value::Num(x)) => Ok(Value::Num(-x)),
        (UnaryOp::Neg, Value::Estimate(e)) => Ok(Value::Estimate(Estimate {
            mean: -e.mean,
            shape: shape_after(e.shape, true, false),
            ..*e
        })),
        (UnaryOp::Not, Value::Bool(b)) => Ok(Value::Bool(!b)),
        (_, Value::List(_) | Value::Range(_)) => {
            let items = elements(value)?;
            Ok(Value::list(
                items
                    .iter()
                    .map(|v| unary(op, v))
                    .collect::<BebResult<_>>()?,
            ))
        }
        (UnaryOp::Neg, other) => Err(BebError::type_error(format!(
            "cannot negate a {}",
            other.type_name()
        ))),
        (UnaryOp::Not, other) => Err(BebError::type_error(format!(
            "`not` needs true or false, found a {}",
            other.type_name()
        ))),
    }
}

fn is_listlike(v: &Value) -> bool {
    matches!(v, Value::List(_) | Value::Range(_))
}

/// The elements of a list or range (a range too long to hold as a list is refused).
pub fn elements(v: &Value) -> BebResult<Vec<Value>> {
    iterate(v)
        .ok_or_else(|| BebError::value(format!("{v} has too many elements to hold as a list")))
}

pub fn binary(op: BinaryOp, left: &Value, right: &Value) -> BebResult<Value> {
    match op {
        BinaryOp::Eq => return Ok(Value::Bool(left.equals(right))),
        BinaryOp::Ne => return Ok(Value::Bool(!left.equals(right))),
        _ => {}
    }
    // Element-wise over lists (and ranges), broadcasting a scalar.
    if is_listlike(left) || is_listlike(right) {
        return elementwise(op, left, right);
    }
    match (left, right) {
        (Value::Num(a), Value::Num(b)) => numeric(op, *a, *b),
        (Value::Str(a), Value::Str(b)) => match op {
            BinaryOp::Add => {
                let total = a.len() as u64 + b.len() as u64;
                crate::budget::check(&format!("a string of {total} bytes"), total, 1)
                    .map_err(BebError::value)?;
                Ok(Value::Str(Rc::from(format!("{a}{b}"))))
            }
            BinaryOp::Lt => Ok(Value::Bool(a < b)),
            BinaryOp::Le => Ok(Value::Bool(a <= b)),
            BinaryOp::Gt => Ok(Value::Bool(a > b)),
            BinaryOp::Ge => Ok(Value::Bool(a >= b)),
            _ => Err(mismatch(op, left, right)),
        },
        (Value::Text(a), Value::Text(b)) if op == BinaryOp::Add => {
            let total = (a.units.len() + b.units.len()) as u64;
            crate::budget::check(
                &format!("a text of {total} units"),
                total,
                std::mem::size_of::<crate::lm::Unit>() as u64,
            )
            .map_err(BebError::value)?;
            let mut units = a.units.clone();
            units.extend(b.units.iter().cloned());
            Ok(Value::Text(Rc::new(Text { units })))
        }
        (Value::Bool(a), Value::Bool(b)) => match op {
            BinaryOp::And => Ok(Value::Bool(*a && *b)),
            BinaryOp::Or => Ok(Value::Bool(*a || *b)),
            _ => Err(mismatch(op, left, right)),
        },
        (Value::Estimate(_), Value::Num(_)) | (Value::Num(_), Value::Estimate(_)) => estimate_op(op, left, right),
        (Value::Estimate(_), Value::Estimate(_)) => Err(BebError::type_error(format!(
            "cannot combine two estimates with `{}`",
            op.symbol()
        ))
        .with_help(
            "their difference depends on how they are correlated; measure the combined quantity directly",
        )),
        _ => Err(mismatch(op, left, right)),
    }
}

fn mismatch(op: BinaryOp, left: &Value, right: &Value) -> BebError {
    BebError::type_error(format!(
        "cannot apply `{}` to a {} and a {}",
        op.symbol(),
        left.type_name(),
        right.type_name()
    ))
}

fn elementwise(op: BinaryOp, left: &Value, right: &Value) -> BebResult<Value> {
    let items = |v: &Value| {
        if is_listlike(v) {
            elements(v).map(Some)
        } else {
            Ok(None)
        }
    };
    let out: Vec<Value> = match (items(left)?, items(right)?) {
        (Some(a), Some(b)) => {
            if a.len() != b.len() {
                return Err(BebError::new(
                    ErrorKind::Value,
                    format!(
                        "element-wise `{}` needs lists of the same length, found {} and {}",
                        op.symbol(),
                        a.len(),
                        b.len()
                    ),
                ));
            }
            a.iter()
                .zip(&b)
                .map(|(x, y)| binary(op, x, y))
                .collect::<BebResult<_>>()?
        }
        (Some(a), None) => a
            .iter()
            .map(|x| binary(op, x, right))
            .collect::<BebResult<_>>()?,
        (None, Some(b)) => b
            .iter()
            .map(|y| binary(op, left, y))
            .collect::<BebResult<_>>()?,
        (None, None) => return Err(mismatch(op, left, right)),
    };
    Ok(Value::list(out))
}

fn numeric(op: BinaryOp, a: f64, b: f64) -> BebResult<Value> {
    let result = match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div | BinaryOp::Rem if b == 0.0 => {
            return Err(BebError::new(ErrorKind::Arithmetic, "division by zero"));
        }
        BinaryOp::Div => a / b,
        BinaryOp::Rem => a.rem_euclid(b),
        BinaryOp::Pow => a.powf(b),
        BinaryOp::Lt => return Ok(Value::Bool(a < b)),
        BinaryOp::Le => return Ok(Value::Bool(a <= b)),
        BinaryOp::Gt => return Ok(Value::Bool(a > b)),
        BinaryOp::Ge => return Ok(Value::Bool(a >= b)),
        BinaryOp::And | BinaryOp::Or | BinaryOp::Eq | BinaryOp::Ne => {
            return Err(BebError::type_error(format!(
                "`{}` needs true or false, found numbers",
                op.symbol()
            )));
        }
    };
    checked(result, || {
        format!(
            "{} {} {}",
            crate::format::number(a),
            op.symbol(),
            crate::format::number(b)
        )
    })
}

/// Refuse NaN: it would silently poison every figure computed from it.
pub fn checked(x: f64, what: impl FnOnce() -> String) -> BebResult<Value> {
    if x.is_nan() {
        Err(BebError::new(
            ErrorKind::Arithmetic,
            format!("{} is not a number (NaN)", what()),
        ))
    } else {
        Ok(Value::Num(x))
    }
}

/// What is known of an estimate's distribution after negating (`flips`) or shifting it: a
/// mean's skewness changes sign; a variance's log-scale interval survives only scaling by a
/// positive number.
fn shape_after(shape: Shape, flips: bool, shifted: bool) -> Shape {
    match shape {
        Shape::Mean { skewness } if flips => Shape::Mean {
            skewness: -skewness,
        },
        Shape::Mean { .. } => shape,
        Shape::Variance { .. } if !flips && !shifted => shape,
        _ => Shape::Normal,
    }
}

/// Shifting or scaling an estimate by an exact number keeps it an estimate.
fn estimate_op(op: BinaryOp, left: &Value, right: &Value) -> BebResult<Value> {
    let (e, x, estimate_left) = match (left, right) {
        (Value::Estimate(e), Value::Num(x)) => (*e, *x, true),
        (Value::Num(x), Value::Estimate(e)) => (*e, *x, false),
        _ => return Err(mismatch(op, left, right)),
    };
    let out = match (op, estimate_left) {
        (BinaryOp::Add, _) => Estimate {
            mean: e.mean + x,
            shape: shape_after(e.shape, false, true),
            ..e
        },
        (BinaryOp::Sub, true) => Estimate {
            mean: e.mean - x,
            shape: shape_after(e.shape, false, true),
            ..e
        },
        (BinaryOp::Sub, false) => Estimate {
            mean: x - e.mean,
            shape: shape_after(e.shape, true, true),
            ..e
        },
        (BinaryOp::Mul, _) => Estimate {
            mean: e.mean * x,
            stderr: e.stderr * x.abs(),
            shape: shape_after(e.shape, x < 0.0, false),
            ..e
        },
        (BinaryOp::Div, true) if x != 0.0 => Estimate {
            mean: e.mean / x,
            stderr: e.stderr / x.abs(),
            shape: shape_after(e.shape, x < 0.0, false),
            ..e
        },
        (BinaryOp::Div, true) => {
            return Err(BebError::new(ErrorKind::Arithmetic, "division by zero"));
        }
        (op, _) if op.is_comparison() => {
            return Err(BebError::type_error(format!(
                "comparing a Monte Carlo estimate with `{}` needs a confidence level",
                op.symbol()
            ))
            .with_help(
                "write `assert estimate >= x at 95%` for a one-sided test, or compare `estimate.mean` explicitly",
            ));
        }
        _ => return Err(mismatch(op, left, right)),
    };
    if out.mean.is_nan() {
        return Err(BebError::new(
            ErrorKind::Arithmetic,
            "estimate arithmetic gave NaN",
        ));
    }
    Ok(Value::Estimate(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_broadcast_and_check_lengths() {
        let xs = Value::list(vec![Value::Num(1.0), Value::Num(2.0)]);
        let doubled = binary(BinaryOp::Mul, &xs, &Value::Num(2.0)).map(|v| v.to_string());
        assert_eq!(doubled.ok().as_deref(), Some("[2, 4]"));
        let three = Value::list(vec![Value::Num(1.0); 3]);
        assert!(binary(BinaryOp::Add, &xs, &three).is_err());
    }

    #[test]
    fn nan_and_division_by_zero_are_errors() {
        assert!(binary(BinaryOp::Div, &Value::Num(1.0), &Value::Num(0.0)).is_err());
        let inf = Value::Num(f64::INFINITY);
        assert!(binary(BinaryOp::Sub, &inf, &inf).is_err());
    }

    #[test]
    fn estimates_cannot_be_compared_without_a_level() {
        let e = Value::Estimate(Estimate::new(1.0, 0.1, 10));
        assert!(binary(BinaryOp::Ge, &e, &Value::Num(0.0)).is_err());
        assert!(binary(BinaryOp::Add, &e, &Value::Num(1.0)).is_ok());
    }
    fn num(x: f64) -> Value {
        Value::Num(x)
    }

    fn nums(xs: &[f64]) -> Value {
        Value::list(xs.iter().map(|&x| Value::Num(x)).collect())
    }

    fn shown(result: BebResult<Value>) -> String {
        result
            .map(|v| v.to_string())
            .unwrap_or_else(|e| format!("error: {}", e.message))
    }

    #[test]
    fn arithmetic_on_numbers() {
        assert_eq!(shown(binary(BinaryOp::Rem, &num(-7.0), &num(3.0))), "2");
        assert_eq!(shown(binary(BinaryOp::Rem, &num(7.0), &num(-3.0))), "1");
        assert_eq!(shown(binary(BinaryOp::Pow, &num(2.0), &num(-1.0))), "0.5");
        assert_eq!(shown(binary(BinaryOp::Pow, &num(2.0), &num(2000.0))), "inf");
        assert_eq!(
            shown(binary(BinaryOp::Rem, &num(1.0), &num(0.0))),
            "error: division by zero"
        );
        assert_eq!(
            shown(binary(BinaryOp::Pow, &num(-8.0), &num(1.0 / 3.0))),
            "error: -8 ^ 0.3333333333333333 is not a number (NaN)"
        );
        assert_eq!(
            shown(binary(BinaryOp::Mul, &num(0.0), &num(f64::INFINITY))),
            "error: 0 * inf is not a number (NaN)"
        );
    }

    #[test]
    fn comparisons_and_logic() {
        assert_eq!(
            shown(binary(
                BinaryOp::Lt,
                &Value::str("apple"),
                &Value::str("banana")
            )),
            "true"
        );
        assert_eq!(
            shown(binary(BinaryOp::Add, &Value::str("a"), &Value::str("b"))),
            "ab"
        );
        assert_eq!(
            shown(binary(
                BinaryOp::Or,
                &Value::Bool(false),
                &Value::Bool(true)
            )),
            "true"
        );
        assert_eq!(
            shown(binary(BinaryOp::And, &num(1.0), &num(1.0))),
            "error: `and` needs true or false, found numbers"
        );
        assert_eq!(
            shown(binary(BinaryOp::Sub, &Value::str("a"), &Value::str("b"))),
            "error: cannot apply `-` to a string and a string"
        );
        assert_eq!(
            shown(binary(BinaryOp::Lt, &Value::Bool(true), &num(3.0))),
            "error: cannot apply `<` to a bool and a number"
        );
    }

    #[test]
    fn equality_is_structural_not_elementwise() {
        assert_eq!(
            shown(binary(BinaryOp::Eq, &nums(&[1.0, 2.0]), &nums(&[1.0, 2.0]))),
            "true"
        );
        assert_eq!(
            shown(binary(BinaryOp::Ne, &nums(&[1.0, 2.0]), &nums(&[1.0]))),
            "true"
        );
        assert_eq!(
            shown(binary(BinaryOp::Eq, &num(1.0), &Value::str("1"))),
            "false"
        );
        assert_eq!(
            shown(binary(BinaryOp::Eq, &Value::None, &Value::None)),
            "true"
        );
    }

    #[test]
    fn elementwise_operations_recurse_and_broadcast() {
        let nested = Value::list(vec![nums(&[1.0, 2.0]), nums(&[3.0])]);
        assert_eq!(
            shown(binary(BinaryOp::Mul, &nested, &num(10.0))),
            "[[10, 20], [30]]"
        );
        assert_eq!(
            shown(binary(BinaryOp::Sub, &num(1.0), &nums(&[1.0, 2.0]))),
            "[0, -1]"
        );
        assert_eq!(
            shown(binary(BinaryOp::Lt, &nums(&[1.0, 5.0]), &num(3.0))),
            "[true, false]"
        );
        let range = Value::Range(crate::eval::value::RangeValue {
            start: 0,
            end: 3,
            inclusive: false,
        });
        assert_eq!(
            shown(binary(BinaryOp::Add, &range, &nums(&[10.0, 10.0, 10.0]))),
            "[10, 11, 12]"
        );
        let bools = Value::list(vec![Value::Bool(true), Value::Bool(false)]);
        assert_eq!(
            shown(binary(BinaryOp::And, &bools, &Value::Bool(true))),
            "[true, false]"
        );
        assert_eq!(shown(unary(UnaryOp::Not, &bools)), "[false, true]");
        assert_eq!(shown(unary(UnaryOp::Neg, &range)), "[0, -1, -2]");
        assert_eq!(
            shown(binary(
                BinaryOp::Div,
                &nums(&[1.0, 2.0]),
                &nums(&[1.0, 0.0])
            )),
            "error: division by zero"
        );
        assert_eq!(
            shown(binary(
                BinaryOp::Add,
                &nums(&[1.0]),
                &Value::record(vec![("a", num(1.0))])
            )),
            "error: cannot apply `+` to a number and a record"
        );
    }

    #[test]
    fn ranges_too_long_to_hold_are_refused() {
        let huge = Value::Range(crate::eval::value::RangeValue {
            start: 0,
            end: 1 << 40,
            inclusive: false,
        });
        let message = shown(unary(UnaryOp::Neg, &huge));
        assert!(message.contains("too many elements"), "{message}");
        let message = shown(binary(BinaryOp::Add, &huge, &num(1.0)));
        assert!(message.contains("too many elements"), "{message}");
    }

    #[test]
    fn unary_errors() {
        assert_eq!(
            shown(unary(UnaryOp::Neg, &Value::str("a"))),
            "error: cannot negate a string"
        );
        assert_eq!(
            shown(unary(UnaryOp::Not, &num(1.0))),
            "error: `not` needs true or false, found a number"
        );
    }

    #[test]
    fn estimates_shift_and_scale_by_exact_numbers() {
        let e = Value::Estimate(Estimate::new(2.0, 0.5, 10));
        let parts = |v: BebResult<Value>| match v {
            Ok(Value::Estimate(x)) => Some((x.mean, x.stderr, x.n)),
            _ => None,
        };
        assert_eq!(
            parts(binary(BinaryOp::Mul, &e, &num(-2.0))),
            Some((-4.0, 1.0, 10))
        );
        assert_eq!(
            parts(binary(BinaryOp::Sub, &num(1.0), &e)),
            Some((-1.0, 0.5, 10))
        );
        assert_eq!(
            parts(binary(BinaryOp::Sub, &e, &num(1.0))),
            Some((1.0, 0.5, 10))
        );
        assert_eq!(
            parts(binary(BinaryOp::Div, &e, &num(2.0))),
            Some((1.0, 0.25, 10))
        );
        assert_eq!(parts(unary(UnaryOp::Neg, &e)), Some((-2.0, 0.5, 10)));
        assert!(binary(BinaryOp::Div, &e, &num(0.0)).is_err());
        assert!(binary(BinaryOp::Div, &num(1.0), &e).is_err());
        assert!(binary(BinaryOp::Pow, &e, &num(2.0)).is_err());
        let both = binary(BinaryOp::Add, &e, &e).map_err(|err| err.message);
        assert_eq!(
            both.err().as_deref(),
            Some("cannot combine two estimates with `+`")
        );
        // Element-wise over a list of estimates.
        let list = Value::list(vec![e.clone(), e]);
        assert_eq!(
            shown(binary(BinaryOp::Add, &list, &num(1.0)))
                .matches("(n=10)")
                .count(),
            2
        );
    }
}
