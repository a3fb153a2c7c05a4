//! Property tests of the event codec: whatever a command accepts can be read back.
//!
//! An event that is committed but cannot be decoded stops every view that folds it and
//! every order the saga must move past it (issue, point 3: an order totalling 10^12 was
//! accepted, then its `OrderPlaced` failed the `< 10^12` bound on the way back). So each
//! command is driven through `decide` with inputs at the edges of every value type —
//! the largest price, 99 units, a full stock, text at its longest in any script — and
//! every event it emits must come back equal through `encode` → JSON text → `decode`,
//! as must the state a snapshot stores.

use std::fmt::Debug;

use proptest::collection::vec;
use proptest::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::event_store::{decode, encode};
use crate::domain::cart::{Cart, CartCommand, ProductFacts};
use crate::domain::order::{Order, OrderCommand, OrderError, OrderLine, RejectedAt};
use crate::domain::payment::{Payment, PaymentCommand};
use crate::domain::product::{Product, ProductCommand, ProductStatus};
use crate::domain::values::{
    Comment, Description, MAX_STOCK, Money, PaymentToken, ProductName, Quantity, Rating, Reason,
    ReviewTitle, ShippingAddress, Sku, StockDelta, StockLevel, UserId,
};
use crate::domain::{Aggregate, DomainEvent};
use crate::log::upcast::current_version;

/// Encodes, stores as JSON text (what both databases keep), reads back and decodes.
fn read_back<E: DomainEvent + PartialEq + Debug>(event: &E) -> Result<(), TestCaseError> {
    let (event_type, data) = encode(event).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert!(
        E::TYPES.contains(&event_type.as_str()),
        "{event_type} is declared in its enum's TYPES"
    );
    let text = serde_json::to_string(&data).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let stored: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: E = decode(&event_type, current_version(&event_type), &stored)
        .map_err(|e| TestCaseError::fail(format!("{event_type} does not decode: {e}")))?;
    prop_assert_eq!(&back, event);
    Ok(())
}

/// Every emitted event reads back, and so does the state folded from them (a snapshot).
fn all_read_back<A>(state: A, events: &[A::Event]) -> Result<A, TestCaseError>
where
    A: Aggregate + PartialEq + Debug,
    A::Event: PartialEq + Debug,
{
    for event in events {
        read_back(event)?;
    }
    let state = events.iter().fold(state, |s, e| s.apply(e));
    snapshot_reads_back(&state)?;
    Ok(state)
}

fn snapshot_reads_back<A: Serialize + DeserializeOwned + PartialEq + Debug>(
    state: &A,
) -> Result<(), TestCaseError> {
    let json = serde_json::to_value(state).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: A = serde_json::from_value(json)
        .map_err(|e| TestCaseError::fail(format!("the snapshot does not decode: {e}")))?;
    prop_assert_eq!(&back, state);
    Ok(())
}

/// Integers at both ends of `lo..=hi`, and anywhere between.
fn edges(lo: i64, hi: i64) -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(lo),
        Just(lo.saturating_add(1).min(hi)),
        Just(hi.saturating_sub(1).max(lo)),
        Just(hi),
        lo..=hi,
    ]
}

/// Any amount an input may carry, through the same parser as the API's `Decimal`.
fn money() -> impl Strategy<Value = Money> {
    edges(0, Money::MAX_CENTS).prop_map(|cents| {
        Money::parse_str("p", &format!("{}.{:02}", cents / 100, cents % 100))
            .expect("cents within the bound parse")
    })
}

/// Characters text inputs accept: anything printable, in any script, and the two
/// control characters allowed (newline, tab), with JSON's special characters favoured.
fn text_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => any::<char>().prop_filter("printable", |c| !c.is_control()),
        1 => prop_oneof![
            Just('\n'),
            Just('\t'),
            Just('"'),
            Just('\\'),
            Just('\u{2028}'),
            Just('\u{FEFF}'),
            Just('\u{10FFFF}'),
            Just('😀'),
        ],
    ]
}

/// Text of `min..=max` characters, often exactly `max` (the edge) and exactly `min`.
fn text(min: usize, max: usize) -> impl Strategy<Value = String> {
    prop_oneof![
        vec(text_char(), max..=max),
        vec(text_char(), min..=min),
        vec(text_char(), min..=max.min(min + 64)),
    ]
    .prop_map(|chars| chars.into_iter().collect())
}

