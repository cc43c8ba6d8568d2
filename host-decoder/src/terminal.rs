//! Text from the device (or the network) made safe to print on a terminal.
//!
//! Service and operation names, tag keys and values, log fields, baggage and the warnings that
//! quote them come from the device's bytes, which the decoder does not trust. Printed raw, an
//! escape sequence in a span name (`\x1b]0;…\x07`, `\x1b[2J`, a carriage return) would retitle
//! the window, clear the screen or draw a forged line of the tree. [`printable`] writes such
//! characters as escapes instead: every C0 control (the line feed and the tab included: one row
//! stays one line), DEL, every C1 control, and the Unicode bidirectional overrides and isolates
//! that reorder what follows them on the line. The JSON outputs need none of this: their encoder
//! escapes control characters already.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `true` for a character [`printable`] escapes.
fn unsafe_char(c: char) -> bool {
    c.is_control() // C0, DEL and C1
        || matches!(c,
            '\u{061c}' // ARABIC LETTER MARK
            | '\u{200e}' | '\u{200f}' // LEFT-TO-RIGHT and RIGHT-TO-LEFT MARK
            | '\u{202a}'..='\u{202e}' // embeddings and overrides (LRE, RLE, PDF, LRO, RLO)
            | '\u{2066}'..='\u{2069}' // isolates (LRI, RLI, FSI, PDI)
        )
}

/// `text` with control characters and bidirectional controls written as Rust escapes: `\0`,
/// `\t`, `\n`, `\r`, and `\u{1b}` for the others (`\u{202e}`). Text without them (nearly all)
/// is returned as it is, without a copy. A backslash is left as it is: the escapes are for the
/// reader's eyes, not to be parsed back.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\0' => out.push_str("\\0"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_not_copied() {
        assert!(matches!(
            printable("GET /api · ✓ ünïcode"),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn controls_and_bidi_overrides_are_escaped() {
        assert_eq!(
            printable("op\x1b[31mRED\r\x1b[Kfake\nline\0\x07\t"),
            "op\\u{1b}[31mRED\\r\\u{1b}[Kfake\\nline\\0\\u{7}\\t"
        );
        assert_eq!(printable("a\u{7f}b\u{9b}c"), "a\\u{7f}b\\u{9b}c");
        assert_eq!(printable("x\u{202e}y\u{2066}z"), "x\\u{202e}y\\u{2066}z");
        // Escaped text holds no control character at all.
        let all: String = (0u32..0x2070).filter_map(char::from_u32).collect();
        assert!(!printable(&all).chars().any(unsafe_char));
    }
}
