//! CPU time from `/proc`: the server's, wrk's, the databases' and everyone
//! else's (the noise), and what the report says about the machine.

use std::process::Command;
use std::time::Duration;

use crate::cmd::{self, Error, Result};

pub(super) fn clock_ticks_per_sec() -> f64 {
    let mut getconf = Command::new("getconf");
    getconf.arg("CLK_TCK");
    cmd::capture(&mut getconf)
        .ok()
        .and_then(|(_, out)| out.trim().parse::<f64>().ok())
        .unwrap_or(100.0)
}

/// The fields of `/proc/<pid>/stat` after the command name, which may hold
/// spaces: index 0 is field 3 (state).
fn stat_fields(path: &str) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(path).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    Some(rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect())
}

/// utime + stime of a process, in clock ticks.
pub(super) fn process_ticks(pid: u32) -> Result<u64> {
    let fields = stat_fields(&format!("/proc/{pid}/stat"))
        .ok_or_else(|| Error::msg(format!("bench: cannot read /proc/{pid}/stat")))?;
    Ok(fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0))
}

/// utime + stime of every Redis, PostgreSQL, PgBouncer and MariaDB process, in clock ticks: the
/// databases' own work, which is not noise (and is reported per request).
pub(super) fn service_ticks() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0 };
    dir.filter_map(|entry| entry.ok())
        .filter(|entry| entry.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
        .filter(|stat| {
            let comm = stat.split_once('(').and_then(|(_, rest)| rest.rsplit_once(')'));
            comm.is_some_and(|(name, _)| {
                name.starts_with("redis-server")
                    || name == "postgres"
                    || name == "pgbouncer"
                    || name == "mariadbd"
            })
        })
        .filter_map(|stat| {
            let rest = &stat[stat.rfind(')')? + 1..];
            let f: Vec<u64> = rest.split_whitespace().map(|x| x.parse().unwrap_or(0)).collect();
            Some(f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0))
        })
        .sum()
}

/// cutime + cstime of this process: the CPU of the children it waited for.
pub(super) fn children_ticks() -> u64 {
    stat_fields("/proc/self/stat")
        .map_or(0, |f| f.get(13).copied().unwrap_or(0) + f.get(14).copied().unwrap_or(0))
}

/// Busy ticks of all CPUs (user, nice, system, irq, steal; not idle,
/// iowait or softirq, which is mostly our own loopback traffic).
pub(super) fn busy_ticks() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else { return 0 };
    let f: Vec<u64> = line.split_whitespace().skip(1).map(|x| x.parse().unwrap_or(0)).collect();
    [0, 1, 2, 5, 7].iter().map(|&i| f.get(i).copied().unwrap_or(0)).sum()
}

/// CPU used by everything on the machine over `window`, in % of one core.
pub(super) fn other_load(window: Duration) -> f64 {
    let before = busy_ticks();
    std::thread::sleep(window);
    let after = busy_ticks();
    after.saturating_sub(before) as f64 / clock_ticks_per_sec() / window.as_secs_f64() * 100.0
}

/// What the table says about the machine.
#[derive(Debug)]
pub(super) struct Machine {
    cpus: usize,
    model: String,
    kernel: String,
}

impl Machine {
    pub(super) fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown CPU".to_owned(), |(_, m)| m.trim().to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map_or_else(|_| "?".to_owned(), |k| k.trim().to_owned());
        let cpus = std::thread::available_parallelism().map_or(1, usize::from);
        Self { cpus, model, kernel }
    }

    pub(super) fn describe(&self) -> String {
        format!("{} CPUs ({}), Linux {}", self.cpus, self.model, self.kernel)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_processes_are_found_or_zero() {
        // Whatever runs here, reading every process's stat must not fail.
        let _ = service_ticks();
    }

    #[test]
    fn proc_stat_fields_skip_the_command_name() {
        let fields = stat_fields("/proc/self/stat").unwrap();
        // Field 4 (ppid) sits at index 1.
        assert!(fields.len() > 14);
        assert!(process_ticks(std::process::id()).is_ok());
    }
}
