//! "Did you mean": the known key nearest a misspelled one.

/// The known key nearest a misspelled one, if near enough to be what was meant: a few edits (insertions,
/// deletions, substitutions, swaps of neighbours: strsim's optimal string alignment), fewer for short keys.
/// Case and `-` for `_` are not counted.
pub fn nearest<'a>(given: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let given = given.to_ascii_lowercase().replace('-', "_");
    let limit = match given.chars().count() {
        0..=4 => 1,
        5..=8 => 2,
        _ => 3,
    };
    known
        .map(|k| (strsim::osa_distance(&given, k), k))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_nearest_key_is_a_few_edits_away() {
        let known = ["attempts", "backoff_ms", "max_backoff_secs", "ca_file", "timeout_secs"];
        assert_eq!(nearest("atempts", known.into_iter()), Some("attempts"));
        assert_eq!(nearest("Ca-File", known.into_iter()), Some("ca_file"));
        assert_eq!(nearest("timeuot_secs", known.into_iter()), Some("timeout_secs"));
        assert_eq!(nearest("colour", known.into_iter()), None);
    }
}
