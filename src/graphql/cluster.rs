//! The cluster as an admin sees it (ADR 0012): the replicas (their roles, since when,
//! alive or not, how many units each holds) and the units of work (who holds each, since
//! when), asked once (`cluster`) or followed as it changes (`clusterUpdated`, what the
//! console's cluster panel shows). Read from PostgreSQL, so every replica answers the
//! same; on SQLite the one process holds every unit.

use std::time::Duration;

use async_graphql::{Context, Object, SimpleObject, Subscription};
use chrono::{DateTime, Utc};
use futures_util::Stream;

use super::error::IntoGraphql;
use super::live::{Live, limits};
use super::{admin, services};
use crate::cluster::ClusterInfo;
use crate::cluster::observe::{self, Progress};
use crate::error::{AppError, AppResult};
use crate::graphql::scalars::Position;

#[derive(Default)]
pub struct ClusterQuery;

/// The replicas sharing this database and the units of work they hold.
#[derive(SimpleObject, Clone, PartialEq)]
pub struct Cluster {
    /// The node id of the replica that answered.
    pub node: String,
    /// Every replica seen: alive ones first, then those that are gone.
    pub nodes: Vec<ClusterNode>,
    /// Every unit of work: one projector per view, one per saga partition.
    pub units: Vec<ClusterUnit>,
}

/// One replica (`ORDERGRAPH_NODE_ID`).
#[derive(SimpleObject, Clone, PartialEq)]
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
#[derive(SimpleObject, Clone, PartialEq)]
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
#[derive(SimpleObject, Clone, PartialEq)]
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

/// How often `clusterUpdated` reads the cluster again. Nothing in this process is told
/// when another replica joins, dies or claims a unit (PostgreSQL knows: `pg_stat_activity`
/// and `pg_locks`), so it looks: one small read of the pool a second per subscriber, and
/// subscribers are admins. A failover is then on the page within a second of the claim
/// that ends it (a claim itself comes within 250 ms of a `kill -9`, ADR 0012).
const CLUSTER_RECHECK: Duration = Duration::from_secs(1);

impl Cluster {
    /// Whether `other` says something this one does not. A replica writes its `serving`
    /// report every second: a report whose position and lag did not move is no change,
    /// only a later `reportedAt`.
    fn differs_from(&self, other: &Cluster) -> bool {
        let strip = |c: &Cluster| {
            let mut c = c.clone();
            for node in &mut c.nodes {
                if let Some(serving) = &mut node.serving {
                    serving.reported_at = DateTime::<Utc>::UNIX_EPOCH;
                }
            }
            c
        };
        strip(self) != strip(other)
    }

    /// The position of the replica that answered, as it serves: where a client would
    /// resume anything it follows there (what SERVER_DRAINING carries).
    fn position(&self) -> i64 {
        self.nodes
            .iter()
            .find(|n| n.id == self.node)
            .and_then(|n| n.serving.as_ref())
            .map_or(0, |s| s.position.0)
    }
}

/// `clusterUpdated`: the cluster first, then again whenever it differs from the last one
/// sent, read every [`CLUSTER_RECHECK`]; ends when the server drains or the token expires.
pub(crate) fn updates(
    ctx: &Context<'_>,
) -> Result<impl Stream<Item = async_graphql::Result<Cluster>> + Send + 'static, AppError> {
    admin(ctx)?;
    let s = services(ctx)?.clone();
    let mut limits = limits(ctx)?;
    Ok(async_stream::stream! {
        let mut sent: Option<Cluster> = None;
        loop {
            let cluster = match read(&s.db, &s.cluster).await {
                Ok(cluster) => cluster,
                Err(e) => {
                    yield Err(e.into_graphql());
                    break;
                }
            };
            let position = cluster.position();
            if sent.as_ref().is_none_or(|last| cluster.differs_from(last)) {
                sent = Some(cluster.clone());
                yield Ok(cluster);
            }
            let ended = tokio::select! {
                () = tokio::time::sleep(CLUSTER_RECHECK) => None,
                error = limits.ended(position) => Some(error),
            };
            if let Some(error) = ended {
                yield Err(error.into_graphql());
                break;
            }
        }
    })
}

#[derive(Default)]
pub struct ClusterSubscription;

#[Subscription]
impl ClusterSubscription {
    /// Admin: who does the work, as it changes: the cluster as `cluster` answers it
    /// first, then the whole of it again each time something in it changes: a replica
    /// joins or dies (`alive` false), a unit changes holder (a failover: the unit held by
    /// nobody for a moment once its holder is gone, then by a live replica), or a
    /// replica's `serving` position or lag moves (a report that only moves `reportedAt`
    /// is not sent). The cluster is read again about every second, so a change shows
    /// within a second of happening. There is nothing to resume: a new subscription
    /// starts with the cluster as it is. On SQLite it sends the one process, holding
    /// every unit. Ends with SERVER_DRAINING (its `position`: how far the answering
    /// replica serves) when the server drains.
    async fn cluster_updated(&self, ctx: &Context<'_>) -> async_graphql::Result<Live<Cluster>> {
        let stream = updates(ctx).gql()?;
        let stream: Live<Cluster> = Box::pin(stream);
        Ok(stream)
    }
}

async fn read(db: &sea_orm::DatabaseConnection, info: &ClusterInfo) -> AppResult<Cluster> {
    let roles = |r: crate::cluster::Roles| -> Vec<String> {
        r.to_string().split(',').map(str::to_owned).collect()
    };
    if !info.leased {
        // SQLite: this process, holding every unit since it started them. It runs every
        // unit by construction (`Member::run_local`), also in the instant before its member
        // has published them, when only the start time is known.
        let held = info.state.seen().held;
        let units: Vec<ClusterUnit> = info
            .units
            .iter()
            .map(|u| ClusterUnit {
                name: u.name(),
                holder: Some(info.node.to_string()),
                since: Some(held.get(&u.name()).copied().unwrap_or(info.started)),
            })
            .collect();
        return Ok(Cluster {
            node: info.node.to_string(),
            nodes: vec![ClusterNode {
                id: info.node.to_string(),
                roles: roles(info.roles),
                since: info.started,
                alive: true,
                units_held: i32::try_from(units.len()).unwrap_or(i32::MAX),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(holder: Option<&str>, position: i64, reported_at: DateTime<Utc>) -> Cluster {
        Cluster {
            node: "a".to_owned(),
            nodes: vec![ClusterNode {
                id: "a".to_owned(),
                roles: vec!["api".to_owned()],
                since: DateTime::<Utc>::UNIX_EPOCH,
                alive: true,
                units_held: 1,
                serving: Some(Serving {
                    position: Position(position),
                    lag: 0,
                    reported_at,
                }),
            }],
            units: vec![ClusterUnit {
                name: "saga:0".to_owned(),
                holder: holder.map(str::to_owned),
                since: None,
            }],
        }
    }

    #[test]
    fn a_report_that_only_moves_reported_at_is_no_change() {
        let now = Utc::now();
        let later = now + chrono::Duration::seconds(1);
        assert!(!cluster(Some("a"), 7, now).differs_from(&cluster(Some("a"), 7, later)));
        assert!(cluster(Some("a"), 8, later).differs_from(&cluster(Some("a"), 7, now)));
        assert!(cluster(Some("b"), 7, now).differs_from(&cluster(Some("a"), 7, now)));
        assert!(cluster(None, 7, now).differs_from(&cluster(Some("a"), 7, now)));
        assert_eq!(cluster(Some("a"), 7, now).position(), 7);
    }
}
