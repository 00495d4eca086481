//! The bodies of payhook's fuzz targets: one public function per target in `fuzz_targets/`.
//!
//! Each target gets past the signature, so the fuzzer exercises parsing and normalization and not
//! just the refusal of a wrong digest: it signs the fuzzed body with a fixed test secret the way
//! the provider signs it (Ping++ with a 1024-bit RSA key, small enough to sign every input), then
//! checks invariants, not just "no panic":
//!
//! - a correctly signed body is accepted or refused as malformed (400), never as forged (401);
//! - an accepted webhook builds its event: the CloudEvent is valid JSON carrying the dedup key,
//!   the id is the UUID of SPEC §5, the routing key and `type` property fit an AMQP short string;
//! - a byte change the signature does not cover (whitespace, an added null or empty field, an
//!   equivalent encoding, padding around a signature) is refused or keeps the dedup key and the
//!   content hash (SPEC §6.3), and any other change is refused;
//! - every error message is short (SPEC §2: at most 64 bytes of client text are quoted);
//! - the same input always gives the same result.
//!
//! This crate's source is also compiled into the integration tests (`tests/it/fuzz_corpus.rs`
//! includes this file by path) so that every `cargo test` replays the committed corpus through the
//! same code; it therefore uses only crates that payhook itself depends on, and its modules refer
//! to each other with `super::`, never `crate::`.
//!
//! Modules: `verifiers` (the only code that knows the providers' constructors), `check` (the
//! invariants), then one module per provider.

mod check;
mod pinddpay;
mod pingpong;
mod pingpp;
mod verifiers;
mod wechat;

pub use self::pinddpay::pinddpay;
pub use self::pingpong::{pingpong_form, pingpong_json};
pub use self::pingpp::{pingpp, pingpp_signature};
pub use self::wechat::{wechat_alarm, xml};

/// Longest error message a target accepts. SPEC §2 lets a message quote at most 64 bytes of
/// client text, escaped (`Quoted`): a control byte becomes up to 6 characters (`\u{1f}`), so one
/// quote is at most about 390 bytes; two quotes and the fixed words stay under 1 KiB, while a key
/// or element name that is not clipped (the fuzzer makes them kilobytes long) goes over.
pub const MAX_MESSAGE: usize = 1024;

/// The test secrets. The WeChat app id and key are WeChat's own documented examples.
pub const PINDDPAY_SECRET: &str = "fuzz-pinddpay-secret";
pub const PINGPONG_SALT: &str = "F78BC96A55548B2319EE68E0";
pub const WECHAT_APP: &str = "wxd930ea5d5a258f4f";
pub const WECHAT_KEY: &str = "L8LrMqqeGRxST5reouB0K66CaYAWpqhAVsq7ggKkxHCOastWksvuX1uvmvQclxaHoYd3ElNBrNO2DHnnzgfVG9Qs473M3DTOZug5er46FhuGofumV8H2FVR9qkjSlC5K";
