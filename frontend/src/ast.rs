//! The Dockerfile syntax tree.
//!
//! This is what [`crate::parse`] produces and what lowering consumes. It is a
//! *syntax* tree: it records what the file says, not whether it makes sense.
//! `HEALTHCHECK CONNECT TCP 7000` or an unknown keyword parse fine here; the
//! instruction layer ([`crate::syntax::validate`]) and lowering reject them.
//!
//! Design rules, so that consumers can rely on them:
//!
//! * Every node carries a [`Span`] pointing back into the original text, so
//!   any later error can name `file:line:column`.
//! * Argument text is kept **raw**: quotes, escapes and `$VARS` are left for
//!   word expansion (`crate::words`), which needs the stage's environment.
//!   Only JSON (exec-form) arrays are decoded here, because their escapes are
//!   JSON's, not the shell's.
//! * The tree is additive-only from now on: fields may be added, none removed
//!   or renamed.

use serde::Serialize;

use crate::diagnostic::Diagnostic;

/// A region of the source text.
///
/// Lines and columns are 1-based; columns count Unicode scalar values (what an
/// editor shows), bytes are 0-based offsets into the text given to
/// [`crate::parse`], `byte_end` exclusive. `end_line`/`end_column` locate the
/// last character of the region (inclusive), so a one-character node has
/// `column == end_column`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Span {
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
    pub byte_start: usize,
    pub byte_end: usize,
}

/// A piece of text together with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Word {
    /// The text. Raw (quotes and escapes kept) unless the containing node says
    /// it was decoded, as JSON array elements are.
    pub value: String,
    pub span: Span,
}

/// A whole parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    /// The name used in diagnostics (a path, or `-` for stdin).
    pub file_name: String,
    /// Parser directives found at the top of the file, in order.
    pub directives: Vec<Directive>,
    /// The escape character in effect: `\` unless `# escape=` said `` ` ``.
    /// Word expansion must use the same one.
    pub escape: char,
    /// Instructions in source order. Never empty: a file without
    /// instructions is a parse error.
    pub instructions: Vec<Instruction>,
    /// From the first instruction's first line to the last instruction's last
    /// line (BuildKit's root node range).
    pub span: Span,
    /// Non-fatal findings of the parser (for example an empty continuation
    /// line, which BuildKit also only warns about).
    pub warnings: Vec<Diagnostic>,
}

impl Dockerfile {
    /// The value of the directive `name` (lower case: `syntax`, `escape`,
    /// `check`), if the file set it.
    pub fn directive(&self, name: &str) -> Option<&str> {
        self.directives
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.value.as_str())
    }
}

/// A parser directive such as `# syntax=docker/dockerfile:1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directive {
    /// Lower-cased key: `syntax`, `escape` or `check`.
    pub name: String,
    /// The value with surrounding blanks removed.
    pub value: String,
    /// The whole directive line.
    pub span: Span,
}

/// The instruction keywords Docker knows, plus `Unknown` for anything else
/// (kept so that the dump and "did you mean" work; rejected by validation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Keyword {
    Add,
    Arg,
    Cmd,
    Copy,
    Entrypoint,
    Env,
    Expose,
    From,
    Healthcheck,
    Label,
    Maintainer,
    Onbuild,
    Run,
    Shell,
    Stopsignal,
    User,
    Volume,
    Workdir,
    Unknown,
}

impl Keyword {
    /// Every known keyword, in upper case, as Docker spells them.
    pub const ALL: [(&'static str, Keyword); 18] = [
        ("ADD", Keyword::Add),
        ("ARG", Keyword::Arg),
        ("CMD", Keyword::Cmd),
        ("COPY", Keyword::Copy),
        ("ENTRYPOINT", Keyword::Entrypoint),
        ("ENV", Keyword::Env),
        ("EXPOSE", Keyword::Expose),
        ("FROM", Keyword::From),
        ("HEALTHCHECK", Keyword::Healthcheck),
        ("LABEL", Keyword::Label),
        ("MAINTAINER", Keyword::Maintainer),
        ("ONBUILD", Keyword::Onbuild),
        ("RUN", Keyword::Run),
        ("SHELL", Keyword::Shell),
        ("STOPSIGNAL", Keyword::Stopsignal),
        ("USER", Keyword::User),
        ("VOLUME", Keyword::Volume),
        ("WORKDIR", Keyword::Workdir),
    ];

    /// Looks a keyword up case-insensitively (after Go's `strings.ToLower`,
    /// as BuildKit does); anything else is `Unknown`.
    pub fn from_word(word: &str) -> Keyword {
        let lower = go_to_lower(word);
        Self::ALL
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&lower))
            .map_or(Keyword::Unknown, |(_, k)| *k)
    }

    /// The upper-case spelling (`"UNKNOWN"` for `Unknown`), as error messages
    /// use it.
    pub fn as_upper(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("UNKNOWN", |(name, _)| name)
    }
}

