//! Builtins for results and studies: confidence intervals, bootstrap intervals for fitted
//! parameters (or any statistic), `param`, the study parameters a script reads, and `read`,
//! results saved earlier (or other data) read back as values.

use std::rc::Rc;

use rand::Rng;

use crate::builtin;
use crate::error::{BebError, BebResult, ErrorKind};
use crate::eval::interp::Interp;
use crate::eval::natives::{Arg, FromArg, Func, List, Mismatch, Native, Seed};
use crate::eval::value::Value;

pub const NATIVES: &[Native] = &[
    Interval::NATIVE,
    Bootstrap::NATIVE,
    Param::NATIVE,
    Read::NATIVE,
];

/// What `interval` takes: a number or an estimate.
#[derive(Clone, Copy, Debug)]
pub enum EstimateOrNumber {
    Num(f64),
    Estimate(crate::stats::Estimate),
    /// `none` written for the (required) argument, refused with "must be given".
    Nothing,
}

impl FromArg for EstimateOrNumber {
    const TYPE: &'static str = "estimate | number";
    const EXPECTED: &'static str = "an estimate or a number";
    fn from_value(value: &Value, _: &str) -> Result<Self, Mismatch> {
        match value {
            Value::Num(x) => Ok(EstimateOrNumber::Num(*x)),
            Value::Estimate(e) => Ok(EstimateOrNumber::Estimate(*e)),
            _ => Err(Mismatch::Type),
        }
    }
    // Binding already refuses a required argument that is not written, so this is reached
    // only for an explicit `none`.
    fn absent() -> Option<Self> {
        Some(EstimateOrNumber::Nothing)
    }
}

builtin! {
    /// The two-sided confidence interval [low, high] of an estimate at `level` percent, by the
    /// estimate's own method (Hall's skewness-corrected t for a mean of draws, calibrated
    /// Bonett for a variance, the normal approximation otherwise); a number's interval is the
    /// number itself.
    Interval = interval(x: EstimateOrNumber, level: f64 = 95) -> "list"
}

builtin! {
    /// Bootstrap f(data): resample `data` with replacement `resamples` times and summarise
    /// f's numeric result (a number, an estimate's mean, or a record or list of them) as
    /// {value, stderr, lo, hi}: the value on the data, the bootstrap standard error and
    /// the percentile interval at `level` percent.
    Bootstrap = bootstrap(data: List, f: Func, resamples: usize = 1000, level: f64 = 95, seed: Option<Seed> = none) -> "record"
}

builtin! {
    /// The value given on the command line as `--set name=...` (a study's parameters
    /// arrive this way), or `default` when the run was not given one.
    Param = param(name: Rc<str>, default: Option<Value> = none) -> "any"
}

builtin! {
    /// The contents of a CSV, JSON or YAML file (by extension) as values, read as `save`
    /// writes them: a CSV file is a table (numbers as numbers, empty cells and `none` as none,
    /// an estimate's five columns as one estimate), JSON and YAML nested lists, records,
    /// numbers, strings and booleans. A relative path is looked for in the run folder, then
    /// in the script's folder; reading elsewhere needs `--allow-read PATH`.
    Read = read(path: Rc<str>) -> "any"
}

impl Read {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        use crate::report::save::FileKind;
        let name = &*self.path.value;
        let extension = std::path::Path::new(name)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("")
            .to_ascii_lowercase();
        let (kind, what) = match extension.as_str() {
            "csv" => (FileKind::Csv, "CSV"),
            "json" => (FileKind::Json, "JSON"),
            "yaml" | "yml" => (FileKind::Yaml, "YAML"),
            other => {
                return Err(self
                    .path
                    .invalid(format!("cannot read a `.{other}` file"))
                    .with_help("read takes .csv, .json and .yaml (or .yml) files"));
            }
        };
        let mut roots = vec![interp.context().out_dir.clone()];
        roots.extend(interp.module_dirs.iter().cloned());
        let path = crate::report::confine::readable_path(name, &roots, &interp.read_roots())
            .map_err(|e| e.at(self.path.span))?;
        let text = std::fs::read_to_string(&path).map_err(|e| {
            BebError::new(ErrorKind::Io, format!("cannot read {name:?}: {e}")).at(self.path.span)
        })?;
        let document = crate::report::read::parse(kind, &text).map_err(|e| {
            BebError::value(format!("{name:?} is not valid {what}: {e}")).at(self.path.span)
        })?;
        interp.context_mut().note_input(&path);
        Ok(crate::eval::export::from_document(document))
    }
}

