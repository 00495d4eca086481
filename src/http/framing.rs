//! A second reading of each connection's request stream, beside hyper's, for what hyper hides.
//!
//! hyper frames a request that has both `Content-Length` and `Transfer-Encoding` by the latter,
//! as RFC 9112 allows, and drops the `Content-Length` header, so a handler cannot tell the pair
//! was there. payhook refuses such a request (a proxy in front and payhook could frame its body
//! differently: request smuggling; docs/SECURITY.md), so [`Scan`] reads the raw bytes as hyper
//! reads them and gives one verdict per request head, in order.
//!
//! To find where the next head starts on a kept-alive or pipelined connection, it follows each
//! request's body the way hyper does: `Transfer-Encoding` ending in `chunked` (chunk sizes,
//! extensions, data, the last chunk, trailers; hyper's `ChunkedState` byte for byte), else
//! `Content-Length`, else no body. A stream it cannot follow (a bad chunk line, a length that is
//! not a number, an unknown coding, an upgrade) is one hyper refuses too and then closes; from
//! there the scan gives no more verdicts, and a request without a verdict counts as having no
//! such pair, which is what hyper's framing alone would say.

use std::collections::VecDeque;

/// At most this many verdicts wait for their requests: hyper reads at most its buffer (16 KiB)
/// ahead, which holds fewer heads than this.
const MAX_WAITING: usize = 1024;

/// The scan of one connection's request stream.
#[derive(Default)]
pub struct Scan {
    at: At,
    head: Head,
    /// One per head seen, oldest first: whether it had both `Content-Length` and
    /// `Transfer-Encoding`.
    verdicts: VecDeque<bool>,
}

#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
enum At {
    #[default]
    Head,
    /// A `Content-Length` body: bytes still to come.
    Body(u64),
    /// Chunked: the first digit of a chunk size.
    ChunkStart,
    /// More size digits (the size so far).
    ChunkSize(u64),
    /// Blanks after the size.
    ChunkSizeBlank(u64),
    /// A chunk extension, up to the CR.
    ChunkExtension(u64),
    /// The LF of the size line.
    ChunkSizeLf(u64),
    ChunkData(u64),
    ChunkDataCr,
    ChunkDataLf,
    /// After the last chunk's size line: CR of the end, or a trailer line.
    EndCr,
    EndLf,
    Trailer,
    TrailerLf,
    /// Something hyper would refuse: no more verdicts on this connection.
    Lost,
}

impl Scan {
    /// Reads the next bytes of the stream.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() && self.at != At::Lost {
            match self.at {
                At::Head => {
                    let used = self.head.feed(bytes);
                    bytes = bytes.get(used..).unwrap_or_default();
                    if self.head.done {
                        self.end_of_head();
                    }
                }
                At::Body(left) | At::ChunkData(left) => {
                    let take = usize::try_from(left).map_or(bytes.len(), |l| l.min(bytes.len()));
                    bytes = bytes.get(take..).unwrap_or_default();
                    let left = left.saturating_sub(take as u64);
                    self.at = match (self.at, left) {
                        (At::Body(_), 0) => At::Head,
                        (At::Body(_), _) => At::Body(left),
                        (_, 0) => At::ChunkDataCr,
                        _ => At::ChunkData(left),
                    };
                }
                _ => {
                    if let Some((&b, rest)) = bytes.split_first() {
                        self.at = chunked(self.at, b);
                        bytes = rest;
                    }
                }
            }
        }
    }

    /// The verdict for the oldest head not yet asked about: `Some(true)` when it had both
    /// `Content-Length` and `Transfer-Encoding`; `None` when the scan has none for it.
    pub fn take(&mut self) -> Option<bool> {
        self.verdicts.pop_front()
    }

    fn end_of_head(&mut self) {
        let head = std::mem::take(&mut self.head);
        if self.verdicts.len() >= MAX_WAITING {
            self.at = At::Lost;
            return;
        }
        self.verdicts
            .push_back(head.content_length.is_some() && head.transfer_encoding.is_some());
        self.at = match (head.transfer_encoding, head.content_length) {
            _ if head.upgrade => At::Lost,
            (Some(true), _) => At::ChunkStart,
            (Some(false), _) => At::Lost,
            (None, Some(Length::Valid(0)) | None) => At::Head,
            (None, Some(Length::Valid(n))) => At::Body(n),
            (None, Some(Length::Invalid)) => At::Lost,
        };
    }
}

