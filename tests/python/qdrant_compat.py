"""Drives a running shoal server with the official qdrant-client (REST) and checks the answers.

Usage: python qdrant_compat.py http://127.0.0.1:PORT
Run by tests/qdrant_client.rs, which starts the server and provides the virtualenv.
"""

import math
import sys
import uuid
import warnings

import httpx
from qdrant_client import QdrantClient, models

url = sys.argv[1]
# A client with default settings connects without the "incompatible server version" warning.
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    client = QdrantClient(url=url, prefer_grpc=False, timeout=30)
assert not caught, [str(w.message) for w in caught]
root = httpx.get(url + "/").json()
assert root["title"] == "shoal" and root["shoal_version"], root
name = "compat"
dim = 4

assert not client.collection_exists(name)
assert client.create_collection(
    collection_name=name,
    vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE),
    hnsw_config=models.HnswConfigDiff(m=32),  # accepted and ignored
)
assert client.collection_exists(name)
assert name in [c.name for c in client.get_collections().collections]
info = client.get_collection(name)
assert info.config.params.vectors.size == dim, info
assert info.config.params.vectors.distance == models.Distance.COSINE
assert info.points_count == 0

def vec(i):
    return [math.cos(i), math.sin(i), math.cos(2 * i), 1.0 + (i % 5)]

u = str(uuid.UUID(int=12345))
res = client.upsert(
    collection_name=name,
    wait=True,
    points=[models.PointStruct(id=i, vector=vec(i), payload={"group": i % 3, "name": f"p{i}", "x": i / 2})
            for i in range(0, 20)]
    + [models.PointStruct(id=u, vector=vec(99), payload={"group": 7})],
)
assert res.status == models.UpdateStatus.COMPLETED, res
client.upsert(
    collection_name=name,
    points=models.Batch(ids=[20, 21, 22], vectors=[vec(20), vec(21), vec(22)],
                        payloads=[{"group": i % 3} for i in (20, 21, 22)]),
)
client.upload_points(
    collection_name=name,
    points=[models.PointStruct(id=i, vector=vec(i), payload={"group": i % 3}) for i in range(23, 60)],
    batch_size=16,
    wait=True,
)
assert client.count(name, exact=True).count == 61

def cos(a, b):
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(x * x for x in b))
    return sum(x * y for x, y in zip(a, b)) / (na * nb)

q = vec(7.3)
hits = client.query_points(name, query=q, limit=5, with_payload=True).points
want = sorted(((cos(q, vec(i)), i) for i in range(60)), key=lambda t: (-t[0], t[1]))[:5]
assert [h.id for h in hits] == [i for _, i in want], (hits, want)
for h, (s, _) in zip(hits, want):
    assert abs(h.score - s) < 1e-4, (h.score, s)

flt = models.Filter(must=[models.FieldCondition(key="group", match=models.MatchValue(value=1))],
                    must_not=[models.FieldCondition(key="x", range=models.Range(gte=5.0))])
hits = client.query_points(name, query=q, query_filter=flt, limit=100, with_payload=True).points
assert {h.id for h in hits} == {i for i in range(60) if i % 3 == 1 and (i >= 20 or i / 2 < 5.0)}, hits

batch = client.query_batch_points(name, requests=[
    models.QueryRequest(query=q, limit=3),
    models.QueryRequest(query=vec(1), limit=2, filter=flt),
])
assert len(batch) == 2 and len(batch[0].points) == 3 and len(batch[1].points) == 2

# Queries by example: a point id (its nearest other points) and recommend (average vector of
# the normalised examples, 2*avg(positive) - avg(negative)); the examples are left out.
points = [(i, vec(i)) for i in range(60)] + [(u, vec(99))]
def unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]
def nearest(target, leave_out, k):
    ranked = sorted(((cos(target, v), str(i)) for i, v in points if i not in leave_out),
                    key=lambda t: -t[0])
    return [i for _, i in ranked[:k]]
hits = client.query_points(name, query=7, limit=5).points
assert [str(h.id) for h in hits] == nearest(vec(7), {7}, 5), hits
pos = [(a + b) / 2 for a, b in zip(unit(vec(7)), unit(vec(8)))]
target = [p + (p - n) for p, n in zip(pos, unit(vec(20)))]
hits = client.query_points(name, query=models.RecommendQuery(
    recommend=models.RecommendInput(positive=[7, 8], negative=[20])), limit=5).points
