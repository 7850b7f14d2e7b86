//! Which seed streams produced each Monte Carlo estimate, so assertions and the run record
//! can say where a number came from.

use std::collections::HashMap;
use std::rc::Rc;

use crate::eval::interp::{Interp, MAIN_MODULE};
use crate::eval::natives::{Call, Seed};
use crate::eval::value::Value;
use crate::seed::Stream;
use crate::stats::Estimate;

/// Provenance keys: an estimate's exact bits (mean, stderr, n).
type EstimateKey = (u64, u64, usize);

fn estimate_key(e: &Estimate) -> EstimateKey {
    (e.mean.to_bits(), e.stderr.to_bits(), e.n)
}

/// How many estimates' streams are remembered before the table starts afresh.
const MAX_PROVENANCE: usize = 1 << 20;

/// The streams drawn while a builtin call or an assertion watches, and the streams each
/// returned estimate came from.
#[derive(Default)]
pub struct Provenance {
    /// Streams drawn while some builtin call or assertion is watching (see `observe`).
    log: Vec<Stream>,
    observers: usize,
    by_estimate: HashMap<EstimateKey, Rc<str>>,
}

impl Interp {
    /// Start watching which streams are drawn; returns the mark to pass to `streams_since`.
    pub(super) fn observe(&mut self) -> usize {
        self.provenance.observers += 1;
        self.provenance.log.len()
    }

    /// Stop watching; the streams drawn since `mark`.
    pub(super) fn streams_since(&mut self, mark: usize) -> Vec<Stream> {
        let p = &mut self.provenance;
        p.observers = p.observers.saturating_sub(1);
        let drawn = p.log.get(mark..).unwrap_or_default().to_vec();
        if p.observers == 0 {
            p.log.clear();
        }
        drawn
    }

    /// Remember `streams` as the origin of every estimate in `value` not already known.
    pub(super) fn note_provenance(&mut self, value: &Value, streams: &[Stream]) {
        if streams.is_empty() {
            return;
        }
        let mut found = Vec::new();
        collect_estimates(value, 0, &mut found);
        if found.is_empty() {
            return;
        }
        let table = &mut self.provenance.by_estimate;
        if table.len() + found.len() > MAX_PROVENANCE {
            table.clear();
        }
        let text: Rc<str> = Rc::from(describe_streams(streams));
        for e in found {
            table
                .entry(estimate_key(&e))
                .or_insert_with(|| text.clone());
        }
    }

    /// The seed streams a Monte Carlo estimate was drawn from, when beb saw it drawn.
    pub fn estimate_stream(&self, e: &Estimate) -> Option<Rc<str>> {
        self.provenance.by_estimate.get(&estimate_key(e)).cloned()
    }

    /// The stream a randomised builtin draws from: an explicit `seed:` (a number is a root
    /// seed, a string names a stream under the run's root), or else the call's default stream.
    ///
    /// A default stream is named `MODULE:CALLEE[K]#N`: the module the call is written in
    /// (`main` for the script and the REPL, else the imported module's name), the function
    /// as written, which call of that function it is in its file (K, counted from 0), and how
    /// often that call has run before (N). So the script's path, comments, blank lines and
    /// formatting never move a draw; adding a call of the same function above it does.
    pub fn seed_stream(&mut self, call: &Call, seed: Option<&Seed>) -> Stream {
        let stream = match seed {
            Some(Seed::Root(root)) => Stream::new(*root, call.builtin.name.clone()),
            Some(Seed::Named(name)) => Stream::new(self.root_seed, name.to_string()),
            None => {
                let module = self
                    .source(call.span.file)
                    .map(|s| s.module.clone())
                    .unwrap_or_else(|| Rc::from(MAIN_MODULE));
                let site = match &call.site {
                    Some(site) => format!("{module}:{}[{}]", site.callee, site.ordinal),
                    None => format!("{module}:{}[indirect]", call.builtin.name),
                };
                let counter = self.call_sites.entry(site.clone()).or_insert(0);
                let occurrence = *counter;
                *counter += 1;
                Stream::new(self.root_seed, format!("{site}#{occurrence}"))
            }
        };
        if self.provenance.observers > 0 {
            self.provenance.log.push(stream.clone());
        }
        stream
    }
}

/// The estimates inside a value (in lists, records and tables, a few levels deep).
pub(super) fn collect_estimates(v: &Value, depth: usize, out: &mut Vec<Estimate>) {
    const MAX_DEPTH: usize = 4;
    const MAX_FOUND: usize = 1 << 16;
    if depth > MAX_DEPTH || out.len() >= MAX_FOUND {
        return;
    }
    match v {
        Value::Estimate(e) => out.push(*e),
        Value::List(items) => items
            .iter()
            .for_each(|i| collect_estimates(i, depth + 1, out)),
        Value::Record(r) => r
            .fields
            .iter()
            .for_each(|(_, f)| collect_estimates(f, depth + 1, out)),
        Value::Table(t) => t
            .rows
            .iter()
            .flatten()
            .for_each(|c| collect_estimates(c, depth + 1, out)),
        _ => {}
    }
}

/// Streams as the run record and assertion messages show them:
/// `main:sample[0]#0 (root seed 1)`; several are listed, many are summarised.
pub fn describe_streams(streams: &[Stream]) -> String {
    let mut unique: Vec<&Stream> = Vec::new();
    for s in streams {
        if !unique.contains(&s) {
            unique.push(s);
        }
    }
    match unique.len() {
        0 => String::new(),
        1..=3 => unique
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        n => format!("{}, {} and {} more", unique[0], unique[1], n - 2),
    }
}
