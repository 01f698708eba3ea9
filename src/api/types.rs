//! Request and response bodies, in Qdrant's JSON shapes (plus shoal's own extra fields).
//!
//! Ids arrive as raw JSON values and vectors as [`VectorInput`] (numbers read straight into
//! `f32`s, anything else kept as JSON); both are checked by hand in [`super::parse`], so a bad
//! one is refused with a message naming the offending point rather than a generic serde error. Fields that Qdrant has and shoal does not use (`hnsw_config`, `optimizers_config`,
//! `wal_config`, `quantization_config`, `on_disk_payload`, ...) are accepted and ignored on input,
//! and reported with fixed, sensible values on output so that `qdrant-client` models parse.

pub use super::vector_input::{BatchVectors, QueryInput, VectorInput};
use crate::shard::Filter;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Qdrant's distance names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Distance {
    /// Cosine similarity (score = cosine, higher is closer).
    Cosine,
    /// Euclidean distance (score = distance, lower is closer).
    Euclid,
    /// Inner product (score = dot product, higher is closer).
    Dot,
    /// Manhattan distance: part of Qdrant's API, refused by shoal.
    Manhattan,
}

/// One vector of a collection: its dimension and metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct VectorParams {
    /// Dimension.
    pub size: u64,
    /// Metric.
    pub distance: Distance,
}

/// `vectors` of a collection: one unnamed vector, or named vectors by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum VectorsConfig {
    /// One unnamed vector.
    Single(VectorParams),
    /// Named vectors.
    Named(std::collections::BTreeMap<String, VectorParams>),
}

/// shoal's IVF-PQ settings of a collection (an extra field beside Qdrant's).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IvfPqParams {
    /// Inverted lists per sealed segment (capped by the segment's size / 39).
    pub nlist: Option<usize>,
    /// PQ sub-spaces; must divide the dimension.
    pub pq_m: Option<usize>,
    /// Bits per PQ code: 4 or 8.
    pub pq_bits: Option<u8>,
    /// Rows after which the mutable segment is sealed and indexed.
    pub seal_threshold: Option<usize>,
}

/// shoal's default search settings of a collection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchConfig {
    /// Lists probed per sealed segment; unset: each segment's calibrated choice.
    pub nprobe: Option<usize>,
    /// Re-rank factor (0 = PQ distances only); unset: each segment's calibrated choice.
    pub rerank: Option<usize>,
    /// Shards probed under centroid placement (default 1).
    pub shard_probe: Option<usize>,
    /// Recall@10 a query without `nprobe`/`rerank` aims for, in (0, 1] (default 0.95): each
    /// sealed segment uses the cheapest setting its own calibration measured to reach it.
    pub recall_target: Option<f64>,
}

/// `PUT /collections/{name}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateCollection {
    /// The vector space.
    pub vectors: Option<Value>,
    /// Shards; a single node serves exactly one.
    pub shard_number: Option<u32>,
    /// Replicas per shard; a single node serves exactly one.
    pub replication_factor: Option<u32>,
    /// `hash` or `centroid` (one shard: both place everything in it).
    pub placement: Option<String>,
    /// IVF-PQ settings.
    pub ivf_pq_config: Option<IvfPqParams>,
    /// Default search settings.
    pub search_config: Option<SearchConfig>,
    /// Sparse vectors: refused unless empty (shoal has none).
    pub sparse_vectors: Option<Value>,
}

/// `Some(None)` for an explicit `null`, `None` when the field is absent (with `#[serde(default)]`).
fn null_or_value<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// shoal's search settings in `PATCH /collections/{name}`: an absent field stays as it is;
/// `"nprobe": null` / `"rerank": null` go back to each segment's calibrated choice.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchConfigUpdate {
    /// Lists probed per sealed segment; `null`: each segment's calibrated choice.
    #[serde(default, deserialize_with = "null_or_value")]
    #[schema(value_type = Option<usize>)]
    pub nprobe: Option<Option<usize>>,
    /// Re-rank factor; `null`: each segment's calibrated choice.
    #[serde(default, deserialize_with = "null_or_value")]
    #[schema(value_type = Option<usize>)]
    pub rerank: Option<Option<usize>>,
    /// Shards probed under centroid placement.
    pub shard_probe: Option<usize>,
    /// Recall@10 a query without `nprobe`/`rerank` aims for, in (0, 1].
    pub recall_target: Option<f64>,
}

