//! `beb diff RUN_A RUN_B`: compare two run folders value by value.
//!
//! Every saved value is taken apart into its numbers, estimates and texts (`curve.csv[3].kl`,
//! `fit.json.beta`). Exact numbers are equal or differ; for Monte Carlo estimates of two
//! independent runs the difference B − A has standard error sqrt(se_A² + se_B²), and it is
//! significant when its 95% interval excludes zero. Values present in only one run, and
//! assertions whose verdict changed, are flagged. Exit status: 0 when nothing differs (beyond
//! noise), 1 when something does, 2 when a folder cannot be read.

use std::path::Path;

use serde_json::Value as Json;

use crate::format;
use crate::record::{RunFiles, read_run};
use crate::report::table::Cell;
use crate::stats::{Estimate, Z95};

/// One number, estimate or text of a saved value.
#[derive(Clone, Debug, PartialEq)]
pub enum Leaf {
    Num(f64),
    Est(Estimate),
    Text(String),
    Bool(bool),
    Null,
}

impl Leaf {
    pub fn show(&self) -> String {
        match self {
            Leaf::Num(x) => format::significant(*x, 6),
            Leaf::Est(e) => format!("{} (n={})", format::estimate(e.mean, e.stderr), e.n),
            Leaf::Text(s) => format!("{s:?}"),
            Leaf::Bool(b) => b.to_string(),
            Leaf::Null => "none".into(),
        }
    }

    /// The leaf as a table cell.
    pub fn to_cell(&self) -> Cell {
        match self {
            Leaf::Num(x) => Cell::Num(*x),
            Leaf::Est(e) => Cell::Estimate(*e),
            Leaf::Text(s) => Cell::Text(s.clone()),
            Leaf::Bool(b) => Cell::Other(b.to_string()),
            Leaf::Null => Cell::Empty,
        }
    }
}

/// A number as saved: JSON numbers, and `inf` / `-inf` written as strings.
fn number(j: &Json) -> Option<f64> {
    match j {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => match s.as_str() {
            "inf" => Some(f64::INFINITY),
            "-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

/// An estimate as saved: `{mean, stderr, n}` (and its `ci95`).
fn estimate(j: &Json) -> Option<Estimate> {
    let Json::Object(m) = j else { return None };
    let allowed = |k: &String| matches!(k.as_str(), "mean" | "stderr" | "n" | "ci95");
    if !m.keys().all(allowed) {
        return None;
    }
    Some(Estimate::new(
        number(m.get("mean")?)?,
        number(m.get("stderr")?)?,
        m.get("n")?.as_u64()? as usize,
    ))
}

/// The leaves of a saved value, with their paths. Lists are entered when `lists` is set.
pub fn leaves(prefix: &str, j: &Json, lists: bool, out: &mut Vec<(String, Leaf)>) {
    if let Some(e) = estimate(j) {
        out.push((prefix.to_string(), Leaf::Est(e)));
        return;
    }
    match j {
        Json::Null => out.push((prefix.to_string(), Leaf::Null)),
        Json::Bool(b) => out.push((prefix.to_string(), Leaf::Bool(*b))),
        Json::Number(_) => out.push((prefix.to_string(), Leaf::Num(number(j).unwrap_or(0.0)))),
        Json::String(s) => out.push((
            prefix.to_string(),
            number(j).map_or_else(|| Leaf::Text(s.clone()), Leaf::Num),
        )),
        Json::Array(items) => {
            if lists {
                for (i, item) in items.iter().enumerate() {
                    leaves(&format!("{prefix}[{i}]"), item, lists, out);
                }
            }
        }
        Json::Object(m) => {
            for (k, v) in m {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&path, v, lists, out);
            }
        }
    }
}

/// How two leaves compare.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub path: String,
    pub a: Option<Leaf>,
    pub b: Option<Leaf>,
    /// B − A, shown (numbers and estimates).
    pub difference: String,
    /// The 95% interval of the difference (estimates).
    pub interval: String,
    pub change: Change,
}

/// What happened to a value between run A and run B.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Equal,
    Differs,
    Significant,
    NotSignificant,
    OnlyInA,
    OnlyInB,
}

impl Change {
    pub fn label(self) -> &'static str {
        match self {
            Change::Equal => "equal",
            Change::Differs => "differs",
            Change::Significant => "significant",
            Change::NotSignificant => "not significant",
            Change::OnlyInA => "only in A",
            Change::OnlyInB => "only in B",
        }
    }

    /// Whether this counts as a difference for the exit status.
    pub fn is_difference(self) -> bool {
        !matches!(self, Change::Equal | Change::NotSignificant)
    }
}

fn as_estimate(l: &Leaf) -> Option<Estimate> {
    match l {
        Leaf::Num(x) => Some(Estimate::exact(*x)),
        Leaf::Est(e) => Some(*e),
        _ => None,
    }
}

