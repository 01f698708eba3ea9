"""Named vectors through the official qdrant-client (REST), every answer checked in Python.

Usage: python qdrant_named_vectors.py http://127.0.0.1:PORT
Run by tests/qdrant_client.rs, which starts the server and provides the virtualenv.

Covers: create_collection with a dict `vectors_config`, get_collection, upsert (PointStruct with
a vector per name, Batch with a list per name), upload_points, query_points / query_batch_points
/ query_points_groups with `using`, filters, queries by example (an id, recommend) with `using`,
retrieve and scroll with all or some vectors, search_matrix_pairs with `using`, update_vectors,
points without some vectors (an upsert leaving one out, delete_vectors by ids, by filter and in
batch_update_points, has_vector), a collection snapshot recovered under a new name, and the
errors for a missing or unknown vector.
"""

import math
import sys

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

url = sys.argv[1]
client = QdrantClient(url=url, prefer_grpc=False, timeout=60)
name = "multi"
DIMS = {"text": 4, "image": 3}


def text(i):
    return [math.cos(i), math.sin(i), math.cos(2.3 * i), 0.5 + (i % 4)]


def image(i):
    return [math.sin(1.7 * i), (i % 7) / 3.0, math.cos(0.3 * i)]


def cos(a, b):
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(x * x for x in b))
    return sum(x * y for x, y in zip(a, b)) / (na * nb)


def euclid(a, b):
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))


def status_of(call):
    try:
        call()
    except UnexpectedResponse as e:
        return e.status_code, str(e)
    return 200, ""


assert client.create_collection(
    collection_name=name,
    vectors_config={
        "text": models.VectorParams(size=DIMS["text"], distance=models.Distance.COSINE),
        "image": models.VectorParams(size=DIMS["image"], distance=models.Distance.EUCLID),
    },
    shard_number=2,
)
info = client.get_collection(name)
vectors = info.config.params.vectors
assert set(vectors) == {"text", "image"}, vectors
assert vectors["text"].size == 4 and vectors["text"].distance == models.Distance.COSINE
assert vectors["image"].size == 3 and vectors["image"].distance == models.Distance.EUCLID