/// Go's `strings.ToLower`: simple per-character lower-casing (no special
/// casing: `İ` becomes `i`, a final `Σ` becomes `σ`), which is what BuildKit
/// uses for keywords and what its dump prints.
pub fn go_to_lower(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{130}' => 'i',
            c => c.to_lowercase().next().unwrap_or(c),
        })
        .collect()
}

/// One instruction (one logical line, plus its heredoc bodies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instruction {
    /// The keyword exactly as written (`run`, `Run`, `RUN`, `FOO`).
    pub keyword: String,
    /// The keyword in lower case (`run`, `foo`), as BuildKit's node value.
    pub name: String,
    /// The keyword, classified.
    pub kind: Keyword,
    /// Where the keyword is.
    pub keyword_span: Span,
    /// The `--flag[=value]` words at the start of the arguments, in order.
    pub flags: Vec<Flag>,
    /// The argument text after the keyword and the flags, trimmed, exactly as
    /// in the joined logical line (continuations removed). Empty when the
    /// instruction has no arguments.
    pub args_text: Word,
    /// The arguments, split the way this kind of instruction needs.
    pub args: Args,
    /// Heredocs read after this line (RUN, COPY, ADD, and ONBUILD wrapping
    /// one of them; for ONBUILD the nested trigger carries a copy as well).
    pub heredocs: Vec<Heredoc>,
    /// The whole logical line (continuations joined, comments inside them
    /// dropped), as BuildKit's `Original`: used for history and progress.
    pub original: String,
    /// From the keyword to the end of the last line of the instruction,
    /// including continuation lines and heredoc bodies.
    pub span: Span,
    /// Comment lines directly above the instruction (text after `#`,
    /// trimmed), for documentation comments on stages and ARGs. An empty
    /// comment line resets the block, as in BuildKit.
    pub comments: Vec<String>,
}

/// A `--name[=value]` flag word.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    /// The name without the leading `--` (`from`, `mount`).
    pub name: String,
    /// The text after the first `=`, or `None` for a bare `--flag`.
    /// Quotes and backslash escapes in the flag word have been processed, as
    /// BuildKit does while extracting flags; `$VARS` are still raw.
    pub value: Option<String>,
    /// The processed flag word as BuildKit lists it (`--from=build`).
    pub text: String,
    pub span: Span,
}

impl Flag {
    /// Builds a flag from a processed flag word such as `--from=build` (a
    /// word without the leading `--` is taken as the name as it is).
    pub fn from_word(text: &str, span: Span) -> Flag {
        let body = text.strip_prefix("--").unwrap_or(text);
        let (name, value) = match body.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (body.to_string(), None),
        };
        Flag {
            name,
            value,
            text: text.to_string(),
            span,
        }
    }
}

impl Instruction {
    /// The last value given for flag `name` (`Some(None)` for a bare flag).
    pub fn flag(&self, name: &str) -> Option<Option<&str>> {
        self.flags
            .iter()
            .rev()
            .find(|f| f.name == name)
            .map(|f| f.value.as_deref())
    }

    /// Every value given for a repeatable flag such as `--mount`, in order.
    pub fn flag_values(&self, name: &str) -> Vec<&str> {
        self.flags
            .iter()
            .filter(|f| f.name == name)
            .filter_map(|f| f.value.as_deref())
            .collect()
    }

    /// The documentation comment for `name` (a stage or ARG name): the rest
    /// of the first comment line above the instruction that starts with
    /// `name` and a space, or `""` (BuildKit's rule).
    pub fn doc_comment(&self, name: &str) -> &str {
        if name.is_empty() {
            return "";
        }
        let prefix = format!("{name} ");
        self.comments
            .iter()
            .find_map(|c| c.strip_prefix(&prefix))
            .unwrap_or("")
    }

