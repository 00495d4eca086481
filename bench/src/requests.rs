//! Requests serialized to bytes before the clock starts, built in parallel on every core.
//!
//! Each request is its HTTP/1.1 head and body in one arena; a large padded body is kept as the
//! request's own head + prefix, one shared copy of the pad, and its own suffix, so a million
//! distinct 1 MiB webhooks need no terabyte. Sending is then a vectored write of at most three
//! slices: no formatting, no allocation on the clock.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::samples::{Provider, filler};

/// Requests per block: the unit of work of the generating threads.
const BLOCK: usize = 2048;

/// Pads shorter than this stay inline: three slices per write are not worth it.
const SHARED_PAD_MIN: usize = 4096;

struct Span {
    start: u32,
    /// Bytes before the shared pad (the whole request when it has no pad).
    head: u32,
    /// Bytes after the shared pad; 0 and `padded == false` for an inline request.
    tail: u32,
    padded: bool,
}

/// A block and the sum of its body sizes, or why it could not be built.
type Built = Result<(Block, u64), String>;

struct Block {
    arena: Vec<u8>,
    spans: Vec<Span>,
}

pub struct Requests {
    blocks: Vec<Block>,
    pad: Vec<u8>,
    /// Distinct requests held.
    pub distinct: usize,
    /// Mean body size in bytes.
    pub mean_body: f64,
}

/// Where the requests go. The Host header is always `localhost` (payhook ignores it), so a
/// cached set serves any port.
pub struct Target {
    pub path: String,
}

/// What a cache file was built from; a file is reused only when all of it matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    /// Provider, path, key fingerprint, body size: anything that changes the bytes.
    pub identity: String,
    pub distinct: usize,
}

const MAGIC: &[u8; 8] = b"PHBENCH1";

impl Requests {
    /// Writes the requests to `path` (bench cache: Ping++ signatures take minutes to redo).
    pub fn save(&self, path: &std::path::Path, identity: &str) -> std::io::Result<()> {
        use std::io::Write;
        let tmp = path.with_extension("tmp");
        let mut w = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        let u64le =
            |w: &mut std::io::BufWriter<std::fs::File>, n: u64| w.write_all(&n.to_le_bytes());
        w.write_all(MAGIC)?;
        u64le(&mut w, identity.len() as u64)?;
        w.write_all(identity.as_bytes())?;
        u64le(&mut w, self.distinct as u64)?;
        u64le(&mut w, self.mean_body.to_bits())?;
        u64le(&mut w, self.pad.len() as u64)?;
        w.write_all(&self.pad)?;
        u64le(&mut w, self.blocks.len() as u64)?;
        for b in &self.blocks {
            u64le(&mut w, b.arena.len() as u64)?;
            w.write_all(&b.arena)?;
            u64le(&mut w, b.spans.len() as u64)?;
            for s in &b.spans {
                for n in [s.start, s.head, s.tail, u32::from(s.padded)] {
                    w.write_all(&n.to_le_bytes())?;
                }
            }
        }
        w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(tmp, path)
    }

