//! A minimal HTTP/1.1 client connection over raw tokio TCP: it writes pre-serialized requests
//! and reads back just the status line and the framing headers (Content-Length, chunked,
//! Connection: close). One reusable buffer per connection; nothing is allocated per request.

use std::io::{self, IoSlice};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BUF: usize = 64 * 1024;
/// A response head larger than this is not one we expect: refuse rather than grow.
const MAX_HEAD: usize = BUF;

pub struct Conn {
    stream: TcpStream,
    buf: Box<[u8]>,
    /// Unread bytes are `buf[pos..filled]`.
    pos: usize,
    filled: usize,
}

/// What a response said, as far as the load generator cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The server will close the connection: reconnect before the next request.
    pub close: bool,
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.to_string())
}

impl Conn {
    pub async fn connect(addr: &str) -> io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn {
            stream,
            buf: vec![0u8; BUF].into_boxed_slice(),
            pos: 0,
            filled: 0,
        })
    }

    /// Writes the request made of these slices in as few system calls as the kernel allows.
    pub async fn send(&mut self, parts: [&[u8]; 3]) -> io::Result<()> {
        let mut slices = [
            IoSlice::new(parts[0]),
            IoSlice::new(parts[1]),
            IoSlice::new(parts[2]),
        ];
        let mut rest: &mut [IoSlice<'_>] = &mut slices;
        // Skip empty slices up front so an inline request is a plain write.
        IoSlice::advance_slices(&mut rest, 0);
        while !rest.is_empty() {
            let n = self.stream.write_vectored(rest).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            IoSlice::advance_slices(&mut rest, n);
        }
        Ok(())
    }

    /// Reads more bytes into the buffer, compacting it first when it is full.
    async fn fill(&mut self) -> io::Result<()> {
        if self.filled == self.buf.len() {
            if self.pos == 0 {
                return Err(bad("response head too large"));
            }
            self.buf.copy_within(self.pos..self.filled, 0);
            self.filled -= self.pos;
            self.pos = 0;
        }
        let n = self.stream.read(&mut self.buf[self.filled..]).await?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.filled += n;
        Ok(())
    }

    /// Reads one response; its body is discarded, or appended to `body` when given.
    pub async fn read_response(&mut self, mut body: Option<&mut Vec<u8>>) -> io::Result<Response> {
        // The head.
        let head_len = loop {
            if let Some(i) = memchr::memmem::find(&self.buf[self.pos..self.filled], b"\r\n\r\n") {
                break i + 4;
            }
            if self.filled - self.pos >= MAX_HEAD {
                return Err(bad("response head too large"));
            }
            self.fill().await?;
        };
        let head = &self.buf[self.pos..self.pos + head_len];
        let (status, framing, close) = parse_head(head)?;
        self.pos += head_len;
        match framing {
            Framing::Length(n) => self.take(n, &mut body).await?,
            Framing::Chunked => loop {
                let line = self.line().await?;
                let hex = line.split(|&b| b == b';').next().unwrap_or(&[]);
                let hex = std::str::from_utf8(hex).map_err(|_| bad("chunk size"))?;
                let size = usize::from_str_radix(hex.trim(), 16).map_err(|_| bad("chunk size"))?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    while !self.line().await?.is_empty() {}
                    break;
                }
                self.take(size, &mut body).await?;
                if !self.line().await?.is_empty() {
                    return Err(bad("chunk not followed by CRLF"));
                }
            },
            Framing::UntilClose => loop {
                let avail = self.filled - self.pos;
                if let Some(b) = body.as_deref_mut() {
                    b.extend_from_slice(&self.buf[self.pos..self.filled]);
                }
                self.pos += avail;
                if self.pos == self.filled {
                    self.pos = 0;
                    self.filled = 0;
                }
                match self.fill().await {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                    Err(e) => return Err(e),
                }
            },
        }
        if self.pos == self.filled {
            self.pos = 0;
            self.filled = 0;
        }
        Ok(Response {
            status,
            close: close || framing == Framing::UntilClose,
        })
    }

    /// Consumes `n` body bytes.
    async fn take(&mut self, mut n: usize, body: &mut Option<&mut Vec<u8>>) -> io::Result<()> {
        loop {
            let here = (self.filled - self.pos).min(n);
            if let Some(b) = body.as_deref_mut() {
                b.extend_from_slice(&self.buf[self.pos..self.pos + here]);
            }
            self.pos += here;
            n -= here;
            if n == 0 {
                return Ok(());
            }
            self.pos = 0;
            self.filled = 0;
            self.fill().await?;
        }
    }

    /// One CRLF-terminated line (without the CRLF), as an owned copy: only chunked bodies use it.
    async fn line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = memchr::memmem::find(&self.buf[self.pos..self.filled], b"\r\n") {
                let line = self.buf[self.pos..self.pos + i].to_vec();
                self.pos += i + 2;
                return Ok(line);
            }
            self.fill().await?;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

