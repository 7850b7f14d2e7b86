//! The documentation's runnable examples: each ```` ```beb ```` block of `docs/*.md`, with the
//! ```` ```output ```` block right after it, if any.

use std::path::{Path, PathBuf};

/// One runnable example.
pub struct Example {
    pub file: String,
    pub line: usize,
    pub code: String,
    pub output: Option<String>,
    pub exit: i32,
}

/// The documentation folder.
pub fn docs_dir() -> PathBuf {
    super::root().join("docs")
}

/// The pages of the documentation, `docs/*.md`, sorted.
pub fn markdown_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(docs_dir())
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "md"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Fenced blocks as (line of the opening fence, info string, body).
pub fn fenced_blocks(text: &str) -> Vec<(usize, String, String)> {
    let mut blocks = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((i, line)) = lines.next() {
        let Some(info) = line.trim_start().strip_prefix("```") else {
            continue;
        };
        let mut body = String::new();
        for (_, inner) in lines.by_ref() {
            if inner.trim_start().starts_with("```") {
                break;
            }
            body.push_str(inner);
            body.push('\n');
        }
        blocks.push((i + 1, info.trim().to_string(), body));
    }
    blocks
}

/// The examples of one page: each ```beb block (`exit=N` in its fence gives the exit status
/// it must end with), with the ```output block right after it.
pub fn examples(path: &Path) -> Vec<Example> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let blocks = fenced_blocks(&text);
    let mut out = Vec::new();
    for (k, (line, info, body)) in blocks.iter().enumerate() {
        let mut words = info.split_whitespace();
        if words.next() != Some("beb") {
            continue;
        }
        let mut exit = 0;
        for word in words {
            match word.strip_prefix("exit=").and_then(|n| n.parse().ok()) {
                Some(code) => exit = code,
                None => panic!("{file}:{line}: unknown fence attribute {word:?} (known: exit=N)"),
            }
        }
        let output = blocks
            .get(k + 1)
            .filter(|(_, info, _)| info == "output")
            .map(|(_, _, b)| b.clone());
        out.push(Example {
            file: file.clone(),
            line: *line,
            code: body.clone(),
            output,
            exit,
        });
    }
    out
}

/// Every example of every page.
pub fn all_examples() -> Vec<Example> {
    markdown_files().iter().flat_map(|f| examples(f)).collect()
}
