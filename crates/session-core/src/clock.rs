//! Time: a [`Timestamp`] type and the [`Clock`] that produces it.
//!
//! Everything time-dependent in these crates reads a [`Clock`], so expiry is
//! tested with a [`ManualClock`] instead of sleeping. The default,
//! [`SystemClock`], is a [`SteadyClock`]: the wall clock with its steps
//! smoothed out, so an NTP correction or a resumed VM neither brings expired
//! sessions back nor ends every session at once.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, UTC.
///
/// Arithmetic saturates, so a forged or absurd deadline can never overflow.
///
/// ```
/// use std::time::Duration;
/// use session_core::Timestamp;
///
/// let t = Timestamp::from_unix_seconds(1_000);
/// assert_eq!(t + Duration::from_secs(60), Timestamp::from_unix_seconds(1_060));
/// assert_eq!(Timestamp::MAX + Duration::from_secs(1), Timestamp::MAX);
/// ```
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The latest representable instant.
    pub const MAX: Self = Self(i64::MAX);

    /// A timestamp from Unix seconds.
    #[must_use]
    pub const fn from_unix_seconds(seconds: i64) -> Self {
        Self(seconds)
    }

    /// Unix seconds.
    #[must_use]
    pub const fn unix_seconds(self) -> i64 {
        self.0
    }

    /// The current system time.
    #[must_use]
    pub fn now() -> Self {
        let seconds = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(since) => i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
        };
        Self(seconds)
    }

    /// `self + duration`, saturating.
    #[must_use]
    pub fn saturating_add(self, duration: Duration) -> Self {
        let seconds = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX);
        Self(self.0.saturating_add(seconds))
    }

    /// `self - duration`, saturating.
    #[must_use]
    pub fn saturating_sub(self, duration: Duration) -> Self {
        let seconds = i64::try_from(duration.as_secs()).unwrap_or(i64::MAX);
        Self(self.0.saturating_sub(seconds))
    }

    /// How long from `earlier` to `self`; zero if `earlier` is later.
    #[must_use]
    pub fn duration_since(self, earlier: Self) -> Duration {
        Duration::from_secs(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Self;

    fn add(self, duration: Duration) -> Self {
        self.saturating_add(duration)
    }
}

impl std::ops::Sub<Duration> for Timestamp {
    type Output = Self;

    fn sub(self, duration: Duration) -> Self {
        self.saturating_sub(duration)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({})", self.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A source of the current time.
pub trait Clock: fmt::Debug + Send + Sync + 'static {
    /// Now.
    fn now(&self) -> Timestamp;
}

/// The system clock, as session expiry should see it: one process-wide
/// [`SteadyClock`] over the wall clock, so time never runs backwards and a
/// stepped wall clock is caught up with gradually.
///
/// ```
/// use session_core::{Clock, SystemClock, Timestamp};
///
/// let first = SystemClock.now();
/// assert!(SystemClock.now() >= first);
/// assert!(first.duration_since(Timestamp::now()).as_secs() < 2);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        // One clock for the whole process: layers and cleanup tasks must
        // agree on the time while a step is being caught up with.
        static CLOCK: OnceLock<SteadyClock> = OnceLock::new();
        CLOCK.get_or_init(SteadyClock::new).now()
    }
}

/// Nanoseconds in a second, for the steady clock's arithmetic.
const NANOS: i128 = 1_000_000_000;

/// A clock that follows the wall clock while the wall clock behaves, never
/// runs backwards, and absorbs steps: after the wall clock jumps, it runs at
/// most half again as fast (jump forward) or at least half as fast (jump
/// back) as real time until it meets the wall clock again.
///
/// Session deadlines are wall-clock instants, and a wall clock can step:
/// NTP correcting a clock that was hours off, an operator setting it, a VM
/// resumed after a pause. Read raw, a step back makes expired sessions valid
/// again until their deadline comes round a second time, and a step forward
/// ends every session whose deadline it skipped over, at once. Read through
/// this clock, a step of `S` is spread over `2 * S` of real time: a session
/// with `d` left lives between `2/3 d` and `2 d` of real time, never less
/// than zero or resurrected. Normal drift correction (NTP slewing by parts
/// per million) is far inside those bounds and passes through unchanged.
///
/// Real time is the monotonic clock ([`Instant`]). Processes that started
/// after a step read the new wall time at once, so during a catch-up two
/// processes can disagree by what is left of the step; stores that expire
/// records themselves (Redis) follow their server's clock.
///
/// [`SteadyClock::from_sources`] runs it over clocks a test controls:
///
/// ```
/// use std::time::Duration;
/// use session_core::{Clock, ManualClock, SteadyClock, Timestamp};
///
/// let wall = ManualClock::new(Timestamp::from_unix_seconds(10_000));
/// let real = ManualClock::new(Timestamp::from_unix_seconds(0));
/// let clock = SteadyClock::from_sources(wall.clone(), real.clone());
/// assert_eq!(clock.now(), Timestamp::from_unix_seconds(10_000));
///
/// // The wall clock is set back an hour: time stands nearly still instead.
/// wall.set(Timestamp::from_unix_seconds(10_000 - 3_600));
/// real.advance(Duration::from_secs(10));
/// assert_eq!(clock.now(), Timestamp::from_unix_seconds(10_005));
/// ```
#[derive(Debug)]
pub struct SteadyClock {
    sources: Sources,
    /// The last reading, `None` before the first.
    last: Mutex<Option<Reading>>,
}

