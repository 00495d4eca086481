//! Durations as the config writes them: `"10s"`, `"30d"`, `"1h 30m"`, and `"off"` where a check
//! can be turned off. Whether zero is allowed is the caller's rule (SPEC §3 refuses it for
//! `request_timeout`, `confirm_timeout` and `retention`).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration written as `"10s"`, `"30d"`, `"1h 30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s)
            .map(Dur)
            .map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A duration, or `"off"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurOrOff {
    Off,
    On(Duration),
}

impl<'de> Deserialize<'de> for DurOrOff {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim().eq_ignore_ascii_case("off") {
            return Ok(DurOrOff::Off);
        }
        humantime::parse_duration(&s)
            .map(DurOrOff::On)
            .map_err(|e| {
                serde::de::Error::custom(format!("invalid duration {s:?} (or \"off\"): {e}"))
            })
    }
}

impl fmt::Display for DurOrOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DurOrOff::Off => f.write_str("off"),
            DurOrOff::On(d) => write!(f, "{}", humantime::format_duration(*d)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct T {
        d: Dur,
        o: DurOrOff,
    }

    #[test]
    fn parses() {
        let t: T = toml::from_str("d = \"1h 30m\"\no = \"off\"").unwrap();
        assert_eq!(t.d.0, Duration::from_secs(5400));
        assert_eq!(t.o, DurOrOff::Off);
        let t: T = toml::from_str("d = \"0s\"\no = \"29d\"").unwrap();
        assert_eq!(t.d.0, Duration::ZERO);
        assert_eq!(t.o, DurOrOff::On(Duration::from_secs(29 * 86400)));
        assert!(toml::from_str::<T>("d = \"soon\"\no = \"off\"").is_err());
    }
}
