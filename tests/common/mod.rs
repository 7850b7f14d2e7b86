//! Helpers shared by the integration tests.
// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use beb::error::BebError;

/// The shared folder: `$BEB_SHARED`, else `../shared` beside the repository.
pub fn shared_root() -> PathBuf {
    std::env::var("BEB_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join("shared")
        })
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

/// Run `script` in-process with root seed 1 and run folder `out_dir` (the current folder when
/// `None`): (stdout, the error if it failed).
pub fn run_in_process(script: &str, out_dir: Option<&Path>) -> (String, Option<BebError>) {
    let out = beb::eval::CapturedOutput::default();
    let mut interp = beb::eval::Interp::with_settings(
        beb::eval::Settings {
            root_seed: 1,
            out_dir: out_dir
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from(".")),
            ..beb::eval::Settings::default()
        },
        Box::new(out.clone()),
    );
    let file = interp.add_source("<test>", script);
    let program = interp
        .parse(file)
        .unwrap_or_else(|e| panic!("syntax: {e:?}"));
    let error = interp.run(&program).err();
    (out.text(), error)
}
