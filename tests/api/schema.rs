//! The schema as a contract: the checked-in `schema.graphql` is what the code serves, and the
//! served schema implements every type, field, argument and enum value of
//! `tests/contract/api.graphql` with a compatible type. Parts of the contract not built yet
//! are listed in `PENDING`, which may only name the order/dashboard/history/projection and
//! subscription parts, and must shrink as they land.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use async_graphql::Value as ConstValue;
use async_graphql::parser::parse_schema;
use async_graphql::parser::types::{BaseType, Type, TypeKind, TypeSystemDefinition};

/// Contract entries not served yet: `Type.field`, or a whole `Type`. Remove an entry as soon
/// as it is served (`no_pending_entry_is_already_served` says which).
const PENDING: &[&str] = &[];

/// Root fields that may be pending (besides every `Subscription.*` field).
const MAY_BE_PENDING_FIELDS: &[&str] = &[
    "Query.order",
    "Query.orders",
    "Query.dashboard",
    "Query.history",
    "Query.productAsOf",
    "Query.projections",
    "Mutation.checkout",
    "Mutation.cancelOrder",
    "Mutation.shipOrder",
    "Mutation.deliverOrder",
];

/// Types only reachable from the fields above: pending whole, or field by field. (The
/// `JSON` scalar is only used by `Event`, and async-graphql emits only the scalars it uses.)
const MAY_BE_PENDING_TYPES: &[&str] = &[
    "Order",
    "OrderLine",
    "OrderConnection",
    "OrderEdge",
    "Dashboard",
    "StatusCount",
    "Event",
    "EventConnection",
    "EventEdge",
    "ProjectionStatus",
    "ProductSnapshot",
    "CheckoutInput",
    "OrderPayload",
    "OrderStatus",
    "PaymentStatus",
    "ReservationStatus",
    "JSON",
];

fn repo_file(relative: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn contract_sdl() -> String {
    std::fs::read_to_string(repo_file("tests/contract/api.graphql"))
        .expect("tests/contract/api.graphql exists")
}

/// An argument or input field.
#[derive(Debug)]
struct InputValue {
    ty: Type,
    default: Option<ConstValue>,
}

#[derive(Debug)]
struct Field {
    ty: Type,
    args: BTreeMap<String, InputValue>,
}

#[derive(Debug)]
enum Kind {
    Scalar,
    Object(BTreeMap<String, Field>),
    Enum(BTreeSet<String>),
    Input(BTreeMap<String, InputValue>),
    /// Interfaces and unions: the contract has none.
    Other(&'static str),
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::Scalar => "scalar",
            Kind::Object(_) => "type",
            Kind::Enum(_) => "enum",
            Kind::Input(_) => "input",
            Kind::Other(kind) => kind,
        }
    }
}

/// A parsed SDL document: its types by name and the names of its root operation types.
struct Sdl {
    types: BTreeMap<String, Kind>,
    query: String,
    mutation: String,
    subscription: String,
}

impl Sdl {
    fn parse(what: &str, sdl: &str) -> Self {
        let document = parse_schema(sdl).unwrap_or_else(|e| panic!("{what} is valid SDL: {e}"));
        let mut types: BTreeMap<String, Kind> = BTreeMap::new();
        let (mut query, mut mutation, mut subscription) = (
            "Query".to_string(),
            "Mutation".to_string(),
            "Subscription".to_string(),
        );
        let input_values = |values: &[async_graphql::Positioned<
            async_graphql::parser::types::InputValueDefinition,
        >]| {
            values
                .iter()
                .map(|v| {
                    let v = &v.node;
                    (
                        v.name.node.to_string(),
                        InputValue {
                            ty: v.ty.node.clone(),
                            default: v.default_value.as_ref().map(|d| d.node.clone()),
                        },
                    )
                })
                .collect::<BTreeMap<_, _>>()
        };
        for definition in document.definitions {
            match definition {
                TypeSystemDefinition::Schema(schema) => {
                    let schema = schema.node;
                    if let Some(name) = schema.query {
                        query = name.node.to_string();
                    }
                    if let Some(name) = schema.mutation {
                        mutation = name.node.to_string();
                    }
                    if let Some(name) = schema.subscription {
                        subscription = name.node.to_string();
                    }
                }
                TypeSystemDefinition::Type(ty) => {
                    let ty = ty.node;
                    let kind = match &ty.kind {
                        TypeKind::Scalar => Kind::Scalar,
                        TypeKind::Object(object) => Kind::Object(
                            object
                                .fields
                                .iter()
                                .map(|f| {
                                    let f = &f.node;
                                    (
                                        f.name.node.to_string(),
                                        Field {
                                            ty: f.ty.node.clone(),
                                            args: input_values(&f.arguments),
                                        },
                                    )
                                })
                                .collect(),
                        ),
                        TypeKind::Enum(e) => Kind::Enum(
                            e.values
                                .iter()
                                .map(|v| v.node.value.node.to_string())
                                .collect(),
                        ),
                        TypeKind::InputObject(input) => Kind::Input(input_values(&input.fields)),
                        TypeKind::Interface(_) => Kind::Other("interface"),
                        TypeKind::Union(_) => Kind::Other("union"),
                    };
                    let name = ty.name.node.to_string();
                    // `extend type` adds to the type it extends.
                    match (types.get_mut(&name), kind) {
                        (Some(Kind::Object(fields)), Kind::Object(more)) if ty.extend => {
                            fields.extend(more)
                        }
                        (Some(Kind::Enum(values)), Kind::Enum(more)) if ty.extend => {
                            values.extend(more)
                        }
                        (Some(Kind::Input(fields)), Kind::Input(more)) if ty.extend => {
                            fields.extend(more)
                        }
                        (_, kind) => {
                            types.insert(name, kind);
                        }
                    }
                }
                TypeSystemDefinition::Directive(_) => {}
            }
        }
        Sdl {
            types,
            query,
            mutation,
            subscription,
        }
    }

