//! Point identities and payloads as a shard stores them.
//!
//! Qdrant lets a point id be an unsigned integer or a UUID; shoal keeps both forms so a client gets
//! back exactly the id it wrote. The derived order (every integer before every UUID, each ordered
//! by value) is the order `scroll` walks, as in Qdrant.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A point's external id: an unsigned integer or a UUID, as Qdrant accepts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PointId {
    /// An unsigned integer id.
    Num(u64),
    /// A UUID id, kept as its 128-bit value.
    Uuid(u128),
}

impl fmt::Display for PointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PointId::Num(n) => write!(f, "{n}"),
            PointId::Uuid(u) => write!(f, "{}", uuid::Uuid::from_u128(*u)),
        }
    }
}

/// Why a JSON value is not a point id.
#[derive(Debug, thiserror::Error)]
#[error(
    "invalid point id {0}: expected an unsigned integer or a UUID string (e.g. \"550e8400-e29b-41d4-a716-446655440000\")"
)]
pub struct BadPointId(pub String);

impl PointId {
    /// Reads an id from JSON as Qdrant writes it: a non-negative integer or a UUID string.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, BadPointId> {
        match value {
            serde_json::Value::Number(n) => n
                .as_u64()
                .map(PointId::Num)
                .ok_or_else(|| BadPointId(value.to_string())),
            serde_json::Value::String(s) => uuid::Uuid::parse_str(s)
                .map(|u| PointId::Uuid(u.as_u128()))
                .map_err(|_| BadPointId(value.to_string())),
            _ => Err(BadPointId(value.to_string())),
        }
    }

    /// The JSON form a client gets back: a number or a hyphenated UUID string.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            PointId::Num(n) => serde_json::Value::from(*n),
            PointId::Uuid(_) => serde_json::Value::String(self.to_string()),
        }
    }
}

/// Compact binary form (through Raft and snapshots) is a tagged enum; JSON (the REST API) is the
/// Qdrant form. The two are told apart by `is_human_readable`.
impl Serialize for PointId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            self.to_json().serialize(serializer)
        } else {
            match self {
                PointId::Num(n) => Tagged::Num(*n).serialize(serializer),
                PointId::Uuid(u) => Tagged::Uuid(*u).serialize(serializer),
            }
        }
    }
}

impl<'de> Deserialize<'de> for PointId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let value = serde_json::Value::deserialize(deserializer)?;
            PointId::from_json(&value).map_err(serde::de::Error::custom)
        } else {
            Ok(match Tagged::deserialize(deserializer)? {
                Tagged::Num(n) => PointId::Num(n),
                Tagged::Uuid(u) => PointId::Uuid(u),
            })
        }
    }
}

#[derive(Serialize, Deserialize)]
enum Tagged {
    Num(u64),
    Uuid(u128),
}

/// A point's payload: a JSON object, as in Qdrant.
pub type Payload = serde_json::Map<String, serde_json::Value>;

/// Serde helper: carries an optional payload as JSON text, because the compact binary formats
/// (postcard) cannot describe arbitrary JSON values on their own.
pub(crate) mod payload_text {
    use super::Payload;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(p: &Option<Payload>, s: S) -> Result<S::Ok, S::Error> {
        match p {
            None => None::<String>.serialize(s),
            Some(map) => {
                let text = serde_json::to_string(map).map_err(serde::ser::Error::custom)?;
                Some(text).serialize(s)
            }
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Payload>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// Serde helper: carries any JSON-shaped value as JSON text inside a compact binary format.
pub(crate) mod json_text {
    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        serde_json::to_string(v)
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }

    pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
        d: D,
    ) -> Result<T, D::Error> {
        let text = String::deserialize(d)?;
        serde_json::from_str(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_in_json_and_postcard() {
        let u = "550e8400-e29b-41d4-a716-446655440000";
        for id in [
            PointId::Num(7),
            PointId::Uuid(uuid::Uuid::parse_str(u).unwrap().as_u128()),
        ] {
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(serde_json::from_str::<PointId>(&json).unwrap(), id);
            let bin = postcard::to_stdvec(&id).unwrap();
            assert_eq!(postcard::from_bytes::<PointId>(&bin).unwrap(), id);
        }
        assert_eq!(serde_json::to_string(&PointId::Num(7)).unwrap(), "7");
        assert!(serde_json::from_str::<PointId>("-1").is_err());
        assert!(serde_json::from_str::<PointId>("1.5").is_err());
        assert!(serde_json::from_str::<PointId>("\"nope\"").is_err());
        assert!(PointId::Num(u64::MAX) < PointId::Uuid(0));
    }
}
