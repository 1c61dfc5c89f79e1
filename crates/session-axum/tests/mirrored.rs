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

/// `Mirrored` over real services: memory with a Redis replica, Redis with a
/// PostgreSQL replica, under both policies. The primary is the truth: a
/// replica that lost a record gets it back instead of ending the session, a
/// replica that is down is the policy's replica failure, and a write the
/// primary refused (a late holder's, under a lost lock) reaches no replica.
#[cfg(all(feature = "redis", feature = "postgres"))]
mod on_services {
    use std::sync::Arc;

    use session_axum::SessionLayer;
    use session_axum::core::testing::late_save_under_a_lost_lock_is_refused;
    use session_axum::core::{
        LockOptions, LockingStore, Mirrored, ReplicaFailure, SessionStore, StorageKey, Timestamp,
    };
    use session_axum::memory::MemoryStore;
    use session_axum::postgres::{PgPool, PostgresStore};
    use session_axum::redis::RedisStore;
    use session_axum::redis::deadpool_redis::redis;

    use crate::common::{Probe, app, send, service_url, unique};
    use crate::key_of;

    fn redis_store() -> RedisStore {
        RedisStore::from_url(&service_url("REDIS_URL"))
            .unwrap()
            .with_prefix(format!("mirrored:{}:", unique()))
    }

    async fn postgres_store() -> PostgresStore {
        let pool = PgPool::connect(&service_url("DATABASE_URL")).await.unwrap();
        let store = PostgresStore::new(pool).with_table_name("axum_mirrored_tests").unwrap();
        store.migrate().await.unwrap();
        store
    }

    /// A primary and a replica that can be made to fail, as stores to look
    /// into and as the app's layer.
    struct Pair<P, R> {
        primary: P,
        replica: Probe<R>,
        mirrored: Mirrored,
        app: axum::Router,
    }

    fn pair<P: LockingStore + Clone, R: SessionStore + Clone>(
        primary: P,
        replica: R,
        policy: ReplicaFailure,
    ) -> Pair<P, R> {
        let replica = Probe::new(replica);
        let mirrored = Mirrored::new(Arc::new(primary.clone()))
            .with_replica(Arc::new(replica.clone()))
            .on_replica_failure(policy);
        let app = app(SessionLayer::new(mirrored.clone()));
        Pair { primary, replica, mirrored, app }
    }

    async fn value_in(store: &dyn SessionStore, key: &StorageKey, name: &str) -> Option<String> {
        let record = store.load(key, Timestamp::now()).await.unwrap()?;
        record.data.get_value(name).map(ToString::to_string)
    }

    /// The replica lost the session (a replica restarted empty): the next
    /// plain write, locked write and touch each keep the user's session
    /// and put the primary's record back on the replica.
    async fn replica_missing_the_record<P: LockingStore + Clone, R: SessionStore + Clone>(
        pair: Pair<P, R>,
    ) {
        let Pair { primary, replica, mirrored, app } = pair;
        let cookie = send(&app, "/set?v=first", &[]).await.cookie();
        let key = key_of(&cookie);

        replica.delete(&key).await.unwrap();
        let reply = send(&app, "/set?v=second", &[&cookie]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.set_cookie(), None, "neither a new id nor a removal cookie");
        assert_eq!(send(&app, "/get", &[&cookie]).await.body, "second");
        assert_eq!(value_in(&replica, &key, "v").await.as_deref(), Some("\"second\""));

        replica.delete(&key).await.unwrap();
        let reply = send(&app, "/incr", &[&cookie]).await;
        assert_eq!((reply.status.as_u16(), reply.body.as_str()), (200, "1"));
        assert_eq!(reply.set_cookie(), None);
        assert_eq!(value_in(&replica, &key, "n").await.as_deref(), Some("1"));

        // A touch finds the replica without the record: the primary's
        // whole record goes back, not the (possibly older) one touched.
        replica.delete(&key).await.unwrap();
        let mut touched = primary.load(&key, Timestamp::now()).await.unwrap().unwrap();
        touched.data.insert_value("n", 99.into()); // what a stale reader holds
        touched.last_seen = Timestamp::now();
        mirrored.touch(&touched).await.unwrap();
        assert_eq!(value_in(&replica, &key, "n").await.as_deref(), Some("1"));
        assert_eq!(value_in(&replica, &key, "v").await.as_deref(), Some("\"second\""));
    }

    /// The replica cannot be written at all: `FailRequest` answers 503,
    /// `LogAndContinue` answers 200 with the primary written; either way the
    /// replica gets the session back with the first write after it returns.
    async fn replica_down<P: LockingStore + Clone, R: SessionStore + Clone>(
        pair: Pair<P, R>,
        policy: ReplicaFailure,
    ) {
        let Pair { primary, replica, app, .. } = pair;
        replica.fail(true);
        let reply = send(&app, "/set?v=while-down", &[]).await;
        let cookie = match policy {
            ReplicaFailure::FailRequest => {
                assert_eq!(reply.status, 503, "the replica write failed");
                replica.fail(false);
                send(&app, "/set?v=while-down", &[]).await.cookie()
            }
            _ => {
                assert_eq!(reply.status, 200, "logged and continued");
                let cookie = reply.cookie();
                assert!(value_in(&primary, &key_of(&cookie), "v").await.is_some());
                replica.fail(false);
                cookie
            }
        };
        let key = key_of(&cookie);
        replica.fail(true);
        let reply = send(&app, "/incr", &[&cookie]).await;
        let expected = if policy == ReplicaFailure::FailRequest { 503 } else { 200 };
        assert_eq!(reply.status, expected, "a locked write while the replica is down");
        // The lock was released either way.
        replica.fail(false);
        let reply = send(&app, "/incr", &[&cookie]).await;
        assert_eq!(reply.status, 200);
        assert_eq!(reply.set_cookie(), None, "the session goes on");
        assert_eq!(value_in(&replica, &key, "n").await, value_in(&primary, &key, "n").await);
        assert_eq!(value_in(&replica, &key, "v").await.as_deref(), Some("\"while-down\""));
    }

