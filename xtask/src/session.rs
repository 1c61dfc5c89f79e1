//! Services sessions: start the services for a run (tests, benchmarks) and
//! stop them again when the last run using them ends, however it ends.
//!
//! Several xtask runs may share one checkout (and so one set of services):
//! `cargo xtask test` in one terminal, `cargo xtask bench` in another. Each
//! run registers in `<services dir>/users/<pid>`; a run that ends stops the
//! services only if no other live run is registered and they were not
//! started by hand with `cargo xtask services start` (which leaves a `manual`
//! marker until `services stop`). A lock file serialises these decisions.
//!
//! Leaving happens on three paths, from the normal one to the abnormal one:
//! 1. [`ServicesSession::stop`], called explicitly after the work;
//! 2. its `Drop`, for early returns (`?`) and panics;
//! 3. the *reaper*, a copy of this program in its own process group that
//!    waits on a pipe from us. If we die without saying "disarm" (Ctrl-C,
//!    SIGTERM, SIGKILL), the pipe closes and the reaper leaves on our behalf.
//!    It needs no signal handler, so the xtask stays std-only and free of
//!    `unsafe`. Being in its own process group, it does not get the
//!    terminal's Ctrl-C itself.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};

use crate::cmd::{Error, Result};
use crate::services::{Config, Service, Services, status_line};

/// Hidden first argument that turns the xtask into a reaper.
pub(crate) const REAPER_ARG: &str = "__reaper";

/// Running services for one run; see the module docs.
#[derive(Debug)]
pub(crate) struct ServicesSession {
    services: Services,
    pid: u32,
    reaper: Option<Reaper>,
    /// Not registered (any more): nothing to do on drop.
    left: bool,
}

impl ServicesSession {
    /// Registers this run and starts whatever is not running yet.
    pub(crate) fn start(cfg: Config) -> Result<Self> {
        let pid = std::process::id();
        let reaper = match Reaper::spawn(pid) {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!(
                    "xtask: warning: no reaper ({e}); the services are not stopped if this \
                     process is killed"
                );
                None
            }
        };
        let mut session = Self { services: Services::new(cfg), pid, reaper, left: true };
        session.services.ensure_browser()?;
        let started = {
            let registry = Registry::lock(session.services.config())?;
            let others = registry.users();
            let mut running = Vec::new();
            for service in Service::ALL {
                if session.services.is_running(service)? {
                    running.push(service.name());
                }
            }
            if running.is_empty() {
                // A `services start` whose servers are gone (reboot, crash) no longer counts.
                registry.set_manual(false)?;
            }
            if !others.is_empty() {
                say(&format!(
                    "sharing the services with other xtask runs (pids {}); the last one to end \
                     stops them",
                    join(&others)
                ));
            } else if registry.manual() {
                say("using the services started by `cargo xtask services start`; they stay up");
            } else if !running.is_empty() {
                let it = if running.len() == 1 { "it" } else { "them" };
                say(&format!(
                    "{} already running with no other xtask run using {it}: reusing {it}, and \
                     stopping {it} at the end",
                    list(&running)
                ));
            }
            registry.register(pid)?;
            session.left = false;
            // Arm before starting: an interrupt during start-up must clean up too.
            if let Some(reaper) = &mut session.reaper {
                reaper.arm();
            }
            // Idempotent; for a running service it checks that it answers on our port.
            let started =
                Service::ALL.into_iter().try_for_each(|service| session.services.start(service));
            // Unlock before `session` may drop (its drop takes the lock again).
            drop(registry);
            started
        };
        started?;
        Ok(session)
    }

    /// `REDIS_URL`, `REDIS_CLUSTER_URLS`, `DATABASE_URL`, `PGBOUNCER_URL` and
    /// `MYSQL_URL` of the services.
    pub(crate) fn env(&self) -> [(&'static str, String); 5] {
        self.services.config().env()
    }

    /// Ends this run's use of the services: stops them unless another run
    /// still uses them or they were started by hand.
    pub(crate) fn stop(mut self) -> Result<()> {
        self.leave()
    }

    fn leave(&mut self) -> Result<()> {
        if self.left {
            return Ok(());
        }
        self.left = true;
        let result = leave(&self.services, self.pid);
        if let Some(reaper) = self.reaper.take() {
            reaper.disarm();
        }
        result
    }
}

impl Drop for ServicesSession {
    fn drop(&mut self) {
        if let Err(e) = self.leave() {
            eprintln!("xtask: error: {e}");
        }
    }
}

/// Deregisters `pid`; stops the services if it was the last user and they
/// were not started by hand.
fn leave(services: &Services, pid: u32) -> Result<()> {
    let registry = Registry::lock(services.config())?;
    registry.deregister(pid);
    let others = registry.users();
    if !others.is_empty() {
        say(&format!(
            "leaving the services running: other xtask runs use them (pids {})",
            join(&others)
        ));
        return Ok(());
    }
    if registry.manual() {
        say("leaving the services running (started by `cargo xtask services start`; \
             `cargo xtask services stop` stops them)");
        return Ok(());
    }
    stop_all(services)
}