#[derive(Debug)]
enum Sources {
    /// `SystemTime` and `Instant`, with `Instant`s measured from `origin`.
    System { origin: Instant },
    /// Clocks a test controls (whole seconds).
    Given { wall: Arc<dyn Clock>, real: Arc<dyn Clock> },
}

#[derive(Debug, Clone, Copy)]
struct Reading {
    /// Real time, in nanoseconds on the real-time source's scale.
    real: i128,
    /// What this clock answered, in nanoseconds since the Unix epoch.
    answered: i128,
    /// Whether it is catching up with a step (logged once per step).
    catching_up: bool,
}

impl SteadyClock {
    /// A steady clock over the system's wall clock and monotonic clock.
    ///
    /// Most code wants [`SystemClock`], which shares one of these across the
    /// process.
    #[must_use]
    pub fn new() -> Self {
        Self::with(Sources::System { origin: Instant::now() })
    }

    /// A steady clock over `wall`, the clock that may step, and `real`, a
    /// clock that never does (for tests: two [`ManualClock`]s, the second
    /// only ever advanced).
    #[must_use]
    pub fn from_sources(wall: impl Clock, real: impl Clock) -> Self {
        Self::with(Sources::Given { wall: Arc::new(wall), real: Arc::new(real) })
    }

    fn with(sources: Sources) -> Self {
        Self { sources, last: Mutex::new(None) }
    }

    /// Wall time since the epoch and real time, both in nanoseconds.
    fn read_sources(&self) -> (i128, i128) {
        match &self.sources {
            Sources::System { origin } => {
                let wall = match SystemTime::now().duration_since(UNIX_EPOCH) {
                    Ok(since) => since.as_nanos().try_into().unwrap_or(i128::MAX),
                    Err(before) => -i128::try_from(before.duration().as_nanos()).unwrap_or(0),
                };
                let real = origin.elapsed().as_nanos().try_into().unwrap_or(i128::MAX);
                (wall, real)
            }
            Sources::Given { wall, real } => (
                i128::from(wall.now().unix_seconds()) * NANOS,
                i128::from(real.now().unix_seconds()) * NANOS,
            ),
        }
    }
}

impl Default for SteadyClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SteadyClock {
    fn now(&self) -> Timestamp {
        let (wall, real) = self.read_sources();
        // A lock, not atomics: the reading is two numbers updated together,
        // and the critical section is a few arithmetic instructions, so an
        // uncontended lock costs what the `Arc` clones of every request do.
        // Nothing below can panic, so a poisoned lock still holds a
        // consistent reading.
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let reading = match *last {
            None => Reading { real, answered: wall, catching_up: false },
            Some(previous) => previous.next(wall, real),
        };
        *last = Some(reading);
        drop(last);
        Timestamp(i64::try_from(reading.answered.div_euclid(NANOS)).unwrap_or(i64::MAX))
    }
}

impl Reading {
    /// How far apart the wall clock and this clock may be before the gap
    /// counts as a step worth a log line.
    const STEP: i128 = 2 * NANOS;

    /// The reading after this one, given the sources now.
    fn next(self, wall: i128, real: i128) -> Self {
        // A real-time source never goes back; saturate in case a given one does.
        let elapsed = real.saturating_sub(self.real).max(0);
        // Meet the wall clock if that keeps the pace between 1/2 and 3/2 of
        // real time; otherwise run at the bound, closing the gap at half
        // the speed of real time.
        let wanted = wall.saturating_sub(self.answered);
        let advance = wanted.clamp(elapsed / 2, elapsed.saturating_add(elapsed / 2));
        let answered = self.answered.saturating_add(advance);
        let gap = wall.saturating_sub(answered);
        let catching_up = gap.abs() > Self::STEP;
        if catching_up && !self.catching_up {
            tracing::warn!(
                step_seconds = gap / NANOS,
                "the wall clock stepped; session time catches up gradually instead of jumping"
            );
        }
        Self { real, answered, catching_up }
    }
}

