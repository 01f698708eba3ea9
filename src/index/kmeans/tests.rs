use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

/// `clusters` Gaussian blobs (σ = `sigma`) around centres drawn in [-10, 10]^dim.
fn blobs(clusters: usize, per: usize, dim: usize, sigma: f32, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let centres: Vec<f32> = (0..clusters * dim)
        .map(|_| rng.random_range(-10.0f32..10.0))
        .collect();
    let mut data = Vec::with_capacity(clusters * per * dim);
    for p in 0..clusters * per {
        let c = p % clusters;
        for j in 0..dim {
            // Sum of uniforms: roughly Gaussian, with the right variance.
            let g: f32 = (0..4).map(|_| rng.random_range(-1.0f32..1.0)).sum::<f32>() * 0.866;
            data.push(centres[c * dim + j] + sigma * g);
        }
    }
    (data, centres)
}

fn brute_assign(data: &[f32], dim: usize, centroids: &[f32]) -> Vec<u32> {
    data.chunks(dim)
        .map(|x| {
            let d: Vec<f32> = centroids
                .chunks(dim)
                .map(|c| distance::scalar_l2(x, c))
                .collect();
            argmin(&d).0
        })
        .collect()
}

#[test]
fn recovers_well_separated_gaussian_clusters() {
    let (dim, k) = (16, 12);
    let (data, centres) = blobs(k, 200, dim, 0.2, 11);
    let cfg = KMeansConfig {
        k,
        iters: 15,
        seed: 3,
        max_points_per_centroid: 256,
        spherical: false,
    };
    let c = train(&data, dim, &cfg);
    assert_eq!(c.len(), k * dim);
    // Every true centre has a learned centroid within a small fraction of the spread.
    for t in centres.chunks(dim) {
        let best = c
            .chunks(dim)
            .map(|x| distance::l2_sq(t, x))
            .fold(f32::INFINITY, f32::min);
        assert!(
            best < 0.05,
            "true centre missed: nearest centroid at {best}"
        );
    }
    // And every blob maps to exactly one centroid.
    let labels = assign(&data, dim, &c);
    for b in 0..k {
        let first = labels[b];
        assert!(
            labels.iter().skip(b).step_by(k).all(|&l| l == first),
            "blob {b} split"
        );
    }
}

#[test]
fn same_seed_same_centroids_whatever_the_thread_count() {
    let (dim, k) = (24, 40);
    let (data, _) = blobs(25, 300, dim, 2.0, 12);
    let cfg = KMeansConfig {
        k,
        iters: 6,
        seed: 99,
        max_points_per_centroid: 64,
        spherical: false,
    };
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| train(&data, dim, &cfg))
    };
    let one = run(1);
    let two = run(2);
    let three = run(3);
    assert_eq!(one, two);
    assert_eq!(one, three);
    let other = train(
        &data,
        dim,
        &KMeansConfig {
            seed: 100,
            ..cfg.clone()
        },
    );
    assert_ne!(one, other, "a different seed should move something");
}

#[test]
fn more_centroids_than_distinct_points() {
    let dim = 5;
    let distinct: Vec<f32> = (0..3 * dim).map(|i| (i * 7 % 11) as f32).collect();
    // 3 distinct points, repeated 10 times each.
    let data: Vec<f32> = (0..30)
        .flat_map(|i| distinct[(i % 3) * dim..(i % 3 + 1) * dim].to_vec())
        .collect();
    for k in [3usize, 8, 64] {
        let cfg = KMeansConfig {
            k,
            iters: 5,
            seed: 1,
            max_points_per_centroid: 256,
            spherical: false,
        };
        let c = train(&data, dim, &cfg);
        assert_eq!(c.len(), k * dim);
        assert!(c.iter().all(|x| x.is_finite()));
        for p in distinct.chunks(dim) {
            let best = c
                .chunks(dim)
                .map(|x| distance::l2_sq(p, x))
                .fold(f32::INFINITY, f32::min);
            assert!(best < 1e-3, "k={k}: point has no centroid on it ({best})");
        }
    }
    // Fewer points than centroids, and a single point.
    let c = train(
        &data[..2 * dim],
        dim,
        &KMeansConfig {
            k: 7,
            iters: 3,
            ..Default::default()
        },
    );
    assert_eq!(c.len(), 7 * dim);
    assert!(c.iter().all(|x| x.is_finite()));
}

