//! Hash tags: hashing only part of a key so related keys share a shard.

use std::fmt;

use crate::error::ConfigError;

/// A hash tag: two delimiter bytes. When a key contains the opening byte and, after it, the
/// closing byte, with something between them, only that part is hashed, so related keys
/// (`{user:1}:name`, `{user:1}:cart`) land on one shard. This is twemproxy's and Redis
/// Cluster's rule.
///
/// ```
/// let tag = shardis::HashTag::parse("{}").unwrap();
/// assert_eq!(tag.extract(b"{user:1}:cart"), b"user:1");
/// assert_eq!(tag.extract(b"plain"), b"plain");
/// assert_eq!(tag.extract(b"{}empty"), b"{}empty"); // empty tag: the whole key
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashTag {
    open: u8,
    close: u8,
}

impl HashTag {
    /// Parses a two-character tag such as `"{}"`. The error says what is wrong without
    /// quoting the text, which may be anything.
    pub fn parse(tag: &str) -> Result<HashTag, ConfigError> {
        match tag.as_bytes() {
            [open, close] if open.is_ascii() && close.is_ascii() => Ok(HashTag {
                open: *open,
                close: *close,
            }),
            _ => {
                let n = tag.chars().count();
                let got = if n == 2 {
                    "this one has a non-ASCII character".to_owned()
                } else {
                    format!("this one has {n}")
                };
                Err(ConfigError::InvalidValue {
                    field: "placement.hash_tag".into(),
                    reason: format!("must be exactly two ASCII characters, like \"{{}}\"; {got}"),
                })
            }
        }
    }

    /// The part of `key` to hash.
    pub fn extract<'k>(&self, key: &'k [u8]) -> &'k [u8] {
        let Some(start) = key.iter().position(|b| *b == self.open) else {
            return key;
        };
        let rest = &key[start + 1..];
        match rest.iter().position(|b| *b == self.close) {
            Some(end) if end > 0 => &rest[..end],
            _ => key,
        }
    }
}

impl fmt::Display for HashTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.open as char, self.close as char)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_tag_rules() {
        let t = HashTag::parse("{}").unwrap();
        assert_eq!(t.extract(b"a{b}c"), b"b");
        assert_eq!(t.extract(b"a{b"), b"a{b");
        assert_eq!(t.extract(b"a}b{c}"), b"c");
        assert_eq!(t.extract(b"{a}{b}"), b"a");
        assert_eq!(t.extract(b"{{a}}"), b"{a");
        assert_eq!(t.extract(b""), b"");
        let t = HashTag::parse("::").unwrap();
        assert_eq!(t.extract(b"x:y:z"), b"y");
        assert!(HashTag::parse("{").is_err());
        assert!(HashTag::parse("{}}").is_err());
        assert!(HashTag::parse("é").is_err());
        assert!(HashTag::parse("éé").is_err());
        assert!(HashTag::parse("").is_err());
    }

    #[test]
    fn errors_never_quote_the_tag() {
        for tag in ["Sup3r/Secr@t:pw", "éx", "abc"] {
            let err = HashTag::parse(tag).unwrap_err().to_string();
            assert!(
                err.starts_with("`placement.hash_tag`: must be exactly two"),
                "{err}"
            );
            assert!(!err.contains(tag), "{err}");
        }
    }
}
