//! COPY and ADD: sources, destination (resolved against WORKDIR), inline
//! heredoc files and every option, validated.

use crate::ast::{Args, Instruction, Keyword};
use crate::diagnostic::Diagnostic;
use crate::graph::{CopySource, FileKind, FileOp, InlineFile, Op};

use super::paths;
use super::stage::StageBuilder;
use super::stages::{find_stage, has_variable};
use crate::lint::Rule;
use crate::source::{AddSource, classify};

impl StageBuilder<'_, '_, '_> {
    pub(crate) fn copy(&mut self, ins: &Instruction) -> Result<(), Diagnostic> {
        let is_add = ins.kind == Keyword::Add;
        let name = ins.kind.as_upper();
        let items: Vec<String> = match &ins.args {
            Args::List { items, .. } => items.iter().map(|w| w.value.clone()).collect(),
            _ => Vec::new(),
        };
        if items.len() < 2 {
            return Err(self
                .ctx
                .error(
                    ins,
                    format!(
                        "{name} requires at least two arguments, but only {} provided. Destination could not be determined",
                        if items.is_empty() { "none was".to_string() } else { "one was".to_string() }
                    ),
                )
                .with_hint(format!("write {name} <src>... <dest>")));
        }
        let (srcs, dest_raw) = items.split_at(items.len() - 1);
        if !ins.heredocs.is_empty() && dest_raw[0].starts_with("<<") {
            return Err(self
                .ctx
                .error(
                    ins,
                    format!("{name} cannot accept a heredoc as a destination"),
                )
                .with_hint(format!(
                    "write {name} <<EOF <dest>: the heredoc is a source"
                )));
        }
        let dest_raw = self.expand(ins, &dest_raw[0])?;
        let mut sources = Vec::new();
        let mut inline = Vec::new();
        let mut heredocs = ins.heredocs.iter();
        let mut shown = Vec::new();
        for s in srcs {
            if s.starts_with("<<")
                && let Some(h) = heredocs.next()
            {
                let body = h.chomped();
                let content = if h.expand {
                    self.ctx
                        .lexer
                        .process_heredoc(&body, &self.scope())
                        .map_err(|e| self.ctx.error(ins, e.to_string()))?
                } else {
                    body
                };
                inline.push(InlineFile {
                    path: h.name.clone(),
                    content,
                    mode: 0o644,
                });
                shown.push(s.clone());
                continue;
            }
            let v = self.expand(ins, s)?;
            if !is_add && is_url(&v) {
                return Err(self
                    .ctx
                    .error(ins, "source can't be a URL for COPY")
                    .with_hint("use ADD to download a URL"));
            }
            shown.push(v.clone());
            sources.push(v);
        }
        let mut dest = paths::join(&self.cwd(), &dest_raw);
        if (dest_raw.is_empty() || dest_raw == "." || dest_raw.ends_with('/'))
            && !dest.ends_with('/')
        {
            dest.push('/');
        }
        if self.ctx.flag(ins, "from").is_none() {
            self.lint_ignored_sources(ins, is_add, &sources);
        }
        let from = match self.ctx.flag(ins, "from") {
            None => CopySource::Context,
            Some(f) if has_variable(&f) => {
                return Err(self.ctx.error(
                    ins,
                    "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
                ));
            }
            Some(f) if f.is_empty() => {
                return Err(self
                    .ctx
                    .error(ins, "--from requires a stage name, index or image"));
            }
            Some(f) => match find_stage(&self.ctx.stage_names, self.decls.len(), &f) {
                Some(id) if id >= self.id => {
                    return Err(self.ctx.error(
                        ins,
                        format!(
                            "cannot copy from stage {f:?}, it needs to be defined before current stage {:?}",
                            self.decls[self.id].display_name(self.id)
                        ),
                    ));
                }
                Some(id) => {
                    self.deps.insert(id);
                    CopySource::Stage { id }
                }
                None if self
                    .ctx
                    .opts
                    .named_contexts
                    .contains(&f.to_ascii_lowercase()) =>
                {
                    CopySource::Named { name: f }
                }
                None => CopySource::Image { reference: f },
            },
        };
        let from = if is_add && from == CopySource::Context {
            self.remote_source(ins, &sources)?
        } else {
            from
        };
        let chown = match self.ctx.flag(ins, "chown") {
            Some(c) if !c.is_empty() => Some(self.expand(ins, &c)?),
            _ => None,
        };
        let (chmod, chmod_bits) = match self.ctx.flag(ins, "chmod") {
            Some(c) if !c.is_empty() => {
                let c = self.expand(ins, &c)?;
                let bits = parse_chmod(&c).map_err(|e| {
                    self.ctx
                        .error(ins, e)
                        .with_hint("use an octal mode such as 0755, or a symbolic one such as u+x")
                })?;
                (Some(c), bits)
            }
            _ => (None, None),
        };
        if let Some(bits) = chmod_bits {
            for f in &mut inline {
                f.mode = bits;
            }
        }
        let mut exclude = Vec::new();
        for e in self.ctx.flags(ins, "exclude") {
            exclude.push(self.expand(ins, &e)?);
        }
        let checksum = match self.ctx.flag(ins, "checksum") {
            Some(c) if !c.is_empty() => Some(self.expand(ins, &c)?),
            _ => None,
        };
        let link = self.bool_flag(ins, "link")?.unwrap_or(false);
        let parents = self.bool_flag(ins, "parents")?.unwrap_or(false);
        let keep_git_dir = self.bool_flag(ins, "keep-git-dir")?.unwrap_or(false);
        let unpack = self.bool_flag(ins, "unpack")?;
        let mut msg = name.to_string();
        if parents {
            msg.push_str(" --parents");
        }
        if let Some(c) = &chown {
            msg.push_str(&format!(" --chown={c}"));
        }
        if let Some(c) = &chmod {
            msg.push_str(&format!(" --chmod={c}"));
        }
        for s in &shown {
            msg.push(' ');
            msg.push_str(s);
        }
        msg.push(' ');
        msg.push_str(&dest_raw);
        msg.push_str(" # buildkit");
        let op = FileOp {
            kind: if is_add {
                FileKind::Add
            } else {
                FileKind::Copy
            },
            from: if sources.is_empty() && !inline.is_empty() {
                CopySource::None
            } else {
                from
            },
            sources,
            inline,
            dest,
            chown,
            chmod,
            chmod_bits,
            link,
            parents,
            exclude,
            checksum,
            keep_git_dir,
            unpack,
        };
        self.push_step(ins, msg, Op::File(op));
        Ok(())
    }

    /// A boolean flag: absent → None, bare → true, `=true/false`.
    fn bool_flag(&self, ins: &Instruction, name: &str) -> Result<Option<bool>, Diagnostic> {
        if !self.ctx.has_flag(ins, name) {
            return Ok(None);
        }
        match self.ctx.flag(ins, name).as_deref() {
            None | Some("") | Some("true") | Some("1") | Some("True") | Some("TRUE") => {
                Ok(Some(true))
            }
            Some("false") | Some("0") | Some("False") | Some("FALSE") => Ok(Some(false)),
            Some(other) => Err(self.ctx.error(
                ins,
                format!("invalid value for --{name}: {other:?} (expected true or false)"),
            )),
        }
    }
}

