//! The cluster metadata: [`ClusterState`] (members, collections, shard → replica nodes) and the
//! state machine of the metadata Raft group ([`META_GROUP`]) that replicates it.
//!
//! Every node runs a replica of the metadata group (up to three voters, the rest learners), so
//! every node reads the latest applied state locally and its reconciler follows it. Commands are
//! postcard-encoded [`MetaCommand`]s; the enum is append-only (its variant order is the log
//! format). A snapshot is one file, `cluster-state.bin`: a storage envelope
//! ([`envelope::CLUSTER_STATE`]) around the postcard [`ClusterState`].
//!
//! Aliases live here beside the collections they name (Qdrant's `POST /collections/aliases`):
//! a batch of [`AliasAction`]s is one [`MetaCommand::UpdateAliases`] entry, applied to a trial
//! copy of the state and kept only if every action succeeds, so an alias swap (delete + create)
//! is atomic on every node.

use super::persisted::{ClusterStateV3, ClusterStateV4, CollectionMetaV1, CollectionMetaV2};
use super::placement::CentroidPlacement;
use crate::collection::named::CollectionVectors;
use crate::collection::{CollectionConfig, Error, NamedVector};
use crate::raft::{GroupId, NodeId, NodeInfo, StateMachineApp};
use crate::shard::ShardConfig;
use crate::storage::envelope;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;

/// The Raft group id of the metadata group; shard groups start at 1.
pub const META_GROUP: GroupId = 0;
const STATE_FILE: &str = "cluster-state.bin";

/// One shard of a collection: its Raft group and the nodes holding a replica.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardMeta {
    /// The shard's replica group.
    pub group: GroupId,
    /// Nodes with a replica. `replicas[0]` initialises the group when the collection is created
    /// (never again once the replica set changed, see [`ClusterState::reconfigured`]).
    pub replicas: Vec<NodeId>,
}

/// A collection as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionMeta {
    /// The resolved configuration (shard count, replication, index settings), stored in the
    /// persisted layout of [`super::persisted`] (version 2).
    #[serde(with = "super::persisted::config_v2")]
    pub config: CollectionConfig,
    /// Shard `i` at index `i`.
    pub shards: Vec<ShardMeta>,
    /// The centroid placement, once trained (first writer wins).
    pub centroids: Option<CentroidPlacement>,
    /// The named vectors, sorted by name (empty: one unnamed vector); each a lane of every
    /// shard ([`crate::collection::named`]). Added in `cluster-state.bin` version 5.
    #[serde(with = "super::persisted::named_v1")]
    pub named: Vec<NamedVector>,
}

impl CollectionMeta {
    /// Its vectors: the configuration and the named vectors, which give each shard's lanes.
    pub fn vectors(&self) -> CollectionVectors {
        CollectionVectors {
            config: self.config,
            named: self.named.clone(),
        }
    }

    /// The shapes of the lanes of the shard that runs as `group`.
    pub fn shard_configs(&self, group: GroupId) -> Vec<ShardConfig> {
        self.vectors()
            .lane_configs()
            .iter()
            .map(|c| c.shard_config(group))
            .collect()
    }
}

/// The replicated cluster metadata. Deterministic: only [`MetaCommand`]s change it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Every member node and its addresses.
    pub members: BTreeMap<NodeId, NodeInfo>,
    /// Every collection by name.
    pub collections: BTreeMap<String, CollectionMeta>,
    /// The next unused shard group id (group ids are never reused).
    pub next_group: GroupId,
    /// Groups whose replica set changed since creation: a reconciler must never initialise
    /// them (a fresh replica there is a learner being caught up, not a new group).
    pub reconfigured: BTreeSet<GroupId>,
    /// Log index of the last applied command (replays of older ones are skipped).
    pub applied_index: u64,
    /// Alias name → the collection it names (never the name of a collection itself; dropped
    /// with its collection). Added in `cluster-state.bin` version 4.
    pub aliases: BTreeMap<String, String>,
}

