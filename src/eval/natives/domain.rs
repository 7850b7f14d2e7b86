//! Parameter types for beb's domain: model file paths, units of text, prompts to average
//! over, behaviors. Builtins that share a kind of argument convert it here, once, instead of
//! calling each other's helpers.

use std::path::PathBuf;
use std::rc::Rc;

use crate::error::{BebError, ErrorKind};
use crate::eval::value::{HostObject, Text, Value};
use crate::lm::UnitSpec;
use crate::measure::behavior::{ScoreError, Scorer};

use super::{FromArg, Mismatch, as_text};

/// A path to a model or data file; `$BEB_SHARED/...` reads the shared folder from the
/// environment (default `../shared`). As an argument, a Hugging Face hub id (`org/name`) that
/// is not a path here is looked up in the local hub cache, offline.
#[derive(Clone, Debug)]
pub struct ModelPath(pub PathBuf, pub Written);

/// A path as the script wrote it, for messages that must not show more than the script did.
#[derive(Clone, Debug)]
pub struct Written(pub String);

impl std::ops::Deref for Written {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// The shared data folder: `$BEB_SHARED`, else `../shared`.
pub fn shared_root() -> PathBuf {
    PathBuf::from(std::env::var("BEB_SHARED").unwrap_or_else(|_| "../shared".into()))
}

impl ModelPath {
    pub fn new(path: &str) -> ModelPath {
        let resolved = match path.strip_prefix("$BEB_SHARED") {
            Some(rest) => PathBuf::from(format!("{}{rest}", shared_root().display())),
            None => PathBuf::from(path),
        };
        ModelPath(resolved, Written(path.to_string()))
    }

    /// The path as the script wrote it.
    pub fn written(&self) -> &str {
        &self.1
    }

