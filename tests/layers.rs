//! The crate is layered; a module may use its own layer and the layers below it, never one
//! above. This test reads every source file and fails on an upward `crate::` path, naming
//! the file, the line and both layers.

use std::path::{Path, PathBuf};

/// Layers from the bottom up, and the top-level modules in each.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "base",
        &[
            "error", "format", "yaml", "seed", "stats", "syntax", "cache", "budget",
        ],
    ),
    ("models", &["lm"]),
    ("data", &["data"]),
    ("measurement", &["measure", "fit"]),
    ("report", &["report"]),
    ("interpreter", &["eval"]),
    (
        "application",
        &[
            "record", "runner", "study", "diff", "repl", "bench", "cli", "main", "lib",
        ],
    ),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, ms)| ms.contains(&module))
}

/// The top-level module a file belongs to (`src/lm/neural/mod.rs` -> `lm`).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap_or(file);
    let first = relative
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().to_string())
        .unwrap_or_default();
    first.trim_end_matches(".rs").to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The modules a line names as `crate::NAME`, `$crate::NAME` or inside `use crate::{...}`.
fn used_modules(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or("");
            for part in inner.split(',') {
                let name = part.trim().split("::").next().unwrap_or("").trim();
                if !name.is_empty() {
                    found.push(name.to_string());
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

#[test]
fn no_module_imports_a_layer_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 20, "found only {} source files", files.len());
    let mut violations = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        let Some(own) = layer_of(&module) else {
            violations.push(format!(
                "{}: module `{module}` is in no layer (add it to LAYERS in tests/layers.rs)",
                file.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for used in used_modules(line) {
                match layer_of(&used) {
                    Some(layer) if layer > own => violations.push(format!(
                        "{}:{}: `{module}` ({}) uses `{used}` ({}): {}",
                        file.display(),
                        n + 1,
                        LAYERS[own].0,
                        LAYERS[layer].0,
                        line.trim()
                    )),
                    _ => {}
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "upward imports:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_scanner_sees_grouped_and_macro_paths() {
    assert_eq!(used_modules("use crate::eval::Interp;"), ["eval"]);
    assert_eq!(
        used_modules("use crate::{lm::ModelRef, stats};"),
        ["lm", "stats"]
    );
    assert_eq!(used_modules("$crate::eval::natives::Arg"), ["eval"]);
    assert_eq!(layer_of("lm"), Some(1));
    assert!(layer_of("report") < layer_of("eval"));
}
