//! Secrets as the config writes them, and as the daemon holds them once read.
//!
//! A secret is a plain string or exactly one of `{ env = "NAME" }`, `{ file = "PATH" }`,
//! `{ credential = "NAME" }` (SPEC §3). Anything else in a table is an error, so a typo such as
//! `{ env = "X", file = "Y" }` never silently picks one of the two. Shared secrets may also be a
//! list ([`SecretList`]): a webhook verifies if any entry matches, so a secret rotates with an
//! overlap.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A secret as written in the config. Resolved into a [`SecretString`] by [`Secret::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    Plain(String),
    Env(String),
    File(PathBuf),
    Credential(String),
}

/// A resolved secret. `Debug` never prints it, so a stray `{:?}` cannot leak it into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> Self {
        SecretString(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(***)")
    }
}

impl Secret {
    /// Reads the secret. File and credential contents lose one trailing newline, which editors
    /// and `echo` add but no provider key contains.
    pub fn resolve(&self, base: &Path) -> Result<SecretString, String> {
        let trim = |s: String| {
            s.strip_suffix('\n')
                .map(|s| s.strip_suffix('\r').unwrap_or(s).to_string())
                .unwrap_or(s)
        };
        match self {
            Secret::Plain(s) => Ok(SecretString(s.clone())),
            Secret::Env(env) => std::env::var(env)
                .map(SecretString)
                .map_err(|_| format!("environment variable {env} is not set")),
            Secret::File(file) => {
                let path = base.join(file);
                std::fs::read_to_string(&path)
                    .map(|s| SecretString(trim(s)))
                    .map_err(|e| format!("cannot read secret file {}: {e}", path.display()))
            }
            Secret::Credential(credential) => {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                    format!(
                        "credential {credential:?} requested but $CREDENTIALS_DIRECTORY is not set \
                         (use LoadCredential= in the unit)"
                    )
                })?;
                let path = Path::new(&dir).join(credential);
                std::fs::read_to_string(&path)
                    .map(|s| SecretString(trim(s)))
                    .map_err(|e| format!("cannot read credential {}: {e}", path.display()))
            }
        }
    }
}

struct SecretVisitor;

impl<'de> Visitor<'de> for SecretVisitor {
    type Value = Secret;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(
            "a string or exactly one of { env = \"NAME\" }, { file = \"PATH\" }, { credential = \"NAME\" }",
        )
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
        Ok(Secret::Plain(v.to_string()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Secret, A::Error> {
        let mut found: Option<Secret> = None;
        while let Some(key) = map.next_key::<String>()? {
            let value: String = map.next_value()?;
            let secret = match key.as_str() {
                "env" => Secret::Env(value),
                "file" => Secret::File(PathBuf::from(value)),
                "credential" => Secret::Credential(value),
                other => {
                    return Err(de::Error::unknown_field(
                        other,
                        &["env", "file", "credential"],
                    ));
                }
            };
            if found.is_some() {
                return Err(de::Error::custom(
                    "a secret table takes exactly one of env, file or credential",
                ));
            }
            found = Some(secret);
        }
        found
            .ok_or_else(|| de::Error::custom("a secret table needs one of env, file or credential"))
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretVisitor)
    }
}

/// One secret or a list of them (`salt = ["new", "old"]`), in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretList(pub Vec<Secret>);

impl SecretList {
    /// Resolves every entry; an empty list or an empty value is an error.
    pub fn resolve(&self, base: &Path) -> Result<Vec<SecretString>, String> {
        if self.0.is_empty() {
            return Err("the list is empty".into());
        }
        let mut out = Vec::with_capacity(self.0.len());
        for (i, s) in self.0.iter().enumerate() {
            let v = s.resolve(base)?;
            if v.expose().is_empty() {
                return Err(if self.0.len() == 1 {
                    "it is empty".to_string()
                } else {
                    format!("entry {} is empty", i + 1)
                });
            }
            out.push(v);
        }
        Ok(out)
    }
}

impl From<Secret> for SecretList {
    fn from(s: Secret) -> Self {
        SecretList(vec![s])
    }
}

impl<'de> Deserialize<'de> for SecretList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = SecretList;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a secret or a list of secrets")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<SecretList, E> {
                Ok(SecretList(vec![Secret::Plain(v.to_string())]))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<SecretList, A::Error> {
                SecretVisitor.visit_map(map).map(|s| SecretList(vec![s]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<SecretList, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<Secret>()? {
                    out.push(s);
                }
                Ok(SecretList(out))
            }
        }
        d.deserialize_any(ListVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct One {
        s: Secret,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Many {
        s: SecretList,
    }

    #[test]
    fn forms() {
        let one = |t: &str| toml::from_str::<One>(t).map(|o| o.s);
        assert_eq!(one("s = \"x\"").unwrap(), Secret::Plain("x".into()));
        assert_eq!(one("s = { env = \"E\" }").unwrap(), Secret::Env("E".into()));
        assert_eq!(
            one("s = { file = \"f\" }").unwrap(),
            Secret::File("f".into())
        );
        assert_eq!(
            one("s = { credential = \"c\" }").unwrap(),
            Secret::Credential("c".into())
        );
    }

    #[test]
    fn strict_tables() {
        let one = |t: &str| toml::from_str::<One>(t).map(|o| o.s);
        let e = one("s = { env = \"X\", file = \"Y\" }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("exactly one"), "{e}");
        let e = one("s = { evn = \"X\" }").unwrap_err().to_string();
        assert!(e.contains("evn"), "{e}");
        assert!(e.contains("line 1"), "{e}");
        assert!(one("s = {}").is_err());
        assert!(one("s = 5").is_err());
        assert!(one("s = { env = 5 }").is_err());
    }

    #[test]
    fn lists() {
        let many = |t: &str| toml::from_str::<Many>(t).map(|o| o.s);
        assert_eq!(
            many("s = \"a\"").unwrap().0,
            vec![Secret::Plain("a".into())]
        );
        assert_eq!(
            many("s = [\"a\", { env = \"B\" }]").unwrap().0,
            vec![Secret::Plain("a".into()), Secret::Env("B".into())]
        );
        assert!(many("s = [{ env = \"B\", file = \"c\" }]").is_err());
        let dir = tempfile::tempdir().unwrap();
        assert!(SecretList(vec![]).resolve(dir.path()).is_err());
        assert!(
            SecretList(vec![
                Secret::Plain("a".into()),
                Secret::Plain(String::new())
            ])
            .resolve(dir.path())
            .is_err()
        );
    }

    #[test]
    fn resolve_forms_and_debug() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "from-file\n").unwrap();
        let base = dir.path();
        assert_eq!(
            Secret::Plain("x".into()).resolve(base).unwrap().expose(),
            "x"
        );
        assert_eq!(
            Secret::File("s".into()).resolve(base).unwrap().expose(),
            "from-file"
        );
        assert!(
            Secret::Env("PAYHOOK_TEST_SURELY_UNSET".into())
                .resolve(base)
                .is_err()
        );
        assert_eq!(
            format!("{:?}", SecretString::new("hunter2")),
            "SecretString(***)"
        );
    }
}
