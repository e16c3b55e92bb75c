//! The content store and everything that moves images in and out of it.
//!
//! Blobs live by sha256 digest and are verified on every write; tags and
//! cache keys are small index files; layers are written and read as tar
//! streams with OCI whiteouts, and a layer built by the caller may be kept
//! as a directory only, its blob made on demand (`origin`,
//! `transport::LayerSource`); images come from and go to registries,
//! docker-archive tarballs and OCI layouts. Nothing here knows about
//! Dockerfiles: the builder hands over bytes, directories and digests.

mod atomic;
pub mod cas;
pub mod digest;
pub mod error;
pub mod gc;
pub mod image;
pub mod index;
pub mod layer;
pub mod lock;
pub mod origin;
pub mod platform;
pub mod reference;
pub mod store;
pub mod transport;
