//! Cache keys: what makes two runs of a step interchangeable.
//!
//! A step's key is sha256 over, in order and length-prefixed: the definition
//! digest of its op (sha256 of the op's canonical JSON — keys sorted, so a
//! field reordering in a struct never changes a key), the cache keys of its
//! inputs, the content checksum of the context files it selects (COPY/ADD),
//! and the manifest digest of the base image (sources). Anything else — the
//! time, the host, mtimes, proxy variables — cannot reach the key.

use cache::digest::{Digest, Sha256};
use serde_json::Value;

/// Everything a key is made of.
#[derive(Debug, Clone, Default)]
pub struct KeyInputs<'a> {
    /// `sha256:` digest of the op's definition ([`definition_digest`]).
    pub definition: &'a str,
    /// Keys of the vertices this one reads, in input order.
    pub inputs: &'a [String],
    /// Checksum of the selected context files, for COPY/ADD from the context.
    pub context: Option<&'a str>,
    /// Manifest digest of a base image, for image sources.
    pub base_digest: Option<&'a str>,
}

/// The `sha256:` digest of a definition's canonical JSON.
pub fn definition_digest(def: &Value) -> String {
    let mut buf = Vec::new();
    write_canonical(def, &mut buf);
    Digest::of(&buf).to_string()
}

/// The cache key of a vertex.
pub fn cache_key(k: &KeyInputs<'_>) -> String {
    let mut h = Sha256::new();
    let mut field = |tag: &str, s: &str| {
        h.update(tag.as_bytes());
        h.update(&(s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    field("def", k.definition);
    for i in k.inputs {
        field("in", i);
    }
    if let Some(c) = k.context {
        field("ctx", c);
    }
    if let Some(b) = k.base_digest {
        field("base", b);
    }
    h.finalize().to_string()
}

/// JSON with object keys sorted at every level and no whitespace.
fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(Value::String(k.clone()).to_string().as_bytes());
                out.push(b':');
                write_canonical(&m[k], out);
            }
            out.push(b'}');
        }
        Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(x, out);
            }
            out.push(b']');
        }
        other => out.extend_from_slice(other.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn key_order_in_objects_does_not_matter() {
        let a: Value = serde_json::from_str(r#"{"a":1,"b":{"x":[1,2],"y":"z"}}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b":{"y":"z","x":[1,2]},"a":1}"#).unwrap();
        assert_eq!(definition_digest(&a), definition_digest(&b));
        assert_ne!(definition_digest(&a), definition_digest(&json!({"a":2})));
    }

    /// Keys are stored in the cache index, so the bytes hashed must never
    /// change (for example with the hashing backend). Expected values from
    /// Python's hashlib over the documented layout.
    #[test]
    fn keys_are_stable() {
        let d = definition_digest(&json!({"argv":["true"]}));
        assert_eq!(
            d,
            "sha256:5dc92c0de02ce7791871a8591eef46e18b9ff5eb00b0703070fc9452d41cc083"
        );
        let inputs = vec!["sha256:aa".to_string()];
        let k = cache_key(&KeyInputs {
            definition: &d,
            inputs: &inputs,
            context: Some("c1"),
            base_digest: Some("sha256:x"),
        });
        assert_eq!(
            k,
            "sha256:44a41edab1c6675ae1b3fbebb31acac250bb8fe3ef8b6874b30b90931dd60b2e"
        );
    }

    #[test]
    fn every_input_counts() {
        let d = definition_digest(&json!({"argv":["true"]}));
        let inputs = vec!["sha256:aa".to_string()];
        let base = KeyInputs {
            definition: &d,
            inputs: &inputs,
            context: None,
            base_digest: None,
        };
        let k = cache_key(&base);
        assert_eq!(k, cache_key(&base.clone()));
        let other_inputs = vec!["sha256:bb".to_string()];
        assert_ne!(
            k,
            cache_key(&KeyInputs {
                inputs: &other_inputs,
                ..base.clone()
            })
        );
        assert_ne!(
            k,
            cache_key(&KeyInputs {
                context: Some("c1"),
                ..base.clone()
            })
        );
        assert_ne!(
            k,
            cache_key(&KeyInputs {
                base_digest: Some("sha256:x"),
                ..base.clone()
            })
        );
        // A context checksum is not confusable with a base digest.
        assert_ne!(
            cache_key(&KeyInputs {
                context: Some("x"),
                ..base.clone()
            }),
            cache_key(&KeyInputs {
                base_digest: Some("x"),
                ..base
            })
        );
    }
}