/// Compare two leaves of the same path.
pub fn compare(path: &str, a: &Leaf, b: &Leaf) -> Comparison {
    let mut c = Comparison {
        path: path.to_string(),
        a: Some(a.clone()),
        b: Some(b.clone()),
        difference: String::new(),
        interval: String::new(),
        change: Change::Equal,
    };
    let sampled = matches!(a, Leaf::Est(_)) || matches!(b, Leaf::Est(_));
    match (as_estimate(a), as_estimate(b)) {
        (Some(x), Some(y)) if sampled => {
            let d = y.mean - x.mean;
            let se = (x.stderr.powi(2) + y.stderr.powi(2)).sqrt();
            if x == y {
                c.difference = "0".into();
                return c;
            }
            if !d.is_finite() || !se.is_finite() || se == 0.0 {
                c.difference = format::significant(d, 4);
                c.change = if d == 0.0 {
                    Change::Equal
                } else {
                    Change::Significant
                };
                return c;
            }
            let (lo, hi) = (d - Z95 * se, d + Z95 * se);
            c.difference = format::estimate(d, se);
            c.interval = format!(
                "[{}, {}]",
                format::significant(lo, 3),
                format::significant(hi, 3)
            );
            c.change = if lo > 0.0 || hi < 0.0 {
                Change::Significant
            } else {
                Change::NotSignificant
            };
        }
        (Some(x), Some(y)) => {
            // Exact numbers: equal when bit-identical (infinities included).
            if x.mean == y.mean {
                return c;
            }
            c.difference = format::significant(y.mean - x.mean, 6);
            c.change = Change::Differs;
        }
        _ => {
            if a != b {
                c.change = Change::Differs;
            }
        }
    }
    c
}

/// Compare the leaves of two runs: A's order first, then values only in B.
pub fn compare_all(a: &[(String, Leaf)], b: &[(String, Leaf)]) -> Vec<Comparison> {
    let mut out = Vec::new();
    for (path, la) in a {
        match b.iter().find(|(p, _)| p == path) {
            Some((_, lb)) => out.push(compare(path, la, lb)),
            None => out.push(Comparison {
                path: path.clone(),
                a: Some(la.clone()),
                b: None,
                difference: String::new(),
                interval: String::new(),
                change: Change::OnlyInA,
            }),
        }
    }
    for (path, lb) in b {
        if !a.iter().any(|(p, _)| p == path) {
            out.push(Comparison {
                path: path.clone(),
                a: None,
                b: Some(lb.clone()),
                difference: String::new(),
                interval: String::new(),
                change: Change::OnlyInB,
            });
        }
    }
    out
}

fn saved_leaves(results: &Json) -> Vec<(String, Leaf)> {
    let mut out = Vec::new();
    if let Some(Json::Object(saved)) = results.get("saved") {
        for (file, value) in saved {
            leaves(file, value, true, &mut out);
        }
    }
    out
}

