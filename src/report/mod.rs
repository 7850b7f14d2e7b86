//! Turning results into things people read and keep: printed tables and saved files.

pub mod save;
pub mod table;
