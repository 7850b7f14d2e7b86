//! The `beb` command.

use clap::Parser;

use beb::cli::{Cli, Command, StudyCommand};
use beb::{bench, diff, repl, runner, study};

/// The interpreter recurses on the syntax tree; a large stack keeps deep user recursion an
/// error message (the call-depth limit) rather than a crash.
const STACK_BYTES: usize = 512 * 1024 * 1024;

/// The thread count of model computation, set once before any thread starts: `--threads`,
/// else `BEB_THREADS`, else `RAYON_NUM_THREADS`, else every core. candle sizes its CPU work
/// from `RAYON_NUM_THREADS` (and without it re-reads the machine's CPU topology from /proc on
/// every matrix product), and the invariant kernels run on rayon's global pool.
fn set_thread_count(flag: Option<usize>) -> Result<(), String> {
    let from_env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let threads = match (flag, from_env("BEB_THREADS"), from_env("RAYON_NUM_THREADS")) {
        (Some(n), _, _) => n,
        (None, Some(text), _) => {
            beb::cli::parse_threads(&text).map_err(|e| format!("BEB_THREADS: {e}"))?
        }
        (None, None, Some(text)) => beb::cli::parse_threads(&text)
            .unwrap_or_else(|_| std::thread::available_parallelism().map_or(1, |n| n.get())),
        (None, None, None) => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    // SAFETY: called in `main` right after parsing the command line, before any other thread
    // exists (clap starts none), so nothing reads the environment concurrently.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .map_err(|e| format!("cannot start {threads} threads: {e}"))
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = set_thread_count(cli.threads) {
        eprintln!("beb: {e}");
        std::process::exit(2);
    }
    if cli.fast_kernels || std::env::var("BEB_FAST_KERNELS").is_ok_and(|v| v == "1") {
        beb::lm::neural::kernels::set_fast(true);
    }
    if let Some(bytes) = cli.max_memory {
        beb::budget::set_limit(bytes);
    }
    let worker = std::thread::Builder::new()
        .stack_size(STACK_BYTES)
        .spawn(move || match cli.command {
            Some(Command::Run {
                file,
                seed,
                out,
                flags,
            }) => runner::run(&file, &flags.options(seed, out)),
            Some(Command::Check { file, sets }) => runner::check(&file, &sets),
            Some(Command::Study { command }) => match command {
                StudyCommand::Run {
                    study,
                    shard,
                    out,
                    flags,
                } => study::run(&study, shard.as_deref(), &flags.options(None, out)),
                StudyCommand::Report {
                    study,
                    out,
                    from,
                    allow_write,
                } => study::report(&study, out, &from, &allow_write),
            },
            Some(Command::Diff { run_a, run_b, all }) => diff::run(&run_a, &run_b, all),
            Some(Command::Repl { seed, allow_read }) => repl::start(seed, allow_read),
            Some(Command::Bench { name }) => bench::run(name.as_deref()),
            // `beb` alone: interactive in a terminal, line by line from a pipe.
            None => repl::start(None, Vec::new()),
        });
    let code = match worker.map(|handle| handle.join()) {
        Ok(Ok(code)) => code,
        _ => {
            eprintln!("beb: internal error (please report it with the script that caused it)");
            3
        }
    };
    std::process::exit(code);
}
