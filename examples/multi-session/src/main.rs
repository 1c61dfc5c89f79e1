//! Two sessions side by side, each with its own cookie and store:
//!
//! - `Session` (cookie `id`): the visitor's preferences, in memory.
//! - `Session<Cart>` (cookie `cart`): the shopping cart, on a [`Mirrored`]
//!   store chosen by `MIRROR`:
//!   - `memory` (default): memory only, no services needed;
//!   - `memory+redis`: reads from memory, every write also goes to Redis
//!     (`REDIS_URL`), a warm copy that survives this process;
//!   - `redis+postgres`: Redis is the primary (and lock), Postgres
//!     (`DATABASE_URL`) keeps an analytics copy; a Postgres outage is logged
//!     and does not fail requests.
//!
//! ```text
//! cargo run -p multi-session
//! MIRROR=redis+postgres REDIS_URL=... DATABASE_URL=... cargo run -p multi-session
//! curl -c jar -b jar '127.0.0.1:3000/theme?name=dark'
//! curl -c jar -b jar '127.0.0.1:3000/cart/add?item=tea'
//! curl -c jar -b jar 127.0.0.1:3000/
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::Query;
use axum::routing::get;
use session_axum::core::{LockingStore, Mirrored, ReplicaFailure, SessionStore};
use session_axum::memory::MemoryStore;
use session_axum::postgres::{PgPool, PostgresStore};
use session_axum::redis::RedisStore;
use session_axum::{Session, SessionError, SessionKind, SessionLayer};

/// The cart's session kind: its own cookie (`cart`) and store.
struct Cart;

impl SessionKind for Cart {
    const NAME: &'static str = "cart";
}

#[derive(serde::Deserialize)]
struct Theme {
    name: String,
}

#[derive(serde::Deserialize)]
struct Item {
    item: String,
}

async fn overview(visitor: Session, cart: Session<Cart>) -> Result<String, SessionError> {
    let theme = visitor.get::<String>("theme").await?.unwrap_or_else(|| "light".into());
    let items = cart.get::<Vec<String>>("items").await?.unwrap_or_default();
    Ok(format!("theme: {theme}\ncart: {}\n", items.join(", ")))
}

async fn set_theme(visitor: Session, Query(theme): Query<Theme>) -> Result<String, SessionError> {
    visitor.insert("theme", &theme.name).await?;
    Ok(format!("theme set to {}\n", theme.name))
}

async fn add_to_cart(
    cart: Session<Cart>,
    Query(item): Query<Item>,
) -> Result<String, SessionError> {
    // Read-modify-write under the lock (the primary's), so concurrent adds
    // from two tabs both land.
    let cart = cart.lock().await?;
    let mut items = cart.get::<Vec<String>>("items").await?.unwrap_or_default();
    items.push(item.item);
    cart.insert("items", &items).await?;
    Ok(format!("{} item(s) in the cart\n", items.len()))
}

fn app(cart_store: Mirrored) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/theme", get(set_theme))
        .route("/cart/add", get(add_to_cart))
        .layer(SessionLayer::new(MemoryStore::new()))
        .layer(SessionLayer::new(cart_store).for_kind::<Cart>())
}

fn env(variable: &str) -> Result<String, String> {
    std::env::var(variable).map_err(|_| format!("{variable} must be set for this MIRROR"))
}

async fn redis() -> Result<RedisStore, Box<dyn std::error::Error>> {
    Ok(RedisStore::from_url(&env("REDIS_URL")?)?.with_prefix("multi-session:"))
}

async fn postgres() -> Result<PostgresStore, Box<dyn std::error::Error>> {
    let store = PostgresStore::new(PgPool::connect(&env("DATABASE_URL")?).await?)
        .with_table_name("cart_sessions_copy")?;
    store.migrate().await?;
    Ok(store)
}

/// The cart store for a `MIRROR` setting.
async fn cart_store(mirror: &str) -> Result<Mirrored, Box<dyn std::error::Error>> {
    let (primary, replica): (Arc<dyn LockingStore>, Option<Arc<dyn SessionStore>>) = match mirror {
        "memory" => (Arc::new(MemoryStore::new()), None),
        "memory+redis" => (Arc::new(MemoryStore::new()), Some(Arc::new(redis().await?))),
        "redis+postgres" => (Arc::new(redis().await?), Some(Arc::new(postgres().await?))),
        other => {
            return Err(format!(
                "MIRROR={other:?}: expected memory, memory+redis or redis+postgres"
            )
            .into());
        }
    };
    let mirrored = Mirrored::new(primary).on_replica_failure(ReplicaFailure::LogAndContinue);
    Ok(match replica {
        Some(replica) => mirrored.with_replica(replica),
        None => mirrored,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mirror = std::env::var("MIRROR").unwrap_or_else(|_| "memory".into());
    let cart = cart_store(&mirror).await?;
    let port = match std::env::var("PORT") {
        Ok(port) => port.parse().map_err(|e| format!("PORT={port:?} is not a port: {e}"))?,
        Err(_) => 3000,
    };
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let listener = tokio::net::TcpListener::bind(address).await?;
    println!("multi-session (cart on {mirror}) on http://{address}/");
    axum::serve(listener, app(cart))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http_body_util::BodyExt;
    use session_axum::core::{SessionId, Timestamp};
    use tower::ServiceExt;

    use super::*;

    async fn get(app: &Router, path: &str, cookies: &[String]) -> (String, Vec<String>) {
        let mut request = axum::http::Request::get(path);
        for cookie in cookies {
            request = request.header("cookie", cookie);
        }
        let response = app.clone().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let set: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .map(|value| value.to_str().unwrap().split(';').next().unwrap().to_owned())
            .collect();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (String::from_utf8(body.to_vec()).unwrap(), set)
    }

    #[tokio::test]
    async fn visitor_and_cart_sessions_are_independent() {
        let app = app(cart_store("memory").await.unwrap());
        let (_, visitor) = get(&app, "/theme?name=dark", &[]).await;
        let (_, cart) = get(&app, "/cart/add?item=tea", &[]).await;
        assert!(visitor[0].starts_with("id=") && cart[0].starts_with("cart="));
        let both = [visitor[0].clone(), cart[0].clone()];
        get(&app, "/cart/add?item=milk", &both).await;
        assert_eq!(get(&app, "/", &both).await.0, "theme: dark\ncart: tea, milk\n");
        assert_eq!(get(&app, "/", &visitor).await.0, "theme: dark\ncart: \n");
        assert_eq!(get(&app, "/", &cart).await.0, "theme: light\ncart: tea, milk\n");
    }

    /// Runs with the services `cargo xtask test` starts.
    #[tokio::test]
    async fn redis_primary_with_a_postgres_copy() {
        for variable in ["REDIS_URL", "DATABASE_URL"] {
            assert!(
                std::env::var(variable).is_ok(),
                "{variable} is not set: run `cargo xtask test`"
            );
        }
        let app = app(cart_store("redis+postgres").await.unwrap());
        let (_, cart) = get(&app, "/cart/add?item=tea", &[]).await;
        let id: SessionId = cart[0].strip_prefix("cart=").unwrap().parse().unwrap();
        let copy =
            postgres().await.unwrap().load(&id.storage_key(), Timestamp::now()).await.unwrap();
        let items = copy.unwrap().data.get::<Vec<String>>("items").unwrap();
        assert_eq!(items, Some(vec!["tea".to_owned()]), "the write reached the Postgres copy");
        let primary =
            redis().await.unwrap().load(&id.storage_key(), Timestamp::now()).await.unwrap();
        assert!(primary.is_some(), "and the Redis primary");
    }
}
