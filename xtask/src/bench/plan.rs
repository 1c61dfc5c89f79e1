//! What a run measures: the command line's options, the rows
//! `bench-server --list` offers, the ones picked, and the rows added to them.

use std::path::Path;
use std::process::Command;

use crate::cmd::{self, Error, Result};

/// Measured seconds per row, unless `--seconds` says otherwise.
const DEFAULT_SECONDS: u64 = 10;
/// Keep-alive connections (= sessions) wrk keeps open.
const DEFAULT_CONNECTIONS: usize = 32;
/// Live sessions for the scaling rows.
const SCALING: [(u64, &str); 2] = [(1_000, "1k"), (1_000_000, "1M")];
/// Rows that get scaling variants (their store must support `--prefill`).
const SCALING_ROUTES: [&str; 1] = ["ours-memory"];

#[derive(Debug)]
pub(super) struct Options {
    pub(super) seconds: u64,
    pub(super) connections: usize,
    pub(super) routes: Option<Vec<String>>,
    pub(super) memory: bool,
}

pub(super) fn parse_options(args: &[&str]) -> Result<Options> {
    let mut options = Options {
        seconds: DEFAULT_SECONDS,
        connections: DEFAULT_CONNECTIONS,
        routes: None,
        memory: true,
    };
    let mut iter = args.iter();
    while let Some(&arg) = iter.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) => (name, Some(value)),
            None => (arg, None),
        };
        let mut value = || {
            inline
                .or_else(|| iter.next().copied())
                .ok_or_else(|| Error::msg(format!("bench: {name} needs a value")))
        };
        let number = |text: &str| {
            text.parse::<u64>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| Error::msg(format!("bench: {name} needs a positive number")))
        };
        match name {
            "--seconds" => options.seconds = number(value()?)?,
            "--connections" => {
                options.connections = usize::try_from(number(value()?)?)
                    .map_err(|_| Error::msg("bench: --connections is too large"))?;
            }
            "--routes" => {
                let names = value()?.split(',').filter(|s| !s.is_empty()).map(str::to_owned);
                options.routes = Some(names.collect());
            }
            "--no-memory" => options.memory = false,
            _ => {
                return Err(Error::msg(format!(
                    "bench: unknown argument `{arg}`; see `cargo xtask help`"
                )));
            }
        }
    }
    Ok(options)
}

/// One line of `bench-server --list`.
#[derive(Debug, Clone)]
pub(super) struct Route {
    pub(super) name: String,
    pub(super) peer: Option<String>,
    pub(super) needs: Vec<String>,
    pub(super) kind: String,
    pub(super) prefill: bool,
    pub(super) what: String,
}

pub(super) fn list_routes(bin: &Path) -> Result<Vec<Route>> {
    let mut list = Command::new(bin.join("bench-server"));
    list.arg("--list");
    let (status, out) = cmd::capture(&mut list)?;
    if !status.success() {
        return Err(Error::failed("bench-server --list", status));
    }
    parse_routes(&out)
}

fn parse_routes(text: &str) -> Result<Vec<Route>> {
    let dash = |s: &str| (s != "-").then(|| s.to_owned());
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| match line.split('\t').collect::<Vec<_>>().as_slice() {
            [name, peer, needs, kind, prefill, what] => Ok(Route {
                name: (*name).to_owned(),
                peer: dash(peer),
                needs: dash(needs)
                    .map(|n| n.split(',').map(str::to_owned).collect())
                    .unwrap_or_default(),
                kind: (*kind).to_owned(),
                prefill: *prefill == "yes",
                what: (*what).to_owned(),
            }),
            _ => Err(Error::msg(format!("bench: bad line from bench-server --list: {line:?}"))),
        })
        .collect()
}

pub(super) fn select(routes: &[Route], wanted: Option<&[String]>) -> Result<Vec<Route>> {
    let Some(wanted) = wanted else { return Ok(routes.to_vec()) };
    for name in wanted {
        if !routes.iter().any(|route| &route.name == name) {
            let known: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
            return Err(Error::msg(format!(
                "bench: unknown route `{name}`; known: {}",
                known.join(", ")
            )));
        }
    }
    // Table order, whatever the order on the command line.
    Ok(routes.iter().filter(|route| wanted.contains(&route.name)).cloned().collect())
}

/// One row to measure.
#[derive(Debug)]
pub(super) struct PlannedRow<'r> {
    pub(super) route: &'r Route,
    /// The row's name in the table.
    pub(super) name: String,
    /// Live sessions the server makes before it is measured.
    pub(super) prefill: u64,
}

/// What to measure, in table order: every selected row, the scaling rows
/// (with memory figures on), and `bare` once more.
pub(super) fn plan(selected: &[Route], memory: bool) -> Vec<PlannedRow<'_>> {
    let row = |route, name, prefill| PlannedRow { route, name, prefill };
    let mut plan: Vec<PlannedRow<'_>> =
        selected.iter().map(|route| row(route, route.name.clone(), 0)).collect();
    if memory {
        for route in
            selected.iter().filter(|r| r.prefill && SCALING_ROUTES.contains(&r.name.as_str()))
        {
            for (count, label) in SCALING {
                plan.push(row(route, format!("{} ({label} live)", route.name), count));
            }
        }
    }
    if selected.len() > 1
        && let Some(bare) = selected.iter().find(|route| route.name == "bare")
    {
        // Measured again last: the difference between the two bare rows shows
        // how much the machine drifted during the run.
        plan.push(row(bare, "bare (repeat)".to_owned(), 0));
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_parse_and_reject() {
        let o = parse_options(&["--seconds", "3", "--routes=bare,ours-memory", "--no-memory"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(o.seconds, 3);
        assert_eq!(o.routes, Some(vec!["bare".to_owned(), "ours-memory".to_owned()]));
        assert!(!o.memory);
        assert!(parse_options(&["--seconds", "0"]).is_err());
        assert!(parse_options(&["--seconds"]).is_err());
        assert!(parse_options(&["--bogus"]).is_err());
    }

    #[test]
    fn route_list_parses() {
        let routes = parse_routes(
            "bare\t-\t-\tnone\tno\taxum alone\nours-redis\ttower-sessions-redis\tredis\tserver\tno\tx\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(routes.len(), 2);
        assert_eq!(routes[0].peer, None);
        assert_eq!(routes[1].peer.as_deref(), Some("tower-sessions-redis"));
        assert_eq!(routes[1].needs, ["redis"]);
        assert!(parse_routes("bare\tonly three\tfields").is_err());
        let wanted = ["ours-redis".to_owned()];
        assert_eq!(select(&routes, Some(&wanted)).map(|r| r.len()).ok(), Some(1));
        assert!(select(&routes, Some(&["nope".to_owned()])).is_err());
    }

    #[test]
    fn plan_adds_scaling_rows_and_repeats_bare() {
        let routes =
            parse_routes("bare\t-\t-\tnone\tno\taxum alone\nours-memory\t-\t-\tserver\tyes\tx\n")
                .unwrap_or_else(|e| panic!("{e}"));
        let names = |memory| plan(&routes, memory).into_iter().map(|p| p.name).collect::<Vec<_>>();
        assert_eq!(
            names(true),
            [
                "bare",
                "ours-memory",
                "ours-memory (1k live)",
                "ours-memory (1M live)",
                "bare (repeat)"
            ]
        );
        assert_eq!(names(false), ["bare", "ours-memory", "bare (repeat)"]);
        assert_eq!(plan(&routes[..1], true).len(), 1);
    }
}
