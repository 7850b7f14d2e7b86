//! The run record: `manifest.yaml` (what ran: beb's version, the script and its sha256, the
//! `--set` values, the root seed, input files with their sha256, start and end time, the
//! machine, cache hits and misses, and how the run ended) and `results.yaml` (every saved
//! value, every figure and every assertion verdict), written atomically into the run folder.
//!
//! The manifest is written when the run starts (status `running`) and again when it ends, so a
//! run killed outright still leaves a manifest saying it never finished.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};

use crate::cache::Cache;
use crate::error::{BebError, ErrorKind};
use crate::eval::RunContext;
use crate::eval::export::to_json;
use crate::report::confine::{MANIFEST, RESULTS};
use crate::report::save::write_atomic;

/// How a run ended, as the manifest records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Running,
    Completed,
    AssertionFailed(String),
    Failed(String),
    Interrupted,
}

impl Status {
    pub fn label(&self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Completed => "completed",
            Status::AssertionFailed(_) => "assertion failed",
            Status::Failed(_) => "failed",
            Status::Interrupted => "interrupted",
        }
    }
}

pub struct RunRecord {
    pub folder: PathBuf,
    script: String,
    script_sha256: String,
    root_seed: u64,
    started: SystemTime,
    pub sets: Vec<(String, String)>,
    command: Vec<String>,
}

/// Seconds since the Unix epoch.
fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// (year, month, day, hour, minute, second) in UTC.
fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to civil date (proleptic Gregorian), after H. Hinnant's algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (
        year,
        month,
        day,
        (rem / 3600) as u32,
        (rem % 3600 / 60) as u32,
        (rem % 60) as u32,
    )
}

/// `2026-11-28T13:18:49Z`.
pub fn iso8601(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil(unix(t));
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `20261128-131849`, for folder names.
pub fn compact_time(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s) = civil(unix(t));
    format!("{y:04}{mo:02}{d:02}-{h:02}{mi:02}{s:02}")
}