    /// `true` when the arguments were written as a JSON array (exec form
    /// for RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK, JSON list for ADD/COPY/VOLUME).
    pub fn is_json(&self) -> bool {
        match &self.args {
            Args::Command { command } => matches!(command, Command::Exec(_)),
            Args::Healthcheck { command, .. } => matches!(command, Some(Command::Exec(_))),
            Args::List { json, .. } => *json,
            Args::Onbuild { trigger } => trigger.is_json(),
            _ => false,
        }
    }
}

/// An exec-form or shell-form command (RUN, CMD, ENTRYPOINT, SHELL,
/// HEALTHCHECK CMD).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "form", content = "value", rename_all = "lowercase")]
pub enum Command {
    /// A valid JSON array of strings, elements decoded. May be empty (`[]`).
    Exec(Vec<Word>),
    /// Anything else (including invalid JSON): the text, verbatim.
    Shell(Word),
}

/// An ENV or LABEL pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyValue {
    /// The key, raw (may still contain quotes, e.g. `LABEL "a b"=c`).
    pub key: Word,
    /// The value, raw: quotes and escapes are processed by word expansion.
    pub value: Word,
    /// `true` for `key=value`, `false` for the legacy `KEY value` form.
    pub equals: bool,
    pub span: Span,
}

/// One ARG declaration (`NAME` or `NAME=default`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    /// The whole word, raw, as BuildKit's node value.
    pub word: Word,
    /// Text before the first `=` (the whole word if there is none).
    pub name: String,
    /// Raw text after the first `=`, if any (`ARG A=` gives `Some("")`).
    pub default: Option<String>,
}

/// The arguments of an instruction, split per instruction kind exactly as
/// BuildKit's parser splits them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "form", rename_all = "snake_case")]
pub enum Args {
    /// No argument text at all.
    Empty,
    /// RUN, CMD, ENTRYPOINT, SHELL.
    Command { command: Command },
    /// HEALTHCHECK: the first word (`CMD`, `NONE`, ...) and what follows it,
    /// if anything.
    Healthcheck {
        kind: Word,
        command: Option<Command>,
    },
    /// ADD, COPY, VOLUME: a JSON array (`json: true`, elements decoded) or
    /// the text split on blanks (verbatim, quotes kept).
    List { json: bool, items: Vec<Word> },
    /// FROM, EXPOSE: the text split on blanks, verbatim.
    Words { words: Vec<Word> },
    /// USER, WORKDIR, MAINTAINER, STOPSIGNAL: the whole text.
    Text { text: Word },
    /// ENV, LABEL.
    KeyValues { pairs: Vec<KeyValue> },
    /// ARG: one or more declarations.
    ArgDecls { decls: Vec<ArgDecl> },
    /// ONBUILD: the trigger instruction.
    Onbuild { trigger: Box<Instruction> },
    /// An unknown keyword: arguments are not interpreted.
    Unknown,
}

/// A heredoc (`<<EOF` ... `EOF`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The terminator word with quotes removed (`<<'one two'` gives
    /// `one two`). For COPY/ADD it is also the file name.
    pub name: String,
    /// The number written before `<<` (`3<<EOF`), or 0.
    pub file_descriptor: u64,
    /// `false` when any part of the word was quoted: the body must not be
    /// variable-expanded.
    pub expand: bool,
    /// `true` for `<<-`: leading tabs are to be stripped from body lines (and
    /// the terminator may be tab-indented). The body below is **not**
    /// stripped; see [`Heredoc::chomped`].
    pub chomp: bool,
    /// The body lines, each with its line ending, without the terminator.
    pub content: String,
    /// The `<<EOF` word in the instruction line.
    pub span: Span,
    /// From the first body line through the terminator line.
    pub body_span: Span,
}

impl Heredoc {
    /// The body with leading tabs removed from every line when `chomp` is
    /// set (what COPY writes and what RUN's file contains), else the body.
    pub fn chomped(&self) -> String {
        if self.chomp {
            crate::syntax::heredoc::chomp(&self.content)
        } else {
            self.content.clone()
        }
    }
}
