//! Model-based property test of the cart: a random sequence of cart commands over three
//! products leaves the `cart` view equal to a fold of the same commands over a plain map,
//! and each command succeeds or fails exactly when the model says it should.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};
use serde_json::Value;

use crate::helpers::*;

/// The catalog the commands run against: (sku, price in cents, price as sent, stock).
/// Stocks are chosen so that each limit is reached on its own: the first two products run
/// out of stock before 99 units, the third reaches the 99-per-line limit first.
const PRODUCTS: [(&str, i64, &str, i64); 3] = [
    ("A-1", 250, "2.50", 10),
    ("B-1", 1999, "19.99", 30),
    ("C-1", 5, "0.05", 200),
];

const MAX_PER_LINE: i64 = 99;

#[derive(Clone, Debug)]
enum Command {
    Add(usize, i64),
    Set(usize, i64),
    Remove(usize),
    Clear,
}

/// Mostly small quantities, sometimes large enough to hit the stock or the per-line limit.
fn quantity() -> impl Strategy<Value = i64> {
    prop_oneof![3 => 1..=6i64, 1 => 7..=45i64]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        4 => (0..3usize, quantity()).prop_map(|(p, q)| Command::Add(p, q)),
        1 => (0..3usize).prop_map(|p| Command::Set(p, 0)),
        2 => (0..3usize, quantity()).prop_map(|(p, q)| Command::Set(p, q)),
        1 => (0..3usize).prop_map(Command::Remove),
        1 => Just(Command::Clear),
    ]
}

/// What the model expects a command to do.
enum Expected {
    /// The command succeeds and the cart becomes this.
    Ok(BTreeMap<usize, i64>),
    /// The command fails with one of these codes and the cart stays as it was.
    Err(&'static [&'static str]),
    /// The contract leaves it open (setting a valid quantity on a line that is not in the
    /// cart): either it fails with NOT_FOUND, or it succeeds and the cart becomes this.
    Either(BTreeMap<usize, i64>),
}

/// Checks a new line quantity against the per-line limit and the product's stock.
fn limit(product: usize, quantity: i64) -> Option<&'static [&'static str]> {
    if quantity > MAX_PER_LINE {
        Some(&["BAD_USER_INPUT"])
    } else if quantity > PRODUCTS[product].3 {
        Some(&["INSUFFICIENT_STOCK"])
    } else {
        None
    }
}

fn expect(model: &BTreeMap<usize, i64>, command: &Command) -> Expected {
    let mut next = model.clone();
    match *command {
        Command::Add(p, q) => {
            let quantity = model.get(&p).copied().unwrap_or(0) + q;
            if let Some(codes) = limit(p, quantity) {
                return Expected::Err(codes);
            }
            next.insert(p, quantity);
            Expected::Ok(next)
        }
        Command::Set(p, q) => {
            if q == 0 {
                next.remove(&p);
            } else {
                next.insert(p, q);
            }
            match (model.contains_key(&p), limit(p, q)) {
                (true, Some(codes)) => Expected::Err(codes),
                (true, None) => Expected::Ok(next),
                // Over a limit it fails either way; which check comes first is open.
                (false, Some(&[code])) => Expected::Err(match code {
                    "BAD_USER_INPUT" => &["NOT_FOUND", "BAD_USER_INPUT"],
                    _ => &["NOT_FOUND", "INSUFFICIENT_STOCK"],
                }),
                (false, Some(codes)) => Expected::Err(codes),
                (false, None) => Expected::Either(next),
            }
        }
        Command::Remove(p) => {
            if next.remove(&p).is_none() {
                return Expected::Err(&["NOT_FOUND"]);
            }
            Expected::Ok(next)
        }
        Command::Clear => Expected::Ok(BTreeMap::new()),
    }
}

/// Asserts a cart view shows exactly `model`, with counts and money that follow from it.
fn check_cart(
    cart: &Value,
    model: &BTreeMap<usize, i64>,
    ids: &[String],
) -> Result<(), TestCaseError> {
    let items = cart["items"]
        .as_array()
        .ok_or_else(|| TestCaseError::fail(format!("cart.items is a list: {cart:#}")))?;
    let mut seen = BTreeMap::new();
    for line in items {
        let p = ids
            .iter()
            .position(|id| line["productId"] == id.as_str())
            .ok_or_else(|| {
                TestCaseError::fail(format!("a line for an unknown product: {cart:#}"))
            })?;
        let quantity = line["quantity"].as_i64().unwrap_or(-1);
        prop_assert!(
            seen.insert(p, quantity).is_none(),
            "one line per product: {cart:#}"
        );
        prop_assert_eq!(&line["unitPrice"], PRODUCTS[p].2, "{:#}", cart);
        prop_assert_eq!(
            &line["lineTotal"],
            &money(PRODUCTS[p].1 * quantity),
            "{:#}",
            cart
        );
    }
    prop_assert_eq!(&seen, model, "the cart view equals the model: {:#}", cart);
    let count: i64 = model.values().sum();
    let total: i64 = model.iter().map(|(p, q)| PRODUCTS[*p].1 * q).sum();
    prop_assert_eq!(cart["itemCount"].as_i64(), Some(count), "{:#}", cart);
    prop_assert_eq!(&cart["total"], &money(total), "{:#}", cart);
    Ok(())
}