    /// A holder whose Redis lock was lost (its key gone: the lease ran out
    /// while it paused) saves after the next holder, in another process (a
    /// mirror over another store instance): the primary refuses the late
    /// save, and the replica keeps the next holder's data too.
    async fn late_holder_reaches_no_replica<R: SessionStore + Clone>(pair: Pair<RedisStore, R>) {
        let Pair { primary, replica, mirrored, .. } = pair;
        let other_process = RedisStore::from_url(&service_url("REDIS_URL"))
            .unwrap()
            .with_prefix(primary.prefix().to_owned());
        let next = Mirrored::new(Arc::new(other_process)).with_replica(Arc::new(replica.clone()));
        let now = Timestamp::now();
        let mut record = session_axum::core::ExpiryPolicy::default()
            .new_record(session_axum::core::SessionId::random().storage_key(), now);
        record.data.insert_value("n", 1.into());
        mirrored.create(&record).await.unwrap();
        let (late_guard, late) =
            mirrored.lock_and_load(&record.key, LockOptions::default(), now).await.unwrap();
        let mut raw = redis::Client::open(service_url("REDIS_URL"))
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let deleted: i64 = redis::cmd("DEL")
            .arg(session_stores_redis::testing::lock_key(&primary, &record.key))
            .query_async(&mut raw)
            .await
            .unwrap();
        assert_eq!(deleted, 1, "the lock key was there to lose");

        let writes_before = replica.writes();
        let error =
            late_save_under_a_lost_lock_is_refused(&mirrored, &next, late_guard, late.unwrap())
                .await;
        assert!(matches!(error, session_axum::core::Error::LockLost), "{error}");
        // One replica write: the next holder's. The late one never came.
        assert_eq!(replica.writes(), writes_before + 1);
        assert_eq!(value_in(&replica, &record.key, "n").await.as_deref(), Some("2"));
    }

    macro_rules! scenarios {
        ($($name:ident: $make:expr;)*) => {$(
            mod $name {
                use super::*;

                #[tokio::test]
                async fn replica_missing_the_record_fail_request() {
                    let (primary, replica) = $make;
                    replica_missing_the_record(pair(primary, replica, ReplicaFailure::FailRequest))
                        .await;
                }

                #[tokio::test]
                async fn replica_missing_the_record_log_and_continue() {
                    let (primary, replica) = $make;
                    replica_missing_the_record(pair(
                        primary,
                        replica,
                        ReplicaFailure::LogAndContinue,
                    ))
                    .await;
                }

                #[tokio::test]
                async fn replica_down_fail_request() {
                    let (primary, replica) = $make;
                    let policy = ReplicaFailure::FailRequest;
                    replica_down(pair(primary, replica, policy), policy).await;
                }

                #[tokio::test]
                async fn replica_down_log_and_continue() {
                    let (primary, replica) = $make;
                    let policy = ReplicaFailure::LogAndContinue;
                    replica_down(pair(primary, replica, policy), policy).await;
                }
            }
        )*};
    }

    scenarios! {
        memory_with_redis: (MemoryStore::new(), redis_store());
        redis_with_postgres: (redis_store(), postgres_store().await);
    }

    #[tokio::test]
    async fn late_holder_reaches_no_replica_fail_request() {
        let policy = ReplicaFailure::FailRequest;
        late_holder_reaches_no_replica(pair(redis_store(), postgres_store().await, policy)).await;
    }

    #[tokio::test]
    async fn late_holder_reaches_no_replica_log_and_continue() {
        let policy = ReplicaFailure::LogAndContinue;
        late_holder_reaches_no_replica(pair(redis_store(), postgres_store().await, policy)).await;
    }

    /// The same with a memory replica, the case first seen.
    #[tokio::test]
    async fn late_holder_reaches_no_memory_replica() {
        let policy = ReplicaFailure::FailRequest;
        late_holder_reaches_no_replica(pair(redis_store(), MemoryStore::new(), policy)).await;
    }

    /// Two mirrors over one Redis primary and one PostgreSQL replica,
    /// standing for two processes.
    async fn mirrored_redis_postgres() -> session_axum::core::testing::Backend {
        let (primary, replica) = (redis_store(), postgres_store().await);
        let open =
            || Mirrored::new(Arc::new(primary.clone())).with_replica(Arc::new(replica.clone()));
        session_axum::core::testing::Backend::new(open(), open())
    }

    session_axum::core::conformance_tests!(
        mirrored_redis_postgres,
        session_axum::core::testing::Capabilities::expires_natively()
    );
}
