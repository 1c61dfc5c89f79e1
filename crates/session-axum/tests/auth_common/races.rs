//! Auth lifecycle races on one store shared by two apps: "log out
//! everywhere" and a password change racing writes, login racing logout,
//! and two logins of one browser racing. The apps are two layer instances in
//! this process (`auth_race_tests!(make_store)`), or two server processes on
//! one user database (`tests/processes.rs`, through the `*_on` functions).
//! Each runs many rounds; every round checks that the outcome is one of the
//! allowed ones and that nothing of an ended session is left in the store or
//! the user's index.

use session_axum::SessionLayer;
use session_axum::core::{LockingStore, SessionId, StorageKey, Timestamp};
use tokio::task::JoinSet;

use super::target::Target;
use super::{NumericUsers, Reply, TestUser, TestUsers, app, config};

/// Rounds per scenario.
const ROUNDS: usize = 20;

fn key_of(cookie: &str) -> StorageKey {
    let (_, value) = cookie.split_once('=').expect("name=value");
    value.parse::<SessionId>().expect("a session id").storage_key()
}

/// Two app instances on `store`, sharing one user database.
fn two_apps<S: LockingStore + Clone>(store: &S, users: &TestUsers) -> [Target; 2] {
    let numeric = NumericUsers::default();
    let layer = || SessionLayer::new(store.clone()).with_config(config()).expect("a valid config");
    [
        app(layer(), users.clone(), numeric.clone()).into(),
        app(layer(), users.clone(), numeric.clone()).into(),
    ]
}

/// Logs `user` in from a fresh client; returns the session cookie.
async fn login(app: &Target, user: &TestUser) -> String {
    let reply = app.send(&format!("/login/{}", user.id), &[]).await;
    assert_eq!(reply.status, 303, "{}", reply.body);
    reply.cookie()
}

/// Sends every `(app, path, cookie)` at once; the replies in that order.
async fn all_at_once(requests: Vec<(Target, String, String)>) -> Vec<Reply> {
    let mut tasks = JoinSet::new();
    for (i, (app, path, cookie)) in requests.into_iter().enumerate() {
        tasks.spawn(async move { (i, app.send(&path, &[&cookie]).await) });
    }
    let mut replies: Vec<Option<Reply>> = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (i, reply) = joined.expect("a request task");
        if replies.len() <= i {
            replies.resize_with(i + 1, || None);
        }
        replies[i] = Some(reply);
    }
    replies.into_iter().map(|reply| reply.expect("every request answered")).collect()
}

async fn assert_gone(store: &dyn LockingStore, apps: &[Target; 2], cookie: &str, what: &str) {
    for app in apps {
        assert_eq!(app.send("/get", &[cookie]).await.body, "none", "{what}");
        assert_eq!(app.send("/me", &[cookie]).await.status, 401, "{what}");
    }
    let left = store.load(&key_of(cookie), Timestamp::now()).await.expect("load");
    assert!(left.is_none(), "{what}: still stored: {left:?}");
}

/// "Log out everywhere" racing unlocked writes on every session of the
/// user: afterwards no old id loads, none is stored, and the user's index
/// lists nothing.
pub async fn logout_everywhere_racing_writes<S: LockingStore + Clone>(store: S) {
    let users = TestUsers::default();
    logout_everywhere_racing_writes_on(&two_apps(&store, &users), &store, &users).await;
}

/// [`logout_everywhere_racing_writes`] through `apps`, which share `store` and `users`.
pub async fn logout_everywhere_racing_writes_on(
    apps: &[Target; 2],
    store: &dyn LockingStore,
    users: &TestUsers,
) {
    for round in 0..ROUNDS {
        let user = users.add(&format!("everywhere-{round}"), false);
        let mut cookies = Vec::new();
        for i in 0..3 {
            cookies.push(login(&apps[i % 2], &user).await);
        }
        let mut requests = Vec::new();
        for (i, cookie) in cookies.iter().enumerate() {
            for j in 0..2 {
                let app = apps[(i + j) % 2].clone();
                requests.push((app, format!("/set?v=racer{j}"), cookie.clone()));
            }
            if i == 1 {
                requests.push((apps[1].clone(), "/logout-everywhere".into(), cookies[0].clone()));
            }
        }
        for reply in all_at_once(requests).await {
            assert!(reply.status.is_success(), "round {round}: {} {}", reply.status, reply.body);
        }
        for cookie in &cookies {
            assert_gone(store, apps, cookie, &format!("round {round}")).await;
        }
        let listed = store.list_for_user(&user.id, Timestamp::now()).await.expect("list");
        assert!(listed.is_empty(), "round {round}: the index still lists {}", listed.len());
    }
}

/// Login and logout of one browser racing: whichever runs first, the old id
/// ends, the login's new session is logged in, and the user's index lists
/// exactly that one session.
pub async fn login_racing_logout<S: LockingStore + Clone>(store: S) {
    let users = TestUsers::default();
    login_racing_logout_on(&two_apps(&store, &users), &store, &users).await;
}

/// [`login_racing_logout`] through `apps`, which share `store` and `users`.
pub async fn login_racing_logout_on(
    apps: &[Target; 2],
    store: &dyn LockingStore,
    users: &TestUsers,
) {
    for round in 0..ROUNDS {
        let user = users.add(&format!("racing-{round}"), false);
        let anonymous = apps[0].send("/set?v=cart", &[]).await.cookie();
        let replies = all_at_once(vec![
            (apps[0].clone(), format!("/login/{}", user.id), anonymous.clone()),
            (apps[1].clone(), "/logout".into(), anonymous.clone()),
        ])
        .await;
        let logged_in = replies[0].cookie();
        assert_ne!(logged_in, anonymous, "round {round}");
        assert_eq!(apps[1].send("/me", &[&logged_in]).await.body, user.name, "round {round}");
        assert_gone(store, apps, &anonymous, &format!("round {round}")).await;
        let listed = store.list_for_user(&user.id, Timestamp::now()).await.expect("list");
        assert_eq!(listed.len(), 1, "round {round}: the index lists {} sessions", listed.len());
    }
}

