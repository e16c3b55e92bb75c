//! Chain IDs: the identity of a stack of layers.
//!
//! `ChainID(L0) = DiffID(L0)` and `ChainID(Ln) = sha256(ChainID(Ln-1) + " " +
//! DiffID(Ln))` (OCI image-spec, config.md). Snapshots of unpacked layers are
//! keyed by chain ID, so two images sharing a base share its snapshots.

use crate::digest::Digest;

/// The chain ID of every prefix of `diff_ids`.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => Digest::of(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let c = Digest::of(b"c");
        let ids = chain_ids(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(ids[0], a);
        let ab = Digest::of(format!("{a} {b}").as_bytes());
        assert_eq!(ids[1], ab);
        assert_eq!(ids[2], Digest::of(format!("{ab} {c}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
        // Known vector: the chain of one layer is its diff ID; two layers of
        // the empty tar digest.
        let e: Digest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            .parse()
            .expect("digest");
        let two = chain_ids(&[e.clone(), e.clone()]);
        assert_eq!(
            two[1].to_string(),
            Digest::of(
                b"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            )
            .to_string()
        );
    }
}
