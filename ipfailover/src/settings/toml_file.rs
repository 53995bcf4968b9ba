//! The TOML format: the same settings, lower case without the prefix. Read through toml's
//! spanned document tree rather than serde, so that every problem is reported with its line
//! instead of stopping at the first.

use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::keys::{Builder, Format, Key, Kind};
use super::{ConfigErrors, Role, Settings};

/// Parses a TOML text and checks it for `role`.
pub(super) fn parse(text: &str, path: &Path, role: Role) -> Result<Settings, ConfigErrors> {
    let mut b = Builder::new(path, Format::Toml);
    let lines = LineIndex::new(text);
    let line_of = |offset: usize| lines.line_of(offset);
    let (table, syntax_errors) = DeTable::parse_recoverable(text);
    let mut broken_lines = Vec::new();
    for e in &syntax_errors {
        let line = e.span().map(|s| line_of(s.start));
        // After the first complaint about a line the parser's recovery adds only noise.
        if line.is_some() && broken_lines.contains(&line) {
            continue;
        }
        broken_lines.push(line);
        let key = match e.span() {
            Some(span) if e.message() == "duplicate key" => text.get(span).map(str::trim),
            _ => None,
        };
        b.error(line, key, e.message().to_string());
    }
    let mut values = Builder::new(path, Format::Toml);
    for (name, value) in table.get_ref().iter() {
        let key_name: &str = name.get_ref();
        let key_line = line_of(name.span().start);
        let Some(key) = Key::from_name(key_name, Format::Toml) else {
            values.unknown_key(key_name, key_line);
            continue;
        };
        let line = line_of(value.span().start);
        match (key.kind(), value.get_ref()) {
            (Kind::List, DeValue::String(s)) => values.set_text(key, s, line),
            (Kind::List, DeValue::Array(array)) => {
                let mut items = Vec::new();
                for element in array.iter() {
                    let element_line = line_of(element.span().start);
                    match element.get_ref() {
                        DeValue::String(s) => items.push((s.to_string(), element_line)),
                        other => values.bad(
                            key,
                            element_line,
                            format!(
                                "expected an array of strings, got an array holding {} {}",
                                article(other.type_str()),
                                other.type_str()
                            ),
                        ),
                    }
                }
                values.set_items(key, items, line);
            }
            (Kind::Int, DeValue::Integer(i)) => match i64::from_str_radix(i.as_str(), i.radix()) {
                Ok(v) => values.set_int(key, v, line),
                Err(_) => values.bad(key, line, format!("integer {i} is out of range")),
            },
            (Kind::Text | Kind::Duration | Kind::Bool, DeValue::String(s)) => {
                values.set_text(key, s, line)
            }
            (Kind::Bool, DeValue::Boolean(v)) => values.set_bool(key, *v, line),
            (kind, other) => {
                let expected = match kind {
                    Kind::List => "an array of strings or one space-separated string",
                    Kind::Int => "an integer",
                    Kind::Duration => "a duration string like \"1s\"",
                    Kind::Text => "a string",
                    Kind::Bool => "true or false",
                };
                values.bad(
                    key,
                    line,
                    format!(
                        "expected {expected}, got {} {}",
                        article(other.type_str()),
                        other.type_str()
                    ),
                );
            }
        }
    }
    // A line the parser could not read yields half a value at best: its own complaint says
    // more than ours would. Keys the broken lines may have held are not reported missing.
    let check_required = syntax_errors.is_empty();
    match values.finish(role, check_required) {
        Ok(settings) if syntax_errors.is_empty() => Ok(settings),
        Ok(_) => b.finish(role, false),
        Err(ConfigErrors(errors)) => {
            for e in errors {
                if e.line.is_none() || !broken_lines.contains(&e.line) {
                    b.error(e.line, e.key.as_deref(), e.message);
                }
            }
            b.finish(role, false)
        }
    }
}

fn article(type_name: &str) -> &'static str {
    if type_name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// Byte offsets of the newlines, so that locating many values stays linear in the file size.
#[derive(Debug)]
struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        LineIndex(text.match_indices('\n').map(|(i, _)| i).collect())
    }

    /// 1-based line of a byte offset; offsets past the end count as the last line.
    fn line_of(&self, offset: usize) -> usize {
        1 + self.0.partition_point(|&newline| newline < offset)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;

    #[test]
    fn line_numbers() {
        let index = LineIndex::new("a\nbc\n\nd");
        for (offset, line) in [(0, 1), (1, 1), (2, 2), (4, 2), (5, 3), (6, 4), (1000, 4)] {
            assert_eq!(index.line_of(offset), line, "{offset}");
        }
        assert_eq!(LineIndex::new("").line_of(0), 1);
    }
}
