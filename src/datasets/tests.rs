//! Readers, writers, `load` and `fetch` on small files written by the tests, and on malformed ones.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use ndarray::{Array2, array};

use super::catalog::{CatalogFile, Layout};
use super::fetch::{FetchError, FetchOptions, Verification, fetch_file, sha256_file};
use super::writer::{write_fbin, write_fvecs, write_ibin, write_ivecs};
use super::*;

fn sample(n: usize, dim: usize, seed: f32) -> Array2<f32> {
    Array2::from_shape_fn((n, dim), |(i, j)| seed + i as f32 * 0.5 - j as f32 * 0.25)
}

fn malformed_at(e: DatasetError) -> (PathBuf, u64) {
    match e {
        DatasetError::Malformed { path, offset, .. } => (path, offset),
        other => panic!("expected Malformed, got {other}"),
    }
}

#[test]
fn fvecs_ivecs_bvecs_round_trip_and_stream_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let data = sample(37, 5, 1.0);
    let p = dir.path().join("x.fvecs");
    write_fvecs(&p, data.view()).unwrap();
    let f = VectorFile::open(&p).unwrap();
    assert_eq!((f.rows(), f.dim(), f.elem()), (37, 5, ElemType::F32));
    assert_eq!(f.read_all_f32().unwrap(), data);
    let chunks: Vec<Array2<f32>> = f.chunks_f32(10).collect::<Result<_, _>>().unwrap();
    assert_eq!(
        chunks.iter().map(|c| c.nrows()).collect::<Vec<_>>(),
        vec![10, 10, 10, 7]
    );
    assert_eq!(chunks[3], data.slice(ndarray::s![30.., ..]));
    assert!(matches!(
        f.read_all_u32(),
        Err(DatasetError::WrongElementType { .. })
    ));

    let ids = array![[3u32, 1, 2], [0, 4, 5]];
    let p = dir.path().join("gt.ivecs");
    write_ivecs(&p, ids.view()).unwrap();
    assert_eq!(VectorFile::open(&p).unwrap().read_all_u32().unwrap(), ids);

    // bvecs: bytes become floats.
    let mut b = Vec::new();
    for row in [[0u8, 7, 255], [1, 2, 3]] {
        b.extend_from_slice(&3i32.to_le_bytes());
        b.extend_from_slice(&row);
    }
    let f = VectorFile::from_bytes("t.bvecs", b, Format::Bvecs).unwrap();
    assert_eq!(
        f.read_all_f32().unwrap(),
        array![[0.0f32, 7.0, 255.0], [1.0, 2.0, 3.0]]
    );
}

#[test]
fn malformed_texmex_files_name_the_byte() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.fvecs");
    write_fvecs(&p, sample(4, 3, 0.0).view()).unwrap();
    let bytes = std::fs::read(&p).unwrap();

    // Truncated: the last row is cut short.
    std::fs::write(&p, &bytes[..bytes.len() - 3]).unwrap();
    let (path, offset) = malformed_at(VectorFile::open(&p).unwrap_err());
    assert_eq!((path, offset), (p.clone(), 48));

    // A row whose dimension disagrees with the first: found when that row is read.
    let mut bad = bytes.clone();
    bad[32..36].copy_from_slice(&7i32.to_le_bytes());
    std::fs::write(&p, &bad).unwrap();
    let f = VectorFile::open(&p).unwrap();
    assert_eq!(f.read_rows_f32(0, 2).unwrap().nrows(), 2);
    assert_eq!(malformed_at(f.read_all_f32().unwrap_err()).1, 32);
    assert_eq!(malformed_at(f.validate().unwrap_err()).1, 32);

    // The last row's header is checked on open.
    let mut bad = bytes.clone();
    bad[48..52].copy_from_slice(&2i32.to_le_bytes());
    assert_eq!(
        malformed_at(VectorFile::from_bytes("l.fvecs", bad, Format::Fvecs).unwrap_err()).1,
        48
    );

    // Absurd or negative first dimension.
    for d in [-1i32, 0, i32::MAX] {
        let mut b = bytes.clone();
        b[..4].copy_from_slice(&d.to_le_bytes());
        assert_eq!(
            malformed_at(VectorFile::from_bytes("t.fvecs", b, Format::Fvecs).unwrap_err()).1,
            0
        );
    }

    // Negative ids are not row numbers.
    let mut b = Vec::new();
    b.extend_from_slice(&2i32.to_le_bytes());
    b.extend_from_slice(&5i32.to_le_bytes());
    b.extend_from_slice(&(-3i32).to_le_bytes());
    let f = VectorFile::from_bytes("t.ivecs", b, Format::Ivecs).unwrap();
    assert_eq!(malformed_at(f.read_all_u32().unwrap_err()).1, 8);

    // Empty file: zero rows, no error.
    assert_eq!(
        VectorFile::from_bytes("e.fvecs", vec![], Format::Fvecs)
            .unwrap()
            .rows(),
        0
    );
}

