//! A Redis Cluster primary killed under steady locked increments, its
//! replica promoted, the killed node back as a replica: every increment the
//! app answered 200 for is counted and checked against what the cluster
//! holds afterwards. With replica acknowledgements (`with_replica_acks`) no
//! acknowledged increment may be lost; without, the loss is reported.
//! The accounting (`common::ledger`) is that of `soak.rs`.
#![cfg(feature = "redis-cluster")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::ledger::{Figures, Tally};
use common::{app, config, send};
use http::StatusCode;
use session_axum::SessionLayer;
use session_axum::core::LockOptions;
use session_axum::core::SessionId;
use session_axum::redis::RedisStore;
use session_stores_redis::testing::{self, PrivateRedisCluster};
use tokio::sync::Mutex;

/// A new session's first increment on the freshly started cluster, sent
/// again (for up to ten seconds) while it answers 503: on a loaded machine
/// the client's first connections may time out before the cluster's nodes
/// answer quickly, which is not what this test is about. A 503 saves
/// nothing, so the retry starts from no session.
async fn first_increment(app: &axum::Router) -> common::Reply {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = send(app, "/incr", &[]).await;
        if reply.status != StatusCode::SERVICE_UNAVAILABLE || Instant::now() >= deadline {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Client tasks, each incrementing its own session until stopped, and what
/// each was answered.
struct Load {
    cookies: Vec<String>,
    stop: Arc<AtomicBool>,
    tasks: Vec<(Arc<Mutex<Tally>>, tokio::task::JoinHandle<()>)>,
}

/// What a [`Load`] saw, settled against what the store holds.
struct Outcome {
    figures: Figures,
    /// When requests failed, over all sessions.
    failed_at: Vec<Instant>,
}

impl Load {
    /// `sessions` new sessions, each incremented once, then in a loop.
    async fn start(app: &axum::Router, sessions: usize) -> Self {
        let mut cookies = Vec::new();
        for _ in 0..sessions {
            let reply = first_increment(app).await;
            assert_eq!(reply.body, "1");
            cookies.push(reply.cookie());
        }
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for cookie in &cookies {
            let (app, cookie, stop) = (app.clone(), cookie.clone(), Arc::clone(&stop));
            let tally = Arc::new(Mutex::new(Tally::starting_at(1)));
            let seen = Arc::clone(&tally);
            tasks.push((
                tally,
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let reply = send(&app, "/incr", &[&cookie]).await;
                        let mut tally = seen.lock().await;
                        match reply.status {
                            StatusCode::OK => tally.acknowledged.push(reply.body.parse().unwrap()),
                            StatusCode::SERVICE_UNAVAILABLE => {
                                tally.error();
                                drop(tally);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                            other => panic!("{other} under load: {}", reply.body),
                        }
                    }
                }),
            ));
        }
        Self { cookies, stop, tasks }
    }

    /// Stops the clients and checks each session's count: one more
    /// increment must answer (the store carries on without a restart), with
    /// the stored count + 1, and no more may be stored than may have landed.
    async fn finish(self, app: &axum::Router) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        let mut outcome = Outcome { figures: Figures::default(), failed_at: Vec::new() };
        for (cookie, (tally, task)) in self.cookies.iter().zip(self.tasks) {
            task.await.unwrap();
            let tally = tally.lock().await;
            let reply = send(app, "/incr", &[cookie]).await;
            let stored: u64 = match reply.status {
                StatusCode::OK => reply.body.parse::<u64>().unwrap() - 1,
                other => panic!("{other} reading the count afterwards: {}", reply.body),
            };
            // Panics if more is stored than may have landed.
            outcome.figures.add(&tally.settle(stored));
            outcome.failed_at.extend_from_slice(&tally.failed_at);
        }
        outcome
    }
}

