//! A study's `plot:` figures: a result column of the summary over seeds against a grid
//! parameter, one series per value of the other parameters (and script), error bars the
//! across-seeds 95% Student t interval, so a figure shows what the summary table says.

use crate::report::plot::{Figure, Point, Series};
use crate::report::table::Cell;

use super::spec::{PlotSpec, SpecError, Study};
use super::{SeedSummary, interval_of};

/// The figure `spec` asks for, or why it cannot be drawn (a column no run saved, reported at
/// the `y:` of the study file).
pub(super) fn figure(
    study: &Study,
    summary: &SeedSummary,
    spec: &PlotSpec,
) -> Result<Figure, SpecError> {
    let offset = usize::from(study.scripts.len() > 1);
    // The parser checked that x is a numeric grid parameter.
    let x_index = offset
        + study
            .grid
            .iter()
            .position(|(n, _)| *n == spec.x)
            .unwrap_or(0);
    let Some(y_index) = summary.value_columns.iter().position(|c| *c == spec.y) else {
        return Err(spec.y_error(if summary.value_columns.is_empty() {
            format!("plot y `{}`: no run has saved results yet", spec.y)
        } else {
            format!(
                "plot y `{}` is not a result column (the runs saved {})",
                spec.y,
                summary.value_columns.join(", ")
            )
        }));
    };
    // One series per value of the other keys, in the grid's order.
    let mut series: Vec<(Vec<&Cell>, Vec<Point>)> = Vec::new();
    for cell in &summary.cells {
        let others: Vec<&Cell> = cell
            .keys
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != x_index)
            .map(|(_, c)| c)
            .collect();
        let Some(Cell::Num(x)) = cell.keys.get(x_index) else {
            continue;
        };
        let Some(Some(e)) = cell.values.get(y_index) else {
            continue;
        };
        let point = Point {
            x: *x,
            y: e.mean,
            err: interval_of(e).map(|(_, hi)| hi - e.mean),
        };
        match series.iter_mut().find(|(k, _)| *k == others) {
            Some((_, points)) => points.push(point),
            None => series.push((others, vec![point])),
        }
    }
    if series.is_empty() {
        return Err(spec.y_error(format!("plot y `{}`: no run saved a number there", spec.y)));
    }
    let other_names: Vec<&String> = summary
        .key_columns
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != x_index)
        .map(|(_, n)| n)
        .collect();
    let seeds = study.seeds.len();
    let series = series
        .into_iter()
        .map(|(keys, mut points)| {
            points.sort_by(|a, b| a.x.total_cmp(&b.x));
            let label = if keys.is_empty() {
                spec.y.clone()
            } else {
                keys.iter()
                    .zip(&other_names)
                    .map(|(k, n)| format!("{n} = {}", show(k)))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            Series::new(label, points)
        })
        .collect();
    Ok(Figure {
        series,
        title: Some(spec.title.clone().unwrap_or_else(|| {
            format!(
                "{}: {} (mean over {seeds} seed{}, 95% t interval)",
                study.name,
                spec.y,
                if seeds == 1 { "" } else { "s" }
            )
        })),
        x_label: spec.x_label.clone().unwrap_or_else(|| spec.x.clone()),
        y_label: spec.y_label.clone().unwrap_or_else(|| spec.y.clone()),
        log_x: spec.log_x,
        log_y: spec.log_y,
        ..Figure::default()
    })
}

/// A key value as a legend shows it: numbers compactly, strings as they are.
fn show(cell: &Cell) -> String {
    match cell {
        Cell::Num(x) => crate::format::number(*x),
        Cell::Text(s) => s.clone(),
        other => crate::report::table::cell(other),
    }
}