/// `PATCH /collections/{name}` (qdrant-client's `update_collection`). shoal applies
/// `search_config`; Qdrant's engine tunings (`optimizers_config`, `hnsw_config`,
/// `quantization_config`, per-vector `hnsw_config`/`quantization_config`/`on_disk`, and
/// `params.write_consistency_factor`/`read_fan_out_factor`/`on_disk_payload`) are accepted and
/// have no effect, as on create; anything that would change what the collection stores or
/// answers and that shoal cannot change live is refused with a 400 naming it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct UpdateCollection {
    /// shoal's default search settings.
    pub search_config: Option<SearchConfigUpdate>,
    /// Qdrant's collection parameters (`replication_factor` must stay as it is).
    pub params: Option<Value>,
    /// Qdrant's per-vector updates.
    pub vectors: Option<Value>,
    /// shoal's IVF-PQ settings: fixed at create (segments are built with them).
    pub ivf_pq_config: Option<Value>,
    /// Qdrant's optimizer settings: accepted, no effect.
    pub optimizers_config: Option<Value>,
    /// Qdrant's HNSW settings: accepted, no effect.
    pub hnsw_config: Option<Value>,
    /// Qdrant's quantization settings: accepted, no effect.
    pub quantization_config: Option<Value>,
    /// Sparse vectors: not supported.
    pub sparse_vectors: Option<Value>,
    /// Qdrant's strict mode: not supported.
    pub strict_mode_config: Option<Value>,
    /// Collection metadata: not supported.
    pub metadata: Option<Value>,
}

/// A collection's stored configuration (also what `GET /collections/{name}` reports under
/// `config.params` and `config.ivf_pq_config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CollectionConfig {
    /// The vector space: one vector, or named vectors by name.
    pub vectors: VectorsConfig,
    /// Always 1 on a single node.
    pub shard_number: u32,
    /// Always 1 on a single node.
    pub replication_factor: u32,
    /// `hash` or `centroid`.
    pub placement: String,
    /// Resolved IVF-PQ settings.
    pub ivf_pq_config: ResolvedIvfPq,
    /// Resolved default search settings.
    pub search_config: ResolvedSearch,
    /// The Raft group of the collection's shard on this node.
    pub group_id: u64,
}

/// IVF-PQ settings with defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResolvedIvfPq {
    /// Inverted lists.
    pub nlist: usize,
    /// PQ sub-spaces.
    pub pq_m: usize,
    /// Bits per code.
    pub pq_bits: u8,
    /// Seal threshold in rows.
    pub seal_threshold: usize,
}

/// Search settings with defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ResolvedSearch {
    /// Lists probed, if fixed (null: each segment's calibrated choice).
    pub nprobe: Option<usize>,
    /// Re-rank factor, if fixed (null: each segment's calibrated choice).
    pub rerank: Option<usize>,
    /// Shards probed.
    pub shard_probe: usize,
    /// Recall@10 the calibrated choices aim for.
    pub recall_target: f64,
}

/// Per-request search knobs (`params`): Qdrant's `exact`, `hnsw_ef` (ignored) and shoal's own.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SearchParamsReq {
    /// Scan exactly instead of using IVF-PQ.
    pub exact: Option<bool>,
    /// Qdrant's HNSW knob; accepted and ignored.
    pub hnsw_ef: Option<u64>,
    /// Lists probed per sealed segment (1..=nlist); wins over the calibration.
    pub nprobe: Option<usize>,
    /// Re-rank factor (0..=100); wins over the calibration.
    pub rerank: Option<usize>,
    /// Shards probed under centroid placement.
    pub shard_probe: Option<usize>,
    /// Recall@10 this query aims for, in (0, 1] (default: the collection's `recall_target`).
    pub recall_target: Option<f64>,
}

/// `PUT /collections/{name}/points`: `points` or `batch`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct UpsertPoints {
    /// Points, each `{id, vector, payload?}`.
    pub points: Option<Vec<PointStruct>>,
    /// Column form: `{ids, vectors, payloads?}`.
    pub batch: Option<Batch>,
}

/// One point to upsert.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PointStruct {
    /// Unsigned integer or UUID string.
    #[schema(value_type = Object)]
    pub id: Value,
    /// The vector (a list of numbers).
    #[schema(value_type = Vec<f32>)]
    pub vector: VectorInput,
    /// A JSON object, or null.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
}

/// `PUT /collections/{name}/points/vectors` (Qdrant's `update_vectors`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UpdateVectors {
    /// The points and their new vectors.
    pub points: Vec<PointVectors>,
    /// Refused: shoal has no shard keys.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub shard_key: Option<Value>,
}

/// `POST /collections/{name}/points/vectors/delete` (Qdrant's `delete_vectors`): the points, by
/// `points` (ids) or `filter`, and the names of the vectors they lose.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeleteVectors {
    /// Ids of the points.
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub points: Option<Vec<Value>>,
    /// Every point matching.
    #[serde(default)]
    pub filter: Option<Filter>,
    /// The names of the vectors to delete (`""`: the unnamed vector).
    pub vector: Vec<String>,
    /// Refused: shoal has no shard keys.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub shard_key: Option<Value>,
}

