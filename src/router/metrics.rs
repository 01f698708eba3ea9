//! The router's own counters (reads, shard calls, partial answers, writes, retries, redirects)
//! and their rendering, with the resilience layer's, in the Prometheus text format.

use super::Router;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// Router counters beyond the resilience layer's.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) reads: AtomicU64,
    pub(super) shard_calls: AtomicU64,
    pub(super) local_calls: AtomicU64,
    pub(super) partial_answers: AtomicU64,
    pub(super) failed_reads: AtomicU64,
    pub(super) writes: AtomicU64,
    pub(super) write_retries: AtomicU64,
    pub(super) leader_redirects: AtomicU64,
}

impl Router {
    /// Routing counters in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        let c = &self.counters;
        let s = &self.resilience.stats;
        let rows: [(&str, &str, u64); 13] = [
            (
                "shoal_router_reads_total",
                "Reads fanned out.",
                c.reads.load(Ordering::Relaxed),
            ),
            (
                "shoal_router_shard_calls_total",
                "Calls to replicas on other nodes.",
                c.shard_calls.load(Ordering::Relaxed),
            ),
            (
                "shoal_router_local_calls_total",
                "Calls to replicas on this node.",
                c.local_calls.load(Ordering::Relaxed),
            ),
            (
                "shoal_router_partial_answers_total",
                "Reads answered without some shard (allow_partial).",
                c.partial_answers.load(Ordering::Relaxed),
            ),
            (
                "shoal_router_failed_reads_total",
                "Reads failed because a shard was unreachable.",
                c.failed_reads.load(Ordering::Relaxed),
            ),
            (
                "shoal_router_writes_total",
                "Writes routed.",
                c.writes.load(Ordering::Relaxed),
            ),
            (
                "shoal_router_write_retries_total",
                "Write attempts beyond the first (redirects, elections).",
                c.write_retries.load(Ordering::Relaxed),
            ),
            (
                "shoal_router_leader_redirects_total",
                "Writes re-sent to a leader named by a follower.",
                c.leader_redirects.load(Ordering::Relaxed),
            ),
            (
                "shoal_router_retries_total",
                "Read attempts beyond the first.",
                s.retries.load(Ordering::Relaxed),
            ),
            (
                "shoal_router_hedges_total",
                "Hedged read requests sent.",
                s.hedges.load(Ordering::Relaxed),
            ),
            (
                "shoal_router_hedge_wins_total",
                "Hedged requests that answered first.",
                s.hedge_wins.load(Ordering::Relaxed),
            ),
            (
                "shoal_router_breaker_opens_total",
                "Circuit breakers opened.",
                s.breaker_opens.load(Ordering::Relaxed),
            ),
            (
                "shoal_router_breaker_rejections_total",
                "Calls refused by an open circuit breaker.",
                s.breaker_rejections.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in rows {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        out
    }
}
