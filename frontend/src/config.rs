//! The image config a stage produces: the `config` object of a Docker / OCI
//! image config JSON, with Docker's key names.
//!
//! Lowering computes one [`ImageConfig`] per stage (base config plus the
//! stage's metadata instructions); the builder writes it into the image it
//! exports and the [`crate::graph::ImageResolver`] hands one over for every
//! base image. Empty fields are omitted on output exactly as Docker omits
//! them (`omitempty`), so a round trip through JSON is lossless.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The JSON value `{}` used as the value of `ExposedPorts` and `Volumes`
/// entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// The runtime config of an image (`config` in the image config JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageConfig {
    /// `USER`: `user[:group]`, names or ids.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub user: String,
    /// `EXPOSE`: keys are `port/proto` (`80/tcp`).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub exposed_ports: BTreeMap<String, Empty>,
    /// `ENV`: `KEY=value` entries, in definition order.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub entrypoint: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub cmd: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Option::is_none"
    )]
    pub healthcheck: Option<Healthcheck>,
    /// Windows-only in practice; kept so that configs round-trip.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    pub args_escaped: bool,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub volumes: BTreeMap<String, Empty>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub working_dir: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    /// `ONBUILD` triggers, each the trigger instruction's text.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub on_build: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub stop_signal: String,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub shell: Vec<String>,
}

/// Docker writes `null` for absent lists and maps (`"Cmd": null`); read it
/// as the empty value.
fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

/// `HEALTHCHECK` settings. Durations are nanoseconds, as Docker stores them;
/// 0 means "inherit / default".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub test: Vec<String>,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub interval: i64,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub timeout: i64,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub start_period: i64,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub start_interval: i64,
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_zero"
    )]
    pub retries: i64,
}

impl Healthcheck {
    /// The history text BuildKit records for this healthcheck (Go's `%+v`):
    /// `{Test:[CMD-SHELL curl -f http://localhost/] Interval:30s Timeout:0s
    /// StartPeriod:0s StartInterval:0s Retries:3}`.
    pub fn history_text(&self) -> String {
        use crate::lower::{duration, gofmt};
        format!(
            "{{Test:{} Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
            gofmt::plain_list(&self.test),
            duration::format(self.interval),
            duration::format(self.timeout),
            duration::format(self.start_period),
            duration::format(self.start_interval),
            self.retries
        )
    }
}

impl ImageConfig {
    /// The value of environment variable `key`, if set.
    pub fn env_get(&self, key: &str) -> Option<&str> {
        self.env.iter().find_map(|e| {
            let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
            (k == key).then_some(v)
        })
    }

    /// Sets `key=value` as BuildKit does: the first entry with that key is
    /// replaced in place (a bare `key` entry counts), otherwise it is
    /// appended.
    pub fn env_set(&mut self, key: &str, value: &str) {
        let entry = format!("{key}={value}");
        let slot = self
            .env
            .iter_mut()
            .find(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k) == key);
        match slot {
            Some(e) => *e = entry,
            None => self.env.push(entry),
        }
    }

    /// The environment as ordered `(key, value)` pairs.
    pub fn env_pairs(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|e| {
                let (k, v) = e.split_once('=').unwrap_or((e.as_str(), ""));
                (k.to_string(), v.to_string())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_key_names_and_omitempty() {
        let mut c = ImageConfig::default();
        assert_eq!(serde_json::to_string(&c).unwrap(), "{}");
        c.env_set("PATH", "/bin");
        c.exposed_ports.insert("80/tcp".into(), Empty {});
        c.healthcheck = Some(Healthcheck {
            test: vec!["NONE".into()],
            interval: 1_000_000_000,
            ..Default::default()
        });
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(
            json,
            r#"{"ExposedPorts":{"80/tcp":{}},"Env":["PATH=/bin"],"Healthcheck":{"Test":["NONE"],"Interval":1000000000}}"#
        );
        let back: ImageConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn env_update_rules() {
        let mut c = ImageConfig {
            env: vec!["key1=val1".into(), "key1=val2".into(), "key3".into()],
            ..Default::default()
        };
        c.env_set("key1", "value1");
        c.env_set("key3", "val3");
        c.env_set("key4", "v");
        assert_eq!(c.env, ["key1=value1", "key1=val2", "key3=val3", "key4=v"]);
        assert_eq!(c.env_get("key3"), Some("val3"));
    }

    #[test]
    fn reads_docker_config_with_nulls_absent() {
        let json = r#"{"Cmd":["sh"],"Volumes":null,"Entrypoint":null,"Hostname":"","Healthcheck":null,"Env":["A=b"],"OnBuild":["RUN x"],"WorkingDir":"/w"}"#;
        let c: ImageConfig = serde_json::from_str(json).unwrap();
        assert_eq!(c.cmd, ["sh"]);
        assert_eq!(c.on_build, ["RUN x"]);
    }
}
