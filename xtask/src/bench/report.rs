//! The Markdown a run prints (and saves): the table, the sections under it
//! and the legend.

use std::fmt::Write as _;
use std::time::Duration;

use super::NOISY;
use super::http::LOST_UPDATE_REQUESTS;
use super::memory::MemoryFigure;
use super::plan::{Options, Route};
use super::procstat::Machine;
use super::runner::{LOAD_CPU, Row, SERVER_CPU, WARMUP_SECONDS, WINDOWS};

pub(super) fn render(
    machine: &Machine,
    options: &Options,
    selected: &[Route],
    rows: &[Row],
    memory: &[MemoryFigure],
    took: Duration,
) -> String {
    let mut out = String::new();
    method(&mut out, machine, options, rows, took);
    table(&mut out, rows);
    database_cpu(&mut out, rows);
    redis_calls(&mut out, rows);
    scaling(&mut out, rows);
    memory_table(&mut out, memory);
    row_list(&mut out, selected);
    legend(&mut out);
    out
}

/// The machine and how it was measured, above the table.
fn method(out: &mut String, machine: &Machine, options: &Options, rows: &[Row], took: Duration) {
    let paired = if rows.iter().any(|r| r.x_bare.is_some()) {
        ", each right after a window of the same length on a `bare` server running alongside"
    } else {
        ""
    };
    let _ = writeln!(
        out,
        "Machine: {}. Server pinned to core {SERVER_CPU}, wrk (1 thread, {} connections, one \
         session each) to core {LOAD_CPU}; per row {WARMUP_SECONDS} s of warm-up, then {} \
         windows of {} s{paired}. Run took {:.0} s.\n",
        machine.describe(),
        options.connections,
        WINDOWS,
        options.seconds.div_ceil(WINDOWS).max(1),
        took.as_secs_f64(),
    );
}

fn table(out: &mut String, rows: &[Row]) {
    let _ = writeln!(
        out,
        "| route | req/s | p50 ms | p99 ms | CPU µs/req | server busy | × bare | × peer | lost updates | noise |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|---|---:|");
    for row in rows {
        // Without `bare` among the rows there is nothing to pair with.
        let x_bare = row.x_bare.map_or_else(|| "-".to_owned(), |paired| paired.to_string());
        let x_peer = peer_ratio(row, rows);
        let lost = lost_updates(row);
        let mut name = row.name.clone();
        if row.errors > 0 {
            let _ = write!(name, " ({} errors)", row.errors);
        }
        let _ = writeln!(
            out,
            "| {name} | {:.0} | {:.2} | {:.2} | {:.2} | {:.0}% | {x_bare} | {x_peer} | {lost} | {:.0}% |",
            row.requests_per_sec,
            row.p50_us as f64 / 1000.0,
            row.p99_us as f64 / 1000.0,
            row.cpu_us_per_request,
            row.server_busy,
            row.noise,
        );
    }
}

/// The `× peer` cell.
fn peer_ratio(row: &Row, rows: &[Row]) -> String {
    let cpu_of = |name: &str| rows.iter().find(|r| r.name == name).map(|r| r.cpu_us_per_request);
    let paired_of = |name: &str| rows.iter().find(|r| r.name == name).and_then(|r| r.x_bare);
    // Both rows' paired ratios when there are, so the machine's drift
    // between the two rows cancels.
    match row.route.peer.as_deref() {
        Some(peer) => match (row.x_bare, paired_of(peer), cpu_of(peer)) {
            (Some(mine), Some(theirs), _) => {
                format!("{:.2} vs {peer}", mine.median / theirs.median)
            }
            (_, _, Some(p)) => format!("{:.2} vs {peer}", row.cpu_us_per_request / p),
            (_, _, None) => format!("- ({peer} not run)"),
        },
        None => "-".to_owned(),
    }
}

/// The `lost updates` cell.
fn lost_updates(row: &Row) -> String {
    match (&row.lost, row.route.kind.as_str()) {
        (Some(l), _) if l.failed > 0 => {
            format!("kept {} of {} ({} failed)", l.kept, l.sent, l.failed)
        }
        (Some(l), _) => format!("kept {} of {}", l.kept, l.sent),
        (None, "client") => "n/a (in the cookie)".to_owned(),
        (None, _) => "n/a".to_owned(),
    }
}

