//! ONBUILD: storing triggers in the image config, and running a base's
//! triggers right after a child's FROM.
//!
//! Triggers run for direct children only: the child's config has its
//! `OnBuild` list cleared once the triggers ran, so a grandchild never sees
//! its grandparent's triggers (only those the child itself declares).

use crate::ast::{Args, Instruction, Keyword};
use crate::diagnostic::Diagnostic;

use super::stage::StageBuilder;

/// Checks that `trigger` may be used in ONBUILD.
pub(crate) fn check_trigger(kind: Keyword) -> Result<(), &'static str> {
    match kind {
        Keyword::Onbuild => Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed"),
        Keyword::From => Err("FROM isn't allowed as an ONBUILD trigger"),
        Keyword::Maintainer => Err("MAINTAINER isn't allowed as an ONBUILD trigger"),
        _ => Ok(()),
    }
}

/// The trigger text stored in the config: the instruction line without the
/// `ONBUILD` keyword, followed by any heredoc bodies.
fn expression(ins: &Instruction) -> String {
    let original = ins.original.trim_start();
    let rest = match (original.get(..7), original.get(7..)) {
        (Some(kw), Some(rest)) if kw.eq_ignore_ascii_case("onbuild") => rest.trim_start(),
        _ => original,
    };
    let mut expr = rest.to_string();
    for h in &ins.heredocs {
        expr.push('\n');
        expr.push_str(&h.content);
        expr.push_str(&h.name);
    }
    expr
}

impl StageBuilder<'_, '_, '_> {
    /// `ONBUILD <instruction>`: validated and stored, not run.
    pub(crate) fn onbuild(&mut self, ins: &Instruction) -> Result<(), Diagnostic> {
        let Args::Onbuild { trigger } = &ins.args else {
            return Err(self
                .ctx
                .error(ins, "ONBUILD requires at least one argument"));
        };
        check_trigger(trigger.kind).map_err(|e| self.ctx.error(ins, e))?;
        if trigger.kind == Keyword::Unknown {
            return Err(self.ctx.error(
                ins,
                format!("unknown instruction: {}", trigger.keyword.to_uppercase()),
            ));
        }
        self.config.on_build.push(expression(ins));
        Ok(())
    }

    /// Runs the triggers of the base config (then clears them), as if
    /// their instructions were written right after `from`.
    pub(crate) fn run_triggers(&mut self, from: &Instruction) -> Result<(), Diagnostic> {
        let triggers = std::mem::take(&mut self.config.on_build);
        if triggers.is_empty() {
            return Ok(());
        }
        let at = (from.keyword_span.line, from.keyword_span.column);
        let text = triggers.join("\n") + "\n";
        let parsed = crate::parse(&self.ctx.file, &text).map_err(|e| {
            self.ctx
                .error(
                    from,
                    format!(
                        "failed to parse ONBUILD triggers of the base image: {}",
                        e.message
                    ),
                )
                .with_hint("the base image carries an ONBUILD instruction strata cannot read")
        })?;
        self.trigger_at = Some(at);
        for ins in &parsed.instructions {
            if let Err(e) = check_trigger(ins.kind) {
                self.trigger_at = None;
                return Err(self
                    .ctx
                    .error(from, format!("base image ONBUILD trigger: {e}")));
            }
            if let Err(mut d) = self.dispatch(ins) {
                d.line = at.0;
                d.column = at.1;
                d.message = format!("ONBUILD trigger {:?}: {}", ins.original, d.message);
                self.trigger_at = None;
                return Err(d);
            }
        }
        self.trigger_at = None;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_triggers() {
        assert!(check_trigger(Keyword::Onbuild).is_err());
        assert!(check_trigger(Keyword::From).is_err());
        assert!(check_trigger(Keyword::Maintainer).is_err());
        assert!(check_trigger(Keyword::Run).is_ok());
    }
}
