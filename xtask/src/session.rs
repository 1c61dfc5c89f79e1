//! A services session: start the services for a test run and make sure the
//! ones we started are stopped again, however the run ends.
//!
//! Three layers, from the normal path to the abnormal one:
//! 1. [`ServicesSession::stop`], called explicitly after the tests;
//! 2. its `Drop`, for early returns (`?`) and panics;
//! 3. the *reaper*, a copy of this program in its own process group that
//!    waits on a pipe from us. If we die without saying "disarm" (Ctrl-C,
//!    SIGTERM, SIGKILL), the pipe closes and the reaper stops the services we
//!    had started. It needs no signal handler, so the xtask stays std-only and
//!    free of `unsafe`. Being in its own process group, it does not get the
//!    terminal's Ctrl-C itself.

use std::io::{self, BufRead, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};

use crate::cmd::{Error, Result};
use crate::services::{Config, Service, Services};

/// Hidden first argument that turns the xtask into a reaper.
pub(crate) const REAPER_ARG: &str = "__reaper";

/// Running services for one test run; see the module docs.
#[derive(Debug)]
pub(crate) struct ServicesSession {
    services: Services,
    /// What this session started, and so must stop (in start order).
    started: Vec<Service>,
    reaper: Option<Reaper>,
    stopped: bool,
}

impl ServicesSession {
    /// Starts whatever is not running yet. Services that were already running
    /// (e.g. after `cargo xtask services start`) are used and left running.
    pub(crate) fn start(cfg: Config) -> Result<Self> {
        let reaper = match Reaper::spawn() {
            Ok(r) => Some(r),
            Err(e) => {
                eprintln!(
                    "xtask: warning: no reaper ({e}); services are not stopped if this process is killed"
                );
                None
            }
        };
        let mut session =
            Self { services: Services::new(cfg), started: Vec::new(), reaper, stopped: false };
        for service in Service::ALL {
            if session.services.is_running(service)? {
                eprintln!(
                    "xtask: {} was already running: using it, and leaving it running afterwards",
                    service.name()
                );
            } else {
                // Arm before starting: an interrupt during start-up must stop it too.
                if let Some(reaper) = &mut session.reaper {
                    reaper.arm(service);
                }
                session.started.push(service);
            }
            // Idempotent; for a running service it checks that it answers on our port
            // (and that the test database exists).
            session.services.start(service)?;
        }
        Ok(session)
    }

    /// `REDIS_URL` and `DATABASE_URL` of the services.
    pub(crate) fn env(&self) -> [(&'static str, String); 2] {
        self.services.config().env()
    }

    /// Stops the services this session started.
    pub(crate) fn stop(mut self) -> Result<()> {
        self.stop_started()
    }

    fn stop_started(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let mut errors = Vec::new();
        for &service in self.started.iter().rev() {
            if let Err(e) = self.services.stop(service) {
                errors.push(format!("stopping {}: {e}", service.name()));
            }
        }
        if let Some(reaper) = self.reaper.take() {
            reaper.disarm();
        }
        if errors.is_empty() { Ok(()) } else { Err(Error::msg(errors.join("\n"))) }
    }
}

impl Drop for ServicesSession {
    fn drop(&mut self) {
        if let Err(e) = self.stop_started() {
            eprintln!("xtask: error: {e}");
        }
    }
}

/// Our end of the pipe to the reaper process.
#[derive(Debug)]
struct Reaper {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Reaper {
    fn spawn() -> io::Result<Self> {
        let exe = std::env::current_exe()?;
        let mut child = Command::new(exe)
            .arg(REAPER_ARG)
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

    fn arm(&mut self, service: Service) {
        self.send(service.name());
    }

    fn disarm(mut self) {
        self.send("disarm");
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// The reaper process: reads service names until "disarm" or end of input;
/// at end of input without "disarm", stops the named services.
pub(crate) fn reaper_main() -> ExitCode {
    let mut armed = Vec::new();
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "disarm" => return ExitCode::SUCCESS,
            name => armed.extend(Service::from_name(name)),
        }
    }
    if armed.is_empty() {
        return ExitCode::SUCCESS;
    }
    eprintln!("xtask: interrupted: stopping the services this run started");
    let cfg = match Config::from_env() {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("xtask: reaper: {e}");
            return ExitCode::FAILURE;
        }
    };
    let services = Services::new(cfg);
    let mut code = ExitCode::SUCCESS;
    for service in armed.into_iter().rev() {
        if let Err(e) = services.stop(service) {
            eprintln!("xtask: reaper: stopping {}: {e}", service.name());
            code = ExitCode::FAILURE;
        }
    }
    code
}
