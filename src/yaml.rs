//! The one place YAML is read or written, so the YAML library can change without touching
//! anything else.

use serde::de::DeserializeOwned;

/// Render a JSON-like document as YAML.
pub fn to_string(doc: &serde_json::Value) -> Result<String, String> {
    serde_yaml::to_string(doc).map_err(|e| e.to_string())
}

/// Why a YAML document could not be read, and where (1-based line and column; byte offset).
#[derive(Clone, Debug, PartialEq)]
pub struct YamlError {
    pub message: String,
    pub line: usize,
    pub column: usize,
    pub offset: usize,
}

impl std::fmt::Display for YamlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.line, self.column, self.message)
    }
}

fn convert(error: serde_yaml::Error) -> YamlError {
    let (line, column, offset) = error
        .location()
        .map(|l| (l.line(), l.column(), l.index()))
        .unwrap_or((1, 1, 0));
    let mut message = error.to_string();
    // The position is reported separately, as a source span.
    if let Some(cut) = message.rfind(" at line ") {
        message.truncate(cut);
    }
    YamlError {
        message,
        line,
        column,
        offset,
    }
}

/// Parse a YAML document into `T` (serde), with the position of the first problem.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, YamlError> {
    serde_yaml::from_str(text).map_err(convert)
}

/// Parse a YAML document as a JSON-like tree (the run record's files).
pub fn to_json(text: &str) -> Result<serde_json::Value, YamlError> {
    from_str(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_line_and_column() {
        let e = to_json("a: [1, 2\nb: 3\n").err();
        assert!(e.as_ref().is_some_and(|e| e.line >= 1), "{e:?}");
        let e = from_str::<Vec<u64>>("- 1\n- x\n").err();
        let e = e.unwrap_or_else(|| panic!("x is not a number"));
        assert_eq!((e.line, e.column), (2, 3));
        assert!(!e.message.contains(" at line "), "{}", e.message);
    }

    #[test]
    fn documents_round_trip() {
        let doc = serde_json::json!({"a": [1.5, "x"], "b": {"c": true}});
        let text = to_string(&doc).unwrap_or_default();
        assert_eq!(to_json(&text).ok(), Some(doc));
    }
}