/// One step of hyper's chunked decoder (`hyper::proto::h1::decode::ChunkedState`).
fn chunked(at: At, b: u8) -> At {
    let digit = |size: u64| {
        let d = char::from(b).to_digit(16)?;
        size.checked_mul(16)?.checked_add(u64::from(d))
    };
    match at {
        At::ChunkStart => digit(0).map_or(At::Lost, At::ChunkSize),
        At::ChunkSize(size) => match b {
            b'\t' | b' ' => At::ChunkSizeBlank(size),
            b';' => At::ChunkExtension(size),
            b'\r' => At::ChunkSizeLf(size),
            _ => digit(size).map_or(At::Lost, At::ChunkSize),
        },
        At::ChunkSizeBlank(size) => match b {
            b'\t' | b' ' => At::ChunkSizeBlank(size),
            b';' => At::ChunkExtension(size),
            b'\r' => At::ChunkSizeLf(size),
            _ => At::Lost,
        },
        At::ChunkExtension(size) => match b {
            b'\r' => At::ChunkSizeLf(size),
            b'\n' => At::Lost,
            _ => At::ChunkExtension(size),
        },
        At::ChunkSizeLf(0) if b == b'\n' => At::EndCr,
        At::ChunkSizeLf(size) if b == b'\n' => At::ChunkData(size),
        At::ChunkDataCr if b == b'\r' => At::ChunkDataLf,
        At::ChunkDataLf if b == b'\n' => At::ChunkStart,
        At::EndCr if b == b'\r' => At::EndLf,
        At::EndCr | At::Trailer => {
            if b == b'\r' {
                At::TrailerLf
            } else {
                At::Trailer
            }
        }
        At::TrailerLf if b == b'\n' => At::EndCr,
        At::EndLf if b == b'\n' => At::Head,
        _ => At::Lost,
    }
}

/// A `Content-Length` as hyper reads it: digits between optional blanks; several lines must
/// agree.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Length {
    Valid(u64),
    Invalid,
}

/// The header names of one request head as its bytes arrive, and the two values that frame
/// its body.
#[derive(Default)]
struct Head {
    /// The current line's header name, lower-cased (long enough for the names it looks for).
    name: [u8; 24],
    len: usize,
    colon: bool,
    any: bool,
    past_request_line: bool,
    /// The current line is a `Content-Length` / `Transfer-Encoding` line, its value so far.
    value: Value,
    content_length: Option<Length>,
    /// `Some(whether the last coding of the last line is chunked)`.
    transfer_encoding: Option<bool>,
    upgrade: bool,
    done: bool,
}

#[derive(Default, Clone, Copy)]
enum Value {
    #[default]
    Other,
    Length(Digits),
    /// The last coding so far, lower-cased without blanks (`None` when longer than `chunked`).
    Coding([u8; 7], Option<usize>),
}

/// A `Content-Length` value so far: blanks, digits, blanks.
#[derive(Clone, Copy)]
enum Digits {
    None,
    Some(u64),
    /// Blanks after the digits: no more digits may come.
    Ended(u64),
    Bad,
}

