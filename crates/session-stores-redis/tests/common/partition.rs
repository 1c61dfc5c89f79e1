//! A TCP proxy in front of Redis that can cut its clients off, as a network
//! partition would: while cut, every proxied connection is dropped and new
//! ones are closed at once, so the store behind it can neither renew its
//! leases nor save, while stores that reach Redis directly carry on.
#![allow(clippy::expect_used)] // Test set-up: a loopback port.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

pub(crate) struct Partition {
    port: u16,
    cut: Arc<AtomicBool>,
    cut_now: Arc<Notify>,
}

impl Partition {
    /// A proxy on a free port to the Redis at `url` (`redis://127.0.0.1:<port>/`).
    pub(crate) async fn in_front_of(url: &str) -> Self {
        let redis_port: u16 = url
            .trim_end_matches('/')
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("no port in {url}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let port = listener.local_addr().expect("its address").port();
        let (cut, cut_now) = (Arc::new(AtomicBool::new(false)), Arc::new(Notify::new()));
        let (cut_flag, notify) = (Arc::clone(&cut), Arc::clone(&cut_now));
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                if cut_flag.load(Ordering::SeqCst) {
                    continue; // Dropped: closed at once.
                }
                let notify = Arc::clone(&notify);
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", redis_port)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        () = notify.notified() => {}
                    }
                });
            }
        });
        Self { port, cut, cut_now }
    }

    /// `redis://` URL of the proxy.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Cuts every client off until [`heal`](Self::heal).
    pub(crate) fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.cut_now.notify_waiters();
    }

    pub(crate) fn heal(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}
