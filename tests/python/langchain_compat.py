"""Drives a running shoal server with LangChain's Qdrant vector store (langchain-qdrant, dense
retrieval, as a RAG application uses it) and checks every answer against a brute-force model.

Usage: python langchain_compat.py http://127.0.0.1:PORT
Run by tests/langchain.rs, which starts the server and provides the virtualenv.
"""

import math
import sys
import uuid

from langchain_core.embeddings import Embeddings
from langchain_qdrant import QdrantVectorStore, RetrievalMode
from qdrant_client import QdrantClient, models

url = sys.argv[1]
DIM = 24
TOPICS = ["rust", "python", "vectors", "raft"]
COLOURS = ["red", "green", "blue", "amber", "violet"]


class HashedWords(Embeddings):
    """A deterministic bag-of-words embedding: each word adds to a few fixed coordinates."""

    def embed_query(self, text):
        v = [0.0] * DIM
        for w in text.lower().split():
            h = 0
            for c in w:
                h = (h * 131 + ord(c)) % 1_000_003
            v[h % DIM] += 1.0
            v[(h // DIM) % DIM] += 0.5
        return v

    def embed_documents(self, texts):
        return [self.embed_query(t) for t in texts]


emb = HashedWords()


def cosine(a, b):
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(x * x for x in b))
    return sum(x * y for x, y in zip(a, b)) / (na * nb)


texts, metas, ids = [], [], []
for i in range(80):
    topic, colour = TOPICS[i % 4], COLOURS[i % 5]
    texts.append(f"note {i} on {topic} painted {colour} number{i % 7} word{i % 11}")
    metas.append({"n": i, "topic": topic, "colour": colour})
    ids.append(str(uuid.UUID(int=i + 1)))
model = {ids[i]: (texts[i], metas[i], emb.embed_query(texts[i])) for i in range(len(texts))}


def brute(query, k, keep=lambda meta: True):
    q = emb.embed_query(query)
    scored = [(cosine(q, v), pid) for pid, (_, meta, v) in model.items() if keep(meta)]
    scored.sort(key=lambda s: (-s[0], s[1]))
    return scored[:k]


def check_hits(got, want, what):
    """`got`: (Document, score) pairs; the scores must match the model's in order, and each
    document must be the one the model scores so (ties may come in either order)."""
    assert len(got) == len(want), (what, len(got), len(want))
    for (doc, score), (w_score, _) in zip(got, want):
        assert abs(score - w_score) < 1e-4, (what, score, w_score)
        pid = doc.metadata["_id"]
        assert abs(cosine(emb.embed_query(doc.page_content), model[pid][2]) - 1) < 1e-9, what
        assert abs(cosine(emb.embed_query(QUERY), model[pid][2]) - w_score) < 1e-4, what
        assert doc.page_content == model[pid][0] and doc.metadata["n"] == model[pid][1]["n"]


# from_texts creates the collection (`vectors_config={"": ...}`, the unnamed vector as a dict)
# and uploads the documents.
store = QdrantVectorStore.from_texts(
    texts, emb, metadatas=metas, ids=ids, url=url, collection_name="lc",
    force_recreate=True, prefer_grpc=False,
)
client = QdrantClient(url=url, prefer_grpc=False)
assert client.count("lc").count == len(texts)

QUERY = "rust painted blue number3"
check_hits(store.similarity_search_with_score(QUERY, k=6), brute(QUERY, 6), "plain")
docs = store.similarity_search(QUERY, k=4)
assert [d.metadata["_id"] for d in docs][:1] == [brute(QUERY, 1)[0][1]], docs

# A metadata filter, as LangChain users write it (keys under "metadata.").
flt = models.Filter(must=[
    models.FieldCondition(key="metadata.topic", match=models.MatchValue(value="python")),
    models.FieldCondition(key="metadata.n", range=models.Range(gte=10)),
])
check_hits(
    store.similarity_search_with_score(QUERY, k=5, filter=flt),
    brute(QUERY, 5, lambda m: m["topic"] == "python" and m["n"] >= 10),
    "filtered",
)

# MMR: LangChain fetches fetch_k candidates with their vectors and picks diverse ones; the
# first pick is the nearest, every pick is among the model's fetch_k nearest.
mmr = store.max_marginal_relevance_search(QUERY, k=4, fetch_k=12, lambda_mult=0.5)
near = [pid for _, pid in brute(QUERY, 12)]
assert len(mmr) == 4 and mmr[0].metadata["_id"] == near[0], mmr
assert all(d.metadata["_id"] in near for d in mmr), (mmr, near)
assert len({d.metadata["_id"] for d in mmr}) == 4

# add_texts, get_by_ids, delete.
new_ids = [str(uuid.UUID(int=1000 + i)) for i in range(3)]
added = store.add_texts(
    ["fresh rust raft log", "fresh vectors red", "fresh python amber"],
    metadatas=[{"n": 1000 + i, "topic": "new", "colour": "none"} for i in range(3)],
    ids=new_ids,
)
assert sorted(added) == sorted(new_ids), added
got = store.get_by_ids(new_ids)
assert sorted(d.page_content for d in got) == sorted(
    ["fresh rust raft log", "fresh vectors red", "fresh python amber"]), got
hit = store.similarity_search("fresh rust raft log", k=1)[0]
assert hit.metadata["_id"] == new_ids[0], hit
assert store.delete(ids=new_ids[:2])
assert [d.metadata["_id"] for d in store.get_by_ids(new_ids)] == [new_ids[2]]
store.delete(ids=new_ids[2:])
assert client.count("lc").count == len(texts)

# An application that starts later attaches to the existing collection (validating its
# configuration) and retrieves through the retriever interface.
again = QdrantVectorStore.from_existing_collection(
    collection_name="lc", embedding=emb, url=url, prefer_grpc=False,
    retrieval_mode=RetrievalMode.DENSE,
)
retrieved = again.as_retriever(search_kwargs={"k": 3}).invoke(QUERY)
got = [round(cosine(emb.embed_query(QUERY), model[d.metadata["_id"]][2]), 5) for d in retrieved]
assert got == [round(s, 5) for s, _ in brute(QUERY, 3)], retrieved

# Sparse and hybrid retrieval need sparse vectors, which shoal does not have: the collection
# create LangChain sends for them is refused with a 400 naming them, not accepted and dropped.
import httpx  # noqa: E402  (qdrant-client's own HTTP library)

r = httpx.put(url + "/collections/lc-hybrid", json={
    "vectors": {"": {"size": DIM, "distance": "Cosine"}},
    "sparse_vectors": {"langchain-sparse": {"modifier": None}},
})
assert r.status_code == 400 and "sparse" in r.text, r.text
assert not client.collection_exists("lc-hybrid")
assert client.delete_collection("lc")
print("langchain compatibility: ok")
