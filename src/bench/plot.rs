//! Recall-versus-throughput plots: several runs (shoal settings and peer engines) on one chart.
//!
//! The chart follows ann-benchmarks: recall@k on x, queries per second on a logarithmic y axis,
//! one colour per series, the Pareto front of each series joined by a line (what a user would
//! actually pick) and dominated settings shown as hollow markers. The output format follows the
//! file extension: `.png` through the bitmap backend, `.svg` through the SVG backend.
//!
//! Text is laid out with `ab_glyph` and a Roboto subset shipped in `src/bench/font/` (Apache-2.0),
//! so plots render the same everywhere without system fonts or fontconfig.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::BenchError;
use super::report::BenchReport;

/// Roboto Regular, subset to printable ASCII plus a few symbols (see `font/README.md`).
static FONT: &[u8] = include_bytes!("font/Roboto-Regular-subset.ttf");
const FAMILY: &str = "sans-serif";

/// One line on the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// `(recall, qps)` of every measured setting.
    pub points: Vec<(f64, f64)>,
}

impl Series {
    /// The points no other point beats on both recall and QPS, by increasing recall. These are
    /// the settings worth choosing; the rest are dominated.
    pub fn pareto_front(&self) -> Vec<(f64, f64)> {
        pareto_front(&self.points)
    }
}

/// The Pareto front of `(recall, qps)` points (both larger is better), by increasing recall.
pub fn pareto_front(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut sorted: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|(r, q)| r.is_finite() && q.is_finite())
        .collect();
    // Highest recall first; equal recall: highest QPS first, so the first one seen wins.
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.total_cmp(&a.1)));
    let mut front: Vec<(f64, f64)> = Vec::new();
    let mut best_qps = f64::NEG_INFINITY;
    for p in sorted {
        if p.1 > best_qps {
            front.push(p);
            best_qps = p.1;
        }
    }
    front.reverse();
    front
}

/// Turns reports into chart series: one per report (named by label, else engine), split further
/// by index build when a report holds rows from several builds.
pub fn series_from_reports(reports: &[BenchReport]) -> Vec<Series> {
    let mut out: Vec<Series> = Vec::new();
    for report in reports {
        let base = report.series_name();
        let mut builds: Vec<(Option<usize>, Option<usize>, Option<u8>)> = Vec::new();
        for r in &report.results {
            let key = (r.nlist, r.pq_m, r.pq_bits);
            if !builds.contains(&key) {
                builds.push(key);
            }
        }
        for key in &builds {
            let name = if builds.len() > 1 {
                let show = |v: Option<String>| v.unwrap_or_else(|| "?".into());
                format!(
                    "{base} nlist={} m={} b={}",
                    show(key.0.map(|v| v.to_string())),
                    show(key.1.map(|v| v.to_string())),
                    show(key.2.map(|v| v.to_string()))
                )
            } else {
                base.clone()
            };
            let points = report
                .results
                .iter()
                // Recall vs QPS of unfiltered search: filtered rows answer another question.
                .filter(|r| (r.nlist, r.pq_m, r.pq_bits) == *key && r.selectivity.is_none())
                .map(|r| (r.recall, r.qps))
                .collect();
            let mut name = name;
            let taken = |n: &str| out.iter().any(|s: &Series| s.name == n);
            if taken(&name) {
                let mut i = 2;
                while taken(&format!("{name} #{i}")) {
                    i += 1;
                }
                name = format!("{name} #{i}");
            }
            out.push(Series { name, points });
        }
    }
    out
}

fn register_font() -> Result<(), String> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            plotters::style::register_font(FAMILY, FontStyle::Normal, FONT)
                .map_err(|_| "the shipped font could not be parsed".to_string())
        })
        .clone()
}

/// Draws `series` to `out`, PNG or SVG by extension, with `title` as the caption.
pub fn plot(series: &[Series], title: &str, out: &Path) -> Result<(), BenchError> {
    let fail = |message: String| BenchError::Plot {
        path: out.to_path_buf(),
        message,
    };
    if series.iter().all(|s| s.points.is_empty()) {
        return Err(fail("no points to plot".into()));
    }
    register_font().map_err(fail)?;
    let size = (1024, 720);
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("png") => {
            let root = BitMapBackend::new(out, size).into_drawing_area();
            draw(&root, series, title).map_err(|e| fail(e.to_string()))?;
            root.present().map_err(|e| fail(e.to_string()))
        }
        Some("svg") => {
            let root = SVGBackend::new(out, size).into_drawing_area();
            draw(&root, series, title).map_err(|e| fail(e.to_string()))?;
            root.present().map_err(|e| fail(e.to_string()))
        }
        _ => Err(fail("the file name must end in .png or .svg".into())),
    }
}

/// Reads reports and plots them together (`shoal bench plot`).
pub fn plot_files(inputs: &[std::path::PathBuf], out: &Path) -> Result<(), BenchError> {
    let reports = inputs
        .iter()
        .map(|p| BenchReport::read(p))
        .collect::<Result<Vec<_>, _>>()?;
    plot(&series_from_reports(&reports), &title_for(&reports), out)
}

/// A caption naming the dataset(s) and k of the reports.
pub fn title_for(reports: &[BenchReport]) -> String {
    let mut names: Vec<&str> = reports.iter().map(|r| r.dataset.as_str()).collect();
    names.dedup();
    let k = reports.first().map(|r| r.k).unwrap_or(0);
    if k > 0 {
        format!("{}: recall@{k} vs QPS", names.join(", "))
    } else {
        format!("{}: recall vs QPS", names.join(", "))
    }
}