fn stop_all(services: &Services) -> Result<()> {
    let mut errors = Vec::new();
    for service in Service::ALL.into_iter().rev() {
        if let Err(e) = services.stop(service) {
            errors.push(format!("stopping {}: {e}", service.name()));
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(Error::msg(errors.join("\n"))) }
}

/// `cargo xtask services start`: start them all and keep them up until `services stop`.
pub(crate) fn services_start(cfg: Config) -> Result<()> {
    let mut services = Services::new(cfg);
    let registry = Registry::lock(services.config())?;
    registry.set_manual(true)?;
    for service in Service::ALL {
        services.start(service)?;
    }
    Ok(())
}

/// `cargo xtask services stop`: stop them all, whoever started them.
pub(crate) fn services_stop(cfg: Config) -> Result<()> {
    let services = Services::new(cfg);
    let registry = Registry::lock(services.config())?;
    let users = registry.users();
    if !users.is_empty() {
        say(&format!(
            "warning: stopping services that running xtask runs use (pids {})",
            join(&users)
        ));
    }
    let stopped = stop_all(&services);
    registry.set_manual(false)?;
    stopped
}

/// `cargo xtask services status`: whether all run (after printing the details).
pub(crate) fn services_status(cfg: Config) -> Result<bool> {
    let services = Services::new(cfg);
    let up = services.status();
    let registry = Registry::lock(services.config())?;
    let users = registry.users();
    status_line(
        "users:",
        &format!(
            "{}{}",
            if users.is_empty() {
                "no xtask run".to_owned()
            } else {
                format!("xtask pids {}", join(&users))
            },
            if registry.manual() { ", and `services start` (stays up)" } else { "" }
        ),
    );
    Ok(up)
}

fn say(message: &str) {
    eprintln!("xtask: {message}");
}

/// "a", "a and b", "a, b and c".
fn list(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        Some((last, _)) => (*last).to_owned(),
        None => String::new(),
    }
}

fn join(pids: &[u32]) -> String {
    pids.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
}

/// Who uses the services of one services directory; exclusive while held.
#[derive(Debug)]
struct Registry {
    dir: PathBuf,
    _lock: File,
}

impl Registry {
    fn lock(cfg: &Config) -> Result<Self> {
        let dir = cfg.dir().to_path_buf();
        let users = dir.join("users");
        fs::create_dir_all(&users)
            .map_err(|e| Error::msg(format!("mkdir -p {}: {e}", users.display())))?;
        let path = dir.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::msg(format!("{}: {e}", path.display())))?;
        if file.try_lock().is_err() {
            say("waiting for another xtask run to finish starting or stopping the services");
            file.lock().map_err(|e| Error::msg(format!("locking {}: {e}", path.display())))?;
        }
        Ok(Self { dir, _lock: file })
    }

    /// The live registered runs; forgets dead ones.
    fn users(&self) -> Vec<u32> {
        let mut live = Vec::new();
        let Ok(entries) = fs::read_dir(self.dir.join("users")) else { return live };
        for entry in entries.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if is_xtask(pid) {
                live.push(pid);
            } else {
                let _ = fs::remove_file(entry.path());
            }
        }
        live.sort_unstable();
        live
    }

    fn register(&self, pid: u32) -> Result<()> {
        let path = self.dir.join("users").join(pid.to_string());
        fs::write(&path, b"").map_err(|e| Error::msg(format!("{}: {e}", path.display())))
    }

    fn deregister(&self, pid: u32) {
        let _ = fs::remove_file(self.dir.join("users").join(pid.to_string()));
    }

    fn manual(&self) -> bool {
        self.dir.join("manual").exists()
    }

    fn set_manual(&self, on: bool) -> Result<()> {
        let path = self.dir.join("manual");
        let done = if on {
            fs::write(&path, b"started by `cargo xtask services start`\n")
        } else {
            match fs::remove_file(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                other => other,
            }
        };
        done.map_err(|e| Error::msg(format!("{}: {e}", path.display())))
    }
}

/// Whether `pid` is a live xtask process.
fn is_xtask(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        cmdline.split(|&b| b == 0).next().is_some_and(|exe| exe.ends_with(b"xtask"))
    })
}

/// Our end of the pipe to the reaper process.
#[derive(Debug)]
struct Reaper {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Reaper {
    fn spawn(parent: u32) -> io::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg(REAPER_ARG)
            .arg(parent.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // Its own process group: the terminal's Ctrl-C goes to ours, not to it.
            .process_group(0)
            .spawn()?;
        let stdin = child.stdin.take();
        Ok(Self { child, stdin })
    }

    fn send(&mut self, line: &str) {
        let sent =
            self.stdin.as_mut().map(|pipe| writeln!(pipe, "{line}").and_then(|()| pipe.flush()));
        if let Some(Err(e)) = sent {
            eprintln!("xtask: warning: reaper pipe: {e}");
        }
    }

    fn arm(&mut self) {
        self.send("arm");
    }

    fn disarm(mut self) {
        self.send("disarm");
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// The reaper process for `parent`: reads "arm" / "disarm" until end of
/// input; at end of input while armed, leaves the services on its behalf.
pub(crate) fn reaper_main(parent: &str) -> ExitCode {
    let Ok(parent) = parent.parse::<u32>() else {
        eprintln!("xtask: reaper: bad parent pid {parent:?}");
        return ExitCode::FAILURE;
    };
    let mut armed = false;
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "arm" => armed = true,
            "disarm" => return ExitCode::SUCCESS,
            _ => {}
        }
    }
    if !armed {
        return ExitCode::SUCCESS;
    }
    eprintln!("xtask: run {parent} was interrupted: cleaning up its services");
    let result = Config::from_env().and_then(|cfg| leave(&Services::new(cfg), parent));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: reaper: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_well() {
        assert_eq!(list(&[]), "");
        assert_eq!(list(&["redis"]), "redis");
        assert_eq!(list(&["redis", "postgres"]), "redis and postgres");
        assert_eq!(list(&["a", "b", "c"]), "a, b and c");
    }
}
