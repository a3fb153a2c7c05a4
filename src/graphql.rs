//! The GraphQL API: one function builds the schema (with its limits) for the server, for
//! `ordergraph schema` and for tests. Roots are merged per area; every command mutation
//! takes the one path of `mutation`, declared in `command_mutations!`; the transport lives in
//! `http.rs`, not here.

/// Declares an area's mutation root: its struct and its `#[Object]` impl. A command
/// mutation is written as what sets it apart: its arguments; who may run it (`by`); where
/// its idempotency key is (`key in input`: the input object's `idempotency_key` field, which
/// every command mutation's input has; else `key` and the argument that holds it); and, as
/// a closure of the caller and the command context, the command its arguments parse into.
/// It runs [`mutation`] and answers with the area's payload, read by the function named
/// after the root. Any other resolver stands among them as an ordinary `async fn`: the
/// order of the entries is the order of the schema's fields.
///
/// A macro because `#[Object]` makes a field only of a resolver function written out in
/// its impl: a helper function cannot stand in for each one's signature.
macro_rules! command_mutations {
    (pub struct $root:ident -> $payload:ty, read by $read:path { $($entries:tt)* }) => {
        #[derive(Default)]
        pub struct $root;

        command_mutations!(@entries $root, $payload, $read, [] $($entries)*);
    };
    // Every entry turned into its resolver: the impl.
    (@entries $root:ident, $payload:ty, $read:path, [$($resolvers:tt)*]) => {
        #[async_graphql::Object]
        impl $root {
            $($resolvers)*
        }
    };
    // A command mutation whose key is in its input object: its `idempotency_key` field.
    (
        @entries $root:ident, $payload:ty, $read:path, [$($resolvers:tt)*]
        $(#[$meta:meta])*
        command $name:ident($($arg:ident: $type:ty),* $(,)?) by $guard:path, key in $input:ident => {
            $($command:tt)*
        }
        $($rest:tt)*
    ) => {
        command_mutations!(@entries $root, $payload, $read, [$($resolvers)*]
            $(#[$meta])*
            command $name($($arg: $type),*) by $guard, key $input.idempotency_key.clone() => {
                $($command)*
            }
            $($rest)*
        );
    };
    // A command mutation.
    (
        @entries $root:ident, $payload:ty, $read:path, [$($resolvers:tt)*]
        $(#[$meta:meta])*
        command $name:ident($($arg:ident: $type:ty),* $(,)?) by $guard:path, key $key:expr => {
            |$caller:pat_param, $cx:pat_param| $command:expr
        }
        $($rest:tt)*
    ) => {
        command_mutations!(@entries $root, $payload, $read, [
            $($resolvers)*
            $(#[$meta])*
            async fn $name(
                &self,
                ctx: &async_graphql::Context<'_>,
                $($arg: $type),*
            ) -> async_graphql::Result<$payload> {
                let key = $key;
                let command = |$caller: &_, $cx: &_| $command;
                $crate::graphql::mutation(ctx, $guard, key, command, |o| $read(ctx, o)).await
            }
        ] $($rest)*);
    };
    // Any other resolver, as written.
    (
        @entries $root:ident, $payload:ty, $read:path, [$($resolvers:tt)*]
        $(#[$meta:meta])*
        async fn $name:ident $params:tt -> $output:ty $body:block
        $($rest:tt)*
    ) => {
        command_mutations!(@entries $root, $payload, $read, [
            $($resolvers)*
            $(#[$meta])*
            async fn $name $params -> $output $body
        ] $($rest)*);
    };
}

pub mod audit;
pub mod cart;
pub mod catalog;
pub mod cluster;
pub mod error;
pub mod events;
#[cfg(test)]
mod fingerprints;
pub mod limits;
pub mod live;
pub mod node;
pub mod orders;
pub mod persisted;
pub mod pipeline;
pub mod projections;
pub mod scalars;
pub mod traces;

use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Context, MergedObject, MergedSubscription, Schema, SchemaBuilder};
use sea_orm::DatabaseConnection;
use tokio::sync::watch;

use crate::auth::{Auth, Caller};
use crate::domain::Stored;
use crate::domain::values::IdempotencyKey;
use crate::error::{AppError, AppResult};
use crate::log::reader::Wanted;
use crate::read::checkpoints::Checkpoints;
use crate::read::feed::EventFeed;
use crate::read::live::LiveViews;
use crate::read::status::Statuses;
use crate::write::{Command, CommandContext, Outcome, Writer};

/// Largest `first` accepted by any connection field.
pub const MAX_PAGE_SIZE: i32 = 100;
/// Deepest selection accepted (checked by `limits.rs`, which names it in the error): the
/// standard introspection query of graphql-js 16 (GraphiQL, codegen tools) is 15 levels
/// deep, and graphql-js 17 lets tools ask for deeper `ofType` chains; 20 leaves them room.
/// The schema itself has no cycles, so no data query comes near it.
pub const MAX_DEPTH: usize = 20;
/// Largest query complexity accepted (one point per field, lists times `first`; checked
/// by `limits.rs`, which names it and the query's value in the error).
pub const MAX_COMPLEXITY: usize = 2_000;
/// Most nodes (selections, argument values, directives) validating one document may
/// visit, fragments expanded (`limits.rs`). Far above any query within the complexity
/// limit (the standard introspection query is a few hundred), far below what hurts.
pub const MAX_DOCUMENT_NODES: usize = 10_000;
/// Longest GraphQL document, in bytes: bounds the memory of parsing (variables are
/// bounded by the request body limit).
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// Most lexical tokens a document may have: bounds the time and memory of parsing (the
/// standard introspection query has a few hundred).
pub const MAX_DOCUMENT_TOKENS: usize = 20_000;

#[derive(MergedObject, Default)]
#[graphql(name = "Query")]
pub struct QueryRoot(
    catalog::CatalogQuery,
    cart::CartQuery,
    orders::OrdersQuery,
    audit::AuditQuery,
    node::NodeQuery,
    cluster::ClusterQuery,
);

#[derive(MergedObject, Default)]
#[graphql(name = "Mutation")]
pub struct MutationRoot(
    catalog::CatalogMutation,
    cart::CartMutation,
    orders::OrdersMutation,
    projections::ProjectionsMutation,
);

#[derive(MergedSubscription, Default)]
#[graphql(name = "Subscription")]
pub struct SubscriptionRoot(
    catalog::CatalogSubscription,
    cart::CartSubscription,
    orders::OrdersSubscription,
    events::EventsSubscription,
    projections::ProjectionsSubscription,
    cluster::ClusterSubscription,
);

pub type AppSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// What resolvers need, injected once into the schema.
#[derive(Clone)]
pub struct Services {
    /// The write database: the log (`history`, the temporal queries, the `events` feed)
    /// and the write tables.
    pub db: DatabaseConnection,
    /// The views' database: the write database, or a read replica's own (ADR 0016).
    pub views: DatabaseConnection,
    pub writer: Writer,
    pub checkpoints: Arc<Checkpoints>,
    pub consistency_wait: Duration,
    /// Hot catalog reads, exact (`read::cache`, ADR 0023).
    pub catalog_cache: Arc<crate::read::cache::CatalogCache>,
    /// Live views for subscriptions.
    pub live: Arc<LiveViews>,
    /// The raw event feed.
    pub feed: Arc<EventFeed>,
    /// True once the server drains: subscriptions end with SERVER_DRAINING.
    pub drain: watch::Receiver<bool>,
    /// Each projection's status.
    pub projections: Arc<Statuses>,
    /// Rebuilds and verifies of the views.
    pub rebuilds: Arc<crate::read::rebuild::Rebuilds>,
    /// The orders the saga could not advance (admin: list the parked, retry one).
    pub dead_letters: crate::process::dead_letters::DeadLetters,
    /// This replica in the cluster (the admin `cluster` query).
    pub cluster: crate::cluster::ClusterInfo,
    /// Every view with the events it takes (`Projection::wants`), in fold order: which
    /// views a command's events reach (`await_written`).
    pub wants: Arc<[(&'static str, &'static [Wanted])]>,
}

impl Services {
    /// Read-your-writes across views: waits until `own` (the view the payload reads)
    /// has folded the command's position — or answers CONSISTENCY_TIMEOUT — and, within
    /// the same wait, until every other view its events reach has too, so that whatever
    /// the client reads next (the dashboard after a stock change, the cart after a
    /// checkout) shows the write. Views fold on their own, perhaps on other replicas
    /// (ADR 0012). Those other views are waited for at best: a view that is late or
    /// failed delays the answer by the wait at most, and never fails the mutation,
    /// whose own view already shows its write.
    pub async fn await_written(&self, own: &str, outcome: &Outcome) -> AppResult<()> {
        self.read_written(own, outcome, async { Ok(()) }).await
    }

    /// [`await_written`](Self::await_written), reading the payload with `read` as soon as
    /// `own` has caught up, while the other views are still awaited: the read is off the
    /// path of a mutation whose events reach several views.
    pub async fn read_written<T>(
        &self,
        own: &str,
        outcome: &Outcome,
        read: impl Future<Output = AppResult<T>>,
    ) -> AppResult<T> {
        let position = outcome.position;
        let others = self.wants.iter().filter(|(name, wants)| {
            *name != own
                && !self.projections.is_failed(name)
                && outcome
                    .written
                    .iter()
                    .any(|&(stream_type, event_type)| Wanted::takes(wants, stream_type, event_type))
        });
        let others = futures_util::future::join_all(others.map(|(name, _)| async move {
            let wait = self
                .checkpoints
                .wait_for(name, position, self.consistency_wait);
            if !traces::read_your_writes(name, position, wait).await {
                tracing::debug!(
                    projection = name,
                    position,
                    "a view the write reaches is late"
                );
            }
        }));
        let own = async {
            self.await_view(own, position).await?;
            read.await
        };
        let (own, _) = tokio::join!(own, others);
        own
    }

    /// Read-your-writes: waits until `projection` has folded `position`.
    pub async fn await_view(&self, projection: &str, position: i64) -> AppResult<()> {
        let wait = self
            .checkpoints
            .wait_for(projection, position, self.consistency_wait);
        if traces::read_your_writes(projection, position, wait).await {
            Ok(())
        } else {
            Err(AppError::ConsistencyTimeout { position })
        }
    }
}

fn builder() -> SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    scalars::describe(Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot::default(),
    ))
    // Depth and complexity are measured by validation and checked by the limits step of
    // the request pipeline (`build_schema`), whose errors name the limit and the query's
    // value.
    .limit_recursive_depth(32)
    .limit_directives(8)
}

/// The schema served by the application, every request taken through the request
/// pipeline (`pipeline.rs`): its trace span (only when spans are exported), the operation
/// metrics, persisted queries and the document limits.
pub fn build_schema(
    services: Services,
    persisted: persisted::PersistedQueries,
    limits: limits::DocumentLimits,
    metrics: Arc<crate::metrics::Metrics>,
) -> AppSchema {
    builder()
        .extension(pipeline::RequestPipeline {
            spans: traces::enabled(),
            metrics,
            persisted,
            limits,
        })
        .data(services)
        .finish()
}

/// The SDL of the schema, as checked in to `schema.graphql`.
pub fn schema_sdl() -> String {
    builder().finish().sdl()
}

pub(crate) fn services<'a>(ctx: &Context<'a>) -> AppResult<&'a Services> {
    ctx.data::<Services>()
        .map_err(|_| anyhow::anyhow!("schema built without services").into())
}

/// A value read back from a view (a status) as its GraphQL enum. A spelling the code does
/// not know is INTERNAL (logged with the row's value), never shown as some default.
pub(crate) fn stored<T: Stored, G: From<T>>(spelling: &str) -> AppResult<G> {
    Ok(T::parse_stored(spelling)?.into())
}

/// The signed-in caller, or UNAUTHENTICATED.
pub(crate) fn signed_in<'a>(ctx: &Context<'a>) -> AppResult<&'a Caller> {
    match ctx.data_opt::<Auth>() {
        Some(Auth::User(caller)) => Ok(caller),
        Some(Auth::Invalid(reason)) => Err(AppError::Unauthenticated(reason.clone())),
        _ => Err(AppError::Unauthenticated(
            "sign in: send 'Authorization: Bearer <token>'".into(),
        )),
    }
}

