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
//! On Redis Cluster the notices are sharded (`SPUBLISH`/`SSUBSCRIBE`): a
//! notice stays in its lock's slot, and the one cluster connection of the
//! subscriber follows each channel to whichever node serves its slot after a
//! migration or a failover, subscribing again there. Every such
//! resubscription wakes the channel's waiters, since a notice may have been
//! lost on the way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use deadpool_redis::redis;
use futures_util::StreamExt;
use tokio::sync::{Notify, mpsc, oneshot};

/// How long a waiter waits for its subscription to be confirmed before it
/// goes on without (polling only).
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(1);
/// Pause before connecting again after the pub/sub connection failed.
const RECONNECT_PAUSE: Duration = Duration::from_millis(200);

/// Where a store's release notices come from.
pub(crate) enum Notices {
    /// Pub/sub on one Redis.
    Standalone(redis::Client),
    /// Sharded pub/sub on a Redis Cluster (a RESP3 client: notices are pushed).
    #[cfg(feature = "cluster")]
    Cluster(Box<redis::cluster::ClusterClient>),
}

/// The release notices of one store.
pub(crate) struct Wakeups {
    notices: Notices,
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
    pub(crate) fn new(notices: Notices) -> Self {
        Self { notices, state: Mutex::default() }
    }

    /// Whether the notice connection was opened (a waiter needed it): it
    /// stays, with its task, while the store lives.
    pub(crate) fn is_open(&self) -> bool {
        self.state().task.is_some()
    }

    /// The scripts' notice flag (see `scripts::RELEASE`): `1` publishes,
    /// `2` publishes on the shard channel.
    pub(crate) fn publish_flag(&self) -> &'static str {
        match self.notices {
            Notices::Standalone(_) => "1",
            #[cfg(feature = "cluster")]
            Notices::Cluster(_) => "2",
        }
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

    /// Wakes every waiter (the connection was lost: notices may be too).
    fn notify_all(&self) {
        for channel in self.state().channels.values() {
            channel.notify.notify_waiters();
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
        self.notify_all();
        self.state().channels.keys().cloned().collect()
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

/// The store's one notice connection: (re)connects, follows the waiters'
/// subscriptions and hands notices to them, until the store is gone. A
/// cluster connection reconnects and resubscribes by itself (also on the
/// new owner of a migrated slot) and pushes a confirmation each time: that
/// wakes the channel's waiters, whose notice may have been lost meanwhile.
/// A subscribe that fails leaves the waiter polling; the connection is made
/// anew, with every channel, after a pause.
async fn subscriber(
    wakeups: std::sync::Weak<Wakeups>,
    mut inbox: mpsc::UnboundedReceiver<Command>,
) {
    loop {
        let connected = match wakeups.upgrade() {
            Some(wakeups) => connect(&wakeups.notices).await,
            None => return,
        };
        let (mut sink, mut arrivals) = match connected {
            Ok(connection) => connection,
            Err(error) => {
                tracing::debug!(%error, "release notices: cannot connect; waiters poll meanwhile");
                tokio::time::sleep(RECONNECT_PAUSE).await;
                continue;
            }
        };
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
                arrival = arrivals.next() => {
                    let Some(wakeups) = wakeups.upgrade() else { return };
                    match arrival {
                        Arrival::Notice(channel) => wakeups.notify(&channel),
                        #[cfg(feature = "cluster")]
                        Arrival::Reconnected => wakeups.notify_all(),
                        #[cfg(feature = "cluster")]
                        Arrival::Other => {}
                        Arrival::Closed => healthy = false,
                    }
                }
            }
        }
        tracing::debug!("release notices: connection lost; reconnecting");
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

/// Opens the notice connection: what subscribes, and what notices arrive on.
async fn connect(notices: &Notices) -> redis::RedisResult<(Sink, Arrivals)> {
    match notices {
        Notices::Standalone(client) => {
            let (sink, messages) = client.get_async_pubsub().await?.split();
            Ok((Sink::Standalone(sink), Arrivals::Standalone(messages)))
        }
        #[cfg(feature = "cluster")]
        Notices::Cluster(client) => {
            let (pushes, pushed) = mpsc::unbounded_channel();
            let config = redis::cluster::ClusterConfig::new().set_push_sender(pushes);
            let connection = client.get_async_connection_with_config(config).await?;
            Ok((Sink::Cluster(Box::new(connection)), Arrivals::Cluster(pushed)))
        }
    }
}

/// Where subscriptions are sent.
enum Sink {
    Standalone(redis::aio::PubSubSink),
    /// Sharded subscriptions, routed by the channel's slot.
    #[cfg(feature = "cluster")]
    Cluster(Box<redis::cluster_async::ClusterConnection>),
}

impl Sink {
    async fn subscribe(&mut self, channel: Vec<u8>) -> redis::RedisResult<()> {
        match self {
            Sink::Standalone(sink) => sink.subscribe(channel).await,
            #[cfg(feature = "cluster")]
            Sink::Cluster(connection) => connection.ssubscribe(channel).await,
        }
    }

    async fn unsubscribe(&mut self, channel: Vec<u8>) -> redis::RedisResult<()> {
        match self {
            Sink::Standalone(sink) => sink.unsubscribe(channel).await,
            #[cfg(feature = "cluster")]
            Sink::Cluster(connection) => connection.sunsubscribe(channel).await,
        }
    }
}

/// Where notices arrive.
enum Arrivals {
    Standalone(redis::aio::PubSubStream),
    /// The cluster connection's RESP3 pushes.
    #[cfg(feature = "cluster")]
    Cluster(mpsc::UnboundedReceiver<redis::PushInfo>),
}

/// What arrived.
enum Arrival {
    /// A release notice on this lock's channel.
    Notice(Vec<u8>),
    /// The connection was lost and made again: any notice may be lost.
    #[cfg(feature = "cluster")]
    Reconnected,
    /// Nothing for the waiters (a subscription confirmed, say).
    #[cfg(feature = "cluster")]
    Other,
    /// The connection is gone for good.
    Closed,
}

impl Arrivals {
    async fn next(&mut self) -> Arrival {
        match self {
            Arrivals::Standalone(messages) => match messages.next().await {
                Some(message) => Arrival::Notice(message.get_channel_name().as_bytes().to_vec()),
                None => Arrival::Closed,
            },
            #[cfg(feature = "cluster")]
            Arrivals::Cluster(pushed) => {
                use redis::{PushKind, Value};
                let Some(push) = pushed.recv().await else { return Arrival::Closed };
                match (push.kind, push.data.first()) {
                    // A resubscription after a reconnect or a slot move is
                    // confirmed like a first one: the notice may be lost.
                    (
                        PushKind::SMessage | PushKind::SSubscribe,
                        Some(Value::BulkString(channel)),
                    ) => Arrival::Notice(channel.clone()),
                    (PushKind::Disconnection, _) => Arrival::Reconnected,
                    _ => Arrival::Other,
                }
            }
        }
    }
}
