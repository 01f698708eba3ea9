# Coarse quantizers that score only some IVF centroids (issue 16 item 2): a two-level one (centroids of centroids), then FAISS HNSW over the centroids.
# Expects /work/data/sift1m-sift from `shoal dataset generate --kind sift-like --difficulty sift --n 1000000 --queries 2000 --dim 128 --seed 1 --k 100`.
# Run with benches/peers/.venv/bin/python (faiss-cpu, numpy).
import numpy as np, faiss, sys, time
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
# --- two-level ---
for G in [64,128]:
  gk=faiss.Kmeans(128,G,niter=20,seed=2); gk.train(C); GC=gk.centroids
  gi=faiss.IndexFlatL2(128); gi.add(GC); gd,ga=gi.search(C,1); ga=ga[:,0]
  rad=np.sqrt(gd[:,0]); sizes=np.bincount(ga,minlength=G)
  print("G",G,"sizes min/med/max",sizes.min(),np.median(sizes),sizes.max())
  for nprobe in [16,32,64,128]:
    _,ex=idx.search(Q,nprobe)
    # exact IVF-flat recall proxy
    def rec(probes):
      r=0
      for i in range(len(Q)):
        s=set(probes[i]); r+=sum(assign[g] in s for g in GT[i])
      return r/(10*len(Q))
    base=rec(ex)
    dq=((Q[:,None,:]-GC[None,:,:])**2).sum(-1)
    order=np.argsort(dq,axis=1)
    dc=((Q[:,None,:]-C[None,:,:])**2).sum(-1)
    out=[]
    for frac in [4,8,16]:  # visit groups until members >= frac*nprobe
      probes=[];visited=0
      for i in range(len(Q)):
        m=[];cnt=0
        for g in order[i]:
          mem=np.nonzero(ga==g)[0]; m.extend(mem); cnt+=len(mem)
          if cnt>=frac*nprobe: break
        m=np.array(m); visited+=len(m)
        top=m[np.argsort(dc[i,m])[:nprobe]]; probes.append(top)
      out.append((frac,visited/len(Q),rec(probes)))
    print(f" nprobe {nprobe} exact {base:.4f}", " ".join(f"x{f}: vis {v:.0f} rec {r:.4f}" for f,v,r in out))
# --- HNSW graph over the centroids ---
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