/// The signed-in admin, or UNAUTHENTICATED / FORBIDDEN.
pub(crate) fn admin<'a>(ctx: &Context<'a>) -> AppResult<&'a Caller> {
    let caller = signed_in(ctx)?;
    if caller.is_admin() {
        Ok(caller)
    } else {
        Err(AppError::Forbidden(
            "this operation requires the admin role".into(),
        ))
    }
}

/// The command context of a signed-in caller with an optional idempotency key.
pub(crate) fn command_context(caller: &Caller, key: Option<&str>) -> AppResult<CommandContext> {
    Ok(CommandContext::client(
        caller.user_id.clone(),
        key.map(IdempotencyKey::parse).transpose()?,
    ))
}

/// One command mutation, checked in the order every mutation checks: who may run it
/// (`guard`), the idempotency key, the input parsed into its command (`command`: the first
/// invalid field is BAD_USER_INPUT), the command executed, then `payload`, read once its
/// view has caught up with the outcome.
pub(crate) async fn mutation<'a, C, P, Payload>(
    ctx: &Context<'a>,
    guard: fn(&Context<'a>) -> AppResult<&'a Caller>,
    idempotency_key: Option<String>,
    command: impl FnOnce(&'a Caller, &CommandContext) -> AppResult<C>,
    payload: impl FnOnce(Outcome) -> Payload,
) -> async_graphql::Result<P>
where
    C: Command,
    Payload: Future<Output = AppResult<P>>,
{
    use error::IntoGraphql;
    async {
        let caller = guard(ctx)?;
        let context = command_context(caller, idempotency_key.as_deref())?;
        let command = command(caller, &context)?;
        traces::command(command.operation());
        let outcome = services(ctx)?.writer.execute(&context, command).await?;
        payload(outcome).await
    }
    .await
    .gql()
}

/// The row of a command's stream in `projection`'s view, read once the view has caught up
/// with the command's outcome (read-your-writes); NOT_FOUND, naming it `what`, when the
/// view has no such row.
pub(crate) async fn written<'a, T, Find>(
    ctx: &Context<'a>,
    projection: &str,
    what: &str,
    outcome: &Outcome,
    find: impl FnOnce(&'a DatabaseConnection, uuid::Uuid) -> Find,
) -> AppResult<T>
where
    Find: Future<Output = Result<Option<T>, sea_orm::DbErr>>,
{
    let s = services(ctx)?;
    let id = outcome.stream_id;
    let read = async {
        find(&s.views, id)
            .await?
            .ok_or_else(|| AppError::NotFound(format!("{what} {id} not found")))
    };
    s.read_written(projection, outcome, read).await
}

/// Checks a Relay `first` (or `last`) argument.
pub(crate) fn page_size(first: i32) -> AppResult<u64> {
    if !(0..=MAX_PAGE_SIZE).contains(&first) {
        return Err(AppError::BadUserInput(format!(
            "first and last must be between 0 and {MAX_PAGE_SIZE}"
        )));
    }
    Ok(first as u64)
}

/// An opaque Relay cursor: base64url of `<kind>:<value>`. The kind keeps a cursor of one
/// connection from being accepted by another.
pub(crate) struct Cursor;

impl Cursor {
    pub(crate) fn encode(kind: &str, value: impl std::fmt::Display) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{kind}:{value}"))
    }

    /// The value of a cursor of `kind`, or BAD_USER_INPUT.
    pub(crate) fn decode<T: std::str::FromStr>(kind: &str, cursor: &str) -> AppResult<T> {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            // No value this API puts in a cursor holds a NUL, which no database text
            // can hold either (PostgreSQL refuses it in a statement).
            .filter(|s| !s.contains('\0'))
            .and_then(|s| {
                s.strip_prefix(kind)
                    .and_then(|rest| rest.strip_prefix(':'))
                    .and_then(|v| v.parse().ok())
            })
            .ok_or_else(|| {
                AppError::BadUserInput("after/before: not a cursor returned by this API".into())
            })
    }
}

/// Relay `PageInfo` (the Relay cursor connections specification, §5).
#[derive(async_graphql::SimpleObject)]
pub struct PageInfo {
    /// Paginating forwards (`first`/`after`): whether items follow this page. Backwards
    /// (`last`/`before`): whether items follow `before`.
    pub has_next_page: bool,
    /// Paginating backwards (`last`/`before`): whether items precede this page.
    /// Forwards: whether items precede `after` (a connection that cannot tell cheaply
    /// says false, as the specification allows).
    pub has_previous_page: bool,
    /// The cursor of the page's first edge; null when the page is empty.
    pub start_cursor: Option<String>,
    /// The cursor of the page's last edge; null when the page is empty.
    pub end_cursor: Option<String>,
}

impl PageInfo {
    /// A page read forwards by a connection that does not look for items before it.
    pub(crate) fn forward(
        has_next_page: bool,
        start_cursor: Option<String>,
        end_cursor: Option<String>,
    ) -> Self {
        Self {
            has_next_page,
            has_previous_page: false,
            start_cursor,
            end_cursor,
        }
    }
}
