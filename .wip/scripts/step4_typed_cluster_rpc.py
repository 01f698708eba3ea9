import re
root='/work/wt/core/src/cluster/'
p=root+'rpc.rs'
s=open(p).read()
s=s.replace('''//! node's replicas. Messages are postcard; the enums are append-only.''','''//! node's replicas. Messages are postcard; the enums are append-only.
//!
//! A message is a [`ClusterCall`]: a [`ClusterRequest`] and its [`Hop`]. Nothing in either nests
//! (a forwarded request is marked, not wrapped), so decoding a message never recurses, whatever
//! bytes arrive. Every request has one typed [`Answer`].''')
s=s.replace('''    /// A request a member already forwarded to the node it believes leads: run it here or
    /// answer `NotLeader`, never forward again (no forwarding loops during elections).
    Forwarded(Box<ClusterRequest>),
''','')
s=s.replace('''            | ClusterRequest::ShardSetVoters { .. } => false,
            ClusterRequest::Forwarded(inner) => inner.needs_meta_leader(),
            _ => true,''','''            | ClusterRequest::ShardSetVoters { .. } => false,
            _ => true,''')
s=s.replace('''/// The answer of the cluster service.''','''/// How a request reached the node that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Hop {
    /// Sent by the node that asks: a member that cannot run it forwards it once, to the
    /// metadata leader it believes in.
    Direct,
    /// Already forwarded by a member: run it here or answer `NotLeader`, never forward again
    /// (no forwarding loops during elections).
    Forwarded,
}

/// One message to the cluster service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterCall {
    /// How it got here.
    pub hop: Hop,
    /// What to do.
    pub request: ClusterRequest,
}

impl ClusterCall {
    /// Encode for the wire.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Decode from the wire: any bytes give a call or an error, in time linear in their length.
    pub fn decode(bytes: &[u8]) -> Result<ClusterCall, Error> {
        postcard::from_bytes(bytes).map_err(|e| Error::bad(format!("bad cluster request: {e}")))
    }
}

/// What a request that succeeded answers, one variant per kind of result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    /// Nothing beyond success (joins, creates, moves, membership changes).
    Done,
    /// [`ClusterRequest::DeleteCollection`]: the shard groups the collection had (empty: it did
    /// not exist).
    Deleted {
        /// Its shard groups.
        groups: Vec<GroupId>,
    },
    /// [`ClusterRequest::SetCentroids`]: the placement stored (the first writer's).
    Centroids(CentroidPlacement),
}

/// The answer of the cluster service.''')
s=s.replace('''    /// Done; `index` is the metadata log index to wait for locally, `body` any result bytes.
    Done {
        /// Metadata log index that holds the change (or the leader's read index).
        index: u64,
        /// Result bytes (e.g. the stored centroids).
        body: Vec<u8>,
    },''','''    /// Done; `index` is the metadata log index to wait for locally.
    Done {
        /// Metadata log index that holds the change (or the leader's read index).
        index: u64,
        /// The request's result.
        answer: Answer,
    },''')
old=s[s.index('''            let Some(cluster) = cluster.upgrade() else {'''):s.index('''            reply.encode()''')]
new='''            // Decoded first: a bad message is refused the same way, whatever the node's state.
            let call = match ClusterCall::decode(&payload) {
                Ok(call) => call,
                Err(e) => return ClusterReply::Failed(e).encode(),
            };
            let Some(cluster) = cluster.upgrade() else {
                return ClusterReply::Failed(Error::unavailable("shutting down")).encode();
            };
            let reply = match call {
                ClusterCall {
                    hop: Hop::Forwarded,
                    request,
                } => cluster.handle_here(request).await,
                ClusterCall { request, .. }
                    if request.needs_meta_leader() && !cluster.is_meta_leader() =>
                {
                    // One forwarding hop to the leader this node believes in (joins arrive
                    // at whichever member `--join` named).
                    match cluster.meta_group().metrics().leader {
                        Some(l) if l != cluster.node_id() => {
                            let fwd = ClusterCall {
                                hop: Hop::Forwarded,
                                request,
                            };
                            cluster
                                .send_call(l, None, &fwd, super::FORWARD_TIMEOUT)
                                .await
                                .unwrap_or(ClusterReply::NotLeader { leader: Some(l) })
                        }
                        leader => ClusterReply::NotLeader { leader },
                    }
                }
                ClusterCall { request, .. } => cluster.handle_here(request).await,
            };
'''
s=s.replace(old,new)
s+='''
#[cfg(test)]
mod tests {
    use super::*;

    fn serve(payload: Vec<u8>) -> ClusterReply {
        let service = ClusterService {
            cluster: Weak::new(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        ClusterReply::decode(&rt.block_on(service.handle(1, payload)))
    }

    /// Issue 14, finding 1: the old `Forwarded(Box<ClusterRequest>)` let one message nest a
    /// request a million deep and overflow the decoder's stack. Its tag repeated now is just a
    /// bad message, refused at once.
    #[test]
    fn deeply_nested_and_garbage_messages_are_refused_without_crashing() {
        const OLD_FORWARDED_TAG: u8 = 8;
        let nested = vec![OLD_FORWARDED_TAG; 1 << 20];
        assert!(ClusterCall::decode(&nested).is_err());
        match serve(nested) {
            ClusterReply::Failed(Error::BadRequest(m)) => assert!(m.contains("bad cluster request")),
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Every prefix of a valid message, and seeded garbage, decode or fail: never panic.
        let valid = ClusterCall {
            hop: Hop::Direct,
            request: ClusterRequest::Join {
                id: 3,
                info: NodeInfo::new("a:1", "a:2"),
            },
        }
        .encode();
        for n in 0..valid.len() {
            assert!(ClusterCall::decode(&valid[..n]).is_err(), "prefix {n}");
        }
        assert!(ClusterCall::decode(&valid).is_ok());
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..2000usize {
            let bytes: Vec<u8> = (0..len % 300)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = ClusterCall::decode(&bytes);
            let _ = ClusterReply::decode(&bytes);
        }
        // A node that is gone answers a valid message "unavailable", never runs it.
        assert!(matches!(serve(valid), ClusterReply::Failed(Error::Unavailable(_))));
    }
}
'''
open(p,'w').write(s)