/// A confidence level given in percent, as a fraction.
fn level_of(level: &Arg<f64>) -> BebResult<f64> {
    let percent = **level;
    if percent > 0.0 && percent < 100.0 {
        Ok(percent / 100.0)
    } else {
        Err(level.invalid(format!(
            "a confidence level is a percentage between 0 and 100, found {percent}"
        )))
    }
}

impl Interval {
    fn run(self, _: &mut Interp) -> BebResult<Value> {
        let level = level_of(&self.level)?;
        let (lo, hi) = match *self.x {
            EstimateOrNumber::Num(x) => (x, x),
            EstimateOrNumber::Estimate(e) => {
                let (lo, hi) = e.interval(level);
                if lo.is_nan() || hi.is_nan() {
                    return Err(self
                        .x
                        .invalid("this estimate has no standard error (n < 2)"));
                }
                (lo, hi)
            }
            EstimateOrNumber::Nothing => {
                return Err(self.x.wrong_type(&self.call, "given", "nothing"));
            }
        };
        Ok(Value::list(vec![Value::Num(lo), Value::Num(hi)]))
    }
}

impl Param {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        Ok(match interp.context().params.get(&**self.name) {
            Some(v) => v.clone(),
            None => self.default.value.unwrap_or(Value::None),
        })
    }
}

/// The shape of a statistic's value: numbers at the leaves of records and lists.
enum Shape {
    Leaf,
    Record(Vec<(std::rc::Rc<str>, Shape)>),
    List(Vec<Shape>),
}

const SHAPE_HELP: &str = "f must return a number, an estimate, or a record or list of them";

fn shape_of(v: &Value) -> BebResult<Shape> {
    Ok(match v {
        Value::Num(_) | Value::Estimate(_) => Shape::Leaf,
        Value::Record(r) => Shape::Record(
            r.fields
                .iter()
                .map(|(n, v)| Ok((n.clone(), shape_of(v)?)))
                .collect::<BebResult<_>>()?,
        ),
        Value::List(items) => Shape::List(items.iter().map(shape_of).collect::<BebResult<_>>()?),
        other => {
            return Err(BebError::type_error(format!(
                "bootstrap: f returned a {}; {SHAPE_HELP}",
                other.type_name()
            )));
        }
    })
}

/// The leaves of `v` in order, checking that `v` has `shape`.
fn leaves(v: &Value, shape: &Shape, out: &mut Vec<f64>) -> BebResult<()> {
    let mismatch = || {
        BebError::value("bootstrap: f returned differently shaped results for different resamples")
    };
    match (shape, v) {
        (Shape::Leaf, Value::Num(x)) => out.push(*x),
        (Shape::Leaf, Value::Estimate(e)) => out.push(e.mean),
        (Shape::Record(fields), Value::Record(r)) if fields.len() == r.fields.len() => {
            for ((name, s), (n, v)) in fields.iter().zip(&r.fields) {
                if name != n {
                    return Err(mismatch());
                }
                leaves(v, s, out)?;
            }
        }
        (Shape::List(items), Value::List(vs)) if items.len() == vs.len() => {
            for (s, v) in items.iter().zip(vs.iter()) {
                leaves(v, s, out)?;
            }
        }
        _ => return Err(mismatch()),
    }
    Ok(())
}

/// The `q` quantile of sorted values (linear interpolation between order statistics).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let (i, frac) = (h.floor() as usize, h - h.floor());
    match sorted.get(i + 1) {
        Some(next) if frac > 0.0 => sorted[i] + frac * (next - sorted[i]),
        _ => sorted[i],
    }
}