/// One change to the aliases, as Qdrant's `POST /collections/aliases` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AliasAction {
    /// Point `alias` at `collection` (replacing where it pointed before, as Qdrant does).
    Create {
        /// The collection named.
        collection: String,
        /// The alias.
        alias: String,
    },
    /// Remove `alias` (refused if there is none).
    Delete {
        /// The alias.
        alias: String,
    },
    /// Rename alias `old` to `new`, keeping its collection.
    Rename {
        /// The alias now.
        old: String,
        /// Its new name.
        new: String,
    },
}

/// Why an alias action was refused, typed so the metadata leader answers 404/409/400 and the
/// state machine (which only says "refused") agrees with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AliasRefusal {
    /// The collection an alias would name does not exist.
    NoCollection(String),
    /// The alias to delete or rename does not exist.
    NoAlias(String),
    /// The alias name is a collection's name.
    IsCollection(String),
}

impl std::fmt::Display for AliasRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AliasRefusal::NoCollection(c) => write!(f, "collection `{c}` not found"),
            AliasRefusal::NoAlias(a) => write!(f, "alias `{a}` not found"),
            AliasRefusal::IsCollection(a) => write!(
                f,
                "`{a}` is the name of a collection; an alias cannot have it"
            ),
        }
    }
}

/// Where a shard group lives in the state.
#[derive(Debug, Clone)]
pub struct ShardLocation<'a> {
    /// Collection name.
    pub collection: &'a str,
    /// Shard number.
    pub shard: u32,
    /// The shard.
    pub meta: &'a ShardMeta,
    /// The collection's configuration.
    pub config: &'a CollectionConfig,
    /// The whole collection (its named vectors give the shard's lanes).
    pub collection_meta: &'a CollectionMeta,
}

impl ClusterState {
    /// The collection `name` names: itself if a collection has that name, else the one the
    /// alias `name` points at. Every read and write resolves its collection through this.
    pub fn resolve(&self, name: &str) -> Option<(&str, &CollectionMeta)> {
        if let Some((n, c)) = self.collections.get_key_value(name) {
            return Some((n.as_str(), c));
        }
        let target = self.aliases.get(name)?;
        self.collections
            .get_key_value(target.as_str())
            .map(|(n, c)| (n.as_str(), c))
    }

    /// The aliases of `collection` (all of them when `None`), as (alias, collection) pairs in
    /// alias order.
    pub fn aliases_of(&self, collection: Option<&str>) -> Vec<(String, String)> {
        self.aliases
            .iter()
            .filter(|(_, c)| collection.is_none_or(|want| want == c.as_str()))
            .map(|(a, c)| (a.clone(), c.clone()))
            .collect()
    }

    /// Applies `actions` in order to these aliases; the first refusal stops it (the caller
    /// applies to a copy and keeps it only on success, so a batch is all or nothing).
    pub fn apply_aliases(&mut self, actions: &[AliasAction]) -> Result<(), AliasRefusal> {
        for action in actions {
            match action {
                AliasAction::Create { collection, alias } => {
                    if !self.collections.contains_key(collection) {
                        return Err(AliasRefusal::NoCollection(collection.clone()));
                    }
                    if self.collections.contains_key(alias) {
                        return Err(AliasRefusal::IsCollection(alias.clone()));
                    }
                    self.aliases.insert(alias.clone(), collection.clone());
                }
                AliasAction::Delete { alias } => {
                    self.aliases
                        .remove(alias)
                        .ok_or_else(|| AliasRefusal::NoAlias(alias.clone()))?;
                }
                AliasAction::Rename { old, new } => {
                    if self.collections.contains_key(new) {
                        return Err(AliasRefusal::IsCollection(new.clone()));
                    }
                    let target = self
                        .aliases
                        .remove(old)
                        .ok_or_else(|| AliasRefusal::NoAlias(old.clone()))?;
                    self.aliases.insert(new.clone(), target);
                }
            }
        }
        Ok(())
    }

