//! Named vectors (Qdrant's `vectors_config` given as a map): each name its own vector space,
//! run as its own lane of every shard ([`crate::shard::Lanes`]).
//!
//! A collection either has one unnamed vector (no [`NamedVector`]s) or named vectors, at least
//! one, sorted by name; lane `i` is the `i`-th name. The collection's own [`CollectionConfig`]
//! describes lane 0, and [`CollectionVectors::lane_config`] every lane. Points travel to the shards with their
//! vectors *packed*: the lanes' vectors end to end, in lane order ([`pack`], [`unpack`]).

use super::config::{CollectionConfig, IvfPqSettings, VectorSpace};
use super::limits::MAX_NAME_LEN;
use super::spec::{CollectionSpec, IndexDefaults, VectorSpec};
use super::{Error, Placement};
use crate::shard::Filter;
use serde::{Deserialize, Serialize};

/// The most named vectors a collection may have.
pub const MAX_NAMED_VECTORS: usize = 16;

/// One named vector of a collection, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedVector {
    /// The name (`using` in queries, the key in a point's vector map).
    pub name: String,
    /// Its dimension and metric.
    pub space: VectorSpace,
    /// Its PQ sub-spaces (a divisor of its dimension).
    pub pq_m: usize,
}

/// One named vector as a create asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedVectorSpec {
    /// The name.
    pub name: String,
    /// Its dimension and metric.
    pub vectors: VectorSpec,
}

/// Resolves a create with named vectors: each vector resolved as `spec` would be with that
/// vector's space (so every check and default applies per vector, `ivf_pq_config.pq_m`, when
/// given, to each), sorted by name. The configuration answered is lane 0's.
pub fn resolve_named(
    spec: &CollectionSpec,
    named: &[NamedVectorSpec],
    defaults: &IndexDefaults,
    group_id: u64,
) -> Result<(CollectionConfig, Vec<NamedVector>), Error> {
    if named.is_empty() || named.len() > MAX_NAMED_VECTORS {
        return Err(Error::bad(format!(
            "vectors: give 1..={MAX_NAMED_VECTORS} named vectors, got {}",
            named.len()
        )));
    }
    if spec.placement == Some(Placement::Centroid) && spec.shard_number.unwrap_or(1) > 1 {
        return Err(Error::bad(
            "placement = centroid places points by one vector: it cannot be used with named vectors",
        ));
    }
    let mut sorted: Vec<&NamedVectorSpec> = named.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let mut first = None;
    let mut out: Vec<NamedVector> = Vec::with_capacity(sorted.len());
    for n in sorted {
        if n.name.is_empty() || n.name.len() > MAX_NAME_LEN {
            return Err(Error::bad(format!(
                "vector names must be 1..={MAX_NAME_LEN} bytes, got {:?}",
                n.name
            )));
        }
        if out.last().is_some_and(|p| p.name == n.name) {
            return Err(Error::bad(format!("vector name {:?} given twice", n.name)));
        }
        let config = CollectionSpec {
            vectors: n.vectors,
            ..*spec
        }
        .resolve(defaults, group_id)
        .map_err(|e| Error::bad(format!("vector {:?}: {e}", n.name)))?;
        out.push(NamedVector {
            name: n.name.clone(),
            space: config.vectors,
            pq_m: config.ivf_pq.pq_m,
        });
        first.get_or_insert(config);
    }
    let config = first.expect("at least one named vector");
    Ok((config, out))
}

/// A collection's vectors as queries and points see them: its configuration (lane 0's) and
/// its named vectors (none: one unnamed vector).
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionVectors {
    /// The collection's configuration.
    pub config: CollectionConfig,
    /// The named vectors, sorted by name.
    pub named: Vec<NamedVector>,
}

