//! Arbitrary input never panics: random token soup and mutated real scripts go through the
//! parser, the name checker and the interpreter, and every error they produce renders.
//!
//! Generated programs may loop or recurse forever, so each run gets a step budget
//! (`common::Options::fuel`), and all cases run on one thread with a large stack, as the `beb` binary
//! does. Run in release mode: `cargo test --release --test no_panic`.
//!
//! The cases are drawn from a fixed seed so that a failure reproduces; set `BEB_FUZZ_SEED` to a
//! number to explore other cases.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};

const SOUP_CASES: u32 = 10_000;
const MUTATION_CASES: u32 = 15_000;
const STEP_BUDGET: u64 = 10_000;

/// Keywords, punctuation, operators and literals of the language, and names it knows.
#[rustfmt::skip]
const TOKENS: &[&str] = &[
    // keywords
    "let", "fn", "if", "else", "for", "in", "sweep", "import", "assert", "print", "return", "true",
    "false", "and", "or", "not", "none", "save", "to", "at", "as", "sentences", "plot", "with",
    // punctuation and operators
    "(", ")", "[", "]", "{", "}", ",", ";", ":", ".", "..", "..=", ".*", "|", "@", "=", "+=", "-=",
    "*=", "/=", "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "^", "95%",
    // literals
    "0", "1", "2", "3", "-1", "0.5", "1e-4", "1_000", "2.5e2", "1e308", "\"\"", "\"a\"",
    "\"x {1 + 1}\"", "\"{x:.3}\"", "\"{x:.2e}\"", "\"\\n\\t\\\"\"", "\"a.csv\"", "\"out.json\"",
    "\"{\"", "\"\\q\"", "\"é\"",
    // names
    "x", "y", "f", "n", "xs", "t", "len", "map", "filter", "range", "sum", "mean", "sqrt", "log",
    "exp", "zip", "first", "all", "any", "round", "fmt", "min", "max", "table", "estimate", "text",
    "concat", "sort", "str", "type", "columns", "seed", "bounds",
    // comments and layout
    "# note\n", "## doc\n", "\n", "\n\n",
];

/// Small programs that put the tokens in sensible places, for the mutations to start from
/// besides the golden scripts and the examples.
const SEEDS: &[&str] = &[
    "let xs = [1, 2, 3]\nfor x in xs { print x * 2 }\n",
    "fn f(a, b = 2) { if a > b { return a } else { b } }\nprint f(1), f(3, b: 1)\n",
    "let t = sweep n in 0..3, m in [1, 2] { let k = n * m\n p: k, q: \"{k:.2}\" }\nprint t.p, t[0]\n",
    "let r = {a: 1, b: [2, 3]}\nprint r.b[-1], r[\"a\"], len(r)\nlet s = \"hello\"\nprint s[..2], s[1..=2]\n",
    "assert [1, 2] < 3, \"small\"\nassert estimate(0.5, 0.1, 10) >= 0.1 at 95%\n",
    "let n = 0\nn += 1\nn *= 3\nprint map(0..n, |v| v ^ 2), filter(range(5), |v| v % 2 == 0)\n",
    "fn loop_(k) { loop_(k + 1) }\nlet m = sentences { \"a.\": 0.5 @ 1, \"b.\": 0.5 @ -1 }\nprint m\n",
    "import bounds\nimport bounds as b\nimport bounds.*\nsave [1, 2] to \"out.csv\"\n",
];

/// Parse, check and run `source`; render every error. Panics propagate to the runner.
/// Counts the sources that parsed, so a test can tell that it reached the interpreter.
fn exercise(source: &str, out_dir: &Path, parsed: &AtomicUsize) -> Result<(), TestCaseError> {
    let run = common::run_script(
        source,
        &common::Options {
            fuel: Some(STEP_BUDGET),
            out_dir: Some(out_dir),
            name: "fuzz.beb",
            check: true,
            ..common::Options::default()
        },
    );
    if run.parsed {
        parsed.fetch_add(1, Ordering::Relaxed);
    }
    for error in run.errors() {
        let text = common::render(error);
        assert!(!text.is_empty(), "an error rendered as nothing");
    }
    Ok(())
}

fn token_soup() -> impl Strategy<Value = String> {
    let piece = (
        0..TOKENS.len(),
        prop_oneof![4 => Just(" "), 1 => Just(""), 1 => Just("\n")],
    );
    prop::collection::vec(piece, 0..48).prop_map(|pieces| {
        pieces
            .into_iter()
            .map(|(i, sep)| format!("{}{sep}", TOKENS[i]))
            .collect::<String>()
    })
}

/// One edit of a source: what to do, where (as fractions of the length), and what to insert.
#[derive(Clone, Debug)]
struct Edit {
    kind: u8,
    a: u16,
    b: u16,
    c: u16,
    token: usize,
}

fn edit() -> impl Strategy<Value = Edit> {
    (
        0u8..5,
        any::<u16>(),
        any::<u16>(),
        any::<u16>(),
        0..TOKENS.len(),
    )
        .prop_map(|(kind, a, b, c, token)| Edit {
            kind,
            a,
            b,
            c,
            token,
        })
}

