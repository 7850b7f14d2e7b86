//! `read(path)`: a CSV, JSON or YAML file (by extension) as plain data, read the way `save`
//! writes it so that what a run saved reads back as the same values. JSON and YAML become a
//! JSON document; CSV becomes a table of JSON cells: a number, `true`/`false`, `none` or an
//! empty cell as null, the five columns `save` writes for an estimate (`c, c_stderr, c_n,
//! c_lo95, c_hi95`) joined back into one estimate object, anything else a string.

use serde_json::{Value as Json, json};

use crate::report::save::FileKind;

/// What a file holds.
#[derive(Clone, Debug, PartialEq)]
pub enum Document {
    /// A JSON or YAML document.
    Tree(Json),
    /// A CSV file: column names and rows of cells.
    Table {
        columns: Vec<String>,
        rows: Vec<Vec<Json>>,
    },
}

/// Parse the text of a file of kind `kind`. An error says what is wrong and where (line and
/// column), never what the file holds.
pub fn parse(kind: FileKind, text: &str) -> Result<Document, String> {
    match kind {
        FileKind::Json => serde_json::from_str(text)
            .map(Document::Tree)
            .map_err(|e| format!("line {}, column {}: {}", e.line(), e.column(), kind_of(&e))),
        FileKind::Yaml => crate::yaml::to_json(text)
            .map(Document::Tree)
            .map_err(|e| format!("line {}, column {}: {}", e.line, e.column, e.message)),
        FileKind::Csv => csv_table(text),
    }
}

/// A serde_json error's kind without its position or the offending text.
fn kind_of(e: &serde_json::Error) -> &'static str {
    use serde_json::error::Category;
    match e.classify() {
        Category::Io => "cannot be read",
        Category::Syntax => "not valid JSON",
        Category::Data => "not a JSON value",
        Category::Eof => "the JSON ends too early",
    }
}

/// A CSV cell as the value `save` wrote.
fn cell(text: &str) -> Json {
    match text {
        "" | "none" => Json::Null,
        "true" => json!(true),
        "false" => json!(false),
        _ => match text.parse::<f64>() {
            Ok(x) => crate::report::save::json_number(x),
            Err(_) => json!(text),
        },
    }
}

/// How a header's columns group: `(name, estimate?)` with an estimate spanning five columns.
fn groups(header: &[String]) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < header.len() {
        let c = &header[i];
        let suffixes = ["_stderr", "_n", "_lo95", "_hi95"];
        let estimate = header.len() >= i + 5
            && suffixes
                .iter()
                .enumerate()
                .all(|(k, s)| header[i + 1 + k] == format!("{c}{s}"));
        out.push((c.clone(), estimate));
        i += if estimate { 5 } else { 1 };
    }
    out
}

/// An estimate column's five cells as one value: an estimate, the number itself for an exact
/// number (no error, n = 0), or the first cell for anything else.
fn estimate_cell(cells: &[&str]) -> Json {
    let number = |s: &str| s.parse::<f64>().ok();
    match (
        number(cells[0]),
        number(cells[1]),
        cells[2].parse::<usize>().ok(),
    ) {
        (Some(mean), Some(stderr), Some(n)) if n > 0 || stderr != 0.0 => {
            crate::report::save::json_estimate(&crate::stats::Estimate::new(mean, stderr, n))
        }
        _ => cell(cells[0]),
    }
}

fn csv_table(text: &str) -> Result<Document, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(text.as_bytes());
    let position = |e: &csv::Error| match e.position() {
        Some(p) => format!("line {}", p.line()),
        None => "somewhere".to_string(),
    };
    let what = |e: &csv::Error| match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("a row has {len} fields where the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => "the text is not UTF-8".to_string(),
        _ => "not valid CSV".to_string(),
    };
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| format!("{}: {}", position(&e), what(&e)))?
        .iter()
        .map(str::to_string)
        .collect();
    if header.is_empty() {
        return Err("line 1: the file has no header row".into());
    }
    let groups = groups(&header);
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| format!("{}: {}", position(&e), what(&e)))?;
        let fields: Vec<&str> = record.iter().collect();
        let mut row = Vec::with_capacity(groups.len());
        let mut i = 0;
        for (_, estimate) in &groups {
            if *estimate {
                row.push(estimate_cell(&fields[i..i + 5]));
                i += 5;
            } else {
                row.push(cell(fields[i]));
                i += 1;
            }
        }
        rows.push(row);
    }
    Ok(Document::Table {
        columns: groups.into_iter().map(|(name, _)| name).collect(),
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_read_back_as_saved() {
        let doc = parse(
            FileKind::Csv,
            "n,kl,kl_stderr,kl_n,kl_lo95,kl_hi95,name\n0,1.5,0.25,4,1,2,\"a,b\"\n1,2,0,0,2,2,none\n",
        );
        let Ok(Document::Table { columns, rows }) = doc else {
            panic!("{doc:?}")
        };
        assert_eq!(columns, ["n", "kl", "name"]);
        assert_eq!(rows[0][1]["mean"], json!(1.5));
        assert_eq!(rows[0][2], json!("a,b"));
        assert_eq!(rows[1][1], json!(2));
        assert_eq!(rows[1][2], Json::Null);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse(FileKind::Csv, "a,b\n1,2\n3\n")
            .err()
            .unwrap_or_default();
        assert!(e.starts_with("line 3:"), "{e}");
        let e = parse(FileKind::Json, "{\"a\": [1,\n 2,]}")
            .err()
            .unwrap_or_default();
        assert!(e.starts_with("line 2, column"), "{e}");
        let e = parse(FileKind::Yaml, "a: [1, 2\nb: 3\n")
            .err()
            .unwrap_or_default();
        assert!(e.starts_with("line "), "{e}");
    }
}