macro_rules! accepted_text {
    ($name:ident, $ty:ty, $min:expr) => {
        fn $name() -> impl Strategy<Value = $ty> {
            // Trimming may shorten it, and blank text is refused where it must not be
            // empty: keep only what the parser accepts, as the API would.
            text($min, <$ty>::MAX_CHARS)
                .prop_filter_map("accepted by the parser", |s| <$ty>::parse(&s).ok())
        }
    };
}

accepted_text!(product_name, ProductName, 1);
accepted_text!(description, Description, 0);
accepted_text!(comment, Comment, 0);
accepted_text!(review_title, ReviewTitle, 0);
accepted_text!(reason, Reason, 0);
accepted_text!(shipping_address, ShippingAddress, 1);
accepted_text!(payment_token, PaymentToken, 1);

fn sku() -> impl Strategy<Value = Sku> {
    "[A-Za-z0-9._-]{1,64}".prop_filter_map("a SKU", |s| Sku::parse(&s).ok())
}

fn user_id() -> impl Strategy<Value = UserId> {
    // At most 128 bytes: up to 32 characters of any width.
    vec(
        any::<char>().prop_filter("printable", |c| !c.is_control()),
        1..=32,
    )
    .prop_map(|chars| chars.into_iter().collect::<String>())
    .prop_filter_map("a user id", |s| UserId::parse(&s).ok())
}

fn quantity() -> impl Strategy<Value = Quantity> {
    edges(1, i64::from(Quantity::MAX)).prop_map(|q| Quantity::parse(q).expect("in range"))
}

fn stock() -> impl Strategy<Value = StockLevel> {
    edges(0, MAX_STOCK).prop_map(|s| StockLevel::parse(s).expect("in range"))
}

fn delta() -> impl Strategy<Value = StockDelta> {
    prop_oneof![edges(-MAX_STOCK, -1), edges(1, MAX_STOCK)]
        .prop_map(|d| StockDelta::parse(d).expect("in range"))
}

fn rating() -> impl Strategy<Value = Rating> {
    (1i64..=5).prop_map(|r| Rating::parse(r).expect("in range"))
}

fn uuid() -> impl Strategy<Value = Uuid> {
    any::<u128>().prop_map(Uuid::from_u128)
}

/// Free text the saga records (a decline reason, a charge id): whatever a gateway says.
fn free_text() -> impl Strategy<Value = String> {
    text(0, 300)
}

fn order_line() -> impl Strategy<Value = OrderLine> {
    (uuid(), sku(), product_name(), money(), quantity()).prop_map(
        |(product_id, sku, name, unit_price, quantity)| OrderLine {
            product_id,
            sku,
            name,
            unit_price,
            quantity: quantity.get(),
        },
    )
}

fn placement() -> impl Strategy<Value = OrderCommand> {
    (
        user_id(),
        vec(order_line(), 1..=4),
        shipping_address(),
        payment_token(),
    )
        .prop_map(
            |(user_id, lines, shipping_address, payment_token)| OrderCommand::Place {
                user_id,
                lines,
                shipping_address,
                payment_token,
            },
        )
}

