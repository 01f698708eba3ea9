//! Calling replicas without letting one slow or dead node hurt a query.
//!
//! [`Resilience::call`] runs one logical request against an ordered list of candidate replicas
//! (the router orders them by consistency level, locality and load):
//! - **Deadline**: every attempt is bounded by `call_timeout`; a silent peer costs at most that.
//! - **Retry**: a transient failure moves on to the next candidate (wrapping around), after an
//!   exponential backoff with "equal jitter" (half fixed, half random) so that many routers
//!   retrying at once do not stampede a recovering node. At most `max_attempts` attempts.
//! - **Circuit breaker per peer**: after `breaker_failures` consecutive failures a peer is
//!   *open* and skipped without being called; after `breaker_cooldown` one probe is let through
//!   (*half-open*): success closes the breaker, failure opens it for another cool-down.
//! - **Hedging**: if the first attempt has not answered after `max(hedge_floor, p95 of that
//!   peer)`, a second copy goes to the next candidate; the first success wins and the other
//!   future is dropped (cancelled).
//!
//! Every clock here is tokio's, so tests drive it with paused time.

use crate::raft::NodeId;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Knobs of the resilience layer.
#[derive(Debug, Clone)]
pub struct ResilienceConfig {
    /// Deadline of one attempt.
    pub call_timeout: Duration,
    /// Attempts per logical call, hedges not counted.
    pub max_attempts: usize,
    /// First backoff; doubled per retry.
    pub backoff_base: Duration,
    /// Largest backoff.
    pub backoff_max: Duration,
    /// Consecutive failures that open a peer's breaker.
    pub breaker_failures: u32,
    /// How long an open breaker refuses calls before one probe.
    pub breaker_cooldown: Duration,
    /// Send a hedge at all.
    pub hedge: bool,
    /// Smallest hedge delay (used until a peer has latency samples).
    pub hedge_floor: Duration,
    /// Seed of the jitter generator (fixed in tests).
    pub seed: u64,
}

impl Default for ResilienceConfig {
    fn default() -> Self {
        ResilienceConfig {
            call_timeout: Duration::from_secs(5),
            max_attempts: 4,
            backoff_base: Duration::from_millis(20),
            backoff_max: Duration::from_millis(500),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(2),
            hedge: true,
            hedge_floor: Duration::from_millis(30),
            seed: 0x05ee_d0f5_b0a1,
        }
    }
}

/// How one attempt failed.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError<E> {
    /// Worth trying another replica: unreachable or timed out. Counts against the peer's
    /// circuit breaker.
    Transient(String),
    /// Worth trying another replica, but the peer is healthy: it answered that it cannot serve
    /// this request (not the leader, not caught up with the session yet). Does not count
    /// against its breaker, or one stale read would shut a live replica out.
    Declined(String),
    /// The replica's group is stopped (its storage failed): another replica may serve, so it
    /// is worth trying one; does not count against the peer's breaker (the peer answered). A
    /// write gives up at once when every replica answered so ([`StoppedReplicas`]).
    Stopped(String),
    /// The request itself is wrong, or the answer is final: no retry.
    Fatal(E),
}

/// The replicas of one shard group that answered, during one write, that their copy of the
/// group is stopped ([`CallError::Stopped`]). A stopped group restarts only once its node's
/// disk takes writes again, seconds or hours away: when every replica is stopped the write
/// fails at once (503 with `Retry-After`) instead of retrying until its deadline.
#[derive(Debug, Default)]
pub struct StoppedReplicas(std::collections::BTreeSet<NodeId>);

impl StoppedReplicas {
    /// Notes that `node` answered stopped; true when every one of `replicas` has.
    pub fn note(&mut self, node: NodeId, replicas: &[NodeId]) -> bool {
        self.0.insert(node);
        replicas.iter().all(|r| self.0.contains(r))
    }
}

/// How a whole call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure<E> {
    /// A replica answered with a final error.
    Fatal(E),
    /// Every attempt failed, or every candidate's breaker is open.
    Exhausted {
        /// Replicas tried, in order (hedges included).
        tried: Vec<NodeId>,
        /// The last failure.
        last: String,
    },
}

