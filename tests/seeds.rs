//! Default seed streams are named by the module and the call, not by how the script's path
//! is typed or where its lines fall; an explicit `seed:` never moves.

mod common;

use std::path::Path;

const WORLD: &str = "let m = sentences { \"A.\": 0.5 @ 1, \"B.\": 0.3 @ 0, \"C.\": 0.2 @ -1 }\n\
                     let q = sentences { \"A.\": 0.2 @ 1, \"B.\": 0.3 @ 0, \"C.\": 0.5 @ -1 }\n";

fn script(before: &str) -> String {
    format!(
        "{WORLD}{before}print sample(m, sentences: 6)\n\
         print kl(m, q, sentences: 3, samples: 40)\n\
         print sample(m, sentences: 6, seed: \"named\")\n"
    )
}

/// stdout of `beb run PATH --seed 3` started in `cwd`.
fn run(cwd: &Path, path: &str) -> String {
    let out = common::scratch("seeds-out");
    let output = common::beb(&["run", path, "--seed", "3", "--out"])
        .arg(&out)
        .current_dir(cwd)
        .run();
    assert_eq!(output.code, Some(0), "{path}: {}", output.stderr);
    output.stdout
}

#[test]
fn the_path_as_typed_does_not_move_default_streams() {
    let dir = common::scratch("seeds");
    let sub = dir.join("sub");
    std::fs::create_dir_all(&sub).expect("create sub");
    std::fs::write(sub.join("s.beb"), script("")).expect("write script");
    let plain = run(&sub, "s.beb");
    let dotted = run(&sub, "./s.beb");
    let absolute = run(&dir, &sub.join("s.beb").display().to_string());
    let nested = run(&dir, "sub/s.beb");
    assert_eq!(plain.lines().count(), 3, "{plain}");
    assert_eq!(plain, dotted);
    assert_eq!(plain, absolute);
    assert_eq!(plain, nested);
}

#[test]
fn comments_and_blank_lines_do_not_move_draws_but_new_calls_above_do() {
    let dir = common::scratch("seeds-edit");
    std::fs::write(dir.join("a.beb"), script("")).expect("write");
    std::fs::write(
        dir.join("b.beb"),
        script("# a comment above the calls\n\n   \n"),
    )
    .expect("write");
    std::fs::write(
        dir.join("c.beb"),
        script("let extra = sample(m, sentences: 2)\n"),
    )
    .expect("write");
    let a = run(&dir, "a.beb");
    let b = run(&dir, "b.beb");
    let c = run(&dir, "c.beb");
    assert_eq!(a, b, "a comment moved a draw");
    let lines = |s: &str| s.lines().map(String::from).collect::<Vec<_>>();
    let (a, c) = (lines(&a), lines(&c));
    // Another `sample(...)` above shifts the default stream of the next `sample(...)`...
    assert_ne!(a[0], c[0]);
    // ...but not a call of another function, nor an explicitly seeded one.
    assert_eq!(a[1], c[1]);
    assert_eq!(a[2], c[2]);
}
