//! Several session kinds side by side, each with its own layer, cookie and store.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test helpers outside #[test] functions.

mod common;

use axum::Router;
use axum::routing::get;
use session_axum::memory::MemoryStore;
use session_axum::{Session, SessionConfig, SessionError, SessionKind, SessionLayer};

struct Cart;

impl SessionKind for Cart {
    const NAME: &'static str = "cart";
}

fn app(visitor_store: MemoryStore, cart_store: MemoryStore) -> Router {
    Router::new()
        .route(
            "/set",
            get(|visitor: Session, cart: Session<Cart>| async move {
                visitor.insert("who", "visitor").await?;
                cart.insert("who", "cart").await?;
                Ok::<_, SessionError>("set")
            }),
        )
        .route(
            "/get",
            get(|visitor: Session, cart: Session<Cart>| async move {
                let visitor: Option<String> = visitor.get("who").await?;
                let cart: Option<String> = cart.get("who").await?;
                Ok::<_, SessionError>(format!(
                    "{}/{}",
                    visitor.as_deref().unwrap_or("-"),
                    cart.as_deref().unwrap_or("-")
                ))
            }),
        )
        .layer(SessionLayer::new(visitor_store))
        .layer(SessionLayer::new(cart_store).for_kind::<Cart>())
}

fn cookies(reply: &common::Reply) -> Vec<String> {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|value| value.to_str().unwrap().split(';').next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn two_kinds_keep_separate_cookies_data_and_stores() {
    let (visitor_store, cart_store) = (MemoryStore::new(), MemoryStore::new());
    let app = app(visitor_store.clone(), cart_store.clone());
    let reply = common::send(&app, "/set", &[]).await;
    let set = cookies(&reply);
    assert_eq!(set.len(), 2, "{set:?}");
    let visitor = set.iter().find(|c| c.starts_with("id=")).unwrap().clone();
    let cart = set.iter().find(|c| c.starts_with("cart=")).unwrap().clone();
    assert_eq!((visitor_store.len(), cart_store.len()), (1, 1));

    assert_eq!(common::send(&app, "/get", &[&visitor, &cart]).await.body, "visitor/cart");
    assert_eq!(common::send(&app, "/get", &[&visitor]).await.body, "visitor/-");
    assert_eq!(common::send(&app, "/get", &[&cart]).await.body, "-/cart");

    // Neither session can be read through the other's cookie: the cart's id
    // under the visitor's cookie name is unknown to the visitor store.
    let cart_as_visitor = format!("id={}", cart.strip_prefix("cart=").unwrap());
    let visitor_as_cart = format!("cart={}", visitor.strip_prefix("id=").unwrap());
    assert_eq!(common::send(&app, "/get", &[&cart_as_visitor, &visitor_as_cart]).await.body, "-/-");
}

#[tokio::test]
async fn an_explicit_cookie_name_wins_over_the_kind_name() {
    let layer = SessionLayer::new(MemoryStore::new())
        .for_kind::<Cart>()
        .with_config(SessionConfig::default().with_cookie_name("basket").with_host_prefix())
        .expect("a valid session config");
    assert_eq!(layer.config().cookie_name(), "__Host-basket");
    let layer = SessionLayer::new(MemoryStore::new())
        .for_kind::<Cart>()
        .with_config(SessionConfig::default().with_host_prefix())
        .expect("a valid session config");
    assert_eq!(layer.config().cookie_name(), "__Host-cart");
}

#[tokio::test]
async fn a_missing_kind_layer_is_named_in_the_500() {
    let app = Router::new()
        .route("/", get(|_: Session<Cart>| async { "unreachable" }))
        .layer(SessionLayer::new(MemoryStore::new()));
    let reply = common::send(&app, "/", &[]).await;
    assert_eq!(reply.status, 500);
    assert!(reply.body.contains("`cart`"), "{}", reply.body);
}
