//! The XML reader for WeChat's flat notices, deliberately strict and small: no DOCTYPE, no
//! entity declarations, no entity references except the five predefined ones and numeric
//! character references (nothing is ever expanded from a declaration and no file or URL is ever
//! read), no attributes, exactly one `<xml>` root holding only leaf fields, each at most once
//! (names compared case-insensitively). Every message quotes at most 64 bytes of the document.

use std::collections::HashSet;

use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

use crate::text::Quoted;

/// The fields of a flat `<xml>` document in document order: names as written, values with their
/// text and CDATA pieces joined and then trimmed.
pub type XmlFields = Vec<(String, String)>;

/// An element's name. Attributes are refused: WeChat sends none, and nothing unsigned should
/// ride along unseen.
fn name_of(e: &BytesStart<'_>) -> Result<String, String> {
    if e.attributes().next().is_some() {
        let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
        return Err(format!("element <{}> has attributes", Quoted(&name)));
    }
    let qname = e.name();
    let name =
        std::str::from_utf8(qname.as_ref()).map_err(|_| "element name is not UTF-8".to_string())?;
    // An XML Name, in the ASCII that WeChat's element names use (quick-xml itself lets an empty
    // name or control characters through).
    let mut bytes = name.bytes();
    let valid = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !valid {
        return Err(format!("{} is not an element name", Quoted(name)));
    }
    Ok(name.to_string())
}

/// Trims XML whitespace (space, tab, CR, LF) from both ends; other Unicode spaces are content.
pub fn xml_trim(s: &str) -> &str {
    s.trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
}

fn only_whitespace(s: &[u8]) -> bool {
    s.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// Reads a flat `<xml><Name>value</Name>…</xml>` document. Every deviation is an error message
/// (the caller answers 400).
pub fn parse_flat_xml(body: &[u8]) -> Result<XmlFields, String> {
    enum State {
        Before,
        Root,
        Field(String, String),
        After,
    }
    let text = std::str::from_utf8(body).map_err(|_| "body is not valid UTF-8".to_string())?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = Reader::from_str(text);
    let mut state = State::Before;
    let mut fields: XmlFields = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    loop {
        let ev = reader.read_event().map_err(|e| {
            format!(
                "malformed XML at byte {}: {}",
                reader.error_position(),
                Quoted(&e.to_string())
            )
        })?;
        state = match (state, ev) {
            (_, Event::DocType(_)) => {
                return Err("DOCTYPE and entity declarations are not accepted".into());
            }
            (_, Event::PI(_)) => return Err("processing instructions are not accepted".into()),
            (State::Before, Event::Decl(_)) => State::Before,
            (_, Event::Decl(_)) => return Err("misplaced XML declaration".into()),
            (s, Event::Comment(_)) => s,
            (State::Before, Event::Start(e)) => {
                if name_of(&e)? != "xml" {
                    return Err("the root element must be <xml>".into());
                }
                State::Root
            }
            (State::Before, Event::Empty(e)) => {
                if name_of(&e)? != "xml" {
                    return Err("the root element must be <xml>".into());
                }
                State::After
            }
            (State::Root, Event::Start(e)) => {
                let name = name_of(&e)?;
                if !seen.insert(name.to_ascii_lowercase()) {
                    return Err(format!("field <{}> appears twice", Quoted(&name)));
                }
                State::Field(name, String::new())
            }
            (State::Root, Event::Empty(e)) => {
                let name = name_of(&e)?;
                if !seen.insert(name.to_ascii_lowercase()) {
                    return Err(format!("field <{}> appears twice", Quoted(&name)));
                }
                fields.push((name, String::new()));
                State::Root
            }
            (State::Field(name, _), Event::Start(_) | Event::Empty(_)) => {
                return Err(format!("field <{}> contains an element", Quoted(&name)));
            }
            (State::Field(name, value), Event::End(_)) => {
                fields.push((name, xml_trim(&value).to_string()));
                State::Root
            }
            (State::Root, Event::End(_)) => State::After,
            (State::Field(name, mut value), Event::Text(t)) => {
                value.push_str(
                    &t.decode()
                        .map_err(|e| format!("bad text: {}", Quoted(&e.to_string())))?,
                );
                State::Field(name, value)
            }
            (State::Field(name, mut value), Event::CData(c)) => {
                value.push_str(
                    &c.decode()
                        .map_err(|e| format!("bad CDATA: {}", Quoted(&e.to_string())))?,
                );
                State::Field(name, value)
            }
            (State::Field(name, mut value), Event::GeneralRef(r)) => {
                if r.is_char_ref() {
                    match r.resolve_char_ref() {
                        Ok(Some(c)) => value.push(c),
                        _ => return Err("invalid character reference".into()),
                    }
                } else {
                    let c = match &*r {
                        b"lt" => '<',
                        b"gt" => '>',
                        b"amp" => '&',
                        b"apos" => '\'',
                        b"quot" => '"',
                        other => {
                            return Err(format!(
                                "entity reference {} is not accepted",
                                Quoted(&String::from_utf8_lossy(other))
                            ));
                        }
                    };
                    value.push(c);
                }
                State::Field(name, value)
            }
            (s @ (State::Before | State::Root | State::After), Event::Text(t)) => {
                if !only_whitespace(&t) {
                    return Err("text outside a field".into());
                }
                s
            }
            (State::Field(..), Event::Eof) | (State::Before | State::Root, Event::Eof) => {
                return Err("unexpected end of document".into());
            }
            (State::After, Event::Eof) => break,
            (State::After, _) => return Err("content after the root element".into()),
            (_, Event::GeneralRef(_)) => return Err("entity reference outside a field".into()),
            (_, Event::CData(_)) => return Err("CDATA outside a field".into()),
            (_, Event::End(_)) => return Err("unexpected end tag".into()),
        };
    }
    Ok(fields)
}
