//! The cluster as an admin sees it (ADR 0012): the replicas (their roles, since when,
//! alive or not, how many units each holds) and the units of work (who holds each, since
//! when). Read from PostgreSQL, so every replica answers the same; on SQLite the one
//! process holds every unit.

use async_graphql::{Context, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::error::IntoGraphql;
use super::{admin, services};
use crate::cluster::ClusterInfo;
use crate::cluster::observe::{self, Progress};
use crate::error::AppResult;
use crate::graphql::scalars::Position;

#[derive(Default)]
pub struct ClusterQuery;

/// The replicas sharing this database and the units of work they hold.
#[derive(SimpleObject)]
pub struct Cluster {
    /// The node id of the replica that answered.
    pub node: String,
    /// Every replica seen: alive ones first, then those that are gone.
    pub nodes: Vec<ClusterNode>,
    /// Every unit of work: one projector per view, one per saga partition.
    pub units: Vec<ClusterUnit>,
}

/// One replica (`ORDERGRAPH_NODE_ID`).
#[derive(SimpleObject)]
pub struct ClusterNode {
    pub id: String,
    /// What it does: `api`, `projector`, `saga` (`ORDERGRAPH_ROLES`).
    pub roles: Vec<String>,
    /// When its current lease connection opened (alive), or when it last started (gone).
    pub since: DateTime<Utc>,
    /// Whether its lease connection is open: it runs, and holds its units.
    pub alive: bool,
    /// Units of work it holds now.
    pub units_held: i32,
    /// How far it serves queries and subscriptions, as it last reported (every second;
    /// null before its first report).
    pub serving: Option<Serving>,
}

/// How far a replica serves: what its queries and subscribers see.
#[derive(SimpleObject)]
pub struct Serving {
    /// The lowest checkpoint of its views, as it knows them.
    pub position: Position,
    /// How many events of the log its most behind view wants and does not show yet.
    pub lag: i64,
    /// When it reported this.
    pub reported_at: DateTime<Utc>,
}

impl From<Progress> for Serving {
    fn from(p: Progress) -> Self {
        Serving {
            position: Position(p.position),
            lag: p.lag,
            reported_at: p.at,
        }
    }
}

/// One unit of work: `projector:<view>` or `saga:<partition>`.
#[derive(SimpleObject)]
pub struct ClusterUnit {
    pub name: String,
    /// The node id of the replica running it; null while nobody does (a replica claims it
    /// within 250 ms, or within the lease after its holder froze).
    pub holder: Option<String>,
    /// Since when its holder runs it.
    pub since: Option<DateTime<Utc>>,
}

#[Object]
impl ClusterQuery {
    /// Admin: who does the work. Every replica answers the same (it is read from the
    /// database); `node` says which one answered.
    async fn cluster(&self, ctx: &Context<'_>) -> async_graphql::Result<Cluster> {
        async {
            admin(ctx)?;
            let s = services(ctx)?;
            read(&s.views, &s.cluster).await
        }
        .await
        .gql()
    }
}

async fn read(db: &sea_orm::DatabaseConnection, info: &ClusterInfo) -> AppResult<Cluster> {
    let roles = |r: crate::cluster::Roles| -> Vec<String> {
        r.to_string().split(',').map(str::to_owned).collect()
    };
    if !info.leased {
        // SQLite: this process, holding every unit since it started them.
        let held = info.state.seen().held;
        let units: Vec<ClusterUnit> = info
            .units
            .iter()
            .map(|u| ClusterUnit {
                name: u.name(),
                holder: held.contains_key(&u.name()).then(|| info.node.to_string()),
                since: held.get(&u.name()).copied(),
            })
            .collect();
        return Ok(Cluster {
            node: info.node.to_string(),
            nodes: vec![ClusterNode {
                id: info.node.to_string(),
                roles: roles(info.roles),
                since: info.started,
                alive: true,
                units_held: i32::try_from(held.len()).unwrap_or(i32::MAX),
                serving: Some({
                    let (position, lag) = (info.serving)().await?;
                    Serving::from(Progress {
                        position,
                        lag,
                        at: Utc::now(),
                    })
                }),
            }],
            units,
        });
    }
    let snapshot = observe::snapshot(db).await?;
    let units: Vec<ClusterUnit> = info
        .units
        .iter()
        .map(|u| {
            let holding = snapshot.holders.get(&u.objid());
            ClusterUnit {
                name: u.name(),
                holder: holding.map(|h| h.node.clone()),
                since: holding.and_then(|h| h.since),
            }
        })
        .collect();
    let mut nodes: Vec<ClusterNode> = snapshot
        .nodes
        .iter()
        .map(|n| ClusterNode {
            id: n.id.clone(),
            roles: n.roles.map(roles).unwrap_or_default(),
            since: n.since,
            alive: n.alive,
            units_held: i32::try_from(
                units
                    .iter()
                    .filter(|u| u.holder.as_deref() == Some(n.id.as_str()))
                    .count(),
            )
            .unwrap_or(i32::MAX),
            serving: n.progress.map(Serving::from),
        })
        .collect();
    nodes.sort_by(|a, b| b.alive.cmp(&a.alive).then(a.id.cmp(&b.id)));
    Ok(Cluster {
        node: info.node.to_string(),
        nodes,
        units,
    })
}
