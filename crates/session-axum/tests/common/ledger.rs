//! Accounting of acknowledged writes, for the tests that kill servers under
//! steady locked increments (`failover.rs`, `soak.rs`).
//!
//! Each 200 from `/incr` carries the count it wrote. Under the lock every
//! increment writes the previous count + 1, so an acknowledged write that a
//! fault lost shows as a count acknowledged twice (the next increment rebuilt
//! it on the older record), or as a final count below the highest
//! acknowledged one. A request without an answer, or answered with an error,
//! may or may not have landed: it may explain a stored count above the
//! acknowledged ones, never one below.

use std::collections::BTreeSet;
use std::time::Instant;

/// What the clients of one session saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// The counts the app acknowledged (200), in the order seen.
    pub acknowledged: Vec<u64>,
    /// Requests answered with an error response (503).
    pub errors: u64,
    /// Requests that got no answer: connection refused or cut, or timed out.
    pub in_doubt: u64,
    /// When requests failed, either way.
    pub failed_at: Vec<Instant>,
}

impl Tally {
    /// A tally whose session was created with `count` acknowledged.
    pub fn starting_at(count: u64) -> Self {
        Self { acknowledged: vec![count], ..Self::default() }
    }

    /// An error response.
    pub fn error(&mut self) {
        self.errors += 1;
        self.failed_at.push(Instant::now());
    }

    /// A request without an answer.
    pub fn no_answer(&mut self) {
        self.in_doubt += 1;
        self.failed_at.push(Instant::now());
    }

    /// Adds what another client of the same session saw.
    pub fn merge(&mut self, other: &Self) {
        self.acknowledged.extend_from_slice(&other.acknowledged);
        self.errors += other.errors;
        self.in_doubt += other.in_doubt;
        self.failed_at.extend_from_slice(&other.failed_at);
    }

    /// Checks the session's `stored` count against what was acknowledged.
    ///
    /// # Panics
    ///
    /// If more is stored than was acknowledged plus every request that may
    /// have landed: the accounting itself would be wrong.
    pub fn settle(&self, stored: u64) -> Figures {
        let distinct: BTreeSet<u64> = self.acknowledged.iter().copied().collect();
        let highest = distinct.last().copied().unwrap_or(0);
        let rolled_back = usize::try_from(highest.saturating_sub(stored)).unwrap();
        let distinct = u64::try_from(distinct.len()).unwrap();
        assert!(
            stored <= distinct + self.errors + self.in_doubt,
            "{stored} stored > {distinct} acknowledged + {} errors + {} in doubt",
            self.errors,
            self.in_doubt
        );
        Figures {
            acknowledged: self.acknowledged.len(),
            stored,
            lost: self.acknowledged.len() - usize::try_from(distinct).unwrap() + rolled_back,
            unacknowledged_stored: stored.saturating_sub(distinct),
            errors: self.errors,
            in_doubt: self.in_doubt,
            seconds_unavailable: 0.0,
        }
    }
}

/// The accounting of one run, summed over its sessions.
#[derive(Debug, Default, Clone, Copy)]
pub struct Figures {
    /// Increments answered 200.
    pub acknowledged: usize,
    /// The counts stored at the end.
    pub stored: u64,
    /// Acknowledged increments missing from the stored counts.
    pub lost: usize,
    /// Stored increments that were never acknowledged (their request failed
    /// after the write landed).
    pub unacknowledged_stored: u64,
    /// Requests answered with an error response.
    pub errors: u64,
    /// Requests without an answer.
    pub in_doubt: u64,
    /// How long the app answered no increment, summed over the faults.
    pub seconds_unavailable: f64,
}

impl Figures {
    /// Adds another session's figures (not the time unavailable, which
    /// belongs to the run).
    pub fn add(&mut self, other: &Self) {
        self.acknowledged += other.acknowledged;
        self.stored += other.stored;
        self.lost += other.lost;
        self.unacknowledged_stored += other.unacknowledged_stored;
        self.errors += other.errors;
        self.in_doubt += other.in_doubt;
    }

    /// The header of [`row`](Self::row)s.
    pub fn header() -> String {
        format!(
            "{:<26} {:>12} {:>10} {:>6} {:>8} {:>8} {:>7} {:>13}",
            "store",
            "acknowledged",
            "stored",
            "lost",
            "unacked",
            "in doubt",
            "errors",
            "s unavailable"
        )
    }

    /// One line of a table of runs.
    pub fn row(&self, label: &str) -> String {
        format!(
            "{label:<26} {:>12} {:>10} {:>6} {:>8} {:>8} {:>7} {:>13.1}",
            self.acknowledged,
            self.stored,
            self.lost,
            self.unacknowledged_stored,
            self.in_doubt,
            self.errors,
            self.seconds_unavailable
        )
    }
}
