//! Datasets of statements: Anthropic's persona files (model-written evaluations), plain text
//! with one statement per line, JSONL with a named field; seeded train/held-out splits; and the
//! training texts built from statements for finetuning (`texts`).

pub mod texts;

use std::path::Path;

use rand::Rng;
use rand_chacha::ChaCha20Rng;
use serde_json::Value as Json;

/// What went wrong reading a dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataError {
    /// The file cannot be read (the message has the path and the OS error).
    Io(String),
    /// The file was read but its content is not what was expected (with path and line).
    Format(String),
}

impl std::fmt::Display for DataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataError::Io(m) | DataError::Format(m) => f.write_str(m),
        }
    }
}

impl From<DataError> for crate::error::BebError {
    fn from(e: DataError) -> Self {
        use crate::error::{BebError, ErrorKind};
        match e {
            DataError::Io(m) => BebError::new(ErrorKind::Io, m),
            DataError::Format(m) => BebError::new(ErrorKind::Value, m),
        }
    }
}

fn read(path: &Path) -> Result<String, DataError> {
    std::fs::read_to_string(path)
        .map_err(|e| DataError::Io(format!("cannot read {}: {e}", path.display())))
}

/// The statements of a persona file, split by whether they show the file's behavior.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Persona {
    /// The behavior's name (the file's stem, e.g. "agreeableness").
    pub behavior: String,
    /// Statements with `answer_matching_behavior == " Yes"`, in file order.
    pub matching: Vec<String>,
    /// Statements with `answer_matching_behavior == " No"`, in file order.
    pub not_matching: Vec<String>,
}

/// A JSONL row: its line number and its object.
type Row = (usize, serde_json::Map<String, Json>);

/// The JSON objects of a JSONL file with their line numbers (blank lines skipped).
fn jsonl_rows(path: &Path) -> Result<Vec<Row>, DataError> {
    let text = read(path)?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", path.display(), i + 1);
        match serde_json::from_str::<Json>(line) {
            Ok(Json::Object(map)) => rows.push((i + 1, map)),
            Ok(_) => return Err(DataError::Format(format!("{at}: not a JSON object"))),
            Err(e) => return Err(DataError::Format(format!("{at}: not valid JSON: {e}"))),
        }
    }
    Ok(rows)
}

/// Read a persona file (Perez et al. 2022): one JSON object per line with `statement` and
/// `answer_matching_behavior` (" Yes" or " No"). Which statements show the behavior is read
/// from that field, never from row order.
pub fn read_persona(path: &Path) -> Result<Persona, DataError> {
    let mut persona = Persona {
        behavior: path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        ..Persona::default()
    };
    for (line, row) in jsonl_rows(path)? {
        let at = format!("{}:{line}", path.display());
        let field = |name: &str| match row.get(name) {
            Some(Json::String(s)) => Ok(s.clone()),
            Some(_) => Err(DataError::Format(format!("{at}: `{name}` is not a string"))),
            None => Err(DataError::Format(format!(
                "{at}: no `{name}` field (a persona file has `statement` and `answer_matching_behavior`)"
            ))),
        };
        let statement = field("statement")?;
        let answer = field("answer_matching_behavior")?;
        match answer.trim() {
            "Yes" => persona.matching.push(statement),
            "No" => persona.not_matching.push(statement),
            other => {
                return Err(DataError::Format(format!(
                    "{at}: answer_matching_behavior is {other:?}, expected \" Yes\" or \" No\""
                )));
            }
        }
    }
    Ok(persona)
}

/// One statement per non-blank line (trailing whitespace removed).
pub fn read_lines(path: &Path) -> Result<Vec<String>, DataError> {
    Ok(read(path)?
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect())
}

