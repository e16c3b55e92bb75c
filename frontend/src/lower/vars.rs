//! Variable scopes with logarithmic updates and look-ups.
//!
//! A Dockerfile may declare tens of thousands of ARGs and ENVs; every word
//! expansion looks variables up, and every declaration may replace an
//! earlier one. Rebuilding or scanning the whole scope per instruction made
//! lowering quadratic (issue 11), so the scopes here keep an index next to
//! their ordered entries: [`Vars`] for ARGs (declaration order kept for
//! history), [`EnvIndex`] for the image config's `Env` list, and [`Scope`]
//! as the read-only view word expansion uses.

use std::collections::HashMap;

use crate::config::ImageConfig;
use crate::words::Env;

/// Ordered variables: a redeclared name moves to the end, as BuildKit's
/// ordered argument list does. Removal leaves a hole, so no entry moves.
#[derive(Debug, Clone, Default)]
pub(crate) struct Vars {
    slots: Vec<Option<(String, Option<String>)>>,
    index: HashMap<String, usize>,
}

impl Vars {
    /// Declares `name` (`None`: declared without a value), replacing an
    /// earlier declaration.
    pub(crate) fn set(&mut self, name: &str, value: Option<String>) {
        if let Some(old) = self.index.remove(name) {
            self.slots[old] = None;
        }
        self.index.insert(name.to_string(), self.slots.len());
        self.slots.push(Some((name.to_string(), value)));
    }

    /// `Some(None)` when declared without a value, `None` when undeclared.
    pub(crate) fn get(&self, name: &str) -> Option<Option<&str>> {
        let (_, v) = self.slots[*self.index.get(name)?].as_ref()?;
        Some(v.as_deref())
    }

    /// The declarations in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.slots
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_deref()))
    }
}

impl Env for Vars {
    /// Only variables with a value are set.
    fn get(&self, name: &str) -> Option<&str> {
        Vars::get(self, name).flatten()
    }
}

/// Where each key of an image config's `Env` list is: the first entry with
/// that key, which is the one BuildKit replaces and reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct EnvIndex {
    first: HashMap<String, usize>,
}

/// The key of an `Env` entry (`K=V`, or a bare `K`).
pub(crate) fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

impl EnvIndex {
    /// Indexes `config`'s Env as it is now.
    pub(crate) fn of(config: &ImageConfig) -> EnvIndex {
        let mut first = HashMap::new();
        for (i, e) in config.env.iter().enumerate() {
            first.entry(env_key(e).to_string()).or_insert(i);
        }
        EnvIndex { first }
    }

    /// BuildKit's rule (see [`ImageConfig::env_set`]): replace the first
    /// entry with that key in place, else append.
    pub(crate) fn set(&mut self, config: &mut ImageConfig, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        match self.first.get(key) {
            Some(&i) if i < config.env.len() => config.env[i] = entry,
            _ => {
                self.first.insert(key.to_string(), config.env.len());
                config.env.push(entry);
            }
        }
    }

    /// The value of `key` in `config`'s Env (`""` for a bare `K` entry).
    pub(crate) fn get<'c>(&self, config: &'c ImageConfig, key: &str) -> Option<&'c str> {
        let e = config.env.get(*self.first.get(key)?)?;
        Some(e.split_once('=').map_or("", |(_, v)| v))
    }
}

/// What words of a stage expand with: the config's Env, then the declared
/// ARGs with a value (Env wins, as in BuildKit).
pub(crate) struct Scope<'s> {
    pub config: &'s ImageConfig,
    pub env: &'s EnvIndex,
    pub args: &'s Vars,
}

impl Env for Scope<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.env
            .get(self.config, name)
            .or_else(|| Env::get(self.args, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redeclared_var_moves_to_the_end() {
        let mut v = Vars::default();
        v.set("A", Some("1".into()));
        v.set("B", None);
        v.set("A", Some("2".into()));
        let order: Vec<_> = v.iter().collect();
        assert_eq!(order, vec![("B", None), ("A", Some("2"))]);
        assert_eq!(Env::get(&v, "B"), None);
        assert_eq!(Vars::get(&v, "B"), Some(None));
        assert_eq!(Env::get(&v, "A"), Some("2"));
    }

    #[test]
    fn env_index_replaces_the_first_entry_and_env_wins() {
        let mut config = ImageConfig {
            env: vec!["A=1".into(), "B".into(), "A=3".into()],
            ..Default::default()
        };
        let mut idx = EnvIndex::of(&config);
        idx.set(&mut config, "A", "x");
        idx.set(&mut config, "C", "y");
        assert_eq!(config.env, vec!["A=x", "B", "A=3", "C=y"]);
        let mut args = Vars::default();
        args.set("C", Some("arg".into()));
        args.set("D", Some("arg".into()));
        let scope = Scope {
            config: &config,
            env: &idx,
            args: &args,
        };
        assert_eq!(scope.get("A"), Some("x"));
        assert_eq!(scope.get("B"), Some(""));
        assert_eq!(scope.get("C"), Some("y"));
        assert_eq!(scope.get("D"), Some("arg"));
        assert_eq!(scope.get("E"), None);
    }
}