    /// Reads requests saved by [`Requests::save`] when they were built for `key`.
    pub fn load(path: &std::path::Path, key: &CacheKey) -> std::io::Result<Option<Requests>> {
        use std::io::Read;
        let mut r = std::io::BufReader::new(std::fs::File::open(path)?);
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Ok(None);
        }
        let u64le = |r: &mut std::io::BufReader<std::fs::File>| -> std::io::Result<u64> {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            Ok(u64::from_le_bytes(b))
        };
        let bytes =
            |r: &mut std::io::BufReader<std::fs::File>, n: u64| -> std::io::Result<Vec<u8>> {
                let mut v = Vec::new();
                r.take(n).read_to_end(&mut v)?;
                if v.len() as u64 != n {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                Ok(v)
            };
        let n = u64le(&mut r)?;
        let identity = bytes(&mut r, n)?;
        let distinct = u64le(&mut r)? as usize;
        if identity != key.identity.as_bytes() || distinct != key.distinct {
            return Ok(None);
        }
        let mean_body = f64::from_bits(u64le(&mut r)?);
        let n = u64le(&mut r)?;
        let pad = bytes(&mut r, n)?;
        let nblocks = u64le(&mut r)?;
        let mut blocks = Vec::new();
        for _ in 0..nblocks {
            let n = u64le(&mut r)?;
            let arena = bytes(&mut r, n)?;
            let nspans = u64le(&mut r)?;
            let mut spans = Vec::new();
            for _ in 0..nspans {
                let mut f = [0u32; 4];
                for x in &mut f {
                    let mut b = [0u8; 4];
                    r.read_exact(&mut b)?;
                    *x = u32::from_le_bytes(b);
                }
                let span = Span {
                    start: f[0],
                    head: f[1],
                    tail: f[2],
                    padded: f[3] != 0,
                };
                let end = span.start as usize + span.head as usize + span.tail as usize;
                if end > arena.len() {
                    return Err(std::io::ErrorKind::InvalidData.into());
                }
                spans.push(span);
            }
            blocks.push(Block { arena, spans });
        }
        let held: usize = blocks.iter().map(|b| b.spans.len()).sum();
        let full_blocks = blocks.iter().rev().skip(1).all(|b| b.spans.len() == BLOCK);
        if held != distinct || !full_blocks {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        Ok(Some(Requests {
            blocks,
            pad,
            distinct,
            mean_body,
        }))
    }

    /// Builds `count` distinct signed requests of run `tag` with bodies of about `body_size`
    /// bytes (0: the provider's natural size), on `threads` threads.
    pub fn generate(
        provider: &Provider,
        target: &Target,
        count: usize,
        tag: &str,
        body_size: usize,
        threads: usize,
    ) -> Result<Requests, String> {
        if count == 0 {
            return Err("nothing to generate (count 0)".into());
        }
        let base = provider.sample(tag, 0, "").body.len();
        let pad_len = body_size.saturating_sub(base);
        let pad = filler(pad_len);
        let shared = pad_len >= SHARED_PAD_MIN;
        let nblocks = count.div_ceil(BLOCK);
        let next = AtomicUsize::new(0);
        let mut done: Vec<(usize, Built)> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..threads.max(1))
                .map(|_| {
                    s.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let b = next.fetch_add(1, Ordering::Relaxed);
                            if b >= nblocks {
                                break;
                            }
                            let range = b * BLOCK..((b + 1) * BLOCK).min(count);
                            out.push((b, build_block(provider, target, tag, &pad, shared, range)));
                        }
                        out
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap_or_default())
                .collect()
        });
        if done.len() != nblocks {
            return Err("a generating thread failed".into());
        }
        done.sort_by_key(|(b, _)| *b);
        let mut blocks = Vec::with_capacity(nblocks);
        let mut body_total = 0u64;
        for (_, block) in done {
            let (block, bytes) = block?;
            body_total += bytes;
            blocks.push(block);
        }
        Ok(Requests {
            blocks,
            pad: if shared { pad.into_bytes() } else { Vec::new() },
            distinct: count,
            mean_body: body_total as f64 / count as f64,
        })
    }

    /// The slices of request `i` (modulo the distinct ones): head, shared pad, tail.
    pub fn get(&self, i: usize) -> [&[u8]; 3] {
        let i = i % self.distinct;
        let block = &self.blocks[i / BLOCK];
        let span = &block.spans[i % BLOCK];
        let start = span.start as usize;
        let head_end = start + span.head as usize;
        let head = &block.arena[start..head_end];
        if !span.padded {
            return [head, &[], &[]];
        }
        let tail = &block.arena[head_end..head_end + span.tail as usize];
        [head, &self.pad, tail]
    }
}