#[test]
fn gemm_and_pairwise_assignments_agree_with_brute_force() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (n, dim, k) in [
        (1000usize, 17usize, 5usize),
        (3000, 32, 100),
        (700, 128, 300),
        // Past 1,024 centroids the products take them in chunks (`gemm_blocking`).
        (600, 16, 1500),
    ] {
        let data: Vec<f32> = (0..n * dim)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let cents: Vec<f32> = (0..k * dim)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let want = brute_assign(&data, dim, &cents);
        for m in [
            AssignMethod::Gemm,
            AssignMethod::Pairwise,
            AssignMethod::Auto,
        ] {
            let got = assign_with(&data, dim, &cents, m);
            // Near-ties may flip under different rounding: the chosen centroid must be (almost)
            // as close as the true nearest one.
            for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
                if g != w {
                    let x = &data[i * dim..(i + 1) * dim];
                    let dg =
                        distance::scalar_l2(x, &cents[g as usize * dim..(g as usize + 1) * dim]);
                    let dw =
                        distance::scalar_l2(x, &cents[w as usize * dim..(w as usize + 1) * dim]);
                    assert!(dg - dw <= 1e-4 * dw.max(1.0), "{m:?} row {i}: {dg} vs {dw}");
                }
            }
        }
        let (labels, dists) = assign_with_distances(&data, dim, &cents);
        for (i, (&l, &d)) in labels.iter().zip(&dists).enumerate() {
            let x = &data[i * dim..(i + 1) * dim];
            let exact = distance::scalar_l2(x, &cents[l as usize * dim..(l as usize + 1) * dim]);
            assert!(
                (d - exact).abs() <= 1e-3 * exact.max(1.0),
                "row {i}: {d} vs {exact}"
            );
        }
    }
}

#[test]
fn spherical_centroids_are_unit_length() {
    let (dim, k) = (8, 6);
    let (mut data, _) = blobs(k, 100, dim, 0.5, 13);
    data.chunks_mut(dim).for_each(distance::normalize);
    let cfg = KMeansConfig {
        k,
        iters: 8,
        seed: 4,
        max_points_per_centroid: 256,
        spherical: true,
    };
    let c = train(&data, dim, &cfg);
    for x in c.chunks(dim) {
        assert!((distance::norm_sq(x) - 1.0).abs() < 1e-5);
    }
}

#[test]
fn sampling_caps_training_set_and_stays_good() {
    let (dim, k) = (8, 10);
    let (data, centres) = blobs(k, 2000, dim, 0.1, 14);
    // 20000 points, capped at 10 * 20 = 200.
    let cfg = KMeansConfig {
        k,
        iters: 10,
        seed: 5,
        max_points_per_centroid: 20,
        spherical: false,
    };
    let c = train(&data, dim, &cfg);
    for t in centres.chunks(dim) {
        let best = c
            .chunks(dim)
            .map(|x| distance::l2_sq(t, x))
            .fold(f32::INFINITY, f32::min);
        assert!(best < 0.05, "true centre missed: {best}");
    }
}

#[test]
fn invalid_input_is_refused() {
    let cfg = KMeansConfig {
        k: 2,
        ..Default::default()
    };
    assert!(matches!(
        try_train(&[1.0; 6], 0, &cfg),
        Err(IndexError::InvalidParameter(_))
    ));
    assert!(matches!(
        try_train(&[1.0; 7], 2, &cfg),
        Err(IndexError::DimensionMismatch { .. })
    ));
    assert!(matches!(
        try_train(&[], 2, &cfg),
        Err(IndexError::NotEnoughData { .. })
    ));
    assert!(matches!(
        try_train(&[1.0, f32::NAN], 2, &cfg),
        Err(IndexError::NonFinite)
    ));
    let zero_k = KMeansConfig {
        k: 0,
        ..Default::default()
    };
    assert!(matches!(
        try_train(&[1.0; 4], 2, &zero_k),
        Err(IndexError::InvalidParameter(_))
    ));
}

#[test]
fn nearest_centroids_sorted_and_metric_aware() {
    let cents = [0.0f32, 0.0, 1.0, 0.0, 0.0, 2.0, -3.0, 0.0];
    let q = [0.9f32, 0.1];
    let near = nearest_centroids(&q, &cents, 2, 2, Metric::L2);
    assert_eq!(near.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 0]);
    assert!((near[0].1 - 0.02).abs() < 1e-6);
    let dotn = nearest_centroids(&q, &cents, 2, 10, Metric::Dot);
    assert_eq!(
        dotn.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![1, 2, 0, 3]
    );
    assert!(nearest_centroids(&q, &cents, 2, 0, Metric::L2).is_empty());
}

#[test]
fn inner_product_assignment_is_argmax_dot() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for (n, dim, k) in [
        (500usize, 128usize, 8usize),
        (500, 8, 256),
        (300, 64, 100),
        (300, 16, 1100),
    ] {
        let data: Vec<f32> = (0..n * dim)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        // Centroids of very different norms, so argmax dot differs from nearest by L2.
        let cents: Vec<f32> = (0..k * dim)
            .map(|i| rng.random_range(-1.0f32..1.0) * (1 + (i / dim) % 5) as f32)
            .collect();
        let got = assign_inner_product(&data, dim, &cents);
        let l2 = assign(&data, dim, &cents);
        assert_ne!(got, l2, "test data should separate the two criteria");
        for (i, &g) in got.iter().enumerate() {
            let x = &data[i * dim..(i + 1) * dim];
            let dots: Vec<f32> = cents.chunks(dim).map(|c| distance::dot(x, c)).collect();
            let best = dots.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            assert!(
                best - dots[g as usize] <= 1e-4 * best.abs().max(1.0),
                "row {i}"
            );
        }
    }
}