/// The string field `field` of every row of a JSONL file.
pub fn read_jsonl_field(path: &Path, field: &str) -> Result<Vec<String>, DataError> {
    jsonl_rows(path)?
        .into_iter()
        .map(|(line, row)| match row.get(field) {
            Some(Json::String(s)) => Ok(s.clone()),
            Some(_) => Err(DataError::Format(format!(
                "{}:{line}: `{field}` is not a string",
                path.display()
            ))),
            None => Err(DataError::Format(format!(
                "{}:{line}: no `{field}` field",
                path.display()
            ))),
        })
        .collect()
}

/// Split `items` into (train, held out): `round(held_out · n)` items chosen uniformly at random
/// by `rng` are held out; both parts keep the original order.
pub fn split<T: Clone>(items: &[T], held_out: f64, rng: &mut ChaCha20Rng) -> (Vec<T>, Vec<T>) {
    let n = items.len();
    let k = ((held_out * n as f64).round() as usize).min(n);
    // A partial Fisher-Yates shuffle: the first k positions are a uniform k-subset.
    let mut order: Vec<usize> = (0..n).collect();
    for i in 0..k {
        let j = rng.random_range(i..n);
        order.swap(i, j);
    }
    let mut held = vec![false; n];
    for &i in &order[..k] {
        held[i] = true;
    }
    let mut train = Vec::with_capacity(n - k);
    let mut test = Vec::with_capacity(k);
    for (i, item) in items.iter().enumerate() {
        if held[i] {
            test.push(item.clone());
        } else {
            train.push(item.clone());
        }
    }
    (train, test)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    fn scratch(name: &str, text: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("beb-data-{}-{name}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join(name);
        let _ = std::fs::write(&path, text);
        path
    }

    #[test]
    fn persona_rows_are_split_by_the_answer_field() {
        let path = scratch(
            "kind.jsonl",
            "{\"statement\": \"B\", \"answer_matching_behavior\": \" No\"}\n\n{\"statement\": \"A\", \"answer_matching_behavior\": \" Yes\"}\n",
        );
        let p = read_persona(&path).unwrap_or_default();
        assert_eq!(p.behavior, "kind");
        assert_eq!(p.matching, ["A"]);
        assert_eq!(p.not_matching, ["B"]);
        let bad = scratch("bad.jsonl", "{\"statement\": \"A\"}\n");
        let e = read_persona(&bad)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.contains("bad.jsonl:1") && e.contains("answer_matching_behavior"),
            "{e}"
        );
        let missing = read_persona(Path::new("/nonexistent/x.jsonl")).err();
        assert!(matches!(missing, Some(DataError::Io(m)) if m.contains("/nonexistent/x.jsonl")));
    }

    #[test]
    fn lines_and_fields() {
        let path = scratch("l.txt", "one\n\n two \r\n");
        assert_eq!(read_lines(&path).unwrap_or_default(), ["one", " two"]);
        let path = scratch(
            "f.jsonl",
            "{\"text\": \"x\"}\n{\"text\": \"y\", \"n\": 1}\n",
        );
        assert_eq!(
            read_jsonl_field(&path, "text").unwrap_or_default(),
            ["x", "y"]
        );
        assert!(read_jsonl_field(&path, "n").is_err());
    }

    #[test]
    fn splits_are_seeded_partitions_in_order() {
        let items: Vec<usize> = (0..10).collect();
        let (a, b) = split(&items, 0.3, &mut ChaCha20Rng::seed_from_u64(1));
        assert_eq!((a.len(), b.len()), (7, 3));
        let mut all = [a.clone(), b.clone()].concat();
        all.sort();
        assert_eq!(all, items);
        assert!(a.windows(2).all(|w| w[0] < w[1]) && b.windows(2).all(|w| w[0] < w[1]));
        let (a2, _) = split(&items, 0.3, &mut ChaCha20Rng::seed_from_u64(1));
        assert_eq!(a, a2);
        let (_, none) = split(&items, 0.0, &mut ChaCha20Rng::seed_from_u64(1));
        assert!(none.is_empty());
    }
}
