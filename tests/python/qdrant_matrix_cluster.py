"""Drives a running shoal server with the official qdrant-client (REST) through the distance
matrix (search_matrix_pairs, search_matrix_offsets), cluster_status, cluster_telemetry,
recover_current_peer and get_optimizations, and checks every answer: the matrix against brute force over the ids the
server sampled, the cluster fields against what a one-node cluster must show.

Usage: python qdrant_matrix_cluster.py http://127.0.0.1:PORT
Run by tests/qdrant_client.rs, which starts the server and provides the virtualenv.
"""

import sys
import time

import httpx

from qdrant_client import QdrantClient, models

url = sys.argv[1]
client = QdrantClient(url=url, prefer_grpc=False, timeout=30)
name = "matrix"
N = 200


def vec(i):
    # Integer components: squared distances are exact, ties broken by id on both sides.
    return [float(i % 13), float((i * 7) % 11), float(i % 4), float((i // 3) % 5)]


def l2(a, b):
    return sum((x - y) ** 2 for x, y in zip(a, b))


client.create_collection(
    collection_name=name,
    vectors_config=models.VectorParams(size=4, distance=models.Distance.EUCLID),
    shard_number=3,
)
client.upsert(
    collection_name=name,
    wait=True,
    points=[models.PointStruct(id=i, vector=vec(i), payload={"kind": i % 3}) for i in range(N)],
)


def model(sampled, limit):
    out = {}
    for a in sampled:
        row = sorted((l2(vec(a), vec(b)), b) for b in sampled if b != a)[:limit]
        out[a] = [(b, d ** 0.5) for d, b in row]
    return out


def check_rows(sampled, rows, limit, keep):
    assert len(set(sampled)) == len(sampled), sampled
    assert all(0 <= i < N and keep(i) for i in sampled), sampled
    want = model(sampled, limit)
    assert set(rows) <= set(sampled), (rows, sampled)
    for a, row in want.items():
        got = rows.get(a, [])
        assert [b for b, _ in got] == [b for b, _ in row], (a, got, row)
        for (_, g), (_, w) in zip(got, row):
            assert abs(g - w) < 1e-4, (a, g, w)


def pairs_rows(res):
    order, rows = [], {}
    for p in res.pairs:
        if not order or order[-1] != p.a:
            assert p.a not in order, res
            order.append(p.a)
        rows.setdefault(p.a, []).append((p.b, p.score))
    return order, rows


def offsets_rows(res):
    assert len(res.offsets_row) == len(res.offsets_col) == len(res.scores)
    rows = {}
    for r, c, s in zip(res.offsets_row, res.offsets_col, res.scores):
        rows.setdefault(res.ids[r], []).append((res.ids[c], s))
    return list(res.ids), rows


# search_matrix_pairs: defaults (sample 10, limit 3), then larger, then filtered.
res = client.search_matrix_pairs(collection_name=name)
assert isinstance(res, models.SearchMatrixPairsResponse), res
order, rows = pairs_rows(res)
assert len(order) == 10, order
check_rows(order, rows, 3, lambda i: True)
samples = set()
for _ in range(3):
    order, rows = pairs_rows(client.search_matrix_pairs(collection_name=name, sample=40, limit=5))
    assert len(order) == 40
    check_rows(order, rows, 5, lambda i: True)
    samples.add(frozenset(order))
assert len(samples) > 1, "the same sample every call"
flt = models.Filter(must=[models.FieldCondition(key="kind", match=models.MatchValue(value=1))])
order, rows = pairs_rows(
    client.search_matrix_pairs(collection_name=name, query_filter=flt, sample=25, limit=4))
assert len(order) == 25
check_rows(order, rows, 4, lambda i: i % 3 == 1)

# search_matrix_offsets: the whole collection as the sample (every shard's points), filtered.
res = client.search_matrix_offsets(collection_name=name, sample=N, limit=2)
assert isinstance(res, models.SearchMatrixOffsetsResponse), res
ids, rows = offsets_rows(res)
assert sorted(ids) == list(range(N)), ids
check_rows(ids, rows, 2, lambda i: True)
res = client.search_matrix_offsets(collection_name=name, query_filter=flt, sample=30, limit=3,
                                   consistency=models.ReadConsistencyType.MAJORITY)
ids, rows = offsets_rows(res)
assert len(ids) == 30
check_rows(ids, rows, 3, lambda i: i % 3 == 1)

# Bad input: a JSON 400 naming what is wrong.
for kwargs, needle in [({"sample": 1}, "sample = 1"), ({"sample": 5000}, "MAX_MATRIX_SAMPLE"),
                       ({"limit": 0}, "limit = 0"), ({"using": "image"}, "image")]:
    try:
        client.search_matrix_pairs(collection_name=name, **kwargs)
    except Exception as e:  # qdrant_client's UnexpectedResponse
        assert getattr(e, "status_code", None) == 400 and needle in str(e), (kwargs, e)
    else:
        raise AssertionError(f"{kwargs} accepted")

# cluster_status parses as Qdrant's ClusterStatusOneOf1 with real values.
st = client.cluster_status()
assert isinstance(st, models.ClusterStatusOneOf1), st
assert st.status == "enabled" and st.peer_id == 1, st
# A cluster of one has no internal port: its peer URI is its REST address.
assert set(st.peers) == {"1"} and st.peers["1"].uri == url + "/", st.peers
assert st.raft_info.role == models.StateRole.LEADER and st.raft_info.leader == 1, st.raft_info
assert st.raft_info.is_voter and st.raft_info.term >= 1 and st.raft_info.commit >= 1
assert isinstance(st.consensus_thread_status, models.ConsensusThreadStatusOneOf), st
assert st.consensus_thread_status.consensus_thread_status == "working"
assert st.message_send_failures == {}
commit = st.raft_info.commit
client.create_collection(collection_name="another",
                         vectors_config=models.VectorParams(size=2, distance=models.Distance.DOT))
assert client.cluster_status().raft_info.commit > commit, "commit did not move with a metadata write"

# cluster_telemetry: the collection's shards and points, this peer with its details.
tel = client.cluster_telemetry()
assert isinstance(tel, models.DistributedTelemetryData), tel
col = tel.collections[name]
assert col.id == name and len(col.shards) == 3, col
assert sum(s.replicas[0].num_points for s in col.shards) == N, col
assert all(s.replicas[0].peer_id == 1 and s.replicas[0].state == models.ReplicaState.ACTIVE
           for s in col.shards), col
assert "another" in tel.collections
assert tel.cluster.enabled and tel.cluster.number_of_peers == 1, tel.cluster
me = tel.cluster.peers["1"]
assert me.responsive and me.details.role == models.StateRole.LEADER, me
assert me.details.term == client.cluster_status().raft_info.term

# recover_current_peer: the node's Raft storage runs, so recovery answers true.
assert client.recover_current_peer() is True

# get_optimizations: parses as Qdrant's OptimizationsResponse; the index builds of a
# two-shard collection sealing at 64 points show as done, the idle segments hold the indexed
# points (shoal's ivf_pq_config is sent as plain JSON: the client has no such field).
assert httpx.put(url + "/collections/opt", json={
    "vectors": {"size": 4, "distance": "Euclid"}, "shard_number": 2,
    "ivf_pq_config": {"nlist": 4, "seal_threshold": 64}}).status_code == 200
client.upsert(collection_name="opt", wait=True,
              points=[models.PointStruct(id=i, vector=vec(i)) for i in range(400)])

for _ in range(300):
    opt = client.get_optimizations("opt", with_=["queued", "completed", "idle_segments"])
    info = client.get_collection("opt")
    if not opt.running and info.indexed_vectors_count and info.status == models.CollectionStatus.GREEN:
        break
    time.sleep(0.2)
else:
    raise AssertionError(f"builds did not finish: {opt}")
assert isinstance(opt, models.OptimizationsResponse), opt
assert sum(s.points_count for s in opt.idle_segments) == info.indexed_vectors_count, (opt, info)
assert opt.summary.idle_segments == len(opt.idle_segments)
builds = [j for j in opt.completed if j.optimizer == "index_build"]
assert builds and all(j.status == models.TrackerStatusOneOf.DONE and j.progress.total >= 64
                      for j in builds), opt.completed
assert len(client.get_optimizations("opt", completed_limit=1).completed) == 1

print("qdrant-client matrix and cluster: ok")