/// Assertions as (`source (location)`, passed).
fn verdicts(results: &Json) -> Vec<(String, bool)> {
    results
        .get("assertions")
        .and_then(Json::as_array)
        .map(|list| {
            list.iter()
                .map(|v| {
                    let source = v.get("assert").and_then(Json::as_str).unwrap_or("?");
                    let at = v.get("at").and_then(Json::as_str).unwrap_or("?");
                    // The location without the script's folder, so runs of a moved copy compare.
                    let at = at.rsplit(['/', '\\']).next().unwrap_or(at);
                    let passed = v.get("passed").and_then(Json::as_bool).unwrap_or(false);
                    (format!("assert {source} ({at})"), passed)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn field(manifest: &Json, key: &str) -> String {
    match manifest.get(key) {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Null) | None => "?".into(),
        Some(other) => other.to_string(),
    }
}

/// `beb diff A B`: print the comparison; the exit status says whether anything differs.
pub fn run(a: &Path, b: &Path, all: bool) -> i32 {
    let (ra, rb) = match (read_run(a), read_run(b)) {
        (Ok(ra), Ok(rb)) => (ra, rb),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("beb: {e}");
            return 2;
        }
    };
    let (text, differs) = report(a, &ra, b, &rb, all);
    crate::out!("{text}");
    i32::from(differs)
}

/// The comparison as text, and whether anything differs.
pub fn report(a: &Path, ra: &RunFiles, b: &Path, rb: &RunFiles, all: bool) -> (String, bool) {
    let mut text = String::new();
    for (tag, path, r) in [("A", a, ra), ("B", b, rb)] {
        text += &format!(
            "{tag}: {} (script {}, seed {}, {})\n",
            path.display(),
            field(&r.manifest, "script"),
            field(&r.manifest, "root_seed"),
            field(&r.manifest, "status"),
        );
    }
    let mut settings = Vec::new();
    for key in ["script_sha256", "root_seed", "sets", "beb_version"] {
        let (x, y) = (ra.manifest.get(key), rb.manifest.get(key));
        if x != y {
            let show = |v: Option<&Json>| v.map_or("none".to_string(), |v| v.to_string());
            settings.push(format!("{key}: {} vs {}", show(x), show(y)));
        }
    }
    if !settings.is_empty() {
        text += &format!("settings that differ: {}\n", settings.join("; "));
    }
    text += "\n";
    let comparisons = compare_all(&saved_leaves(&ra.results), &saved_leaves(&rb.results));
    let shown: Vec<&Comparison> = comparisons
        .iter()
        .filter(|c| all || c.change != Change::Equal)
        .collect();
    if !shown.is_empty() {
        let columns = ["value", "A", "B", "B - A", "95% interval", "verdict"];
        let rows: Vec<Vec<String>> = shown
            .iter()
            .map(|c| {
                let show = |l: &Option<Leaf>| l.as_ref().map_or("-".to_string(), Leaf::show);
                vec![
                    c.path.clone(),
                    show(&c.a),
                    show(&c.b),
                    c.difference.clone(),
                    c.interval.clone(),
                    c.change.label().to_string(),
                ]
            })
            .collect();
        let right = [false, true, true, true, false, false];
        text += &crate::report::table::layout(&columns, &rows, &right);
        text += "\n\n";
    }
    let count = |v: Change| comparisons.iter().filter(|c| c.change == v).count();
    let mut parts = vec![format!("{} equal", count(Change::Equal))];
    for (v, what) in [
        (Change::Differs, "differ"),
        (Change::Significant, "differ significantly (95%)"),
        (Change::NotSignificant, "differ within noise"),
        (Change::OnlyInA, "only in A"),
        (Change::OnlyInB, "only in B"),
    ] {
        let n = count(v);
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    text += &format!("{} values: {}\n", comparisons.len(), parts.join(", "));
    let (va, vb) = (verdicts(&ra.results), verdicts(&rb.results));
    let mut changed = 0;
    for (name, passed) in &va {
        match vb.iter().find(|(n, _)| n == name) {
            Some((_, other)) if other != passed => {
                changed += 1;
                let word = |p: bool| if p { "passed" } else { "failed" };
                text += &format!("{name}: {} in A, {} in B\n", word(*passed), word(*other));
            }
            Some(_) => {}
            None => {
                changed += 1;
                text += &format!("{name}: only in A\n");
            }
        }
    }
    for (name, _) in &vb {
        if !va.iter().any(|(n, _)| n == name) {
            changed += 1;
            text += &format!("{name}: only in B\n");
        }
    }
    text += &format!(
        "{} assertions compared: {}\n",
        va.len().max(vb.len()),
        if changed == 0 {
            "same verdicts".to_string()
        } else {
            format!("{changed} differ")
        }
    );
    let differs = changed > 0 || comparisons.iter().any(|c| c.change.is_difference());
    (text, differs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est(mean: f64, stderr: f64) -> Leaf {
        Leaf::Est(Estimate::new(mean, stderr, 100))
    }

    #[test]
    fn estimate_differences_are_tested_against_their_noise() {
        let c = compare("x", &est(1.0, 0.1), &est(1.1, 0.1));
        assert_eq!(c.change, Change::NotSignificant);
        let c = compare("x", &est(1.0, 0.1), &est(2.0, 0.1));
        assert_eq!(c.change, Change::Significant);
        assert!(c.interval.starts_with('['), "{}", c.interval);
        let c = compare("x", &Leaf::Num(1.0), &Leaf::Num(1.0));
        assert_eq!(c.change, Change::Equal);
        let c = compare("x", &Leaf::Num(1.0), &Leaf::Num(1.5));
        assert_eq!((c.change, c.difference.as_str()), (Change::Differs, "0.5"));
        let c = compare("x", &Leaf::Text("a".into()), &Leaf::Text("b".into()));
        assert_eq!(c.change, Change::Differs);
    }

    #[test]
    fn saved_values_flatten_to_paths() {
        let j = serde_json::json!({"curve.csv": [{"n": 0, "kl": {"mean": 1.0, "stderr": 0.1, "n": 10, "ci95": [0.8, 1.2]}}],
                                   "fit.json": {"beta": 1.5, "label": "x", "big": "inf"}});
        let mut out = Vec::new();
        leaves("", &j, true, &mut out);
        out.sort_by(|x, y| x.0.cmp(&y.0));
        let paths: Vec<&str> = out.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "curve.csv[0].kl",
                "curve.csv[0].n",
                "fit.json.beta",
                "fit.json.big",
                "fit.json.label"
            ]
        );
        assert!(matches!(out[0].1, Leaf::Est(_)));
        assert_eq!(out[3].1, Leaf::Num(f64::INFINITY));
        let only = compare_all(&out[..2], &out[1..3]);
        let changes: Vec<Change> = only.iter().map(|c| c.change).collect();
        assert_eq!(changes, [Change::OnlyInA, Change::Equal, Change::OnlyInB]);
    }
}
