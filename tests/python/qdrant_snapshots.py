"""Drives shoal's snapshots API with the official qdrant-client (REST) and checks every result
against a model of the points.

Usage: python qdrant_snapshots.py http://127.0.0.1:PORT DATA_DIR
Run by tests/qdrant_client.rs, which starts the server and provides the virtualenv. The 11
methods checked: create_snapshot, list_snapshots, delete_snapshot, recover_snapshot,
create_full_snapshot, list_full_snapshots, delete_full_snapshot, create_shard_snapshot,
list_shard_snapshots, delete_shard_snapshot, recover_shard_snapshot.
"""

import hashlib
import math
import os
import sys

import httpx
from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

url = sys.argv[1]
data_dir = os.path.realpath(sys.argv[2])
client = QdrantClient(url=url, prefer_grpc=False, timeout=60)
name = "snap"
dim = 4
n = 200


def vec(i):
    return [math.cos(i), math.sin(i * 1.3), math.cos(2.1 * i), 0.5 + (i % 5)]


def payload(i, rnd):
    return {"group": i % 3, "tag": f"t{i % 4}-{rnd}"}


# Two shards, small sealed segments (shoal's own ivf_pq_config, so the snapshot holds segment
# files as well as rows).
r = httpx.put(f"{url}/collections/{name}", json={
    "vectors": {"size": dim, "distance": "Cosine"}, "shard_number": 2,
    "ivf_pq_config": {"nlist": 4, "seal_threshold": 64}})
assert r.status_code == 200, r.text
client.create_payload_index(name, "group", models.PayloadSchemaType.INTEGER, wait=True)
client.upsert(name, wait=True, points=[
    models.PointStruct(id=i, vector=vec(i), payload=payload(i, 0)) for i in range(n)])
client.delete(name, points_selector=models.PointIdsList(points=list(range(0, n, 7))), wait=True)
model = {i: payload(i, 0) for i in range(n) if i % 7 != 0}


def unit(v):
    norm = math.sqrt(sum(x * x for x in v))
    return [x / norm for x in v]


def exact_top(q, k=10, group=None):
    qu = unit(q)
    scored = sorted(
        ((-sum(a * b for a, b in zip(qu, unit(vec(i)))), i) for i, p in model.items()
         if group is None or p["group"] == group))
    return [i for _, i in scored[:k]]


def check(coll, what):
    """The collection's answers equal the model's."""
    assert client.count(coll, exact=True).count == len(model), what
    got = client.retrieve(coll, ids=list(range(n + 10)), with_payload=True, with_vectors=True)
    assert {p.id: p.payload for p in got} == model, what
    for p in got:
        assert all(abs(a - b) < 1e-5 for a, b in zip(p.vector, unit(vec(p.id)))), (what, p.id)
    for q in (1, 57, 1000):
        hits = client.query_points(coll, query=vec(q), limit=10,
                                   search_params=models.SearchParams(exact=True)).points
        assert [h.id for h in hits] == exact_top(vec(q)), (what, q)
        hits = client.query_points(
            coll, query=vec(q), limit=5, search_params=models.SearchParams(exact=True),
            query_filter=models.Filter(must=[models.FieldCondition(
                key="group", match=models.MatchValue(value=1))])).points
        assert [h.id for h in hits] == exact_top(vec(q), 5, 1), (what, q)
    schema = client.get_collection(coll).payload_schema
    assert schema["group"].data_type == models.PayloadSchemaType.INTEGER, (what, schema)


def download(path):
    r = httpx.get(url + path)
    assert r.status_code == 200, r.text
    return r.content


def status_of(call):
    try:
        call()
    except UnexpectedResponse as e:
        return e.status_code
    raise AssertionError("expected an error")


check(name, "original")

# Collection snapshots: create, list, download (checksum), recover, delete.
desc = client.create_snapshot(name, wait=True)
assert desc.name.endswith(".snapshot") and desc.size > 0 and desc.creation_time, desc
body = download(f"/collections/{name}/snapshots/{desc.name}")
assert len(body) == desc.size and hashlib.sha256(body).hexdigest() == desc.checksum, desc
listed = client.list_snapshots(name)
assert [(s.name, s.size, s.checksum) for s in listed] == [(desc.name, desc.size, desc.checksum)]
location = f"file://{data_dir}/snapshots/{name}/{desc.name}"

assert status_of(lambda: client.recover_snapshot(name, location, checksum="0" * 64)) == 400
assert status_of(lambda: client.recover_snapshot(name, "file:///etc/passwd")) == 400
assert status_of(lambda: client.delete_snapshot(name, "missing.snapshot")) == 404
assert status_of(lambda: client.create_snapshot("no_such_collection")) == 404

client.delete_collection(name)
assert client.recover_snapshot(name, location, checksum=desc.checksum,
                               priority=models.SnapshotPriority.SNAPSHOT, wait=True) is True
check(name, "recovered from file://")
assert client.recover_snapshot("snap_copy", f"{url}/collections/{name}/snapshots/{desc.name}") is True
check("snap_copy", "recovered from http://")
assert client.delete_snapshot(name, desc.name, wait=True) is True
assert client.list_snapshots(name) == []

# Shard snapshots: both shards snapshotted, the data changed, each shard recovered.
s0 = client.create_shard_snapshot(name, 0, wait=True)
s1 = client.create_shard_snapshot(name, 1, wait=True)
assert s0.name != s1.name and s0.size > 0 and s1.size > 0
assert [s.name for s in client.list_shard_snapshots(name, 0)] == [s0.name]
assert [s.name for s in client.list_shard_snapshots(name, 1)] == [s1.name]
body = download(f"/collections/{name}/shards/1/snapshots/{s1.name}")
assert hashlib.sha256(body).hexdigest() == s1.checksum
saved = dict(model)
client.upsert(name, wait=True, points=[
    models.PointStruct(id=i, vector=vec(i), payload=payload(i, 1)) for i in range(n + 10)])
loc = lambda s, d: f"file://{data_dir}/snapshots/{name}/shards/{s}/{d.name}"
assert client.recover_shard_snapshot(name, 1, loc(1, s1), checksum=s1.checksum, wait=True) is True
# Shard 1 is back as it was, shard 0 keeps the new payloads: every point is one or the other.
mixed = {p.id: p.payload for p in client.scroll(name, limit=1000, with_payload=True)[0]}
old = {i for i, p in mixed.items() if saved.get(i) == p}
new = {i for i, p in mixed.items() if p == payload(i, 1)}
assert old and new and old | new == set(mixed) and not old & new, (len(old), len(new))
assert client.recover_shard_snapshot(name, 0, loc(0, s0), checksum=s0.checksum) is True
check(name, "both shards recovered")
assert status_of(lambda: client.recover_shard_snapshot(name, 0, loc(1, s1))) == 400
assert client.delete_shard_snapshot(name, 0, s0.name, wait=True) is True
assert client.delete_shard_snapshot(name, 1, s1.name) is True
assert client.list_shard_snapshots(name, 0) == [] and client.list_shard_snapshots(name, 1) == []

# Full snapshots.
full = client.create_full_snapshot(wait=True)
assert full.name.startswith("full-snapshot-") and full.size > 0, full
body = download(f"/snapshots/{full.name}")
assert hashlib.sha256(body).hexdigest() == full.checksum
assert [s.name for s in client.list_full_snapshots()] == [full.name]
assert client.delete_full_snapshot(full.name, wait=True) is True
assert client.list_full_snapshots() == []
assert status_of(lambda: client.delete_full_snapshot(full.name)) == 404

print("snapshots: ok")
