//! Monte Carlo estimates and the statistics that make them honest: standard errors,
//! confidence intervals and one-sided tests, plus the log-space arithmetic every
//! probability computation in beb goes through.

pub mod estimate;
pub mod hypothesis;
pub mod logspace;

pub use estimate::{Count, Estimate, Shape};
pub use hypothesis::{Direction, StatsError, Verdict, Z95, holm, one_sided};
