//! Reading values out of a payload the way filters and payload indexes both see them, so that an
//! indexed and an unindexed evaluation of the same condition agree by construction.
//!
//! - [`JsonPath`]: a key as Qdrant writes it: dotted segments into nested objects
//!   (`"address.city"`), `[]` to reach into every element of an array (`"items[].sku"`) and `[n]`
//!   for one element. A key whose whole dotted text is itself a top-level key wins over the nested
//!   reading (`{"a.b": 1}` is found by `"a.b"`).
//! - [`elements`]: the field's values: the value found at the path, or each element when it is an
//!   array (a condition on an array holds when any element satisfies it, as in Qdrant).
//! - [`parse_datetime`]: RFC 3339 (and the shorter forms Qdrant accepts) to microseconds since the
//!   Unix epoch, UTC.
//! - [`tokens`]: the one tokenizer of `match.text`/`match.phrase` and the text index: lower-cased
//!   runs of alphanumeric characters.
//! - [`GeoPoint`] maths: haversine distance, bounding boxes across the antimeridian, polygons with
//!   holes (even-odd ray casting).

use super::point::Payload;
use serde_json::Value;

/// One step of a [`JsonPath`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// An object key.
    Key(String),
    /// Every element of an array (`[]`).
    Each,
    /// One element of an array (`[n]`).
    At(usize),
}

/// A parsed payload key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonPath {
    /// The key as written (what a payload index is named by).
    pub key: String,
    steps: Vec<Step>,
    /// Only object keys and more than one of them: the whole text may itself be a top-level key.
    dotted_only: bool,
}

impl JsonPath {
    /// Parses a key; `None` when it is empty or malformed (`a..b`, `a[x]`, `[]a`).
    pub fn parse(key: &str) -> Option<JsonPath> {
        if key.is_empty() {
            return None;
        }
        let mut steps = Vec::new();
        for part in key.split('.') {
            let (name, mut rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if name.is_empty() {
                return None;
            }
            steps.push(Step::Key(name.to_owned()));
            while !rest.is_empty() {
                let close = rest.find(']')?;
                let inner = rest.get(1..close)?;
                if !rest.starts_with('[') {
                    return None;
                }
                steps.push(if inner.is_empty() {
                    Step::Each
                } else {
                    Step::At(inner.parse().ok()?)
                });
                rest = &rest[close + 1..];
            }
        }
        let dotted_only = steps.len() > 1 && steps.iter().all(|s| matches!(s, Step::Key(_)));
        Some(JsonPath {
            key: key.to_owned(),
            steps,
            dotted_only,
        })
    }

    /// The values found at the path (arrays are not flattened here; see [`elements`]).
    pub fn collect<'a>(&self, payload: Option<&'a Payload>, out: &mut Vec<&'a Value>) {
        let Some(payload) = payload else {
            return;
        };
        if self.dotted_only
            && let Some(v) = payload.get(&self.key)
        {
            out.push(v);
            return;
        }
        let Some((Step::Key(first), rest)) = self.steps.split_first() else {
            return;
        };
        if let Some(v) = payload.get(first) {
            walk(v, rest, out);
        }
    }

    /// The values at the path with arrays flattened into their elements.
    pub fn elements<'a>(&self, payload: Option<&'a Payload>) -> Vec<&'a Value> {
        let mut found = Vec::new();
        self.collect(payload, &mut found);
        let mut out = Vec::with_capacity(found.len());
        for v in found {
            out.extend(elements(v));
        }
        out
    }
}

fn walk<'a>(v: &'a Value, steps: &[Step], out: &mut Vec<&'a Value>) {
    let Some((step, rest)) = steps.split_first() else {
        out.push(v);
        return;
    };
    match step {
        Step::Key(k) => {
            if let Some(child) = v.as_object().and_then(|o| o.get(k)) {
                walk(child, rest, out);
            }
        }
        Step::Each => {
            if let Some(items) = v.as_array() {
                for item in items {
                    walk(item, rest, out);
                }
            }
        }
        Step::At(i) => {
            if let Some(item) = v.as_array().and_then(|a| a.get(*i)) {
                walk(item, rest, out);
            }
        }
    }
}

