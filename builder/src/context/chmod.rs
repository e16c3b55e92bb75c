//! `COPY/ADD --chmod`: octal (`0755`) or symbolic (`u+x,go-w`, `a=rX`), as
//! chmod(1) reads them. A symbolic mode is applied to each copied entry's
//! own mode, so `+x` keeps what each file had and `X` marks directories
//! (and files already executable by someone) only. With no `ugoa` the
//! clause is for everyone and, unlike chmod(1), no umask applies (a build
//! must not depend on the host's umask). Written by hand: the grammar is
//! a dozen lines and the crates that parse it also touch files.

use std::fmt;

/// A parsed `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    Octal(u32),
    Symbolic(Vec<Clause>),
}

/// One comma-separated part of a symbolic mode: who, then operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clause {
    /// Bit mask of the classes (`u` 0o4700, `g` 0o2070, `o` 0o1007).
    who: u32,
    ops: Vec<(char, Perms)>,
}

/// What an operation adds, removes or sets.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Perms {
    /// `rwxXst` letters.
    Letters(String),
    /// `u`, `g` or `o`: the bits that class has now.
    CopyOf(char),
}

/// Why a `--chmod` value is not a mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChmodError(String);

impl fmt::Display for ChmodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "--chmod={}: not a mode; use octal like 0755 or symbolic like u+x,go-w",
            self.0
        )
    }
}

impl std::error::Error for ChmodError {}

const USER: u32 = 0o4700;
const GROUP: u32 = 0o2070;
const OTHER: u32 = 0o1007;

impl Chmod {
    pub fn parse(s: &str) -> Result<Chmod, ChmodError> {
        let err = || ChmodError(s.to_string());
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            return match u32::from_str_radix(s, 8) {
                Ok(b) if b <= 0o7777 => Ok(Chmod::Octal(b)),
                _ => Err(err()),
            };
        }
        let mut clauses = Vec::new();
        for part in s.split(',') {
            let mut chars = part.chars().peekable();
            let mut who = 0;
            while let Some(&c) = chars.peek() {
                who |= match c {
                    'u' => USER,
                    'g' => GROUP,
                    'o' => OTHER,
                    'a' => USER | GROUP | OTHER,
                    _ => break,
                };
                chars.next();
            }
            if who == 0 {
                who = USER | GROUP | OTHER;
            }
            let mut ops = Vec::new();
            while let Some(op) = chars.next() {
                if !matches!(op, '+' | '-' | '=') {
                    return Err(err());
                }
                let mut letters = String::new();
                let mut copy = None;
                while let Some(&c) = chars.peek() {
                    match c {
                        'r' | 'w' | 'x' | 'X' | 's' | 't' if copy.is_none() => letters.push(c),
                        'u' | 'g' | 'o' if letters.is_empty() && copy.is_none() => copy = Some(c),
                        '+' | '-' | '=' => break,
                        _ => return Err(err()),
                    }
                    chars.next();
                }
                ops.push((op, copy.map_or(Perms::Letters(letters), Perms::CopyOf)));
            }
            if ops.is_empty() {
                return Err(err());
            }
            clauses.push(Clause { who, ops });
        }
        Ok(Chmod::Symbolic(clauses))
    }

    /// The permission bits an entry with `mode` gets (`is_dir` for `X`).
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let clauses = match self {
            Chmod::Octal(b) => return *b,
            Chmod::Symbolic(c) => c,
        };
        let mut m = mode & 0o7777;
        for c in clauses {
            for (op, perms) in &c.ops {
                let bits = match perms {
                    Perms::Letters(l) => letter_bits(l, m, is_dir) & c.who,
                    Perms::CopyOf(class) => copy_bits(*class, m) & c.who & 0o777,
                };
                m = match op {
                    '+' => m | bits,
                    '-' => m & !bits,
                    // `=` clears the classes' rwx (and their s/t bits).
                    _ => (m & !c.who) | bits,
                };
            }
        }
        m
    }
}

/// The bits `rwxXst` stand for in every class (masked by who later).
fn letter_bits(letters: &str, mode: u32, is_dir: bool) -> u32 {
    letters.chars().fold(0, |acc, c| {
        acc | match c {
            'r' => 0o444,
            'w' => 0o222,
            'x' => 0o111,
            'X' if is_dir || mode & 0o111 != 0 => 0o111,
            's' => 0o6000,
            't' => 0o1000,
            _ => 0,
        }
    })
}

/// The rwx of `class` in `mode`, repeated into all three classes.
fn copy_bits(class: char, mode: u32) -> u32 {
    let shift = match class {
        'u' => 6,
        'g' => 3,
        _ => 0,
    };
    let rwx = (mode >> shift) & 0o7;
    rwx << 6 | rwx << 3 | rwx
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym(s: &str, mode: u32, dir: bool) -> u32 {
        Chmod::parse(s).unwrap().apply(mode, dir)
    }

    #[test]
    fn octal_sets_the_bits() {
        assert_eq!(Chmod::parse("0755").unwrap(), Chmod::Octal(0o755));
        assert_eq!(Chmod::parse("4755").unwrap().apply(0o600, false), 0o4755);
        assert!(Chmod::parse("0888").is_err());
        assert!(Chmod::parse("17777").is_err());
    }

    #[test]
    fn symbolic_like_chmod() {
        assert_eq!(sym("u+x", 0o644, false), 0o744);
        assert_eq!(sym("+x", 0o644, false), 0o755);
        assert_eq!(sym("go-w", 0o666, false), 0o644);
        assert_eq!(sym("a=r", 0o755, false), 0o444);
        assert_eq!(sym("u=rwx,g=rx,o=", 0o000, false), 0o750);
        assert_eq!(sym("o=u", 0o640, false), 0o646);
        assert_eq!(sym("g+s", 0o755, true), 0o2755);
        assert_eq!(sym("u+s", 0o755, false), 0o4755);
        assert_eq!(sym("+t", 0o777, true), 0o1777);
        assert_eq!(sym("u+x-w", 0o644, false), 0o544);
    }

    #[test]
    fn capital_x_only_for_dirs_and_executables() {
        assert_eq!(sym("a+X", 0o644, false), 0o644);
        assert_eq!(sym("a+X", 0o644, true), 0o755);
        assert_eq!(sym("a+X", 0o744, false), 0o755);
    }

    #[test]
    fn nonsense_is_refused_with_the_flag_named() {
        for bad in ["", "u", "z+x", "u+q", "u+x,", "+ug", "u*x"] {
            let e = Chmod::parse(bad).unwrap_err();
            assert!(e.to_string().starts_with("--chmod="), "{bad}: {e}");
        }
    }
}
