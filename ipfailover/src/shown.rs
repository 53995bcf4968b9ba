//! Text that came from others (etcd's keys and values, its error messages), made safe to show
//! on a terminal, in a mail or in a log line: control characters, line breaks and the
//! characters that reorder a line (Unicode's bidirectional controls) are written escaped, as
//! Rust writes them (`\n`, `\u{1b}`, `\u{202e}`), and so is the backslash, so that an escape
//! cannot be forged. Everything else, quotes and non-ASCII letters included, is left as it is.

use std::borrow::Cow;

fn plain(c: char) -> bool {
    c == '"' || c == '\'' || (c != '\\' && c.escape_debug().len() == 1)
}

/// `text`, escaped where it must be; borrowed when nothing needed escaping.
pub fn shown(text: &str) -> Cow<'_, str> {
    if text.chars().all(plain) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if plain(c) {
            out.push(c);
        } else {
            out.extend(c.escape_debug());
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn control_characters_line_breaks_and_reordering_are_escaped() {
        assert_eq!(shown("web-1"), "web-1");
        assert!(matches!(shown("web-1"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(shown("a\nFAKE: line"), "a\\nFAKE: line");
        assert_eq!(shown("\u{1b}[2J\r"), "\\u{1b}[2J\\r");
        assert_eq!(shown("x\u{202e}gpj.exe"), "x\\u{202e}gpj.exe");
        assert_eq!(shown("back\\slash"), "back\\\\slash");
        assert_eq!(shown("nul\0"), "nul\\0");
        assert_eq!(shown("desc = \"it's\""), "desc = \"it's\"");
        assert_eq!(shown("Zürich"), "Zürich");
        // Nothing that leaves it can hold a raw control character.
        let all: String = (0u32..0x300).filter_map(char::from_u32).collect();
        assert!(!shown(&all).chars().any(char::is_control));
    }
}
