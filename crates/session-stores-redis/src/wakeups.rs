//! Release notices: a waiter for a busy lock is woken when its holder lets
//! go, instead of polling Redis.
//!
//! Every script that releases a lock (`RELEASE`, `SAVE` with a release)
//! publishes an empty message on the lock key's own name. A store on one
//! Redis keeps one pub/sub connection for all of its waiters: the first
//! waiter of a session in this process subscribes to that lock's channel,
//! the last one to leave unsubscribes, and a notice wakes every waiter of
//! the session here (of whom only the first in the process queue tries the
//! lock). A notice can be lost (the connection drops, a subscription is not
//! confirmed yet when the lock is released): waiters still poll, slowly, as
//! a safety net, and are all woken when the connection comes back.
//!
//! Redis Cluster does not use notices yet: its waiters poll.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use deadpool_redis::redis::{self, Msg};
use futures_util::StreamExt;
use tokio::sync::{Notify, mpsc, oneshot};

/// How long a waiter waits for its subscription to be confirmed before it
/// goes on without (polling only).
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(1);
/// Pause before connecting again after the pub/sub connection failed.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// The release notices of one store.
pub(crate) struct Wakeups {
    client: redis::Client,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The lock channels someone here waits on.
    channels: HashMap<Vec<u8>, Channel>,
    /// The subscriber task's inbox; `None` until the first waiter.
    task: Option<mpsc::UnboundedSender<Command>>,
}

struct Channel {
    notify: Arc<Notify>,
    waiters: usize,
}

enum Command {
    Subscribe(Vec<u8>, oneshot::Sender<()>),
    Unsubscribe(Vec<u8>),
}

impl Wakeups {
    pub(crate) fn new(client: redis::Client) -> Self {
        Self { client, state: Mutex::default() }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts listening for the release of `lock_key`; notices come through
    /// the returned watch until it is dropped. Waits (briefly) for the
    /// subscription to be confirmed, so that a release from now on wakes it.
    pub(crate) async fn watch(self: &Arc<Self>, lock_key: &[u8]) -> Watch {
        let (notify, confirmed) = {
            let mut state = self.state();
            let first = !state.channels.contains_key(lock_key);
            let channel = state
                .channels
                .entry(lock_key.to_vec())
                .or_insert_with(|| Channel { notify: Arc::default(), waiters: 0 });
            channel.waiters += 1;
            let notify = Arc::clone(&channel.notify);
            let confirmed = first.then(|| {
                let (done, confirmed) = oneshot::channel();
                self.send(&mut state, Command::Subscribe(lock_key.to_vec(), done));
                confirmed
            });
            (notify, confirmed)
        };
        if let Some(confirmed) = confirmed {
            // Unconfirmed (Redis out of reach): the waiter polls meanwhile.
            let _ = tokio::time::timeout(SUBSCRIBE_WAIT, confirmed).await;
        }
        Watch { wakeups: Arc::clone(self), lock_key: lock_key.to_vec(), notify }
    }

    fn send(self: &Arc<Self>, state: &mut State, command: Command) {
        let task = state.task.get_or_insert_with(|| {
            let (sender, inbox) = mpsc::unbounded_channel();
            tokio::spawn(subscriber(Arc::downgrade(self), inbox));
            sender
        });
        // The task ends only when the store is gone, with its waiters.
        let _ = task.send(command);
    }

    fn leave(self: &Arc<Self>, lock_key: &[u8]) {
        let mut state = self.state();
        let Some(channel) = state.channels.get_mut(lock_key) else { return };
        channel.waiters -= 1;
        if channel.waiters == 0 {
            state.channels.remove(lock_key);
            self.send(&mut state, Command::Unsubscribe(lock_key.to_vec()));
        }
    }

    fn notify(&self, lock_key: &[u8]) {
        if let Some(channel) = self.state().channels.get(lock_key) {
            channel.notify.notify_waiters();
        }
    }

    /// After a reconnect: every channel waited on now, and a wake-up for all
    /// (notices may have been lost meanwhile).
    fn resubscribe_all(&self) -> Vec<Vec<u8>> {
        let state = self.state();
        for channel in state.channels.values() {
            channel.notify.notify_waiters();
        }
        state.channels.keys().cloned().collect()
    }
}

/// A waiter's interest in one lock's release; unsubscribes with the last.
pub(crate) struct Watch {
    wakeups: Arc<Wakeups>,
    lock_key: Vec<u8>,
    notify: Arc<Notify>,
}

impl Watch {
    /// Woken by the next notice. Create it before the attempt it follows,
    /// so that a release between the two is not missed.
    pub(crate) fn notice(&self) -> Arc<Notify> {
        Arc::clone(&self.notify)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.wakeups.leave(&self.lock_key);
    }
}

/// The store's one pub/sub connection: (re)connects, follows the waiters'
/// subscriptions and hands notices to them, until the store is gone.
async fn subscriber(
    wakeups: std::sync::Weak<Wakeups>,
    mut inbox: mpsc::UnboundedReceiver<Command>,
) {
    loop {
        let Some(client) = wakeups.upgrade().map(|w| w.client.clone()) else { return };
        let pubsub = match client.get_async_pubsub().await {
            Ok(pubsub) => pubsub,
            Err(error) => {
                tracing::debug!(%error, "release notices: cannot connect; waiters poll meanwhile");
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
        let (mut sink, mut messages) = pubsub.split();
        let channels = match wakeups.upgrade() {
            Some(wakeups) => wakeups.resubscribe_all(),
            None => return,
        };
        let mut healthy = true;
        for channel in channels {
            healthy &= sink.subscribe(channel).await.is_ok();
        }
        while healthy {
            tokio::select! {
                command = inbox.recv() => match command {
                    None => return,
                    Some(Command::Subscribe(channel, done)) => {
                        healthy = sink.subscribe(channel).await.is_ok();
                        let _ = done.send(());
                    }
                    Some(Command::Unsubscribe(channel)) => {
                        healthy = sink.unsubscribe(channel).await.is_ok();
                    }
                },
                message = messages.next() => match message {
                    Some(message) => match wakeups.upgrade() {
                        Some(wakeups) => wakeups.notify(channel_of(&message)),
                        None => return,
                    },
                    None => healthy = false,
                },
            }
        }
        tracing::debug!("release notices: connection lost; reconnecting");
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

fn channel_of(message: &Msg) -> &[u8] {
    message.get_channel_name().as_bytes()
}