impl CollectionVectors {
    /// The lane a query's `using` names: lane 0 for the unnamed vector (`using` absent or
    /// `""`); for named vectors, the named one (a query on named vectors must name one, unless
    /// there is only one).
    pub fn lane_of(&self, using: Option<&str>) -> Result<usize, Error> {
        let named = &self.named;
        match (named.is_empty(), using) {
            (true, None | Some("")) => Ok(0),
            (true, Some(u)) => Err(Error::bad(format!(
                "the collection has one unnamed vector: there is no vector named {u:?}"
            ))),
            (false, None | Some("")) if named.len() == 1 => Ok(0),
            (false, None | Some("")) => Err(Error::bad(format!(
                "the collection has named vectors ({}): name one with `using`",
                self.names()
            ))),
            (false, Some(u)) => named.iter().position(|n| n.name == u).ok_or_else(|| {
                Error::bad(format!(
                    "the collection has no vector named {u:?} (it has {})",
                    self.names()
                ))
            }),
        }
    }

    /// `filter` as the shards take it: every `has_vector` condition checked to name a vector
    /// of the collection (as `using` would) and given that vector's lane, which the shard's
    /// lanes turn into the points lacking it ([`crate::shard::Lanes::resolve_filter`]). A
    /// request that sets the lane itself is refused: it is not a condition users write.
    pub fn resolve_filter(&self, filter: &Filter) -> Result<Filter, Error> {
        let mut out = Ok(());
        let mut resolved = filter.clone();
        resolved.visit_conditions_mut(&mut |c| {
            if out.is_err() {
                return;
            }
            if c.has_vector_lane.is_some() {
                out = Err(Error::bad(
                    "invalid filter condition: unknown key \"has_vector_lane\"",
                ));
            } else if let Some(name) = &c.has_vector {
                match self.lane_of(Some(name)) {
                    Ok(lane) => c.has_vector_lane = Some(lane as u32),
                    Err(e) => out = Err(Error::bad(format!("has_vector: {e}"))),
                }
            }
        });
        out.map(|()| resolved)
    }

    /// The names of the named vectors, quoted, for messages (`"image", "text"`).
    pub fn names(&self) -> String {
        self.named
            .iter()
            .map(|n| format!("{:?}", n.name))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The configuration of lane `lane` (the collection's own for lane 0 or no named vectors).
    pub fn lane_config(&self, lane: usize) -> CollectionConfig {
        match self.named.get(lane) {
            Some(n) => CollectionConfig {
                vectors: n.space,
                ivf_pq: IvfPqSettings {
                    pq_m: n.pq_m,
                    ..self.config.ivf_pq
                },
                ..self.config
            },
            None => self.config,
        }
    }

    /// How many lanes every shard has (1 for the unnamed vector).
    pub fn lanes(&self) -> usize {
        self.named.len().max(1)
    }

    /// Every lane's configuration, lane 0 first.
    pub fn lane_configs(&self) -> Vec<CollectionConfig> {
        (0..self.lanes()).map(|i| self.lane_config(i)).collect()
    }

    /// The dimension of each lane: a packed vector is their sum long.
    pub fn lane_dims(&self) -> Vec<usize> {
        self.lane_configs().iter().map(|c| c.dim()).collect()
    }

    /// The length of a packed vector.
    pub fn packed_dim(&self) -> usize {
        self.lane_dims().iter().sum()
    }
}

/// A point's vectors packed in lane order, from its vector per lane. `None`: the point does
/// not have that named vector (as Qdrant allows), packed as NaNs
/// ([`crate::shard::lanes::is_absent`]); the unnamed vector is required.
pub fn pack(named: &[NamedVector], mut by_lane: Vec<Option<Vec<f32>>>) -> Result<Vec<f32>, Error> {
    if named.is_empty() {
        return by_lane
            .pop()
            .flatten()
            .ok_or_else(|| Error::bad("the point has no vector"));
    }
    let mut packed = Vec::new();
    for (n, v) in named.iter().zip(by_lane) {
        let Some(v) = v else {
            packed.extend(std::iter::repeat_n(f32::NAN, n.space.dim as usize));
            continue;
        };
        if v.len() as u64 != n.space.dim {
            return Err(Error::bad(format!(
                "vector {:?} has dimension {}, expected {}",
                n.name,
                v.len(),
                n.space.dim
            )));
        }
        packed.extend(v);
    }
    Ok(packed)
}

/// Lane `lane`'s part of a packed vector (`None` if it is too short, or the point does not
/// have that vector).
pub fn unpack<'v>(dims: &[usize], packed: &'v [f32], lane: usize) -> Option<&'v [f32]> {
    let start: usize = dims.get(..lane)?.iter().sum();
    packed
        .get(start..start + dims.get(lane)?)
        .filter(|part| !crate::shard::lanes::is_absent(part))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collection::Metric;

