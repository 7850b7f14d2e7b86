//! Format specs in string interpolation (`{x:.3}`, `{x:.3e}`).

use crate::error::{BebError, BebResult};
use crate::eval::value::Value;

/// The most digits a format spec may ask for (well past what an f64 holds).
const MAX_FORMAT_DIGITS: usize = 100;

/// `{x:.3}` (fixed decimals) and `{x:.3e}` (scientific) in string interpolation.
pub(crate) fn format_with_spec(v: &Value, spec: &str) -> BebResult<String> {
    let bad = || {
        BebError::value(format!("unknown format `:{spec}`"))
            .with_help("formats: `:.3` (3 decimals), `:.3e` (scientific)")
    };
    let body = spec.strip_prefix('.').ok_or_else(bad)?;
    let (digits, scientific) = match body.strip_suffix('e') {
        Some(d) => (d, true),
        None => (body, false),
    };
    let digits: usize = digits.parse().map_err(|_| bad())?;
    if digits > MAX_FORMAT_DIGITS {
        return Err(BebError::value(format!(
            "`:{spec}` asks for more than {MAX_FORMAT_DIGITS} digits"
        )));
    }
    let one = |x: f64| {
        if scientific {
            format!("{x:.digits$e}")
        } else {
            format!("{x:.digits$}")
        }
    };
    match v {
        Value::Num(x) => Ok(one(*x)),
        Value::Estimate(e) => Ok(format!("{} ± {} (n={})", one(e.mean), one(e.stderr), e.n)),
        Value::List(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| format_with_spec(i, spec))
                .collect::<BebResult<_>>()?;
            Ok(format!("[{}]", parts.join(", ")))
        }
        other => Err(BebError::type_error(format!(
            "`:{spec}` formats numbers, found a {}",
            other.type_name()
        ))),
    }
}
