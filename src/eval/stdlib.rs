//! The standard library written in beb (`stdlib/*.beb`), embedded so `beb` runs anywhere.

/// (module name, source text).
pub const MODULES: &[(&str, &str)] = &[("bounds", include_str!("../../stdlib/bounds.beb"))];

pub fn source(name: &str) -> Option<&'static str> {
    MODULES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}
