//! A shoal node: the one place that starts one and stops it, in order.
//!
//! [`run`] has mini-redis's `server::run(listener, shutdown)` shape: the caller binds the REST
//! listener and chooses the shutdown signal (the binary passes ctrl-c/SIGTERM, tests bind
//! `127.0.0.1:0`). It starts the [`Node`] (the cluster member, then the router, then the
//! data-plane service that lets other nodes' routers reach this node's replicas), serves the
//! REST API until `shutdown` completes, drains the requests in flight ([`api::serve`]), and
//! only then stops the node: internal port, background tasks, Raft groups (their logs are
//! already fsynced, so stopping loses nothing acknowledged).

use crate::api::{self, AppState};
use crate::cluster::{Cluster, ClusterError, ClusterOptions};
use crate::config::ApiConfig;
use crate::router::{Router, RouterConfig, ShardService};
use std::future::Future;
use std::sync::Arc;

/// Why a node stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The cluster member could not start (storage, internal port, data layout).
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// Serving the REST API failed.
    #[error("serving the REST API: {0}")]
    Serve(#[from] std::io::Error),
}

/// What a node is started with.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The cluster member: membership, data directory, Raft timings, index defaults.
    pub cluster: ClusterOptions,
    /// Routing: deadlines, retries, breakers, hedging.
    pub router: RouterConfig,
    /// The REST server.
    pub api: ApiConfig,
}

/// A started node: its cluster member and its router, wired together.
pub struct Node {
    cluster: Arc<Cluster>,
    router: Arc<Router>,
}

impl Node {
    /// Starts the cluster member (metadata replica, internal port, joining in the background),
    /// the router over it, and registers the router's data-plane service on the internal port.
    pub async fn start(
        cluster: ClusterOptions,
        router: RouterConfig,
    ) -> Result<Node, ClusterError> {
        let cluster = Cluster::start(cluster).await?;
        let router = Router::new(cluster.clone(), router);
        cluster.register_service(ShardService::SERVICE, ShardService::new(&cluster));
        Ok(Node { cluster, router })
    }

    /// The cluster member.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// The router.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// Stops the node: the internal port and background tasks, then every Raft group.
    pub async fn shutdown(self) {
        self.cluster.shutdown().await;
        tracing::info!("stopped");
    }
}

/// Runs a node that serves the REST API on `listener` until `shutdown` completes, then drains
/// HTTP and stops the node (see the module doc for the order).
pub async fn run(
    listener: tokio::net::TcpListener,
    options: NodeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), NodeError> {
    let addr = listener.local_addr()?;
    let internal = options.cluster.settings.internal_listen.clone();
    let data_dir = options.cluster.data_dir.clone();
    let node = Node::start(options.cluster, options.router).await?;
    tracing::info!(
        %addr,
        node_id = node.cluster().node_id(),
        ?internal,
        data_dir = %data_dir.display(),
        "shoal serving"
    );
    let state = AppState::new(node.cluster().clone(), node.router().clone(), options.api);
    let served = api::serve(listener, state, shutdown).await;
    node.shutdown().await;
    Ok(served?)
}
