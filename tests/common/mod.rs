//! Helpers shared by the integration tests: the one way to run the `beb` binary
//! ([`binary`]), to run a script in-process ([`script`]), to load and compare neural models
//! ([`models`]), to read the documentation's examples ([`docs`]), and to find the shared
//! files and make scratch folders (here).
// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod binary;
pub mod docs;
pub mod models;
pub mod script;
pub mod worlds;

// Not every test binary uses every re-export.
#[allow(unused_imports)]
pub use binary::{Beb, Output, Running, beb, beb_in};
#[allow(unused_imports)]
pub use models::{
    ReferenceRow, load, load_run, load_with, log_softmax, max_diff, max_diff32, reference_rows,
    uncached,
};
#[allow(unused_imports)]
pub use script::{Options, Run, builtin, builtins, render, run_in_process, run_script};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The repository root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shared folder: `$BEB_SHARED`, else `../shared` beside the repository.
pub fn shared_root() -> PathBuf {
    std::env::var("BEB_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("..").join("shared"))
}

/// A path inside the shared folder, or `None` (the test skips, saying why) when it is missing;
/// under CI (`CI` set) a missing shared folder fails the test instead.
pub fn shared(sub: &str) -> Option<PathBuf> {
    let path = shared_root().join(sub);
    if path.exists() {
        return Some(path);
    }
    if std::env::var_os("CI").is_some() {
        panic!(
            "shared files not found at {} (set BEB_SHARED); CI needs them",
            path.display()
        );
    }
    eprintln!(
        "skipping: shared files not found at {} (set BEB_SHARED)",
        path.display()
    );
    None
}

/// The stories260K folder of the shared models.
pub fn stories() -> Option<PathBuf> {
    shared("models/stories260K")
}

/// A fresh, empty scratch folder, unique to this process and call.
pub fn scratch(label: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "beb-{label}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("create the scratch folder {}: {e}", dir.display()));
    dir
}

/// The text of a file; a test fails when it cannot be read.
pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Write a file, creating the folders above it.
pub fn write(path: &Path, contents: &str) {
    if let Some(parent) = path.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    std::fs::write(path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Every file below `dir` (recursively) whose name ends in `.ext`, sorted; none when `dir`
/// cannot be listed.
pub fn files_under(dir: &Path, ext: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, ext, out);
            } else if path.extension().is_some_and(|e| e == ext) {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, ext, &mut out);
    out.sort();
    out
}
