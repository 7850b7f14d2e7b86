//! What one run produces besides its printed output: the files it read and wrote, its
//! figures, saved values, assertion verdicts and warnings, plus where it may write. The
//! runner hands this to `record::RunRecord::finish`, which turns it into the run record.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::cache::Cache;
use crate::eval::value::Value;
use crate::report::progress::ProgressHub;

/// An assertion's outcome, kept for the run record.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub source: String,
    pub location: String,
    pub passed: bool,
    pub detail: String,
}

/// A file the results depend on (model weights, tokenizers, data), for the run record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputFile {
    pub path: String,
    pub sha256: String,
}

/// The run's state outside the language: where it writes, what it read and what it produced.
pub struct RunContext {
    /// Where `save` and `plot` write (created on first write).
    pub out_dir: PathBuf,
    /// Folders outside the run folder that scripts may write to (`--allow-write`).
    pub allow_write: Vec<PathBuf>,
    /// Hosts (`HOST` or `HOST:PORT`) scripts may connect to (`--allow-net`).
    pub allow_net: Vec<String>,
    /// Files and folders besides the run folder and the script's folder that `read` may read
    /// (`--allow-read`).
    pub allow_read: Vec<PathBuf>,
    /// Served models used, one line each (URL, model, what the server reports, tokenizer
    /// digest), for the run record.
    pub servers: Vec<String>,
    /// The run's `--set` values by name (what `param` reads).
    pub params: BTreeMap<String, Value>,
    /// The on-disk cache of expensive model calls.
    pub cache: Rc<Cache>,
    /// Where progress bars and warnings are drawn.
    pub progress: ProgressHub,
    /// Files the results depend on, in the order they were first used.
    pub inputs: Vec<InputFile>,
    /// Every figure drawn, as the run record shows its path.
    pub plots: Vec<String>,
    /// Every value saved: (path relative to the run folder, value).
    pub saved: Vec<(String, Value)>,
    /// Every assertion evaluated, in order.
    pub verdicts: Vec<Verdict>,
    /// Warnings for the run record (also printed on stderr).
    pub warnings: Vec<String>,
}

impl RunContext {
    pub fn new(
        out_dir: PathBuf,
        allow_write: Vec<PathBuf>,
        cache: Cache,
        progress: ProgressHub,
    ) -> RunContext {
        RunContext {
            out_dir,
            allow_write,
            allow_net: Vec::new(),
            allow_read: Vec::new(),
            servers: Vec::new(),
            params: BTreeMap::new(),
            cache: Rc::new(cache),
            progress,
            inputs: Vec::new(),
            plots: Vec::new(),
            saved: Vec::new(),
            verdicts: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Record a file the results depend on with its sha256 (hex). Noting a path twice keeps
    /// one entry.
    pub fn note_input_file(&mut self, path: impl AsRef<Path>, sha256: &str) {
        let path = path.as_ref().display().to_string();
        if !self
            .inputs
            .iter()
            .any(|f| f.path == path && f.sha256 == sha256)
        {
            self.inputs.push(InputFile {
                path,
                sha256: sha256.to_string(),
            });
        }
    }

    /// Record a file the results depend on, hashing it now (a file that cannot be read is
    /// left to the builtin reading it to report).
    pub fn note_input(&mut self, path: impl AsRef<Path>) {
        let path = path.as_ref();
        if let Ok(sha) = crate::cache::file_sha256(path) {
            self.note_input_file(path, &sha);
        }
    }

    /// Print a warning on stderr (above any progress bar) and keep it for the run record.
    pub fn warn(&mut self, text: &str) {
        self.progress.println(&format!("beb: warning: {text}"));
        self.warnings.push(text.to_string());
    }

    /// Keep a saved value, replacing an earlier one saved to the same path.
    pub fn keep_saved(&mut self, path: &str, value: Value) {
        match self.saved.iter_mut().find(|(p, _)| p == path) {
            Some(slot) => slot.1 = value,
            None => self.saved.push((path.to_string(), value)),
        }
    }
}
