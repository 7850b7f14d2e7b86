//! The `plot` statement: `plot a, b to "file.svg" with {options}` turns lists, table columns
//! and tables into a figure (see `report::plot`) written atomically into the run folder.

use std::rc::Rc;

use crate::error::{BebError, BebResult};
use crate::eval::env::Env;
use crate::eval::interp::{Eval, Interp};
use crate::eval::ops;
use crate::eval::value::Value;
use crate::eval::value::access::field;
use crate::report::plot::{Figure, Format, Legend, Line, Point, Series};
use crate::stats::Z95;
use crate::syntax::ast::{Expr, ExprKind};

/// The options `with {...}` accepts, for errors and suggestions.
const OPTIONS: [&str; 13] = [
    "title", "x", "y", "log_x", "log_y", "labels", "styles", "markers", "width", "height",
    "legend", "xlim", "ylim",
];

/// A series as written: for a table column `t.col`, the table's first column gives the x
/// values: (x column name, x values, the column's name as the label).
pub(crate) type Column = (String, Vec<Value>, String);

impl Interp {
    /// Evaluate a series expression; for `table.column`, also the table's first column.
    pub(crate) fn eval_series(
        &mut self,
        expr: &Expr,
        env: &Rc<Env>,
    ) -> Eval<(Value, Option<Column>)> {
        if let ExprKind::Field { target, name } = &expr.node {
            let t = self.eval(target, env)?;
            let value = field(&t, &name.node).map_err(|e| e.at(name.span))?;
            if let Value::Table(table) = &t
                && table.columns.len() > 1
                && table.columns.first().is_some_and(|c| **c != *name.node)
            {
                let x = (
                    table.columns[0].to_string(),
                    table.column(0),
                    name.node.to_string(),
                );
                return Ok((value, Some(x)));
            }
            return Ok((value, None));
        }
        Ok((self.eval(expr, env)?, None))
    }

    pub(crate) fn exec_plot(
        &mut self,
        series: &[Expr],
        path: &Expr,
        options: Option<&Expr>,
        env: &Rc<Env>,
    ) -> Eval<()> {
        let mut figure = Figure::default();
        let mut x_names: Vec<String> = Vec::new();
        for expr in series {
            let (value, column) = self.eval_series(expr, env)?;
            let label = match &column {
                Some((_, _, name)) => name.clone(),
                None => self.snippet(expr.span),
            };
            let x = column
                .as_ref()
                .map(|(name, xs, _)| (name.as_str(), xs.as_slice()));
            let made = to_series(&value, &label, x).map_err(|e| e.at(expr.span))?;
            for (s, x_name) in made {
                if !x_names.contains(&x_name) {
                    x_names.push(x_name);
                }
                figure.series.push(s);
            }
        }
        if let Some(o) = options {
            let value = self.eval(o, env)?;
            apply_options(&mut figure, &value).map_err(|e| e.at(o.span))?;
        }
        if figure.x_label.is_empty() {
            figure.x_label = x_names.join(", ");
        }
        if figure.y_label.is_empty() && figure.series.len() == 1 {
            figure.y_label = figure.series[0].label.clone();
        }
        let name = match self.eval(path, env)? {
            Value::Str(s) => s,
            other => {
                return Err(BebError::type_error(format!(
                    "`plot ... to` needs a file name string, found a {}",
                    other.type_name()
                ))
                .at(path.span)
                .into());
            }
        };
        let format = std::path::Path::new(&*name)
            .extension()
            .and_then(|e| e.to_str())
            .and_then(Format::from_extension)
            .ok_or_else(|| {
                BebError::value(format!("cannot plot to {name:?}"))
                    .with_help("plots are written as .svg, .png or .pdf files")
                    .at(path.span)
            })?;
        let rendered = crate::report::plot::render(&figure, format)
            .map_err(|e| BebError::value(format!("cannot draw {name:?}: {e}")).at(path.span))?;
        let (target, shown) =
            crate::report::confine::confined_path(&name, &self.run.out_dir, &self.run.allow_write)
                .map_err(|e| e.at(path.span))?;
        crate::report::save::write_atomic(&target, &rendered.bytes).map_err(|e| e.at(path.span))?;
        if rendered.dropped > 0 {
            self.warn(&format!(
                "{shown}: {} point(s) not drawn (infinite, or not positive on a log axis)",
                rendered.dropped
            ));
        }
        self.run.plots.push(shown);
        Ok(())
    }
}

