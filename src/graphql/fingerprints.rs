//! Golden fingerprints: the idempotency hash of every command mutation's request, and the
//! stream a keyed create lands on, as `main` computed them before requests were parsed
//! straight into commands (with one field-copy struct per request). A key recorded by an
//! older release must still match its retry after an upgrade, and must still be refused
//! with another input: were a hash to drift, a retry would get IDEMPOTENCY_KEY_REUSED
//! instead of its first answer. Change a value here only with a migration of the recorded
//! keys.

use uuid::Uuid;

use super::cart::{CartItemInput, clear, remove_item};
use super::catalog::{
    AdjustStockInput, CreateProductInput, ReviewProductInput, UpdateProductInput, discontinue,
};
use super::orders::{CheckoutInput, cancel, deliver, ship};
use super::scalars::Decimal;
use crate::auth::{Caller, Role};
use crate::domain::values::{IdempotencyKey, Money, UserId};
use crate::write::{Command, CommandContext};

const PRODUCT: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
const ORDER: Uuid = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002);

fn alice() -> CommandContext {
    let key = IdempotencyKey::parse("key-1").unwrap();
    CommandContext::client(UserId::parse("alice").unwrap(), Some(key))
}

fn customer() -> Caller {
    Caller {
        user_id: UserId::parse("alice").unwrap(),
        role: Role::Customer,
        expires_at: 0,
    }
}

fn price(raw: &str) -> Decimal {
    Decimal(Money::parse_str("price", raw).unwrap())
}

fn create(sku: &str, description: Option<&str>, price: Decimal, stock: i64) -> CreateProductInput {
    CreateProductInput {
        sku: sku.into(),
        name: "Tee".into(),
        description: description.map(Into::into),
        price,
        initial_stock: stock,
        idempotency_key: Some("key-1".into()),
    }
}

fn cart_item(quantity: i64) -> CartItemInput {
    CartItemInput {
        product_id: PRODUCT,
        quantity,
        idempotency_key: None,
    }
}

/// The operation and the fingerprint of a command.
fn fingerprint(command: impl Command) -> (&'static str, String) {
    (command.operation(), command.request_hash())
}