fn database_cpu(out: &mut String, rows: &[Row]) {
    let databases: Vec<&Row> = rows.iter().filter(|r| r.service_us_per_request.is_some()).collect();
    if !databases.is_empty() {
        let _ = writeln!(
            out,
            "\nThe database's own CPU per request (all redis-server / postgres / pgbouncer / mariadbd processes; not \
             in `CPU µs/req` nor in `noise`):"
        );
        for row in databases {
            let _ = writeln!(
                out,
                "- `{}`: {:.1} µs",
                row.name,
                row.service_us_per_request.unwrap_or_default()
            );
        }
    }
}

fn redis_calls(out: &mut String, rows: &[Row]) {
    let redis: Vec<&Row> = rows.iter().filter(|r| r.redis_commands.is_some()).collect();
    if !redis.is_empty() {
        let _ = writeln!(
            out,
            "\nRedis calls per request (`INFO commandstats`; commands run inside Lua scripts \
             count too, so round trips are the top-level calls: `evalsha`/`eval` and plain \
             commands outside scripts):"
        );
        for row in redis {
            let _ =
                writeln!(out, "- `{}`: {}", row.name, row.redis_commands.as_deref().unwrap_or(""));
        }
    }
}

/// The 1k and 1M live-session rows compared.
fn scaling(out: &mut String, rows: &[Row]) {
    let scaling: Vec<&Row> = rows.iter().filter(|r| r.name.ends_with(" live)")).collect();
    if let [small, large] = scaling.as_slice() {
        let _ = write!(
            out,
            "\nScaling: {} req/s with 1M live sessions vs {} with 1k ({:+.1}%); CPU/req {:+.1}%",
            large.requests_per_sec as u64,
            small.requests_per_sec as u64,
            (large.requests_per_sec / small.requests_per_sec - 1.0) * 100.0,
            (large.cpu_us_per_request / small.cpu_us_per_request - 1.0) * 100.0,
        );
        // The paired ratios leave out the machine's drift between the two
        // rows; with the server saturated, throughput goes as 1 / CPU.
        match (small.x_bare, large.x_bare) {
            (Some(small), Some(large)) => {
                let _ = writeln!(
                    out,
                    "; against their paired bare windows, CPU/req {:+.1}% (× bare {:.2} vs {:.2}).",
                    (large.median / small.median - 1.0) * 100.0,
                    large.median,
                    small.median,
                );
            }
            _ => out.push_str(".\n"),
        }
    }
}

fn memory_table(out: &mut String, memory: &[MemoryFigure]) {
    if !memory.is_empty() {
        let _ = writeln!(out, "\n| memory store | sessions | bytes/session | data | overhead |");
        let _ = writeln!(out, "|---|---:|---:|---:|---:|");
        for m in memory {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                m.store, m.label, m.per_session, m.data, m.overhead
            );
        }
    }
}

fn row_list(out: &mut String, selected: &[Route]) {
    let _ = writeln!(out, "\nRows:");
    for route in selected {
        let _ = writeln!(out, "- `{}`: {}", route.name, route.what);
    }
}

/// What the columns mean.
fn legend(out: &mut String) {
    let _ = writeln!(
        out,
        "\n`CPU µs/req`: the server's user + system time (`/proc/<pid>/stat`) over the \
         window, divided by the requests wrk completed in it, in the row's median window. \
         `server busy`: that CPU time over the window; below ~90% wrk, not the server, set \
         the pace. `× bare`: CPU/req over that of a `bare` window of the same length just \
         before, in each of the row's {WINDOWS} windows: the median, and in brackets the \
         lowest and highest (the `bare` row's own shows how far two adjacent `bare` windows \
         differ); `-` when `bare` is not among the rows. `× peer`: the row's `× bare` over \
         that of the row doing the same work with tower-sessions (or axum-extra's private \
         cookie jar for cookie sessions). \
         `lost updates`: {LOST_UPDATE_REQUESTS} requests on each of the connections, all on \
         one session, against a second server that runs on every core (one runtime worker \
         per core, so requests interleave); kept = final counter - start. `noise`: CPU used \
         by other processes (not Redis or PostgreSQL) during the row's windows, in % of one \
         core (a quiet machine shows 0-5%); rows with more than {NOISY}% are measured again \
         at the end while the run has time, and the less disturbed measurement stays."
    );
}
