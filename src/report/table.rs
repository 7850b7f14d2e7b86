//! Tables as people read them: aligned columns, numbers to six significant digits,
//! Monte Carlo cells as `mean ± stderr` with the `±` signs of a column lined up.
//! (Saved files keep full precision.)

use crate::eval::value::{Table, Value};
use crate::format;

/// One cell as shown in a printed table.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Num(x) => format::significant(*x, 6),
        Value::Estimate(e) => format::estimate(e.mean, e.stderr),
        other => other.repr(),
    }
}

/// A cell with strings unquoted (reports whose text columns are labels, not values).
fn plain_cell(value: &Value) -> String {
    match value {
        Value::Str(s) => s.to_string(),
        Value::None => String::new(),
        other => cell(other),
    }
}

fn is_numeric(value: &Value) -> bool {
    matches!(value, Value::Num(_) | Value::Estimate(_))
}

/// The cells of column `i`: in a column of estimates, means are right-aligned and standard
/// errors left-aligned, so the `±` signs line up.
fn column_cells(table: &Table, i: usize, show: fn(&Value) -> String) -> Vec<String> {
    let values: Vec<&Value> = table.rows.iter().filter_map(|r| r.get(i)).collect();
    let has_estimate = values.iter().any(|v| matches!(v, Value::Estimate(_)));
    if !has_estimate || !values.iter().all(|v| is_numeric(v)) {
        return values.iter().map(|v| show(v)).collect();
    }
    let parts: Vec<(String, String)> = values
        .iter()
        .map(|v| {
            let text = cell(v);
            match text.split_once(" ± ") {
                Some((mean, err)) => (mean.to_string(), format!("± {err}")),
                None => (text, String::new()),
            }
        })
        .collect();
    let left = parts
        .iter()
        .map(|(m, _)| m.chars().count())
        .max()
        .unwrap_or(0);
    let right = parts
        .iter()
        .map(|(_, e)| e.chars().count())
        .max()
        .unwrap_or(0);
    parts
        .into_iter()
        .map(|(m, e)| format!("{m:>left$} {e:<right$}"))
        .collect()
}

/// Render with a header and a rule; numeric columns are right-aligned.
pub fn render(table: &Table) -> String {
    render_cells(table, cell)
}

/// Render a report: like `render`, with strings unquoted and `none` left blank.
pub fn render_report(table: &Table) -> String {
    render_cells(table, plain_cell)
}

fn render_cells(table: &Table, show: fn(&Value) -> String) -> String {
    let columns: Vec<Vec<String>> = (0..table.columns.len())
        .map(|i| column_cells(table, i, show))
        .collect();
    let cells: Vec<Vec<String>> = (0..table.rows.len())
        .map(|r| {
            columns
                .iter()
                .map(|c| c.get(r).cloned().unwrap_or_default())
                .collect()
        })
        .collect();
    let numeric: Vec<bool> = (0..table.columns.len())
        .map(|i| table.rows.iter().all(|r| r.get(i).is_some_and(is_numeric)))
        .collect();
    let headers: Vec<&str> = table.columns.iter().map(|c| &**c).collect();
    layout(&headers, &cells, &numeric)
}

/// Render text cells under headers; `right[i]` right-aligns column i.
pub fn layout(headers: &[&str], cells: &[Vec<String>], right: &[bool]) -> String {
    let numeric = right;
    let mut widths: Vec<usize> = headers.iter().map(|c| c.chars().count()).collect();
    for row in cells {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let pad = |text: &str, i: usize| {
        let width = widths.get(i).copied().unwrap_or(0);
        let fill = width.saturating_sub(text.chars().count());
        if numeric.get(i).copied().unwrap_or(false) {
            format!("{}{text}", " ".repeat(fill))
        } else {
            format!("{text}{}", " ".repeat(fill))
        }
    };
    let mut lines = Vec::with_capacity(cells.len() + 2);
    let header: Vec<String> = headers.iter().enumerate().map(|(i, c)| pad(c, i)).collect();
    lines.push(header.join("  ").trim_end().to_string());
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    lines.push(rule.join("  "));
    for row in cells {
        let padded: Vec<String> = row.iter().enumerate().map(|(i, c)| pad(c, i)).collect();
        lines.push(padded.join("  ").trim_end().to_string());
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Estimate;
    use std::rc::Rc;

    #[test]
    fn estimate_columns_line_up_their_plus_minus_signs() {
        let e = |mean, stderr| {
            Value::Estimate(Estimate {
                mean,
                stderr,
                n: 10,
            })
        };
        let t = Table {
            columns: vec![Rc::from("n"), Rc::from("kl")],
            rows: vec![
                vec![Value::Num(0.0), Value::Num(9.1852)],
                vec![Value::Num(1.0), e(7.542, 0.029)],
                vec![Value::Num(2.0), e(0.00466, 0.00071)],
            ],
        };
        let text = render(&t);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[3], "1    7.542 ± 0.029");
        assert_eq!(lines[4], "2  0.00466 ± 0.00071");
        assert_eq!(lines[2], "0   9.1852");
        assert_eq!(lines[0], "n                 kl");
    }
}