N = 90
client.upsert(name, wait=True, points=[
    models.PointStruct(id=i, vector={"text": text(i), "image": image(i)},
                       payload={"doc": i // 5, "group": i % 3})
    for i in range(0, 30)
])
client.upsert(name, wait=True, points=models.Batch(
    ids=list(range(30, 60)),
    vectors={"text": [text(i) for i in range(30, 60)], "image": [image(i) for i in range(30, 60)]},
    payloads=[{"doc": i // 5, "group": i % 3} for i in range(30, 60)],
))
client.upload_points(name, wait=True, batch_size=8, points=[
    models.PointStruct(id=i, vector={"text": text(i), "image": image(i)},
                       payload={"doc": i // 5, "group": i % 3})
    for i in range(60, N)
])
assert client.count(name, exact=True).count == N


def ranked(using, q, keep=lambda i: True, leave_out=()):
    if using == "text":
        scored = [(-cos(q, text(i)), i) for i in range(N) if keep(i) and i not in leave_out]
    else:
        scored = [(euclid(q, image(i)), i) for i in range(N) if keep(i) and i not in leave_out]
    return [i for _, i in sorted(scored)]


# Each named vector searched on its own, scores in its own metric.
for using, q in (("text", text(7.4)), ("image", image(11.2))):
    hits = client.query_points(name, query=q, using=using, limit=5).points
    assert [h.id for h in hits] == ranked(using, q)[:5], (using, hits)
    best = hits[0]
    want = cos(q, text(best.id)) if using == "text" else euclid(q, image(best.id))
    assert abs(best.score - want) < 1e-4, (best.score, want)
# A filter inside the named vector's search.
flt = models.Filter(must=[models.FieldCondition(key="group", match=models.MatchValue(value=2))])
hits = client.query_points(name, query=image(3.3), using="image", query_filter=flt, limit=4).points
assert [h.id for h in hits] == ranked("image", image(3.3), keep=lambda i: i % 3 == 2)[:4], hits
# A batch mixing the two vectors.
batch = client.query_batch_points(name, requests=[
    models.QueryRequest(query=text(2.2), using="text", limit=3),
    models.QueryRequest(query=image(2.2), using="image", limit=3),
])
assert [h.id for h in batch[0].points] == ranked("text", text(2.2))[:3]
assert [h.id for h in batch[1].points] == ranked("image", image(2.2))[:3]
# Queries by example read the example's vector of the vector searched.
hits = client.query_points(name, query=7, using="image", limit=4).points
assert [h.id for h in hits] == ranked("image", image(7), leave_out={7})[:4], hits
hits = client.query_points(name, query=models.RecommendQuery(
    recommend=models.RecommendInput(positive=[7, 8])), using="image", limit=4).points
avg = [(a + b) / 2 for a, b in zip(image(7), image(8))]
assert [h.id for h in hits] == ranked("image", avg, leave_out={7, 8})[:4], hits
# Groups of one document's chunks, by the text vector.
groups = client.query_points_groups(name, query=text(4.1), using="text", group_by="doc",
                                    limit=3, group_size=2).groups
order = ranked("text", text(4.1))
want_docs = []
for i in order:
    if i // 5 not in want_docs:
        want_docs.append(i // 5)
assert [g.id for g in groups] == want_docs[:3], groups
for g in groups:
    assert [h.id for h in g.hits] == [i for i in order if i // 5 == g.id][:2], g

# Reads: every vector by name, or the ones asked for.
got = client.retrieve(name, ids=[3, 50], with_vectors=True)
for p in got:
    assert set(p.vector) == {"text", "image"}, p
    assert all(abs(x - y) < 1e-5 for x, y in zip(p.vector["image"], image(p.id)))
    n = math.sqrt(sum(x * x for x in text(p.id)))
    assert all(abs(x - y / n) < 1e-5 for x, y in zip(p.vector["text"], text(p.id)))
got = client.retrieve(name, ids=[3], with_vectors=["image"])
assert set(got[0].vector) == {"image"}, got
page, _ = client.scroll(name, limit=3, with_vectors=["text"])
assert [p.id for p in page] == [0, 1, 2] and all(set(p.vector) == {"text"} for p in page)

# update_vectors replaces one named vector and keeps the other and the payload.
far = [0.0, 0.0, 100.0]
assert client.update_vectors(name, points=[models.PointVectors(id=11, vector={"image": far})],
                             wait=True).status == models.UpdateStatus.COMPLETED
p = client.retrieve(name, ids=[11], with_vectors=True, with_payload=True)[0]
assert p.vector["image"] == far and p.payload == {"doc": 2, "group": 2}, p
n = math.sqrt(sum(x * x for x in text(11)))
assert all(abs(x - y / n) < 1e-5 for x, y in zip(p.vector["text"], text(11)))
assert client.query_points(name, query=far, using="image", limit=1).points[0].id == 11
client.update_vectors(name, points=[models.PointVectors(id=11, vector={"image": image(11)})])

# The distance matrix of one named vector.
pairs = client.search_matrix_pairs(name, sample=10, limit=2, using="image").pairs
assert pairs
for p in pairs:
    assert abs(p.score - euclid(image(p.a), image(p.b))) < 1e-4, p

# Errors: a query that names no vector, an unknown vector.
code, msg = status_of(lambda: client.query_points(name, query=text(1), limit=3))
assert code == 400 and "using" in msg, msg
code, msg = status_of(lambda: client.query_points(name, query=text(1), using="audio", limit=3))
assert code == 400 and "audio" in msg, msg
assert client.count(name, exact=True).count == N

# Points without some of their vectors: one upserted without "image", delete_vectors by ids, by
# filter and in a batch. Searches of a vector skip the points without it; has_vector counts
# them; reads leave the vector out; the payload stays.
COMPLETED = models.UpdateStatus.COMPLETED
NEW = N
assert client.upsert(name, wait=True, points=[
    models.PointStruct(id=NEW, vector={"text": text(NEW)}, payload={"doc": 99, "group": 0})
]).status == COMPLETED
N += 1
assert client.delete_vectors(name, vectors=["image"], points=[5, 6], wait=True).status == COMPLETED
doc3 = models.Filter(must=[models.FieldCondition(key="doc", match=models.MatchValue(value=3))])
assert client.delete_vectors(name, vectors=["text"], points=models.FilterSelector(filter=doc3),
                             wait=True).status == COMPLETED
client.batch_update_points(name, update_operations=[
    models.DeleteVectorsOperation(delete_vectors=models.DeleteVectors(points=[40],
                                                                      vector=["image", "text"]))
], wait=True)
lacks = {"image": {5, 6, NEW, 40}, "text": {15, 16, 17, 18, 19, 40}}
everyone = set(range(N))
for using, q in (("text", text(16.2)), ("image", image(5.1))):
    hits = client.query_points(name, query=q, using=using, limit=6,
                               search_params=models.SearchParams(exact=True)).points
    assert [h.id for h in hits] == ranked(using, q, leave_out=lacks[using])[:6], (using, hits)
    hits = client.query_points(name, query=q, using=using, limit=20).points
    assert not {h.id for h in hits} & lacks[using], (using, hits)
    has = models.Filter(must=[models.HasVectorCondition(has_vector=using)])
    assert client.count(name, count_filter=has, exact=True).count == len(everyone - lacks[using])
    has_not = models.Filter(must_not=[models.HasVectorCondition(has_vector=using)])
    assert client.count(name, count_filter=has_not, exact=True).count == len(lacks[using])
for p in client.retrieve(name, ids=[5, 15, 40, NEW, 2], with_vectors=True, with_payload=True):
    assert set(p.vector) == {v for v in ("text", "image") if p.id not in lacks[v]}, p
    assert p.payload == ({"doc": 99, "group": 0} if p.id == NEW
                         else {"doc": p.id // 5, "group": p.id % 3}), p
code, msg = status_of(lambda: client.query_points(name, query=5, using="image", limit=3))
assert code == 400 and "no vector" in msg, msg
code, msg = status_of(lambda: client.delete_vectors(name, vectors=["audio"], points=[1]))
assert code == 400 and "audio" in msg, msg
# A vector given back is searched again.
client.update_vectors(name, points=[models.PointVectors(id=5, vector={"image": image(5)})],
                      wait=True)
lacks["image"].discard(5)
hits = client.query_points(name, query=image(5), using="image", limit=1).points
assert hits[0].id == 5, hits

# A collection snapshot recovered under another name answers as the original.
desc = client.create_snapshot(name, wait=True)
assert client.recover_snapshot("multi_copy", f"{url}/collections/{name}/snapshots/{desc.name}",
                               wait=True) is True
copy = client.get_collection("multi_copy")
assert set(copy.config.params.vectors) == {"text", "image"}
assert client.count("multi_copy", exact=True).count == N
for using, q in (("text", text(9.9)), ("image", image(9.9))):
    a = client.query_points(name, query=q, using=using, limit=5).points
    b = client.query_points("multi_copy", query=q, using=using, limit=5).points
    assert [h.id for h in a] == [h.id for h in b], (using, a, b)

print("named vectors: ok")
