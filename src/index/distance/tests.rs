use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;

const DIMS: &[usize] = &[
    0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 100, 127, 128, 129, 384, 768, 1000, 1536,
];

fn levels() -> Vec<Kernels> {
    [SimdLevel::Scalar, SimdLevel::Avx2, SimdLevel::Avx512]
        .into_iter()
        .filter_map(Kernels::for_level)
        .collect()
}

fn random_vec(rng: &mut ChaCha8Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| rng.random_range(-1.0f32..1.0) * scale)
        .collect()
}

/// Reference in f64, plus the sum of |terms| that bounds the f32 rounding error.
fn ref_l2(a: &[f32], b: &[f32]) -> (f64, f64) {
    let s: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
        .sum();
    (s, s)
}

fn ref_dot(a: &[f32], b: &[f32]) -> (f64, f64) {
    let s = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum();
    let abs = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (f64::from(x) * f64::from(y)).abs())
        .sum();
    (s, abs)
}

fn close(got: f32, (want, abs): (f64, f64), what: &str) {
    let tol = 1e-5 * abs + 1e-30;
    assert!(
        (f64::from(got) - want).abs() <= tol,
        "{what}: got {got}, want {want} (tol {tol})"
    );
}

#[test]
fn every_level_matches_reference_on_random_inputs() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for k in levels() {
        for &d in DIMS {
            for scale in [1.0f32, 1e-3, 1e3, 1e15] {
                let a = random_vec(&mut rng, d, scale);
                let b = random_vec(&mut rng, d, scale);
                let what = format!("{:?} d={d} scale={scale}", k.level());
                close(k.l2_sq(&a, &b), ref_l2(&a, &b), &format!("l2 {what}"));
                close(k.dot(&a, &b), ref_dot(&a, &b), &format!("dot {what}"));
            }
        }
    }
}

#[test]
fn zeros_give_zero_and_identical_vectors_give_zero_l2() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for k in levels() {
        for &d in DIMS {
            let z = vec![0.0f32; d];
            let a = random_vec(&mut rng, d, 10.0);
            assert_eq!(k.l2_sq(&z, &z), 0.0);
            assert_eq!(k.dot(&z, &a), 0.0);
            assert_eq!(k.l2_sq(&a, &a), 0.0, "{:?} d={d}", k.level());
        }
    }
}

#[test]
fn overflow_is_infinite_at_every_level() {
    for k in levels() {
        for &d in &[1usize, 17, 129] {
            let a = vec![1e30f32; d];
            let b = vec![-1e30f32; d];
            assert_eq!(k.l2_sq(&a, &b), f32::INFINITY, "{:?}", k.level());
            assert_eq!(k.dot(&a, &a), f32::INFINITY);
            assert_eq!(k.dot(&a, &b), f32::NEG_INFINITY);
        }
    }
}

#[test]
fn batch_kernels_match_single_pair_at_every_level() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for k in levels() {
        for &d in DIMS {
            for rows in [0usize, 1, 3, 4, 5, 8, 13] {
                let q = random_vec(&mut rng, d, 2.0);
                let v = random_vec(&mut rng, d * rows, 2.0);
                let mut out_l2 = vec![f32::NAN; rows];
                let mut out_dot = vec![f32::NAN; rows];
                k.l2_sq_batch(&q, &v, d, &mut out_l2);
                k.dot_batch(&q, &v, d, &mut out_dot);
                for r in 0..rows {
                    let row = &v[r * d..(r + 1) * d];
                    let what = format!("{:?} d={d} row {r}/{rows}", k.level());
                    close(out_l2[r], ref_l2(&q, row), &format!("l2 batch {what}"));
                    close(out_dot[r], ref_dot(&q, row), &format!("dot batch {what}"));
                }
            }
        }
    }
}