const COLORS: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(23, 190, 207),
];

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    series: &[Series],
    title: &str,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    root.fill(&WHITE)?;
    let all = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.0.is_finite() && p.1.is_finite() && p.1 > 0.0);
    let (mut rmin, mut qmin, mut qmax) = (1.0f64, f64::INFINITY, 0.0f64);
    for &(r, q) in all {
        rmin = rmin.min(r);
        qmin = qmin.min(q);
        qmax = qmax.max(q);
    }
    if !qmin.is_finite() || qmax <= 0.0 {
        (qmin, qmax) = (1.0, 10.0);
    }
    let x_lo = ((rmin * 10.0).floor() / 10.0).clamp(0.0, 0.9);
    let (y_lo, y_hi) = (qmin / 1.5, qmax * 1.5);

    let mut chart = ChartBuilder::on(root)
        .caption(title, (FAMILY, 24))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x_lo..1.0f64, (y_lo..y_hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("recall")
        .y_desc("queries per second (log)")
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .y_label_formatter(&|v| format_qps(*v))
        .draw()?;

    for (i, s) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let front = s.pareto_front();
        chart
            .draw_series(LineSeries::new(
                front.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(s.name.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart.draw_series(front.iter().map(|&p| Circle::new(p, 4, color.filled())))?;
        chart.draw_series(
            s.points
                .iter()
                .filter(|p| !front.contains(p))
                .map(|&p| Circle::new(p, 4, color.stroke_width(1))),
        )?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

fn format_qps(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::report::QueryResult;

    fn row(recall: f64, qps: f64, nlist: usize) -> QueryResult {
        QueryResult {
            nprobe: 1,
            rerank: 0,
            recall,
            qps,
            p50_ms: 0.0,
            p95_ms: 0.0,
            p99_ms: 0.0,
            nlist: Some(nlist),
            pq_m: Some(8),
            pq_bits: Some(4),
            build_seconds: None,
            index_bytes: None,
            sharding: None,
            selectivity: None,
            ivf_flat_recall: None,
        }
    }

    fn report(engine: &str, label: Option<&str>, rows: Vec<QueryResult>) -> BenchReport {
        BenchReport {
            dataset: "toy".into(),
            n: 100,
            dim: 8,
            metric: "l2".into(),
            build_seconds: 0.1,
            index_bytes: Some(10),
            engine: engine.into(),
            label: label.map(Into::into),
            k: 10,
            threads: 1,
            nlist: None,
            pq_m: None,
            pq_bits: None,
            peak_rss_bytes: None,
            ingest_vectors_per_second: None,
            concurrency: None,
            segments: None,
            indexed_points: None,
            index_wait_seconds: None,
            idle_wait_seconds: None,
            results: rows,
        }
    }

    #[test]
    fn pareto_front_keeps_only_undominated_points() {
        let pts = [
            (0.5, 1000.0),
            (0.6, 900.0),
            (0.55, 800.0),
            (0.9, 100.0),
            (0.9, 50.0),
            (0.4, 500.0),
        ];
        assert_eq!(
            pareto_front(&pts),
            vec![(0.5, 1000.0), (0.6, 900.0), (0.9, 100.0)]
        );
        assert!(pareto_front(&[]).is_empty());
        assert_eq!(
            pareto_front(&[(0.3, f64::NAN), (0.2, 5.0)]),
            vec![(0.2, 5.0)]
        );
    }

    #[test]
    fn series_split_by_build_and_named_by_label() {
        let reports = vec![
            report(
                "shoal",
                None,
                vec![row(0.5, 10.0, 16), row(0.7, 5.0, 16), row(0.6, 8.0, 32)],
            ),
            report("faiss", Some("faiss-ivfpq"), vec![row(0.8, 3.0, 16)]),
            report("shoal", Some("faiss-ivfpq"), vec![row(0.8, 3.0, 16)]),
        ];
        let s = series_from_reports(&reports);
        let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "shoal nlist=16 m=8 b=4",
                "shoal nlist=32 m=8 b=4",
                "faiss-ivfpq",
                "faiss-ivfpq #2"
            ]
        );
        assert_eq!(s[0].points, vec![(0.5, 10.0), (0.7, 5.0)]);
    }

    fn two_runs() -> Vec<Series> {
        series_from_reports(&[
            report(
                "shoal",
                None,
                vec![
                    row(0.5, 20000.0, 16),
                    row(0.8, 9000.0, 16),
                    row(0.7, 5000.0, 16),
                    row(0.97, 1500.0, 16),
                ],
            ),
            report(
                "hnswlib",
                None,
                vec![row(0.9, 30000.0, 0), row(0.99, 8000.0, 0)],
            ),
        ])
    }

    #[test]
    fn png_plot_is_a_decodable_png() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("plot.png");
        plot(&two_runs(), "toy: recall@10 vs QPS", &out).unwrap();
        let bytes = std::fs::read(&out).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (1024, 720));
        // Something other than the white background was drawn.
        assert!(buf[..info.buffer_size()].iter().any(|&b| b < 128));
    }

    #[test]
    fn svg_plot_is_svg_with_text() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("plot.svg");
        plot(&two_runs(), "toy: recall@10 vs QPS", &out).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        assert!(text.trim_start().starts_with("<svg"), "{}", &text[..80]);
        assert!(text.trim_end().ends_with("</svg>"));
        assert!(text.contains("hnswlib") && text.contains("recall"));
        assert_eq!(
            text.matches("<text").count(),
            text.matches("</text>").count()
        );
    }

    #[test]
    fn unknown_extension_and_empty_input_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(plot(&two_runs(), "t", &dir.path().join("plot.jpg")).is_err());
        let empty = vec![Series {
            name: "x".into(),
            points: vec![],
        }];
        assert!(plot(&empty, "t", &dir.path().join("plot.png")).is_err());
    }
}
