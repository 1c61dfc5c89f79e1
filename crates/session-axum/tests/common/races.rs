//! Lifecycle races: operations that end or move a session, run against
//! concurrent requests on the same session through two apps on one store:
//! two layer instances in this process (`race_tests!(make_store)`), or two
//! server processes (`tests/processes.rs`, through the `*_on` functions).
//! Each scenario runs many rounds, so the interleavings vary; every round
//! checks that the outcome is one of the allowed ones.

use session_axum::SessionLayer;
use session_axum::core::{LockingStore, SessionId, StorageKey, Timestamp};
use tokio::task::JoinSet;

use super::target::Target;
use super::{Reply, app, config};

/// Rounds per scenario: enough for the tasks to interleave differently.
pub const ROUNDS: usize = 20;
/// Concurrent requests racing the lifecycle operation in each round.
const RACERS: usize = 8;

fn key_of(cookie: &str) -> StorageKey {
    let (_, value) = cookie.split_once('=').expect("name=value");
    value.parse::<SessionId>().expect("a session id").storage_key()
}

/// The `id=<value>` a reply set, unless it removed the cookie.
fn new_cookie(reply: &Reply) -> Option<String> {
    let set = reply.set_cookie()?;
    (!set.contains("Max-Age=0")).then(|| set.split(';').next().unwrap_or_default().to_owned())
}

fn two_apps<S: LockingStore + Clone>(store: &S) -> [Target; 2] {
    let layer = || SessionLayer::new(store.clone()).with_config(config()).expect("a valid config");
    [app(layer()).into(), app(layer()).into()]
}

/// Runs `racers` requests and `ender` concurrently, alternating the two apps;
/// returns the racers' replies (in spawn order) and the ender's.
async fn race(
    apps: &[Target; 2],
    cookie: &str,
    racers: &[&'static str],
    ender: &'static str,
) -> (Vec<Reply>, Reply) {
    let mut tasks = JoinSet::new();
    let middle = racers.len() / 2;
    for (i, path) in racers.iter().enumerate() {
        if i == middle {
            let (app, cookie) = (apps[1].clone(), cookie.to_owned());
            tasks.spawn(async move { (usize::MAX, app.send(ender, &[&cookie]).await) });
        }
        let (app, cookie, path) = (apps[i % 2].clone(), cookie.to_owned(), *path);
        tasks.spawn(async move { (i, app.send(path, &[&cookie]).await) });
    }
    let mut replies: Vec<Option<Reply>> = (0..racers.len()).map(|_| None).collect();
    let mut ended = None;
    while let Some(joined) = tasks.join_next().await {
        let (i, reply) = joined.expect("a request task");
        assert!(reply.status.is_success(), "{}: {} {}", i, reply.status, reply.body);
        match replies.get_mut(i) {
            Some(slot) => *slot = Some(reply),
            None => ended = Some(reply),
        }
    }
    (replies.into_iter().map(|r| r.expect("every racer answered")).collect(), ended.expect("ender"))
}

/// `destroy` (logout) racing locked and unlocked writes: once it has
/// answered, the old id never loads again and nothing of it is left in the
/// store; a racing write either ran before it or started a new session
/// under a new id, never recreating the old one.
pub async fn destroy_racing_writes<S: LockingStore + Clone>(store: S) {
    destroy_racing_writes_on(&two_apps(&store), &store).await;
}

/// [`destroy_racing_writes`] through `apps`, which share `store`.
pub async fn destroy_racing_writes_on(apps: &[Target; 2], store: &dyn LockingStore) {
    for round in 0..ROUNDS {
        let cookie = apps[0].send("/set?v=before", &[]).await.cookie();
        let racers = ["/incr", "/set?v=racer", "/get", "/set?v=racer", "/incr"];
        let racers: Vec<&'static str> = racers.iter().copied().cycle().take(RACERS).collect();
        let (replies, ended) = race(apps, &cookie, &racers, "/destroy").await;
        assert_eq!(ended.body, "destroyed", "round {round}");
        for reply in &replies {
            if let Some(fresh) = new_cookie(reply) {
                assert_ne!(fresh, cookie, "round {round}: a write re-issued the ended id");
            }
        }
        assert_eq!(apps[0].send("/get", &[&cookie]).await.body, "none", "round {round}");
        assert_eq!(apps[1].send("/get", &[&cookie]).await.body, "none", "round {round}");
        let left = store.load(&key_of(&cookie), Timestamp::now()).await.expect("load");
        assert!(left.is_none(), "round {round}: the ended session is still stored: {left:?}");
    }
}

/// `cycle_id` racing locked increments on the old id: each increment either
/// ran on the session before the move (and its count moved with the data)
/// or found no session and started a new one; no increment answered on the
/// old session is lost, and the old id never works again.
pub async fn cycle_racing_locked_increments<S: LockingStore + Clone>(store: S) {
    cycle_racing_locked_increments_on(&two_apps(&store), &store).await;
}

/// [`cycle_racing_locked_increments`] through `apps`, which share `store`.
pub async fn cycle_racing_locked_increments_on(apps: &[Target; 2], store: &dyn LockingStore) {
    for round in 0..ROUNDS {
        let cookie = apps[0].send("/incr", &[]).await.cookie();
        let racers = vec!["/incr"; RACERS];
        let (replies, cycled) = race(apps, &cookie, &racers, "/cycle").await;
        assert_eq!(cycled.body, "cycled", "round {round}");
        let moved = new_cookie(&cycled).expect("the cycled session's new id");
        assert_ne!(moved, cookie);
        let mut on_old_session = 0u64;
        for reply in &replies {
            match new_cookie(reply) {
                // Found no session (the move came first): a new one, at 1.
                Some(fresh) if fresh != cookie => assert_eq!(reply.body, "1", "round {round}"),
                // Ran on the old session before the move.
                _ => on_old_session += 1,
            }
        }
        let now = Timestamp::now();
        let old = store.load(&key_of(&cookie), now).await.expect("load");
        assert!(old.is_none(), "round {round}: the old id is still stored");
        let record = store.load(&key_of(&moved), now).await.expect("load").expect("moved session");
        let count: u64 = record.data.get("n").expect("a count").expect("n");
        assert_eq!(
            count,
            1 + on_old_session,
            "round {round}: increments answered on the old session were lost in the move"
        );
        assert_eq!(apps[1].send("/get", &[&cookie]).await.body, "none");
    }
}

/// Expands to one test per race scenario on the store built by `$make_store`.
#[macro_export]
macro_rules! race_tests {
    ($make_store:path) => {
        mod race_tests {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn destroy_racing_writes() {
                $crate::common::races::destroy_racing_writes($make_store().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn cycle_racing_locked_increments() {
                $crate::common::races::cycle_racing_locked_increments($make_store().await).await;
            }
        }
    };
}
