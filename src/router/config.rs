//! [`RouterConfig`]: the router's deadlines, retries, session wait, centroid sample and request
//! caps, with their defaults.

use super::ResilienceConfig;
use std::time::Duration;

/// Router settings.
#[derive(Debug, Clone)]
pub struct RouterConfig {
    /// Deadlines, retries, breakers and hedging of reads.
    pub resilience: ResilienceConfig,
    /// Deadline of one write call to a leader (replication and fsync included).
    pub write_call_timeout: Duration,
    /// How long a write may keep chasing a leader (elections included) before failing.
    pub write_deadline: Duration,
    /// How long a replica may wait to apply a session token before answering "stale".
    pub session_wait: Duration,
    /// Most vectors of the first upsert used to train the centroid quantiser.
    pub centroid_sample: usize,
    /// Caps on one request (filter size, batch length, scroll page), checked by the router
    /// itself before anything is sent to a shard.
    pub limits: crate::collection::limits::RequestLimits,
    /// Shard reads that may run on the blocking pool at once on this node ([`exec`](super::exec); 0 = four
    /// per core, at least 8): the process-wide bound is set from it when the router is made.
    pub blocking_reads: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            resilience: ResilienceConfig::default(),
            write_call_timeout: Duration::from_secs(10),
            write_deadline: Duration::from_secs(10),
            session_wait: Duration::from_secs(2),
            centroid_sample: 20_000,
            limits: crate::collection::limits::RequestLimits::default(),
            blocking_reads: 0,
        }
    }
}
