//! Errors and warnings that point at a place in a Dockerfile.
//!
//! One type for the parser, the instruction layer and lowering, so the CLI
//! prints every problem the same way: `file:line:column: message`, then a
//! hint that says what to do about it.

use std::fmt;

use serde::Serialize;

use crate::ast::Span;

/// How bad a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The Dockerfile cannot be used as it is.
    #[default]
    Error,
    /// The Dockerfile works, but probably not as intended.
    Warning,
}

/// A problem at a position in a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// The file name as the user gave it (`-` for stdin).
    pub file: String,
    /// 1-based line; 0 when the problem has no single place (rare).
    pub line: usize,
    /// 1-based column in characters; 0 when unknown.
    pub column: usize,
    /// What is wrong, in one sentence (BuildKit's wording where one exists).
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    pub severity: Severity,
}

impl Diagnostic {
    /// An error at `line:column` of `file`.
    pub fn error(
        file: impl Into<String>,
        line: usize,
        column: usize,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.into(),
            line,
            column,
            message: message.into(),
            hint: None,
            severity: Severity::Error,
        }
    }

    /// An error at the start of `span`.
    pub fn at(file: impl Into<String>, span: Span, message: impl Into<String>) -> Self {
        Self::error(file, span.line, span.column, message)
    }

    /// The same diagnostic with a hint attached.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// The same diagnostic downgraded to a warning.
    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.severity == Severity::Warning {
            write!(f, "warning: ")?;
        }
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
            if self.column > 0 {
                write!(f, ":{}", self.column)?;
            }
        }
        write!(f, ": {}", self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_place_message_and_hint() {
        let d = Diagnostic::error("Dockerfile", 3, 5, "unknown instruction: FORM")
            .with_hint("did you mean FROM?");
        assert_eq!(
            d.to_string(),
            "Dockerfile:3:5: unknown instruction: FORM\n  hint: did you mean FROM?"
        );
    }

    #[test]
    fn display_without_position_or_hint() {
        let d = Diagnostic::error("-", 0, 0, "the Dockerfile is empty");
        assert_eq!(d.to_string(), "-: the Dockerfile is empty");
        assert_eq!(
            d.clone().warning().to_string(),
            "warning: -: the Dockerfile is empty"
        );
    }
}