    fn spec(name: &str, dim: u64, metric: Metric) -> NamedVectorSpec {
        NamedVectorSpec {
            name: name.into(),
            vectors: VectorSpec { dim, metric },
        }
    }

    #[test]
    fn named_vectors_resolve_sorted_each_with_its_own_defaults() {
        let base = CollectionSpec::new(1, Metric::L2);
        let (config, named) = resolve_named(
            &base,
            &[
                spec("text", 384, Metric::Cosine),
                spec("image", 512, Metric::Dot),
            ],
            &IndexDefaults::default(),
            3,
        )
        .unwrap();
        assert_eq!(named[0].name, "image");
        assert_eq!(named[1].name, "text");
        assert_eq!(config.vectors, named[0].space);
        assert_eq!(config.ivf_pq.pq_m, named[0].pq_m);
        assert!(384 % named[1].pq_m == 0 && 512 % named[0].pq_m == 0);
        let v = CollectionVectors { config, named };
        let lane1 = v.lane_config(1);
        assert_eq!((lane1.dim(), lane1.metric()), (384, Metric::Cosine));
        assert_eq!(v.lane_dims(), vec![512, 384]);
        assert_eq!(v.packed_dim(), 896);
        assert_eq!(v.lane_of(Some("text")).unwrap(), 1);
        assert!(v.lane_of(None).is_err());
        assert!(v.lane_of(Some("audio")).is_err());
        let unnamed = CollectionVectors {
            config,
            named: Vec::new(),
        };
        assert_eq!(unnamed.lane_of(None).unwrap(), 0);
        assert_eq!(unnamed.lanes(), 1);
        assert!(unnamed.lane_of(Some("x")).is_err());
    }

    #[test]
    fn bad_named_vectors_are_refused_naming_the_problem() {
        let base = CollectionSpec::new(1, Metric::L2);
        let d = IndexDefaults::default();
        let e = resolve_named(&base, &[spec("a", 0, Metric::L2)], &d, 1).unwrap_err();
        assert!(e.to_string().contains("\"a\""), "{e:?}");
        assert!(
            resolve_named(
                &base,
                &[spec("a", 4, Metric::L2), spec("a", 8, Metric::L2)],
                &d,
                1
            )
            .is_err()
        );
        assert!(resolve_named(&base, &[spec("", 4, Metric::L2)], &d, 1).is_err());
        assert!(resolve_named(&base, &[], &d, 1).is_err());
        let mut pq = base;
        pq.ivf_pq.pq_m = Some(3);
        assert!(
            resolve_named(
                &pq,
                &[spec("a", 6, Metric::L2), spec("b", 8, Metric::L2)],
                &d,
                1
            )
            .is_err()
        );
    }

    #[test]
    fn packing_puts_lanes_end_to_end_and_missing_ones_as_nans() {
        let named = vec![
            NamedVector {
                name: "a".into(),
                space: VectorSpace {
                    dim: 2,
                    metric: Metric::L2,
                },
                pq_m: 1,
            },
            NamedVector {
                name: "b".into(),
                space: VectorSpace {
                    dim: 1,
                    metric: Metric::L2,
                },
                pq_m: 1,
            },
        ];
        let p = pack(&named, vec![Some(vec![1.0, 2.0]), Some(vec![3.0])]).unwrap();
        assert_eq!(p, vec![1.0, 2.0, 3.0]);
        assert_eq!(unpack(&[2, 1], &p, 1), Some(&[3.0][..]));
        assert_eq!(unpack(&[2, 1], &p, 0), Some(&[1.0, 2.0][..]));
        // A vector the point lacks packs as NaNs and unpacks as none.
        let p = pack(&named, vec![Some(vec![1.0, 2.0]), None]).unwrap();
        assert_eq!(p.len(), 3);
        assert!(p[2].is_nan());
        assert_eq!(unpack(&[2, 1], &p, 1), None);
        assert_eq!(unpack(&[2, 1], &p, 0), Some(&[1.0, 2.0][..]));
        assert!(pack(&named, vec![Some(vec![1.0]), Some(vec![3.0])]).is_err());
    }
}
