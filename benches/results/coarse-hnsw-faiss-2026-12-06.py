# HNSW over IVF centroids (FAISS), issue 16 item 2; same data as coarse-two-level-2026-12-06.py.
import numpy as np, faiss
def fvecs(p):
    a=np.fromfile(p,dtype=np.int32); d=a[0]; return a.reshape(-1,d+1)[:,1:].view(np.float32)
def ivecs(p):
    a=np.fromfile(p,dtype=np.int32); d=a[0]; return a.reshape(-1,d+1)[:,1:]
X=fvecs('/work/data/sift1m-sift/base.fvecs'); Q=fvecs('/work/data/sift1m-sift/query.fvecs')[:1000]; GT=ivecs('/work/data/sift1m-sift/groundtruth.ivecs')[:1000,:10]
nlist=4096
rng=np.random.default_rng(0); S=X[rng.choice(len(X),nlist*64,replace=False)]
km=faiss.Kmeans(128,nlist,niter=10,seed=1); km.train(S); C=km.centroids
idx=faiss.IndexFlatL2(128); idx.add(C)
_,assign=idx.search(X,1); assign=assign[:,0]
faiss.omp_set_num_threads(1)
def rec(probes):
  r=0
  for i in range(len(Q)):
    s=set(probes[i]); r+=sum(assign[g] in s for g in GT[i])
  return r/(10*len(Q))
for M in [16,32]:
  h=faiss.IndexHNSWFlat(128,M); h.hnsw.efConstruction=200; h.add(C)
  for nprobe in [16,32,64,128]:
    _,ex=idx.search(Q,nprobe); base=rec(ex)
    res=[]
    for ef in [nprobe, 2*nprobe, 4*nprobe]:
      h.hnsw.efSearch=ef; st=faiss.cvar.hnsw_stats; st.reset()
      _,p=h.search(Q,nprobe); res.append((ef,st.ndis/len(Q),rec(p)))
    print(f"M{M} nprobe {nprobe} exact {base:.4f} ", " ".join(f"ef{e}: ndis {n:.0f} rec {r:.4f}" for e,n,r in res))
