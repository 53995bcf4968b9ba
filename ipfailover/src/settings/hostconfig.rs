//! The hostconfig format: the shell-variable file that Mac OS X's `/etc/hostconfig` used and
//! that `sh` can still source, so values are read with the shell's quoting rules.

use std::path::Path;

use super::keys::{Builder, Format, Key};
use super::{ConfigErrors, Role, Settings};

/// Parses a hostconfig text and checks it for `role`.
pub(super) fn parse(text: &str, path: &Path, role: Role) -> Result<Settings, ConfigErrors> {
    let mut b = Builder::new(path, Format::Hostconfig);
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (index, raw) in text.split('\n').enumerate() {
        let line = index + 1;
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        match parse_line(raw) {
            Ok(None) => {}
            Ok(Some(assignment)) => apply(&mut b, assignment, line),
            Err((key, message)) => b.error(Some(line), key, message),
        }
    }
    b.finish(role, true)
}

fn apply(b: &mut Builder<'_>, a: Assignment<'_>, line: usize) {
    if !a.key.starts_with("FAILOVER_") {
        // The file is shared with other software: its keys are none of our business, unless
        // it is one of ours in the wrong case, which the shell would treat as another variable.
        let upper = a.key.to_ascii_uppercase();
        if Key::from_name(&upper, Format::Hostconfig).is_some() {
            let message = format!("ignored: keys are case-sensitive; did you mean {upper}?");
            b.warn(Some(line), Some(a.key), message);
        }
        return;
    }
    let Some(key) = Key::from_name(a.key, Format::Hostconfig) else {
        b.unknown_key(a.key, line);
        return;
    };
    // Things the shell would do differently from a plain assignment matter only for our keys:
    // other software's lines may use the shell as they please.
    if let Some(problem) = a.word.problem(a.key) {
        b.error(Some(line), Some(a.key), problem);
        return;
    }
    b.set_text(key, &a.word.value, line);
}

/// One `KEY=value` line.
#[derive(Debug)]
struct Assignment<'a> {
    key: &'a str,
    word: Word,
}

/// The value after `=`, with what the shell would have made of it.
#[derive(Debug, Default)]
struct Word {
    value: String,
    /// An unescaped `$` or backquote: the shell would expand it, we would not.
    expansion: Option<char>,
    /// An unquoted `;`, `&`, `|`, `<`, `>`, `(` or `)`.
    operator: Option<char>,
    /// Text after the value and whitespace: for the shell, a command to run.
    extra: bool,
}

impl Word {
    fn problem(&self, key: &str) -> Option<String> {
        if let Some(c) = self.expansion {
            return Some(format!(
                "`{c}` would be expanded by the shell; write it as \\{c} or put the value in \
                 single quotes"
            ));
        }
        if let Some(c) = self.operator {
            return Some(format!(
                "`{c}` is a shell operator; put the value in quotes"
            ));
        }
        if self.extra {
            return Some(format!(
                "the value has spaces outside quotes; write several items as {key}=\"a b\""
            ));
        }
        None
    }
}

/// `Ok(None)` for blank and comment lines; errors name the key when there is one.
fn parse_line(line: &str) -> Result<Option<Assignment<'_>>, (Option<&str>, String)> {
    let rest = line.trim_start_matches([' ', '\t']);
    if rest.is_empty() || rest.starts_with('#') {
        return Ok(None);
    }
    let rest = match rest.strip_prefix("export") {
        Some(after) if after.starts_with([' ', '\t']) => after.trim_start_matches([' ', '\t']),
        _ => rest,
    };
    let key_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    let (key, after_key) = rest.split_at(key_len);
    let key_ok = key
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let Some(value) = after_key.strip_prefix('=').filter(|_| key_ok) else {
        if key_ok && after_key.trim_start_matches([' ', '\t']).starts_with('=') {
            return Err((
                Some(key),
                format!(
                    "no spaces are allowed before `=` (the shell would run {key} as a command)"
                ),
            ));
        }
        return Err((
            None,
            format!(
                "expected KEY=\"value\", a comment or a blank line, got {:?}",
                truncate(line)
            ),
        ));
    };
    let word = parse_word(value).map_err(|message| (Some(key), message))?;
    Ok(Some(Assignment { key, word }))
}

/// Reads one shell word: unquoted text, `'literal'` and `"escaped"` parts, concatenated.
fn parse_word(input: &str) -> Result<Word, String> {
    let mut word = Word::default();
    let mut chars = input.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' => {
                while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
                word.extra = chars.peek().is_some_and(|c| *c != '#');
                break;
            }
            '\'' => loop {
                match chars.next() {
                    None => return Err("unterminated single quote".to_string()),
                    Some('\'') => break,
                    Some(c) => word.value.push(c),
                }
            },
            '"' => loop {
                match chars.next() {
                    None => return Err("unterminated double quote".to_string()),
                    Some('"') => break,
                    Some('\\') => match chars.next_if(|c| matches!(c, '"' | '\\' | '$' | '`')) {
                        Some(escaped) => word.value.push(escaped),
                        // Inside double quotes the shell keeps other backslashes as they are.
                        None => word.value.push('\\'),
                    },
                    Some(c) => {
                        if c == '$' || c == '`' {
                            word.expansion.get_or_insert(c);
                        }
                        word.value.push(c);
                    }
                }
            },
            '\\' => match chars.next() {
                Some(escaped) => word.value.push(escaped),
                None => {
                    return Err(
                        "a backslash at the end of the line (continuation) is not supported"
                            .to_string(),
                    )
                }
            },
            '$' | '`' => {
                word.expansion.get_or_insert(c);
                word.value.push(c);
            }
            ';' | '&' | '|' | '<' | '>' | '(' | ')' => {
                word.operator.get_or_insert(c);
                word.value.push(c);
            }
            c => word.value.push(c),
        }
    }
    Ok(word)
}