    /// Every shard group, with where it belongs.
    pub fn shards(&self) -> impl Iterator<Item = ShardLocation<'_>> {
        self.collections.iter().flat_map(|(name, c)| {
            c.shards
                .iter()
                .enumerate()
                .map(move |(i, s)| ShardLocation {
                    collection: name,
                    shard: i as u32,
                    meta: s,
                    config: &c.config,
                    collection_meta: c,
                })
        })
    }

    /// The shard that runs as `group`.
    pub fn find_group(&self, group: GroupId) -> Option<ShardLocation<'_>> {
        self.shards().find(|s| s.meta.group == group)
    }

    /// Apply one command; `Err` is a refusal that changes nothing.
    pub fn apply(&mut self, command: MetaCommand) -> Result<Vec<u8>, String> {
        match command {
            MetaCommand::PutMember { id, info } => {
                self.members.insert(id, info);
                Ok(Vec::new())
            }
            MetaCommand::RemoveMember { id } => {
                self.members.remove(&id);
                Ok(Vec::new())
            }
            MetaCommand::CreateCollection { name, meta } => {
                self.apply(MetaCommand::CreateCollectionV3 {
                    name,
                    meta: meta.into(),
                })
            }
            MetaCommand::CreateCollectionV2 { name, meta } => {
                self.apply(MetaCommand::CreateCollectionV3 {
                    name,
                    meta: meta.into(),
                })
            }
            MetaCommand::CreateCollectionV3 { name, meta } => {
                if self.collections.contains_key(&name) {
                    return Err(format!("collection `{name}` already exists"));
                }
                if self.aliases.contains_key(&name) {
                    return Err(format!(
                        "`{name}` is an alias; a collection cannot have its name"
                    ));
                }
                let used = meta.shards.iter().map(|s| s.group).max().unwrap_or(0);
                if meta.shards.iter().any(|s| s.group < self.next_group.max(1)) {
                    return Err("shard group ids must be fresh".into());
                }
                self.next_group = self.next_group.max(used + 1);
                self.collections.insert(name, meta);
                Ok(Vec::new())
            }
            MetaCommand::UpdateConfig { name, config } => {
                let c = self
                    .collections
                    .get_mut(&name)
                    .ok_or_else(|| format!("collection `{name}` not found"))?;
                let mut unchanged = config;
                unchanged.search = c.config.search;
                if unchanged != c.config {
                    return Err(format!(
                        "collection `{name}`: only search settings can change on a live collection"
                    ));
                }
                c.config = config;
                Ok(Vec::new())
            }
            MetaCommand::DeleteCollection { name } => {
                self.collections
                    .remove(&name)
                    .ok_or_else(|| format!("collection `{name}` not found"))?;
                // Its aliases go with it (Qdrant does the same).
                self.aliases.retain(|_, c| *c != name);
                Ok(Vec::new())
            }
            MetaCommand::SetCentroids { name, centroids } => {
                let c = self
                    .collections
                    .get_mut(&name)
                    .ok_or_else(|| format!("collection `{name}` not found"))?;
                let stored = c.centroids.get_or_insert(centroids).clone();
                postcard::to_allocvec(&stored).map_err(|e| e.to_string())
            }
            MetaCommand::SetReplicas {
                name,
                shard,
                replicas,
            } => {
                let c = self
                    .collections
                    .get_mut(&name)
                    .ok_or_else(|| format!("collection `{name}` not found"))?;
                let s = c
                    .shards
                    .get_mut(shard as usize)
                    .ok_or_else(|| format!("collection `{name}` has no shard {shard}"))?;
                if replicas.is_empty() {
                    return Err("a shard needs at least one replica".into());
                }
                s.replicas = replicas;
                self.reconfigured.insert(s.group);
                Ok(Vec::new())
            }
            MetaCommand::UpdateAliases { actions } => {
                self.apply_aliases(&actions).map_err(|e| e.to_string())?;
                Ok(Vec::new())
            }
        }
    }
}

