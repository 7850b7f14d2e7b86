//! `assert estimate >= x at 95%`: a one-sided test of a claim about a Monte Carlo estimate.
//! The claim is the null hypothesis: the assertion fails only when the data refute it at the
//! stated level, so sampling noise alone fails a true claim with probability at most 1 - level.
//!
//! A claim about a whole curve (`assert curve.kl <= curve.bound at 95%`, lists on either side)
//! tests every point one-sided and applies the Holm–Bonferroni correction, so the chance that
//! sampling noise refutes *any* point of a true curve is at most 1 - level (family-wise).

use crate::error::{BebError, BebResult};
use crate::eval::ops;
use crate::eval::value::Value;
use crate::format;
use crate::stats::{Direction, Estimate, Verdict, holm, one_sided as test};
use crate::syntax::ast::BinaryOp;

pub struct Outcome {
    pub passed: bool,
    pub detail: String,
}

/// The seed streams an estimate was drawn from, when known.
pub type StreamOf<'a> = &'a dyn Fn(&Estimate) -> Option<String>;

fn estimate_of(v: &Value) -> Option<Estimate> {
    match v {
        Value::Estimate(e) => Some(*e),
        Value::Num(x) => Some(Estimate::new(*x, 0.0, 0)),
        _ => None,
    }
}

fn is_list(v: &Value) -> bool {
    matches!(v, Value::List(_) | Value::Range(_))
}

/// One claim: the estimate (or exact number), the threshold and the claim's direction.
struct Claim {
    estimate: Estimate,
    threshold: f64,
    direction: Direction,
    sampled: bool,
}

fn claim(left: &Value, op: BinaryOp, right: &Value) -> BebResult<Claim> {
    let (Some(l), Some(r)) = (estimate_of(left), estimate_of(right)) else {
        return Err(BebError::type_error(format!(
            "`at N%` compares estimates or numbers, found a {} and a {}",
            left.type_name(),
            right.type_name()
        )));
    };
    let left_is_estimate = matches!(left, Value::Estimate(_));
    let right_is_estimate = matches!(right, Value::Estimate(_));
    if left_is_estimate && right_is_estimate {
        return Err(BebError::type_error("`at N%` compares one estimate with a number")
            .with_help("estimates of two quantities are correlated in ways beb cannot know; test their difference measured directly"));
    }
    // Put the estimate on the left: `x <= e` is `e >= x`.
    let (estimate, threshold, direction) = match (op, left_is_estimate || !right_is_estimate) {
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
    Ok(Claim {
        estimate,
        threshold,
        direction,
        sampled: left_is_estimate || right_is_estimate,
    })
}

fn symbol(direction: Direction) -> &'static str {
    match direction {
        Direction::AtLeast => ">=",
        Direction::AtMost => "<=",
    }
}

fn format_estimate(e: &Estimate) -> String {
    format!(
        "{} ± {}",
        format::significant(e.mean, 6),
        format::significant(e.stderr, 2)
    )
}

/// "estimate m ± s (n=N), 95% interval [lo, hi], claim >= x, one-sided p = P (test)".
fn describe(v: &Verdict) -> String {
    let (lo, hi) = v.interval;
    format!(
        "estimate {} (n={}), {}% interval [{}, {}], claim {} {}, one-sided p = {} ({})",
        format_estimate(&v.estimate),
        v.estimate.n,
        format::number(v.level * 100.0),
        format::significant(lo, 6),
        format::significant(hi, 6),
        symbol(v.direction),
        format::number(v.threshold),
        format::significant(v.p_value, 3),
        v.estimate.test_name(),
    )
}

fn stream_text(stream: Option<String>) -> String {
    match stream {
        Some(s) => format!("seed stream {s}"),
        None => "seed stream: not recorded".into(),
    }
}