/// One point's new vectors: a list for the unnamed vector, or a map of the named vectors that
/// change.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct PointVectors {
    /// Unsigned integer or UUID string.
    #[schema(value_type = Object)]
    pub id: Value,
    /// The new vector(s).
    #[schema(value_type = Object)]
    pub vector: VectorInput,
}

/// Column form of an upsert.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Batch {
    /// Ids.
    #[schema(value_type = Vec<Object>)]
    pub ids: Vec<Value>,
    /// Vectors, one per id: a list, or with named vectors an object of lists by name.
    #[schema(value_type = Object)]
    pub vectors: BatchVectors,
    /// Payloads, one per id (or absent).
    #[serde(default)]
    #[schema(value_type = Option<Vec<Object>>)]
    pub payloads: Option<Vec<Value>>,
}

/// `POST /collections/{name}/points`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct RetrieveRequest {
    /// Ids to fetch.
    #[schema(value_type = Vec<Object>)]
    pub ids: Vec<Value>,
    /// `true`, `false`, a list of keys, or `{"include"|"exclude": [...]}` (default true).
    #[schema(value_type = Option<Object>)]
    pub with_payload: Option<Value>,
    /// Return vectors (default false).
    #[schema(value_type = Option<Object>)]
    pub with_vector: Option<Value>,
    /// Read consistency and partial-answer options.
    #[serde(flatten)]
    pub read: ReadFields,
}

/// `POST /collections/{name}/points/delete`: `points` (ids) or `filter`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct DeletePoints {
    /// Ids to delete.
    #[schema(value_type = Option<Vec<Object>>)]
    pub points: Option<Vec<Value>>,
    /// Delete every point matching.
    pub filter: Option<Filter>,
}

/// `POST /collections/{name}/points/count`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct CountRequest {
    /// Count only matching points.
    pub filter: Option<Filter>,
    /// Accepted; counts are always exact.
    pub exact: Option<bool>,
    /// Read consistency and partial-answer options.
    #[serde(flatten)]
    pub read: ReadFields,
}

/// `POST /collections/{name}/points/scroll`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct ScrollRequest {
    /// Start at this id (inclusive).
    #[schema(value_type = Option<Object>)]
    pub offset: Option<Value>,
    /// Page size, 1..=10000 (default 10).
    pub limit: Option<usize>,
    /// Only matching points.
    pub filter: Option<Filter>,
    /// As in retrieve (default true).
    #[schema(value_type = Option<Object>)]
    pub with_payload: Option<Value>,
    /// As in retrieve (default false).
    #[schema(value_type = Option<Object>)]
    pub with_vector: Option<Value>,
    /// Order by an indexed integer, float or datetime payload field: the key, or
    /// `{"key", "direction": "asc"|"desc", "start_from": number or RFC 3339 date-time}`.
    /// Pages by `start_from`, not `offset`.
    #[schema(value_type = Option<Object>)]
    pub order_by: Option<Value>,
    /// Read consistency and partial-answer options.
    #[serde(flatten)]
    pub read: ReadFields,
}

/// `POST /collections/{name}/points/search`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchRequestBody {
    /// The query vector.
    #[schema(value_type = Vec<f32>)]
    pub vector: VectorInput,
    /// Hits, 1..=10000.
    pub limit: usize,
    /// Best hits to skip.
    pub offset: Option<usize>,
    /// Only matching points.
    pub filter: Option<Filter>,
    /// Search knobs.
    pub params: Option<SearchParamsReq>,
    /// Default false.
    #[schema(value_type = Option<Object>)]
    pub with_payload: Option<Value>,
    /// Default false.
    #[schema(value_type = Option<Object>)]
    pub with_vector: Option<Value>,
    /// Drop hits worse than this score.
    pub score_threshold: Option<f32>,
    /// Read consistency and partial-answer options.
    #[serde(flatten)]
    pub read: ReadFields,
}

/// `POST /collections/{name}/points/search/batch`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SearchBatch {
    /// The searches.
    pub searches: Vec<SearchRequestBody>,
    /// Read consistency and partial-answer options.
    #[serde(flatten)]
    pub read: ReadFields,
}