/// A change to the metadata. Append new variants at the end only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum MetaCommand {
    /// Add or update a member's addresses.
    PutMember {
        /// The node.
        id: NodeId,
        /// Its addresses.
        info: NodeInfo,
    },
    /// Forget a member.
    RemoveMember {
        /// The node.
        id: NodeId,
    },
    /// Add a collection (refused if the name exists), its configuration in version 1's layout.
    /// Only read (logs written before version 2); new entries are [`Self::CreateCollectionV2`].
    CreateCollection {
        /// Name.
        name: String,
        /// Configuration and shards.
        meta: CollectionMetaV1,
    },
    /// Remove a collection (its groups are destroyed by every node's reconciler).
    DeleteCollection {
        /// Name.
        name: String,
    },
    /// Store the centroid placement unless one is stored already; answers the stored one.
    SetCentroids {
        /// Collection.
        name: String,
        /// The proposed placement.
        centroids: CentroidPlacement,
    },
    /// Replace the replica list of a shard (moves, repairs).
    SetReplicas {
        /// Collection.
        name: String,
        /// Shard number.
        shard: u32,
        /// The new replica nodes.
        replicas: Vec<NodeId>,
    },
    /// Add a collection (refused if the name exists), without named vectors. Still written
    /// for collections with one unnamed vector, so that nodes of the release before named
    /// vectors can follow the log.
    CreateCollectionV2 {
        /// Name.
        name: String,
        /// Configuration and shards.
        meta: CollectionMetaV2,
    },
    /// Replace a collection's configuration (`PATCH /collections/{name}`). Refused unless only
    /// what can change on a live collection differs: today its default search settings.
    UpdateConfig {
        /// Name.
        name: String,
        /// The new configuration, in version 2's layout.
        #[serde(with = "super::persisted::config_v2")]
        config: CollectionConfig,
    },
    /// Apply alias actions in order, all or none (Qdrant's `POST /collections/aliases`).
    UpdateAliases {
        /// The actions.
        actions: Vec<AliasAction>,
    },
    /// Add a collection (refused if the name exists), with its named vectors: written for a
    /// collection that has them.
    CreateCollectionV3 {
        /// Name.
        name: String,
        /// Configuration, shards and named vectors.
        meta: CollectionMeta,
    },
}

impl MetaCommand {
    /// The entry that creates `name` as `meta`: version 3 when it has named vectors, else
    /// version 2, which nodes of the previous release read too.
    pub fn create(name: String, meta: CollectionMeta) -> Self {
        if meta.named.is_empty() {
            MetaCommand::CreateCollectionV2 {
                name,
                meta: meta.into(),
            }
        } else {
            MetaCommand::CreateCollectionV3 { name, meta }
        }
    }
}

impl MetaCommand {
    /// The log encoding.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("metadata commands always encode")
    }
}

/// What `apply` answers: postcard of `Result<bytes, refusal>`.
pub fn decode_outcome(bytes: &[u8]) -> Result<Vec<u8>, String> {
    postcard::from_bytes::<Result<Vec<u8>, String>>(bytes)
        .unwrap_or_else(|e| Err(format!("undecodable metadata answer: {e}")))
}

/// The placement in the state machine's answer to [`MetaCommand::SetCentroids`] (postcard of
/// the stored [`CentroidPlacement`], written by [`ClusterState::apply`] on this same node).
pub(crate) fn stored_centroids(answer: &[u8]) -> Result<CentroidPlacement, Error> {
    postcard::from_bytes(answer)
        .map_err(|e| Error::Internal(format!("undecodable centroid answer: {e}")))
}

/// The metadata group's state machine; publishes every new state on a watch channel.
pub struct MetaApp {
    state: watch::Sender<Arc<ClusterState>>,
}

impl Default for MetaApp {
    fn default() -> Self {
        MetaApp {
            state: watch::Sender::new(Arc::new(ClusterState::default())),
        }
    }
}

impl MetaApp {
    /// The latest applied state.
    pub fn state(&self) -> Arc<ClusterState> {
        self.state.borrow().clone()
    }

    /// A receiver that sees every new state.
    pub fn subscribe(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.state.subscribe()
    }
}

pub(super) fn encode_state(state: &ClusterState) -> std::io::Result<Vec<u8>> {
    let body = postcard::to_allocvec(state).map_err(std::io::Error::other)?;
    Ok(envelope::encode(&envelope::CLUSTER_STATE, &body))
}