/// A field's values: an array's elements, or the single value.
pub fn elements(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) => a,
        other => std::slice::from_ref(other),
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn digits(s: &[u8]) -> Option<i64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Microseconds since the Unix epoch (UTC) of an RFC 3339 date-time, or of the shorter forms
/// Qdrant also accepts: a date alone (`2024-05-01`, midnight UTC), a space instead of `T`, no
/// seconds, no zone (UTC). Fractions beyond microseconds are truncated.
pub fn parse_datetime(s: &str) -> Option<i64> {
    let b = s.trim().as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let month_days = [
        31,
        28 + i64::from(is_leap(y)),
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo) || d < 1 || d > month_days[(mo - 1) as usize] {
        return None;
    }
    let mut micros = days_from_civil(y, mo, d) * 86_400_000_000;
    let mut rest = &b[10..];
    if rest.is_empty() {
        return Some(micros);
    }
    if !matches!(rest[0], b'T' | b't' | b' ') || rest.len() < 6 || rest[3] != b':' {
        return None;
    }
    let (h, mi) = (digits(&rest[1..3])?, digits(&rest[4..6])?);
    rest = &rest[6..];
    let mut sec = 0;
    let mut frac = 0;
    if rest.first() == Some(&b':') {
        sec = digits(rest.get(1..3)?)?;
        rest = &rest[3..];
        if rest.first() == Some(&b'.') {
            let n = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
            if n == 0 {
                return None;
            }
            let mut f = rest[1..1 + n.min(6)].to_vec();
            f.resize(6, b'0');
            frac = digits(&f)?;
            rest = &rest[1 + n..];
        }
    }
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let offset = match rest {
        [] | [b'Z'] | [b'z'] => 0,
        [sign @ (b'+' | b'-'), tail @ ..] => {
            let (oh, om) = match tail {
                [a, b2] => (digits(&[*a, *b2])?, 0),
                [a, b2, b':', c, d2] | [a, b2, c, d2] => (digits(&[*a, *b2])?, digits(&[*c, *d2])?),
                _ => return None,
            };
            if oh > 23 || om > 59 {
                return None;
            }
            let o = (oh * 60 + om) * 60_000_000;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    micros += ((h * 60 + mi) * 60 + sec) * 1_000_000 + frac - offset;
    Some(micros)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Lower-cased runs of alphanumeric characters, in order.
pub fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether `needle` occurs as a contiguous run of `hay`.
pub fn contains_run(hay: &[String], needle: &[String]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// A point on Earth in degrees.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct GeoPoint {
    /// Longitude, -180..=180.
    pub lon: f64,
    /// Latitude, -90..=90.
    pub lat: f64,
}

impl GeoPoint {
    /// A payload value as a geo point: an object with numeric `lon` and `lat` in range.
    pub fn from_value(v: &Value) -> Option<GeoPoint> {
        let o = v.as_object()?;
        let p = GeoPoint {
            lon: o.get("lon")?.as_f64()?,
            lat: o.get("lat")?.as_f64()?,
        };
        p.is_valid().then_some(p)
    }

    /// Whether both coordinates are in range.
    pub fn is_valid(&self) -> bool {
        (-180.0..=180.0).contains(&self.lon) && (-90.0..=90.0).contains(&self.lat)
    }

    /// Great-circle distance in metres (haversine, mean Earth radius as Qdrant uses).
    pub fn distance_m(&self, other: &GeoPoint) -> f64 {
        const R: f64 = 6_371_008.8;
        let (p1, p2) = (self.lat.to_radians(), other.lat.to_radians());
        let dp = p2 - p1;
        let dl = (other.lon - self.lon).to_radians();
        let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
        2.0 * R * a.sqrt().min(1.0).asin()
    }
}

/// Whether `p` lies in the box (edges included); a box whose left edge is east of its right edge
/// crosses the antimeridian.
pub fn in_box(p: &GeoPoint, top_left: &GeoPoint, bottom_right: &GeoPoint) -> bool {
    let lat_ok = p.lat <= top_left.lat && p.lat >= bottom_right.lat;
    let lon_ok = if top_left.lon <= bottom_right.lon {
        p.lon >= top_left.lon && p.lon <= bottom_right.lon
    } else {
        p.lon >= top_left.lon || p.lon <= bottom_right.lon
    };
    lat_ok && lon_ok
}

/// Even-odd ray casting in the lon/lat plane over a closed ring.
pub fn in_ring(p: &GeoPoint, ring: &[GeoPoint]) -> bool {
    let mut inside = false;
    for w in ring.windows(2) {
        let (a, b) = (w[0], w[1]);
        if (a.lat > p.lat) != (b.lat > p.lat) {
            let x = a.lon + (p.lat - a.lat) / (b.lat - a.lat) * (b.lon - a.lon);
            if p.lon < x {
                inside = !inside;
            }
        }
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_reach_into_objects_and_arrays() {
        let p = json!({"a": {"b": 1}, "a.b": 2, "items": [{"sku": "x"}, {"sku": ["y", "z"]}],
                       "m": [[1, 2], [3]]})
        .as_object()
        .cloned();
        let get = |k: &str| {
            JsonPath::parse(k)
                .unwrap()
                .elements(p.as_ref())
                .into_iter()
                .cloned()
                .collect::<Vec<_>>()
        };
        assert_eq!(get("a.b"), vec![json!(2)]);
        assert_eq!(get("items[].sku"), vec![json!("x"), json!("y"), json!("z")]);
        assert_eq!(get("items[1].sku"), vec![json!("y"), json!("z")]);
        assert_eq!(get("items.sku"), Vec::<Value>::new());
        assert_eq!(get("m[]"), vec![json!(1), json!(2), json!(3)]);
        for bad in ["", "a..b", "a[x]", "[]", "a[]b", "a[1"] {
            assert!(JsonPath::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn datetimes_parse_to_utc_micros() {
        assert_eq!(parse_datetime("1970-01-01"), Some(0));
        assert_eq!(parse_datetime("1970-01-01T00:00:01Z"), Some(1_000_000));
        assert_eq!(parse_datetime("1970-01-01 01:00"), Some(3_600_000_000));
        assert_eq!(parse_datetime("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(
            parse_datetime("1969-12-31T23:59:59.5-00:00"),
            Some(-500_000)
        );
        assert_eq!(
            parse_datetime("2024-02-29T12:00:00.123456789Z"),
            Some(1_709_208_000_123_456)
        );
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "2024-01-01T25:00",
            "soon",
            "2024-01-01X",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
    }

    #[test]
    fn geo_maths() {
        let london = GeoPoint {
            lon: -0.1276,
            lat: 51.5072,
        };
        let paris = GeoPoint {
            lon: 2.3522,
            lat: 48.8566,
        };
        let d = london.distance_m(&paris);
        assert!((d - 343_500.0).abs() < 2_000.0, "{d}");
        let tl = GeoPoint {
            lon: 170.0,
            lat: 10.0,
        };
        let br = GeoPoint {
            lon: -170.0,
            lat: -10.0,
        };
        assert!(in_box(
            &GeoPoint {
                lon: 179.0,
                lat: 0.0
            },
            &tl,
            &br
        ));
        assert!(!in_box(&GeoPoint { lon: 0.0, lat: 0.0 }, &tl, &br));
        let sq = [
            (0.0, 0.0),
            (10.0, 0.0),
            (10.0, 10.0),
            (0.0, 10.0),
            (0.0, 0.0),
        ]
        .map(|(lon, lat)| GeoPoint { lon, lat });
        assert!(in_ring(&GeoPoint { lon: 5.0, lat: 5.0 }, &sq));
        assert!(!in_ring(
            &GeoPoint {
                lon: 15.0,
                lat: 5.0
            },
            &sq
        ));
        assert_eq!(tokens("Hello, wörld! 42x"), vec!["hello", "wörld", "42x"]);
    }
}