/// Apply an edit on character boundaries: delete, duplicate or swap slices, insert a token, or
/// replace one character with a token.
fn apply(source: &str, e: &Edit) -> String {
    let chars: Vec<char> = source.chars().collect();
    let n = chars.len();
    let at = |x: u16| {
        if n == 0 {
            0
        } else {
            x as usize * (n + 1) / 65_536
        }
    };
    let (mut lo, mut hi) = (at(e.a), at(e.b));
    if lo > hi {
        std::mem::swap(&mut lo, &mut hi);
    }
    // Keep edited slices short, so most of the program survives an edit.
    hi = hi.min(lo + 24).min(n);
    let text = |r: &[char]| r.iter().collect::<String>();
    let token = TOKENS[e.token];
    match e.kind {
        0 => format!("{}{}", text(&chars[..lo]), text(&chars[hi..])),
        1 => format!(
            "{}{}{}",
            text(&chars[..hi]),
            text(&chars[lo..hi]),
            text(&chars[hi..])
        ),
        2 => {
            // Swap [lo, hi) with a slice of the same length starting at `c`, when they do not overlap.
            let len = hi - lo;
            let other = at(e.c).min(n.saturating_sub(len));
            if other >= hi || other + len <= lo {
                let mut out = chars.clone();
                for i in 0..len {
                    out.swap(lo + i, other + i);
                }
                text(&out)
            } else {
                source.to_string()
            }
        }
        3 => format!("{} {token} {}", text(&chars[..lo]), text(&chars[lo..])),
        _ => {
            let end = (lo + 1).min(n);
            format!("{}{token}{}", text(&chars[..lo]), text(&chars[end..]))
        }
    }
}

/// The golden scripts, the examples (but those on real models) and the seed programs above.
fn corpus() -> Vec<String> {
    let root = common::root();
    let mut files = Vec::new();
    for dir in [root.join("tests").join("golden"), root.join("examples")] {
        files.extend(common::files_under(&dir, "beb"));
    }
    files.sort();
    // Scripts on real models (examples/paper) take minutes per run, and builtins are not
    // metered by the step budget: their mutations would time the test out, not test panics.
    files.retain(|p| !p.starts_with(root.join("examples").join("paper")));
    let mut sources: Vec<String> = files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .collect();
    // The ```beb blocks of the documentation.
    sources.extend(common::docs::all_examples().into_iter().map(|e| e.code));
    sources.extend(SEEDS.iter().map(|s| s.to_string()));
    sources.retain(|s| !s.contains("$BEB_SHARED"));
    sources
}

fn runner(cases: u32, salt: u64) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 2_000,
        ..Config::default()
    };
    let seed = std::env::var("BEB_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0x6265_6221);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..16].copy_from_slice(&salt.to_le_bytes());
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
}

/// Run `body` on a thread with the stack the `beb` binary gives its interpreter.
fn on_big_stack(body: impl FnOnce() + Send + 'static) {
    let handle = std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(body)
        .expect("spawn the fuzzing thread");
    if let Err(panic) = handle.join() {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn random_token_soup_never_panics() {
    on_big_stack(|| {
        let out = common::scratch("no-panic-soup");
        let parsed = AtomicUsize::new(0);
        let result =
            runner(SOUP_CASES, 1).run(&token_soup(), |source| exercise(&source, &out, &parsed));
        let _ = std::fs::remove_dir_all(&out);
        if let Err(e) = result {
            panic!("{e}");
        }
        let parsed = parsed.into_inner();
        eprintln!("{parsed} of {SOUP_CASES} soups parsed");
        assert!(
            parsed >= SOUP_CASES as usize / 50,
            "only {parsed} of {SOUP_CASES} soups parsed"
        );
    });
}

#[test]
fn mutated_scripts_never_panic() {
    on_big_stack(|| {
        let sources = corpus();
        assert!(
            sources.len() > SEEDS.len() + 50,
            "the golden scripts and the docs' examples should be part of the corpus"
        );
        let out = common::scratch("no-panic-mutations");
        let parsed = AtomicUsize::new(0);
        let strategy = (0..sources.len(), prop::collection::vec(edit(), 1..5));
        let result = runner(MUTATION_CASES, 2).run(&strategy, |(index, edits)| {
            let source = edits
                .iter()
                .fold(sources[index].clone(), |s, e| apply(&s, e));
            exercise(&source, &out, &parsed)
        });
        let _ = std::fs::remove_dir_all(&out);
        if let Err(e) = result {
            panic!("{e}");
        }
        let parsed = parsed.into_inner();
        eprintln!("{parsed} of {MUTATION_CASES} mutants parsed");
        assert!(
            parsed >= MUTATION_CASES as usize / 10,
            "only {parsed} of {MUTATION_CASES} mutants parsed"
        );
    });
}

/// The unedited corpus runs too (its scripts are meant to be valid, or to fail cleanly).
#[test]
fn corpus_scripts_never_panic() {
    on_big_stack(|| {
        let out = common::scratch("no-panic-corpus");
        let parsed = AtomicUsize::new(0);
        for source in corpus() {
            if let Err(e) = exercise(&source, &out, &parsed) {
                panic!("{e}");
            }
        }
        let _ = std::fs::remove_dir_all(&out);
    });
}
