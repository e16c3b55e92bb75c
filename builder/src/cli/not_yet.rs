//! The one error for a verb or option that is not built yet, so that a user
//! gets a clear refusal instead of a wrong result.

pub fn not_supported(what: &str) -> anyhow::Error {
    anyhow::anyhow!("not supported yet: {what}")
}
