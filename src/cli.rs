//! The command line: `beb run`, `beb check`, `beb repl`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "beb",
    version,
    about = "Measure Behavior Expectation Bounds of language models"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a script. Exit status: 0 success, 1 an assertion failed, 2 any other error.
    Run {
        file: PathBuf,
        /// Root seed; every random stream derives from it (chosen and printed when absent).
        #[arg(long)]
        seed: Option<u64>,
        /// Define a variable for the script: `--set alpha=1e-4` (a beb expression; otherwise a string).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        sets: Vec<String>,
        /// Folder for the run record and saved files (default: a new folder under runs/ when something is saved).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Parse a script and resolve its names without running anything.
    Check {
        file: PathBuf,
        /// Names the script expects from `--set` at run time.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        sets: Vec<String>,
    },
    /// Measure speed against a baseline on this machine (benchmarks: loop, figure2).
    Bench { name: Option<String> },
    /// Interactive session (also what `beb` alone starts).
    Repl {
        #[arg(long)]
        seed: Option<u64>,
    },
}
