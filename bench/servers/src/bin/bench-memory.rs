//! `bench-memory`: what a session costs in memory, in a fresh process.
//!
//! ```text
//! bench-memory --store ours|tower-sessions --sessions N
//! ```
//!
//! Fills the store with N live sessions, each holding the benchmark's data
//! (`{"n":0}`), and reads the resident set size from `/proc/self/statm`
//! before and after. Prints one line:
//!
//! ```text
//! MEMORY store=ours sessions=N rss_before=.. rss_after=.. bytes_per_session=.. data_bytes=.. overhead_bytes=..
//! ```
//!
//! `data_bytes` is the session's data as JSON (what the application stored);
//! `overhead_bytes` is everything else per session: keys, deadlines, maps,
//! allocator rounding and the stores' tables.

use std::collections::HashMap;
use std::process::ExitCode;

use session_axum::memory::MemoryStore;
use session_core::{ExpiryPolicy, SessionData, SessionId, SessionStore as _, Timestamp};
use tower_sessions::SessionStore as _;

fn rss_bytes() -> Result<u64, String> {
    let statm = std::fs::read_to_string("/proc/self/statm").map_err(|e| format!("statm: {e}"))?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .ok_or("statm: no resident field")?;
    // 4 KiB pages on every Linux this runs on (x86-64, aarch64 defaults).
    Ok(pages * 4096)
}

/// The benchmark's session data, as the application stores it.
fn data() -> Result<SessionData, String> {
    let mut data = SessionData::default();
    data.insert("n", 0_u64).map_err(|e| e.to_string())?;
    Ok(data)
}

/// Fills our memory store; returns the RSS growth while it is still alive.
async fn fill_ours(count: u64, before: u64) -> Result<u64, String> {
    let store = MemoryStore::new();
    let now = Timestamp::now();
    let policy = ExpiryPolicy::default();
    let data = data()?;
    for _ in 0..count {
        let mut record = policy.new_record(SessionId::random().storage_key(), now);
        record.data = data.clone();
        record.version = 1;
        store.create(&record).await.map_err(|e| e.to_string())?;
    }
    let after = rss_bytes()?;
    if store.len() as u64 != count {
        return Err(format!("the store holds {} sessions, not {count}", store.len()));
    }
    Ok(after.saturating_sub(before))
}

/// Fills tower-sessions' memory store; returns the RSS growth.
async fn fill_tower(count: u64, before: u64) -> Result<u64, String> {
    use tower_sessions::session::{Id, Record};
    let store = tower_sessions::MemoryStore::default();
    let expiry_date = time::OffsetDateTime::now_utc() + time::Duration::weeks(2);
    let mut last = Id::default();
    for _ in 0..count {
        let data = HashMap::from([("n".to_owned(), serde_json::Value::from(0))]);
        let mut record = Record { id: Id::default(), data, expiry_date };
        store.create(&mut record).await.map_err(|e| e.to_string())?;
        last = record.id;
    }
    let after = rss_bytes()?;
    // Keeps the store alive until after the reading, and checks it is filled.
    if store.load(&last).await.map_err(|e| e.to_string())?.is_none() {
        return Err("the last session is missing".to_owned());
    }
    Ok(after.saturating_sub(before))
}

fn parse_args() -> Result<(String, u64), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut store = None;
    let mut sessions = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let value = iter.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--store" => store = Some(value.clone()),
            "--sessions" => {
                sessions = Some(value.parse().map_err(|e| format!("--sessions: {e}"))?);
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    match (store, sessions) {
        (Some(store), Some(sessions)) if sessions > 0 => Ok((store, sessions)),
        _ => Err("usage: bench-memory --store ours|tower-sessions --sessions N (N > 0)".to_owned()),
    }
}

async fn run() -> Result<(), String> {
    let (store, count) = parse_args()?;
    let data_bytes = serde_json::to_vec(&data()?).map_err(|e| e.to_string())?.len() as u64;
    let before = rss_bytes()?;
    let grown = match store.as_str() {
        "ours" => fill_ours(count, before).await?,
        "tower-sessions" => fill_tower(count, before).await?,
        other => return Err(format!("unknown store `{other}` (ours, tower-sessions)")),
    };
    let per_session = grown / count;
    // The in-line size of one stored record (what each hash table slot holds
    // besides the key), for reading the figures.
    let record_bytes = match store.as_str() {
        "ours" => std::mem::size_of::<session_core::Record>(),
        _ => std::mem::size_of::<tower_sessions::session::Record>(),
    };
    println!(
        "MEMORY store={store} sessions={count} rss_before={before} rss_after={} \
         bytes_per_session={per_session} data_bytes={data_bytes} overhead_bytes={} \
         record_bytes={record_bytes}",
        before + grown,
        per_session.saturating_sub(data_bytes),
    );
    Ok(())
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench-memory: no runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-memory: {error}");
            ExitCode::FAILURE
        }
    }
}