impl Digits {
    fn push(self, b: u8) -> Digits {
        match (self, b) {
            (Digits::None, b' ' | b'\t') => Digits::None,
            (Digits::Some(n) | Digits::Ended(n), b' ' | b'\t') => Digits::Ended(n),
            (Digits::None | Digits::Some(_), b'0'..=b'9') => {
                let n = if let Digits::Some(n) = self { n } else { 0 };
                n.checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(b - b'0')))
                    .map_or(Digits::Bad, Digits::Some)
            }
            _ => Digits::Bad,
        }
    }

    fn length(self) -> Length {
        match self {
            Digits::Some(n) | Digits::Ended(n) => Length::Valid(n),
            Digits::None | Digits::Bad => Length::Invalid,
        }
    }
}

impl Head {
    /// Feeds bytes of the head; returns how many it used (all of them, or up to and with the
    /// empty line that ends the head, after which `done` is set).
    fn feed(&mut self, bytes: &[u8]) -> usize {
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            if self.any && b != b'\n' && self.uninteresting_rest() {
                // The rest of this line cannot matter (a value of another header, or the
                // request line past its method): on to its end at once.
                match memchr::memchr(b'\n', bytes.get(i..).unwrap_or_default()) {
                    Some(at) => i += at,
                    None => return bytes.len(),
                }
                continue;
            }
            i += 1;
            match b {
                b'\n' => {
                    if !self.any {
                        // An empty line: the end of the head (or a blank line before the
                        // request line, which HTTP lets a server skip).
                        if self.past_request_line {
                            self.done = true;
                            return i;
                        }
                    } else if !self.past_request_line {
                        self.past_request_line = true;
                        self.upgrade |= self.name.starts_with(b"connect ");
                    } else {
                        self.end_of_line();
                    }
                    self.len = 0;
                    self.colon = false;
                    self.any = false;
                    self.value = Value::Other;
                }
                b'\r' => {}
                b':' if !self.colon && self.past_request_line => {
                    self.any = true;
                    self.colon = true;
                    self.value = match self.name.get(..self.len) {
                        Some(b"content-length") => Value::Length(Digits::None),
                        Some(b"transfer-encoding") => Value::Coding([0; 7], Some(0)),
                        _ => Value::Other,
                    };
                }
                _ => {
                    self.any = true;
                    if self.colon {
                        self.value_byte(b);
                    } else {
                        match self.name.get_mut(self.len) {
                            Some(slot) => {
                                *slot = b.to_ascii_lowercase();
                                self.len += 1;
                            }
                            // Longer than any name looked for: cannot match.
                            None => self.len = usize::MAX,
                        }
                    }
                }
            }
        }
        bytes.len()
    }

    /// Whether the rest of the current line can change nothing.
    fn uninteresting_rest(&self) -> bool {
        if self.past_request_line {
            self.colon && matches!(self.value, Value::Other)
        } else {
            self.len == usize::MAX
        }
    }

    fn value_byte(&mut self, b: u8) {
        self.value = match self.value {
            Value::Other => Value::Other,
            Value::Length(digits) => Value::Length(digits.push(b)),
            Value::Coding(mut last, len) => match b {
                b' ' | b'\t' => Value::Coding(last, len),
                b',' => Value::Coding([0; 7], Some(0)),
                _ => match len.and_then(|l| last.get_mut(l).map(|slot| (l, slot))) {
                    Some((l, slot)) => {
                        *slot = b.to_ascii_lowercase();
                        Value::Coding(last, Some(l + 1))
                    }
                    None => Value::Coding(last, None),
                },
            },
        };
    }

    fn end_of_line(&mut self) {
        if !self.colon {
            return;
        }
        match self.value {
            Value::Length(digits) => {
                let this = digits.length();
                self.content_length = Some(match self.content_length {
                    None => this,
                    Some(prev) if prev == this => this,
                    Some(_) => Length::Invalid,
                });
            }
            Value::Coding(last, len) => {
                self.transfer_encoding = Some(len == Some(7) && &last == b"chunked");
            }
            Value::Other => {
                if self.name.get(..self.len) == Some(b"upgrade") {
                    self.upgrade = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdicts(stream: &[u8]) -> (Vec<bool>, At) {
        let mut s = Scan::default();
        s.feed(stream);
        (std::iter::from_fn(|| s.take()).collect(), s.at)
    }

    /// The verdicts and the end state when `stream` comes in two reads, split at `split`.
    fn in_two_reads(stream: &[u8], split: usize) -> (Vec<bool>, At) {
        let mut s = Scan::default();
        let (a, b) = stream.split_at(split.min(stream.len()));
        s.feed(a);
        s.feed(b);
        (std::iter::from_fn(|| s.take()).collect(), s.at)
    }

    /// Every split of `stream` into two reads gives what one read gives.
    fn same_at_every_split(stream: &[u8]) -> Vec<bool> {
        let whole = verdicts(stream);
        for split in 0..stream.len() {
            assert_eq!(in_two_reads(stream, split), whole, "split at {split}");
        }
        whole.0
    }

    const BOTH: &[u8] = b"POST /hooks/x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";

    #[test]
    fn both_lengths_in_one_head_across_reads() {
        assert_eq!(same_at_every_split(BOTH), [true]);
        let te_first =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\ncontent-length: 3\r\n\r\n0\r\n\r\n";
        assert_eq!(same_at_every_split(te_first), [true]);
        let (v, _) = verdicts(
            b"\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nX-Transfer-Encoding: y\r\n\r\nz",
        );
        assert_eq!(v, [false]);
        let long = format!(
            "POST / HTTP/1.1\r\n{}: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "c".repeat(5000)
        );
        assert_eq!(verdicts(long.as_bytes()).0, [false]);
    }

    #[test]
    fn follows_kept_alive_and_pipelined_requests() {
        let mut stream = Vec::new();
        // A Content-Length body that looks like a head with both: it is body, not a head.
        let fake = b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        stream.extend_from_slice(
            format!("POST /a HTTP/1.1\r\nContent-Length: {}\r\n\r\n", fake.len()).as_bytes(),
        );
        stream.extend_from_slice(fake);
        // No body.
        stream.extend_from_slice(b"GET /b HTTP/1.1\r\nHost: a\r\n\r\n");
        // Chunked, with extensions, blanks, a chunk that looks like a head, and trailers.
        stream.extend_from_slice(b"POST /c HTTP/1.1\r\nTransfer-Encoding: gzip , Chunked \r\n\r\n");
        stream.extend_from_slice(format!("{:X} ;ext=1\r\n", fake.len()).as_bytes());
        stream.extend_from_slice(fake);
        stream.extend_from_slice(b"\r\n0\r\nX-Trailer: 1\r\nContent-Length: 9\r\n\r\n");
        // Then the pair, pipelined behind them all; then one more ordinary request.
        stream.extend_from_slice(BOTH);
        stream.extend_from_slice(b"POST /d HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}");
        assert_eq!(
            same_at_every_split(&stream),
            [false, false, false, true, false]
        );
        assert_eq!(verdicts(&stream).1, At::Head);
    }

    #[test]
    fn lengths_as_hyper_reads_them() {
        let req = |cl: &str| format!("POST / HTTP/1.1\r\n{cl}\r\n\r\n");
        for (lines, at) in [
            ("Content-Length:  0012 ", At::Body(12)),
            ("Content-Length: 0", At::Head),
            ("Content-Length: 3\r\nContent-Length: 3", At::Body(3)),
            ("Content-Length: 3\r\nContent-Length: 4", At::Lost),
            ("Content-Length: 3 4", At::Lost),
            ("Content-Length: -1", At::Lost),
            ("Content-Length:", At::Lost),
            ("Content-Length: 99999999999999999999999", At::Lost),
            ("Content-Length: 1,1", At::Lost),
            ("Transfer-Encoding: gzip", At::Lost),
            ("Transfer-Encoding: chunked, gzip", At::Lost),
            (
                "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip",
                At::Lost,
            ),
            (
                "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked",
                At::ChunkStart,
            ),
            ("Transfer-Encoding: chunkedchunked", At::Lost),
            ("Upgrade: websocket", At::Lost),
        ] {
            let (v, got) = verdicts(req(lines).as_bytes());
            assert_eq!(got, at, "{lines:?}");
            assert_eq!(v, [false], "{lines:?}");
        }
        assert_eq!(verdicts(b"CONNECT a:1 HTTP/1.1\r\n\r\n").1, At::Lost);
    }

    #[test]
    fn chunk_framing_as_hyper_reads_it() {
        let req =
            |body: &str| format!("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{body}");
        for (body, at) in [
            ("3\r\nabc\r\n0\r\n\r\n", At::Head),
            ("3 \t;a=b\r\nabc\r\n0\r\n\r\n", At::Head),
            ("0\r\nA: b\r\nC: d\r\n\r\n", At::Head),
            ("g\r\n", At::Lost),
            ("\r\n", At::Lost),
            ("3 4\r\n", At::Lost),
            ("3;a\nb\r\n", At::Lost),
            ("3\n", At::Lost),
            ("3\r\nabcX", At::Lost),
            ("3\r\nabc\rX", At::Lost),
            ("0\r\n\rX", At::Lost),
            ("11111111111111111\r\n", At::Lost),
            ("3\r\nab", At::ChunkData(1)),
        ] {
            assert_eq!(verdicts(req(body).as_bytes()).1, at, "{body:?}");
        }
    }

    /// A request framed one of the ways a client may, with or without the pair.
    fn request(body: &[u8], chunk: usize, framing: u8) -> (Vec<u8>, bool) {
        let mut out = b"POST /hooks/x HTTP/1.1\r\nHost: a\r\n".to_vec();
        let cl = format!("Content-Length: {}\r\n", body.len());
        let te = "Transfer-Encoding: chunked\r\n";
        let (head, chunked, both) = match framing % 4 {
            0 => (cl, false, false),
            1 => (te.to_string(), true, false),
            2 => (format!("{cl}{te}"), true, true),
            _ => (format!("{te}{cl}"), true, true),
        };
        out.extend_from_slice(head.as_bytes());
        out.extend_from_slice(b"\r\n");
        if chunked {
            for c in body.chunks(chunk.max(1)) {
                out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                out.extend_from_slice(c);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
        } else {
            out.extend_from_slice(body);
        }
        (out, both)
    }

    proptest::proptest! {
        /// Any bytes, in any two reads: no panic, and the same verdicts as in one read.
        #[test]
        fn any_stream_in_any_reads(stream in proptest::collection::vec(proptest::num::u8::ANY, 0..600), split in 0usize..600) {
            let (whole, at) = verdicts(&stream);
            proptest::prop_assert_eq!(in_two_reads(&stream, split), (whole, at));
        }

        /// Requests one after the other, their bodies any bytes (heads and chunk lines among
        /// them): one verdict per request, the pair found wherever it stands.
        #[test]
        fn pipelined_requests(reqs in proptest::collection::vec(
            (proptest::collection::vec(proptest::num::u8::ANY, 0..200), 1usize..64, 0u8..4), 1..6),
            split in 0usize..2000)
        {
            let mut stream = Vec::new();
            let mut want = Vec::new();
            for (body, chunk, framing) in &reqs {
                let (r, both) = request(body, *chunk, *framing);
                stream.extend_from_slice(&r);
                want.push(both);
            }
            proptest::prop_assert_eq!(in_two_reads(&stream, split), (want, At::Head));
        }
    }

    #[test]
    fn lost_stream_gives_no_more_verdicts() {
        let mut stream = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec();
        stream.extend_from_slice(BOTH);
        let mut s = Scan::default();
        s.feed(&stream);
        assert_eq!(s.take(), Some(false));
        assert_eq!(s.take(), None);
    }
}