/// Cents as a Decimal string with 2 places.
fn money(cents: i64) -> Value {
    Value::String(format!("{}.{:02}", cents / 100, cents % 100))
}

async fn run(commands: Vec<Command>) -> Result<(), TestCaseError> {
    let app = spawn_app().await;
    let admin = app.as_admin();
    let mut ids = Vec::new();
    for (sku, _, price, stock) in PRODUCTS {
        let product = admin.create_product(sku, price, stock).await;
        ids.push(str_of(&product["id"]).to_string());
    }
    let alice = app.as_user("alice");
    let mut model = BTreeMap::new();

    for command in &commands {
        let (resp, field) = match *command {
            Command::Add(p, q) => (alice.add_to_cart(&ids[p], q).await, "addToCart"),
            Command::Set(p, q) => (alice.set_quantity(&ids[p], q).await, "setCartItemQuantity"),
            Command::Remove(p) => (alice.remove_from_cart(&ids[p]).await, "removeFromCart"),
            Command::Clear => (alice.clear_cart().await, "clearCart"),
        };
        let code = error_code(&resp);
        match (expect(&model, command), code.as_deref()) {
            (Expected::Ok(next) | Expected::Either(next), None) => {
                check_cart(&resp["data"][field]["cart"], &next, &ids)?;
                model = next;
            }
            (Expected::Err(allowed), Some(actual)) => {
                prop_assert!(allowed.contains(&actual), "{:?}: {:#}", command, resp);
            }
            (Expected::Either(_), Some(actual)) => {
                prop_assert_eq!(actual, "NOT_FOUND", "{:?}: {:#}", command, resp);
            }
            (_, outcome) => {
                return Err(TestCaseError::fail(format!(
                    "{command:?} on {model:?} answered {outcome:?}: {resp:#}"
                )));
            }
        }
    }

    let view = alice.cart().await;
    check_cart(&view, &model, &ids)?;
    check_view_is_fold_of_events(&app, &view).await
}

/// The cart view equals the fold of the cart stream's stored events through the
/// aggregate's own `apply`: the projection adds nothing and loses nothing.
async fn check_view_is_fold_of_events(app: &TestApp, view: &Value) -> Result<(), TestCaseError> {
    use ordergraph::domain::Aggregate;
    use ordergraph::domain::cart::{Cart, CartEvent};
    use ordergraph::domain::values::UserId;
    use ordergraph::write::event_store;

    let db = sea_orm::Database::connect(app.database_url())
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let alice = UserId::parse("alice").map_err(|e| TestCaseError::fail(e.to_string()))?;
    let rows = event_store::load_stream(&db, ordergraph::write::cart::cart_stream_id(&alice))
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let mut folded = Cart::default();
    for row in &rows {
        let event: CartEvent = event_store::decode(&row.event_type, row.event_version, &row.data)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        folded = folded.apply(&event);
    }
    let from_events: BTreeMap<String, i64> = folded
        .lines
        .iter()
        .map(|(id, q)| (id.to_string(), i64::from(*q)))
        .collect();
    let from_view: BTreeMap<String, i64> = view["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            (
                str_of(&l["productId"]).to_string(),
                l["quantity"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    prop_assert_eq!(
        from_view,
        from_events,
        "the cart view is the fold of its events"
    );
    prop_assert_eq!(
        str_of(&view["position"]),
        rows.last()
            .map_or("0".to_string(), |r| r.position.to_string())
    );
    Ok(())
}

proptest! {
    #![proptest_config(Config {
        cases: 16,
        max_shrink_iters: 64,
        // A failing case prints its commands; no regression files in the source tree.
        failure_persistence: None,
        ..Config::default()
    })]

    #[test]
    fn a_random_sequence_of_cart_commands_leaves_the_cart_equal_to_the_model(
        commands in proptest::collection::vec(command(), 1..24)
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        runtime.block_on(run(commands))?;
    }
}