fn number_of(v: &Value) -> Option<(f64, Option<f64>)> {
    match v {
        Value::Num(x) => Some((*x, None)),
        Value::Estimate(e) => Some((e.mean, Some(Z95 * e.stderr))),
        _ => None,
    }
}

fn is_numeric_column(values: &[Value]) -> bool {
    !values.is_empty() && values.iter().all(|v| number_of(v).is_some())
}

/// Points from y values (numbers or estimates) and optional x values (numbers).
fn points(ys: &[Value], xs: Option<&[Value]>, label: &str) -> BebResult<Vec<Point>> {
    if let Some(xs) = xs
        && xs.len() != ys.len()
    {
        return Err(BebError::value(format!(
            "`{label}` has {} values but {} x values",
            ys.len(),
            xs.len()
        )));
    }
    let mut out = Vec::with_capacity(ys.len());
    for (i, y) in ys.iter().enumerate() {
        let (y, err) = number_of(y).ok_or_else(|| {
            BebError::type_error(format!(
                "`{label}` has a {} at position {i}; a plot needs numbers or estimates",
                y.type_name()
            ))
        })?;
        let x = match xs {
            Some(xs) => match &xs[i] {
                Value::Num(x) => *x,
                Value::Estimate(e) => e.mean,
                other => {
                    return Err(BebError::type_error(format!(
                        "x values must be numbers, found a {} at position {i}",
                        other.type_name()
                    )));
                }
            },
            None => i as f64,
        };
        out.push(Point { x, y, err });
    }
    Ok(out)
}

/// One value to plot as series, each with the name of its x values.
fn to_series(
    value: &Value,
    label: &str,
    x: Option<(&str, &[Value])>,
) -> BebResult<Vec<(Series, String)>> {
    match value {
        Value::Table(t) => {
            let first = t.column(0);
            let (x_name, xs) = if is_numeric_column(&first) {
                (t.columns[0].to_string(), Some(first))
            } else {
                ("index".to_string(), None)
            };
            let start = usize::from(xs.is_some());
            let mut out = Vec::new();
            for (i, name) in t.columns.iter().enumerate().skip(start) {
                let ys = t.column(i);
                if is_numeric_column(&ys) {
                    out.push((
                        Series::new(name.to_string(), points(&ys, xs.as_deref(), name)?),
                        x_name.clone(),
                    ));
                }
            }
            if out.is_empty() {
                return Err(BebError::type_error(
                    "this table has no column of numbers or estimates to plot",
                ));
            }
            Ok(out)
        }
        Value::Record(r) => {
            let ys = r.get("y").ok_or_else(|| {
                BebError::type_error(
                    "a record to plot needs fields `y` (and optionally `x`, `label`)",
                )
            })?;
            let ys = ops::elements(ys)?;
            let xs = match r.get("x") {
                Some(x) => Some(ops::elements(x)?),
                None => None,
            };
            let label = match r.get("label") {
                Some(Value::Str(s)) => s.to_string(),
                Some(other) => {
                    return Err(BebError::type_error(format!(
                        "a series label is a string, found a {}",
                        other.type_name()
                    )));
                }
                None => label.to_string(),
            };
            let x_name = if xs.is_some() { "x" } else { "index" };
            Ok(vec![(
                Series::new(label.clone(), points(&ys, xs.as_deref(), &label)?),
                x_name.to_string(),
            )])
        }
        Value::List(_) | Value::Range(_) => {
            let ys = ops::elements(value)?;
            let (x_name, xs) = match x {
                Some((name, xs)) if is_numeric_column(xs) => (name.to_string(), Some(xs)),
                _ => ("index".to_string(), None),
            };
            Ok(vec![(Series::new(label, points(&ys, xs, label)?), x_name)])
        }
        other => Err(BebError::type_error(format!(
            "cannot plot a {}: plot lists or table columns of numbers or estimates, tables, or \
             records {{x: [...], y: [...]}}",
            other.type_name()
        ))),
    }
}

fn option_error(name: &str, expected: &str, found: &Value) -> BebError {
    BebError::type_error(format!(
        "plot option `{name}` must be {expected}, found {}",
        found.repr()
    ))
}

fn string_option(name: &str, v: &Value) -> BebResult<String> {
    match v {
        Value::Str(s) => Ok(s.to_string()),
        other => Err(option_error(name, "a string", other)),
    }
}