    /// `path` resolved: as written (with `$BEB_SHARED`) when it exists, else a hub id from the
    /// local cache; a hub id not in the cache is an error saying where it looked and how to
    /// download it.
    pub fn resolve(path: &str) -> Result<ModelPath, String> {
        let direct = ModelPath::new(path);
        if direct.0.exists() {
            return Ok(direct);
        }
        if let Some((org, name)) = hub_id(path) {
            let cache = hub_cache();
            let repo = cache.join(format!("models--{org}--{name}"));
            if let Some(snapshot) = snapshot(&repo) {
                return Ok(ModelPath(snapshot, Written(path.to_string())));
            }
            return Err(format!(
                "`{path}` is neither a path here nor in the local Hugging Face cache (looked in \
                 {}); download it with `huggingface-cli download {path}` (or `hf download \
                 {path}`), or set HF_HOME / HF_HUB_CACHE to the cache that holds it; shared \
                 models are written `$BEB_SHARED/...`",
                repo.join("snapshots").display()
            ));
        }
        // Anything else is for the reader to report (it says the path does not exist).
        Ok(direct)
    }
}

/// `org/name` when `path` has the shape of a hub id (two plain parts, no file extension).
fn hub_id(path: &str) -> Option<(&str, &str)> {
    let (org, name) = path.split_once('/')?;
    let plain = |s: &str| {
        !s.is_empty()
            && !s.starts_with('.')
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    let has_extension = [
        ".gguf",
        ".bin",
        ".safetensors",
        ".json",
        ".txt",
        ".jsonl",
        ".csv",
    ]
    .iter()
    .any(|e| name.ends_with(e));
    (plain(org) && plain(name) && !has_extension && !path.starts_with('$')).then_some((org, name))
}

/// The hub cache folder: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub.
pub fn hub_cache() -> PathBuf {
    if let Some(cache) = std::env::var_os("HF_HUB_CACHE") {
        return PathBuf::from(cache);
    }
    if let Some(home) = std::env::var_os("HF_HOME") {
        return PathBuf::from(home).join("hub");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache").join("huggingface").join("hub")
}

/// The snapshot a cached repo's `refs/main` names, else its only (or last by name) snapshot.
fn snapshot(repo: &std::path::Path) -> Option<PathBuf> {
    let snapshots = repo.join("snapshots");
    if let Ok(rev) = std::fs::read_to_string(repo.join("refs").join("main")) {
        let dir = snapshots.join(rev.trim());
        if dir.is_dir() {
            return Some(dir);
        }
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&snapshots)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs.pop()
}

impl FromArg for ModelPath {
    const TYPE: &'static str = "string";
    const EXPECTED: &'static str = "a string";
    fn from_value(value: &Value, _: &str) -> Result<Self, Mismatch> {
        match value {
            Value::Str(s) => ModelPath::resolve(s).map_err(Mismatch::Invalid),
            _ => Err(Mismatch::Type),
        }
    }
}

/// What a unit of text is for a neural model, as scripts hold it: made by `tokens(k)` or
/// `sentence(until: ..., max_tokens: ...)`, validated when made.
pub struct UnitValue(pub UnitSpec);

impl HostObject for UnitValue {
    fn type_name(&self) -> &'static str {
        "unit"
    }

    fn fields(&self) -> Vec<(&'static str, Value)> {
        match &self.0 {
            UnitSpec::Tokens(k) => {
                vec![("unit", Value::str("tokens")), ("k", Value::Num(*k as f64))]
            }
            UnitSpec::Sentence { until, max_tokens } => vec![
                ("unit", Value::str("sentence")),
                (
                    "until",
                    Value::list(until.iter().map(|s| Value::str(s)).collect()),
                ),
                ("max_tokens", Value::Num(*max_tokens as f64)),
            ],
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A unit as scripts hold it (what `tokens(k)` and `sentence(...)` return).
pub fn unit_value(spec: &UnitSpec) -> Value {
    Value::Object(Rc::new(UnitValue(spec.clone())))
}

impl FromArg for UnitSpec {
    const TYPE: &'static str = "unit";
    const EXPECTED: &'static str =
        "a unit made by tokens(k) or sentence(until: ..., max_tokens: ...)";
    fn from_value(value: &Value, _: &str) -> Result<Self, Mismatch> {
        value
            .object::<UnitValue>()
            .map(|u| u.0.clone())
            .ok_or(Mismatch::Type)
    }
}

/// The prompts a measurement is conditioned on: one text, or a list of texts to average
/// over.
#[derive(Clone, Debug)]
pub struct Prompts(pub Vec<Rc<Text>>);

impl FromArg for Prompts {
    const TYPE: &'static str = "text | list";
    const EXPECTED: &'static str = "a text";
    fn from_value(value: &Value, _: &str) -> Result<Self, Mismatch> {
        match value {
            Value::List(items)
                if !items.is_empty() && items.iter().all(|v| matches!(v, Value::Text(_))) =>
            {
                Ok(Prompts(items.iter().filter_map(as_text).collect()))
            }
            other => as_text(other)
                .map(|t| Prompts(vec![t]))
                .ok_or(Mismatch::Type),
        }
    }
    fn absent() -> Option<Self> {
        Some(Prompts(vec![Rc::new(Text::default())]))
    }
}

/// How a behavior is scored: a function of a one-unit text, or a scorer made by
/// `likelihood_ratio(...)`, `keywords(...)` or `labels(...)`.
#[derive(Clone)]
pub enum Behavior {
    Function(Value),
    Scorer(Rc<Scorer>),
}

impl FromArg for Behavior {
    const TYPE: &'static str = "function | scorer";
    const EXPECTED: &'static str = "a function or a scorer";
    fn from_value(value: &Value, _: &str) -> Result<Self, Mismatch> {
        match value {
            Value::Func(_) | Value::Native(_) => Ok(Behavior::Function(value.clone())),
            other => match other.object::<ScorerValue>() {
                Some(s) => Ok(Behavior::Scorer(s.0.clone())),
                None => Err(Mismatch::Type),
            },
        }
    }
}

/// A behavior scorer as scripts hold it.
pub struct ScorerValue(pub Rc<Scorer>);

impl ScorerValue {
    pub fn value(scorer: Scorer) -> Value {
        Value::Object(Rc::new(ScorerValue(Rc::new(scorer))))
    }
}

impl HostObject for ScorerValue {
    fn type_name(&self) -> &'static str {
        "scorer"
    }

    fn fields(&self) -> Vec<(&'static str, Value)> {
        let strings = |xs: &[String]| Value::list(xs.iter().map(|x| Value::str(x)).collect());
        let kind = ("scorer", Value::str(self.0.kind()));
        match &*self.0 {
            Scorer::LikelihoodRatio { plus, minus, soft } => vec![
                kind,
                ("plus", Value::Model(plus.clone())),
                ("minus", Value::Model(minus.clone())),
                ("soft", Value::Bool(*soft)),
            ],
            Scorer::Keywords {
                words,
                regex,
                ignore_case,
                hit,
                miss,
                ..
            } => vec![
                kind,
                ("words", strings(words)),
                ("regex", Value::Bool(*regex)),
                ("ignore_case", Value::Bool(*ignore_case)),
                ("hit", Value::Num(*hit)),
                ("miss", Value::Num(*miss)),
            ],
            Scorer::Labels {
                file,
                texts,
                labels,
                ..
            } => vec![
                kind,
                ("file", Value::str(file)),
                ("texts", strings(texts)),
                (
                    "labels",
                    Value::list(labels.iter().map(|l| Value::Num(*l)).collect()),
                ),
            ],
        }
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

impl FromArg for Rc<Scorer> {
    const TYPE: &'static str = "scorer";
    const EXPECTED: &'static str =
        "a scorer made by likelihood_ratio(...), keywords(...) or labels(...)";
    fn from_value(value: &Value, _: &str) -> Result<Self, Mismatch> {
        value
            .object::<ScorerValue>()
            .map(|s| s.0.clone())
            .ok_or(Mismatch::Type)
    }
}

impl From<ScoreError> for BebError {
    fn from(error: ScoreError) -> BebError {
        let e = BebError::new(ErrorKind::Value, error.message);
        match error.help {
            Some(help) => e.with_help(help),
            None => e,
        }
    }
}
