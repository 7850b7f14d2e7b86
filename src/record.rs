//! The run record: `manifest.yaml` (what ran, with which seed and inputs) and `results.yaml`
//! (every saved value and every assertion verdict), written atomically into the run folder.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;
use sha2::{Digest, Sha256};

use crate::error::{BebError, ErrorKind};
use crate::eval::Interp;
use crate::report::save::{to_json, write_atomic};

pub struct RunRecord {
    pub folder: PathBuf,
    script: String,
    script_sha256: String,
    root_seed: u64,
    started: u64,
    pub sets: Vec<(String, String)>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl RunRecord {
    pub fn start(script: &Path, text: &str, root_seed: u64, out: Option<PathBuf>) -> RunRecord {
        let started = now();
        let stem = script.file_stem().and_then(|s| s.to_str()).unwrap_or("run");
        let folder = out.unwrap_or_else(|| {
            PathBuf::from("runs").join(format!("{stem}-{started}-seed{root_seed}"))
        });
        RunRecord {
            folder,
            script: script.display().to_string(),
            script_sha256: format!("{:x}", Sha256::digest(text.as_bytes())),
            root_seed,
            started,
            sets: Vec::new(),
        }
    }

    pub fn finish(&self, interp: &Interp, status: &str) -> Result<(), BebError> {
        let io = |e: String| BebError::new(ErrorKind::Io, e);
        let sets: serde_json::Map<String, serde_json::Value> = self
            .sets
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        let manifest = json!({
            "beb_version": env!("CARGO_PKG_VERSION"),
            "script": self.script,
            "script_sha256": self.script_sha256,
            "root_seed": self.root_seed,
            "sets": sets,
            "started_unix": self.started,
            "finished_unix": now(),
            "status": status,
            "machine": {
                "os": std::env::consts::OS,
                "arch": std::env::consts::ARCH,
                "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            },
        });
        let mut saved = serde_json::Map::new();
        for (path, value) in &interp.saved {
            saved.insert(path.clone(), to_json(value)?);
        }
        let verdicts: Vec<serde_json::Value> = interp
            .verdicts
            .iter()
            .map(|v| json!({"assert": v.source, "at": v.location, "passed": v.passed, "detail": v.detail}))
            .collect();
        let results = json!({"saved": saved, "assertions": verdicts});
        write_atomic(
            &self.folder.join("manifest.yaml"),
            crate::yaml::to_string(&manifest).map_err(io)?.as_bytes(),
        )?;
        write_atomic(
            &self.folder.join("results.yaml"),
            crate::yaml::to_string(&results).map_err(io)?.as_bytes(),
        )?;
        Ok(())
    }
}