fn decided<A: Aggregate>(state: &A, command: A::Command) -> Vec<A::Event> {
    // A refused command writes nothing, so it has nothing to read back.
    state.decide(command).unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_product_event_a_command_can_emit_reads_back(
        (sku, name, description, price, initial) in (sku(), product_name(), description(), money(), stock()),
        (new_name, new_description, new_price) in (product_name(), description(), money()),
        (adjust, adjust_reason) in (delta(), proptest::option::of(reason())),
        (reviewer, stars, title, text) in (user_id(), rating(), review_title(), comment()),
        (order_id, held) in (uuid(), edges(1, 99)),
    ) {
        let product = all_read_back(Product::default(), &decided(&Product::default(), ProductCommand::Create {
            sku, name, description, price, initial_stock: initial,
        }))?;
        let product = all_read_back(product.clone(), &decided(&product, ProductCommand::Update {
            name: Some(new_name), description: Some(new_description), price: Some(new_price),
        }))?;
        let product = all_read_back(product.clone(), &decided(&product, ProductCommand::AdjustStock {
            delta: adjust, reason: adjust_reason,
        }))?;
        let product = all_read_back(product.clone(), &decided(&product, ProductCommand::Review {
            user_id: reviewer, rating: stars, title, comment: text,
        }))?;
        let product = all_read_back(product.clone(), &decided(&product, ProductCommand::Reserve {
            order_id, quantity: held,
        }))?;
        let product = all_read_back(product.clone(), &decided(&product, ProductCommand::Release {
            order_id,
        }))?;
        let events = decided(&product, ProductCommand::Discontinue);
        all_read_back(product, &events)?;
    }

    #[test]
    fn every_cart_event_a_command_can_emit_reads_back(
        user in user_id(),
        product_id in uuid(),
        (first, second) in (quantity(), quantity()),
    ) {
        let facts = ProductFacts::Known { status: ProductStatus::Active, stock: MAX_STOCK };
        let cart = all_read_back(Cart::default(), &decided(&Cart::default(), CartCommand::AddItem {
            user_id: user.clone(), product_id, product: facts, quantity: first,
        }))?;
        let cart = all_read_back(cart.clone(), &decided(&cart, CartCommand::SetQuantity {
            user_id: user.clone(), product_id, product: facts, quantity: Some(second),
        }))?;
        let cart = all_read_back(cart.clone(), &decided(&cart, CartCommand::RemoveItem {
            user_id: user.clone(), product_id,
        }))?;
        let cart = all_read_back(cart.clone(), &decided(&cart, CartCommand::AddItem {
            user_id: user.clone(), product_id, product: facts, quantity: first,
        }))?;
        let events = decided(&cart, CartCommand::Clear { user_id: user });
        all_read_back(cart, &events)?;
    }

    /// The property of issue point 3: an order is placed only if its total reads back.
    #[test]
    fn every_order_and_payment_event_a_command_can_emit_reads_back(
        place in placement(),
        (canceller, cancel_reason, reject_reason) in (user_id(), proptest::option::of(reason()), free_text()),
        (charge_id, refund_id, decline) in (free_text(), free_text(), free_text()),
    ) {
        let OrderCommand::Place { lines, .. } = &place else { unreachable!() };
        let sum: i128 = lines
            .iter()
            .map(|l| i128::from(l.unit_price.cents()) * i128::from(l.quantity))
            .sum();
        let placed = match Order::default().decide(place) {
            Ok(events) => events,
            Err(e) => {
                // Refused only when the total is out of range, and then nothing is written.
                prop_assert!(sum > i128::from(Money::MAX_CENTS), "refused: {e}");
                prop_assert_eq!(e, OrderError::TotalTooLarge { max: Money::MAX });
                return Ok(());
            }
        };
        let order = all_read_back(Order::default(), &placed)?;
        prop_assert!(sum <= i128::from(Money::MAX_CENTS), "placed above the bound");
        prop_assert_eq!(i128::from(order.total.cents()), sum);
        let order_id = Uuid::from_u128(7);

        // Paid, then cancelled and refunded.
        let reserved = all_read_back(order.clone(), &decided(&order, OrderCommand::MarkReserved))?;
        let payment = all_read_back(Payment::default(), &decided(&Payment::default(), PaymentCommand::RecordCharge {
            order_id, amount: reserved.total, charge_id,
        }))?;
        let confirmed = all_read_back(reserved.clone(), &decided(&reserved, OrderCommand::Confirm))?;
        let cancelled = all_read_back(confirmed.clone(), &decided(&confirmed, OrderCommand::Cancel {
            by: canceller, as_admin: true, reason: cancel_reason,
        }))?;
        let released = all_read_back(cancelled.clone(), &decided(&cancelled, OrderCommand::MarkReleased))?;
        all_read_back(payment.clone(), &decided(&payment, PaymentCommand::RecordRefund { refund_id }))?;
        prop_assert_eq!(released.reservation, crate::domain::order::Reservation::Released);

        // Shipped and delivered.
        let shipped = all_read_back(confirmed.clone(), &decided(&confirmed, OrderCommand::Ship))?;
        all_read_back(shipped.clone(), &decided(&shipped, OrderCommand::Deliver))?;

        // Declined and rejected.
        all_read_back(Payment::default(), &decided(&Payment::default(), PaymentCommand::RecordDecline {
            order_id, amount: reserved.total, reason: decline,
        }))?;
        all_read_back(reserved.clone(), &decided(&reserved, OrderCommand::Reject {
            at: RejectedAt::Payment, reason: reject_reason,
        }))?;
    }
}

#[test]
fn text_at_its_longest_in_four_byte_characters_reads_back() {
    let longest = |n: usize| "😀".repeat(n);
    let description = Description::parse(&longest(Description::MAX_CHARS)).expect("accepted");
    let event = crate::domain::product::ProductEvent::Created {
        sku: Sku::parse(&"S".repeat(Sku::MAX_CHARS)).expect("accepted"),
        name: ProductName::parse(&longest(ProductName::MAX_CHARS)).expect("accepted"),
        description,
        price: Money::MAX,
        stock: MAX_STOCK,
    };
    proptest::test_runner::TestRunner::default()
        .run(&Just(event), |e| read_back(&e))
        .expect("the longest product reads back");
}
