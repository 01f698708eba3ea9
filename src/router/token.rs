//! Consistency levels and consistency tokens.
//!
//! A **consistency token** records, per shard group, the log index a client's writes reached
//! (`group → applied index`). Every write answer carries one; a `session` read passes it back
//! and is served only by replicas that have applied at least those indexes, so a client always
//! sees its own writes without paying for a leader round-trip on every read.
//!
//! On the wire the token is an opaque, compact, URL-safe string: `s` followed by the unpadded
//! base64url of the postcard encoding of the sorted `(group, index)` pairs (varints, so a
//! three-group token is about 20 characters). Clients must treat it as opaque; the leading
//! letter versions the format.

use crate::raft::GroupId;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// How fresh a read must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// Linearizable: served by the shard's leader after a read-index check with a quorum.
    Strong,
    /// Read-your-writes: any replica that has applied the caller's token.
    Session,
    /// Any healthy replica, least loaded first; may lag the leader.
    #[default]
    Eventual,
}

/// A token or consistency parameter that cannot be read (answered with a 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token string is malformed.
    #[error("invalid consistency_token {0:?}: pass back the token a write answered, unchanged")]
    BadToken(String),
    /// The consistency level is unknown.
    #[error(
        "invalid consistency {0:?}: use strong, session or eventual (Qdrant's majority, quorum, all or a replica count mean strong)"
    )]
    BadLevel(String),
}

impl FromStr for Consistency {
    type Err = TokenError;

    /// `strong|session|eventual`; Qdrant's `majority`, `quorum`, `all` and an integer replica
    /// count all ask for more than one replica's view, which shoal's strong read gives.
    fn from_str(s: &str) -> Result<Self, TokenError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "strong" | "majority" | "quorum" | "all" | "linearizable" => Ok(Consistency::Strong),
            "session" => Ok(Consistency::Session),
            "eventual" => Ok(Consistency::Eventual),
            other if !other.is_empty() && other.parse::<u64>().is_ok_and(|n| n > 0) => {
                Ok(Consistency::Strong)
            }
            _ => Err(TokenError::BadLevel(s.to_owned())),
        }
    }
}

impl Consistency {
    /// Reads the level from JSON as Qdrant sends it: a string or an integer replica count.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, TokenError> {
        match v {
            serde_json::Value::String(s) => s.parse(),
            serde_json::Value::Number(n) if n.as_u64().is_some_and(|n| n > 0) => {
                Ok(Consistency::Strong)
            }
            other => Err(TokenError::BadLevel(other.to_string())),
        }
    }
}

/// Per group, the log index a client's writes reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsistencyToken {
    indexes: BTreeMap<GroupId, u64>,
}

impl ConsistencyToken {
    /// An empty token (asks for nothing).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `group` reached `index` (keeps the larger of two).
    pub fn observe(&mut self, group: GroupId, index: u64) {
        let e = self.indexes.entry(group).or_insert(0);
        *e = (*e).max(index);
    }

    /// The index required of `group` (0: nothing).
    pub fn index(&self, group: GroupId) -> u64 {
        self.indexes.get(&group).copied().unwrap_or(0)
    }

    /// Joins two tokens: per group the larger index, so the result covers both sessions.
    pub fn merge(&mut self, other: &ConsistencyToken) {
        for (g, i) in &other.indexes {
            self.observe(*g, *i);
        }
    }

    /// Whether the token asks for nothing.
    pub fn is_empty(&self) -> bool {
        self.indexes.is_empty()
    }

    /// The `(group, index)` pairs, by group.
    pub fn iter(&self) -> impl Iterator<Item = (GroupId, u64)> + '_ {
        self.indexes.iter().map(|(g, i)| (*g, *i))
    }

    /// The wire form.
    pub fn encode(&self) -> String {
        let pairs: Vec<(u64, u64)> = self.iter().collect();
        let bytes = postcard::to_stdvec(&pairs).unwrap_or_default();
        format!("s{}", b64::encode(&bytes))
    }

    /// Parses the wire form (an empty string is the empty token).
    pub fn decode(s: &str) -> Result<Self, TokenError> {
        let bad = || TokenError::BadToken(s.to_owned());
        let s = s.trim();
        if s.is_empty() {
            return Ok(Self::new());
        }
        let body = s.strip_prefix('s').ok_or_else(bad)?;
        let bytes = b64::decode(body).ok_or_else(bad)?;
        let pairs: Vec<(u64, u64)> = postcard::from_bytes(&bytes).map_err(|_| bad())?;
        let mut t = Self::new();
        for (g, i) in pairs {
            t.observe(g, i);
        }
        Ok(t)
    }

    /// Joins several wire-form tokens (e.g. one in the query string, one in the body).
    pub fn decode_all<'a>(
        parts: impl IntoIterator<Item = &'a str>,
    ) -> Result<Option<Self>, TokenError> {
        let mut out: Option<Self> = None;
        for p in parts {
            let t = Self::decode(p)?;
            out.get_or_insert_with(Self::new).merge(&t);
        }
        Ok(out)
    }
}