impl StageBuilder<'_, '_, '_> {
    /// What ADD's sources are: the context, URLs to download, or one git
    /// repository ([`crate::source::classify`]). Mixing kinds is refused.
    fn remote_source(
        &self,
        ins: &Instruction,
        sources: &[String],
    ) -> Result<CopySource, Diagnostic> {
        let kinds: Vec<AddSource> = sources.iter().map(|s| classify(s)).collect();
        let remote = kinds.iter().filter(|k| **k != AddSource::Local).count();
        if remote == 0 {
            return Ok(CopySource::Context);
        }
        if remote != kinds.len() {
            return Err(self.ctx.error(
                ins,
                "not supported yet: ADD of URLs and local files in one instruction; split it in two",
            ));
        }
        match kinds.as_slice() {
            [AddSource::Git(g)] => Ok(CopySource::Git {
                repository: g.repository.clone(),
                reference: g.reference.clone(),
                subdir: g.subdir.clone(),
            }),
            k if k.iter().any(|k| matches!(k, AddSource::Git(_))) => Err(self.ctx.error(
                ins,
                "not supported yet: ADD of a git repository together with other sources; split it",
            )),
            _ => Ok(CopySource::Http),
        }
    }

    /// CopyIgnoredFile: a context source `.dockerignore` excludes (only
    /// known when the caller passed the matcher in [`crate::lint::Facts`]).
    fn lint_ignored_sources(&mut self, ins: &Instruction, is_add: bool, sources: &[String]) {
        let Some(ignored) = self.ctx.facts.ignored else {
            return;
        };
        let cmd = if is_add { "Add" } else { "Copy" };
        for src in sources {
            if is_url(src) || src.starts_with("git@") {
                continue;
            }
            // Go's filepath.Clean of the source as written; the context
            // root itself is never reported.
            let cleaned = paths::clean(src);
            let rel = cleaned.trim_start_matches('/');
            if rel.is_empty() || rel == "." {
                continue;
            }
            if ignored(rel) {
                let msg = format!(
                    "Attempting to {cmd} file {cleaned:?} that is excluded by .dockerignore"
                );
                self.lint(Rule::CopyIgnoredFile, ins, msg);
            }
        }
    }
}

fn is_url(s: &str) -> bool {
    s.starts_with("http://") || s.starts_with("https://")
}

/// Validates a `--chmod` value: octal up to 07777 (returned as bits), or a
/// symbolic mode such as `u+x,g-w` (no bits: applied per file).
fn parse_chmod(c: &str) -> Result<Option<u32>, String> {
    let bad = || {
        format!("invalid chmod parameter: '{c}'. it should be octal string and between 0 and 07777")
    };
    if c.chars().all(|ch| ch.is_ascii_digit()) {
        let bits = u32::from_str_radix(c, 8).map_err(|_| bad())?;
        if bits > 0o7777 {
            return Err(bad());
        }
        return Ok(Some(bits));
    }
    let symbolic = c.split(',').all(|clause| {
        let who_end = clause
            .find(|ch: char| !"ugoa".contains(ch))
            .unwrap_or(clause.len());
        let rest = &clause[who_end..];
        let mut chars = rest.chars();
        matches!(chars.next(), Some('+' | '-' | '=')) && chars.all(|ch| "rwxXstugo+-=".contains(ch))
    });
    if symbolic { Ok(None) } else { Err(bad()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_values() {
        assert_eq!(parse_chmod("0755"), Ok(Some(0o755)));
        assert_eq!(parse_chmod("7777"), Ok(Some(0o7777)));
        assert_eq!(parse_chmod("u+x,g-w"), Ok(None));
        assert_eq!(
            parse_chmod("64a").unwrap_err(),
            "invalid chmod parameter: '64a'. it should be octal string and between 0 and 07777"
        );
        assert!(parse_chmod("10000").is_err());
        assert!(parse_chmod("8").is_err());
    }
}
