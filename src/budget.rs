//! The memory budget. Sizes that a script or a model file chooses (`samples:`, `count:`,
//! `turns:`, a list doubled in a loop, a context length) are checked against it before
//! anything is allocated, so that asking for too much is a diagnostic that says how much,
//! not an abort that loses the session.
//!
//! The budget is `--max-memory` (e.g. `8G`), else a quarter of the machine's physical memory:
//! one request within it, plus what it is built from (a list doubled in a loop holds both
//! halves and the whole), stays within the machine.

use std::sync::atomic::{AtomicU64, Ordering};

/// The budget in bytes; 0 until set (then the default is used).
static LIMIT: AtomicU64 = AtomicU64::new(0);

/// When /proc/meminfo cannot be read.
const FALLBACK: u64 = 8 << 30;

/// Set the budget for the rest of the process (from `--max-memory`).
pub fn set_limit(bytes: u64) {
    LIMIT.store(bytes.max(1), Ordering::Relaxed);
}

/// The budget in bytes.
pub fn limit() -> u64 {
    match LIMIT.load(Ordering::Relaxed) {
        0 => physical_memory().map_or(FALLBACK, |m| m / 4),
        set => set,
    }
}

fn physical_memory() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Refuse `count` items of about `bytes_each` bytes each when they would not fit the budget;
/// `what` names the request as the script wrote it (`kl(..., samples: 1000000000)`).
pub fn check(what: &str, count: u64, bytes_each: u64) -> Result<(), String> {
    let total = count.saturating_mul(bytes_each.max(1));
    let limit = limit();
    if total <= limit {
        return Ok(());
    }
    Err(format!(
        "{what} would need about {} ({count} x {} each), more than the memory budget of {}; ask for less, or raise the budget with --max-memory",
        bytes(total),
        bytes(bytes_each),
        bytes(limit)
    ))
}

/// A size as people read it: 1.5 GB, 320 B.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut x = n as f64;
    let mut unit = 0;
    while x >= 1000.0 && unit + 1 < UNITS.len() {
        x /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else if x >= 1000.0 {
        format!("{x:.3e} {}", UNITS[unit])
    } else {
        format!("{x:.3} {}", UNITS[unit]).replace(".000 ", " ")
    }
}

/// Parse `--max-memory`: a number of bytes with an optional K, M, G or T (powers of 1024).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (number, scale) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let scale: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("unknown size unit in {text:?}; use K, M, G or T")),
            };
            (&t[..i], scale)
        }
        _ => (t, 1),
    };
    let x: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("a size is a number with K, M, G or T, found {text:?}"))?;
    if !(x.is_finite() && x > 0.0) {
        return Err(format!("a size is positive, found {text:?}"));
    }
    Ok((x * scale as f64).min(u64::MAX as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_print() {
        assert_eq!(parse_size("8G"), Ok(8 << 30));
        assert_eq!(parse_size("1.5k"), Ok(1536));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("-1G").is_err() && parse_size("8Q").is_err());
        assert_eq!(bytes(320), "320 B");
        assert_eq!(bytes(320_000_000_000), "320 GB");
    }

    #[test]
    fn requests_past_the_budget_are_refused_with_their_size() {
        assert!(check("small", 10, 10).is_ok());
        let err = check("kl(..., samples: 1000000000)", 1_000_000_000_000, 320).unwrap_err();
        assert!(
            err.contains("320 TB") && err.contains("--max-memory"),
            "{err}"
        );
    }
}