/// Routing counters for `/metrics`.
#[derive(Debug, Default)]
pub struct RoutingStats {
    /// Attempts beyond the first of a call.
    pub retries: AtomicU64,
    /// Hedged second requests sent.
    pub hedges: AtomicU64,
    /// Hedges that answered first.
    pub hedge_wins: AtomicU64,
    /// Times a breaker went to open.
    pub breaker_opens: AtomicU64,
    /// Calls refused by an open breaker without being sent.
    pub breaker_rejections: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breaker {
    Closed,
    Open {
        until: Instant,
    },
    /// One probe is in flight.
    HalfOpen,
}

#[derive(Debug)]
struct Peer {
    breaker: Breaker,
    failures: u32,
    latencies: VecDeque<Duration>,
    in_flight: usize,
}

impl Peer {
    fn new() -> Self {
        Peer {
            breaker: Breaker::Closed,
            failures: 0,
            latencies: VecDeque::new(),
            in_flight: 0,
        }
    }
}

const LATENCY_SAMPLES: usize = 64;

/// The breaker, latency and load state of every peer, shared by all calls of a node.
#[derive(Debug)]
pub struct Resilience {
    config: ResilienceConfig,
    peers: Mutex<HashMap<NodeId, Peer>>,
    rng: Mutex<u64>,
    /// Counters.
    pub stats: Arc<RoutingStats>,
}

/// Admission of one attempt to a peer: counts it in flight, and on drop without an outcome
/// (a cancelled hedge) puts a half-open breaker back so the next call probes again.
struct Permit<'a> {
    owner: &'a Resilience,
    node: NodeId,
    started: Instant,
    done: bool,
}

impl Permit<'_> {
    fn finish(mut self, ok: bool) {
        self.done = true;
        self.owner.outcome(self.node, ok, self.started.elapsed());
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut peers = self.owner.lock();
        if let Some(p) = peers.get_mut(&self.node) {
            p.in_flight = p.in_flight.saturating_sub(1);
            if !self.done && p.breaker == Breaker::HalfOpen {
                p.breaker = Breaker::Open {
                    until: Instant::now(),
                };
            }
        }
    }
}

