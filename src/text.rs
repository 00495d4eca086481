//! Quoting what a client sent, cut short (SPEC §2: a message quotes at most 64 bytes of anything
//! the client sent, so no request can write a large log line).

use std::fmt;

/// The most bytes of client text any message quotes.
pub const QUOTE_MAX: usize = 64;

/// `s` cut to at most `max` bytes at a character boundary.
pub fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Client text for an error message: Debug-quoted (control characters escaped), at most
/// [`QUOTE_MAX`] bytes of it, and `…` when it was cut.
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cut = clip(self.0, QUOTE_MAX);
        if cut.len() < self.0.len() {
            write!(f, "{cut:?}…")
        } else {
            write!(f, "{cut:?}")
        }
    }
}

/// Bytes from the client that may not be UTF-8, quoted like [`Quoted`].
pub fn quote_bytes(b: &[u8]) -> String {
    let cut = &b[..b.len().min(QUOTE_MAX)];
    let s = String::from_utf8_lossy(cut);
    if cut.len() < b.len() {
        format!("{s:?}…")
    } else {
        format!("{s:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_at_char_boundaries() {
        assert_eq!(clip("abc", 2), "ab");
        assert_eq!(clip("é", 1), "");
        assert_eq!(clip("aé", 2), "a");
        let long = "k".repeat(1 << 20);
        let q = Quoted(&long).to_string();
        assert!(q.len() < QUOTE_MAX + 8, "{}", q.len());
        assert!(q.ends_with('…'));
        assert_eq!(Quoted("ab").to_string(), "\"ab\"");
        assert!(quote_bytes(&[0xff; 1000]).len() < 4 * QUOTE_MAX);
    }
}
