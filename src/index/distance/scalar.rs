//! Portable kernels: the fallback on CPUs without AVX2, and the reference the SIMD kernels are
//! tested against. Eight independent accumulators let the compiler vectorise with whatever the
//! baseline target offers (SSE2 on x86-64, NEON on aarch64) and hide the add latency.

const LANES: usize = 8;

/// Squared Euclidean distance over the common prefix of `a` and `b`.
pub fn l2_sq(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..LANES {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        let d = x - y;
        tail += d * d;
    }
    acc.iter().sum::<f32>() + tail
}

/// Inner product over the common prefix of `a` and `b`.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        tail += x * y;
    }
    acc.iter().sum::<f32>() + tail
}

/// `out[r] = l2_sq(query, vectors[r*dim..(r+1)*dim])` for every full row that fits in `out`.
pub fn l2_sq_batch(query: &[f32], vectors: &[f32], dim: usize, out: &mut [f32]) {
    batch(query, vectors, dim, out, l2_sq);
}

/// `out[r] = dot(query, vectors[r*dim..(r+1)*dim])` for every full row that fits in `out`.
pub fn dot_batch(query: &[f32], vectors: &[f32], dim: usize, out: &mut [f32]) {
    batch(query, vectors, dim, out, dot);
}

fn batch(
    query: &[f32],
    vectors: &[f32],
    dim: usize,
    out: &mut [f32],
    f: fn(&[f32], &[f32]) -> f32,
) {
    if dim == 0 {
        out.fill(0.0);
        return;
    }
    let query = &query[..dim.min(query.len())];
    for (o, v) in out.iter_mut().zip(vectors.chunks_exact(dim)) {
        *o = f(query, v);
    }
}
