//! App servers in child processes: the test binary runs itself again as one
//! test, with an environment variable that tells that test to serve an app
//! instead of testing. Killing the child is a crash of the app server.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use axum::Router;

/// What a child prints once it listens, followed by its port.
const READY: &str = "app server listening on port";

/// An app server in a child process, SIGKILLed when dropped.
pub struct ChildServer {
    child: Child,
    pub port: u16,
}

impl ChildServer {
    /// Runs this test binary as the test `test` with `variable=spec`, and
    /// waits (blocking) until it listens.
    pub fn spawn(test: &str, variable: &str, spec: &str) -> Self {
        let exe = std::env::current_exe().expect("test binary");
        let mut child = Command::new(exe)
            .args([test, "--exact", "--nocapture", "--test-threads=1", "--include-ignored"])
            .env(variable, spec)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn the app server");
        let stdout = child.stdout.take().expect("app server stdout");
        let (ready, port) = mpsc::channel();
        // Keeps reading after the port, so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // The test harness may have started the line ("test ... ").
                if let Some((_, port)) = line.split_once(READY) {
                    let _ = ready.send(port.trim().parse::<u16>().expect("port"));
                }
            }
        });
        // Owned before the wait, so that a panic kills it.
        let mut server = Self { child, port: 0 };
        server.port = port
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("the app server ({spec}) did not start: {e}"));
        server
    }

    /// SIGKILL, like a crash; waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// In the child: serves `app` on `127.0.0.1:port` (0: any free port) until
/// killed, after telling the parent the port.
pub async fn serve(app: Router, port: u16) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{READY} {}", listener.local_addr().unwrap().port()).unwrap();
    stdout.flush().unwrap();
    axum::serve(listener, app).await.unwrap();
}