    /// The name this document gives to `other`'s type `name` (their roots may be named
    /// differently; `contract_problems` reports that once).
    fn name_for(&self, other: &Sdl, name: &str) -> String {
        if name == other.query {
            self.query.clone()
        } else if name == other.mutation {
            self.mutation.clone()
        } else if name == other.subscription {
            self.subscription.clone()
        } else {
            name.to_string()
        }
    }

    fn has_field(&self, ty: &str, field: &str) -> bool {
        matches!(self.types.get(ty), Some(Kind::Object(fields)) if fields.contains_key(field))
    }
}

/// An output may be served as declared or stricter (non-null where the contract allows null).
fn output_compatible(contract: &Type, served: &Type) -> bool {
    if !contract.nullable && served.nullable {
        return false;
    }
    match (&contract.base, &served.base) {
        (BaseType::Named(a), BaseType::Named(b)) => a == b,
        (BaseType::List(a), BaseType::List(b)) => output_compatible(a, b),
        _ => false,
    }
}

/// Arguments and input fields must match the contract exactly: same type, same default.
fn check_input_values(
    at: &str,
    contract: &BTreeMap<String, InputValue>,
    served: &BTreeMap<String, InputValue>,
    problems: &mut Vec<String>,
) {
    for (name, want) in contract {
        match served.get(name) {
            None => problems.push(format!("{at}({name}:) is missing")),
            Some(have) => {
                if have.ty.to_string() != want.ty.to_string() {
                    problems.push(format!(
                        "{at}({name}:) is `{}`, the contract says `{}`",
                        have.ty, want.ty
                    ));
                }
                if want.default.is_some() && have.default != want.default {
                    problems.push(format!(
                        "{at}({name}:) defaults to {:?}, the contract says {:?}",
                        have.default, want.default
                    ));
                }
            }
        }
    }
    // Clients written against the contract do not send extra inputs: those must be optional.
    for (name, have) in served {
        if !contract.contains_key(name) && !have.ty.nullable && have.default.is_none() {
            problems.push(format!(
                "{at}({name}: {}) is required but not in the contract",
                have.ty
            ));
        }
    }
}

/// Every difference between the contract and the served schema, pending entries aside.
fn contract_problems(contract: &Sdl, served: &Sdl) -> Vec<String> {
    let pending: BTreeSet<&str> = PENDING.iter().copied().collect();
    let mut problems = Vec::new();
    // Root type names are visible to clients (`__typename`, generated code): the contract's
    // "same name" holds for them too. Their fields are still compared below, so one wrong
    // name is one problem, not one per field.
    let roots = [
        ("query", &contract.query, &served.query),
        ("mutation", &contract.mutation, &served.mutation),
    ];
    for (root, want, have) in roots {
        if want != have {
            problems.push(format!(
                "the {root} root type is `{have}`, the contract names it `{want}`"
            ));
        }
    }
    let subscriptions_served = served.types.contains_key(&served.subscription);
    if subscriptions_served && served.subscription != contract.subscription {
        problems.push(format!(
            "the subscription root type is `{}`, the contract names it `{}`",
            served.subscription, contract.subscription
        ));
    }
    for (name, want) in &contract.types {
        if pending.contains(name.as_str()) {
            continue;
        }
        let served_name = served.name_for(contract, name);
        let Some(have) = served.types.get(&served_name) else {
            let all_fields_pending = matches!(want, Kind::Object(fields)
                if fields.keys().all(|f| pending.contains(format!("{name}.{f}").as_str())));
            if !all_fields_pending {
                problems.push(format!("{} {name} is missing", want.name()));
            }
            continue;
        };
        match (want, have) {
            (Kind::Scalar, Kind::Scalar) => {}
            (Kind::Object(want_fields), Kind::Object(have_fields)) => {
                for (field, want_field) in want_fields {
                    let key = format!("{name}.{field}");
                    if pending.contains(key.as_str()) {
                        continue;
                    }
                    let Some(have_field) = have_fields.get(field) else {
                        problems.push(format!("{key} is missing"));
                        continue;
                    };
                    if !output_compatible(&want_field.ty, &have_field.ty) {
                        problems.push(format!(
                            "{key} is `{}`, the contract says `{}`",
                            have_field.ty, want_field.ty
                        ));
                    }
                    check_input_values(&key, &want_field.args, &have_field.args, &mut problems);
                }
            }
            (Kind::Enum(want_values), Kind::Enum(have_values)) => {
                for value in want_values.difference(have_values) {
                    problems.push(format!("{name}.{value} (enum value) is missing"));
                }
            }
            (Kind::Input(want_fields), Kind::Input(have_fields)) => {
                check_input_values(name, want_fields, have_fields, &mut problems);
            }
            (want, have) => problems.push(format!(
                "{name} is a {}, the contract says {}",
                have.name(),
                want.name()
            )),
        }
    }
    problems
}

