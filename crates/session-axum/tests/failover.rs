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
use session_axum::redis::RedisStore;
use session_stores_redis::testing::PrivateRedisCluster;
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

/// Runs the scenario: `sessions` client tasks, each incrementing its own
/// session, a primary killed after a second, started again three seconds
/// later, and three more seconds of increments once the cluster is whole.
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

    let sessions = 8;
    let mut cookies = Vec::new();
    for _ in 0..sessions {
        let reply = first_increment(&app).await;
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
                        other => panic!("{other} during the failover: {}", reply.body),
                    }
                }
            }),
        ));
    }

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
    stop.store(true, Ordering::Relaxed);

    let mut figures = Figures::default();
    let (mut first_failure, mut last_failure) = (None::<Instant>, None::<Instant>);
    for (cookie, (tally, task)) in cookies.iter().zip(tasks) {
        task.await.unwrap();
        let tally = tally.lock().await;
        // The store recovered without a restart: one more increment answers,
        // with the stored count + 1.
        let reply = send(&app, "/incr", &[cookie]).await;
        let stored: u64 = match reply.status {
            StatusCode::OK => reply.body.parse::<u64>().unwrap() - 1,
            other => panic!("{other} reading the count after the failover: {}", reply.body),
        };
        // Panics if more is stored than may have landed.
        figures.add(&tally.settle(stored));
        for &at in &tally.failed_at {
            first_failure = Some(first_failure.map_or(at, |first| first.min(at)));
            last_failure = Some(last_failure.map_or(at, |last| last.max(at)));
            // Once the cluster was whole again, no request failed.
            assert!(
                at < whole,
                "a request failed {:?} after the cluster was whole again",
                at.duration_since(whole)
            );
        }
    }
    if let (Some(first), Some(last)) = (first_failure, last_failure) {
        figures.seconds_unavailable = last.duration_since(first).as_secs_f64();
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