/// Test `left op right` at `level` (e.g. 0.95). One side holds an estimate (or both are
/// numbers, and the comparison is exact); on lists, every point is tested and the family is
/// corrected with Holm–Bonferroni. `x` names the points of a table column (`n = 3`).
pub fn one_sided(
    left: &Value,
    op: BinaryOp,
    right: &Value,
    level: f64,
    stream_of: StreamOf,
    x: Option<&(String, Vec<Value>)>,
) -> BebResult<Outcome> {
    if is_list(left) || is_list(right) {
        return curve(left, op, right, level, stream_of, x);
    }
    let c = claim(left, op, right)?;
    let verdict = test(&c.estimate, c.direction, c.threshold, level)
        .map_err(|e| BebError::value(e.to_string()))?;
    let stream = if c.sampled {
        format!(" ({})", stream_text(stream_of(&c.estimate)))
    } else {
        String::new()
    };
    let detail = format!(
        "{}{stream}: {}",
        describe(&verdict),
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

/// The points of a curve claim, tested one by one and corrected together.
fn curve(
    left: &Value,
    op: BinaryOp,
    right: &Value,
    level: f64,
    stream_of: StreamOf,
    x: Option<&(String, Vec<Value>)>,
) -> BebResult<Outcome> {
    let items = |v: &Value| -> BebResult<Option<Vec<Value>>> {
        Ok(if is_list(v) {
            Some(ops::elements(v)?)
        } else {
            None
        })
    };
    let (ls, rs) = (items(left)?, items(right)?);
    let len = ls.as_ref().or(rs.as_ref()).map_or(0, Vec::len);
    if let (Some(a), Some(b)) = (&ls, &rs)
        && a.len() != b.len()
    {
        return Err(BebError::value(format!(
            "a curve claim needs lists of the same length, found {} and {}",
            a.len(),
            b.len()
        )));
    }
    let pick = |side: &Option<Vec<Value>>, whole: &Value, i: usize| match side {
        Some(v) => v[i].clone(),
        None => whole.clone(),
    };
    let mut claims = Vec::with_capacity(len);
    let mut verdicts = Vec::with_capacity(len);
    for i in 0..len {
        let c = claim(&pick(&ls, left, i), op, &pick(&rs, right, i))
            .map_err(|e| BebError::new(e.kind, format!("at element {i}: {}", e.message)))?;
        verdicts.push(
            test(&c.estimate, c.direction, c.threshold, level)
                .map_err(|e| BebError::value(format!("at element {i}: {e}")))?,
        );
        claims.push(c);
    }
    if verdicts.is_empty() {
        return Ok(Outcome {
            passed: true,
            detail: "an empty curve: nothing to test".into(),
        });
    }
    let corrected = holm(&verdicts, level).map_err(|e| BebError::value(e.to_string()))?;
    let point = |i: usize| match x.and_then(|(name, xs)| xs.get(i).map(|v| (name, v))) {
        Some((name, v)) => format!("{name} = {}", v.repr()),
        None => format!("element {i}"),
    };
    let mut streams: Vec<String> = Vec::new();
    for c in claims.iter().filter(|c| c.sampled) {
        let s = stream_text(stream_of(&c.estimate));
        if !streams.contains(&s) {
            streams.push(s);
        }
    }
    let streams = match streams.len() {
        0 => String::new(),
        1..=2 => format!("; {}", streams.join("; ")),
        n => format!("; {} and {} other streams", streams[0], n - 1),
    };
    let family = format!(
        "{len} points tested one-sided, Holm–Bonferroni correction for {len} comparisons \
         (family-wise level {}%){streams}",
        format::number(level * 100.0)
    );
    let refuted: Vec<usize> = (0..len).filter(|&i| !corrected[i].holds).collect();
    if refuted.is_empty() {
        let weakest = (0..len)
            .min_by(|&a, &b| corrected[a].adjusted_p.total_cmp(&corrected[b].adjusted_p))
            .unwrap_or(0);
        let v = &corrected[weakest];
        return Ok(Outcome {
            passed: true,
            detail: format!(
                "{family}: all consistent with the claim; smallest adjusted p = {} at {}",
                format::significant(v.adjusted_p, 3),
                point(weakest)
            ),
        });
    }
    let shown: Vec<String> = refuted
        .iter()
        .take(3)
        .map(|&i| {
            format!(
                "at {}: {}, Holm-adjusted p = {}",
                point(i),
                describe(&corrected[i]),
                format::significant(corrected[i].adjusted_p, 3)
            )
        })
        .collect();
    let more = if refuted.len() > 3 {
        format!("; and {} more", refuted.len() - 3)
    } else {
        String::new()
    };
    Ok(Outcome {
        passed: false,
        detail: format!(
            "{family}: {} of {len} refuted — {}{more}",
            refuted.len(),
            shown.join("; ")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(mean: f64, stderr: f64) -> Value {
        Value::Estimate(Estimate::new(mean, stderr, 100))
    }

    fn none(_: &Estimate) -> Option<String> {
        None
    }

    #[test]
    fn single_claims_report_interval_n_stream_and_verdict() {
        let out = one_sided(
            &e(0.2, 0.01),
            BinaryOp::Ge,
            &Value::Num(0.3),
            0.95,
            &|_| Some("s.beb:1:1#0 (root seed 1)".into()),
            None,
        );
        let out = out.unwrap_or_else(|err| panic!("{err}"));
        assert!(!out.passed);
        for part in [
            "estimate 0.2 ± 0.01 (n=100)",
            "95% interval [0.1804, 0.2196]",
            "claim >= 0.3",
            "seed stream s.beb:1:1#0 (root seed 1)",
            "refuted",
        ] {
            assert!(out.detail.contains(part), "{part}: {}", out.detail);
        }
    }

    #[test]
    fn curves_are_corrected_for_multiple_comparisons() {
        // Each point is 1.8 standard errors above its bound: p = 0.036 one by one (refuted at
        // 95%), but Holm over 5 points multiplies the smallest by 5: consistent.
        let curve = Value::list((0..5).map(|_| e(1.18, 0.1)).collect());
        let out = one_sided(&curve, BinaryOp::Le, &Value::Num(1.0), 0.95, &none, None)
            .unwrap_or_else(|err| panic!("{err}"));
        assert!(out.passed, "{}", out.detail);
        assert!(out.detail.contains("Holm–Bonferroni"), "{}", out.detail);
        // A single such point is refuted.
        let single = one_sided(
            &e(1.18, 0.1),
            BinaryOp::Le,
            &Value::Num(1.0),
            0.95,
            &none,
            None,
        )
        .map(|o| o.passed);
        assert_eq!(single.ok(), Some(false));
        // A clear violation at one point is refuted and named by the table's x column.
        let mut points: Vec<Value> = (0..5).map(|_| e(0.5, 0.1)).collect();
        points[3] = e(2.0, 0.1);
        let xs = (
            "n".to_string(),
            (0..5).map(|i| Value::Num(i as f64)).collect(),
        );
        let out = one_sided(
            &Value::list(points),
            BinaryOp::Le,
            &Value::Num(1.0),
            0.95,
            &none,
            Some(&xs),
        )
        .unwrap_or_else(|err| panic!("{err}"));
        assert!(!out.passed);
        assert!(out.detail.contains("1 of 5 refuted"), "{}", out.detail);
        assert!(out.detail.contains("at n = 3"), "{}", out.detail);
    }

    #[test]
    fn curve_claims_need_matching_lengths() {
        let a = Value::list(vec![e(1.0, 0.1), e(1.0, 0.1)]);
        let b = Value::list(vec![Value::Num(1.0)]);
        assert!(one_sided(&a, BinaryOp::Le, &b, 0.95, &none, None).is_err());
    }
}
