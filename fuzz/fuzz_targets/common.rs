//! What both targets share: the stack the `beb` binary gives evaluation, and one run of a
//! source as `beb check` and `beb run` would do it, with every error rendered.
// Each target uses its own half of this file.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use beb::eval::{Interp, Settings};

/// Steps (loop iterations and calls) one run may take.
const STEP_BUDGET: u64 = 20_000;
/// Memory one run may ask for (libFuzzer's own limit is 2 GiB by default).
const MEMORY_BUDGET: u64 = 256 << 20;
/// The stack `beb` runs scripts on (src/main.rs), so depth limits are tested as users meet them.
const STACK: usize = 512 << 20;

/// Run `f` on a thread with the binary's stack; a panic there is re-raised here, so the
/// fuzzer sees it.
pub fn on_big_stack(f: impl FnOnce() + Send) {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .stack_size(STACK)
            .spawn_scoped(scope, f);
        match handle.map(|h| h.join()) {
            Ok(Ok(())) => {}
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(e) => panic!("cannot start the evaluation thread: {e}"),
        }
    });
}

/// A run folder of this process, made once.
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("beb-fuzz-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        // No shared models: the step and memory budgets do not bound a model's compute time,
        // so a generated script that loads one would time out without finding anything.
        // SAFETY: set once, by the first input's thread while the fuzzer's own thread waits
        // for it; no other thread reads the environment then.
        unsafe { std::env::set_var("BEB_SHARED", dir.join("no-shared-models")) };
        dir
    })
}

fn interp(fuel: Option<u64>) -> Interp {
    beb::budget::set_limit(MEMORY_BUDGET);
    let settings = Settings {
        root_seed: 1,
        fuel,
        out_dir: scratch().clone(),
        module_dirs: vec![scratch().clone()],
        ..Settings::default()
    };
    Interp::with_settings(settings, Box::new(std::io::sink()))
}

/// What `beb check` does: parse, then the name checker; every diagnostic rendered.
pub fn parse_and_check(source: &str) {
    let mut interp = interp(Some(0));
    let file = interp.add_source("fuzz.beb", source);
    match interp.parse(file) {
        Err(e) => {
            let _ =
                beb::runner::render(&interp.attach_source(beb::error::BebError::from_syntax(e)));
        }
        Ok(program) => {
            for e in interp.check(&program) {
                let _ = beb::runner::render(&interp.attach_source(e));
            }
        }
    }
}

/// What `beb run` does after the check, on the budgets above.
pub fn run(source: &str) {
    let mut interp = interp(Some(STEP_BUDGET));
    let file = interp.add_source("fuzz.beb", source);
    let Ok(program) = interp.parse(file) else {
        return;
    };
    for e in interp.check(&program) {
        let _ = beb::runner::render(&interp.attach_source(e));
    }
    if let Err(e) = interp.run(&program) {
        let _ = beb::runner::render(&interp.attach_source(e));
    }
}
