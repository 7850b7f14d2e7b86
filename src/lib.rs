//! beb: an experiment language for measuring how far prompting can pull a language model
//! away from its alignment (Behavior Expectation Bounds).

pub mod cli;
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
pub mod yaml;
pub mod syntax;