assert [str(h.id) for h in hits] == nearest(target, {7, 8, 20}, 5), hits

# update_vectors replaces the vector and keeps the payload.
client.update_vectors(name, points=[models.PointVectors(id=3, vector=[9.0, 0.0, 0.0, 0.0])],
                      wait=True)
three = client.retrieve(name, ids=[3], with_vectors=True, with_payload=True)[0]
assert three.vector == [1.0, 0.0, 0.0, 0.0] and three.payload["name"] == "p3", three
client.update_vectors(name, points=[models.PointVectors(id=3, vector=vec(3))], wait=True)

got = client.retrieve(name, ids=[1, u, 1000], with_vectors=True, with_payload=True)
assert sorted(str(p.id) for p in got) == sorted(["1", u]), got
one = [p for p in got if p.id == 1][0]
assert one.payload["name"] == "p1" and len(one.vector) == dim

client.delete(name, points_selector=models.PointIdsList(points=[0, 1, u]))
client.delete(name, points_selector=models.FilterSelector(filter=models.Filter(
    must=[models.FieldCondition(key="group", match=models.MatchAny(any=[2]))])))
remaining = {i for i in range(2, 60) if i % 3 != 2}
assert client.count(name).count == len(remaining)
assert client.count(name, count_filter=models.Filter(
    must=[models.FieldCondition(key="group", match=models.MatchValue(value=0))])).count == len(
    [i for i in remaining if i % 3 == 0])

seen, offset = [], None
while True:
    page, offset = client.scroll(name, limit=7, offset=offset, with_payload=False)
    seen += [p.id for p in page]
    if offset is None:
        break
assert seen == sorted(remaining), seen

# update_collection: Qdrant's engine tunings are accepted (no effect), shoal's search settings
# take effect, and what cannot change on a live collection is a 400 naming it.
assert client.update_collection(
    collection_name=name,
    optimizers_config=models.OptimizersConfigDiff(indexing_threshold=10000),
    hnsw_config=models.HnswConfigDiff(m=16),
    collection_params=models.CollectionParamsDiff(on_disk_payload=True),
)
raw = httpx.patch(url + f"/collections/{name}",
                  json={"search_config": {"nprobe": 1, "recall_target": 0.9}})
assert raw.status_code == 200, raw.text
search = httpx.get(url + f"/collections/{name}").json()["result"]["config"]["search_config"]
assert search["nprobe"] == 1 and search["recall_target"] == 0.9, search
try:
    client.update_collection(collection_name=name,
                             collection_params=models.CollectionParamsDiff(replication_factor=3))
    raise AssertionError("a replication factor change was accepted")
except Exception as e:  # qdrant_client's UnexpectedResponse
    assert "replication_factor" in str(e), e
try:
    client.update_collection(collection_name="no_such_collection",
                             optimizers_config=models.OptimizersConfigDiff(indexing_threshold=1))
    raise AssertionError("an update of a missing collection was accepted")
except Exception as e:
    assert "404" in str(e) or "not found" in str(e).lower(), e

# Aliases: create, rename and delete through update_collection_aliases, listed both ways; an
# alias answers as its collection.
assert client.update_collection_aliases(change_aliases_operations=[
    models.CreateAliasOperation(create_alias=models.CreateAlias(
        collection_name=name, alias_name="compat_live"))])
assert [(a.alias_name, a.collection_name) for a in client.get_aliases().aliases] == [
    ("compat_live", name)]
assert [a.alias_name for a in client.get_collection_aliases(name).aliases] == ["compat_live"]
assert client.count("compat_live").count == len(remaining)
assert client.update_collection_aliases(change_aliases_operations=[
    models.RenameAliasOperation(rename_alias=models.RenameAlias(
        old_alias_name="compat_live", new_alias_name="compat_prod"))])
assert [a.alias_name for a in client.get_aliases().aliases] == ["compat_prod"]
hits = client.query_points("compat_prod", query=q, limit=3).points
assert [h.id for h in hits] == [h.id for h in client.query_points(name, query=q, limit=3).points]
assert client.update_collection_aliases(change_aliases_operations=[
    models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name="compat_prod"))])
assert client.get_aliases().aliases == []

# Facets need a payload index on the key, as in Qdrant.
client.create_payload_index(name, field_name="group", field_schema=models.PayloadSchemaType.INTEGER,
                            wait=True)
