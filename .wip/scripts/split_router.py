import re,sys
p='/work/wt/core/src/router/mod.rs'
s=open(p).read()
def between(a,b):
    i=s.index(a); j=s.index(b,i)
    return s[i:j]
doc_end=s.index('pub mod exec;')
doc=s[:doc_end]
types=between('/// How a read wants to be served.','/// Router counters beyond')
read_opts=types[:types.index('/// The answer to a write.')]
answers=types[types.index('/// The answer to a write.'):types.index('/// A scroll page.')]
page_and_ranked=types[types.index('/// A scroll page.'):]
page=page_and_ranked[:page_and_ranked.index('impl Ranked for Hit')]
ranked=page_and_ranked[page_and_ranked.index('impl Ranked for Hit'):]
counters=between('/// Router counters beyond','/// Routes point operations')
router_struct=between('/// Routes point operations','/// How one shard call ended')
shard_result=between('/// How one shard call ended','impl Router {')
impl_head=between('impl Router {','    // ---------------------------------------------------------------- replica choice')
replicas=between('    // ---------------------------------------------------------------- replica choice','    // ---------------------------------------------------------------- reads')
reads=between('    // ---------------------------------------------------------------- reads','    // ---------------------------------------------------------------- writes')
writes=between('    // ---------------------------------------------------------------- writes','    // ---------------------------------------------------------------- metrics')
metrics=between('    // ---------------------------------------------------------------- metrics','/// The router\'s own checks of an upsert')
check_points=between('/// The router\'s own checks of an upsert','/// Joins per-shard scroll pages')
merge_pages=between('/// Joins per-shard scroll pages','/// Service [`rpc::SERVICE`]')
service=s[s.index('/// Service [`rpc::SERVICE`]'):]
# all_shards lives in reads; move to mod impl
a=reads.index('    fn all_shards(')
b=reads.index('    /// Nearest neighbours across')
all_shards=reads[a:b]
reads=reads[:a]+reads[b:]
def strip_marker(t):
    return re.sub(r'^    // -{10,}[^\n]*\n\n?','',t)
replicas=strip_marker(replicas); reads=strip_marker(reads); writes=strip_marker(writes); metrics=strip_marker(metrics)
# metrics: impl body ends with "}\n}\n\n" closing impl Router
metrics=metrics.rstrip()
assert metrics.endswith('}\n}') or metrics.endswith('}\n}'), metrics[-20:]
metrics=metrics[:-1].rstrip()+'\n'
impl_head=impl_head.rstrip()+'\n\n'+all_shards.rstrip()+'\n}\n'
mod=doc+'''mod answer;
pub mod exec;
pub mod hlc;
pub mod merge;
mod metrics;
mod read;
mod replicas;
pub mod resilience;
pub mod rpc;
mod service;
pub mod token;
mod write;

#[cfg(test)]
mod tests;

pub use crate::collection::SearchQuery;
pub use answer::{Answer, Page, WriteAck};
pub use read::ReadOptions;
pub use resilience::{ResilienceConfig, RoutingStats};
pub use service::ShardService;
pub use token::{Consistency, ConsistencyToken, TokenError};

use crate::cluster::placement::HashRing;
use crate::cluster::{Cluster, CollectionMeta};
use crate::collection::{CollectionConfig, Error};
use crate::raft::{GroupId, NodeId};
use metrics::Counters;
use resilience::Resilience;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

'''+between('/// Router settings.','/// How a read wants to be served.')+router_struct+impl_head
open(p,'w').write(mod)
R='/work/wt/core/src/router/'
open(R+'answer.rs','w').write('''//! What the router answers: a write's acknowledgement, a read's value with the shards it
//! lacks, a scroll page.

use super::ConsistencyToken;
use crate::shard::{PointId, Record};

'''+answers+page)
open(R+'read.rs','w').write('''//! Reads: one call per needed shard, in parallel, each through the resilience layer to a
//! replica chosen by consistency level; the answers merged (hits by distance then id, records
//! by id, counts summed, scroll pages joined).

use super::merge::{self, Order, Ranked};
use super::resilience::Failure;
use super::rpc::{ReadSpec, ShardRequest, ShardResponse, ShardSearch};
use super::{Answer, Consistency, ConsistencyToken, Page, Router, SearchQuery};
use crate::cluster::CollectionMeta;
use crate::collection::Error;
use crate::raft::GroupId;
use crate::shard::{Filter, Hit, PointId, Record};
use futures_util::future::join_all;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

'''+read_opts+ranked+shard_result+'impl Router {\n'+reads.rstrip()+'\n}\n\n'+merge_pages)
open(R+'replicas.rs','w').write('''//! Which replica a call goes to (the leader for writes and strong reads, else by load and
//! locality), and one call to it: local when this node holds the replica, else the data-plane
//! service on the replica's node; answers classified for the resilience layer.

use super::resilience::CallError;
use super::rpc::{self, ErrorKind, ShardRequest, ShardResponse};
use super::{Consistency, Router};
use crate::cluster::ShardMeta;
use crate::collection::Error;
use crate::raft::{GroupId, NodeId, TransportError};
use std::sync::atomic::Ordering;
use std::time::Duration;

impl Router {
'''+replicas.rstrip()+'\n}\n')
open(R+'write.rs','w').write('''//! Writes: split by placement, one command list per shard, each sent to the shard's leader
//! (following redirects and elections until the write deadline), the log indexes collected into
//! a consistency token. Centroid placement trains and stores its quantiser on the first upsert.

use super::resilience::CallError;
use super::rpc::{ShardRequest, ShardResponse};
use super::{ConsistencyToken, Router, WriteAck};
use crate::cluster::placement::CentroidPlacement;
use crate::cluster::{CollectionMeta, ShardMeta};
use crate::collection::Error;
use crate::shard::{Filter, PointId, PointWrite, ShardCommand};
use futures_util::future::join_all;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use tokio::time::Instant;

impl Router {
'''+writes.rstrip()+'\n}\n\n'+check_points)
open(R+'metrics.rs','w').write('''//! The router's counters and their Prometheus text.

use super::Router;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

'''+counters.replace('struct Counters','pub(super) struct Counters').replace(': AtomicU64,',': AtomicU64, //FIELD')+'impl Router {\n'+metrics+'}\n')
import re as _re
t=open(R+'metrics.rs').read()
t=_re.sub(r'\n    (\w+): AtomicU64, //FIELD', r'\n    pub(super) \1: AtomicU64,', t)
open(R+'metrics.rs','w').write(t)
open(R+'service.rs','w').write('''//! The data-plane service other nodes' routers call to reach this node's replicas.

use super::rpc::{self, ErrorKind, ShardRequest, ShardResponse};
use crate::cluster::Cluster;
use crate::raft::NodeId;
use crate::raft::tcp::{AppFuture, AppService};
use std::sync::{Arc, Weak};

'''+service)
