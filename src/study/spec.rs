//! Study files: which scripts to run over which grid of `--set` parameters and which seeds,
//! and where the results go. Parsed from YAML (through `crate::yaml`) with the line and column
//! of any problem.
//!
//! ```yaml
//! name: alpha-sweep                # optional; names the default output folder
//! script: alpha_sweep.beb          # or `scripts: [a.beb, b.beb]`; relative to this file
//! grid:                            # every combination; the last parameter varies fastest
//!   alpha: [1e-2, 1e-3, 1e-4]
//!   horizon: [4, 8]
//! seeds: [1, 2, 3]                 # or a count: `seeds: 3` is 1, 2, 3
//! sets: {label: pilot}             # fixed `--set` values for every combination (optional)
//! out: results                    # relative to this file, inside its folder (default runs/NAME)
//! report: [fit.beta, fit.log_inv_alpha]   # columns of `beb study report` (default: all)
//! plot:                            # figures of the summary over seeds (optional)
//!   - x: alpha                     # a numeric grid parameter
//!     y: fit.beta                  # a result column
//!     to: beta_vs_alpha.svg        # in the output folder; .svg, .png or .pdf
//!     log_x: true
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use sha2::{Digest, Sha256};

/// A parameter value: what YAML can say that beb reads back as a literal.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamValue {
    None,
    Bool(bool),
    Num(f64),
    Str(String),
    List(Vec<ParamValue>),
}

impl ParamValue {
    /// The value as beb source (what `--set name=...` receives).
    pub fn literal(&self) -> String {
        match self {
            ParamValue::None => "none".into(),
            ParamValue::Bool(b) => b.to_string(),
            ParamValue::Num(x) => crate::format::number(*x),
            ParamValue::Str(s) => {
                let mut out = String::from("\"");
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '{' => out.push_str("\\{"),
                        '}' => out.push_str("\\}"),
                        '\n' => out.push_str("\\n"),
                        '\t' => out.push_str("\\t"),
                        '\r' => out.push_str("\\r"),
                        c => out.push(c),
                    }
                }
                out.push('"');
                out
            }
            ParamValue::List(items) => format!(
                "[{}]",
                items
                    .iter()
                    .map(ParamValue::literal)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// The value for a folder name: letters, digits and `.+-` only.
    fn slug(&self) -> String {
        let raw = match self {
            ParamValue::Str(s) => s.clone(),
            ParamValue::List(items) => items
                .iter()
                .map(ParamValue::slug)
                .collect::<Vec<_>>()
                .join("-"),
            other => other.literal(),
        };
        let mut out: String = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if out.len() > 40 {
            out.truncate(40);
        }
        out
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Str(s) => f.write_str(s),
            other => f.write_str(&other.literal()),
        }
    }
}