#[test]
fn a_rows_batch_distance_does_not_depend_on_its_position() {
    // The same vector, scanned as row 0 of 1, row 3 of 4 and row 4 of 5 (a full group, then a
    // short last group), must score bit for bit the same: exact search on a sharded collection
    // has to equal exact search on one shard holding the same points in other positions.
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for k in levels() {
        for &d in DIMS {
            let q = random_vec(&mut rng, d, 2.0);
            let x = random_vec(&mut rng, d, 2.0);
            let mut seen_l2 = Vec::new();
            let mut seen_dot = Vec::new();
            for before in [0usize, 3, 4, 6] {
                let mut v = random_vec(&mut rng, d * before, 2.0);
                v.extend_from_slice(&x);
                let rows = before + 1;
                let (mut l2, mut dt) = (vec![0.0f32; rows], vec![0.0f32; rows]);
                k.l2_sq_batch(&q, &v, d, &mut l2);
                k.dot_batch(&q, &v, d, &mut dt);
                seen_l2.push(l2[before].to_bits());
                seen_dot.push(dt[before].to_bits());
            }
            let what = format!("{:?} d={d}", k.level());
            assert!(
                seen_l2.windows(2).all(|w| w[0] == w[1]),
                "l2 {what}: {seen_l2:?}"
            );
            assert!(
                seen_dot.windows(2).all(|w| w[0] == w[1]),
                "dot {what}: {seen_dot:?}"
            );
        }
    }
}

#[test]
fn batch_stops_at_out_len() {
    let q = vec![1.0f32; 5];
    let v = vec![2.0f32; 5 * 10];
    let mut out = vec![-1.0f32; 6];
    l2_sq_batch(&q, &v, 5, &mut out);
    assert_eq!(out, vec![5.0; 6]);
}

#[test]
fn public_functions_and_metrics() {
    let a = [1.0f32, 2.0, 3.0];
    let b = [4.0f32, -5.0, 6.0];
    assert_eq!(l2_sq(&a, &b), 9.0 + 49.0 + 9.0);
    assert_eq!(dot(&a, &b), 4.0 - 10.0 + 18.0);
    assert_eq!(distance(Metric::L2, &a, &b), 67.0);
    assert_eq!(distance(Metric::Dot, &a, &b), -12.0);
    let (mut na, mut nb) = (a, b);
    normalize(&mut na);
    normalize(&mut nb);
    let cos = 12.0 / (14.0f32.sqrt() * 77.0f32.sqrt());
    assert!((distance(Metric::Cosine, &na, &nb) - (1.0 - cos)).abs() < 1e-6);
    let mut out = [0.0f32; 1];
    distance_batch(Metric::Cosine, &na, &nb, 3, &mut out);
    assert!((out[0] - (1.0 - cos)).abs() < 1e-6);
    distance_batch(Metric::Dot, &a, &b, 3, &mut out);
    assert_eq!(out[0], -12.0);
}

#[test]
fn simsimd_agrees_with_ours() {
    let mut rng = ChaCha8Rng::seed_from_u64(10);
    for &d in DIMS {
        let a = random_vec(&mut rng, d, 1.0);
        let b = random_vec(&mut rng, d, 1.0);
        close(simsimd_l2_sq(&a, &b), ref_l2(&a, &b), "simsimd l2");
        close(simsimd_dot(&a, &b), ref_dot(&a, &b), "simsimd dot");
    }
}

#[test]
fn normalize_handles_zero_tiny_and_huge() {
    let mut z = vec![0.0f32; 7];
    normalize(&mut z);
    assert!(z.iter().all(|&x| x == 0.0));
    for scale in [1e-30f32, 1e-3, 1.0, 1e20, 3e38] {
        let mut v = vec![scale, -scale, scale * 0.5];
        normalize(&mut v);
        let n: f32 = v.iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-5, "scale {scale}: norm² {n}");
        assert!(v[0] > 0.0 && v[1] < 0.0);
    }
}

#[test]
fn best_level_is_supported() {
    let best = Kernels::best();
    assert!(best.level().is_supported());
    #[cfg(target_arch = "x86_64")]
    if SimdLevel::Avx512.is_supported() {
        assert_eq!(best.level(), SimdLevel::Avx512);
    }
}
