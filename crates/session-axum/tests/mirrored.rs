//! `Mirrored` stores: the shared conformance suite, and the layer over a
//! primary with replicas, including failing replicas under each policy.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers outside #[test] functions.

mod common;

use std::sync::Arc;

use common::{Probe, app, send};
use session_axum::SessionLayer;
use session_axum::core::testing::Backend;
use session_axum::core::{Mirrored, ReplicaFailure, SessionId, SessionStore, Timestamp};
use session_axum::memory::MemoryStore;

/// Two mirrors over one primary and one replica, standing for two processes.
async fn mirrored_memory() -> Backend {
    let primary = MemoryStore::new();
    let replica = MemoryStore::new();
    let open = || Mirrored::new(Arc::new(primary.clone())).with_replica(Arc::new(replica.clone()));
    Backend::new(open(), open())
}

session_axum::core::conformance_tests!(mirrored_memory);

struct Setup {
    primary: MemoryStore,
    replica: Probe<MemoryStore>,
    app: axum::Router,
}

fn setup(policy: ReplicaFailure) -> Setup {
    let primary = MemoryStore::new();
    let replica = Probe::new(MemoryStore::new());
    let mirrored = Mirrored::new(Arc::new(primary.clone()))
        .with_replica(Arc::new(replica.clone()))
        .on_replica_failure(policy);
    Setup { primary, replica, app: app(SessionLayer::new(mirrored)) }
}

fn key_of(cookie: &str) -> session_axum::core::StorageKey {
    cookie.strip_prefix("id=").unwrap().parse::<SessionId>().unwrap().storage_key()
}

#[tokio::test]
async fn writes_land_everywhere_and_reads_come_from_the_primary() {
    let Setup { primary, replica, app } = setup(ReplicaFailure::FailRequest);
    let cookie = send(&app, "/set?v=copied", &[]).await.cookie();
    let key = key_of(&cookie);
    let now = Timestamp::now();
    let in_replica = replica.load(&key, now).await.unwrap().unwrap();
    assert_eq!(in_replica.data.get::<String>("v").unwrap().as_deref(), Some("copied"));

    send(&app, "/set?v=updated", &[&cookie]).await;
    let in_replica = replica.load(&key, now).await.unwrap().unwrap();
    assert_eq!(in_replica.data.get::<String>("v").unwrap().as_deref(), Some("updated"));

    // Reads ignore the replica: gone from the primary means gone.
    replica.delete(&key).await.unwrap();
    assert_eq!(send(&app, "/get", &[&cookie]).await.body, "updated");
    primary.delete(&key).await.unwrap();
    replica.create(&in_replica).await.unwrap();
    assert_eq!(send(&app, "/get", &[&cookie]).await.body, "none");
}

#[tokio::test]
async fn a_destroyed_session_is_gone_from_every_store() {
    let Setup { primary, replica, app } = setup(ReplicaFailure::FailRequest);
    let cookie = send(&app, "/set?v=doomed", &[]).await.cookie();
    send(&app, "/destroy", &[&cookie]).await;
    let now = Timestamp::now();
    assert!(primary.load(&key_of(&cookie), now).await.unwrap().is_none());
    assert!(replica.load(&key_of(&cookie), now).await.unwrap().is_none());
}

#[tokio::test]
async fn a_failing_replica_fails_the_request_under_fail_request() {
    let Setup { replica, app, .. } = setup(ReplicaFailure::FailRequest);
    let cookie = send(&app, "/set?v=first", &[]).await.cookie();
    replica.fail(true);
    let reply = send(&app, "/set?v=second", &[&cookie]).await;
    assert_eq!(reply.status, 503);
    assert_eq!(send(&app, "/set?v=new", &[]).await.status, 503);
    replica.fail(false);
    assert_eq!(send(&app, "/set?v=third", &[&cookie]).await.status, 200);
}

#[tokio::test]
async fn a_failing_replica_is_logged_and_skipped_under_log_and_continue() {
    let Setup { primary, replica, app } = setup(ReplicaFailure::LogAndContinue);
    replica.fail(true);
    let reply = send(&app, "/set?v=primary-only", &[]).await;
    assert_eq!(reply.status, 200);
    let cookie = reply.cookie();
    assert_eq!(send(&app, "/get", &[&cookie]).await.body, "primary-only");
    assert_eq!(primary.len(), 1);
    replica.fail(false);
    assert!(replica.load(&key_of(&cookie), Timestamp::now()).await.unwrap().is_none());
}

#[tokio::test]
async fn locked_saves_land_everywhere_and_follow_the_policy() {
    let Setup { replica, app, .. } = setup(ReplicaFailure::FailRequest);
    let cookie = send(&app, "/set?v=counter", &[]).await.cookie();
    assert_eq!(send(&app, "/incr", &[&cookie]).await.body, "1");
    assert_eq!(send(&app, "/incr", &[&cookie]).await.body, "2");
    let in_replica = replica.load(&key_of(&cookie), Timestamp::now()).await.unwrap().unwrap();
    assert_eq!(in_replica.data.get::<u64>("n").unwrap(), Some(2));

    replica.fail(true);
    assert_eq!(send(&app, "/incr", &[&cookie]).await.status, 503);
    replica.fail(false);
    // The primary's lock was released despite the failure.
    assert_eq!(send(&app, "/incr", &[&cookie]).await.status, 200);
}