/// Runs the scenario: client tasks each incrementing their own session, a
/// primary killed after a second, started again three seconds later, and
/// three more seconds of increments once the cluster is whole.
async fn kill_a_primary_under_load(replica_acks: bool) -> Figures {
    let mut cluster = PrivateRedisCluster::start();
    let mut store = RedisStore::cluster(cluster.urls())
        .unwrap()
        .with_connect_timeout(Duration::from_millis(500))
        .with_response_timeout(Duration::from_millis(1500));
    if replica_acks {
        store = store.with_replica_acks(1, Duration::from_millis(500));
    }
    // A lock whose holder died with the primary ends with its lease.
    let locks = LockOptions { lease: Duration::from_secs(1), wait_timeout: Duration::from_secs(2) };
    let app = app(SessionLayer::new(store.clone())
        .with_config(config().with_lock_options(locks))
        .expect("a valid session config"));

    let load = Load::start(&app, 8).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let victim = cluster.primaries()[0];
    cluster.kill(victim);
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.start_again(victim);
    let cluster = tokio::task::spawn_blocking(move || {
        cluster.wait_until_healthy(Duration::from_secs(30));
        cluster
    })
    .await
    .unwrap();
    let whole = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let Outcome { mut figures, failed_at } = load.finish(&app).await;
    for &at in &failed_at {
        // Once the cluster was whole again, no request failed.
        assert!(
            at < whole,
            "a request failed {:?} after the cluster was whole again",
            at.duration_since(whole)
        );
    }
    if let (Some(first), Some(last)) = (failed_at.iter().min(), failed_at.iter().max()) {
        figures.seconds_unavailable = last.duration_since(*first).as_secs_f64();
    }
    let label = format!("failover, replica acks {}", if replica_acks { "on" } else { "off" });
    println!("{}\n{}", Figures::header(), figures.row(&label));
    drop(cluster);
    figures
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_replica_acks_no_acknowledged_increment_is_lost_in_a_failover() {
    let figures = kill_a_primary_under_load(true).await;
    assert_eq!(figures.lost, 0, "acknowledged increments lost");
    assert!(figures.errors > 0, "the kill was felt: requests failed during the failover");
    assert!(figures.acknowledged > figures.errors as usize, "the cluster served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_replica_acks_the_loss_in_a_failover_is_reported() {
    let figures = kill_a_primary_under_load(false).await;
    assert!(figures.errors > 0, "the kill was felt: requests failed during the failover");
    assert!(figures.acknowledged > figures.errors as usize, "the cluster served");
}

/// The slots of four sessions moved to another primary, one after the
/// other and slowly (a key at a time), while eight sessions are incremented
/// under their locks with default settings: requests on a migrating slot
/// meet `ASK` and `TRYAGAIN` and wait for the move instead of failing, so
/// not one request answers an error and no acknowledged increment is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slot_migration_under_locked_increments_fails_nothing_and_loses_nothing() {
    let cluster = PrivateRedisCluster::start();
    let store = RedisStore::cluster(cluster.urls()).unwrap();
    let app = app(SessionLayer::new(store.clone()).with_config(config()).unwrap());

    let load = Load::start(&app, 8).await;
    let record_keys: Vec<String> = load.cookies[..4]
        .iter()
        .map(|cookie| {
            let (_, id) = cookie.split_once('=').unwrap();
            let id: SessionId = id.parse().unwrap();
            testing::record_key(&store, &id.storage_key())
        })
        .collect();
    let moved = tokio::task::spawn_blocking(move || {
        let mut moved = 0;
        for record_key in record_keys {
            let slot = cluster.slot_of(&record_key);
            let from = cluster.owner_of(slot);
            let to = cluster.primaries().into_iter().find(|&p| p != from).unwrap();
            cluster.migrate_slot(slot, to, Duration::from_millis(700));
            assert_eq!(cluster.owner_of(slot), to, "slot {slot} moved");
            moved += 1;
        }
        (cluster, moved)
    });
    let (cluster, moved) = moved.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let Outcome { figures, .. } = load.finish(&app).await;
    println!("{}\n{}", Figures::header(), figures.row(&format!("{moved} slots moved")));
    assert_eq!(figures.errors, 0, "requests failed during the slot migrations");
    assert_eq!(figures.lost, 0, "acknowledged increments lost");
    assert!(figures.acknowledged > 8 * 4, "the sessions were incremented throughout");
    drop(cluster);
}