fn bool_option(name: &str, v: &Value) -> BebResult<bool> {
    match v {
        Value::Bool(b) => Ok(*b),
        other => Err(option_error(name, "true or false", other)),
    }
}

fn range_option(name: &str, v: &Value) -> BebResult<(f64, f64)> {
    let items = ops::elements(v).map_err(|_| option_error(name, "[low, high]", v))?;
    match items.as_slice() {
        [Value::Num(a), Value::Num(b)] if a < b => Ok((*a, *b)),
        _ => Err(option_error(name, "[low, high] with low < high", v)),
    }
}

fn size_option(name: &str, v: &Value) -> BebResult<u32> {
    match v {
        Value::Num(x) if x.fract() == 0.0 && (100.0..=4000.0).contains(x) => Ok(*x as u32),
        other => Err(option_error(
            name,
            "a whole number of points from 100 to 4000",
            other,
        )),
    }
}

/// A list option with one entry per series.
fn per_series(figure: &Figure, name: &str, v: &Value, expected: &str) -> BebResult<Vec<Value>> {
    let items = ops::elements(v).map_err(|_| option_error(name, expected, v))?;
    if items.len() != figure.series.len() {
        return Err(BebError::value(format!(
            "plot option `{name}` has {} entries for {} series",
            items.len(),
            figure.series.len()
        )));
    }
    Ok(items)
}

/// `with {title: ..., x: ..., y: ..., log_y: true, labels: [...], ...}`.
fn apply_options(figure: &mut Figure, options: &Value) -> BebResult<()> {
    let Value::Record(r) = options else {
        return Err(BebError::type_error(format!(
            "`plot ... with` takes a record of options, found a {}",
            options.type_name()
        ))
        .with_help(format!("options: {}", OPTIONS.join(", "))));
    };
    for (name, v) in &r.fields {
        if matches!(v, Value::None) {
            continue;
        }
        match &**name {
            "title" => figure.title = Some(string_option(name, v)?),
            "x" => figure.x_label = string_option(name, v)?,
            "y" => figure.y_label = string_option(name, v)?,
            "log_x" => figure.log_x = bool_option(name, v)?,
            "log_y" => figure.log_y = bool_option(name, v)?,
            "markers" => {
                let flags = match v {
                    Value::Bool(b) => vec![*b; figure.series.len()],
                    _ => per_series(figure, name, v, "true or false, or a list of them")?
                        .iter()
                        .map(|f| bool_option(name, f))
                        .collect::<BebResult<_>>()?,
                };
                for (s, f) in figure.series.iter_mut().zip(flags) {
                    s.markers = f;
                }
            }
            "styles" => {
                let styles = per_series(figure, name, v, "a list of line styles")?
                    .iter()
                    .map(|l| {
                        let text = string_option(name, l)?;
                        Line::parse(&text).ok_or_else(|| {
                            BebError::value(format!("unknown line style {text:?}"))
                                .with_help(format!("styles: {}", Line::NAMES.join(", ")))
                        })
                    })
                    .collect::<BebResult<Vec<_>>>()?;
                for (s, l) in figure.series.iter_mut().zip(styles) {
                    s.line = l;
                }
            }
            "width" => figure.width = size_option(name, v)?,
            "height" => figure.height = size_option(name, v)?,
            "xlim" => figure.x_range = Some(range_option(name, v)?),
            "ylim" => figure.y_range = Some(range_option(name, v)?),
            "legend" => {
                let text = string_option(name, v)?;
                figure.legend = Legend::parse(&text).ok_or_else(|| {
                    BebError::value(format!("unknown legend position {text:?}"))
                        .with_help(format!("positions: {}", Legend::NAMES.join(", ")))
                })?;
            }
            "labels" => {
                let labels = per_series(figure, name, v, "a list of strings")?
                    .iter()
                    .map(|l| string_option(name, l))
                    .collect::<BebResult<Vec<_>>>()?;
                for (s, l) in figure.series.iter_mut().zip(labels) {
                    s.label = l;
                }
            }
            other => {
                let mut err = BebError::value(format!("unknown plot option `{other}`"));
                err.help = Some(match crate::eval::suggest::closest(other, OPTIONS) {
                    Some(best) => format!("did you mean `{best}`? options: {}", OPTIONS.join(", ")),
                    None => format!("options: {}", OPTIONS.join(", ")),
                });
                return Err(err);
            }
        }
    }
    Ok(())
}