/// Where run folders go by default: `$BEB_RUNS_DIR`, else `runs/` in the current folder.
pub fn runs_dir() -> PathBuf {
    std::env::var_os("BEB_RUNS_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("runs"))
}

/// A fresh folder `runs/SCRIPT-TIME-seedN` (with `-2`, `-3`, ... if that exists already).
pub fn fresh_folder(script: &Path, root_seed: u64, started: SystemTime) -> PathBuf {
    let stem = script.file_stem().and_then(|s| s.to_str()).unwrap_or("run");
    let base = runs_dir().join(format!("{stem}-{}-seed{root_seed}", compact_time(started)));
    if !base.exists() {
        return base;
    }
    (2..)
        .map(|k| PathBuf::from(format!("{}-{k}", base.display())))
        .find(|p| !p.exists())
        .unwrap_or(base)
}

fn first_line_with(path: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// What machine ran this: OS, architecture, CPUs, CPU model, memory, host name.
pub fn machine() -> Json {
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut m = serde_json::Map::new();
    m.insert("os".into(), json!(std::env::consts::OS));
    m.insert("arch".into(), json!(std::env::consts::ARCH));
    m.insert("cpus".into(), json!(cpus));
    if let Some(model) = first_line_with("/proc/cpuinfo", "model name") {
        m.insert("cpu".into(), json!(model));
    }
    if let Some(kib) = first_line_with("/proc/meminfo", "MemTotal").and_then(|v| {
        v.split_whitespace()
            .next()
            .and_then(|n| n.parse::<f64>().ok())
    }) {
        let gib = (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0;
        m.insert("memory_gib".into(), json!(gib));
    }
    if let Some(host) = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
    {
        m.insert("host".into(), json!(host));
    }
    Json::Object(m)
}

/// How neural models computed: the thread count (results do not depend on it) and the f32
/// kernel (an FMA machine and one without may differ in the last bits; `--fast-kernels`
/// results also depend on batch size and cache state).
pub fn compute() -> Json {
    use crate::lm::neural::kernels;
    let kernel = if kernels::fast() {
        "candle (--fast-kernels: not batch-invariant)".to_string()
    } else {
        format!("batch-invariant, {}", kernels::describe())
    };
    json!({ "threads": rayon::current_num_threads(), "f32_kernel": kernel })
}

/// Remove temporary files an earlier, killed run left behind (`.NAME.tmp-...`).
fn remove_stale_temporaries(folder: &Path, depth: usize) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        match entry.file_type() {
            Ok(t) if t.is_dir() && depth > 0 => remove_stale_temporaries(&path, depth - 1),
            Ok(t) if t.is_file() && name.starts_with('.') && name.contains(".tmp-") => {
                let _ = std::fs::remove_file(&path);
            }
            _ => {}
        }
    }
}

/// A run folder read back: results.yaml (required) and manifest.yaml (if present).
pub struct RunFiles {
    pub results: Json,
    pub manifest: Json,
}

/// Read a run folder back (for `beb diff` and `beb study report`).
pub fn read_run(folder: &Path) -> Result<RunFiles, String> {
    let results_path = folder.join(RESULTS);
    let text = std::fs::read_to_string(&results_path).map_err(|e| {
        format!(
            "{} is not a run folder: cannot read {} ({e})",
            folder.display(),
            results_path.display()
        )
    })?;
    let results =
        crate::yaml::to_json(&text).map_err(|e| format!("{}:{e}", results_path.display()))?;
    let manifest = std::fs::read_to_string(folder.join(MANIFEST))
        .ok()
        .and_then(|t| crate::yaml::to_json(&t).ok())
        .unwrap_or(Json::Null);
    Ok(RunFiles { results, manifest })
}

impl RunRecord {
    /// Begin a record in `folder` (created now, with a `running` manifest).
    pub fn start(
        script: &Path,
        text: &str,
        root_seed: u64,
        folder: PathBuf,
        started: SystemTime,
    ) -> RunRecord {
        RunRecord {
            folder,
            script: script.display().to_string(),
            script_sha256: format!("{:x}", Sha256::digest(text.as_bytes())),
            root_seed,
            started,
            sets: Vec::new(),
            command: std::env::args().collect(),
        }
    }

    /// Create the run folder (again, if the script removed it).
    fn create_folder(&self) -> Result<(), BebError> {
        std::fs::create_dir_all(&self.folder).map_err(|e| {
            BebError::new(
                ErrorKind::Io,
                format!(
                    "cannot create the run folder {}: {e}",
                    self.folder.display()
                ),
            )
        })
    }

    /// Create the folder and write the `running` manifest.
    pub fn begin(&self, cache: &Cache) -> Result<(), BebError> {
        self.create_folder()?;
        remove_stale_temporaries(&self.folder, 4);
        let manifest = self.manifest(&Status::Running, None, cache);
        self.write(&self.folder.join(MANIFEST), &manifest)
    }

    fn write(&self, path: &Path, doc: &Json) -> Result<(), BebError> {
        let text = crate::yaml::to_string(doc).map_err(|e| BebError::new(ErrorKind::Io, e))?;
        write_atomic(path, text.as_bytes())
    }

    fn manifest(&self, status: &Status, run: Option<&RunContext>, cache: &Cache) -> Json {
        let finished = SystemTime::now();
        let sets: serde_json::Map<String, Json> = self
            .sets
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let stats = cache.stats();
        let mut doc = json!({
            "beb_version": env!("CARGO_PKG_VERSION"),
            "command": self.command,
            "script": self.script,
            "script_sha256": self.script_sha256,
            "root_seed": self.root_seed,
            "sets": sets,
            "started": iso8601(self.started),
            "status": status.label(),
            "machine": machine(),
            "compute": compute(),
            "cache": {
                "enabled": cache.dir().is_some(),
                "dir": cache.dir().map(|d| d.display().to_string()),
                "hits": stats.hits,
                "misses": stats.misses,
                "write_errors": stats.write_errors,
            },
        });
        if let Json::Object(m) = &mut doc {
            if *status != Status::Running {
                m.insert("finished".into(), json!(iso8601(finished)));
                let seconds = finished
                    .duration_since(self.started)
                    .map(|d| d.as_secs_f64())
                    .unwrap_or(0.0);
                m.insert(
                    "duration_s".into(),
                    json!((seconds * 1000.0).round() / 1000.0),
                );
            }
            match status {
                Status::AssertionFailed(why) | Status::Failed(why) => {
                    m.insert("error".into(), json!(why));
                }
                Status::Interrupted => {
                    m.insert(
                        "note".into(),
                        json!(
                            "stopped by Ctrl-C: the files and verdicts recorded here are the \
                             ones finished before the interruption"
                        ),
                    );
                }
                _ => {}
            }
            if let Some(run) = run {
                let inputs: Vec<Json> = run
                    .inputs
                    .iter()
                    .map(|f| json!({"path": f.path, "sha256": f.sha256}))
                    .collect();
                m.insert("inputs".into(), Json::Array(inputs));
                if !run.servers.is_empty() {
                    m.insert("servers".into(), json!(run.servers));
                }
                let mut files: Vec<String> = run.saved.iter().map(|(p, _)| p.clone()).collect();
                files.extend(run.plots.iter().cloned());
                files.dedup();
                m.insert("files".into(), json!(files));
                if !run.warnings.is_empty() {
                    m.insert("warnings".into(), json!(run.warnings));
                }
            }
        }
        doc
    }

    /// Write the final manifest and `results.yaml` (what finished, even after a failure).
    pub fn finish(&self, run: &RunContext, status: &Status) -> Result<(), BebError> {
        let mut saved = serde_json::Map::new();
        for (path, value) in &run.saved {
            saved.insert(path.clone(), to_json(value)?);
        }
        let verdicts: Vec<Json> = run
            .verdicts
            .iter()
            .map(|v| json!({"assert": v.source, "at": v.location, "passed": v.passed, "detail": v.detail}))
            .collect();
        let results = json!({
            "status": status.label(),
            "saved": saved,
            "plots": run.plots,
            "assertions": verdicts,
        });
        self.create_folder()?;
        self.write(&self.folder.join(RESULTS), &results)?;
        let manifest = self.manifest(status, Some(run), &run.cache);
        self.write(&self.folder.join(MANIFEST), &manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn times_are_utc_calendar_dates() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_872_483);
        assert_eq!(iso8601(t), "2026-11-28T13:28:03Z");
        assert_eq!(compact_time(t), "20261128-132803");
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(iso8601(leap), "2000-02-29T00:00:00Z");
    }
}
