//! Progress bars for long measurements (sweeps, sampling, scoring, studies): an indicatif bar
//! with the rate and the time left, on stderr, only when stderr is a terminal. Elsewhere (logs,
//! pipes, tests, cluster jobs) nothing is drawn.
//!
//! A bar appears only once its work has run for half a second, so quick sweeps never flash one.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How long work runs before its bar is drawn.
const SHOW_AFTER: Duration = Duration::from_millis(500);

/// Where bars are drawn: one per process (or per interpreter), shared by nested bars.
#[derive(Clone)]
pub struct ProgressHub {
    /// `None` when stderr is not a terminal: bars are then never drawn.
    multi: Option<MultiProgress>,
}

impl Default for ProgressHub {
    fn default() -> Self {
        ProgressHub::detect()
    }
}

impl ProgressHub {
    /// Bars on stderr when it is a terminal (and `BEB_PROGRESS` is not `0`), else none.
    pub fn detect() -> ProgressHub {
        let wanted = std::env::var_os("BEB_PROGRESS").is_none_or(|v| v != "0");
        if wanted && std::io::stderr().is_terminal() {
            ProgressHub {
                multi: Some(MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            }
        } else {
            ProgressHub::hidden()
        }
    }

    /// A hub that never draws.
    pub fn hidden() -> ProgressHub {
        ProgressHub { multi: None }
    }

    pub fn is_hidden(&self) -> bool {
        self.multi.is_none()
    }

    /// A bar for `total` steps of work called `label` (e.g. "sampling", "sweep n").
    pub fn bar(&self, total: u64, label: &str) -> Progress {
        let bar = match &self.multi {
            Some(_) => {
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
                let style = ProgressStyle::with_template(
                    "{prefix:>12} {bar:30} {pos}/{len} [{elapsed_precise}, {per_sec}, ETA {eta}] {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("█▉▊▋▌▍▎▏ ");
                bar.set_style(style);
                bar.set_prefix(label.to_string());
                Some(bar)
            }
            None => None,
        };
        Progress {
            bar,
            multi: self.multi.clone(),
            shown: Arc::new(AtomicBool::new(false)),
            started: Instant::now(),
        }
    }

    /// Run `f` with the bars hidden (for writing to the terminal while they are shown).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.multi {
            Some(multi) => multi.suspend(f),
            None => f(),
        }
    }

    /// Print a line on stderr above the bars (or plainly when there are none).
    pub fn println(&self, line: &str) {
        match &self.multi {
            Some(multi) if multi.println(line).is_ok() => {}
            _ => eprintln!("{line}"),
        }
    }
}

/// One bar. Cheap to clone; safe to advance from several threads.
#[derive(Clone)]
pub struct Progress {
    bar: Option<ProgressBar>,
    multi: Option<MultiProgress>,
    shown: Arc<AtomicBool>,
    started: Instant,
}

impl Progress {
    /// A bar that never draws.
    pub fn hidden() -> Progress {
        ProgressHub::hidden().bar(0, "")
    }

    /// Advance by `steps`.
    pub fn inc(&self, steps: u64) {
        let Some(bar) = &self.bar else { return };
        bar.inc(steps);
        if !self.shown.load(Ordering::Relaxed)
            && self.started.elapsed() >= SHOW_AFTER
            && !self.shown.swap(true, Ordering::Relaxed)
            && let Some(multi) = &self.multi
        {
            multi.add(bar.clone());
        }
    }

    /// A short note shown after the counts (e.g. the current parameter values).
    pub fn set_message(&self, message: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.to_string());
        }
    }

    /// Remove the bar (also done when the last clone is dropped).
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            if let Some(multi) = &self.multi {
                multi.remove(bar);
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // Only the last handle clears the bar.
        if Arc::strong_count(&self.shown) == 1 {
            self.finish();
        }
    }
}

/// How `lm` (which may not depend on this module) draws its bars.
impl crate::lm::run_cache::ProgressSink for ProgressHub {
    fn bar(&self, total: u64, label: &str) -> Box<dyn crate::lm::run_cache::ProgressBar> {
        Box::new(ProgressHub::bar(self, total, label))
    }
}

impl crate::lm::run_cache::ProgressBar for Progress {
    fn inc(&self, steps: u64) {
        Progress::inc(self, steps);
    }

    fn finish(&self) {
        Progress::finish(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_bars_accept_every_call() {
        let hub = ProgressHub::hidden();
        assert!(hub.is_hidden());
        let bar = hub.bar(10, "test");
        bar.inc(3);
        bar.set_message("x");
        let copy = bar.clone();
        copy.inc(1);
        drop(copy);
        bar.finish();
        assert_eq!(hub.suspend(|| 4), 4);
    }
}
