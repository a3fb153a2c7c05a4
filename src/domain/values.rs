//! Validated value types: every input crosses the boundary as one of these, built by a
//! constructor that returns `Result` (parse, don't validate).

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why an input value was refused; reaches clients as BAD_USER_INPUT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: &'static str,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// Whether `text` holds a control character that no text of the shop may hold (tabs
/// and newlines may).
pub fn has_control_characters(text: &str) -> bool {
    text.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
}

fn bounded_text(
    field: &'static str,
    raw: &str,
    min: usize,
    max: usize,
) -> Result<String, ValidationError> {
    let trimmed = raw.trim();
    let len = trimmed.chars().count();
    if len < min {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if len > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    if has_control_characters(trimmed) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(trimmed.to_owned())
}

macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident, $field:literal, $min:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub const MAX_CHARS: usize = $max;

            pub fn parse(raw: &str) -> Result<Self, ValidationError> {
                bounded_text($field, raw, $min, $max).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_newtype!(
    /// A product's display name: 1 to 200 characters, trimmed.
    ProductName, "name", 1, 200
);
text_newtype!(
    /// A product's description: up to 5000 characters, trimmed (may be empty).
    Description, "description", 0, 5000
);
text_newtype!(
    /// A review's free text: up to 2000 characters (may be empty).
    Comment, "comment", 0, 2000
);
text_newtype!(
    /// A review's headline: up to 120 characters (may be empty).
    ReviewTitle, "title", 0, 120
);
text_newtype!(
    /// Why stock was adjusted or an order cancelled: up to 500 characters (may be empty).
    Reason, "reason", 0, 500
);
text_newtype!(
    /// Where an order ships to: 1 to 500 characters, not blank.
    ShippingAddress, "shippingAddress", 1, 500
);
text_newtype!(
    /// A payment method token from the payment provider (e.g. `tok_visa`).
    PaymentToken, "paymentToken", 1, 128
);

/// Stock keeping unit: 1 to 64 characters of `A-Z a-z 0-9 - _ .`, unique in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sku(String);

impl Sku {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(ValidationError::new("sku", "must not be empty"));
        }
        if s.len() > Self::MAX_CHARS {
            return Err(ValidationError::new(
                "sku",
                format!("must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(ValidationError::new(
                "sku",
                "may contain only letters, digits, '-', '_' and '.'",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An amount of money: exact, non-negative, at most 2 decimal places. Always rendered with
/// exactly 2 places ("19.90"). Never a float.
///
/// Two bounds, on purpose. An *input* (a price, an order's total) is at most
/// [`Money::MAX`], 999 999 999 999.99: `parse_str`, `from_decimal` and `checked_input`
/// refuse more. A *stored* amount (an event, a snapshot) is read back up to what its cents
/// can hold in the tables' `BIGINT`: a fact already in the log is never refused by a later,
/// stricter rule, or one event could stop every view and the saga for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(Decimal);

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// Cents of the largest amount an input may carry: 999 999 999 999.99.
    pub const MAX_CENTS: i64 = 99_999_999_999_999;

    /// The largest amount an input may carry: 999 999 999 999.99.
    pub const MAX: Money = Money(Decimal::from_parts(0x107A_3FFF, 0x5AF3, 0, false, 2));

    pub fn parse_str(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
        Self::from_decimal(field, Self::parse_plain(field, raw)?)
    }

    /// Plain notation only ("19.99", "-1", "5."): no exponents, no thousands separators.
    fn parse_plain(field: &'static str, raw: &str) -> Result<Decimal, ValidationError> {
        let trimmed = raw.trim();
        let digits = trimmed.strip_prefix('-').unwrap_or(trimmed);
        let plain = !digits.is_empty()
            && digits.len() <= 32
            && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
            && digits.chars().filter(|c| *c == '.').count() <= 1
            && digits.chars().any(|c| c.is_ascii_digit());
        plain
            .then(|| trimmed.parse().ok())
            .flatten()
            .ok_or_else(|| ValidationError::new(field, format!("'{raw}' is not a decimal number")))
    }

    /// An input amount: non-negative, at most 2 places, at most [`Money::MAX`].
    pub fn from_decimal(field: &'static str, d: Decimal) -> Result<Self, ValidationError> {
        let money = Self::from_stored_decimal(field, d)?;
        if money > Self::MAX {
            return Err(ValidationError::new(
                field,
                format!("is too large: at most {}", Self::MAX),
            ));
        }
        Ok(money)
    }

    /// A stored amount: non-negative, at most 2 places, cents within `i64`.
    fn from_stored_decimal(field: &'static str, d: Decimal) -> Result<Self, ValidationError> {
        if d.is_sign_negative() && !d.is_zero() {
            return Err(ValidationError::new(field, "must not be negative"));
        }
        if d.normalize().scale() > 2 {
            return Err(ValidationError::new(
                field,
                "must have at most 2 decimal places",
            ));
        }
        let mut d = d.normalize();
        d.rescale(2);
        if i64::try_from(d.mantissa()).is_err() {
            return Err(ValidationError::new(field, "is too large"));
        }
        Ok(Self(d))
    }

    /// An amount computed from inputs (a sum of lines), held to the input bound:
    /// `None` when it is negative or above [`Money::MAX`]. Wide, so no sum overflows first.
    pub fn checked_input(cents: i128) -> Option<Self> {
        (0..=i128::from(Self::MAX_CENTS))
            .contains(&cents)
            .then(|| Self::from_cents(cents as i64))
    }

    /// From integer cents, as stored in the tables.
    pub fn from_cents(cents: i64) -> Self {
        Self(Decimal::new(cents, 2))
    }

    /// As integer cents, exact because the scale is 2.
    pub fn cents(&self) -> i64 {
        let mut d = self.0;
        d.rescale(2);
        i64::try_from(d.mantissa()).unwrap_or(i64::MAX)
    }

    /// `self × n`, exact.
    pub fn times(&self, n: i64) -> Money {
        Money::from_cents(self.cents().saturating_mul(n))
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = self.0;
        d.rescale(2);
        write!(f, "{d}")
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Money {
    /// Reads a stored amount: the wider of the two bounds (see [`Money`]).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Money::parse_plain("money", &s)
            .and_then(|d| Money::from_stored_decimal("money", d))
            .map_err(serde::de::Error::custom)
    }
}

/// Units of stock, never negative, at most one billion.
pub const MAX_STOCK: i64 = 1_000_000_000;

/// Initial stock of a new product: 0 ..= MAX_STOCK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StockLevel(i64);

impl StockLevel {
    pub fn parse(raw: i64) -> Result<Self, ValidationError> {
        if !(0..=MAX_STOCK).contains(&raw) {
            return Err(ValidationError::new(
                "initialStock",
                format!("must be between 0 and {MAX_STOCK}"),
            ));
        }
        Ok(Self(raw))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// A non-zero change of stock on hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StockDelta(i64);

impl StockDelta {
    pub fn parse(raw: i64) -> Result<Self, ValidationError> {
        if raw == 0 {
            return Err(ValidationError::new("delta", "must not be zero"));
        }
        if raw.abs() > MAX_STOCK {
            return Err(ValidationError::new(
                "delta",
                format!("must be between -{MAX_STOCK} and {MAX_STOCK}"),
            ));
        }
        Ok(Self(raw))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

/// Quantity of one cart line: 1 ..= MAX_LINE_QUANTITY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    pub const MAX: u32 = 99;

    pub fn parse(raw: i64) -> Result<Self, ValidationError> {
        if raw < 1 || raw > i64::from(Self::MAX) {
            return Err(ValidationError::new(
                "quantity",
                format!("must be between 1 and {}", Self::MAX),
            ));
        }
        // In range 1..=99, so the conversion cannot fail.
        u32::try_from(raw)
            .map(Self)
            .map_err(|_| ValidationError::new("quantity", "out of range"))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

/// A review's rating: 1 to 5 stars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Rating(u8);

impl Rating {
    pub fn parse(raw: i64) -> Result<Self, ValidationError> {
        match u8::try_from(raw) {
            Ok(r @ 1..=5) => Ok(Self(r)),
            _ => Err(ValidationError::new("rating", "must be between 1 and 5")),
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// `raw` exactly as given, when it is 1 to 128 bytes long and every character is
/// `allowed`: an identifier chosen outside (a token's subject, a client's key).
fn identifier(
    raw: &str,
    allowed: fn(char) -> bool,
    field: &'static str,
    message: &'static str,
) -> Result<String, ValidationError> {
    if raw.is_empty() || raw.len() > 128 || !raw.chars().all(allowed) {
        return Err(ValidationError::new(field, message));
    }
    Ok(raw.to_owned())
}

/// The id of a signed-in user (the JWT `sub`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let printable = |c: char| !c.is_control();
        let message = "user id must be 1 to 128 printable characters";
        identifier(raw, printable, "sub", message).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A client-chosen idempotency key: 1 to 128 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let message = "must be 1 to 128 printable ASCII characters";
        identifier(raw, |c| c.is_ascii_graphic(), "idempotencyKey", message).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn money_is_rendered_with_two_places() {
        assert_eq!(Money::parse_str("p", "19.9").unwrap().to_string(), "19.90");
        assert_eq!(Money::parse_str("p", "20").unwrap().to_string(), "20.00");
        assert_eq!(Money::parse_str("p", "0.10").unwrap().cents(), 10);
    }

    #[test]
    fn money_refuses_negative_sub_cent_and_garbage() {
        assert!(Money::parse_str("p", "-1.00").is_err());
        assert!(Money::parse_str("p", "19.999").is_err());
        assert!(Money::parse_str("p", "abc").is_err());
        assert!(Money::parse_str("p", "1e3").is_err());
    }

    #[test]
    fn an_input_amount_is_at_most_the_largest_price() {
        assert_eq!(
            Money::parse_str("p", "999999999999.99").unwrap(),
            Money::MAX
        );
        assert_eq!(Money::MAX.cents(), Money::MAX_CENTS);
        assert!(Money::parse_str("p", "1000000000000.00").is_err());
        assert_eq!(
            Money::checked_input(i128::from(Money::MAX_CENTS)),
            Some(Money::MAX)
        );
        assert_eq!(Money::checked_input(i128::from(Money::MAX_CENTS) + 1), None);
        assert_eq!(Money::checked_input(-1), None);
    }

    #[test]
    fn a_stored_amount_above_the_input_bound_still_reads() {
        // Written before checkout refused such totals: it must stay readable.
        let stored: Money = serde_json::from_value(serde_json::json!("1000000000000.00")).unwrap();
        assert_eq!(stored.cents(), 100_000_000_000_000);
        let widest: Money =
            serde_json::from_value(serde_json::json!("92233720368547758.07")).unwrap();
        assert_eq!(widest.cents(), i64::MAX);
        // What no table could hold, and what is no amount of money, is refused.
        for bad in ["92233720368547758.08", "-1.00", "0.001", "1e3"] {
            assert!(
                serde_json::from_value::<Money>(serde_json::json!(bad)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn sku_refuses_spaces_and_empty() {
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse("A B").is_err());
        assert_eq!(Sku::parse(" TEE-01 ").unwrap().as_str(), "TEE-01");
    }

    proptest! {
        #[test]
        fn money_round_trips_through_cents(cents in 0i64..=Money::MAX_CENTS) {
            let m = Money::from_cents(cents);
            prop_assert_eq!(m.cents(), cents);
            let reparsed = Money::parse_str("p", &m.to_string()).unwrap();
            prop_assert_eq!(reparsed, m);
        }

        #[test]
        fn money_parse_never_panics(s in "\\PC*") {
            let _ = Money::parse_str("p", &s);
        }

        #[test]
        fn quantity_accepts_exactly_1_to_99(n in any::<i64>()) {
            prop_assert_eq!(Quantity::parse(n).is_ok(), (1..=99).contains(&n));
        }

        #[test]
        fn rating_accepts_exactly_1_to_5(n in any::<i64>()) {
            prop_assert_eq!(Rating::parse(n).is_ok(), (1..=5).contains(&n));
        }

        #[test]
        fn product_name_is_bounded(s in "\\PC{0,300}") {
            match ProductName::parse(&s) {
                Ok(n) => prop_assert!(!n.as_str().is_empty() && n.as_str().chars().count() <= 200),
                Err(_) => {
                    let t = s.trim();
                    prop_assert!(t.is_empty() || t.chars().count() > 200 || t.chars().any(char::is_control));
                }
            }
        }

        #[test]
        fn sku_parse_never_panics_and_is_bounded(s in "\\PC*") {
            if let Ok(sku) = Sku::parse(&s) {
                prop_assert!(sku.as_str().len() <= 64);
            }
        }
    }
}