#[test]
fn bigann_bin_files_round_trip_and_refuse_bad_headers() {
    let dir = tempfile::tempdir().unwrap();
    let data = sample(6, 4, 2.0);
    let p = dir.path().join("base.fbin");
    write_fbin(&p, data.view()).unwrap();
    let f = VectorFile::open(&p).unwrap();
    assert_eq!((f.rows(), f.dim()), (6, 4));
    assert_eq!(f.read_all_f32().unwrap(), data);

    let ids = array![[1u32, 2], [3, 0], [5, 4]];
    let dists = array![[0.5f32, 1.0], [0.1, 0.2], [3.0, 4.0]];
    let p = dir.path().join("gt.ibin");
    write_ibin(&p, ids.view(), Some(dists.view())).unwrap();
    let f = VectorFile::open(&p).unwrap();
    assert!(f.has_distances());
    assert_eq!(f.read_all_u32().unwrap(), ids);
    assert_eq!(f.read_distances().unwrap().unwrap(), dists);
    write_ibin(&p, ids.view(), None).unwrap();
    assert!(!VectorFile::open(&p).unwrap().has_distances());

    let mut u8bin = vec![];
    u8bin.extend_from_slice(&2u32.to_le_bytes());
    u8bin.extend_from_slice(&2u32.to_le_bytes());
    u8bin.extend_from_slice(&[9, 8, 7, 6]);
    let f = VectorFile::from_bytes("q.u8bin", u8bin.clone(), Format::U8bin).unwrap();
    assert_eq!(f.read_all_f32().unwrap(), array![[9.0f32, 8.0], [7.0, 6.0]]);

    // Absurd header: 4 billion rows of a million dimensions in a 12-byte file.
    let mut absurd = vec![];
    absurd.extend_from_slice(&u32::MAX.to_le_bytes());
    absurd.extend_from_slice(&(1u32 << 20).to_le_bytes());
    absurd.extend_from_slice(&[0; 4]);
    assert_eq!(
        malformed_at(VectorFile::from_bytes("a.fbin", absurd, Format::Fbin).unwrap_err()).1,
        12
    );
    // Dimension past the limit.
    let mut wide = u8bin.clone();
    wide[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        malformed_at(VectorFile::from_bytes("w.u8bin", wide, Format::U8bin).unwrap_err()).1,
        4
    );
    // Trailing bytes, and a header cut short.
    let mut trailing = u8bin.clone();
    trailing.push(1);
    assert_eq!(
        malformed_at(VectorFile::from_bytes("t.u8bin", trailing, Format::U8bin).unwrap_err()).1,
        12
    );
    assert_eq!(
        malformed_at(VectorFile::from_bytes("s.u8bin", vec![1, 0, 0], Format::U8bin).unwrap_err())
            .1,
        0
    );
}

