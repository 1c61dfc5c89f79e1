//! Round trips per operation, counted by the server.
//!
//! A private redis-server (so no other test's traffic is counted) and a
//! `MONITOR` connection: Redis reports every command it executes, marking
//! the ones run inside a Lua script as `[<db> lua]`. Counting the top-level
//! commands between two markers gives an upper bound on the round trips an
//! operation made (the store never pipelines, so here they are equal).
//! Scripts are warmed up first: the first call of each on a fresh server
//! costs `NOSCRIPT` + `SCRIPT LOAD` + a retry.
#![allow(clippy::unwrap_used)] // Test helpers outside #[test] functions.

mod common;

use std::time::Duration;

use deadpool_redis::redis::{self, aio::MultiplexedConnection};
use session_core::{ExpiryPolicy, LockOptions, LockingStore, SessionId, SessionStore, Timestamp};
use session_stores_redis::RedisStore;
use session_stores_redis::testing::PrivateRedis;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

struct Monitor {
    lines: tokio::io::Lines<BufReader<TcpStream>>,
    marker_connection: MultiplexedConnection,
    markers: u64,
}

impl Monitor {
    async fn start(server: &PrivateRedis) -> Self {
        let address = server.url();
        let address = address.trim_start_matches("redis://").trim_end_matches('/').to_owned();
        let mut stream = TcpStream::connect(&address).await.unwrap();
        stream.write_all(b"MONITOR\r\n").await.unwrap();
        let mut lines = BufReader::new(stream).lines();
        assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("+OK"));
        let mut monitor = Self {
            lines,
            marker_connection: common::raw_connection(&server.url()).await,
            markers: 0,
        };
        // Skip whatever the marker connection sent while connecting.
        monitor.commands_since_last().await;
        monitor
    }

    /// Top-level commands from other clients since the previous call.
    async fn commands_since_last(&mut self) -> usize {
        self.counts_since_last().await.0
    }

    /// Top-level commands from other clients since the previous call, and
    /// the commands their scripts ran inside Redis.
    async fn counts_since_last(&mut self) -> (usize, usize) {
        self.markers += 1;
        let marker = format!("round-trip-marker-{}", self.markers);
        let _: String =
            redis::cmd("ECHO").arg(&marker).query_async(&mut self.marker_connection).await.unwrap();
        let (mut commands, mut in_scripts) = (0, 0);
        loop {
            let line = tokio::time::timeout(Duration::from_secs(10), self.lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("no MONITOR output"))
                .unwrap()
                .unwrap_or_else(|| panic!("MONITOR connection closed"));
            if line.contains(&marker) {
                return (commands, in_scripts);
            }
            if line.contains(" lua] ") {
                in_scripts += 1;
            } else {
                commands += 1;
            }
        }
    }
}

#[tokio::test]
async fn hot_path_operations_take_one_round_trip_each() {
    let server = PrivateRedis::start();
    let store = RedisStore::from_url(&server.url()).unwrap();
    let policy = ExpiryPolicy::default();
    let now = Timestamp::now();
    let options = LockOptions::default();

    // Warm up: connect, load every script once.
    let warm = policy.new_record(SessionId::random().storage_key(), now);
    store.create(&warm).await.unwrap();
    store.load(&warm.key, now).await.unwrap();
    store.save(&warm).await.unwrap();
    store.touch(&warm).await.unwrap();
    let (guard, _) = store.lock_and_load(&warm.key, options, now).await.unwrap();
    store.save_and_release(&warm, guard).await.unwrap();
    store.lock(&warm.key, options).await.unwrap().release().await.unwrap();
    store.delete(&warm.key).await.unwrap();

    let mut monitor = Monitor::start(&server).await;
    let mut record = policy.new_record(SessionId::random().storage_key(), now);
    record.user = Some("counted".to_owned());
    let mut counts = Vec::new();

    store.create(&record).await.unwrap();
    counts.push(("create", monitor.commands_since_last().await));
    let loaded = store.load(&record.key, now).await.unwrap();
    assert!(loaded.is_some());
    counts.push(("load", monitor.commands_since_last().await));
    let missing = SessionId::random().storage_key();
    assert!(store.load(&missing, now).await.unwrap().is_none());
    counts.push(("load of a missing session", monitor.commands_since_last().await));
    record.data.insert_value("n", 1.into());
    store.save(&record).await.unwrap();
    counts.push(("save", monitor.commands_since_last().await));
    store.touch(&record).await.unwrap();
    counts.push(("touch", monitor.commands_since_last().await));
    let (guard, loaded) = store.lock_and_load(&record.key, options, now).await.unwrap();
    let (round_trips, lock_and_load_inside) = monitor.counts_since_last().await;
    counts.push(("lock_and_load", round_trips));
    let mut loaded = loaded.unwrap();
    loaded.data.insert_value("n", 2.into());
    store.save_and_release(&loaded, guard).await.unwrap();
    let (round_trips, save_and_release_inside) = monitor.counts_since_last().await;
    counts.push(("save_and_release", round_trips));
    let guard = store.lock(&record.key, options).await.unwrap();
    counts.push(("lock", monitor.commands_since_last().await));
    guard.release().await.unwrap();
    counts.push(("release", monitor.commands_since_last().await));
    store.delete(&record.key).await.unwrap();
    counts.push(("delete", monitor.commands_since_last().await));

    for (operation, count) in &counts {
        assert_eq!(*count, 1, "{operation} took {count} round trips: {counts:?}");
    }
    // The work inside Redis on the hot path (the user and the deadline stay
    // the same, so the user index is not touched): SET NX PX + GET, then
    // GET (lock) + SET XX GET EXAT + DEL (lock) + PUBLISH (the release
    // notice for waiters; O(1) when nobody listens).
    assert_eq!(lock_and_load_inside, 2, "commands inside lock_and_load");
    assert_eq!(save_and_release_inside, 4, "commands inside save_and_release");

    // The counter sees what a naive implementation would cost: checking a
    // pooled connection out pings it (UNWATCH + PING) before the command.
    let pool = store.pool().expect("a store on one Redis has a standalone pool");
    drop(pool.get().await.unwrap()); // now one sits idle in the pool
    monitor.commands_since_last().await;
    let mut checked_out = pool.get().await.unwrap();
    let _: Option<String> =
        redis::cmd("GET").arg("some-key").query_async(&mut checked_out).await.unwrap();
    assert_eq!(monitor.commands_since_last().await, 3);
}