impl Resilience {
    /// A fresh layer: every breaker closed.
    pub fn new(config: ResilienceConfig) -> Self {
        let seed = config.seed.max(1);
        Resilience {
            config,
            peers: Mutex::new(HashMap::new()),
            rng: Mutex::new(seed),
            stats: Arc::new(RoutingStats::default()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ResilienceConfig {
        &self.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeId, Peer>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Attempts in flight to `node` right now (the router prefers the least loaded replica).
    pub fn in_flight(&self, node: NodeId) -> usize {
        self.lock().get(&node).map_or(0, |p| p.in_flight)
    }

    /// Whether `node`'s breaker would let a call through now (open ones past their cool-down
    /// count as available: the call becomes the probe).
    pub fn is_available(&self, node: NodeId) -> bool {
        match self.lock().get(&node).map(|p| p.breaker) {
            None | Some(Breaker::Closed) => true,
            Some(Breaker::Open { until }) => Instant::now() >= until,
            Some(Breaker::HalfOpen) => false,
        }
    }

    /// Whether `node`'s breaker is open (or probing).
    pub fn is_open(&self, node: NodeId) -> bool {
        !matches!(
            self.lock().get(&node).map(|p| p.breaker),
            None | Some(Breaker::Closed)
        )
    }

    /// The 95th percentile of `node`'s recent successful latencies.
    pub fn p95(&self, node: NodeId) -> Option<Duration> {
        let peers = self.lock();
        let p = peers.get(&node)?;
        if p.latencies.is_empty() {
            return None;
        }
        let mut v: Vec<Duration> = p.latencies.iter().copied().collect();
        v.sort();
        let i = ((v.len() as f64 * 0.95).ceil() as usize).clamp(1, v.len()) - 1;
        Some(v[i])
    }

    /// The delay after which a hedge follows a call to `node`.
    pub fn hedge_delay(&self, node: NodeId) -> Duration {
        self.p95(node)
            .map_or(self.config.hedge_floor, |p| p.max(self.config.hedge_floor))
    }

    fn admit(&self, node: NodeId) -> Option<Permit<'_>> {
        let mut peers = self.lock();
        let p = peers.entry(node).or_insert_with(Peer::new);
        let allowed = match p.breaker {
            Breaker::Closed => true,
            Breaker::Open { until } if Instant::now() >= until => {
                p.breaker = Breaker::HalfOpen;
                true
            }
            Breaker::Open { .. } | Breaker::HalfOpen => false,
        };
        if !allowed {
            self.stats
                .breaker_rejections
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        p.in_flight += 1;
        Some(Permit {
            owner: self,
            node,
            started: Instant::now(),
            done: false,
        })
    }

    fn outcome(&self, node: NodeId, ok: bool, latency: Duration) {
        let mut peers = self.lock();
        let p = peers.entry(node).or_insert_with(Peer::new);
        if ok {
            p.failures = 0;
            p.breaker = Breaker::Closed;
            if p.latencies.len() == LATENCY_SAMPLES {
                p.latencies.pop_front();
            }
            p.latencies.push_back(latency);
            return;
        }
        p.failures = p.failures.saturating_add(1);
        let open = match p.breaker {
            Breaker::HalfOpen => true,
            Breaker::Closed => p.failures >= self.config.breaker_failures,
            Breaker::Open { .. } => false,
        };
        if open {
            p.breaker = Breaker::Open {
                until: Instant::now() + self.config.breaker_cooldown,
            };
            self.stats.breaker_opens.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(node, failures = p.failures, "circuit breaker opened");
        }
    }

    /// The backoff before retry number `retry` (1-based): `d/2 + random(0..=d/2)` with
    /// `d = min(max, base · 2^(retry-1))`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let d = self
            .config
            .backoff_base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(20))
            .min(self.config.backoff_max);
        let half = d / 2;
        let mut x = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        let frac = (*x >> 11) as f64 / (1u64 << 53) as f64;
        half + half.mul_f64(frac)
    }

    /// One attempt at `node` under the deadline, with its outcome recorded. `None` when the
    /// breaker refused it.
    async fn attempt<T, E, F, Fut>(&self, node: NodeId, f: &F) -> Option<Result<T, CallError<E>>>
    where
        F: Fn(NodeId) -> Fut,
        Fut: Future<Output = Result<T, CallError<E>>>,
    {
        let permit = self.admit(node)?;
        let result = match tokio::time::timeout(self.config.call_timeout, f(node)).await {
            Ok(r) => r,
            Err(_) => Err(CallError::Transient(format!(
                "node {node} did not answer within {:?}",
                self.config.call_timeout
            ))),
        };
        // A fatal answer is still an answer: the peer is healthy.
        permit.finish(!matches!(result, Err(CallError::Transient(_))));
        let result = result.map_err(|e| match e {
            CallError::Declined(msg) | CallError::Stopped(msg) => CallError::Transient(msg),
            other => other,
        });
        Some(result)
    }

    /// Runs `f` against `candidates` (best first) with deadlines, retries, breakers and a
    /// hedge. `f(node)` performs one attempt at `node`.
    pub async fn call<T, E, F, Fut>(&self, candidates: &[NodeId], f: F) -> Result<T, Failure<E>>
    where
        F: Fn(NodeId) -> Fut,
        Fut: Future<Output = Result<T, CallError<E>>>,
    {
        let mut tried = Vec::new();
        let mut last = "no replica to call".to_owned();
        if candidates.is_empty() {
            return Err(Failure::Exhausted { tried, last });
        }
        let mut next = 0usize;
        let mut attempts = 0usize;
        // Each round walks the candidates once; a candidate refused by its breaker is skipped.
        while attempts < self.config.max_attempts {
            let Some(primary) = self.pick(candidates, &mut next, None) else {
                last = format!("{last}; every replica's circuit breaker is open");
                break;
            };
            if attempts > 0 {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(self.backoff(attempts as u32)).await;
            }
            attempts += 1;
            let hedge_to = if self.config.hedge && candidates.len() > 1 {
                Some(self.hedge_delay(primary))
            } else {
                None
            };
            match self
                .race(primary, hedge_to, candidates, &mut next, &f, &mut tried)
                .await
            {
                Ok(v) => return Ok(v),
                Err(CallError::Fatal(e)) => return Err(Failure::Fatal(e)),
                Err(
                    CallError::Transient(msg) | CallError::Declined(msg) | CallError::Stopped(msg),
                ) => last = msg,
            }
        }
        Err(Failure::Exhausted { tried, last })
    }

    /// The next candidate (round robin from `next`) whose breaker is not open, other than
    /// `except`.
    fn pick(
        &self,
        candidates: &[NodeId],
        next: &mut usize,
        except: Option<NodeId>,
    ) -> Option<NodeId> {
        for _ in 0..candidates.len() {
            let n = candidates[*next % candidates.len()];
            *next += 1;
            if Some(n) != except && self.is_available(n) {
                return Some(n);
            }
        }
        None
    }

    /// One attempt at `primary`, hedged to another candidate after `hedge_after`.
    async fn race<T, E, F, Fut>(
        &self,
        primary: NodeId,
        hedge_after: Option<Duration>,
        candidates: &[NodeId],
        next: &mut usize,
        f: &F,
        tried: &mut Vec<NodeId>,
    ) -> Result<T, CallError<E>>
    where
        F: Fn(NodeId) -> Fut,
        Fut: Future<Output = Result<T, CallError<E>>>,
    {
        let refused = |n: NodeId| CallError::Transient(format!("node {n}: circuit breaker open"));
        tried.push(primary);
        let first = self.attempt(primary, f);
        tokio::pin!(first);
        let Some(delay) = hedge_after else {
            return first.await.unwrap_or_else(|| Err(refused(primary)));
        };
        tokio::select! {
            r = &mut first => return r.unwrap_or_else(|| Err(refused(primary))),
            () = tokio::time::sleep(delay) => {}
        }
        let Some(second_node) = self.pick(candidates, next, Some(primary)) else {
            return first.await.unwrap_or_else(|| Err(refused(primary)));
        };
        tried.push(second_node);
        self.stats.hedges.fetch_add(1, Ordering::Relaxed);
        let second = self.attempt(second_node, f);
        tokio::pin!(second);
        // First success wins; a failure waits for the other copy.
        let (done, other_is_second) = tokio::select! {
            r = &mut first => (r.unwrap_or_else(|| Err(refused(primary))), true),
            r = &mut second => {
                let r = r.unwrap_or_else(|| Err(refused(second_node)));
                if r.is_ok() {
                    self.stats.hedge_wins.fetch_add(1, Ordering::Relaxed);
                }
                (r, false)
            }
        };
        match done {
            Ok(v) => Ok(v),
            Err(CallError::Fatal(e)) => Err(CallError::Fatal(e)),
            Err(CallError::Transient(_) | CallError::Declined(_) | CallError::Stopped(_))
                if other_is_second =>
            {
                let r = second.await.unwrap_or_else(|| Err(refused(second_node)));
                if r.is_ok() {
                    self.stats.hedge_wins.fetch_add(1, Ordering::Relaxed);
                }
                r
            }
            Err(CallError::Transient(_) | CallError::Declined(_) | CallError::Stopped(_)) => {
                first.await.unwrap_or_else(|| Err(refused(primary)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    type Log = Arc<Mutex<Vec<(NodeId, Duration)>>>;
    type Answer = std::pin::Pin<Box<dyn Future<Output = Result<u64, CallError<String>>>>>;

    fn config() -> ResilienceConfig {
        ResilienceConfig {
            call_timeout: Duration::from_millis(200),
            max_attempts: 4,
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(400),
            breaker_failures: 2,
            breaker_cooldown: Duration::from_secs(1),
            hedge: false,
            hedge_floor: Duration::from_millis(50),
            seed: 7,
        }
    }

    /// A fake replica set: `behaviour(node)` decides each answer; every call is logged with the
    /// (paused) time it started.
    fn caller(
        start: Instant,
        log: Log,
        behaviour: impl Fn(NodeId) -> Option<Result<u64, CallError<String>>> + Clone + 'static,
    ) -> impl Fn(NodeId) -> Answer {
        move |n| {
            log.lock().unwrap().push((n, start.elapsed()));
            let b = behaviour.clone();
            Box::pin(async move {
                match b(n) {
                    Some(r) => r,
                    // Never answers: only the deadline ends it.
                    None => std::future::pending().await,
                }
            })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_retries_on_the_next_replica_after_a_jittered_backoff() {
        let r = Resilience::new(config());
        let log = Log::default();
        let start = Instant::now();
        let f = caller(start, log.clone(), |n| {
            Some(if n == 3 {
                Ok(30)
            } else {
                Err(CallError::Transient(format!("{n} down")))
            })
        });
        assert_eq!(r.call(&[1, 2, 3], f).await, Ok(30));
        let log = log.lock().unwrap().clone();
        assert_eq!(log.iter().map(|l| l.0).collect::<Vec<_>>(), vec![1, 2, 3]);
        // Retry 1 waits 50..=100 ms, retry 2 waits 100..=200 ms.
        let gap1 = log[1].1 - log[0].1;
        let gap2 = log[2].1 - log[1].1;
        assert!(
            gap1 >= Duration::from_millis(50) && gap1 <= Duration::from_millis(100),
            "{gap1:?}"
        );
        assert!(
            gap2 >= Duration::from_millis(100) && gap2 <= Duration::from_millis(200),
            "{gap2:?}"
        );
        assert_eq!(r.stats.retries.load(Ordering::Relaxed), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_replica_costs_one_deadline() {
        let r = Resilience::new(config());
        let log = Log::default();
        let start = Instant::now();
        let f = caller(
            start,
            log.clone(),
            |n| if n == 1 { None } else { Some(Ok(2)) },
        );
        assert_eq!(r.call(&[1, 2], f).await, Ok(2));
        let log = log.lock().unwrap().clone();
        assert_eq!(log[0].0, 1);
        assert_eq!(log[1].0, 2);
        assert!(log[1].1 >= Duration::from_millis(200) + Duration::from_millis(50));
        assert!(log[1].1 <= Duration::from_millis(200) + Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn fatal_errors_are_not_retried() {
        let r = Resilience::new(config());
        let log = Log::default();
        let f = caller(Instant::now(), log.clone(), |_| {
            Some(Err(CallError::Fatal("bad request".to_owned())))
        });
        assert_eq!(
            r.call(&[1, 2], f).await,
            Err(Failure::Fatal("bad request".to_owned()))
        );
        assert_eq!(log.lock().unwrap().len(), 1);
        assert!(!r.is_open(1), "a fatal answer is a healthy peer");
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_are_bounded() {
        let r = Resilience::new(ResilienceConfig {
            breaker_failures: 100,
            ..config()
        });
        let log = Log::default();
        let f = caller(Instant::now(), log.clone(), |n| {
            Some(Err(CallError::Transient(format!("{n} down"))))
        });
        match r.call(&[1, 2], f).await {
            Err(Failure::Exhausted { tried, last }) => {
                assert_eq!(tried, vec![1, 2, 1, 2]);
                assert!(last.contains("down"), "{last}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn breaker_opens_then_probes_after_the_cool_down() {
        let r = Resilience::new(ResilienceConfig {
            max_attempts: 1,
            ..config()
        });
        let healthy = Arc::new(AtomicBool::new(false));
        let log = Log::default();
        let h = healthy.clone();
        let f = caller(Instant::now(), log.clone(), move |_| {
            Some(if h.load(Ordering::SeqCst) {
                Ok(1)
            } else {
                Err(CallError::Transient("down".into()))
            })
        });
        // Two consecutive failures open the breaker.
        assert!(r.call(&[1], &f).await.is_err());
        assert!(!r.is_open(1));
        assert!(r.call(&[1], &f).await.is_err());
        assert!(r.is_open(1));
        assert_eq!(r.stats.breaker_opens.load(Ordering::Relaxed), 1);
        // While open, calls are refused without reaching the peer.
        assert!(r.call(&[1], &f).await.is_err());
        assert_eq!(log.lock().unwrap().len(), 2);
        // After the cool-down one probe goes through; it fails, so the breaker re-opens.
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert!(r.call(&[1], &f).await.is_err());
        assert_eq!(log.lock().unwrap().len(), 3);
        assert!(r.is_open(1));
        assert!(r.call(&[1], &f).await.is_err());
        assert_eq!(log.lock().unwrap().len(), 3);
        assert_eq!(r.stats.breaker_opens.load(Ordering::Relaxed), 2);
        // Next probe succeeds: closed again.
        healthy.store(true, Ordering::SeqCst);
        tokio::time::advance(Duration::from_millis(1001)).await;
        assert_eq!(r.call(&[1], &f).await, Ok(1));
        assert!(!r.is_open(1));
        assert_eq!(r.call(&[1], &f).await, Ok(1));
        assert_eq!(log.lock().unwrap().len(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn an_open_breaker_sends_calls_to_other_replicas() {
        let r = Resilience::new(config());
        let log = Log::default();
        let f = caller(Instant::now(), log.clone(), |n| {
            Some(if n == 1 {
                Err(CallError::Transient("down".into()))
            } else {
                Ok(n)
            })
        });
        for _ in 0..2 {
            assert_eq!(r.call(&[1, 2], &f).await, Ok(2));
        }
        assert!(r.is_open(1));
        log.lock().unwrap().clear();
        assert_eq!(r.call(&[1, 2], &f).await, Ok(2));
        assert_eq!(
            log.lock().unwrap().iter().map(|l| l.0).collect::<Vec<_>>(),
            vec![2]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_replica_is_hedged_and_the_loser_cancelled() {
        let r = Resilience::new(ResilienceConfig {
            hedge: true,
            call_timeout: Duration::from_secs(10),
            ..config()
        });
        let cancelled = Arc::new(AtomicBool::new(false));
        let start = Instant::now();
        let c = cancelled.clone();
        let f = move |n: NodeId| {
            let c = c.clone();
            async move {
                struct OnDrop(Arc<AtomicBool>, bool);
                impl Drop for OnDrop {
                    fn drop(&mut self) {
                        if !self.1 {
                            self.0.store(true, Ordering::SeqCst);
                        }
                    }
                }
                let mut guard = OnDrop(c, false);
                if n == 1 {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                guard.1 = true;
                Ok::<_, CallError<String>>(n)
            }
        };
        assert_eq!(r.call(&[1, 2], f).await, Ok(2));
        // The hedge left at the floor (no samples yet) and answered at once.
        assert_eq!(start.elapsed(), Duration::from_millis(50));
        assert!(
            cancelled.load(Ordering::SeqCst),
            "the slow copy was dropped"
        );
        assert_eq!(r.stats.hedges.load(Ordering::Relaxed), 1);
        assert_eq!(r.stats.hedge_wins.load(Ordering::Relaxed), 1);
        assert_eq!(r.in_flight(1), 0);
        assert_eq!(r.in_flight(2), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_hedge_delay_follows_the_peers_p95() {
        let r = Resilience::new(ResilienceConfig {
            hedge: true,
            ..config()
        });
        // 100 answers at 120 ms teach the layer that peer 1 is normally that slow.
        let f = |n: NodeId| async move {
            tokio::time::sleep(Duration::from_millis(if n == 1 { 120 } else { 1 })).await;
            Ok::<_, CallError<String>>(n)
        };
        for _ in 0..100 {
            assert_eq!(r.call(&[1], f).await, Ok(1));
        }
        assert_eq!(r.p95(1), Some(Duration::from_millis(120)));
        assert_eq!(r.hedge_delay(1), Duration::from_millis(120));
        // So an answer within that p95 (100 ms, above the 50 ms floor) is not hedged.
        let before = r.stats.hedges.load(Ordering::Relaxed);
        let slow_then_fast = |n: NodeId| async move {
            tokio::time::sleep(Duration::from_millis(if n == 1 { 100 } else { 1 })).await;
            Ok::<_, CallError<String>>(n)
        };
        assert_eq!(r.call(&[1, 2], slow_then_fast).await, Ok(1));
        assert_eq!(r.stats.hedges.load(Ordering::Relaxed), before);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_primary_waits_for_its_hedge() {
        let r = Resilience::new(ResilienceConfig {
            hedge: true,
            ..config()
        });
        let start = Instant::now();
        let f = |n: NodeId| async move {
            if n == 1 {
                tokio::time::sleep(Duration::from_millis(60)).await;
                Err(CallError::Transient("1 failed".into()))
            } else {
                tokio::time::sleep(Duration::from_millis(30)).await;
                Ok::<_, CallError<String>>(n)
            }
        };
        assert_eq!(r.call(&[1, 2], f).await, Ok(2));
        // Hedge at 50 ms, its answer at 80 ms; no backoff or third attempt.
        assert_eq!(start.elapsed(), Duration::from_millis(80));
        assert_eq!(r.stats.retries.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_write_gives_up_once_every_replica_answered_stopped() {
        let mut s = StoppedReplicas::default();
        assert!(!s.note(1, &[1, 2, 3]));
        assert!(!s.note(1, &[1, 2, 3]), "the same replica twice is not all");
        assert!(!s.note(2, &[1, 2, 3]));
        assert!(s.note(3, &[1, 2, 3]));
        assert!(StoppedReplicas::default().note(7, &[7]), "a lone replica");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let r = Resilience::new(config());
        for retry in 1..10u32 {
            let d =
                (Duration::from_millis(100) * (1 << (retry - 1))).min(Duration::from_millis(400));
            let b = r.backoff(retry);
            assert!(b >= d / 2 && b <= d, "retry {retry}: {b:?} vs {d:?}");
        }
    }
}