p=root+'mod.rs'
s=open(p).read()
s=s.replace('pub use rpc::{CLUSTER_SERVICE, ClusterReply, ClusterRequest};','pub use rpc::{Answer, CLUSTER_SERVICE, ClusterCall, ClusterReply, ClusterRequest, Hop};')
s=s.replace('''    /// Send a cluster request to `node` (or to the internal address `addr` when the node id is
    /// not known yet, as when joining).
    pub(crate) async fn call_cluster(
        &self,
        node: NodeId,
        addr: Option<&str>,
        req: &ClusterRequest,
        timeout: Duration,
    ) -> Result<ClusterReply, TransportError> {
        let payload = postcard::to_allocvec(req).unwrap_or_default();''','''    /// Send a cluster request to `node` (or to the internal address `addr` when the node id is
    /// not known yet, as when joining).
    pub(crate) async fn call_cluster(
        &self,
        node: NodeId,
        addr: Option<&str>,
        req: &ClusterRequest,
        timeout: Duration,
    ) -> Result<ClusterReply, TransportError> {
        let call = ClusterCall {
            hop: Hop::Direct,
            request: req.clone(),
        };
        self.send_call(node, addr, &call, timeout).await
    }

    /// Send a cluster message to `node` (or to the internal address `addr`).
    pub(crate) async fn send_call(
        &self,
        node: NodeId,
        addr: Option<&str>,
        call: &ClusterCall,
        timeout: Duration,
    ) -> Result<ClusterReply, TransportError> {
        let payload = call.encode();''')
s=s.replace('''    ) -> Result<(u64, Vec<u8>), Error> {
        let deadline = Instant::now() + timeout;''','''    ) -> Result<(u64, Answer), Error> {
        let deadline = Instant::now() + timeout;''')
s=s.replace('''                ClusterReply::Done { index, body } => return Ok((index, body)),''','''                ClusterReply::Done { index, answer } => return Ok((index, answer)),''')
s=s.replace('''        let result = match req {
            ClusterRequest::Forwarded(inner) => return Box::pin(self.handle_here(*inner)).await,
            ClusterRequest::Status''','''        let result = match req {
            ClusterRequest::Status''')
s=s.replace('''            Ok((index, body)) => ClusterReply::Done { index, body },''','''            Ok((index, answer)) => ClusterReply::Done { index, answer },''')
s=s.replace('''        let (index, body) = self
            .meta_request(
                ClusterRequest::DeleteCollection {''','''        let (index, answer) = self
            .meta_request(
                ClusterRequest::DeleteCollection {''')
s=s.replace('''        let groups: Vec<GroupId> = body
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
            .collect();''','''        let Answer::Deleted { groups } = answer else {
            return Err(Error::internal(format!(
                "unexpected answer to a delete: {answer:?}"
            )));
        };''')
s=s.replace('''        let (index, body) = self
            .meta_request(
                ClusterRequest::SetCentroids {''','''        let (index, answer) = self
            .meta_request(
                ClusterRequest::SetCentroids {''')
s=s.replace('''        postcard::from_bytes(&body).map_err(|e| Error::Internal(e.to_string()))''','''        match answer {
            Answer::Centroids(c) => Ok(c),
            other => Err(Error::internal(format!(
                "unexpected answer to set-centroids: {other:?}"
            ))),
        }''')
open(p,'w').write(s)

p=root+'admin.rs'
s=open(p).read()
s=s.replace('use super::rpc::{ClusterReply, ClusterRequest};','use super::rpc::{Answer, ClusterReply, ClusterRequest};')
s=s.replace('type Outcome = Result<(u64, Vec<u8>), Error>;','type Outcome = Result<(u64, Answer), Error>;')
s=s.replace('Ok((index, Vec::new()))','Ok((index, Answer::Done))').replace('Ok((0, Vec::new()))','Ok((0, Answer::Done))')
s=s.replace('''    let groups = coll
        .shards
        .iter()
        .flat_map(|s| s.group.to_le_bytes())
        .collect();
    Ok((index, groups))''','''    let groups = coll.shards.iter().map(|s| s.group).collect();
    Ok((index, Answer::Deleted { groups }))''')
s=s.replace('''        return Ok((index, Answer::Done));
    };
    let (index, _) = c
        .propose(MetaCommand::DeleteCollection {''','''        return Ok((index, Answer::Deleted { groups: Vec::new() }));
    };
    let (index, _) = c
        .propose(MetaCommand::DeleteCollection {''')
s=s.replace('''    c.propose(MetaCommand::SetCentroids {
        name: name.to_owned(),
        centroids,
    })
    .await
}''','''    let (index, stored) = c
        .propose(MetaCommand::SetCentroids {
            name: name.to_owned(),
            centroids,
        })
        .await?;
    let stored = postcard::from_bytes(&stored)
        .map_err(|e| Error::internal(format!("undecodable stored centroids: {e}")))?;
    Ok((index, Answer::Centroids(stored)))
}''')
open(p,'w').write(s)