impl fmt::Display for ConsistencyToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

/// Unpadded base64url (RFC 4648 §5): the token must survive a query string untouched.
mod b64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    fn value(c: u8) -> Option<u32> {
        ALPHABET.iter().position(|a| *a == c).map(|p| p as u32)
    }

    pub fn decode(s: &str) -> Option<Vec<u8>> {
        let s = s.as_bytes();
        if s.len() % 4 == 1 {
            return None;
        }
        let mut out = Vec::with_capacity(s.len() * 3 / 4);
        for chunk in s.chunks(4) {
            let mut n = 0u32;
            for (i, c) in chunk.iter().enumerate() {
                n |= value(*c)? << (18 - 6 * i);
            }
            for i in 0..chunk.len() - 1 {
                out.push((n >> (16 - 8 * i)) as u8);
            }
            // Non-canonical trailing bits would give two spellings of one token.
            let used = 8 * (chunk.len() - 1);
            if chunk.len() < 4 && n & ((1 << (24 - used)) - 1) != 0 {
                return None;
            }
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_stay_url_safe() {
        let mut t = ConsistencyToken::new();
        t.observe(7, 123_456);
        t.observe(1, 5);
        t.observe(300, u64::MAX);
        let s = t.encode();
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{s}"
        );
        assert_eq!(ConsistencyToken::decode(&s).unwrap(), t);
        assert_eq!(t.index(7), 123_456);
        assert_eq!(t.index(8), 0);
        assert_eq!(
            ConsistencyToken::decode("").unwrap(),
            ConsistencyToken::new()
        );
        // Small tokens stay small.
        let mut small = ConsistencyToken::new();
        for g in 1..=3 {
            small.observe(g, 10_000 + g);
        }
        assert!(small.encode().len() <= 20, "{}", small.encode());
    }

    #[test]
    fn base64url_matches_the_rfc_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(b64::encode(plain.as_bytes()), enc);
            assert_eq!(b64::decode(enc).unwrap(), plain.as_bytes());
        }
        assert_eq!(b64::encode(&[0xfb, 0xff]), "-_8");
        assert!(b64::decode("Zh").is_none(), "non-canonical trailing bits");
        assert!(b64::decode("Z").is_none());
        assert!(b64::decode("Zm9v!").is_none());
    }

    #[test]
    fn merge_keeps_the_larger_index_per_group() {
        let mut a = ConsistencyToken::new();
        a.observe(1, 10);
        a.observe(2, 5);
        let mut b = ConsistencyToken::new();
        b.observe(2, 8);
        b.observe(3, 1);
        a.merge(&b);
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![(1, 10), (2, 8), (3, 1)]);
        let joined = ConsistencyToken::decode_all([a.encode().as_str(), ""]).unwrap();
        assert_eq!(joined, Some(a));
        assert_eq!(ConsistencyToken::decode_all([]).unwrap(), None);
    }

    #[test]
    fn bad_tokens_are_refused() {
        for s in ["x", "sZh", "s!!", "s_____", "42", "s////"] {
            assert!(
                matches!(ConsistencyToken::decode(s), Err(TokenError::BadToken(_))),
                "{s}"
            );
        }
    }

    #[test]
    fn consistency_levels_parse_with_qdrant_aliases() {
        for (s, want) in [
            ("strong", Consistency::Strong),
            ("Majority", Consistency::Strong),
            ("quorum", Consistency::Strong),
            ("all", Consistency::Strong),
            ("2", Consistency::Strong),
            ("session", Consistency::Session),
            ("eventual", Consistency::Eventual),
        ] {
            assert_eq!(s.parse::<Consistency>().unwrap(), want, "{s}");
        }
        for s in ["", "0", "-1", "sometimes"] {
            assert!(s.parse::<Consistency>().is_err(), "{s}");
        }
        assert_eq!(
            Consistency::from_json(&serde_json::json!(3)).unwrap(),
            Consistency::Strong
        );
        assert_eq!(
            Consistency::from_json(&serde_json::json!("majority")).unwrap(),
            Consistency::Strong
        );
        assert!(Consistency::from_json(&serde_json::json!(true)).is_err());
    }
}
