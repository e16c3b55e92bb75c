//! Snapshot keys become directory names; keep them boring.

use super::SnapshotError;

/// Accepts 1–200 characters of `[A-Za-z0-9._-]`, not starting with `.`, so a
/// key can never escape the snapshot root or collide with a temporary name.
pub(crate) fn validate_key(key: &str) -> Result<(), SnapshotError> {
    let bad = |why| {
        Err(SnapshotError::InvalidKey {
            key: key.to_string(),
            why,
        })
    };
    if key.is_empty() {
        return bad("it is empty");
    }
    if key.len() > 200 {
        return bad("it is longer than 200 bytes");
    }
    if key.starts_with('.') {
        return bad("it starts with `.`");
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return bad("only ASCII letters, digits, `.`, `_` and `-` are allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate_key;

    #[test]
    fn keys() {
        assert!(validate_key("sha256-abc_1.2").is_ok());
        for bad in ["", ".", "..", ".hidden", "a/b", "a b", &"x".repeat(201)] {
            assert!(validate_key(bad).is_err(), "{bad:?} accepted");
        }
    }
}