impl<'de> Deserialize<'de> for ParamValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ParamValue;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number, a string, true, false, null or a list of them")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<ParamValue, E> {
                Ok(ParamValue::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ParamValue, E> {
                Ok(ParamValue::Num(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ParamValue, E> {
                Ok(ParamValue::Num(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<ParamValue, E> {
                if v.is_nan() {
                    Err(E::custom("NaN is not a parameter value"))
                } else {
                    Ok(ParamValue::Num(v))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ParamValue, E> {
                Ok(ParamValue::Str(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<ParamValue, E> {
                Ok(ParamValue::None)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ParamValue, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(ParamValue::List(items))
            }
        }
        d.deserialize_any(V)
    }
}

fn valid_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Named parameters in the order written. For a grid, each value is the list of values to try.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params {
    pub entries: Vec<(String, ParamValue)>,
    /// Whether each value must be a non-empty list (a grid) or any value (fixed sets).
    grid: bool,
}

struct ParamsVisitor {
    grid: bool,
}

impl<'de> Visitor<'de> for ParamsVisitor {
    type Value = Params;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(if self.grid {
            "a map from parameter names to lists of values"
        } else {
            "a map from parameter names to values"
        })
    }
    fn visit_unit<E: de::Error>(self) -> Result<Params, E> {
        Ok(Params {
            entries: Vec::new(),
            grid: self.grid,
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params, A::Error> {
        let mut entries: Vec<(String, ParamValue)> = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            if !valid_name(&name) {
                return Err(de::Error::custom(format!(
                    "`{name}` is not a valid variable name (letters, digits and _, not starting with a digit)"
                )));
            }
            if entries.iter().any(|(n, _)| *n == name) {
                return Err(de::Error::custom(format!("`{name}` is given twice")));
            }
            let value: ParamValue = map.next_value()?;
            if self.grid {
                match &value {
                    ParamValue::List(items) if items.is_empty() => {
                        return Err(de::Error::custom(format!(
                            "grid parameter `{name}` has no values"
                        )));
                    }
                    ParamValue::List(_) => {}
                    other => {
                        return Err(de::Error::custom(format!(
                            "grid parameter `{name}` must be a list of values, found {}; write \
                             `[{}]`, or put a fixed value under `sets:`",
                            other.literal(),
                            other.literal()
                        )));
                    }
                }
            }
            entries.push((name, value));
        }
        Ok(Params {
            entries,
            grid: self.grid,
        })
    }
}

/// `grid:`: parameters with lists of values.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Grid(pub Params);

impl<'de> Deserialize<'de> for Grid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ParamsVisitor { grid: true }).map(Grid)
    }
}

/// `sets:`: fixed parameters.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fixed(pub Params);

impl<'de> Deserialize<'de> for Fixed {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ParamsVisitor { grid: false }).map(Fixed)
    }
}

/// `seeds: [1, 2, 3]` or `seeds: 3` (the seeds 1 to 3).
#[derive(Clone, Debug, PartialEq)]
pub struct Seeds(pub Vec<u64>);

impl<'de> Deserialize<'de> for Seeds {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Seeds;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of seeds (whole numbers >= 0) or how many seeds (1, 2, ...)")
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Seeds, E> {
                if n == 0 || n > 1_000_000 {
                    return Err(E::custom(format!(
                        "a number of seeds must be between 1 and 1000000, found {n}"
                    )));
                }
                Ok(Seeds((1..=n).collect()))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Seeds, E> {
                Err(E::custom(format!(
                    "a number of seeds must be positive, found {n}"
                )))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Seeds, A::Error> {
                let mut seeds: Vec<u64> = Vec::new();
                while let Some(s) = seq.next_element::<u64>()? {
                    if seeds.contains(&s) {
                        return Err(de::Error::custom(format!("seed {s} is listed twice")));
                    }
                    seeds.push(s);
                }
                if seeds.is_empty() {
                    return Err(de::Error::custom("the list of seeds is empty"));
                }
                Ok(Seeds(seeds))
            }
        }
        d.deserialize_any(V)
    }
}

/// `script: a.beb` or `script: [a.beb, b.beb]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Scripts(pub Vec<String>);

impl<'de> Deserialize<'de> for Scripts {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scripts;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a script path or a list of script paths")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scripts, E> {
                Ok(Scripts(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scripts, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.push(s);
                }
                if out.is_empty() {
                    return Err(de::Error::custom("the list of scripts is empty"));
                }
                Ok(Scripts(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// A study file as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStudy {
    name: Option<String>,
    description: Option<String>,
    #[serde(alias = "scripts")]
    script: Scripts,
    #[serde(default)]
    grid: Grid,
    #[serde(default)]
    sets: Fixed,
    seeds: Option<Seeds>,
    out: Option<String>,
    report: Option<Vec<String>>,
    /// Hosts the scripts may connect to, as `--allow-net` gives them.
    #[serde(default)]
    allow_net: Vec<String>,
    /// Files and folders the scripts may read, as `--allow-read` gives them (relative to the
    /// study file's folder).
    #[serde(default)]
    allow_read: Vec<String>,
    #[serde(default)]
    plot: Vec<RawPlot>,
}

/// One `plot:` entry as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlot {
    x: String,
    y: String,
    to: String,
    #[serde(default)]
    log_x: bool,
    #[serde(default)]
    log_y: bool,
    title: Option<String>,
    x_label: Option<String>,
    y_label: Option<String>,
}

/// A figure of the summary over seeds: a result column against a numeric grid parameter, one
/// series per value of the other parameters (and script), with the across-seeds interval as
/// error bars. Drawn by `beb study run` and `beb study report` into the output folder.
#[derive(Clone, Debug)]
pub struct PlotSpec {
    /// The grid parameter on the x axis.
    pub x: String,
    /// The result column on the y axis (a report column such as `fit.beta`).
    pub y: String,
    /// The file, relative to the output folder (`.svg`, `.png` or `.pdf`).
    pub to: PathBuf,
    pub log_x: bool,
    pub log_y: bool,
    pub title: Option<String>,
    pub x_label: Option<String>,
    pub y_label: Option<String>,
    /// Where `y:` is written, so that a column no run saved is reported there.
    y_at: SpecError,
}

impl PlotSpec {
    /// A problem with the `y:` column, at its place in the study file.
    pub fn y_error(&self, message: String) -> SpecError {
        SpecError {
            message,
            ..self.y_at.clone()
        }
    }
}

/// A problem in a study file, with its position (1-based line and column).
#[derive(Clone, Debug, PartialEq)]
pub struct SpecError {
    pub message: String,
    pub line: usize,
    pub column: usize,
    pub offset: usize,
    /// The offending text's length, for the diagnostic's underline.
    pub len: usize,
}

/// A parsed, checked study.
#[derive(Clone, Debug)]
pub struct Study {
    pub name: String,
    pub description: Option<String>,
    /// Scripts, resolved relative to the study file's folder.
    pub scripts: Vec<PathBuf>,
    pub grid: Vec<(String, Vec<ParamValue>)>,
    pub sets: Vec<(String, ParamValue)>,
    pub seeds: Vec<u64>,
    /// The output folder: the file's `out:` resolved relative to its folder, else `runs/NAME`
    /// where beb runs.
    pub out: PathBuf,
    /// `out:` as the file wrote it: such a folder must stay inside `folder` (see `output`).
    pub out_written: Option<String>,
    /// The study file's folder.
    pub folder: PathBuf,
    pub report: Option<Vec<String>>,
    /// Hosts (`HOST` or `HOST:PORT`) every run may connect to, besides `--allow-net`'s.
    pub allow_net: Vec<String>,
    pub plots: Vec<PlotSpec>,
    /// Files and folders every run may read, besides `--allow-read`'s (resolved relative to
    /// the study file's folder).
    pub allow_read: Vec<PathBuf>,
}

impl Study {
    /// The output folder, given `--out` (`chosen`) or else the file's: a study file shared by
    /// someone else may not write outside its own folder, so an `out:` leading elsewhere is
    /// refused unless `--allow-write` names it (or a folder above it).
    pub fn output(
        &self,
        chosen: Option<&Path>,
        allow_write: &[PathBuf],
    ) -> Result<PathBuf, String> {
        if let Some(out) = chosen {
            return Ok(out.to_path_buf());
        }
        if let Some(written) = &self.out_written {
            // Absolute, so that it is not taken relative to the folder it is checked against.
            let probe = std::path::absolute(&self.out)
                .map_err(|e| format!("cannot resolve {}: {e}", self.out.display()))?
                .join("report.csv");
            let name = probe.to_string_lossy();
            let inside = crate::report::confine::confined_path(&name, &self.folder, allow_write);
            if inside.is_err() {
                return Err(format!(
                    "the study's `out: {written}` leads outside the study file's folder {}; run \
                     it with `--out FOLDER`, or let it write there with `--allow-write {}`",
                    self.folder.display(),
                    self.out.display()
                ));
            }
        }
        Ok(self.out.clone())
    }
}

/// Where `needle` first appears as a key in `text` (line, column, offset), for errors found
/// after parsing.
fn locate(text: &str, needle: &str) -> (usize, usize, usize) {
    let mut offset = 0;
    for (i, line) in text.lines().enumerate() {
        if let Some(col) = line.find(needle) {
            return (i + 1, col + 1, offset + col);
        }
        offset += line.len() + 1;
    }
    (1, 1, 0)
}

/// Where the value of the `nth` (0-based) `key:` after the top-level `plot:` is written (line,
/// column, offset, length), for errors in one plot entry; the `plot:` line itself if not found.
fn locate_plot_value(text: &str, nth: usize, key: &str) -> (usize, usize, usize, usize) {
    let start = text
        .match_indices("plot:")
        .map(|(i, _)| i)
        .find(|&i| i == 0 || text[..i].ends_with('\n'))
        .unwrap_or(0);
    let position = |offset: usize, len: usize| {
        let (line, column) = crate::error::line_col(text, offset);
        (line, column, offset, len.max(1))
    };
    let needle = format!("{key}:");
    let found = text[start..]
        .match_indices(&needle)
        .map(|(i, _)| start + i)
        .filter(|&i| {
            // A whole key: not the end of `log_x:` or `x_label:`.
            text[..i]
                .chars()
                .next_back()
                .is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
        })
        .nth(nth);
    match found {
        Some(i) => {
            let after = i + needle.len();
            let rest = &text[after..];
            let skip = rest.len() - rest.trim_start_matches([' ', '"', '\'']).len();
            let value = rest[skip..]
                .find(['\n', ',', '}', '"', '\'', '#'])
                .map_or(&rest[skip..], |end| &rest[skip..skip + end])
                .trim_end();
            position(after + skip, value.len())
        }
        None => position(start, "plot".len()),
    }
}

impl Study {
    /// Parse a study file's text; `path` locates its scripts.
    pub fn parse(text: &str, path: &Path) -> Result<Study, SpecError> {
        let raw: RawStudy = crate::yaml::from_str(text).map_err(|e| {
            // A problem with one named entry of a map is reported at the map; point at the
            // entry itself (`beta:` for "grid parameter `beta` has no values").
            let named = e.message.split('`').nth(1).and_then(|name| {
                let rest = text.get(e.offset..)?;
                let at = rest.find(&format!("{name}:"))?;
                Some((e.offset + at, name.len()))
            });
            let (offset, len) = named.unwrap_or_else(|| {
                let len = text
                    .get(e.offset..)
                    .and_then(|rest| rest.lines().next())
                    .map_or(1, |l| l.trim_end().len().max(1));
                (e.offset, len)
            });
            let (line, column) = crate::error::line_col(text, offset);
            SpecError {
                message: e.message,
                line,
                column,
                offset,
                len,
            }
        })?;
        let at = |needle: &str, message: String| {
            let (line, column, offset) = locate(text, needle);
            SpecError {
                message,
                line,
                column,
                offset,
                len: needle.len(),
            }
        };
        let base = path.parent().unwrap_or(Path::new(""));
        let mut scripts = Vec::new();
        for s in &raw.script.0 {
            let p = base.join(s);
            if !p.is_file() {
                return Err(at(
                    s,
                    format!("script {s:?} not found (looked for {})", p.display()),
                ));
            }
            scripts.push(p);
        }
        let stems: Vec<String> = scripts.iter().map(|p| stem(p)).collect();
        for (i, s) in stems.iter().enumerate() {
            if stems[..i].contains(s) {
                return Err(at(
                    &raw.script.0[i],
                    format!(
                        "two scripts are both named `{s}`; rename one so their results stay apart"
                    ),
                ));
            }
        }
        for (name, _) in &raw.sets.0.entries {
            if raw.grid.0.entries.iter().any(|(n, _)| n == name) {
                return Err(at(
                    &format!("{name}:"),
                    format!("`{name}` is both in `grid` and in `sets`"),
                ));
            }
        }
        let name = raw.name.clone().unwrap_or_else(|| stem(path));
        if name.is_empty() || name.contains(['/', '\\']) || name == ".." || name == "." {
            return Err(at("name:", format!("{name:?} cannot name a folder")));
        }
        let out = match raw.out.as_deref() {
            Some(written) => base.join(written),
            None => crate::record::runs_dir().join(&name),
        };
        let grid: Vec<(String, Vec<ParamValue>)> = raw
            .grid
            .0
            .entries
            .into_iter()
            .map(|(n, v)| match v {
                ParamValue::List(items) => (n, items),
                other => (n, vec![other]),
            })
            .collect();
        let plots = check_plots(text, &raw.plot, &grid, raw.report.as_deref())?;
        Ok(Study {
            name,
            description: raw.description,
            scripts,
            grid,
            sets: raw.sets.0.entries,
            seeds: raw.seeds.map_or_else(|| vec![1], |s| s.0),
            out,
            out_written: raw.out.clone(),
            folder: base.to_path_buf(),
            report: raw.report,
            allow_net: raw.allow_net,
            plots,
            allow_read: raw.allow_read.iter().map(|p| base.join(p)).collect(),
        })
    }

    /// Every combination, in a fixed order: script, then grid (last parameter fastest), then
    /// seed. The index of a combination in this order decides its shard.
    pub fn combinations(&self) -> Vec<Combination> {
        let mut out = Vec::new();
        let sizes: Vec<usize> = self.grid.iter().map(|(_, v)| v.len()).collect();
        let cells: usize = sizes.iter().product();
        for script in &self.scripts {
            for cell in 0..cells {
                let mut rest = cell;
                let mut picks = vec![0; sizes.len()];
                for (i, size) in sizes.iter().enumerate().rev() {
                    picks[i] = rest % size;
                    rest /= size;
                }
                let params: Vec<(String, ParamValue)> = self
                    .grid
                    .iter()
                    .zip(&picks)
                    .map(|((n, vs), &k)| (n.clone(), vs[k].clone()))
                    .collect();
                for &seed in &self.seeds {
                    out.push(Combination {
                        index: out.len(),
                        script: script.clone(),
                        params: params.clone(),
                        seed,
                        folder: PathBuf::new(),
                    });
                }
            }
        }
        // Folder names: readable, and unique (a short hash tells apart values that read alike).
        let names: Vec<PathBuf> = out.iter().map(Combination::readable_folder).collect();
        for i in 0..out.len() {
            let clash = names.iter().filter(|n| **n == names[i]).count() > 1;
            out[i].folder = if clash {
                let hash = out[i].key_hash();
                PathBuf::from(format!("{}-{}", names[i].display(), &hash[..8]))
            } else {
                names[i].clone()
            };
        }
        out
    }
}

/// Check the `plot:` entries against the grid (and the report columns, when the study names
/// them): each problem is reported at the value that causes it.
fn check_plots(
    text: &str,
    raw: &[RawPlot],
    grid: &[(String, Vec<ParamValue>)],
    report: Option<&[String]>,
) -> Result<Vec<PlotSpec>, SpecError> {
    let at = |nth: usize, key: &str, message: String| {
        let (line, column, offset, len) = locate_plot_value(text, nth, key);
        SpecError {
            message,
            line,
            column,
            offset,
            len,
        }
    };
    let mut plots: Vec<PlotSpec> = Vec::with_capacity(raw.len());
    for (i, p) in raw.iter().enumerate() {
        let Some((_, values)) = grid.iter().find(|(n, _)| *n == p.x) else {
            let names: Vec<&str> = grid.iter().map(|(n, _)| n.as_str()).collect();
            return Err(at(
                i,
                "x",
                if names.is_empty() {
                    format!(
                        "plot x `{}` must be a grid parameter, and the study has no grid",
                        p.x
                    )
                } else {
                    format!(
                        "plot x `{}` is not a grid parameter (the grid has {})",
                        p.x,
                        names.join(", ")
                    )
                },
            ));
        };
        let numbers: Vec<f64> = values
            .iter()
            .filter_map(|v| match v {
                ParamValue::Num(x) => Some(*x),
                _ => None,
            })
            .collect();
        if numbers.len() != values.len() {
            return Err(at(
                i,
                "x",
                format!(
                    "plot x `{}` has values that are not numbers, so it cannot be an axis",
                    p.x
                ),
            ));
        }
        if p.log_x && numbers.iter().any(|x| *x <= 0.0) {
            return Err(at(
                i,
                "x",
                format!(
                    "plot x `{}` has values <= 0, which a log axis (log_x: true) cannot show",
                    p.x
                ),
            ));
        }
        if p.y.trim().is_empty() {
            return Err(at(i, "y", "plot y must name a result column".into()));
        }
        if let Some(columns) = report
            && !columns.contains(&p.y)
        {
            return Err(at(
                i,
                "y",
                format!(
                    "plot y `{}` is not one of the report columns ({})",
                    p.y,
                    columns.join(", ")
                ),
            ));
        }
        let to = PathBuf::from(&p.to);
        let inside = !p.to.is_empty()
            && to
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !inside {
            return Err(at(
                i,
                "to",
                format!(
                    "plot file {:?} must be a relative path inside the study's output folder",
                    p.to
                ),
            ));
        }
        let extension = to.extension().and_then(|e| e.to_str()).unwrap_or("");
        if crate::report::plot::Format::from_extension(extension).is_none() {
            return Err(at(
                i,
                "to",
                format!("plot file {:?} must end in .svg, .png or .pdf", p.to),
            ));
        }
        if plots.iter().any(|q| q.to == to) {
            return Err(at(
                i,
                "to",
                format!("two plots are both written to {:?}", p.to),
            ));
        }
        plots.push(PlotSpec {
            x: p.x.clone(),
            y: p.y.clone(),
            to,
            log_x: p.log_x,
            log_y: p.log_y,
            title: p.title.clone(),
            x_label: p.x_label.clone(),
            y_label: p.y_label.clone(),
            y_at: at(i, "y", String::new()),
        });
    }
    Ok(plots)
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("study")
        .to_string()
}

/// One run of a study: a script, grid values and a seed.
#[derive(Clone, Debug, PartialEq)]
pub struct Combination {
    pub index: usize,
    pub script: PathBuf,
    pub params: Vec<(String, ParamValue)>,
    pub seed: u64,
    /// The run folder, relative to the study's output folder.
    pub folder: PathBuf,
}

impl Combination {
    pub fn script_name(&self) -> String {
        stem(&self.script)
    }

    fn readable_folder(&self) -> PathBuf {
        let mut parts: Vec<String> = self
            .params
            .iter()
            .map(|(n, v)| format!("{n}={}", v.slug()))
            .collect();
        parts.push(format!("seed={}", self.seed));
        PathBuf::from(self.script_name()).join(parts.join("_"))
    }

    /// `alpha=0.001 horizon=4 seed=2`, for progress lines.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .params
            .iter()
            .map(|(n, v)| format!("{n}={}", v.literal()))
            .collect();
        parts.push(format!("seed={}", self.seed));
        format!("{} {}", self.script_name(), parts.join(" "))
    }

    fn key_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(self.script.display().to_string().as_bytes());
        for (n, v) in &self.params {
            h.update([0]);
            h.update(n.as_bytes());
            h.update([0]);
            h.update(v.literal().as_bytes());
        }
        h.update(self.seed.to_le_bytes());
        format!("{:x}", h.finalize())
    }

    /// What a finished run of this combination depends on: the script's text, the parameter
    /// values (grid and fixed) and the seed. A completion marker with another fingerprint is
    /// stale (the script or the parameters changed) and the combination runs again.
    pub fn fingerprint(&self, script_text: &str, fixed: &[(String, ParamValue)]) -> String {
        let mut h = Sha256::new();
        h.update(b"beb-study-v1\0");
        h.update(Sha256::digest(script_text.as_bytes()));
        for (n, v) in self.params.iter().chain(fixed) {
            h.update(n.as_bytes());
            h.update([0]);
            h.update(v.literal().as_bytes());
            h.update([0]);
        }
        h.update(self.seed.to_le_bytes());
        format!("{:x}", h.finalize())
    }

    /// The `--set` definitions this combination's run receives.
    pub fn sets(&self, fixed: &[(String, ParamValue)]) -> Vec<String> {
        fixed
            .iter()
            .chain(&self.params)
            .map(|(n, v)| format!("{n}={}", v.literal()))
            .collect()
    }
}

/// `--shard i/N`: `(i, N)` with 0 <= i < N.
pub fn parse_shard(text: &str) -> Result<(usize, usize), String> {
    let bad = || format!("--shard {text:?} must look like i/N with 0 <= i < N, e.g. 0/4");
    let (i, n) = text.split_once('/').ok_or_else(bad)?;
    let i: usize = i.trim().parse().map_err(|_| bad())?;
    let n: usize = n.trim().parse().map_err(|_| bad())?;
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// Whether combination `index` belongs to shard `i` of `n`.
pub fn in_shard(index: usize, (i, n): (usize, usize)) -> bool {
    index % n == i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn study(text: &str) -> Result<Study, SpecError> {
        let dir = std::env::temp_dir().join(format!("beb-spec-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("a.beb"), "print 1\n");
        let _ = std::fs::write(dir.join("b.beb"), "print 2\n");
        Study::parse(text, &dir.join("study.yaml"))
    }

    #[test]
    fn grids_expand_in_order_with_the_last_parameter_fastest() {
        let s = study("script: [a.beb, b.beb]\ngrid:\n  alpha: [0.1, 0.01]\n  label: [x, \"y z\"]\nseeds: 2\n")
            .unwrap_or_else(|e| panic!("{e:?}"));
        let combos = s.combinations();
        assert_eq!(combos.len(), 2 * 2 * 2 * 2);
        assert_eq!(combos[0].describe(), "a alpha=0.1 label=\"x\" seed=1");
        assert_eq!(combos[1].describe(), "a alpha=0.1 label=\"x\" seed=2");
        assert_eq!(combos[2].describe(), "a alpha=0.1 label=\"y z\" seed=1");
        assert_eq!(combos[15].describe(), "b alpha=0.01 label=\"y z\" seed=2");
        assert_eq!(
            combos[2].folder,
            PathBuf::from("a").join("alpha=0.1_label=y_z_seed=1")
        );
        assert_eq!(combos[2].sets(&[]), ["alpha=0.1", "label=\"y z\""]);
        let mut folders: Vec<&PathBuf> = combos.iter().map(|c| &c.folder).collect();
        folders.sort();
        folders.dedup();
        assert_eq!(folders.len(), combos.len());
    }

    #[test]
    fn a_study_lists_the_hosts_its_runs_may_reach() {
        let s = study("script: a.beb\nallow_net: [\"127.0.0.1:8000\", gpu-node-3]\n")
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(s.allow_net, ["127.0.0.1:8000", "gpu-node-3"]);
        assert!(study("script: a.beb\n").is_ok_and(|s| s.allow_net.is_empty()));
        let s = study("script: a.beb\nallow_read: [data, /srv/labels.csv]\n")
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(s.allow_read[0].ends_with("data"), "{:?}", s.allow_read);
        assert!(
            s.allow_read[0].starts_with(std::env::temp_dir()),
            "{:?}",
            s.allow_read
        );
        assert_eq!(s.allow_read[1], PathBuf::from("/srv/labels.csv"));
    }

    #[test]
    fn shards_partition_the_combinations() {
        for n in 1..6 {
            let mut seen = [0; 23];
            for i in 0..n {
                for (k, count) in seen.iter_mut().enumerate() {
                    if in_shard(k, (i, n)) {
                        *count += 1;
                    }
                }
            }
            assert!(seen.iter().all(|&c| c == 1), "n = {n}");
        }
        assert_eq!(parse_shard("2/4"), Ok((2, 4)));
        assert!(parse_shard("4/4").is_err());
        assert!(parse_shard("1").is_err());
        assert!(parse_shard("0/0").is_err());
    }

    #[test]
    fn problems_have_line_and_column() {
        let cases = [
            (
                "script: a.beb\ngird:\n  alpha: [1]\n",
                2,
                "unknown field `gird`",
            ),
            ("script: a.beb\nseeds: [1, x]\n", 2, "invalid type"),
            ("script: a.beb\ngrid:\n  alpha: []\n", 3, "has no values"),
            ("script: a.beb\ngrid:\n  alpha: 0.1\n", 3, "must be a list"),
            (
                "script: a.beb\ngrid:\n  al-pha: [1]\n",
                3,
                "not a valid variable name",
            ),
            ("script: missing.beb\n", 1, "not found"),
            ("script: a.beb\ngrid: [1\n", 2, "expected a map"),
            (
                "script: a.beb\ngrid:\n  alpha: [1]\nplot:\n  - x: beta\n    y: fit.b\n    to: f.svg\n",
                5,
                "plot x `beta` is not a grid parameter (the grid has alpha)",
            ),
            (
                "script: a.beb\ngrid:\n  alpha: [1]\nplot:\n  - {x: alpha, y: b, to: f.svg, log: true}\n",
                5,
                "unknown field `log`",
            ),
            (
                "script: a.beb\ngrid:\n  alpha: [0, 1]\nplot:\n  - x: alpha\n    y: b\n    to: f.svg\n    log_x: true\n",
                5,
                "a log axis",
            ),
            (
                "script: a.beb\ngrid:\n  alpha: [1]\nreport: [a]\nplot:\n  - x: alpha\n    y: b\n    to: f.svg\n",
                7,
                "not one of the report columns (a)",
            ),
            (
                "script: a.beb\ngrid:\n  alpha: [1]\nplot:\n  - x: alpha\n    y: b\n    to: f.txt\n",
                7,
                "must end in .svg, .png or .pdf",
            ),
            (
                "script: a.beb\ngrid:\n  alpha: [1]\nplot:\n  - {x: alpha, y: b, to: f.svg}\n  - {x: alpha, y: c, to: f.svg}\n",
                6,
                "two plots are both written",
            ),
        ];
        for (text, line, message) in cases {
            let e = study(text)
                .err()
                .unwrap_or_else(|| panic!("{text}: no error"));
            assert_eq!(e.line, line, "{text}: {e:?}");
            assert!(e.message.contains(message), "{text}: {e:?}");
        }
    }

    #[test]
    fn literals_read_back_as_beb_values() {
        let v = ParamValue::List(vec![
            ParamValue::Num(1e-4),
            ParamValue::Str("a \"b\" {c}".into()),
            ParamValue::Bool(true),
            ParamValue::None,
        ]);
        assert_eq!(v.literal(), r#"[0.0001, "a \"b\" \{c\}", true, none]"#);
    }
}
