//! Who is in the cluster and who holds which unit, as PostgreSQL knows it: the lease
//! connections in `pg_stat_activity` (alive nodes, by `application_name`), the units'
//! advisory locks in `pg_locks`, and the nodes' roles in `cluster_nodes`. Read by the
//! member on its lease connection (every read is also a heartbeat), and through the
//! pool by the admin `cluster` query and `ordergraph projections status`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};

use super::{APPLICATION_PREFIX, Kind, NAMESPACE, Roles, Unit};

/// Every node that has a row or a lease connection: its roles, since when, alive.
pub const NODES_SQL: &str = "\
SELECT COALESCE(n.node_id, substr(a.application_name, 12)) AS node_id, \
       n.roles AS roles, \
       COALESCE(a.backend_start, n.since) AS since, \
       (a.pid IS NOT NULL) AS alive, \
       n.position AS position, n.lag AS lag, n.reported_at AS reported_at \
FROM cluster_nodes n \
FULL JOIN (SELECT pid, application_name, backend_start FROM pg_stat_activity \
           WHERE datname = current_database() AND application_name LIKE 'ordergraph/%') a \
  ON a.application_name = 'ordergraph/' || n.node_id \
ORDER BY 1";

/// Every unit lock held in this database: the unit key (`objid`), the holder's
/// application name, and since when it holds it (its claim row, when it matches).
pub const HOLDERS_SQL: &str = "\
SELECT l.objid::bigint AS objid, a.application_name AS holder, c.since AS since \
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
LEFT JOIN cluster_claims c ON c.objid = l.objid::bigint \
  AND 'ordergraph/' || c.node_id = a.application_name \
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2 \
  AND l.classid::bigint = $1 \
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())";

/// One node as seen from the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSeen {
    pub id: String,
    /// `None` for a lease connection of a node without a row (an older build).
    pub roles: Option<Roles>,
    pub since: DateTime<Utc>,
    pub alive: bool,
    /// How far it serves, as it last reported (`None` before its first report).
    pub progress: Option<Progress>,
}

/// How far a replica serves, as that replica knows it, and when it said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Every view it serves has every event it wants up to here.
    pub position: i64,
    /// Events of the log its most behind view wants and does not show yet.
    pub lag: i64,
    pub at: DateTime<Utc>,
}

impl Progress {
    pub(super) fn of(
        position: Option<i64>,
        lag: Option<i64>,
        at: Option<DateTime<Utc>>,
    ) -> Option<Progress> {
        Some(Progress {
            position: position?,
            lag: lag?,
            at: at?,
        })
    }
}

/// Who holds a unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub node: String,
    /// When it claimed the unit (unknown for a claim it has not recorded yet).
    pub since: Option<DateTime<Utc>>,
}

/// The cluster at one instant.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub nodes: Vec<NodeSeen>,
    /// Holders by unit key (`pg_locks.objid`).
    pub holders: BTreeMap<i64, Holding>,
}

impl Snapshot {
    /// The node holding `unit`, if any.
    pub fn holder(&self, unit: &Unit) -> Option<&str> {
        self.holders.get(&unit.objid()).map(|h| h.node.as_str())
    }

    /// Alive nodes that may claim units of `kind` (a node with unknown roles counts).
    pub fn live(&self, kind: Kind) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.alive && n.roles.is_none_or(|r| r.claims(kind)))
            .count()
    }

    /// The units nobody holds.
    pub fn unheld<'a>(&self, units: &'a [Unit]) -> Vec<&'a Unit> {
        units.iter().filter(|u| self.holder(u).is_none()).collect()
    }
}

/// A node's id from its lease connection's application name.
pub fn node_of(application_name: &str) -> String {
    application_name
        .strip_prefix(APPLICATION_PREFIX)
        .unwrap_or(application_name)
        .to_owned()
}

/// Reads the cluster through any connection (PostgreSQL only; SQLite has no cluster).
pub async fn snapshot<C: ConnectionTrait>(db: &C) -> Result<Snapshot, DbErr> {
    let pg = DbBackend::Postgres;
    let nodes = db
        .query_all_raw(Statement::from_string(pg, NODES_SQL))
        .await?
        .into_iter()
        .map(|row| {
            Ok(NodeSeen {
                id: row.try_get("", "node_id")?,
                roles: row
                    .try_get::<Option<String>>("", "roles")?
                    .and_then(|r| r.parse().ok()),
                since: row.try_get("", "since")?,
                alive: row.try_get("", "alive")?,
                progress: Progress::of(
                    row.try_get("", "position")?,
                    row.try_get("", "lag")?,
                    row.try_get("", "reported_at")?,
                ),
            })
        })
        .collect::<Result<Vec<_>, DbErr>>()?;
    let holders = db
        .query_all_raw(Statement::from_sql_and_values(
            pg,
            HOLDERS_SQL,
            [i64::from(NAMESPACE).into()],
        ))
        .await?
        .into_iter()
        .map(|row| {
            let objid: i64 = row.try_get("", "objid")?;
            let holder: String = row.try_get("", "holder")?;
            Ok((
                objid,
                Holding {
                    node: node_of(&holder),
                    since: row.try_get("", "since")?,
                },
            ))
        })
        .collect::<Result<BTreeMap<_, _>, DbErr>>()?;
    Ok(Snapshot { nodes, holders })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Partition;

    fn node(id: &str, roles: &str, alive: bool) -> NodeSeen {
        NodeSeen {
            id: id.to_owned(),
            roles: roles.parse().ok(),
            since: Utc::now(),
            alive,
            progress: None,
        }
    }

    #[test]
    fn live_nodes_are_counted_per_kind_among_those_with_the_role() {
        let snapshot = Snapshot {
            nodes: vec![
                node("a", "api,projector,saga", true),
                node("b", "api", true),
                node("c", "saga", true),
                node("d", "api,projector,saga", false),
            ],
            holders: BTreeMap::new(),
        };
        assert_eq!(snapshot.live(Kind::Projector), 1);
        assert_eq!(snapshot.live(Kind::Saga), 2);
        let units = [
            Unit::Projector("catalog"),
            Unit::Saga(Partition { index: 0, count: 1 }),
        ];
        assert_eq!(snapshot.unheld(&units).len(), 2);
        assert_eq!(node_of("ordergraph/replica-1"), "replica-1");
    }
}