/// {value, stderr, lo, hi} for one leaf.
fn summary(value: f64, mut replicates: Vec<f64>, level: f64) -> Value {
    let n = replicates.len() as f64;
    let finite = replicates.iter().all(|x| x.is_finite());
    let stderr = if finite {
        let mean = replicates.iter().sum::<f64>() / n;
        (replicates.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
    } else {
        f64::INFINITY
    };
    replicates.sort_by(f64::total_cmp);
    let lo = quantile(&replicates, (1.0 - level) / 2.0);
    let hi = quantile(&replicates, (1.0 + level) / 2.0);
    Value::record(vec![
        ("value", Value::Num(value)),
        ("stderr", Value::Num(stderr)),
        ("lo", Value::Num(lo)),
        ("hi", Value::Num(hi)),
    ])
}

/// Rebuild the statistic's shape with a summary at each leaf.
fn rebuild(
    shape: &Shape,
    point: &[f64],
    columns: &mut std::vec::IntoIter<Vec<f64>>,
    at: &mut usize,
    level: f64,
) -> Value {
    match shape {
        Shape::Leaf => {
            let value = point[*at];
            *at += 1;
            summary(value, columns.next().unwrap_or_default(), level)
        }
        Shape::Record(fields) => Value::Record(std::rc::Rc::new(crate::eval::value::Record {
            fields: fields
                .iter()
                .map(|(n, s)| (n.clone(), rebuild(s, point, columns, at, level)))
                .collect(),
        })),
        Shape::List(items) => Value::list(
            items
                .iter()
                .map(|s| rebuild(s, point, columns, at, level))
                .collect(),
        ),
    }
}

/// The most resamples a bootstrap may ask for.
const MAX_RESAMPLES: usize = 10_000_000;

impl Bootstrap {
    fn run(self, interp: &mut Interp) -> BebResult<Value> {
        let resamples = *self.resamples;
        if !(2..=MAX_RESAMPLES).contains(&resamples) {
            return Err(self.resamples.invalid(format!(
                "`resamples` must be between 2 and {MAX_RESAMPLES}, found {resamples}"
            )));
        }
        let level = level_of(&self.level)?;
        let data = &self.data.0;
        if data.is_empty() {
            return Err(self.data.invalid("cannot bootstrap an empty list"));
        }
        let stream = interp.seed_stream(&self.call, self.seed.as_ref());
        let span = self.call.span;
        let f = &self.f.0;
        let on_data = interp.call_simple(f, vec![Value::list(data.clone())], span)?;
        let shape = shape_of(&on_data)?;
        let mut point = Vec::new();
        leaves(&on_data, &shape, &mut point)?;
        let mut columns: Vec<Vec<f64>> = vec![Vec::with_capacity(resamples); point.len()];
        let bar = interp.progress(resamples as u64, "bootstrap");
        let n = data.len();
        let mut values = Vec::with_capacity(point.len());
        for b in 0..resamples {
            let mut rng = stream.sample_rng(b);
            let resample: Vec<Value> = (0..n)
                .map(|_| data[rng.random_range(0..n)].clone())
                .collect();
            let v = interp.call_simple(f, vec![Value::list(resample)], span)?;
            values.clear();
            leaves(&v, &shape, &mut values)?;
            for (column, x) in columns.iter_mut().zip(&values) {
                column.push(*x);
            }
            bar.inc(1);
        }
        bar.finish();
        let mut at = 0;
        Ok(rebuild(
            &shape,
            &point,
            &mut columns.into_iter(),
            &mut at,
            level,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let xs = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&xs, 0.0), 1.0);
        assert_eq!(quantile(&xs, 1.0), 5.0);
        assert_eq!(quantile(&xs, 0.5), 3.0);
        assert!((quantile(&xs, 0.125) - 1.5).abs() < 1e-12);
    }

    #[test]
    fn summaries_give_value_error_and_interval() {
        let s = summary(3.0, vec![1.0, 2.0, 3.0, 4.0, 5.0], 0.5);
        assert_eq!(
            s.to_string(),
            "{value: 3, stderr: 1.5811388300841898, lo: 2, hi: 4}"
        );
        let s = summary(1.0, vec![1.0, f64::INFINITY], 0.9);
        assert!(s.to_string().contains("stderr: inf"), "{s}");
    }
}