fn npy_bytes(descr: &str, fortran: bool, shape: &str, data: &[u8]) -> Vec<u8> {
    let header = format!(
        "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}\n",
        if fortran { "True" } else { "False" }
    );
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn npy_reads_every_supported_dtype_and_refuses_the_rest() {
    let f16: Vec<u8> = [1.5f32, -2.0, 0.25, 8.0]
        .iter()
        .flat_map(|v| half::f16::from_f32(*v).to_bits().to_le_bytes())
        .collect();
    let f = VectorFile::from_bytes(
        "a.npy",
        npy_bytes("<f2", false, "(2, 2)", &f16),
        Format::Npy,
    )
    .unwrap();
    assert_eq!(f.elem(), ElemType::F16);
    assert_eq!(
        f.read_all_f32().unwrap(),
        array![[1.5f32, -2.0], [0.25, 8.0]]
    );

    let f64s: Vec<u8> = [1.0f64, 2.0, 3.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let f = VectorFile::from_bytes("a.npy", npy_bytes("<f8", false, "(3,)", &f64s), Format::Npy)
        .unwrap();
    assert_eq!(f.read_all_f32().unwrap(), array![[1.0f32], [2.0], [3.0]]);

    let i32s: Vec<u8> = [4i32, 5, 6, 7]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let f = VectorFile::from_bytes(
        "a.npy",
        npy_bytes("<i4", false, "(2, 2)", &i32s),
        Format::Npy,
    )
    .unwrap();
    assert_eq!(f.read_all_u32().unwrap(), array![[4u32, 5], [6, 7]]);
    let f = VectorFile::from_bytes(
        "a.npy",
        npy_bytes("|u1", false, "(1, 4)", &[1, 2, 3, 4]),
        Format::Npy,
    )
    .unwrap();
    assert_eq!(f.read_all_f32().unwrap(), array![[1.0f32, 2.0, 3.0, 4.0]]);

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("w.npy");
    npy::write_npy_f32(&p, 2, 3, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    assert_eq!(
        VectorFile::open(&p).unwrap().read_all_f32().unwrap(),
        array![[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]
    );

    // Big-endian floats: a typed wrong-element-type error.
    assert!(matches!(
        VectorFile::from_bytes(
            "b.npy",
            npy_bytes(">f4", false, "(1, 1)", &[0; 4]),
            Format::Npy
        ),
        Err(DatasetError::WrongElementType { .. })
    ));
    assert!(matches!(
        VectorFile::from_bytes(
            "f.npy",
            npy_bytes("<f4", true, "(1, 1)", &[0; 4]),
            Format::Npy
        ),
        Err(DatasetError::Unsupported { .. })
    ));
    // Truncated data, absurd shape, no magic.
    assert!(matches!(
        VectorFile::from_bytes(
            "t.npy",
            npy_bytes("<f4", false, "(2, 2)", &[0; 12]),
            Format::Npy
        ),
        Err(DatasetError::Malformed { .. })
    ));
    assert!(matches!(
        VectorFile::from_bytes(
            "t.npy",
            npy_bytes("<f4", false, "(99999999999999, 999)", &[0; 12]),
            Format::Npy
        ),
        Err(DatasetError::Malformed { .. })
    ));
    assert_eq!(
        malformed_at(
            VectorFile::from_bytes("m.npy", b"NUMPY....".to_vec(), Format::Npy).unwrap_err()
        )
        .1,
        0
    );
}

/// A minimal zip writer for `.npz` tests: members stored (method 0) or deflated (method 8).
fn zip(members: &[(&str, Vec<u8>, bool)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data, deflate) in members {
        let body = if *deflate {
            let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(data).unwrap();
            e.finish().unwrap()
        } else {
            data.clone()
        };
        let crc = crc32fast::hash(data);
        let method: u16 = if *deflate { 8 } else { 0 };
        let offset = out.len() as u32;
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&[20, 0, 0, 0]);
        out.extend_from_slice(&method.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&crc.to_le_bytes());
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&body);
        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        central.extend_from_slice(&[20, 0, 20, 0, 0, 0]);
        central.extend_from_slice(&method.to_le_bytes());
        central.extend_from_slice(&[0; 4]);
        central.extend_from_slice(&crc.to_le_bytes());
        central.extend_from_slice(&(body.len() as u32).to_le_bytes());
        central.extend_from_slice(&(data.len() as u32).to_le_bytes());
        central.extend_from_slice(&(name.len() as u16).to_le_bytes());
        central.extend_from_slice(&[0; 12]);
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let cd_offset = out.len() as u32;
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    out.extend_from_slice(&(central.len() as u32).to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&[0; 2]);
    out
}

fn f32_npy(data: &Array2<f32>) -> Vec<u8> {
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    npy_bytes(
        "<f4",
        false,
        &format!("({}, {})", data.nrows(), data.ncols()),
        &bytes,
    )
}

#[test]
fn npz_members_stored_or_deflated_load_with_metric_from_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let base = sample(20, 6, 0.5);
    let query = sample(3, 6, -1.0);
    let p = dir.path().join("toy-cos.npz");
    std::fs::write(
        &p,
        zip(&[
            ("base.npy", f32_npy(&base), true),
            ("query.npy", f32_npy(&query), false),
        ]),
    )
    .unwrap();
    let ds = load(&p).unwrap();
    assert_eq!(ds.name, "toy-cos");
    assert_eq!(ds.metric, Metric::Cosine);
    assert_eq!(ds.base, base);
    assert_eq!(ds.queries, query);
    assert!(ds.groundtruth.is_none());
    let limited = load_with(
        &p,
        LoadOptions {
            metric: Some(Metric::Dot),
            max_base: Some(7),
        },
    )
    .unwrap();
    assert_eq!((limited.metric, limited.base.nrows()), (Metric::Dot, 7));

    // A member that claims more bytes than the archive holds.
    let mut bytes = std::fs::read(&p).unwrap();
    let n = bytes.len();
    bytes.truncate(n - 60);
    assert!(npy::npz_member_from_bytes("base", bytes).is_err());
    // Missing query array.
    std::fs::write(&p, zip(&[("base.npy", f32_npy(&base), false)])).unwrap();
    assert!(matches!(load(&p), Err(DatasetError::Inconsistent { .. })));
}

#[test]
fn shared_debian_minilm_npz_loads_without_python() {
    // The project's shared/ folder sits beside the checkout (CI lays a copy there too).
    let file = "shared/datasets/debian-minilm-384-cos.f16.npz";
    let candidates = [
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(file),
        Path::new("/work").join(file),
    ];
    let Some(p) = candidates.iter().find(|p| p.exists()) else {
        eprintln!("skipped: {file} is not beside the checkout");
        return;
    };
    let ds = load_with(
        p,
        LoadOptions {
            metric: None,
            max_base: Some(2000),
        },
    )
    .unwrap();
    assert_eq!(ds.metric, Metric::Cosine);
    assert_eq!(ds.base.dim(), (2000, 384));
    assert_eq!(ds.queries.dim(), (1000, 384));
    let norm: f32 = ds.queries.row(0).iter().map(|v| v * v).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-2, "row norm {norm}");
    let s = load::summarize(p).unwrap();
    assert!(s.parts[0].shape.0 > 10_000 && s.parts[0].shape.1 == 384);
}

fn write_folder(
    dir: &Path,
    prefix: &str,
    base: &Array2<f32>,
    query: &Array2<f32>,
    gt: &Array2<u32>,
) {
    write_fvecs(&dir.join(format!("{prefix}base.fvecs")), base.view()).unwrap();
    write_fvecs(&dir.join(format!("{prefix}query.fvecs")), query.view()).unwrap();
    write_ivecs(&dir.join(format!("{prefix}groundtruth.ivecs")), gt.view()).unwrap();
}

#[test]
fn folders_load_with_or_without_prefix_and_check_consistency() {
    let base = sample(50, 8, 0.0);
    let query = sample(4, 8, 3.0);
    let gt = exact_knn(base.view(), query.view(), 10, Metric::L2);

    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path(), "sift_", &base, &query, &gt);
    write_fvecs(
        &dir.path().join("sift_learn.fvecs"),
        sample(9, 8, 0.0).view(),
    )
    .unwrap();
    let ds = load(dir.path()).unwrap();
    assert_eq!(
        (ds.metric, ds.base.clone(), ds.queries.clone()),
        (Metric::L2, base.clone(), query.clone())
    );
    assert_eq!(ds.groundtruth.unwrap(), gt);
    // A prefix of the base drops the (full-base) ground truth.
    let ds = load_with(
        dir.path(),
        LoadOptions {
            metric: None,
            max_base: Some(20),
        },
    )
    .unwrap();
    assert_eq!(ds.base.nrows(), 20);
    assert!(ds.groundtruth.is_none());

    // big-ann names, a metric file.
    let dir = tempfile::tempdir().unwrap();
    write_fbin(&dir.path().join("base.1B.fbin"), base.view()).unwrap();
    write_fbin(&dir.path().join("query.public.10K.fbin"), query.view()).unwrap();
    let (ids, d) = try_exact_knn(base.view(), query.view(), 10, Metric::Cosine).unwrap();
    write_ibin(
        &dir.path().join("groundtruth.public.10K.ibin"),
        ids.view(),
        Some(d.view()),
    )
    .unwrap();
    std::fs::write(dir.path().join("metric"), "angular\n").unwrap();
    let ds = load(dir.path()).unwrap();
    assert_eq!(ds.metric, Metric::Cosine);
    assert_eq!(ds.groundtruth.unwrap(), ids);

    // Ground truth naming rows the base does not have.
    let dir = tempfile::tempdir().unwrap();
    let mut bad = gt.clone();
    bad[[1, 1]] = 50;
    write_folder(dir.path(), "", &base, &query, &bad);
    assert!(matches!(
        load(dir.path()),
        Err(DatasetError::Inconsistent { .. })
    ));
    // Query dimension differs from the base.
    write_fvecs(&dir.path().join("query.fvecs"), sample(4, 7, 0.0).view()).unwrap();
    assert!(matches!(
        load(dir.path()),
        Err(DatasetError::Inconsistent { .. })
    ));
    // Two base files.
    write_fbin(&dir.path().join("base.fbin"), base.view()).unwrap();
    assert!(matches!(
        load(dir.path()),
        Err(DatasetError::Inconsistent { .. })
    ));
    // No base at all.
    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        load(empty.path()),
        Err(DatasetError::Inconsistent { .. })
    ));
}

