//! Tables as people read them: aligned columns, numbers to six significant digits,
//! Monte Carlo cells as `mean ± stderr`. (Saved files keep full precision.)

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

fn is_numeric(value: &Value) -> bool {
    matches!(value, Value::Num(_) | Value::Estimate(_))
}

/// Render with a header and a rule; numeric columns are right-aligned.
pub fn render(table: &Table) -> String {
    let cells: Vec<Vec<String>> = table
        .rows
        .iter()
        .map(|row| row.iter().map(cell).collect())
        .collect();
    let mut widths: Vec<usize> = table.columns.iter().map(|c| c.chars().count()).collect();
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let numeric: Vec<bool> = (0..table.columns.len())
        .map(|i| table.rows.iter().all(|r| r.get(i).is_some_and(is_numeric)))
        .collect();
    let pad = |text: &str, i: usize| {
        let width = widths[i];
        let fill = width.saturating_sub(text.chars().count());
        if numeric[i] {
            format!("{}{text}", " ".repeat(fill))
        } else {
            format!("{text}{}", " ".repeat(fill))
        }
    };
    let mut lines = Vec::with_capacity(cells.len() + 2);
    let header: Vec<String> = table
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| pad(c, i))
        .collect();
    lines.push(header.join("  ").trim_end().to_string());
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    lines.push(rule.join("  "));
    for row in &cells {
        let padded: Vec<String> = row.iter().enumerate().map(|(i, c)| pad(c, i)).collect();
        lines.push(padded.join("  ").trim_end().to_string());
    }
    lines.join("\n")
}
