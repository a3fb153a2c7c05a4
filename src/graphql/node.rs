//! Relay's object identification: the `Node` interface, and `node(id:)` / `nodes(ids:)`
//! to refetch any object by its global id (ADR 0011).
//!
//! The objects keep their `id: UUID!` (clients and the API contract depend on it); the
//! interface's field is `nodeId: ID!`, a typed global id `<Type>:<uuid>`
//! (`Product:0190…`), which Relay is told about with `nodeInterfaceIdField: "nodeId"`. A
//! node is read with the same rule as the object's own query: a product by anyone, an
//! order by its owner or an admin (`null` for anyone else, as `order(id:)`).

use async_graphql::{Context, ID, Interface, Object};
use uuid::Uuid;

use super::catalog::Product;
use super::error::IntoGraphql;
use super::orders::Order;
use super::{MAX_PAGE_SIZE, services, signed_in};
use crate::error::{AppError, AppResult};

/// An object with a global id: refetch it with `node(id:)`.
#[derive(Interface)]
#[graphql(field(
    name = "node_id",
    ty = "ID",
    desc = "Global id, unique across types (`<Type>:<uuid>`); `node(id:)` refetches the object."
))]
pub enum Node {
    Product(Product),
    Order(Order),
}

/// The kinds of objects that are nodes, by the type name in their global id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Product,
    Order,
}

impl NodeKind {
    fn name(self) -> &'static str {
        match self {
            NodeKind::Product => "Product",
            NodeKind::Order => "Order",
        }
    }

    /// The global id of the object of this kind with `id`.
    pub(crate) fn global_id(self, id: Uuid) -> ID {
        ID(format!("{}:{id}", self.name()))
    }
}

/// The kind and UUID a global id names, or BAD_USER_INPUT.
fn parse_global_id(id: &str) -> AppResult<(NodeKind, Uuid)> {
    let bad = || {
        AppError::BadUserInput(format!(
            "{id:?} is not a node id: node ids are `<Type>:<uuid>`, as `nodeId` returns them"
        ))
    };
    let (kind, uuid) = id.split_once(':').ok_or_else(bad)?;
    let kind = match kind {
        "Product" => NodeKind::Product,
        "Order" => NodeKind::Order,
        _ => return Err(bad()),
    };
    Ok((kind, Uuid::parse_str(uuid).map_err(|_| bad())?))
}

/// The node `id` names, read as its own query reads it.
async fn load(ctx: &Context<'_>, id: &str) -> AppResult<Option<Node>> {
    let s = services(ctx)?;
    match parse_global_id(id)? {
        (NodeKind::Product, uuid) => Ok(crate::read::catalog::find(&s.views, uuid)
            .await?
            .map(|p| Node::Product(Product(p)))),
        (NodeKind::Order, uuid) => {
            let caller = signed_in(ctx)?;
            Ok(crate::read::orders::find(&s.views, uuid)
                .await?
                .filter(|o| caller.may_see_order(&o.user_id))
                .map(|o| Node::Order(Order(o))))
        }
    }
}

#[derive(Default)]
pub struct NodeQuery;

#[Object]
impl NodeQuery {
    /// The object with this global id (`nodeId`), or null when there is none or the
    /// caller may not see it (the object's own query's rule: an order is its owner's or
    /// an admin's). Products are public; orders need a signed-in caller.
    async fn node(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Node>> {
        load(ctx, &id).await.gql()
    }

    /// The objects with these global ids, in the same order, null where `node(id:)` would
    /// be null; at most 100 ids.
    #[graphql(complexity = "5 + ids.len() * child_complexity")]
    async fn nodes(
        &self,
        ctx: &Context<'_>,
        ids: Vec<ID>,
    ) -> async_graphql::Result<Vec<Option<Node>>> {
        async {
            if ids.len() > MAX_PAGE_SIZE as usize {
                return Err(AppError::BadUserInput(format!(
                    "nodes: at most {MAX_PAGE_SIZE} ids"
                )));
            }
            let mut found = Vec::with_capacity(ids.len());
            for id in &ids {
                found.push(load(ctx, id).await?);
            }
            Ok(found)
        }
        .await
        .gql()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_global_id_names_its_type_and_uuid_and_parses_back() {
        let uuid = Uuid::now_v7();
        let id = NodeKind::Order.global_id(uuid);
        assert_eq!(id.0, format!("Order:{uuid}"));
        assert_eq!(parse_global_id(&id).unwrap(), (NodeKind::Order, uuid));
    }

    #[test]
    fn anything_else_is_not_a_node_id() {
        let uuid = Uuid::now_v7();
        for bad in [
            uuid.to_string(),
            format!("Cart:{uuid}"),
            "Product:".to_owned(),
            "Product:not-a-uuid".to_owned(),
            String::new(),
        ] {
            assert!(parse_global_id(&bad).is_err(), "{bad}");
        }
    }
}
