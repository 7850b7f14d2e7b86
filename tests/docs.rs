//! The documentation's examples are tests. In every `docs/*.md`, each ```` ```beb ```` block is
//! run as a script (`beb run --seed 1`, from a temporary file in a temporary folder); when an
//! ```` ```output ```` block follows it, stdout must equal that block. The block must exit 0,
//! unless its fence says otherwise: ```` ```beb exit=1 ````.
//!
//! Also: every builtin is documented in docs/language.md with its exact signature.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// One runnable example.
struct Example {
    file: String,
    line: usize,
    code: String,
    output: Option<String>,
    exit: i32,
}

fn docs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("docs")
}

fn markdown_files() -> Vec<PathBuf> {
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
fn fenced_blocks(text: &str) -> Vec<(usize, String, String)> {
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

/// The examples of one file: each ```beb block, with the ```output block right after it.
fn examples(path: &Path) -> Vec<Example> {
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

fn scratch_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "beb-docs-test-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Run one example; a description of what went wrong, if anything did.
fn check(example: &Example) -> Option<String> {
    let dir = scratch_dir();
    std::fs::write(dir.join("example.beb"), &example.code).expect("write the example");
    let result = Command::new(env!("CARGO_BIN_EXE_beb"))
        .args(["run", "--seed", "1", "example.beb"])
        .current_dir(&dir)
        .env("NO_COLOR", "1")
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    let output = match result {
        Ok(o) => o,
        Err(e) => return Some(format!("cannot start beb: {e}")),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut problems = Vec::new();
    if output.status.code() != Some(example.exit) {
        problems.push(format!(
            "exit status {:?}, expected {}",
            output.status.code(),
            example.exit
        ));
    }
    if let Some(expected) = example.output.as_ref().filter(|e| **e != stdout) {
        problems.push(format!(
            "stdout differs\n--- expected ---\n{expected}--- actual ---\n{stdout}"
        ));
    }
    if problems.is_empty() {
        return None;
    }
    Some(format!(
        "{}:{}: {}\n--- code ---\n{}--- stderr ---\n{stderr}",
        example.file,
        example.line,
        problems.join("; "),
        example.code
    ))
}

#[test]
fn examples_in_the_docs_run_and_print_what_they_show() {
    let files = markdown_files();
    assert!(!files.is_empty(), "no docs/*.md files");
    let all: Vec<Example> = files.iter().flat_map(|f| examples(f)).collect();
    assert!(
        all.len() >= 50,
        "expected the reference's examples, found {}",
        all.len()
    );
    let failures: Vec<String> = all.iter().filter_map(check).collect();
    assert!(
        failures.is_empty(),
        "{} of {} doc examples failed:\n\n{}",
        failures.len(),
        all.len(),
        failures.join("\n\n")
    );
}

/// Builtin modules whose every builtin the docs document.
const DOCUMENTED_MODULES: &[&str] = &[
    "prelude",
    "models",
    "neural",
    "data",
    "finetune",
    "probe",
    "results",
    "generation",
    "labels",
];

#[test]
fn every_builtin_is_documented_with_its_signature() {
    // The reference spans docs/*.md (language.md, models.md, ...).
    let mut reference = String::new();
    for entry in std::fs::read_dir(docs_dir()).expect("read docs/") {
        let path = entry.expect("docs entry").path();
        if path.extension().is_some_and(|e| e == "md") {
            reference += &std::fs::read_to_string(&path).expect("read a docs page");
        }
    }
    let interp = beb::eval::Interp::new(0, Box::new(std::io::sink()));
    let mut checked = 0;
    let mut missing = Vec::new();
    for builtin in interp
        .builtins()
        .filter(|b| DOCUMENTED_MODULES.contains(&b.module))
    {
        checked += 1;
        if !reference.contains(builtin.signature.as_str()) {
            missing.push(format!(
                "{} ({}): `{}`",
                builtin.name, builtin.module, builtin.signature
            ));
        }
    }
    assert!(
        checked > 0,
        "no builtins found in modules {DOCUMENTED_MODULES:?}"
    );
    assert!(
        missing.is_empty(),
        "builtins missing from docs/*.md (document each with its exact signature):\n{}",
        missing.join("\n")
    );
}

/// The fence parser itself: an output block belongs only to the block right before it.
#[test]
fn fences_pair_code_with_the_output_that_follows() {
    let text = "a\n```beb\nprint 1\n```\n\n```output\n1\n```\n```beb exit=1\nassert false\n```\n```text\nx\n```\n";
    let dir = scratch_dir();
    let path = dir.join("sample.md");
    std::fs::write(&path, text).expect("write sample");
    let found = examples(&path);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].code, "print 1\n");
    assert_eq!(found[0].output.as_deref(), Some("1\n"));
    assert_eq!((found[0].line, found[0].exit), (2, 0));
    assert_eq!(found[1].output, None);
    assert_eq!(found[1].exit, 1);
}
