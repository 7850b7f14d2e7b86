//! The interpreter: values, scopes, builtins, and evaluation over the spanned AST.

pub mod builtins;
pub mod capture;
pub mod env;
mod errors;
pub mod export;
pub mod interp;
pub mod natives;
pub mod ops;
pub mod plotting;
pub mod resolve;
pub mod stat_assert;
pub mod stdlib;
pub mod suggest;
pub mod value;

pub use capture::CapturedOutput;
pub use interp::Interp;
pub use value::Value;
