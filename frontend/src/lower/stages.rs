//! Stage discovery: splitting the instructions at each FROM, reading the
//! FROM lines (with global ARGs), naming stages, resolving `--from`
//! references, rejecting cycles and forward references, and choosing the
//! stages a target needs.

use std::collections::{BTreeSet, HashMap};

use crate::ast::{Args, Instruction, Keyword};
use crate::diagnostic::Diagnostic;
use crate::graph::Platform;

use super::Ctx;
use super::suggest::closest;

/// One FROM section, before lowering.
pub(crate) struct StageDecl<'a> {
    pub from: &'a Instruction,
    pub body: Vec<&'a Instruction>,
    /// The expanded base name (`scratch`, an image, or a stage name).
    pub base_name: String,
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    pub platform: Platform,
    /// The earlier stage the FROM names, if any.
    pub base_stage: Option<usize>,
    /// Stages referenced by `COPY --from` / `RUN --mount=from=`.
    pub refs: Vec<usize>,
}

impl StageDecl<'_> {
    /// The stage's name for messages: its `AS` name or its index.
    pub(crate) fn display_name(&self, id: usize) -> String {
        self.name.clone().unwrap_or_else(|| id.to_string())
    }

    /// Every stage this one depends on.
    pub(crate) fn deps(&self) -> BTreeSet<usize> {
        self.refs.iter().copied().chain(self.base_stage).collect()
    }
}

/// Whether a stage name is acceptable (BuildKit: lower-case letter first,
/// then letters, digits, `-`, `_`, `.`).
fn valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// Finds a stage by `--from` value: a name (case-insensitive) anywhere in the
/// file, or an index below `count`.
pub(crate) fn find_stage(
    names: &HashMap<String, usize>,
    count: usize,
    reference: &str,
) -> Option<usize> {
    if let Some(&i) = names.get(&reference.to_ascii_lowercase()) {
        return Some(i);
    }
    match reference.parse::<usize>() {
        Ok(i) if i < count => Some(i),
        _ => None,
    }
}

/// Whether a value uses a variable (`$` followed by anything).
pub(crate) fn has_variable(v: &str) -> bool {
    v.char_indices()
        .any(|(i, c)| c == '$' && v[i + 1..].chars().next().is_some())
}