#[cfg(feature = "hdf5")]
#[test]
fn hdf5_round_trip_in_ann_benchmarks_layout_and_corruption_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let base = sample(40, 5, 0.0);
    let query = sample(6, 5, 1.0);
    for metric in [Metric::L2, Metric::Cosine, Metric::Dot] {
        let (ids, d) = try_exact_knn(base.view(), query.view(), 7, metric).unwrap();
        let p = dir.path().join(format!("toy-{metric:?}.hdf5"));
        hdf5::write_hdf5(
            &p,
            base.view(),
            query.view(),
            Some((ids.view(), d.view())),
            metric,
        )
        .unwrap();
        let ds = load(&p).unwrap();
        assert_eq!(ds.metric, metric);
        assert_eq!(ds.base, base);
        assert_eq!(ds.queries, query);
        assert_eq!(ds.groundtruth.unwrap(), ids);
        let s = load::summarize(&p).unwrap();
        assert_eq!(s.parts.len(), 3);
        assert_eq!(s.parts[2].shape, (6, 7));
        let ds = load_with(
            &p,
            LoadOptions {
                metric: Some(Metric::L2),
                max_base: Some(10),
            },
        )
        .unwrap();
        assert_eq!(
            (ds.metric, ds.base.nrows(), ds.groundtruth.is_none()),
            (Metric::L2, 10, true)
        );
    }
    // Streamed in chunks.
    let p = dir.path().join("toy-L2.hdf5");
    let chunks: Vec<Array2<f32>> = hdf5::hdf5_chunks(&p, "train", 16)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        chunks.iter().map(|c| c.nrows()).collect::<Vec<_>>(),
        vec![16, 16, 8]
    );
    assert_eq!(
        ndarray::concatenate(
            ndarray::Axis(0),
            &[chunks[0].view(), chunks[1].view(), chunks[2].view()]
        )
        .unwrap(),
        base
    );
    // Replace the ground truth in place.
    let p = dir.path().join("toy-L2.hdf5");
    let (ids, d) = try_exact_knn(base.view(), query.view(), 3, Metric::L2).unwrap();
    hdf5::write_hdf5_groundtruth(&p, Metric::L2, ids.view(), d.view()).unwrap();
    assert_eq!(load(&p).unwrap().groundtruth.unwrap(), ids);

    // Garbage and truncated files give an error naming the file, never a panic.
    let junk = dir.path().join("junk.hdf5");
    std::fs::write(&junk, b"definitely not hdf5").unwrap();
    match load(&junk) {
        Err(DatasetError::Hdf5 { path, .. }) => assert_eq!(path, junk),
        other => panic!("expected an HDF5 error, got {other:?}"),
    }
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&junk, &bytes[..bytes.len() / 2]).unwrap();
    assert!(load(&junk).is_err());
}

