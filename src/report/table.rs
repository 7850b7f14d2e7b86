//! Tables as people read them: aligned columns, numbers to six significant digits,
//! Monte Carlo cells as `mean ± stderr` with the `±` signs of a column lined up.
//! (Saved files keep full precision.)
//!
//! Tables arrive as plain data, a [`Grid`] of [`Cell`]s; the interpreter's values become cells
//! in `eval::export`.

use crate::format;
use crate::stats::Estimate;

/// One cell of a table, as plain data.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Num(f64),
    Estimate(Estimate),
    /// A string: quoted in a printed table, as it is in a report and in CSV.
    Text(String),
    /// No value (`none`): blank in a report, `none` elsewhere.
    Empty,
    /// Any other value, already written as text (`true`, `[1, 2]`, `0..3`).
    Other(String),
}

/// A table as plain data: named columns, and rows of cells (a row may be shorter or longer
/// than the header; the cells past it are not shown).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Grid {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

/// One cell as shown in a printed table.
pub fn cell(value: &Cell) -> String {
    match value {
        Cell::Num(x) => format::significant(*x, 6),
        Cell::Estimate(e) => format::estimate(e.mean, e.stderr),
        Cell::Text(s) => format!("{s:?}"),
        Cell::Empty => "none".to_string(),
        Cell::Other(text) => text.clone(),
    }
}

/// A cell with strings unquoted (reports whose text columns are labels, not values).
fn plain_cell(value: &Cell) -> String {
    match value {
        Cell::Text(s) => s.clone(),
        Cell::Empty => String::new(),
        other => cell(other),
    }
}

fn is_numeric(value: &Cell) -> bool {
    matches!(value, Cell::Num(_) | Cell::Estimate(_))
}

/// The cells of column `i`: in a column of estimates, means are right-aligned and standard
/// errors left-aligned, so the `±` signs line up.
fn column_cells(table: &Grid, i: usize, show: fn(&Cell) -> String) -> Vec<String> {
    let values: Vec<&Cell> = table.rows.iter().filter_map(|r| r.get(i)).collect();
    let has_estimate = values.iter().any(|v| matches!(v, Cell::Estimate(_)));
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
pub fn render(table: &Grid) -> String {
    render_cells(table, cell)
}

/// Render a report: like `render`, with strings unquoted and `none` left blank.
pub fn render_report(table: &Grid) -> String {
    render_cells(table, plain_cell)
}

fn render_cells(table: &Grid, show: fn(&Cell) -> String) -> String {
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
    let headers: Vec<&str> = table.columns.iter().map(String::as_str).collect();
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

    #[test]
    fn estimate_columns_line_up_their_plus_minus_signs() {
        let e = |mean, stderr| Cell::Estimate(Estimate::new(mean, stderr, 10));
        let t = Grid {
            columns: vec!["n".into(), "kl".into()],
            rows: vec![
                vec![Cell::Num(0.0), Cell::Num(9.1852)],
                vec![Cell::Num(1.0), e(7.542, 0.029)],
                vec![Cell::Num(2.0), e(0.00466, 0.00071)],
            ],
        };
        let text = render(&t);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[3], "1    7.542 ± 0.029");
        assert_eq!(lines[4], "2  0.00466 ± 0.00071");
        assert_eq!(lines[2], "0   9.1852");
        assert_eq!(lines[0], "n                 kl");
    }

    #[test]
    fn reports_show_strings_unquoted_and_none_blank() {
        let t = Grid {
            columns: vec!["a".into(), "b".into()],
            rows: vec![vec![Cell::Text("x".into()), Cell::Empty]],
        };
        assert_eq!(render(&t).lines().nth(2), Some("\"x\"  none"));
        assert_eq!(render_report(&t).lines().nth(2), Some("x"));
    }
}
