//! "Did you mean ...?" suggestions for misspelt keys, types and stage names.

/// The closest candidate to `word` (case-insensitive edit distance), if it
/// is close enough to be a plausible typo: at most 2 edits, or a third of
/// the candidate's length.
pub(crate) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    if word.is_empty() {
        return None;
    }
    let w = word.to_lowercase();
    let (best, dist) = candidates
        .iter()
        .map(|c| (*c, distance(&w, &c.to_lowercase())))
        .min_by_key(|(_, d)| *d)?;
    let limit = 2.max(best.chars().count() / 3);
    (dist > 0 && dist <= limit && dist < w.chars().count().max(2)).then_some(best)
}

/// Levenshtein distance over chars.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos() {
        assert_eq!(closest("typ", &["type", "target"]), Some("type"));
        assert_eq!(closest("tmp", &["bind", "cache", "tmpfs"]), Some("tmpfs"));
        assert_eq!(closest("bulid", &["build"]), Some("build"));
        assert_eq!(closest("zzzzzz", &["build"]), None);
        assert_eq!(closest("build", &["build"]), None);
    }
}
