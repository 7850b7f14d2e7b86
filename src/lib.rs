//! beb: an experiment language for measuring how far prompting can pull a language model
//! away from its alignment (Behavior Expectation Bounds).

// Diagnostics carry spans, labels, help and the source text; they travel only on the cold error
// path, so their size costs nothing where it matters.
#![allow(clippy::result_large_err)]

pub mod bench;
pub mod budget;
pub mod cache;
pub mod cli;
pub mod data;
pub mod diff;
pub mod error;
pub mod eval;
pub mod fit;
pub mod format;
pub mod lm;
pub mod measure;
pub mod record;
pub mod repl;
pub mod report;
pub mod runner;
pub mod seed;
pub mod stats;
pub mod study;
pub mod syntax;
pub mod yaml;