groups_of = {i: i % 3 for i in remaining}
facet = client.facet(name, key="group", limit=10, exact=True)
want = {}
for g in groups_of.values():
    want[g] = want.get(g, 0) + 1
want = sorted(want.items(), key=lambda t: (-t[1], t[0]))
assert [(h.value, h.count) for h in facet.hits] == want, facet

# Grouped search: the best points of the best groups, by cosine over the remaining points.
ranked = sorted(((cos(q, vec(i)), i) for i in remaining), key=lambda t: (-t[0], t[1]))


def grouped(threshold=None):
    want = []
    for score, i in ranked:
        if threshold is not None and score < threshold:
            break
        g = groups_of[i]
        found = [w for w in want if w[0] == g]
        if found:
            if len(found[0][1]) < 3:
                found[0][1].append(i)
        elif len(want) < 2:
            want.append((g, [i]))
    return want


want = grouped()
res = client.query_points_groups(name, query=q, group_by="group", limit=2, group_size=3,
                                 search_params=models.SearchParams(exact=True))
assert [(g.id, [h.id for h in g.hits]) for g in res.groups] == want, (res, want)
# score_threshold applies before grouping: only the best four points may form groups.
threshold = (ranked[3][0] + ranked[4][0]) / 2
res = client.query_points_groups(name, query=q, group_by="group", limit=2, group_size=3,
                                 score_threshold=threshold,
                                 search_params=models.SearchParams(exact=True))
assert [(g.id, [h.id for h in g.hits]) for g in res.groups] == grouped(threshold), res
# with_lookup: each group gains the point of another collection whose id is its value.
docs = "compat_docs"
assert client.create_collection(docs, vectors_config=models.VectorParams(
    size=len(q), distance=models.Distance.COSINE))
client.upsert(docs, points=[models.PointStruct(id=g, vector=vec(g), payload={"title": f"doc {g}"})
                            for g in range(3)], wait=True)
res = client.query_points_groups(name, query=q, group_by="group", limit=2, group_size=3,
                                 with_lookup=models.WithLookup(collection=docs, with_payload=True),
                                 search_params=models.SearchParams(exact=True))
assert [(g.id, [h.id for h in g.hits]) for g in res.groups] == want, res
assert [g.lookup.payload for g in res.groups] == [{"title": f"doc {g}"} for g, _ in want], res
assert client.delete_collection(docs)
# search_groups is gone from recent clients (qdrant-client 1.20 has none); older clients call
# it, newer ones send the same body to the REST route themselves.
if hasattr(client, "search_groups"):
    res = client.search_groups(name, query_vector=q, group_by="group", limit=2, group_size=3,
                               search_params=models.SearchParams(exact=True))
    got = [(g.id, [h.id for h in g.hits]) for g in res.groups]
else:
    raw = httpx.post(url + f"/collections/{name}/points/search/groups",
                     json={"vector": q, "group_by": "group", "limit": 2, "group_size": 3,
                           "params": {"exact": True}})
    assert raw.status_code == 200, raw.text
    got = [(g["id"], [h["id"] for h in g["hits"]]) for g in raw.json()["result"]["groups"]]
assert got == want, (got, want)

# collection_cluster_info: on one node every shard is local and holds every point.
info = client.collection_cluster_info(name)
assert info.remote_shards == [] and len(info.local_shards) >= 1, info
assert sum(s.points_count for s in info.local_shards) == client.count(name).count, info
assert all(s.state == models.ReplicaState.ACTIVE for s in info.local_shards), info

# batch_update_points: writes applied in order, one result each.
results = client.batch_update_points(name, update_operations=[
    models.UpsertOperation(upsert=models.PointsList(points=[
        models.PointStruct(id=900, vector=vec(900), payload={"b": 1}),
        models.PointStruct(id=901, vector=vec(901), payload={"b": 2})])),
    models.SetPayloadOperation(set_payload=models.SetPayload(payload={"c": 3}, points=[900])),
    models.DeleteOperation(delete=models.PointIdsList(points=[901])),
], wait=True)
assert [r.status for r in results] == [models.UpdateStatus.COMPLETED] * 3, results
got = client.retrieve(name, ids=[900, 901], with_payload=True)
assert [(p.id, p.payload) for p in got] == [(900, {"b": 1, "c": 3})], got
client.delete(name, points_selector=models.PointIdsList(points=[900]), wait=True)

assert client.delete_collection(name)
assert not client.collection_exists(name)
print("qdrant-client compatibility: ok")