fn parse_head(head: &[u8]) -> io::Result<(u16, Framing, bool)> {
    let mut lines = head.split(|&b| b == b'\n');
    let status_line = lines.next().ok_or_else(|| bad("empty response"))?;
    // "HTTP/1.1 200 OK"
    let code = status_line
        .get(9..12)
        .and_then(|c| std::str::from_utf8(c).ok())
        .and_then(|c| c.parse::<u16>().ok())
        .filter(|_| status_line.starts_with(b"HTTP/1."))
        .ok_or_else(|| bad("not an HTTP/1.x status line"))?;
    let mut framing = None;
    let mut close = status_line.starts_with(b"HTTP/1.0");
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = &line[..colon];
        let value = line[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            let n = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.parse::<usize>().ok())
                .ok_or_else(|| bad("bad Content-Length"))?;
            framing.get_or_insert(Framing::Length(n));
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            && value.to_ascii_lowercase().ends_with(b"chunked")
        {
            framing = Some(Framing::Chunked);
        } else if name.eq_ignore_ascii_case(b"connection") {
            close = value.eq_ignore_ascii_case(b"close");
        }
    }
    // 1xx, 204 and 304 carry no body.
    let framing = if (100..200).contains(&code) || code == 204 || code == 304 {
        Framing::Length(0)
    } else {
        framing.unwrap_or(Framing::UntilClose)
    };
    Ok((code, framing, close))
}

/// A one-off GET (for /metrics): a fresh connection, closed after the answer.
pub async fn get(addr: &str, path: &str) -> io::Result<(u16, String)> {
    let mut c = Conn::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    c.send([req.as_bytes(), &[], &[]]).await?;
    let mut body = Vec::new();
    let r = c.read_response(Some(&mut body)).await?;
    Ok((r.status, String::from_utf8_lossy(&body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let h = b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\ncontent-type: text/plain\r\n\r\n";
        assert_eq!(parse_head(h).expect("ok"), (200, Framing::Length(7), false));
        let h = b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_head(h).expect("ok"), (503, Framing::Chunked, true));
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }

    #[tokio::test]
    async fn reads_length_and_chunked_bodies() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nsuccess")
                .await
                .expect("write");
            let _ = s.read(&mut buf).await;
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
                .await
                .expect("write");
        });
        let mut c = Conn::connect(&addr).await.expect("connect");
        c.send([b"GET / HTTP/1.1\r\n\r\n", &[], &[]])
            .await
            .expect("send");
        let mut body = Vec::new();
        let r = c.read_response(Some(&mut body)).await.expect("read");
        assert_eq!((r.status, body.as_slice()), (200, &b"success"[..]));
        c.send([b"GET / HTTP/1.1\r\n\r\n", &[], &[]])
            .await
            .expect("send");
        body.clear();
        c.read_response(Some(&mut body)).await.expect("read");
        assert_eq!(body, b"abcde");
    }
}
