//! `SOURCE_DATE_EPOCH`: the build arg (or global ARG default) that pins
//! timestamps for reproducible images. BuildKit accepts decimal Unix
//! seconds, the keyword `context` (take the time from the build context), or
//! the name of a stage that is `FROM scratch` and holds nothing but sources
//! (ADD of URLs), whose content time is used.

use crate::diagnostic::Diagnostic;
use crate::graph::{Base, CopySource, FileKind, Op, SourceDateEpoch, Stage};

use super::Ctx;
use super::stages::StageDecl;

/// The name of the build arg.
pub(crate) const NAME: &str = "SOURCE_DATE_EPOCH";

/// What the value names, before any stage is checked.
pub(crate) enum Request {
    Seconds(i64),
    Context,
    Stage(usize),
}

impl Ctx<'_> {
    /// The SOURCE_DATE_EPOCH value in effect: the build arg, else the global
    /// ARG default; `None` when unset or empty.
    pub(crate) fn epoch_value(&self) -> Option<String> {
        self.opts
            .build_args
            .get(NAME)
            .cloned()
            .or_else(|| self.globals.get(NAME).flatten().map(str::to_string))
            .filter(|v| !v.is_empty())
    }

    /// Classifies `value`; an unknown word is an error.
    pub(crate) fn epoch_request(
        &self,
        value: &str,
        decls: &[StageDecl<'_>],
    ) -> Result<Request, Diagnostic> {
        if let Ok(secs) = value.parse::<i64>() {
            return Ok(Request::Seconds(secs));
        }
        if value == "context" {
            return Ok(Request::Context);
        }
        let lower = value.to_ascii_lowercase();
        match decls
            .iter()
            .position(|d| d.name.as_deref() == Some(lower.as_str()))
        {
            Some(id) => Ok(Request::Stage(id)),
            None => Err(Diagnostic::error(
                &self.file,
                0,
                0,
                format!("invalid SOURCE_DATE_EPOCH: {value}"),
            )
            .with_hint(
                "use Unix seconds (e.g. 1700000000), `context`, or the name of a source-only stage",
            )),
        }
    }
}

/// Checks that a lowered stage can give the epoch: `FROM scratch` and only
/// ADDs of URLs (ARG/ENV/LABEL and other metadata are allowed).
pub(crate) fn check_source_stage(
    ctx: &Ctx<'_>,
    decl: &StageDecl<'_>,
    stage: &Stage,
) -> Result<SourceDateEpoch, Diagnostic> {
    let at = decl.from.keyword_span;
    if stage.base != Base::Scratch {
        return Err(Diagnostic::at(
            &ctx.file,
            at,
            "SOURCE_DATE_EPOCH stage must use FROM scratch",
        )
        .with_hint("make the stage `FROM scratch` with only ADD <url> steps"));
    }
    let mut urls = Vec::new();
    for step in &stage.steps {
        let ok = match &step.op {
            Op::File(f) => {
                f.kind == FileKind::Add
                    && matches!(f.from, CopySource::Http | CopySource::Git { .. })
                    && f.inline.is_empty()
                    && !f.sources.is_empty()
                    && f.sources.iter().all(|s| is_remote(s))
            }
            Op::Exec(_) => false,
        };
        if !ok {
            return Err(Diagnostic::error(
                &ctx.file,
                step.line,
                step.column,
                "SOURCE_DATE_EPOCH stage does not meet source-only requirements",
            )
            .with_hint("the stage may only ADD URLs or git repositories"));
        }
        if let Op::File(f) = &step.op {
            urls.extend(f.sources.iter().cloned());
        }
    }
    Ok(SourceDateEpoch::Stage {
        id: stage.id,
        sources: urls,
    })
}

/// Whether an ADD source is remote (HTTP(S) or git).
fn is_remote(s: &str) -> bool {
    s.starts_with("http://")
        || s.starts_with("https://")
        || s.starts_with("git@")
        || s.starts_with("git://")
}

/// The file name an HTTP source is saved under: the last path segment of
/// the URL (query and fragment removed).
pub fn http_filename(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or(url);
    let path = no_query.split_once("://").map_or(no_query, |(_, rest)| {
        rest.split_once('/').map_or("", |(_, p)| p)
    });
    path.rsplit('/').next().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames() {
        assert_eq!(http_filename("https://example.com/src.tar"), "src.tar");
        assert_eq!(http_filename("https://example.com/a/b.tgz?x=1"), "b.tgz");
        assert_eq!(http_filename("https://example.com"), "");
    }
}
