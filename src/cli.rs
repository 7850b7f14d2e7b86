//! The command line: `beb run`, `beb check`, `beb study`, `beb diff`, `beb repl`, `beb bench`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::runner::{CacheChoice, RunOptions};

#[derive(Parser, Debug)]
#[command(
    name = "beb",
    version,
    about = "Measure Behavior Expectation Bounds of language models"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Memory budget for sizes a script or model file chooses (`samples:`, `count:`, context
    /// lengths), e.g. `8G`; larger requests are refused. Default: a quarter of the machine's memory.
    #[arg(long = "max-memory", global = true, value_name = "SIZE", value_parser = crate::budget::parse_size)]
    pub max_memory: Option<u64>,
    /// Threads for model computation (candle's and rayon's pools), set once at startup; also
    /// `BEB_THREADS`. Default: every core. Results are the same bits for any count.
    #[arg(long = "threads", global = true, value_name = "N", value_parser = parse_threads)]
    pub threads: Option<usize>,
    /// Compute neural models with candle's matmul and attention instead of the batch-invariant
    /// kernels (also `BEB_FAST_KERNELS=1`): results then change in their last bits with the
    /// batch size and the prefix cache (docs/neural.md, Determinism).
    #[arg(long = "fast-kernels", global = true)]
    pub fast_kernels: bool,
}

/// `--threads N` / `BEB_THREADS`: a whole number >= 1.
pub fn parse_threads(text: &str) -> Result<usize, String> {
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| format!("a thread count is a whole number >= 1, found {text:?}"))
}

/// Options shared by `beb run` and `beb study run`.
#[derive(Args, Debug, Clone, Default)]
pub struct RunFlags {
    /// Define a variable for the script: `--set alpha=1e-4` (a beb expression; otherwise a string).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub sets: Vec<String>,
    /// Let the script write inside this folder too (scripts write only inside their run folder).
    #[arg(long = "allow-write", value_name = "PATH")]
    pub allow_write: Vec<PathBuf>,
    /// Let the script connect to this host (`HOST` or `HOST:PORT`; loopback included): runs
    /// reach no network otherwise.
    #[arg(long = "allow-net", value_name = "HOST[:PORT]")]
    pub allow_net: Vec<String>,
    /// Let the script read this file or folder too (scripts read only inside their run
    /// folder, their own folder, $BEB_SHARED and the Hugging Face cache).
    #[arg(long = "allow-read", value_name = "PATH")]
    pub allow_read: Vec<PathBuf>,
    /// Compute every model call afresh: neither read nor fill the cache.
    #[arg(long = "no-cache")]
    pub no_cache: bool,
    /// Cache folder for model calls (default: runs/.cache; for a study: its output folder's .cache).
    #[arg(long = "cache", value_name = "DIR", conflicts_with = "no_cache")]
    pub cache: Option<PathBuf>,
}

impl RunFlags {
    pub fn cache_choice(&self) -> CacheChoice {
        match (&self.cache, self.no_cache) {
            (_, true) => CacheChoice::Off,
            (Some(dir), false) => CacheChoice::At(dir.clone()),
            (None, false) => CacheChoice::Default,
        }
    }

    pub fn options(&self, seed: Option<u64>, out: Option<PathBuf>) -> RunOptions {
        RunOptions {
            seed,
            sets: self.sets.clone(),
            out,
            allow_write: self.allow_write.clone(),
            allow_net: self.allow_net.clone(),
            allow_read: self.allow_read.clone(),
            cache: self.cache_choice(),
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a script. Exit status: 0 success, 1 an assertion failed, 2 any other error.
    Run {
        file: PathBuf,
        /// Root seed; every random stream derives from it (chosen and printed when absent).
        #[arg(long, allow_negative_numbers = true, value_parser = parse_seed)]
        seed: Option<u64>,
        /// Folder for the run record, saved files and plots (default: a new runs/SCRIPT-TIME-seedN).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        flags: RunFlags,
    },
    /// Parse a script and resolve its names without running anything.
    Check {
        file: PathBuf,
        /// Names the script expects from `--set` at run time.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        sets: Vec<String>,
    },
    /// Run or report a study: a grid of parameters and seeds over scripts, from a YAML file.
    Study {
        #[command(subcommand)]
        command: StudyCommand,
    },
    /// Compare two run folders value by value.
    Diff {
        run_a: PathBuf,
        run_b: PathBuf,
        /// List equal values too.
        #[arg(long)]
        all: bool,
    },
    /// Measure speed against a baseline on this machine (benchmarks: loop, figure2, server).
    Bench { name: Option<String> },
    /// Interactive session (also what `beb` alone starts).
    Repl {
        #[arg(long, allow_negative_numbers = true, value_parser = parse_seed)]
        seed: Option<u64>,
        /// Let the session read this file or folder too (it reads only inside the current
        /// folder, $BEB_SHARED and the Hugging Face cache).
        #[arg(long = "allow-read", value_name = "PATH")]
        allow_read: Vec<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum StudyCommand {
    /// Run every combination not already complete (rerunning resumes an interrupted study),
    /// then draw the study's plots (not for one shard).
    Run {
        study: PathBuf,
        /// Run only combinations i, i+N, i+2N, ... (0 <= i < N), e.g. `--shard $SLURM_ARRAY_TASK_ID/8`.
        #[arg(long, value_name = "i/N")]
        shard: Option<String>,
        /// Output folder (default: the study file's `out`).
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        flags: RunFlags,
    },
    /// Gather the combinations' results into one table (printed, and report.csv), a summary
    /// over seeds (summary.csv) and the study's plots.
    Report {
        study: PathBuf,
        /// Output folder to read (default: the study file's `out`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also read combinations from these folders (other shards' outputs).
        #[arg(long = "from", value_name = "DIR")]
        from: Vec<PathBuf>,
        /// Let the study file's `out:` lead to this folder outside the study's own folder.
        #[arg(long = "allow-write", value_name = "PATH")]
        allow_write: Vec<PathBuf>,
    },
}

/// `--seed N`: a whole number >= 0 (a negative or fractional seed is refused with the reason,
/// not taken for another flag).
fn parse_seed(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<u64>()
        .map_err(|_| format!("a seed is a whole number >= 0, found {text:?}"))
}

/// Write the command's own output to stdout. A closed reader (`beb check x.beb | head -0`)
/// ends the process with a one-line message and exit status 2, as `beb run` reports it,
/// where `println!` would panic.
pub fn write_stdout(args: std::fmt::Arguments) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args).and_then(|()| out.flush()) {
        drop(out);
        eprintln!("beb: cannot write output: {e}");
        std::process::exit(2);
    }
}

/// `println!` for the command line's output, through [`write_stdout`].
#[macro_export]
macro_rules! outln {
    () => { $crate::cli::write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cli::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// `print!` for the command line's output, through [`write_stdout`].
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::cli::write_stdout(format_args!($($arg)*)) };
}