/// A clock that only moves when told to. Clones share the same time.
///
/// ```
/// use std::time::Duration;
/// use session_core::{Clock, ManualClock, Timestamp};
///
/// let clock = ManualClock::new(Timestamp::from_unix_seconds(100));
/// let shared = clock.clone();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(shared.now(), Timestamp::from_unix_seconds(105));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock stopped at `start`.
    #[must_use]
    pub fn new(start: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(start.unix_seconds())))
    }

    /// A clock stopped at the current system time.
    #[must_use]
    pub fn starting_now() -> Self {
        Self::new(Timestamp::now())
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let seconds = i64::try_from(by.as_secs()).unwrap_or(i64::MAX);
        let _ = self.0.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
            Some(now.saturating_add(seconds))
        });
    }

    /// Sets the clock.
    pub fn set(&self, to: Timestamp) {
        self.0.store(to.unix_seconds(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        let far = Duration::from_secs(u64::MAX);
        assert_eq!(Timestamp::from_unix_seconds(0) + far, Timestamp::MAX);
        assert_eq!(Timestamp::from_unix_seconds(0) - far, Timestamp::from_unix_seconds(-i64::MAX));
        assert_eq!(
            Timestamp::from_unix_seconds(5).duration_since(Timestamp::from_unix_seconds(10)),
            Duration::ZERO
        );
    }

    /// A steady clock over a wall clock and a real-time clock that start
    /// at `WALL` and 0 seconds.
    fn steady() -> (SteadyClock, ManualClock, ManualClock) {
        let wall = ManualClock::new(Timestamp::from_unix_seconds(WALL));
        let real = ManualClock::new(Timestamp::from_unix_seconds(0));
        (SteadyClock::from_sources(wall.clone(), real.clone()), wall, real)
    }

    const WALL: i64 = 1_700_000_000;
    const HOUR: u64 = 3_600;

    fn at(offset: i64) -> Timestamp {
        Timestamp::from_unix_seconds(WALL + offset)
    }

    #[test]
    fn steady_clock_follows_a_wall_clock_that_behaves() {
        let (clock, wall, real) = steady();
        assert_eq!(clock.now(), at(0));
        for _ in 0..5 {
            wall.advance(Duration::from_secs(7));
            real.advance(Duration::from_secs(7));
        }
        assert_eq!(clock.now(), at(35));
        // Within the pace bounds (a second late, then caught up): followed.
        real.advance(Duration::from_secs(4));
        wall.advance(Duration::from_secs(3));
        assert_eq!(clock.now(), at(38));
        real.advance(Duration::from_secs(4));
        wall.advance(Duration::from_secs(5));
        assert_eq!(clock.now(), at(43));
    }

    #[test]
    fn steady_clock_never_runs_back_and_meets_a_wall_clock_set_back() {
        let (clock, wall, real) = steady();
        assert_eq!(clock.now(), at(0));
        wall.set(at(-2 * 3_600));
        // Half speed: an hour of real time is half an hour of session time.
        real.advance(Duration::from_secs(HOUR));
        assert_eq!(clock.now(), at(1_800));
        // The wall clock advances at full speed, this clock at half, so the
        // 2.5 h gap now between them closes after 5 h more.
        for _ in 0..10 {
            wall.advance(Duration::from_secs(HOUR / 2));
            real.advance(Duration::from_secs(HOUR / 2));
            let before = clock.now();
            assert!(before >= at(1_800), "never behind an earlier answer");
        }
        assert_eq!(clock.now(), at(1_800 + 9_000), "met: 0.5 h + 5 h x 1/2");
        wall.advance(Duration::from_secs(60));
        real.advance(Duration::from_secs(60));
        assert_eq!(clock.now(), at(1_800 + 9_000 + 60), "then follows it again");
    }

    #[test]
    fn steady_clock_spreads_a_step_forward_over_twice_its_length() {
        let (clock, wall, real) = steady();
        assert_eq!(clock.now(), at(0));
        wall.advance(Duration::from_secs(3 * HOUR));
        // Right after the step: no time has passed, none is skipped.
        assert_eq!(clock.now(), at(0));
        real.advance(Duration::from_secs(HOUR));
        wall.advance(Duration::from_secs(HOUR));
        assert_eq!(clock.now(), at(5_400), "1.5 x real time");
        // The 3 h step is closed after 6 h of real time, and not overshot.
        for _ in 0..6 {
            real.advance(Duration::from_secs(HOUR));
            wall.advance(Duration::from_secs(HOUR));
            let _ = clock.now();
        }
        assert_eq!(clock.now(), at(10 * 3_600), "7 h real + 3 h step");
    }

    #[test]
    fn steady_clock_starts_at_the_wall_clock() {
        let (clock, wall, _real) = steady();
        wall.set(at(-30));
        assert_eq!(clock.now(), at(-30), "the first reading is the wall clock");
        let system = SteadyClock::new().now();
        assert!(system.duration_since(Timestamp::now()) < Duration::from_secs(2));
        assert!(Timestamp::now().duration_since(system) < Duration::from_secs(2));
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(Timestamp::from_unix_seconds(10));
        assert_eq!(clock.now(), Timestamp::from_unix_seconds(10));
        clock.advance(Duration::from_secs(3));
        assert_eq!(clock.now(), Timestamp::from_unix_seconds(13));
        clock.set(Timestamp::from_unix_seconds(1));
        assert_eq!(clock.now(), Timestamp::from_unix_seconds(1));
    }
}