#[test]
fn the_checked_in_schema_matches_the_code() {
    // Arrange
    let path = repo_file("schema.graphql");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();

    // Act
    let generated = ordergraph::graphql::schema_sdl();

    // Assert
    if checked_in.trim_end() != generated.trim_end() {
        let first_difference = checked_in
            .lines()
            .zip(generated.lines())
            .enumerate()
            .find(|(_, (a, b))| a != b)
            .map(|(i, (a, b))| format!("line {}: checked in `{a}`, generated `{b}`", i + 1))
            .unwrap_or_else(|| "one is a prefix of the other".to_string());
        panic!(
            "{} is out of date ({first_difference}); run `cargo run -- schema > schema.graphql`",
            path.display()
        );
    }
}

#[test]
fn the_served_schema_implements_the_contract() {
    // Arrange
    let contract = Sdl::parse("tests/contract/api.graphql", &contract_sdl());
    let served = Sdl::parse("the served schema", &ordergraph::graphql::schema_sdl());

    // Act
    let problems = contract_problems(&contract, &served);

    // Assert
    assert!(
        problems.is_empty(),
        "the served schema breaks the contract:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_pending_list_names_only_orders_dashboard_history_projections_and_subscriptions() {
    // Arrange
    let contract = Sdl::parse("tests/contract/api.graphql", &contract_sdl());

    // Act
    let not_allowed: Vec<&str> = PENDING
        .iter()
        .copied()
        .filter(|entry| {
            let in_contract = match entry.split_once('.') {
                Some((ty, field)) => contract.has_field(ty, field),
                None => contract.types.contains_key(*entry),
            };
            let allowed = MAY_BE_PENDING_FIELDS.contains(entry)
                || MAY_BE_PENDING_TYPES.contains(entry)
                || entry.split_once('.').is_some_and(|(ty, _)| {
                    ty == "Subscription" || MAY_BE_PENDING_TYPES.contains(&ty)
                });
            !(in_contract && allowed)
        })
        .collect();

    // Assert
    assert!(
        not_allowed.is_empty(),
        "PENDING may only name contract parts of orders, dashboard, history, productAsOf, \
         projections and subscriptions; these are not: {not_allowed:?}"
    );
}

#[test]
fn no_pending_entry_is_already_served() {
    // Arrange
    let contract = Sdl::parse("tests/contract/api.graphql", &contract_sdl());
    let served = Sdl::parse("the served schema", &ordergraph::graphql::schema_sdl());

    // Act
    let served_already: Vec<&str> = PENDING
        .iter()
        .copied()
        .filter(|entry| match entry.split_once('.') {
            Some((ty, field)) => served.has_field(&served.name_for(&contract, ty), field),
            None => served
                .types
                .contains_key(&served.name_for(&contract, entry)),
        })
        .collect();

    // Assert
    assert!(
        served_already.is_empty(),
        "these are served now: remove them from PENDING in tests/api/schema.rs (list a type's \
         missing fields as `Type.field` if it is only partly built): {served_already:?}"
    );
}

#[test]
fn the_contract_copy_matches_the_shared_contract() {
    // Arrange
    let shared = repo_file("../shared/contract/api.graphql");
    let Ok(shared_contract) = std::fs::read_to_string(&shared) else {
        // Only checkable where shared/ sits beside the repository (dev machines and CI).
        return;
    };

    // Act
    let copy = contract_sdl();

    // Assert
    assert!(
        copy == shared_contract,
        "tests/contract/api.graphql differs from {}: copy it again",
        shared.display()
    );
}