/// A loopback HTTP server for fetch tests: serves one body at `/f`, honours `Range: bytes=a-` and
/// `bytes=a-b`, and records each request's Range header.
struct TestServer {
    addr: String,
    stop: Arc<AtomicBool>,
    ranges: Arc<Mutex<Vec<Option<String>>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    fn start(body: Vec<u8>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let ranges = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (stop.clone(), ranges.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(c) = conn {
                    serve(c, &body, &r);
                }
            }
        });
        TestServer {
            addr,
            stop,
            ranges,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/f", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut c: TcpStream, body: &[u8], ranges: &Mutex<Vec<Option<String>>>) {
    let mut reader = BufReader::new(c.try_clone().unwrap());
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("range:") {
            range = Some(v.trim().to_string());
        }
    }
    ranges.lock().unwrap().push(range.clone());
    let len = body.len();
    let (status, start, end) = match range.as_deref().and_then(|r| r.strip_prefix("bytes=")) {
        Some(r) => {
            let (a, b) = r.split_once('-').unwrap();
            let a: usize = a.parse().unwrap();
            let b: usize = if b.is_empty() {
                len - 1
            } else {
                b.parse::<usize>().unwrap().min(len - 1)
            };
            if a >= len {
                let _ = write!(
                    c,
                    "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                return;
            }
            (
                format!("206 Partial Content\r\nContent-Range: bytes {a}-{b}/{len}"),
                a,
                b + 1,
            )
        }
        None => ("200 OK".to_string(), 0, len),
    };
    let _ = write!(
        c,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        end - start
    );
    let _ = c.write_all(&body[start..end]);
    let _ = c.flush();
    let mut rest = Vec::new();
    let _ = c.shutdown(std::net::Shutdown::Write);
    let _ = reader.read_to_end(&mut rest);
}