impl Ctx<'_> {
    /// Expands a word of a FROM line with the global ARGs, keeping which
    /// variables it used (for the FROM checks).
    fn expand_from_word(
        &self,
        from: &Instruction,
        word: &str,
    ) -> Result<crate::words::Expansion, Diagnostic> {
        self.lexer
            .process_word_with_matches(word, self.globals.env())
            .map_err(|e| self.error(from, e.to_string()))
    }

    /// Reads one FROM line; `self.stage_names` holds the stages declared
    /// before it.
    pub(crate) fn read_from<'a>(
        &mut self,
        from: &'a Instruction,
    ) -> Result<StageDecl<'a>, Diagnostic> {
        self.check_flags(from, &["platform"])?;
        let words: Vec<&str> = match &from.args {
            Args::Words { words } => words.iter().map(|w| w.value.as_str()).collect(),
            _ => Vec::new(),
        };
        let name = match words.as_slice() {
            [_] => None,
            [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => Some(name.to_string()),
            _ => {
                return Err(self
                    .error(from, "FROM requires either one or three arguments")
                    .with_hint("write `FROM image` or `FROM image AS name`"));
            }
        };
        let expansion = self.expand_from_word(from, words[0])?;
        self.lint_from_args(from, &expansion);
        let base_name = expansion.result;
        if base_name.is_empty() {
            return Err(self
                .error(
                    from,
                    format!("base name ({}) should not be blank", words[0]),
                )
                .with_hint("check the ARG the base name uses: it expanded to nothing"));
        }
        let name = match name {
            Some(n) => {
                let n = self.expand_from_word(from, &n)?.result.to_ascii_lowercase();
                if !valid_stage_name(&n) {
                    return Err(self.error(
                        from,
                        format!(
                            "invalid name for build stage: {n:?}, name can't start with a number or contain symbols"
                        ),
                    ));
                }
                Some(n)
            }
            None => None,
        };
        let platform = match self.flag(from, "platform") {
            Some(p) => {
                let e = self.expand_from_word(from, &p)?;
                self.lint_from_args(from, &e);
                self.lint_from_platform(from, &p, &e, name.as_deref());
                e.result
                    .parse::<Platform>()
                    .map_err(|e| self.error(from, e))?
            }
            None => self.opts.platform.clone(),
        };
        let lower = base_name.to_ascii_lowercase();
        let base_stage = self.stage_names.get(&lower).copied();
        Ok(StageDecl {
            from,
            body: Vec::new(),
            base_name,
            name,
            platform,
            base_stage,
            refs: Vec::new(),
        })
    }

    /// Fills in every stage's `refs` from its COPY --from and RUN
    /// --mount from= (ONBUILD triggers of the Dockerfile's own stages are
    /// not executed in that stage, so they are not scanned).
    pub(crate) fn scan_refs(&mut self, decls: &mut [StageDecl<'_>]) -> Result<(), Diagnostic> {
        for i in 0..decls.len() {
            let mut refs = Vec::new();
            for ins in &decls[i].body {
                for reference in self.stage_refs_of(ins)? {
                    if let Some(id) = find_stage(&self.stage_names, decls.len(), &reference) {
                        refs.push(id);
                    }
                }
            }
            decls[i].refs = refs;
        }
        Ok(())
    }

    /// The raw `--from` / `from=` values an instruction uses.
    fn stage_refs_of(&self, ins: &Instruction) -> Result<Vec<String>, Diagnostic> {
        let mut out = Vec::new();
        match ins.kind {
            Keyword::Copy | Keyword::Add => {
                if let Some(from) = self.flag(ins, "from") {
                    if has_variable(&from) {
                        return Err(self.error(
                            ins,
                            "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
                        ));
                    }
                    out.push(from);
                }
            }
            Keyword::Run => {
                for m in self.flags(ins, "mount") {
                    for field in m.split(',') {
                        if let Some((k, v)) = field.split_once('=')
                            && k.eq_ignore_ascii_case("from")
                            && !has_variable(v)
                        {
                            out.push(v.to_string());
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(out)
    }

    /// Rejects cycles (`circular dependency detected on stage: X`) and
    /// references to later stages.
    pub(crate) fn check_order(&self, decls: &[StageDecl<'_>]) -> Result<(), Diagnostic> {
        if let Some(c) = find_cycle(decls) {
            return Err(self
                .error(
                    decls[c].from,
                    format!(
                        "circular dependency detected on stage: {}",
                        decls[c].display_name(c)
                    ),
                )
                .with_hint("a stage can only copy from stages defined before it"));
        }
        for (i, d) in decls.iter().enumerate() {
            for r in &d.refs {
                if *r > i {
                    let at = d
                        .body
                        .iter()
                        .find(|ins| {
                            self.stage_refs_of(ins).is_ok_and(|refs| {
                                refs.iter().any(|x| {
                                    find_stage(&self.stage_names, decls.len(), x) == Some(*r)
                                })
                            })
                        })
                        .copied()
                        .unwrap_or(d.from);
                    return Err(self
                        .error(
                            at,
                            format!(
                                "cannot copy from stage {:?}, it needs to be defined before current stage {:?}",
                                decls[*r].display_name(*r),
                                d.display_name(i)
                            ),
                        )
                        .with_hint("move the stage you copy from above this one"));
                }
            }
        }
        Ok(())
    }

    /// The index of the target stage.
    pub(crate) fn select_target(&self, decls: &[StageDecl<'_>]) -> Result<usize, Diagnostic> {
        let Some(target) = &self.opts.target else {
            return Ok(decls.len() - 1);
        };
        let lower = target.to_ascii_lowercase();
        if let Some(i) = decls
            .iter()
            .position(|d| d.name.as_deref() == Some(lower.as_str()))
        {
            return Ok(i);
        }
        let names: Vec<&str> = decls.iter().filter_map(|d| d.name.as_deref()).collect();
        let mut msg = format!("target stage {target:?} could not be found");
        if let Some(s) = closest(&lower, &names) {
            msg.push_str(&format!(" (did you mean {s}?)"));
        }
        let hint = if names.is_empty() {
            "this Dockerfile names no stages; add `AS name` to a FROM line".to_string()
        } else {
            format!("stages are: {}", names.join(", "))
        };
        Err(Diagnostic::error(&self.file, 0, 0, msg).with_hint(hint))
    }
}

/// The stage where a dependency cycle closes, searching from the first
/// stage in file order. Iterative (no recursion), so a hostile file with
/// thousands of chained stages cannot exhaust the stack.
fn find_cycle(decls: &[StageDecl<'_>]) -> Option<usize> {
    // 0 = unvisited, 1 = on the current path, 2 = finished.
    let mut state = vec![0u8; decls.len()];
    let deps: Vec<Vec<usize>> = decls
        .iter()
        .map(|d| d.deps().into_iter().collect())
        .collect();
    for root in 0..decls.len() {
        if state[root] != 0 {
            continue;
        }
        // (node, index of the next dependency to visit)
        let mut stack = vec![(root, 0usize)];
        state[root] = 1;
        while let Some(top) = stack.last_mut() {
            let (node, next) = *top;
            match deps[node].get(next) {
                Some(&d) => {
                    top.1 += 1;
                    match state[d] {
                        1 => return Some(d),
                        0 => {
                            state[d] = 1;
                            stack.push((d, 0));
                        }
                        _ => {}
                    }
                }
                None => {
                    state[node] = 2;
                    stack.pop();
                }
            }
        }
    }
    None
}

/// The target and every stage it depends on, transitively.
pub(crate) fn needed(decls: &[StageDecl<'_>], target: usize) -> BTreeSet<usize> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![target];
    while let Some(i) = todo.pop() {
        if seen.insert(i) {
            todo.extend(decls[i].deps());
        }
    }
    seen
}