/// Keeps messages about garbage lines short.
fn truncate(line: &str) -> String {
    const MAX: usize = 60;
    match line.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", line.get(..cut).unwrap_or(line)),
        None => line.to_string(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // A failed unwrap is a failed test.
mod tests {
    use super::*;

    fn value(line: &str) -> Result<String, String> {
        match parse_line(line).map_err(|(_, message)| message)? {
            Some(a) => match a.word.problem(a.key) {
                Some(p) => Err(p),
                None => Ok(a.word.value),
            },
            None => Err("no assignment".to_string()),
        }
    }

    #[test]
    fn quoting() {
        for (line, expected) in [
            (r#"K="value""#, "value"),
            ("K='value'", "value"),
            ("K=value", "value"),
            ("K=", ""),
            (r#"K="""#, ""),
            ("K=''", ""),
            (r#"K="x"'y'z"#, "xyz"),
            (r#"K="a b  c""#, "a b  c"),
            (r#"K="say \"hi\"""#, r#"say "hi""#),
            (r#"K="back\\slash""#, r"back\slash"),
            (r#"K="\$HOME""#, "$HOME"),
            (r#"K="\`cmd\`""#, "`cmd`"),
            (r#"K="keep\n""#, r"keep\n"),
            (r#"K='no $expansion \ here'"#, r"no $expansion \ here"),
            (r"K=a\ b", "a b"),
            (r"K=\$x", "$x"),
            (r#"K="it's""#, "it's"),
            (r#"K='say "hi"'"#, r#"say "hi""#),
            ("K=a#b", "a#b"),
            ("K=\"#not a comment\"", "#not a comment"),
            ("K=value # a comment", "value"),
            ("K=\"value\"\t# a comment", "value"),
            ("K= # only a comment", ""),
            ("K=value   ", "value"),
            ("  K=indented", "indented"),
            ("export K=exported", "exported"),
            (
                "export\tK='tab'",
                "exported".replace("exported", "tab").as_str(),
            ),
            ("_under_score1=x", "x"),
            ("K=é☃", "é☃"),
        ] {
            assert_eq!(value(line), Ok(expected.to_string()), "{line}");
        }
    }

    #[test]
    fn blank_and_comment_lines() {
        for line in [
            "",
            "   ",
            "\t",
            "# comment",
            "   # indented comment",
            "#K=v",
        ] {
            assert!(matches!(parse_line(line), Ok(None)), "{line:?}");
        }
    }

    #[test]
    fn refused_lines() {
        for (line, fragment) in [
            ("K=\"open", "unterminated double quote"),
            ("K='open", "unterminated single quote"),
            ("K=\"a\\\"", "unterminated double quote"),
            ("K=a\\", "continuation"),
            ("K = v", "no spaces are allowed before `=`"),
            ("K =v", "no spaces are allowed before `=`"),
            ("K", "expected KEY=\"value\""),
            ("1K=v", "expected KEY=\"value\""),
            ("=v", "expected KEY=\"value\""),
            ("K-X=v", "expected KEY=\"value\""),
            ("export K", "expected KEY=\"value\""),
            ("export", "expected KEY=\"value\""),
            ("if true; then", "expected KEY=\"value\""),
            ("K=a b", "spaces outside quotes"),
            ("K=\"a\" b", "spaces outside quotes"),
            ("K=$HOME", "expanded by the shell"),
            ("K=\"$HOME\"", "expanded by the shell"),
            ("K=`id`", "expanded by the shell"),
            ("K=a;b", "shell operator"),
            ("K=a|b", "shell operator"),
            ("K=a>b", "shell operator"),
        ] {
            match value(line) {
                Err(e) => assert!(e.contains(fragment), "{line:?}: {e:?} lacks {fragment:?}"),
                Ok(v) => panic!("{line:?} accepted as {v:?}"),
            }
        }
    }

    #[test]
    fn exportx_is_a_key_not_export() {
        let a = parse_line("exportX=1").unwrap().unwrap();
        assert_eq!(a.key, "exportX");
        let a = parse_line("export=1").unwrap().unwrap();
        assert_eq!(a.key, "export");
    }

    #[test]
    fn long_garbage_is_truncated_in_messages() {
        let line = "x".repeat(500);
        let (_, e) = parse_line(&line).unwrap_err();
        assert!(e.len() < 120, "{e}");
    }
}
