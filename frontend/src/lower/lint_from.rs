//! The build checks about FROM lines, which need the global ARG scope:
//! UndefinedArgInFrom, RedundantTargetPlatform,
//! FromPlatformFlagConstDisallowed, InvalidDefaultArgInFrom and
//! InvalidBaseImagePlatform.

use crate::ast::Instruction;
use crate::graph::Platform;
use crate::lint::Rule;
use crate::words::Expansion;

use super::Ctx;
use super::args::is_platform_arg;
use super::stages::StageDecl;
use super::suggest::closest;

impl Ctx<'_> {
    /// UndefinedArgInFrom: a variable the FROM line uses that no global
    /// ARG declares (declared without a value is fine).
    pub(crate) fn lint_from_args(&mut self, from: &Instruction, expansion: &Expansion) {
        let mut found = Vec::new();
        for arg in &expansion.unmatched {
            if self.globals.get(arg).is_some() || is_platform_arg(arg) {
                continue;
            }
            let mut msg = format!("FROM argument '{arg}' is not declared");
            if self.take_suggestion() {
                let declared: Vec<&str> = self.globals.values.iter().map(|(k, _)| k).collect();
                if let Some(s) = closest(arg, &declared) {
                    msg.push_str(&format!(" (did you mean {s}?)"));
                }
            }
            found.push(msg);
        }
        for msg in found {
            self.lint
                .report(Rule::UndefinedArgInFrom, from.keyword_span, msg);
        }
    }

    /// RedundantTargetPlatform and FromPlatformFlagConstDisallowed for a
    /// `--platform` value `raw` that expanded as `expansion`.
    pub(crate) fn lint_from_platform(
        &mut self,
        from: &Instruction,
        raw: &str,
        expansion: &Expansion,
        stage_name: Option<&str>,
    ) {
        let span = from.keyword_span;
        if expansion.matched.len() == 1 && expansion.unmatched.is_empty() {
            if expansion.matched.contains("TARGETPLATFORM")
                && self.globals.get("TARGETPLATFORM").flatten() == Some(&expansion.result)
            {
                self.lint.report(
                    Rule::RedundantTargetPlatform,
                    span,
                    format!(
                        "Setting platform to predefined {raw} in FROM is redundant as this is the default behavior"
                    ),
                );
            }
            return;
        }
        if !expansion.matched.is_empty() || !expansion.unmatched.is_empty() {
            return;
        }
        let Ok(p) = expansion.result.parse::<Platform>() else {
            return;
        };
        let name = stage_name.unwrap_or("");
        if name.contains(&p.os) || name.contains(&p.architecture) {
            return;
        }
        self.lint.report(
            Rule::FromPlatformFlagConstDisallowed,
            span,
            format!(
                "FROM --platform flag should not use constant value {:?}",
                expansion.result
            ),
        );
    }

    /// InvalidDefaultArgInFrom: with the global ARGs' defaults alone (no
    /// `--build-arg`), a stage's base name is empty or not an image
    /// reference.
    pub(crate) fn lint_default_base_names(&mut self, decls: &[StageDecl<'_>]) {
        let mut found = Vec::new();
        for d in decls {
            let Some(raw) = from_image_word(d.from) else {
                continue;
            };
            let Ok(e) = self
                .lexer
                .process_word_with_matches(raw, self.default_globals.env())
            else {
                return;
            };
            if !valid_reference(&e.result) && !is_archive_source(&e.result) {
                found.push((d.from.keyword_span, raw.to_string()));
            }
        }
        for (span, raw) in found {
            self.lint.report(
                Rule::InvalidDefaultArgInFrom,
                span,
                format!("Default value for ARG {raw} results in empty or invalid base image name"),
            );
        }
    }

    /// InvalidBaseImagePlatform, when the resolver knows what platform the
    /// image resolved to.
    pub(crate) fn lint_base_platform(&mut self, from: &Instruction, image: &str, want: &Platform) {
        let Some(got) = self.resolver.resolved_platform(image, want) else {
            return;
        };
        if got.os != want.os || got.architecture != want.architecture {
            self.lint.report(
                Rule::InvalidBaseImagePlatform,
                from.keyword_span,
                format!(
                    "Base image {image} was pulled with platform {:?}, expected {:?} for current build",
                    got.to_string(),
                    want.to_string()
                ),
            );
        }
    }
}

/// The image word of a FROM line.
fn from_image_word(from: &Instruction) -> Option<&str> {
    match &from.args {
        crate::ast::Args::Words { words } => words.first().map(|w| w.value.as_str()),
        _ => None,
    }
}

/// strata's own base-image forms, `docker-archive:PATH` and
/// `oci-layout:PATH[:tag]`: not image references, and not mistakes
/// either (BuildKit has no such forms, so its rule never sees them).
fn is_archive_source(s: &str) -> bool {
    s.starts_with("docker-archive:") || s.starts_with("oci-layout:")
}

/// Whether `s` parses as a Docker image reference (distribution's
/// `ParseNormalizedNamed`): `[domain/]path[:tag][@digest]`, the path lower
/// case.
pub(crate) fn valid_reference(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    let (name, digest) = match s.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (s, None),
    };
    if let Some(d) = digest {
        let Some((alg, hex)) = d.split_once(':') else {
            return false;
        };
        if alg.is_empty() || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return false;
        }
    }
    // A tag follows the last ':' that comes after the last '/'.
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    let (path, tag) = match name[slash..].rfind(':') {
        Some(i) => (&name[..slash + i], Some(&name[slash + i + 1..])),
        None => (name, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
            && !t.starts_with(['.', '-']);
        if !ok {
            return false;
        }
    }
    let mut parts: Vec<&str> = path.split('/').collect();
    if parts.len() > 1 && (parts[0].contains(['.', ':']) || parts[0] == "localhost") {
        let domain = parts.remove(0);
        if domain.is_empty()
            || !domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        {
            return false;
        }
    }
    parts.iter().all(|p| valid_path_component(p))
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(p: &str) -> bool {
    let b = p.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &p[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
        if !ok {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::valid_reference;

    #[test]
    fn references() {
        for ok in [
            "alpine",
            "alpine:3.20",
            "docker.io/library/alpine:latest",
            "localhost:5000/a/b_c:1",
            "scratch",
            "my-repo/x__y",
        ] {
            assert!(valid_reference(ok), "{ok}");
        }
        for bad in [
            "",
            "Alpine",
            "alpine:",
            ":tag",
            "a//b",
            "a b",
            "-x",
            "alpine@sha256:zz",
        ] {
            assert!(!valid_reference(bad), "{bad}");
        }
    }
}