/// Reads `cluster-state.bin` of any version this build knows. Versions 1 and 2 are the
/// hand-written layout before the storage envelope (`SHOALMET`, version, `u32` length, body,
/// CRC-32); versions 3 and 4 are the envelope. Version 1's body holds configurations in version
/// 1's layout ([`ClusterStateV1`]); versions 2 and 3 hold [`ClusterStateV3`] (no aliases);
/// version 4 holds [`ClusterStateV4`] (no named vectors); version 5 holds [`ClusterState`].
pub(super) fn decode_state(bytes: &[u8]) -> std::io::Result<ClusterState> {
    let bad = |m: String| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{STATE_FILE}: {m}"),
        )
    };
    let decoded =
        envelope::decode(&envelope::CLUSTER_STATE, bytes).map_err(|e| bad(e.to_string()))?;
    if decoded.version == 1 {
        let v1: ClusterStateV1 =
            postcard::from_bytes(decoded.body).map_err(|e| bad(e.to_string()))?;
        return Ok(v1.into());
    }
    if decoded.version <= 3 {
        let v3: ClusterStateV3 =
            postcard::from_bytes(decoded.body).map_err(|e| bad(e.to_string()))?;
        return Ok(v3.into());
    }
    if decoded.version == 4 {
        let v4: ClusterStateV4 =
            postcard::from_bytes(decoded.body).map_err(|e| bad(e.to_string()))?;
        return Ok(v4.into());
    }
    postcard::from_bytes(decoded.body).map_err(|e| bad(e.to_string()))
}

/// [`ClusterState`] as `cluster-state.bin` version 1 held it (configurations in version 1's
/// layout); only read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ClusterStateV1 {
    pub(crate) members: BTreeMap<NodeId, NodeInfo>,
    pub(crate) collections: BTreeMap<String, CollectionMetaV1>,
    pub(crate) next_group: GroupId,
    pub(crate) reconfigured: BTreeSet<GroupId>,
    pub(crate) applied_index: u64,
}

impl From<ClusterStateV1> for ClusterState {
    fn from(s: ClusterStateV1) -> Self {
        ClusterStateV3 {
            members: s.members,
            collections: super::persisted::upgraded(s.collections),
            next_group: s.next_group,
            reconfigured: s.reconfigured,
            applied_index: s.applied_index,
        }
        .into()
    }
}

