//! Redis calls per request, from `INFO commandstats` before and after a window.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Calls per command (`INFO commandstats`) of the Redis on `port`.
pub(super) fn redis_commandstats(port: u16) -> Option<BTreeMap<String, u64>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(b"*2\r\n$4\r\nINFO\r\n$12\r\ncommandstats\r\n").ok()?;
    let mut reader = BufReader::new(stream);
    let mut header = String::new();
    reader.read_line(&mut header).ok()?;
    let length: usize = header.trim().strip_prefix('$')?.parse().ok()?;
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(parse_commandstats(&String::from_utf8_lossy(&body)))
}

/// `cmdstat_get:calls=3,usec=...` lines into command -> calls.
fn parse_commandstats(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| line.strip_prefix("cmdstat_"))
        .filter_map(|line| {
            let (name, stats) = line.split_once(':')?;
            let calls = stats.split(',').find_map(|kv| kv.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// "evalsha 2.00, hset 1.00": calls per request of each command used,
/// most frequent first, without our own `info` calls.
pub(super) fn redis_per_request(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    requests: u64,
) -> String {
    let mut used: Vec<(&str, u64)> = after
        .iter()
        .filter(|(name, _)| name.as_str() != "info")
        .map(|(name, &calls)| {
            (name.as_str(), calls.saturating_sub(*before.get(name).unwrap_or(&0)))
        })
        .filter(|&(_, calls)| calls > 0)
        .collect();
    used.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let total: u64 = used.iter().map(|&(_, calls)| calls).sum();
    let per = |calls: u64| calls as f64 / requests.max(1) as f64;
    let list: Vec<String> =
        used.iter().map(|&(name, calls)| format!("{name} {:.2}", per(calls))).collect();
    format!("{:.2} in all: {}", per(total), list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_commandstats_become_calls_per_request() {
        let before = parse_commandstats(
            "# Commandstats\r\ncmdstat_get:calls=10,usec=5,usec_per_call=0.5\r\ncmdstat_info:calls=1,usec=9\r\n",
        );
        let after = parse_commandstats(
            "cmdstat_get:calls=30,usec=5\r\ncmdstat_set:calls=20,usec=1\r\ncmdstat_info:calls=2,usec=9\r\n",
        );
        assert_eq!(before.get("get"), Some(&10));
        assert_eq!(redis_per_request(&before, &after, 10), "4.00 in all: get 2.00, set 2.00");
    }
}
