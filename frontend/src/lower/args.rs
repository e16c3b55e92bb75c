//! ARG scoping, as BuildKit implements it.
//!
//! * ARGs before the first FROM are *global* (meta args): usable in FROM
//!   lines, and inside a stage only after the stage redeclares them
//!   (`ARG NAME` takes the global value).
//! * A stage's ARGs are visible from their declaration to the end of the
//!   stage, and not in other stages.
//! * `--build-arg` overrides any default.
//! * The platform args (TARGETPLATFORM, BUILDARCH, ...) are predefined in
//!   the global scope; the proxy args (HTTP_PROXY, ...) reach RUN steps
//!   without a declaration and never appear in the image history.

use std::collections::{BTreeMap, BTreeSet};

use crate::graph::{BuildOptions, Platform};

use super::vars::Vars;

/// Names of the proxy build args, upper case first.
pub(crate) const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Whether `name` is a proxy arg.
pub(crate) fn is_proxy(name: &str) -> bool {
    PROXY_ARGS.contains(&name)
}

/// The automatic platform args for a target and build platform.
pub(crate) fn platform_args(target: &Platform, build: &Platform) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", build)] {
        v.push((format!("{prefix}PLATFORM"), p.to_string()));
        v.push((format!("{prefix}OS"), p.os.clone()));
        v.push((format!("{prefix}ARCH"), p.architecture.clone()));
        v.push((
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        ));
    }
    v
}

/// Whether `name` is one of the predefined platform args.
pub(crate) fn is_platform_arg(name: &str) -> bool {
    ["TARGET", "BUILD"].iter().any(|p| {
        name.strip_prefix(p)
            .is_some_and(|rest| matches!(rest, "PLATFORM" | "OS" | "ARCH" | "VARIANT"))
    })
}

/// The proxy environment RUN steps get: lower-case names, the lower-case
/// build arg winning over the upper-case one. Empty when no proxy arg is
/// given.
pub(crate) fn proxy_env(build_args: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for pair in PROXY_ARGS.chunks(2) {
        let (upper, lower) = (pair[0], pair[1]);
        if let Some(v) = build_args.get(lower).or_else(|| build_args.get(upper)) {
            env.push((lower.to_string(), v.clone()));
        }
    }
    env
}

/// The global (pre-FROM) scope plus the record of which build args were
/// consumed anywhere.
#[derive(Debug, Clone)]
pub(crate) struct GlobalArgs {
    /// Global ARG values (after --build-arg overrides), plus platform args.
    /// `None` value: declared without a default and not given.
    pub values: Vars,
    /// Build args some ARG declaration consumed.
    pub used: BTreeSet<String>,
}

impl GlobalArgs {
    /// The global scope before any ARG: just the platform args.
    pub(crate) fn new(opts: &BuildOptions) -> GlobalArgs {
        let mut values = Vars::default();
        for (k, v) in platform_args(&opts.platform, &opts.build_platform) {
            values.set(&k, Some(v));
        }
        GlobalArgs {
            values,
            used: BTreeSet::new(),
        }
    }

    /// The value of global arg `name`: `Some(None)` when declared without a
    /// value.
    pub(crate) fn get(&self, name: &str) -> Option<Option<&str>> {
        self.values.get(name)
    }

    /// Defines (or redefines) a global arg.
    pub(crate) fn set(&mut self, name: &str, value: Option<String>) {
        self.values.set(name, value);
    }

    /// The environment FROM lines expand with (a view, not a copy).
    pub(crate) fn env(&self) -> &Vars {
        &self.values
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_lower_case_wins() {
        let args: BTreeMap<String, String> = [
            ("ALL_PROXY", "all-upper"),
            ("all_proxy", "all-lower"),
            ("HTTP_PROXY", "http-upper"),
            ("http_proxy", "http-lower"),
            ("NO_PROXY", "no-proxy"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let env = proxy_env(&args);
        assert!(env.contains(&("http_proxy".into(), "http-lower".into())));
        assert!(env.contains(&("no_proxy".into(), "no-proxy".into())));
        assert!(env.contains(&("all_proxy".into(), "all-lower".into())));
        let none: BTreeMap<String, String> = [("FOO".to_string(), "bar".to_string())].into();
        assert!(proxy_env(&none).is_empty());
    }

    #[test]
    fn platform_arg_names() {
        assert!(is_platform_arg("TARGETARCH"));
        assert!(is_platform_arg("BUILDPLATFORM"));
        assert!(!is_platform_arg("TARGET"));
        let p: Platform = "linux/arm/v7".parse().unwrap();
        let args = platform_args(&p, &Platform::default());
        assert!(args.contains(&("TARGETVARIANT".into(), "v7".into())));
        assert!(args.contains(&("TARGETPLATFORM".into(), "linux/arm/v7".into())));
    }
}
