//! Builtins implemented in Rust, one file per module; each declares a `NATIVES` table.

pub mod data;
pub mod finetune;
pub mod generation;
pub mod labels;
pub mod models;
pub mod neural;
pub mod prelude;
pub mod probe;
pub mod results;
pub mod server;

use crate::eval::natives::Native;

/// Every builtin module, in the order `:help` lists them.
pub const MODULES: &[(&str, &[Native])] = &[
    ("prelude", prelude::NATIVES),
    ("models", models::NATIVES),
    ("neural", neural::NATIVES),
    ("server", server::NATIVES),
    ("data", data::NATIVES),
    ("finetune", finetune::NATIVES),
    ("probe", probe::NATIVES),
    ("results", results::NATIVES),
    ("generation", generation::NATIVES),
    ("labels", labels::NATIVES),
];
