//! Expiry when time misbehaves: a request arriving exactly as a deadline
//! passes, and a wall clock stepped back or forward by hours under the
//! layer's default steady clock (`SteadyClock`, here over two manual clocks:
//! the wall clock, which steps, and real time, which does not).

use std::time::Duration;

use session_axum::core::{Clock, ExpiryPolicy, LockingStore, ManualClock, SteadyClock, Timestamp};

use super::{Probe, app, config, send};

const IDLE: u64 = 600;
const HOUR: u64 = 3_600;

fn policy() -> ExpiryPolicy {
    ExpiryPolicy::default()
        .with_idle_timeout(Duration::from_secs(IDLE))
        .with_absolute_timeout(Some(Duration::from_secs(4 * HOUR)))
        .with_touch_interval(Duration::from_secs(60))
}

fn layer<S: LockingStore + Clone>(
    store: &Probe<S>,
    clock: impl Clock,
) -> session_axum::SessionLayer {
    session_axum::SessionLayer::new(store.clone())
        .with_config(config().with_clock(clock).with_expiry(policy()))
        .expect("a valid session config")
}

/// A session is valid strictly before its deadline: a second before it the
/// request is served, at it the session is over, for the idle deadline and
/// the absolute one.
pub async fn requests_at_the_deadline<S: LockingStore + Clone>(store: Probe<S>) {
    let clock = ManualClock::starting_now();
    let app = app(layer(&store, clock.clone()));

    let idle = send(&app, "/set?v=idle", &[]).await.cookie();
    clock.advance(Duration::from_secs(IDLE - 1));
    assert_eq!(send(&app, "/get", &[&idle]).await.body, "idle", "a second before the deadline");
    let idle = send(&app, "/set?v=idle", &[]).await.cookie();
    clock.advance(Duration::from_secs(IDLE));
    let reply = send(&app, "/get", &[&idle]).await;
    assert_eq!(reply.body, "none", "at the idle deadline");
    assert!(reply.set_cookie().is_some_and(|c| c.contains("Max-Age=0")), "cookie cleared");

    // Kept alive by a touch every 9 minutes, the session still ends at the
    // absolute deadline, to the second.
    let started = clock.now();
    let kept = send(&app, "/set?v=kept", &[]).await.cookie();
    let end = started + Duration::from_secs(4 * HOUR);
    while clock.now() + Duration::from_secs(540) < end {
        clock.advance(Duration::from_secs(540));
        assert_eq!(send(&app, "/get", &[&kept]).await.body, "kept");
    }
    clock.set(end - Duration::from_secs(1));
    assert_eq!(send(&app, "/get", &[&kept]).await.body, "kept", "a second before the end");
    clock.set(end);
    assert_eq!(send(&app, "/get", &[&kept]).await.body, "none", "at the absolute deadline");
}

/// The wall clock set back two hours does not bring an expired session
/// back; set forward three hours, it does not end a live session at once.
/// Afterwards sessions still expire, on the steady clock's time.
pub async fn a_stepped_wall_clock<S: LockingStore + Clone>(store: Probe<S>) {
    let wall = ManualClock::starting_now();
    let real = ManualClock::new(Timestamp::from_unix_seconds(0));
    let both = |seconds: u64| {
        wall.advance(Duration::from_secs(seconds));
        real.advance(Duration::from_secs(seconds));
    };
    let app = app(layer(&store, SteadyClock::from_sources(wall.clone(), real.clone())));

    let expired = send(&app, "/set?v=expired", &[]).await.cookie();
    let live = send(&app, "/set?v=live", &[]).await.cookie();
    both(300);
    assert_eq!(send(&app, "/get", &[&live]).await.body, "live", "touched: 600 s from here");
    both(IDLE - 300);
    assert_eq!(send(&app, "/get", &[&expired]).await.body, "none", "idle for 600 s");

    // Back two hours: on the raw wall clock `expired` would be 1 h 50 min
    // from its deadline again.
    wall.set(wall.now() - Duration::from_secs(2 * HOUR));
    both(10);
    assert_eq!(send(&app, "/get", &[&expired]).await.body, "none", "not resurrected");
    assert_eq!(send(&app, "/get", &[&live]).await.body, "live");

    // Forward three hours: on the raw wall clock every session would be
    // past its idle deadline.
    wall.advance(Duration::from_secs(3 * HOUR));
    both(10);
    assert_eq!(send(&app, "/get", &[&live]).await.body, "live", "not all ended at once");
    let early = send(&app, "/set?v=early", &[]).await.cookie();
    let late = send(&app, "/set?v=late", &[]).await.cookie();

    // While the clock catches up (1.5 x real time), an idle session ends
    // after 2/3 of its idle timeout of real time: 390 s real = 585 s.
    both(390);
    assert_eq!(send(&app, "/get", &[&early]).await.body, "early");
    both(20);
    assert_eq!(send(&app, "/get", &[&late]).await.body, "none", "idle sessions still end");
}