/// `POST /collections/{name}/points/query`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct QueryRequest {
    /// A vector, `{"nearest": vector}`, a point id (its nearest other points), or
    /// `{"recommend": {"positive": [...], "negative": [...]}}` (ids or vectors, average-vector
    /// strategy).
    #[schema(value_type = Option<Object>)]
    pub query: Option<QueryInput>,
    /// Hits, 1..=10000 (default 10).
    pub limit: Option<usize>,
    /// Best hits to skip.
    pub offset: Option<usize>,
    /// Only matching points.
    pub filter: Option<Filter>,
    /// Search knobs.
    pub params: Option<SearchParamsReq>,
    /// Default false.
    #[schema(value_type = Option<Object>)]
    pub with_payload: Option<Value>,
    /// Default false.
    #[schema(value_type = Option<Object>)]
    pub with_vector: Option<Value>,
    /// Drop hits worse than this score.
    pub score_threshold: Option<f32>,
    /// The named vector searched (absent or `""`: the unnamed vector).
    pub using: Option<String>,
    /// Qdrant's multi-stage queries: not supported.
    #[schema(value_type = Option<Object>)]
    pub prefetch: Option<Value>,
    /// Where a query by example reads its example ids: `{"collection": name}` (default: this
    /// collection).
    #[schema(value_type = Option<Object>)]
    pub lookup_from: Option<Value>,
    /// Read consistency and partial-answer options.
    #[serde(flatten)]
    pub read: ReadFields,
}

/// `POST /collections/{name}/points/query/batch`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueryBatch {
    /// The queries.
    pub searches: Vec<QueryRequest>,
    /// Read consistency and partial-answer options.
    #[serde(flatten)]
    pub read: ReadFields,
}

/// A point as retrieve and scroll answer it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RecordOut {
    /// The id.
    #[schema(value_type = Object)]
    pub id: Value,
    /// The payload, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    /// The vector, when asked for: a list, or with named vectors an object of lists by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<VectorOut>,
}

/// A point's vector in an answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum VectorOut {
    /// The unnamed vector.
    Dense(Vec<f32>),
    /// Named vectors by name.
    Named(std::collections::BTreeMap<String, Vec<f32>>),
}

/// A search hit.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScoredPoint {
    /// The id.
    #[schema(value_type = Object)]
    pub id: Value,
    /// Qdrant's point version; shoal reports 0.
    pub version: u64,
    /// Cosine/Dot: similarity (higher is closer). Euclid: distance (lower is closer).
    pub score: f32,
    /// The payload, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub payload: Option<Value>,
    /// The vector, when asked for: a list, or with named vectors an object of lists by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<VectorOut>,
}

/// `{"points": [...]}` of a query.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct QueryResponse {
    /// Hits, closest first.
    pub points: Vec<ScoredPoint>,
}

/// A page of scroll.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScrollResponse {
    /// Points in id order.
    pub points: Vec<RecordOut>,
    /// Pass as `offset` for the next page; null at the end.
    #[schema(value_type = Option<Object>)]
    pub next_page_offset: Option<Value>,
}

/// `{"count": n}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CountResponse {
    /// Matching points.
    pub count: usize,
}

/// The answer to a write.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UpdateResult {
    /// The largest Raft log index the write reached on its shards.
    pub operation_id: u64,
    /// `completed`: applied and durable before the answer.
    pub status: String,
    /// Per shard group, the log index this write reached: pass back as `?consistency_token=`
    /// (or a body field) on a `session` read to see this write.
    pub consistency_token: String,
}

/// `{"exists": bool}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Exists {
    /// Whether the collection exists.
    pub exists: bool,
}

/// One collection name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CollectionDescription {
    /// The name.
    pub name: String,
}

/// `GET /collections`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CollectionsList {
    /// Every collection.
    pub collections: Vec<CollectionDescription>,
}

/// `GET /` (qdrant-client's version check reads it).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct VersionInfo {
    /// "shoal".
    pub title: String,
    /// The Qdrant REST API level shoal follows (what qdrant-client's version check reads).
    pub version: String,
    /// shoal's own version.
    pub shoal_version: String,
}

/// Query-string options of collection and alias changes.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetaQuery {
    /// Seconds to wait for the change to be committed; past it the answer is a 503 and the
    /// change may still be applied later (as in Qdrant). Default: no limit.
    pub timeout: Option<u64>,
}

/// Query-string options of writes.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct WriteQuery {
    /// Qdrant's `wait`; every write is applied and durable before the answer anyway.
    pub wait: Option<bool>,
}

/// Read options accepted in a read's body, beside Qdrant's fields.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ReadFields {
    /// `strong`, `session` or `eventual` (Qdrant's `majority`, `quorum`, `all` or a replica
    /// count mean `strong`). Default: `session` with a token, else `eventual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub consistency: Option<Value>,
    /// A token from a write answer: the read sees that write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistency_token: Option<String>,
    /// Answer from the reachable shards if some cannot be reached (flagged `partial`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_partial: Option<bool>,
}

/// Query-string options of reads.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReadQuery {
    /// `strong`, `session` or `eventual` (Qdrant's `majority`, `quorum`, `all` or a replica
    /// count mean `strong`). Default: `session` with a token, else `eventual`.
    pub consistency: Option<String>,
    /// A token from a write answer: the read sees that write.
    pub consistency_token: Option<String>,
    /// Answer from the reachable shards if some cannot be reached (flagged `partial`).
    pub allow_partial: Option<bool>,
}
