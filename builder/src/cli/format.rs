//! `--format` for the listing verbs, the part of Docker's Go templates that
//! scripts use: `{{.Field}}` placeholders with literal text around them
//! (`\t` and `\n` escapes as Docker reads them), a `table ` prefix for a
//! header row, and `json` (one JSON object per line). Other template
//! actions (`{{if}}`, `{{range}}`, functions) are not supported yet and say
//! so. Hand-written because no template crate speaks Go's syntax and these
//! few rules are all the verbs need.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Field(String),
}

/// A parsed `--format`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// `json`: every row as a JSON object.
    Json,
    /// A template; `table`: with a header row.
    Template { table: bool, pieces: Vec<Piece> },
}

impl Format {
    /// Parses `s`; `fields` are the names a row has (for the error).
    pub fn parse(s: &str, fields: &[&str]) -> anyhow::Result<Format> {
        if s == "json" || s == "{{json .}}" {
            return Ok(Format::Json);
        }
        let (table, body) = match s.strip_prefix("table") {
            Some(rest) if rest.is_empty() || rest.starts_with(char::is_whitespace) => {
                (true, rest.trim_start())
            }
            _ => (false, s),
        };
        let body = body.replace("\\t", "\t").replace("\\n", "\n");
        let mut pieces = Vec::new();
        let mut rest = body.as_str();
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                pieces.push(Piece::Text(rest[..start].to_string()));
            }
            let end = rest[start..]
                .find("}}")
                .ok_or_else(|| anyhow!("--format {s:?}: a {{{{ without its }}}}"))?;
            let action = rest[start + 2..start + end].trim();
            match action.strip_prefix('.') {
                Some(name) if fields.contains(&name) => pieces.push(Piece::Field(name.into())),
                Some(name) if name.chars().all(|c| c.is_ascii_alphanumeric()) => bail!(
                    "--format: unknown field .{name}: use {}",
                    fields
                        .iter()
                        .map(|f| format!(".{f}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                _ => {
                    return Err(crate::not_supported(&format!(
                        "--format action {{{{{action}}}}} (strata knows {{{{.Field}}}}, table and json)"
                    )));
                }
            }
            rest = &rest[start + end + 2..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        Ok(Format::Template { table, pieces })
    }

    /// The output lines for `rows` (field name → value); `headers` names
    /// each field's column for `table`.
    pub fn render(
        &self,
        rows: &[BTreeMap<&'static str, String>],
        headers: &BTreeMap<&'static str, &'static str>,
    ) -> Vec<String> {
        match self {
            Format::Json => rows
                .iter()
                .map(|r| serde_json::to_string(r).unwrap_or_default())
                .collect(),
            Format::Template { table, pieces } => {
                let fill = |value: &dyn Fn(&str) -> String| -> String {
                    pieces
                        .iter()
                        .map(|p| match p {
                            Piece::Text(t) => t.clone(),
                            Piece::Field(f) => value(f),
                        })
                        .collect()
                };
                let mut lines: Vec<String> = Vec::new();
                if *table {
                    lines.push(fill(&|f| headers.get(f).copied().unwrap_or(f).to_string()));
                }
                for r in rows {
                    lines.push(fill(&|f| r.get(f).cloned().unwrap_or_default()));
                }
                if *table { align_tabs(&lines) } else { lines }
            }
        }
    }
}

/// Columns split by tabs padded to a common width, as Docker's tabwriter
/// does for `table` formats.
fn align_tabs(lines: &[String]) -> Vec<String> {
    let cells: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    let mut widths: Vec<usize> = Vec::new();
    for row in &cells {
        for (i, c) in row.iter().enumerate() {
            if i >= widths.len() {
                widths.push(0);
            }
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    cells
        .iter()
        .map(|row| {
            let mut s = String::new();
            for (i, c) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    s.push_str(c);
                } else {
                    s.push_str(&format!("{c:<w$}   ", w = widths[i]));
                }
            }
            s.trim_end().to_string()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIELDS: [&str; 3] = ["Repository", "Tag", "ID"];

    fn rows() -> Vec<BTreeMap<&'static str, String>> {
        vec![BTreeMap::from([
            ("Repository", "app".to_string()),
            ("Tag", "1".to_string()),
            ("ID", "0123456789ab".to_string()),
        ])]
    }

    fn headers() -> BTreeMap<&'static str, &'static str> {
        BTreeMap::from([
            ("Repository", "REPOSITORY"),
            ("Tag", "TAG"),
            ("ID", "IMAGE ID"),
        ])
    }

    #[test]
    fn templates_fill_fields() {
        let f = Format::parse("{{.Repository}}:{{.Tag}}", &FIELDS).unwrap();
        assert_eq!(f.render(&rows(), &headers()), vec!["app:1"]);
        let f = Format::parse("table {{.Repository}}\\t{{.ID}}", &FIELDS).unwrap();
        assert_eq!(
            f.render(&rows(), &headers()),
            vec!["REPOSITORY   IMAGE ID", "app          0123456789ab"]
        );
        let f = Format::parse("json", &FIELDS).unwrap();
        assert_eq!(
            f.render(&rows(), &headers()),
            vec![r#"{"ID":"0123456789ab","Repository":"app","Tag":"1"}"#]
        );
    }

    #[test]
    fn unknown_fields_and_actions_are_refused() {
        assert_eq!(
            Format::parse("{{.Name}}", &FIELDS).unwrap_err().to_string(),
            "--format: unknown field .Name: use .Repository, .Tag, .ID"
        );
        assert_eq!(
            Format::parse("{{if .Tag}}x{{end}}", &FIELDS)
                .unwrap_err()
                .to_string(),
            "not supported yet: --format action {{if .Tag}} (strata knows {{.Field}}, table and json)"
        );
        assert!(Format::parse("{{.Tag", &FIELDS).is_err());
    }
}
