//! Request vectors parsed straight into `f32`s.
//!
//! A query vector used to be read into a `serde_json::Value` tree (one 32-byte node per
//! component, freed again after the conversion) and converted by hand; for a batch of 1,000
//! points of 128 dimensions that is 128,000 nodes. [`VectorInput`] reads a list of numbers
//! directly into a `Vec<f32>` and keeps anything else (a named-vector object, a string, a list
//! holding a non-number or a number too large for `f32`) as JSON, so that
//! [`super::parse::vector`] can still say exactly what is wrong with it.

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Serialize, Serializer};
use serde_json::Value;
use std::fmt;

/// A vector as a request sends it.
#[derive(Debug, Clone, PartialEq)]
pub enum VectorInput {
    /// A list of numbers, each finite once rounded to `f32`.
    Dense(Vec<f32>),
    /// An object: vectors by name (`{"text": [..], "image": [..]}`), or the search API's
    /// `{"name": .., "vector": ..}`; each value read as a vector in turn, in the order sent.
    Named(Vec<(String, VectorInput)>),
    /// Anything else, kept as sent.
    Other(Value),
}

/// `query` of Qdrant's universal query API.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryInput {
    /// A bare vector.
    Vector(VectorInput),
    /// `{"nearest": vector, ...}` (other keys are ignored).
    Nearest(VectorInput),
    /// Another kind of query (recommend, a point id, ...), kept as sent.
    Other(Value),
}

impl Serialize for VectorInput {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            VectorInput::Dense(v) => v.serialize(s),
            VectorInput::Named(entries) => s.collect_map(entries.iter().map(|(n, v)| (n, v))),
            VectorInput::Other(v) => v.serialize(s),
        }
    }
}

impl Serialize for QueryInput {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self {
            QueryInput::Vector(v) => v.serialize(s),
            QueryInput::Nearest(v) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("nearest", v)?;
                m.end()
            }
            QueryInput::Other(v) => v.serialize(s),
        }
    }
}

/// One list element: a number (as sent) or any other JSON.
enum Elem {
    Float(f64),
    Unsigned(u64),
    Signed(i64),
    Other(Value),
}

impl Elem {
    fn as_f32(&self) -> Option<f32> {
        let f = match *self {
            Elem::Float(f) => f as f32,
            Elem::Unsigned(u) => u as f64 as f32,
            Elem::Signed(i) => i as f64 as f32,
            Elem::Other(_) => return None,
        };
        f.is_finite().then_some(f)
    }

    fn into_value(self) -> Value {
        match self {
            Elem::Float(f) => Value::from(f),
            Elem::Unsigned(u) => Value::from(u),
            Elem::Signed(i) => Value::from(i),
            Elem::Other(v) => v,
        }
    }
}

/// Builds a [`Value`] from whatever a self-describing deserializer hands a visitor; shared by
/// the element, vector and query visitors for their non-number cases.
macro_rules! other_visits {
    ($wrap:expr) => {
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok($wrap(Value::Bool(v)))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok($wrap(Value::String(v.to_owned())))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok($wrap(Value::String(v)))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($wrap(Value::Null))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($wrap(Value::Null))
        }
    };
}

