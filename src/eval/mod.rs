//! The interpreter: values, scopes, builtins, and evaluation over the spanned AST.
//!
//! `Interp` (interp.rs) holds the state; its behaviour is split by what it evaluates:
//! statements (stmt.rs), expressions (expr.rs), calls (call.rs), imports (modules.rs),
//! assertions (assert.rs) and the provenance of Monte Carlo estimates (provenance.rs).

mod assert;
pub mod builtins;
mod call;
pub mod capture;
pub mod check;
mod conditioned;
pub mod env;
mod errors;
pub mod export;
mod expr;
pub mod interp;
mod interruptible;
mod modules;
pub mod natives;
pub mod plotting;
mod provenance;
pub mod run_context;
pub mod stdlib;
mod stmt;
pub mod suggest;
pub mod value;

pub use capture::CapturedOutput;
pub use interp::{Control, Eval, Interp, Settings, Source};
pub use provenance::describe_streams;
pub use run_context::{InputFile, RunContext, Verdict};
pub use value::Value;
pub use value::ops;

#[cfg(test)]
mod tests;
