//! The documentation's examples are tests. In every `docs/*.md`, each ```` ```beb ```` block is
//! run as a script (`beb run --seed 1`, from a temporary file in a temporary folder); when an
//! ```` ```output ```` block follows it, stdout must equal that block. The block must exit 0,
//! unless its fence says otherwise: ```` ```beb exit=1 ````.
//!
//! Also: every builtin is documented in docs/language.md with its exact signature.

mod common;

use common::docs::{Example, all_examples, docs_dir, examples};

/// Run one example; a description of what went wrong, if anything did.
fn check(example: &Example) -> Option<String> {
    let dir = common::scratch("docs-test");
    common::write(&dir.join("example.beb"), &example.code);
    let output = common::beb(&["run", "--seed", "1", "example.beb"])
        .current_dir(&dir)
        .run();
    let _ = std::fs::remove_dir_all(&dir);
    let (stdout, stderr) = (&output.stdout, &output.stderr);
    let mut problems = Vec::new();
    if output.code != Some(example.exit) {
        problems.push(format!(
            "exit status {:?}, expected {}",
            output.code, example.exit
        ));
    }
    if let Some(expected) = example.output.as_ref().filter(|e| *e != stdout) {
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
    assert!(
        !common::docs::markdown_files().is_empty(),
        "no docs/*.md files"
    );
    let all: Vec<Example> = all_examples();
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
    "server",
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
    let pages = common::docs::markdown_files();
    assert!(
        !pages.is_empty(),
        "no docs/*.md files in {}",
        docs_dir().display()
    );
    let mut reference = String::new();
    for page in pages {
        reference += &common::read(&page);
    }
    let mut checked = 0;
    let mut missing = Vec::new();
    for builtin in common::builtins()
        .iter()
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
    let dir = common::scratch("docs-test");
    let path = dir.join("sample.md");
    common::write(&path, text);
    let found = examples(&path);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].code, "print 1\n");
    assert_eq!(found[0].output.as_deref(), Some("1\n"));
    assert_eq!((found[0].line, found[0].exit), (2, 0));
    assert_eq!(found[1].output, None);
    assert_eq!(found[1].exit, 1);
}
