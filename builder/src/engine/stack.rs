//! A root filesystem as the engine tracks it: the layers it is made of, bottom
//! first, each with the identities the rest of the build needs (blob
//! descriptor for the manifest, diff ID for the config, chain ID for its
//! snapshot directory).
//!
//! A stack is plain data and cheap to clone: every step returns a new stack
//! (`parent + one layer`, or the parent itself when the step changed
//! nothing), and the final stack of a stage is what the image is assembled
//! from. The directories the layers are unpacked to are not part of it; the
//! engine makes them on demand ([`super::Engine::lowers`]), so a stack can be
//! cached and restored without touching the disk.

use cache::digest::Digest;
use cache::image::{Descriptor, chain_ids};

/// One layer of a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackLayer {
    /// The (compressed) blob: digest, size, media type.
    pub descriptor: Descriptor,
    /// sha256 of the uncompressed tar; goes into `rootfs.diff_ids`.
    pub diff_id: Digest,
    /// The chain ID of the stack up to and including this layer; names its
    /// snapshot directory.
    pub chain_id: Digest,
    /// An image reference the blob can be fetched from when it is not in the
    /// store (base-image layers), `None` for layers this build wrote.
    pub origin: Option<String>,
}

/// The layers of a root filesystem, bottom first. Empty = `FROM scratch`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerStack {
    layers: Vec<StackLayer>,
}

impl LayerStack {
    /// An empty root filesystem (`FROM scratch`).
    pub fn scratch() -> LayerStack {
        LayerStack::default()
    }

    /// A stack from an image's layer descriptors and diff IDs (bottom
    /// first). `origin` is where missing blobs can be pulled from.
    pub fn from_image(
        descriptors: &[Descriptor],
        diff_ids: &[Digest],
        origin: Option<&str>,
    ) -> anyhow::Result<LayerStack> {
        if descriptors.len() != diff_ids.len() {
            anyhow::bail!(
                "the image has {} layers but its config lists {} diff_ids",
                descriptors.len(),
                diff_ids.len()
            );
        }
        let chains = chain_ids(diff_ids);
        let layers = descriptors
            .iter()
            .zip(diff_ids)
            .zip(chains)
            .map(|((d, diff_id), chain_id)| StackLayer {
                descriptor: d.clone(),
                diff_id: diff_id.clone(),
                chain_id,
                origin: origin.map(str::to_string),
            })
            .collect();
        Ok(LayerStack { layers })
    }

    /// This stack with one more layer on top.
    pub fn with_layer(&self, descriptor: Descriptor, diff_id: Digest) -> LayerStack {
        let chain_id = self.child_chain_id(&diff_id);
        let mut layers = self.layers.clone();
        layers.push(StackLayer {
            descriptor,
            diff_id,
            chain_id,
            origin: None,
        });
        LayerStack { layers }
    }

    /// The chain ID a layer with `diff_id` gets on top of this stack.
    pub fn child_chain_id(&self, diff_id: &Digest) -> Digest {
        match self.layers.last() {
            None => diff_id.clone(),
            Some(top) => Digest::of(format!("{} {diff_id}", top.chain_id).as_bytes()),
        }
    }

    /// The layers, bottom first.
    pub fn layers(&self) -> &[StackLayer] {
        &self.layers
    }

    /// The top layer's chain ID (`None` for scratch).
    pub fn chain_id(&self) -> Option<&Digest> {
        self.layers.last().map(|l| &l.chain_id)
    }

    /// The diff IDs, bottom first (the config's `rootfs.diff_ids`).
    pub fn diff_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    /// The blob descriptors, bottom first (the manifest's `layers`).
    pub fn descriptors(&self) -> Vec<Descriptor> {
        self.layers.iter().map(|l| l.descriptor.clone()).collect()
    }

    pub fn len(&self) -> usize {
        self.layers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_match_the_image_spec_rule() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let desc = |d: &Digest| Descriptor::new("x", d.clone(), 1);
        let from_image =
            LayerStack::from_image(&[desc(&a), desc(&b)], &[a.clone(), b.clone()], None)
                .expect("stack");
        let built = LayerStack::scratch()
            .with_layer(desc(&a), a.clone())
            .with_layer(desc(&b), b.clone());
        assert_eq!(from_image, built);
        assert_eq!(built.layers()[0].chain_id, a);
        assert_eq!(
            built.chain_id(),
            Some(&Digest::of(format!("{a} {b}").as_bytes()))
        );
        assert!(LayerStack::from_image(&[desc(&a)], &[], None).is_err());
    }
}