impl StateMachineApp for MetaApp {
    fn apply(&self, index: u64, command: &[u8]) -> Vec<u8> {
        let current = self.state();
        if index <= current.applied_index {
            return postcard::to_allocvec(&Ok::<Vec<u8>, String>(Vec::new())).unwrap_or_default();
        }
        let mut next = (*current).clone();
        next.applied_index = index;
        let outcome = match postcard::from_bytes::<MetaCommand>(command) {
            Ok(cmd) => {
                let mut trial = next.clone();
                match trial.apply(cmd) {
                    Ok(out) => {
                        next = trial;
                        Ok(out)
                    }
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(format!("undecodable metadata command: {e}")),
        };
        self.state.send_replace(Arc::new(next));
        postcard::to_allocvec(&outcome).unwrap_or_default()
    }

    fn snapshot(&self, dir: &Path) -> std::io::Result<()> {
        let bytes = encode_state(&self.state())?;
        std::fs::create_dir_all(dir)?;
        crate::storage::write_atomic(dir.join(STATE_FILE), &bytes).map_err(std::io::Error::other)
    }

    fn restore(&self, dir: &Path) -> std::io::Result<()> {
        let state = decode_state(&std::fs::read(dir.join(STATE_FILE))?)?;
        self.state.send_replace(Arc::new(state));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collection::{CollectionSpec, IndexDefaults, IvfPqSpec, Metric};

    fn config() -> CollectionConfig {
        let mut spec = CollectionSpec::new(4, Metric::Cosine);
        spec.shard_number = Some(2);
        spec.ivf_pq = IvfPqSpec {
            nlist: Some(4),
            pq_m: Some(2),
            pq_bits: Some(4),
            seal_threshold: Some(100),
        };
        spec.search.nprobe = Some(2);
        spec.resolve(&IndexDefaults::default(), 1).unwrap()
    }

    fn create(name: &str, groups: &[GroupId]) -> Vec<u8> {
        MetaCommand::create(
            name.into(),
            CollectionMeta {
                config: config(),
                shards: groups
                    .iter()
                    .map(|g| ShardMeta {
                        group: *g,
                        replicas: vec![1],
                    })
                    .collect(),
                centroids: None,
                named: Vec::new(),
            },
        )
        .encode()
    }

    #[test]
    fn an_update_changes_only_search_settings() {
        let app = MetaApp::default();
        let ok = |b: Vec<u8>| decode_outcome(&b);
        assert!(ok(app.apply(1, &create("c", &[1, 2]))).is_ok());
        let update = |i, config: CollectionConfig| {
            ok(app.apply(
                i,
                &MetaCommand::UpdateConfig {
                    name: "c".into(),
                    config,
                }
                .encode(),
            ))
        };
        let mut tuned = config();
        tuned.search.recall_target = 0.99;
        tuned.search.nprobe = None;
        assert!(update(2, tuned).is_ok());
        assert_eq!(app.state().collections["c"].config, tuned);
        // Anything else is refused and changes nothing.
        let mut resharded = tuned;
        resharded.ivf_pq.nlist = 8;
        assert!(update(3, resharded).is_err());
        assert_eq!(app.state().collections["c"].config, tuned);
        let missing = ok(app.apply(
            4,
            &MetaCommand::UpdateConfig {
                name: "nope".into(),
                config: tuned,
            }
            .encode(),
        ));
        assert!(missing.unwrap_err().contains("not found"));
    }

    #[test]
    fn commands_apply_refuse_and_survive_snapshots() {
        let app = MetaApp::default();
        let ok = |b: Vec<u8>| decode_outcome(&b);
        assert!(
            ok(app.apply(
                1,
                &MetaCommand::PutMember {
                    id: 1,
                    info: NodeInfo::new("a:1", "a:2")
                }
                .encode()
            ))
            .is_ok()
        );
        assert!(ok(app.apply(2, &create("c", &[1, 2]))).is_ok());
        assert_eq!(app.state().next_group, 3);
        // Same name again, and reused group ids, are refused and change nothing.
        assert!(ok(app.apply(3, &create("c", &[3]))).is_err());
        assert!(ok(app.apply(4, &create("d", &[2]))).is_err());
        assert!(!app.state().collections.contains_key("d"));
        // A replayed index is skipped.
        assert!(ok(app.apply(4, &create("e", &[5]))).is_ok());
        assert!(!app.state().collections.contains_key("e"));
        // Centroids: first writer wins.
        let sample = [0.0f32, 1.0, 5.0, 6.0];
        let c1 = CentroidPlacement::train(&sample, 1, crate::index::Metric::L2, 2, 2, 1);
        let c2 = CentroidPlacement::train(
            &[10.0, 11.0, 50.0, 60.0],
            1,
            crate::index::Metric::L2,
            2,
            2,
            2,
        );
        assert_ne!(c1, c2);
        let set = |i, c: &CentroidPlacement| {
            let out = ok(app.apply(
                i,
                &MetaCommand::SetCentroids {
                    name: "c".into(),
                    centroids: c.clone(),
                }
                .encode(),
            ))
            .unwrap();
            postcard::from_bytes::<CentroidPlacement>(&out).unwrap()
        };
        assert_eq!(set(5, &c1), c1);
        assert_eq!(set(6, &c2), c1);
        assert!(
            ok(app.apply(
                7,
                &MetaCommand::SetReplicas {
                    name: "c".into(),
                    shard: 1,
                    replicas: vec![2]
                }
                .encode()
            ))
            .is_ok()
        );
        assert!(app.state().reconfigured.contains(&2));
        assert_eq!(app.state().find_group(2).unwrap().meta.replicas, vec![2]);

        let dir = tempfile::tempdir().unwrap();
        app.snapshot(dir.path()).unwrap();
        let other = MetaApp::default();
        other.restore(dir.path()).unwrap();
        assert_eq!(*other.state(), *app.state());
        // A corrupted snapshot is refused.
        let path = dir.path().join(STATE_FILE);
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        bytes[n - 6] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(other.restore(dir.path()).is_err());

        assert!(
            ok(app.apply(
                8,
                &MetaCommand::DeleteCollection { name: "c".into() }.encode()
            ))
            .is_ok()
        );
        assert!(app.state().collections.is_empty());
        assert_eq!(app.state().next_group, 3);
    }

    #[test]
    fn alias_batches_apply_all_or_nothing_and_die_with_their_collection() {
        let app = MetaApp::default();
        let ok = |b: Vec<u8>| decode_outcome(&b);
        assert!(ok(app.apply(1, &create("v1", &[1]))).is_ok());
        assert!(ok(app.apply(2, &create("v2", &[2]))).is_ok());
        let aliases = |i, actions: Vec<AliasAction>| {
            ok(app.apply(i, &MetaCommand::UpdateAliases { actions }.encode()))
        };
        let create_alias = |c: &str, a: &str| AliasAction::Create {
            collection: c.into(),
            alias: a.into(),
        };
        assert!(aliases(3, vec![create_alias("v1", "live")]).is_ok());
        assert_eq!(app.state().resolve("live").unwrap().0, "v1");
        assert_eq!(app.state().resolve("v2").unwrap().0, "v2");
        assert!(app.state().resolve("nope").is_none());
        // A batch whose last action fails changes nothing, not even its first actions.
        let err = aliases(
            4,
            vec![
                AliasAction::Delete {
                    alias: "live".into(),
                },
                create_alias("v2", "live"),
                create_alias("missing", "x"),
            ],
        )
        .unwrap_err();
        assert!(err.contains("`missing` not found"), "{err}");
        assert_eq!(app.state().resolve("live").unwrap().0, "v1");
        // The swap itself.
        assert!(
            aliases(
                5,
                vec![
                    AliasAction::Delete {
                        alias: "live".into()
                    },
                    create_alias("v2", "live"),
                ]
            )
            .is_ok()
        );
        assert_eq!(app.state().resolve("live").unwrap().0, "v2");
        // An alias may not take a collection's name, nor a collection an alias's.
        assert!(aliases(6, vec![create_alias("v2", "v1")]).is_err());
        assert!(ok(app.apply(7, &create("live", &[3]))).is_err());
        let renamed = aliases(
            8,
            vec![AliasAction::Rename {
                old: "live".into(),
                new: "prod".into(),
            }],
        );
        assert!(renamed.is_ok());
        assert_eq!(
            app.state().aliases_of(Some("v2")),
            vec![("prod".to_string(), "v2".to_string())]
        );
        assert!(aliases(9, vec![create_alias("v1", "old")]).is_ok());
        assert_eq!(app.state().aliases_of(None).len(), 2);
        // Deleting a collection drops its aliases, and only its.
        assert!(
            ok(app.apply(
                10,
                &MetaCommand::DeleteCollection { name: "v2".into() }.encode()
            ))
            .is_ok()
        );
        assert_eq!(
            app.state().aliases_of(None),
            vec![("old".to_string(), "v1".to_string())]
        );
        // Aliases survive a snapshot.
        let dir = tempfile::tempdir().unwrap();
        app.snapshot(dir.path()).unwrap();
        let other = MetaApp::default();
        other.restore(dir.path()).unwrap();
        assert_eq!(other.state().aliases, app.state().aliases);
    }

    /// `tests/fixtures/cluster_state_v1` is `cluster-state.bin` as written before the storage
    /// envelope (never regenerate it): it must restore completely in every later build.
    #[test]
    fn cluster_state_v1_fixture_restores() {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/cluster_state_v1");
        let app = MetaApp::default();
        app.restore(&fixture).unwrap();
        let state = app.state();
        assert_eq!(state.applied_index, 5);
        assert_eq!(state.members.len(), 2);
        assert_eq!(state.members[&2].api_addr, "127.0.0.1:6334");
        assert_eq!(state.next_group, 3);
        assert!(state.reconfigured.contains(&2));
        let c = &state.collections["c"];
        assert_eq!(c.config, config());
        assert_eq!(c.shards.len(), 2);
        assert_eq!(c.shards[1].replicas, vec![2]);
        assert!(c.centroids.is_some());
        // Written again, it is an envelope of the current version that restores the same.
        let dir = tempfile::tempdir().unwrap();
        app.snapshot(dir.path()).unwrap();
        let bytes = std::fs::read(dir.path().join(STATE_FILE)).unwrap();
        assert_eq!(&bytes[..8], &envelope::CLUSTER_STATE.magic);
        let other = MetaApp::default();
        other.restore(dir.path()).unwrap();
        assert_eq!(*other.state(), *state);
    }
}