#[test]
fn every_command_mutations_request_is_fingerprinted_as_before() {
    let cx = alice();
    let update = |name: Option<&str>, description: Option<&str>, price| UpdateProductInput {
        id: PRODUCT,
        name: name.map(Into::into),
        description: description.map(Into::into),
        price,
        idempotency_key: None,
    };
    let adjust = |delta, reason: Option<&str>, expected_version| AdjustStockInput {
        product_id: PRODUCT,
        delta,
        reason: reason.map(Into::into),
        expected_version,
        idempotency_key: None,
    };
    let review = ReviewProductInput {
        product_id: PRODUCT,
        rating: 4,
        title: Some("Good".into()),
        comment: Some("Fits well".into()),
        idempotency_key: None,
    };
    let checkout = CheckoutInput {
        payment_token: "tok_visa".into(),
        shipping_address: "1 Main St".into(),
        idempotency_key: Some("key-1".into()),
    };
    let tee = create("TEE-1", Some("Soft \"cotton\" tee"), price("12.50"), 3);
    let reason = Some("changed my mind".to_owned());
    let cases = [
        (
            fingerprint(tee.into_command(&cx).unwrap()),
            "createProduct",
            "e52170daf895561070a09924d998294b2a52c5baa026856171af2bdfcc1be75c",
        ),
        (
            fingerprint(
                create("TEE-2", None, price("1"), 0)
                    .into_command(&cx)
                    .unwrap(),
            ),
            "createProduct",
            "e31c4a1b21ace213f2e596a5f4a59b202db80e397e89e6e057f7881f922e06ad",
        ),
        (
            fingerprint(
                update(Some("Tee 2"), None, Some(price("9.99")))
                    .into_command()
                    .unwrap(),
            ),
            "updateProduct",
            "ced97869ad88257af80d7dea33bec621002eb07273d0c47cd6e3112ce5d0d665",
        ),
        (
            fingerprint(update(None, Some("New"), None).into_command().unwrap()),
            "updateProduct",
            "d93c627bbf865561bb13a8cc1b0a3e494aa6293d2a954854bdc7689c0e806cfd",
        ),
        (
            fingerprint(adjust(-2, Some("damaged"), Some(4)).into_command().unwrap()),
            "adjustStock",
            "ff41b960b6f03b04c1febf3469f8f80fd540de304ef30a50e74473813e0ca88a",
        ),
        (
            fingerprint(adjust(5, None, None).into_command().unwrap()),
            "adjustStock",
            "96aeffe061669201ffcd8ab0ece0ccde25da3334caa6f03030257a91776552d7",
        ),
        (
            fingerprint(discontinue(PRODUCT)),
            "discontinueProduct",
            "4fbf62308baf313c0f2ed16e8d3b278908c799993a37fb0cb9ebf266c5146498",
        ),
        (
            fingerprint(review.into_command(&cx).unwrap()),
            "reviewProduct",
            "3f889d51474febe2eb6c3efc966e19fd4588cc60bdbaf8609dd39eef5a538ce6",
        ),
        (
            fingerprint(cart_item(3).into_add(&cx).unwrap()),
            "addToCart",
            "35e218b3527660637dc4fe8fbe94bd518cf11e3be488a77d6701fd6b2510f232",
        ),
        (
            fingerprint(cart_item(3).into_set(&cx).unwrap()),
            "setCartItemQuantity",
            "35e218b3527660637dc4fe8fbe94bd518cf11e3be488a77d6701fd6b2510f232",
        ),
        (
            fingerprint(cart_item(0).into_set(&cx).unwrap()),
            "setCartItemQuantity",
            "76b4c97d13c40bee3643b880699b697ccceb9dd19961c8b91ae657eeeffdc11c",
        ),
        (
            fingerprint(remove_item(&cx, PRODUCT)),
            "removeFromCart",
            "4fbf62308baf313c0f2ed16e8d3b278908c799993a37fb0cb9ebf266c5146498",
        ),
        (
            fingerprint(clear(&cx)),
            "clearCart",
            "74234e98afe7498fb5daf1f36ac2d78acc339464f950703b8c019892f982b90b",
        ),
        (
            fingerprint(checkout.into_command(&cx).unwrap()),
            "checkout",
            "68d43fb800a6187cf3e5bb10da89267adf7721035db66916975467f147f66f9f",
        ),
        (
            fingerprint(cancel(&customer(), &cx, ORDER, reason).unwrap()),
            "cancelOrder",
            "2c957ffc26f3fcfccb2aef329facddfa2230fd2c5a7df5a568884fdf413e94d2",
        ),
        (
            fingerprint(cancel(&customer(), &cx, ORDER, None).unwrap()),
            "cancelOrder",
            "66a5e5e6b7378f0af20fda4252be710e2d561a75cccb9c6c0aa02c6faf454f9e",
        ),
        (
            fingerprint(ship(ORDER)),
            "shipOrder",
            "789dfee655a33417b306ce4686a2aa255989a76c8820ba1daaeb063b24c341e7",
        ),
        (
            fingerprint(deliver(ORDER)),
            "deliverOrder",
            "789dfee655a33417b306ce4686a2aa255989a76c8820ba1daaeb063b24c341e7",
        ),
    ];
    for ((operation, hash), expected_operation, expected_hash) in cases {
        assert_eq!(
            (operation, hash.as_str()),
            (expected_operation, expected_hash),
            "the fingerprint of {expected_operation} drifted"
        );
    }
}

#[test]
fn a_keyed_create_lands_on_the_stream_it_landed_on_before() {
    let cx = alice();
    let product = create("TEE-1", None, price("1"), 0)
        .into_command(&cx)
        .unwrap();
    assert_eq!(
        product.stream_id.to_string(),
        "7d9ae87a-f15c-5edc-89d7-3ddd1173bace"
    );
    let checkout = CheckoutInput {
        payment_token: "tok_visa".into(),
        shipping_address: "1 Main St".into(),
        idempotency_key: Some("key-1".into()),
    };
    let order = checkout.into_command(&cx).unwrap();
    assert_eq!(
        order.order_id.to_string(),
        "399fa880-fb2b-5b4a-bfc9-99e3b3974fdf"
    );
}