/// Returns the block and the sum of its body sizes.
fn build_block(
    provider: &Provider,
    target: &Target,
    tag: &str,
    pad: &str,
    shared: bool,
    range: std::ops::Range<usize>,
) -> Built {
    let mut arena = Vec::new();
    let mut spans = Vec::with_capacity(range.len());
    let mut bodies = 0u64;
    for seq in range {
        let s = provider.sample(tag, seq as u64, pad);
        bodies += s.body.len() as u64;
        let start = arena.len();
        arena.extend_from_slice(b"POST ");
        arena.extend_from_slice(target.path.as_bytes());
        arena.extend_from_slice(b" HTTP/1.1\r\nHost: localhost\r\nContent-Type: ");
        arena.extend_from_slice(s.content_type.as_bytes());
        for (k, v) in &s.headers {
            arena.extend_from_slice(b"\r\n");
            arena.extend_from_slice(k.as_bytes());
            arena.extend_from_slice(b": ");
            arena.extend_from_slice(v.as_bytes());
        }
        arena.extend_from_slice(format!("\r\nContent-Length: {}\r\n\r\n", s.body.len()).as_bytes());
        let body = s.body.as_bytes();
        let at = if shared {
            memchr::memmem::find(body, pad.as_bytes())
        } else {
            None
        };
        let span = match at {
            Some(at) => {
                arena.extend_from_slice(&body[..at]);
                let head = arena.len() - start;
                arena.extend_from_slice(&body[at + pad.len()..]);
                Span {
                    start: offset(start)?,
                    head: offset(head)?,
                    tail: offset(arena.len() - start - head)?,
                    padded: true,
                }
            }
            None => {
                arena.extend_from_slice(body);
                Span {
                    start: offset(start)?,
                    head: offset(arena.len() - start)?,
                    tail: 0,
                    padded: false,
                }
            }
        };
        spans.push(span);
    }
    Ok((Block { arena, spans }, bodies))
}

fn offset(n: usize) -> Result<u32, String> {
    u32::try_from(n).map_err(|_| "a block of requests is over 4 GiB: use smaller bodies".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use payhook::providers::pinddpay::SignScheme;

    fn provider() -> Provider {
        Provider::Pinddpay {
            secret: "s".into(),
            scheme: SignScheme::BodySecret,
            app_id: "app".into(),
        }
    }

    fn whole(r: &Requests, i: usize) -> Vec<u8> {
        r.get(i).concat()
    }

    #[test]
    fn a_padded_request_is_the_signed_sample() {
        let target = Target {
            path: "/hooks/x".into(),
        };
        let r = Requests::generate(&provider(), &target, 2100, "t", 70_000, 2).expect("gen");
        assert_eq!(r.distinct, 2100);
        let req = whole(&r, 2077);
        let text = String::from_utf8(req).expect("utf8");
        let (head, body) = text.split_once("\r\n\r\n").expect("head");
        let expected = provider().sample("t", 2077, &filler(70_000 - 600)).body;
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(body.len() > 65_000);
        assert!(body.starts_with("{\"eventId\":\"evtt0000002077\""));
        // Same sample, maybe a few bytes of timestamp apart: compare lengths only.
        assert!(expected.len().abs_diff(body.len()) < 1000);
        assert_eq!(whole(&r, 1), whole(&r, 2101));
    }

    #[test]
    fn a_saved_set_loads_back_only_for_its_key() {
        let target = Target { path: "/p".into() };
        let r = Requests::generate(&provider(), &target, 2050, "t", 5000, 2).expect("gen");
        let dir = std::env::temp_dir().join(format!("bench-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("set.bin");
        r.save(&file, "pinddpay /p 5000").expect("save");
        let key = CacheKey {
            identity: "pinddpay /p 5000".into(),
            distinct: 2050,
        };
        let back = Requests::load(&file, &key)
            .expect("read")
            .expect("same key");
        for i in [0, 2047, 2048, 2049] {
            assert_eq!(whole(&back, i), whole(&r, i));
        }
        let other = CacheKey {
            identity: "pinddpay /p 6000".into(),
            distinct: 2050,
        };
        assert!(Requests::load(&file, &other).expect("read").is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn small_requests_are_inline() {
        let target = Target { path: "/p".into() };
        let r = Requests::generate(&provider(), &target, 3, "t", 0, 1).expect("gen");
        let [_, pad, tail] = r.get(2);
        assert!(pad.is_empty() && tail.is_empty());
    }
}
