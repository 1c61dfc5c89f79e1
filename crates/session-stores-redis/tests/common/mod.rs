//! Helpers for the test binaries: the Redis of the test run from
//! `REDIS_URL`, and unique prefixes on it. Private `redis-server`s for fault
//! tests are `session_stores_redis::testing::PrivateRedis`.
#![allow(dead_code)] // Each test binary uses a different part.

pub(crate) mod partition;

use session_core::SessionId;
use session_core::testing::Backend;
use session_stores_redis::RedisStore;

/// The shared Redis the tests run against.
pub(crate) fn redis_url() -> String {
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "REDIS_URL is not set. Run the tests with `cargo xtask test`, which starts \
             redis-server and sets REDIS_URL (or start one yourself and export REDIS_URL)."
        ),
    }
}

/// The nodes of the test run's Redis Cluster (`REDIS_CLUSTER_URLS`, comma
/// separated).
pub(crate) fn cluster_urls() -> Vec<String> {
    match std::env::var("REDIS_CLUSTER_URLS") {
        Ok(urls) if !urls.trim().is_empty() => {
            urls.split(',').map(|url| url.trim().to_owned()).filter(|u| !u.is_empty()).collect()
        }
        _ => panic!(
            "REDIS_CLUSTER_URLS is not set. Run the tests with `cargo xtask test`, which starts \
             a local Redis Cluster and sets REDIS_CLUSTER_URLS (or start one yourself and \
             export its node URLs, comma separated)."
        ),
    }
}

/// Two stores, each with its own pool, on the test run's Redis Cluster and
/// one fresh prefix.
pub(crate) fn two_cluster_stores(label: &str) -> (RedisStore, RedisStore) {
    let open = || RedisStore::cluster(cluster_urls()).unwrap_or_else(|e| panic!("store: {e}"));
    let store = open().with_prefix(unique_prefix(label));
    let other = open().with_prefix(store.prefix().to_owned());
    (store, other)
}

/// [`two_cluster_stores`] for the conformance suite.
pub(crate) async fn cluster_backend() -> Backend {
    let (store, other) = two_cluster_stores("conformance");
    Backend::new(store, other)
}

/// A plain connection to the test run's Redis Cluster.
pub(crate) async fn raw_cluster_connection()
-> deadpool_redis::redis::cluster_async::ClusterConnection {
    deadpool_redis::redis::cluster::ClusterClient::new(cluster_urls())
        .unwrap_or_else(|e| panic!("cluster client: {e}"))
        .get_async_connection()
        .await
        .unwrap_or_else(|e| panic!("connect to the cluster: {e}"))
}

/// A prefix no other test (or earlier run) uses.
pub(crate) fn unique_prefix(label: &str) -> String {
    let random = SessionId::random().storage_key().to_hex();
    format!("test:{label}:{}:", &random[..16])
}

/// A store on the shared Redis with a pool of its own and a fresh prefix.
pub(crate) fn shared_store(label: &str) -> RedisStore {
    RedisStore::from_url(&redis_url())
        .unwrap_or_else(|e| panic!("store: {e}"))
        .with_prefix(unique_prefix(label))
}

/// A plain connection to a Redis, for looking at what the store wrote.
pub(crate) async fn raw_connection(url: &str) -> deadpool_redis::redis::aio::MultiplexedConnection {
    deadpool_redis::redis::Client::open(url)
        .unwrap_or_else(|e| panic!("client: {e}"))
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Two stores, each with its own pool, on the test Redis and one fresh
/// prefix: two processes sharing sessions.
pub(crate) fn two_stores(label: &str) -> (RedisStore, RedisStore) {
    let store = shared_store(label);
    let other = RedisStore::from_url(&redis_url())
        .unwrap_or_else(|e| panic!("store: {e}"))
        .with_prefix(store.prefix().to_owned());
    (store, other)
}

/// [`two_stores`] for the conformance suite.
pub(crate) async fn backend() -> Backend {
    let (store, other) = two_stores("conformance");
    Backend::new(store, other)
}
