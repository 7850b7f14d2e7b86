//! "Did you mean ...?" for unknown names, arguments and fields.

/// The known name closest to `name`, if it is close enough to be a plausible typo.
pub fn closest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|k| (strsim::damerau_levenshtein(name, k), k))
        .filter(|(d, k)| *d <= (name.len().max(k.len()) / 3).max(1) && *d > 0)
        .min_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)))
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    #[test]
    fn finds_typos() {
        assert_eq!(
            super::closest("lenght", ["len", "length", "log"]),
            Some("length")
        );
        assert_eq!(super::closest("zzzzzz", ["len", "log"]), None);
    }
}
