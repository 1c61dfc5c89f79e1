//! Bytes per session, from `bench-memory`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::cmd::{self, Error, Result};

/// Session counts for the memory figures.
const MEMORY_SESSIONS: [(u64, &str); 2] = [(100_000, "100k"), (1_000_000, "1M")];

#[derive(Debug)]
pub(super) struct MemoryFigure {
    pub(super) store: String,
    pub(super) label: &'static str,
    pub(super) per_session: u64,
    pub(super) data: u64,
    pub(super) overhead: u64,
}

pub(super) fn memory_figures(bin: &Path) -> Result<Vec<MemoryFigure>> {
    let mut figures = Vec::new();
    for store in ["ours", "tower-sessions"] {
        for (count, label) in MEMORY_SESSIONS {
            eprintln!("xtask: bench: memory of {store} at {label} sessions");
            let mut cmd = Command::new(bin.join("bench-memory"));
            cmd.args(["--store", store, "--sessions", &count.to_string()]);
            let (status, out) = cmd::capture(&mut cmd)?;
            if !status.success() {
                return Err(Error::failed("bench-memory", status));
            }
            let fields: BTreeMap<&str, &str> = out
                .lines()
                .find_map(|l| l.strip_prefix("MEMORY "))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.split_once('='))
                .collect();
            let get = |k: &str| fields.get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
            figures.push(MemoryFigure {
                store: store.to_owned(),
                label,
                per_session: get("bytes_per_session"),
                data: get("data_bytes"),
                overhead: get("overhead_bytes"),
            });
        }
    }
    Ok(figures)
}
