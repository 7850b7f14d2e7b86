//! The `beb` command.

use clap::Parser;

use beb::cli::{Cli, Command, StudyCommand};
use beb::{bench, diff, repl, runner, study};

/// The interpreter recurses on the syntax tree; a large stack keeps deep user recursion an
/// error message (the call-depth limit) rather than a crash.
const STACK_BYTES: usize = 512 * 1024 * 1024;

/// candle sizes its CPU thread pool from `RAYON_NUM_THREADS`, and without it re-reads the
/// machine's CPU topology from /proc on every matrix product; reading it once here saves that.
fn set_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return;
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: called first thing in `main`, before any other thread exists.
    unsafe { std::env::set_var("RAYON_NUM_THREADS", threads.to_string()) };
}

fn main() {
    set_thread_count();
    let cli = Cli::parse();
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