fn catalog_file(url: &str, sha256: &str) -> CatalogFile {
    CatalogFile {
        url: url.to_string(),
        file: "f.bin".into(),
        size: 0,
        sha256: sha256.into(),
        rows: None,
        elem_size: None,
    }
}

#[test]
fn fetch_verifies_rejects_and_resumes_over_loopback_http() {
    let body: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let server = TestServer::start(body.clone());
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference");
    std::fs::write(&reference, &body).unwrap();
    let good = sha256_file(&reference).unwrap();
    let opts = FetchOptions { progress: false };

    // Good checksum: verified and in place.
    let dest = dir.path().join("a.bin");
    let got = fetch_file(&catalog_file(&server.url(), &good), &dest, 0, &opts).unwrap();
    assert_eq!(got.verification, Verification::Verified);
    assert_eq!(std::fs::read(&dest).unwrap(), body);

    // Bad checksum: refused, nothing left under either name.
    let dest = dir.path().join("b.bin");
    let bad = "0".repeat(64);
    match fetch_file(&catalog_file(&server.url(), &bad), &dest, 0, &opts) {
        Err(FetchError::ChecksumMismatch { actual, .. }) => assert_eq!(actual, good),
        other => panic!("expected a checksum mismatch, got {other:?}"),
    }
    assert!(!dest.exists());
    assert!(!dir.path().join("b.bin.partial").exists());

    // Resume: a partial file is completed with a Range request from its end.
    let dest = dir.path().join("c.bin");
    std::fs::write(dir.path().join("c.bin.partial"), &body[..70_000]).unwrap();
    let got = fetch_file(&catalog_file(&server.url(), &good), &dest, 0, &opts).unwrap();
    assert_eq!(got.downloaded, 130_000);
    assert_eq!(std::fs::read(&dest).unwrap(), body);
    assert_eq!(
        server.ranges.lock().unwrap().last().unwrap().as_deref(),
        Some("bytes=70000-")
    );

    // No checksum in the catalog: fetched, reported unverified with the computed digest.
    let dest = dir.path().join("d.bin");
    let got = fetch_file(&catalog_file(&server.url(), ""), &dest, 0, &opts).unwrap();
    assert_eq!(got.verification, Verification::Unverified(good.clone()));

    // Other schemes are refused.
    assert!(matches!(
        fetch_file(
            &catalog_file("ftp://127.0.0.1/x", ""),
            &dir.path().join("e.bin"),
            0,
            &opts
        ),
        Err(FetchError::UnsupportedScheme { .. })
    ));
}

#[test]
fn fetch_slices_a_bigann_file_to_its_first_rows() {
    let dir = tempfile::tempdir().unwrap();
    let full = sample(10, 3, 0.0);
    let src = dir.path().join("full.fbin");
    write_fbin(&src, full.view()).unwrap();
    let server = TestServer::start(std::fs::read(&src).unwrap());
    let mut f = catalog_file(&server.url(), "");
    f.rows = Some(4);
    f.elem_size = Some(4);
    let entry = catalog::CatalogEntry {
        name: "toy".into(),
        description: String::new(),
        n: 4,
        queries: 0,
        dim: 3,
        metric: "l2".into(),
        approx_size: String::new(),
        layout: Layout::Folder,
        files: vec![CatalogFile {
            file: "base.4.fbin".into(),
            ..f
        }],
    };
    let (path, files) =
        fetch::fetch_entry(&entry, dir.path(), &FetchOptions { progress: false }).unwrap();
    assert_eq!(files[0].bytes, 8 + 4 * 3 * 4);
    let sliced = VectorFile::open(&path.join("base.4.fbin")).unwrap();
    assert_eq!(
        sliced.read_all_f32().unwrap(),
        full.slice(ndarray::s![..4, ..])
    );
    assert_eq!(
        std::fs::read_to_string(path.join("metric")).unwrap().trim(),
        "l2"
    );
    assert_eq!(
        server.ranges.lock().unwrap()[0].as_deref(),
        Some("bytes=0-55")
    );
}

#[test]
fn generated_folder_round_trips_through_load() {
    let cfg = GenerateConfig {
        kind: GeneratorKind::SiftLike,
        n: 500,
        queries: 10,
        dim: 32,
        seed: 3,
        clusters: 0,
        difficulty: Default::default(),
    };
    let (base, query) = generate(&cfg).unwrap();
    let gt = exact_knn(base.view(), query.view(), 5, Metric::L2);
    let dir = tempfile::tempdir().unwrap();
    write_folder(dir.path(), "", &base, &query, &gt);
    let ds = load(dir.path()).unwrap();
    assert_eq!(ds.base, base);
    assert_eq!(ds.groundtruth.unwrap(), gt);
}