impl<'de> Deserialize<'de> for Elem {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Elem;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Elem, E> {
                Ok(Elem::Float(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Elem, E> {
                Ok(Elem::Unsigned(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Elem, E> {
                Ok(Elem::Signed(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Elem, A::Error> {
                Value::deserialize(SeqAccessDeserializer::new(seq)).map(Elem::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Elem, A::Error> {
                Value::deserialize(MapAccessDeserializer::new(map)).map(Elem::Other)
            }
            other_visits!(Elem::Other);
        }
        d.deserialize_any(V)
    }
}

/// Reads a list: numbers straight into `f32`s until the first element that is not a finite
/// `f32`, then the rest as JSON.
fn read_list<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<VectorInput, A::Error> {
    let mut dense: Vec<f32> = Vec::with_capacity(seq.size_hint().unwrap_or(0).max(16));
    while let Some(e) = seq.next_element::<Elem>()? {
        if let Some(f) = e.as_f32() {
            dense.push(f);
            continue;
        }
        // Not a plain vector: keep it all as JSON (the numbers read so far were valid).
        let mut all: Vec<Value> = dense.iter().map(|&f| Value::from(f as f64)).collect();
        all.push(e.into_value());
        while let Some(v) = seq.next_element::<Value>()? {
            all.push(v);
        }
        return Ok(VectorInput::Other(Value::Array(all)));
    }
    Ok(VectorInput::Dense(dense))
}

impl<'de> Deserialize<'de> for VectorInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = VectorInput;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a vector")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<VectorInput, A::Error> {
                read_list(seq)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<VectorInput, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, VectorInput>()? {
                    entries.push(entry);
                }
                Ok(VectorInput::Named(entries))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<VectorInput, E> {
                Ok(VectorInput::Other(Value::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<VectorInput, E> {
                Ok(VectorInput::Other(Value::from(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<VectorInput, E> {
                Ok(VectorInput::Other(Value::from(v)))
            }
            other_visits!(VectorInput::Other);
        }
        d.deserialize_any(V)
    }
}

/// `vectors` of an upsert's column form: one list of vectors (the unnamed vector), or a list
/// per vector name (`{"image": [[..], ..], "text": [[..], ..]}`).
#[derive(Debug, Clone, PartialEq)]
pub enum BatchVectors {
    /// The unnamed vector of each point.
    List(Vec<VectorInput>),
    /// Each name's vector of each point, in the order sent.
    Named(Vec<(String, Vec<VectorInput>)>),
}

impl BatchVectors {
    /// How many points the column holds (the longest list for named vectors).
    pub fn len(&self) -> usize {
        match self {
            BatchVectors::List(l) => l.len(),
            BatchVectors::Named(n) => n.iter().map(|(_, l)| l.len()).max().unwrap_or(0),
        }
    }

    /// Whether it holds no vector.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Serialize for BatchVectors {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            BatchVectors::List(l) => l.serialize(s),
            BatchVectors::Named(n) => s.collect_map(n.iter().map(|(name, l)| (name, l))),
        }
    }
}

impl<'de> Deserialize<'de> for BatchVectors {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BatchVectors;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of vectors, or an object of lists of vectors by name")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<BatchVectors, A::Error> {
                Vec::<VectorInput>::deserialize(SeqAccessDeserializer::new(seq))
                    .map(BatchVectors::List)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BatchVectors, A::Error> {
                let mut named = Vec::new();
                while let Some(entry) = map.next_entry::<String, Vec<VectorInput>>()? {
                    named.push(entry);
                }
                Ok(BatchVectors::Named(named))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for QueryInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = QueryInput;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a vector or a query object")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<QueryInput, A::Error> {
                read_list(seq).map(QueryInput::Vector)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<QueryInput, A::Error> {
                let mut nearest = None;
                let mut rest = serde_json::Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "nearest" && nearest.is_none() {
                        nearest = Some(map.next_value::<VectorInput>()?);
                    } else {
                        rest.insert(key, map.next_value::<Value>()?);
                    }
                }
                Ok(match nearest {
                    Some(v) => QueryInput::Nearest(v),
                    None => QueryInput::Other(Value::Object(rest)),
                })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<QueryInput, E> {
                Ok(QueryInput::Other(Value::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<QueryInput, E> {
                Ok(QueryInput::Other(Value::from(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<QueryInput, E> {
                Ok(QueryInput::Other(Value::from(v)))
            }
            other_visits!(QueryInput::Other);
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vector(s: &str) -> VectorInput {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn plain_lists_are_read_as_f32s() {
        assert_eq!(
            vector("[1, -2, 0.5, 3e2]"),
            VectorInput::Dense(vec![1.0, -2.0, 0.5, 300.0])
        );
        assert_eq!(vector("[]"), VectorInput::Dense(vec![]));
    }

    #[test]
    fn anything_else_is_kept_as_sent() {
        assert_eq!(
            vector(r#"[1, 2, "x", 4]"#),
            VectorInput::Other(json!([1.0, 2.0, "x", 4]))
        );
        // Finite as f64 but not as f32: kept as the f64 that was sent, for the error message.
        match vector("[1, 1e39]") {
            VectorInput::Other(Value::Array(a)) => {
                assert_eq!(a[1], json!(1e39));
                assert!(a[1].as_f64().is_some_and(|f| !(f as f32).is_finite()));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            vector(r#"{"": [1, 2]}"#),
            VectorInput::Named(vec![("".into(), VectorInput::Dense(vec![1.0, 2.0]))])
        );
        assert_eq!(
            vector("[[1], null]"),
            VectorInput::Other(json!([[1], null]))
        );
        assert_eq!(vector("7"), VectorInput::Other(json!(7)));
        assert!(serde_json::from_str::<VectorInput>("[1, NaN]").is_err());
    }

    #[test]
    fn queries_find_their_vector() {
        let q = |s: &str| serde_json::from_str::<QueryInput>(s).unwrap();
        assert_eq!(
            q("[1, 2]"),
            QueryInput::Vector(VectorInput::Dense(vec![1.0, 2.0]))
        );
        assert_eq!(
            q(r#"{"nearest": [1, 2], "mmr": {"diversity": 0.5}}"#),
            QueryInput::Nearest(VectorInput::Dense(vec![1.0, 2.0]))
        );
        assert_eq!(
            q(r#"{"recommend": {"positive": [1]}}"#),
            QueryInput::Other(json!({"recommend": {"positive": [1]}}))
        );
        assert_eq!(q("42"), QueryInput::Other(json!(42)));
        assert_eq!(
            serde_json::to_value(q(r#"{"nearest": [1.5]}"#)).unwrap(),
            json!({"nearest": [1.5]})
        );
    }
}
