//! Turning results into things people read and keep: printed tables, saved files, figures,
//! progress bars, and the rule that a script writes only inside its run folder.

pub mod confine;
pub mod plot;
pub mod progress;
pub mod read;
pub mod save;
pub mod table;