/// Two logins of one browser racing: both end logged in, each on its own new
/// id; the anonymous session's data moved to exactly one of them (never
/// copied to both, never lost), and the old id ends.
pub async fn two_logins_racing<S: LockingStore + Clone>(store: S) {
    let users = TestUsers::default();
    two_logins_racing_on(&two_apps(&store, &users), &store, &users).await;
}

/// [`two_logins_racing`] through `apps`, which share `store` and `users`.
pub async fn two_logins_racing_on(apps: &[Target; 2], store: &dyn LockingStore, users: &TestUsers) {
    for round in 0..ROUNDS {
        let user = users.add(&format!("twice-{round}"), false);
        let anonymous = apps[0].send("/set?v=cart", &[]).await.cookie();
        let path = format!("/login/{}", user.id);
        let replies = all_at_once(vec![
            (apps[0].clone(), path.clone(), anonymous.clone()),
            (apps[1].clone(), path, anonymous.clone()),
        ])
        .await;
        let mut carts = 0;
        for reply in &replies {
            let cookie = reply.cookie();
            assert_ne!(cookie, anonymous, "round {round}");
            assert_eq!(apps[0].send("/me", &[&cookie]).await.body, user.name, "round {round}");
            carts += usize::from(apps[1].send("/get", &[&cookie]).await.body == "cart");
        }
        assert_ne!(replies[0].cookie(), replies[1].cookie(), "round {round}");
        assert_eq!(carts, 1, "round {round}: the anonymous data is in {carts} sessions");
        assert_gone(store, apps, &anonymous, &format!("round {round}")).await;
        let listed = store.list_for_user(&user.id, Timestamp::now()).await.expect("list");
        assert_eq!(listed.len(), 2, "round {round}");
    }
}

/// A password change (new login, then `logout_other_sessions`) racing
/// writes and reads on the user's other sessions: once the change has
/// answered, no other session loads again on either app, no racing write
/// recreates one, nothing of them is left in the store, and the user's
/// index lists the changing session alone.
pub async fn password_change_racing_writes<S: LockingStore + Clone>(store: S) {
    let users = TestUsers::default();
    password_change_racing_writes_on(&two_apps(&store, &users), &store, &users).await;
}

/// [`password_change_racing_writes`] through `apps`, which share `store` and `users`.
pub async fn password_change_racing_writes_on(
    apps: &[Target; 2],
    store: &dyn LockingStore,
    users: &TestUsers,
) {
    for round in 0..ROUNDS {
        let user = users.add(&format!("password-{round}"), false);
        let mut cookies = Vec::new();
        for i in 0..3 {
            cookies.push(login(&apps[i % 2], &user).await);
        }
        let mut requests = Vec::new();
        for (i, cookie) in cookies.iter().enumerate().skip(1) {
            for (j, path) in ["/set?v=racer", "/me", "/incr"].into_iter().enumerate() {
                requests.push((apps[(i + j) % 2].clone(), path.to_owned(), cookie.clone()));
            }
            if i == 1 {
                let change =
                    format!("/password/{}?pw=round{round}&relogin=true&end_others=true", user.id);
                requests.push((apps[0].clone(), change, cookies[0].clone()));
            }
        }
        let paths: Vec<String> = requests.iter().map(|(_, path, _)| path.clone()).collect();
        let replies = all_at_once(requests).await;
        for (path, reply) in paths.iter().zip(&replies) {
            // A read as the user may run after the change: 401 then.
            let allowed = reply.status.is_success() || (path == "/me" && reply.status == 401);
            assert!(allowed, "round {round}: {path}: {} {}", reply.status, reply.body);
        }
        let changed = replies
            .iter()
            .find(|reply| reply.body == "password changed")
            .unwrap_or_else(|| panic!("round {round}: the password change did not answer"));
        let kept = changed.cookie();
        let what = format!("round {round}");
        for cookie in &cookies[1..] {
            assert_gone(store, apps, cookie, &what).await;
        }
        assert_gone(store, apps, &cookies[0], &format!("{what}: the changing session's old id"))
            .await;
        assert_eq!(apps[1].send("/me", &[&kept]).await.body, user.name, "{what}");
        let listed = store.list_for_user(&user.id, Timestamp::now()).await.expect("list");
        assert_eq!(listed.len(), 1, "{what}: the index lists {} sessions", listed.len());
        assert_eq!(listed[0].key, key_of(&kept), "{what}");
    }
}

/// Expands to one test per auth race on the store built by `$make_store`.
#[macro_export]
macro_rules! auth_race_tests {
    ($make_store:path) => {
        mod auth_race_tests {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn logout_everywhere_racing_writes() {
                $crate::auth_common::races::logout_everywhere_racing_writes($make_store().await)
                    .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn password_change_racing_writes() {
                $crate::auth_common::races::password_change_racing_writes($make_store().await)
                    .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn login_racing_logout() {
                $crate::auth_common::races::login_racing_logout($make_store().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn two_logins_racing() {
                $crate::auth_common::races::two_logins_racing($make_store().await).await;
            }
        }
    };
}