/// `tests/fixtures/hdf5/NAME`, written by h5py (`make_fixtures.py` there).
#[cfg(feature = "hdf5")]
fn h5py_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hdf5")
        .join(name)
}

/// The values `make_fixtures.py` writes into every fixture: train, test, neighbors, distances.
#[cfg(feature = "hdf5")]
fn h5py_values() -> (Array2<f32>, Array2<f32>, Array2<u32>, Array2<f32>) {
    let train = Array2::from_shape_fn((20, 4), |(i, j)| (i * 4 + j) as f32 / 8.0 - 3.0);
    let test = Array2::from_shape_fn((3, 4), |(i, j)| (i * 4 + j) as f32 / 4.0 + 0.5);
    let neighbors = Array2::from_shape_fn((3, 5), |(i, j)| ((7 * i + 3 * j) % 20) as u32);
    let distances = Array2::from_shape_fn((3, 5), |(i, j)| i as f32 + j as f32 / 2.0);
    (train, test, neighbors, distances)
}

#[cfg(feature = "hdf5")]
#[test]
fn hdf5_reads_every_storage_kind_h5py_writes() {
    let (train, test, neighbors, distances) = h5py_values();
    for (file, metric, dtype) in [
        ("contiguous.hdf5", Metric::L2, "f32"),
        ("chunked.hdf5", Metric::Cosine, "f32"),
        ("chunked_gzip.hdf5", Metric::Dot, "f32"),
        ("latest_gzip.hdf5", Metric::L2, "f32"),
        ("float64.hdf5", Metric::Cosine, "f64"),
    ] {
        let p = h5py_fixture(file);
        let ds = load(&p).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(ds.metric, metric, "{file}");
        assert_eq!(ds.base, train, "{file}");
        assert_eq!(ds.queries, test, "{file}");
        assert_eq!(ds.groundtruth.as_ref(), Some(&neighbors), "{file}");
        let stored = ::hdf5_pure::File::open(&p)
            .and_then(|f| f.dataset("distances")?.read_f32())
            .unwrap();
        assert_eq!(
            stored,
            distances.iter().copied().collect::<Vec<_>>(),
            "{file}"
        );

        let s = load::summarize(&p).unwrap();
        assert_eq!(s.container, load::Container::Hdf5);
        assert_eq!(s.metric, metric);
        let shapes: Vec<_> = s.parts.iter().map(|p| (p.role, p.shape)).collect();
        assert_eq!(
            shapes,
            [
                ("base", (20, 4)),
                ("query", (3, 4)),
                ("groundtruth", (3, 5))
            ],
            "{file}"
        );
        assert_eq!(s.parts[0].dtype, dtype, "{file}");

        // Windows of rows cross chunk boundaries (chunks are 8 or 6 rows by 3 columns).
        let chunks: Vec<Array2<f32>> = hdf5::hdf5_chunks(&p, "train", 7)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let views: Vec<_> = chunks.iter().map(|c| c.view()).collect();
        assert_eq!(
            chunks.iter().map(|c| c.nrows()).collect::<Vec<_>>(),
            [7, 7, 6]
        );
        assert_eq!(
            ndarray::concatenate(ndarray::Axis(0), &views).unwrap(),
            train
        );
        let prefix = load_with(
            &p,
            LoadOptions {
                metric: None,
                max_base: Some(11),
            },
        )
        .unwrap();
        assert_eq!(prefix.base, train.slice(ndarray::s![..11, ..]));
        assert!(prefix.groundtruth.is_none());
    }
}

#[cfg(feature = "hdf5")]
#[test]
fn hdf5_files_missing_parts_or_holding_text_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, build: &dyn Fn(&mut ::hdf5_pure::FileBuilder)| {
        let mut b = ::hdf5_pure::FileBuilder::new();
        build(&mut b);
        let p = dir.path().join(name);
        b.write(&p).unwrap();
        p
    };
    let no_test = write("no-test.hdf5", &|b| {
        b.create_dataset("train")
            .with_f32_data(&[0.0; 8])
            .with_shape(&[2, 4]);
    });
    match load(&no_test) {
        Err(DatasetError::Inconsistent {
            reason: message, ..
        }) => {
            assert!(message.contains("no dataset `test`"), "{message}")
        }
        other => panic!("expected a missing-dataset error, got {other:?}"),
    }
    let flat = write("flat.hdf5", &|b| {
        b.create_dataset("train")
            .with_f32_data(&[0.0; 8])
            .with_shape(&[8]);
        b.create_dataset("test")
            .with_f32_data(&[0.0; 8])
            .with_shape(&[8]);
    });
    assert!(matches!(load(&flat), Err(DatasetError::Unsupported { .. })));
    let bad_metric = write("bad-metric.hdf5", &|b| {
        b.set_attr("distance", ::hdf5_pure::AttrValue::I64(3));
        b.create_dataset("train")
            .with_f32_data(&[0.0; 8])
            .with_shape(&[2, 4]);
        b.create_dataset("test")
            .with_f32_data(&[0.0; 8])
            .with_shape(&[2, 4]);
    });
    match load(&bad_metric) {
        Err(DatasetError::Unsupported {
            reason: message, ..
        }) => {
            assert!(message.contains("not a string"), "{message}")
        }
        other => panic!("expected an attribute error, got {other:?}"),
    }
}

#[test]
fn info_describes_one_vector_file_of_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let data = sample(9, 6, 1.0);
    let ids = Array2::from_shape_fn((9, 6), |(i, j)| (i * 6 + j) as u32);
    let fvecs = dir.path().join("base.fvecs");
    write_fvecs(&fvecs, data.view()).unwrap();
    let ivecs = dir.path().join("sift_groundtruth.ivecs");
    write_ivecs(&ivecs, ids.view()).unwrap();
    let fbin = dir.path().join("query.public.fbin");
    write_fbin(&fbin, data.view()).unwrap();
    let ibin = dir.path().join("gt.ibin");
    write_ibin(&ibin, ids.view(), None).unwrap();
    let npy_path = dir.path().join("embeddings.npy");
    npy::write_npy_f32(&npy_path, 9, 6, data.as_slice().unwrap()).unwrap();
    let bvecs = dir.path().join("learn.bvecs");
    let mut bytes = Vec::new();
    for i in 0..9u8 {
        bytes.extend_from_slice(&6i32.to_le_bytes());
        bytes.extend((0..6).map(|j| i * 6 + j));
    }
    std::fs::write(&bvecs, &bytes).unwrap();
    for (p, role, dtype) in [
        (&fvecs, "base", "f32"),
        (&ivecs, "groundtruth", "i32"),
        (&fbin, "query", "f32"),
        (&ibin, "groundtruth", "i32"),
        (&npy_path, "vectors", "f32"),
        (&bvecs, "vectors", "u8"),
    ] {
        let s = load::summarize(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(s.container, load::Container::File, "{}", p.display());
        assert_eq!(s.parts.len(), 1);
        let part = &s.parts[0];
        assert_eq!(
            (part.role, part.shape, part.dtype.as_str(), &part.path),
            (role, (9, 6), dtype, p),
            "{}",
            p.display()
        );
        assert_eq!(part.bytes, std::fs::metadata(p).unwrap().len());
        // One file is not a whole dataset: loading it says so instead of guessing.
        match load(p) {
            Err(DatasetError::Unsupported {
                reason: message, ..
            }) => {
                assert!(message.contains("not a dataset"), "{message}")
            }
            other => panic!("{}: expected an error, got {other:?}", p.display()),
        }
    }
    let txt = dir.path().join("notes.txt");
    std::fs::write(&txt, "hello").unwrap();
    match load::summarize(&txt) {
        Err(DatasetError::Unsupported {
            reason: message, ..
        }) => {
            assert!(message.contains(".fvecs"), "{message}")
        }
        other => panic!("expected an unsupported-file error, got {other:?}"),
    }
    assert!(matches!(
        load::summarize(&dir.path().join("missing.fvecs")),
        Err(DatasetError::Io { .. })
    ));
}

#[cfg(feature = "hdf5")]
#[test]
fn info_describes_an_hdf5_file_of_vectors_under_other_names() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("embeddings.h5");
    let mut b = ::hdf5_pure::FileBuilder::new();
    b.create_dataset("vectors")
        .with_f64_data(&[0.5; 12])
        .with_shape(&[3, 4]);
    b.create_dataset("labels")
        .with_vlen_strings(&["a", "b", "c"]);
    b.write(&p).unwrap();
    let s = load::summarize(&p).unwrap();
    assert_eq!(s.container, load::Container::Hdf5);
    let parts: Vec<_> = s
        .parts
        .iter()
        .map(|p| (p.role, p.shape, p.dtype.as_str()))
        .collect();
    assert_eq!(parts, [("vectors", (3, 4), "f64")]);
}
