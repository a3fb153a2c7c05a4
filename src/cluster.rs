//! Who does the work when several replicas share one PostgreSQL database (ADR 0012).
//!
//! The background work is cut into **units**: `projector:<view>` for each view of
//! `read::views()`, and `saga:<k>` for each of the order saga's partitions. Exactly one
//! replica runs a unit at a time. It claims the unit with a session-level advisory lock
//! (`pg_try_advisory_lock(NAMESPACE, <unit key>)`) on its **lease connection**: one
//! dedicated connection per replica, named `ordergraph/<node id>` in `pg_stat_activity`,
//! with `idle_session_timeout = <lease>` set on it, on which the replica heartbeats every
//! lease/4 at most. A replica that dies closes its socket and frees its locks at once; a
//! replica that freezes (SIGSTOP, a VM pause, a silent partition) has its session ended by
//! the server after the lease. Before that can happen, the frozen replica has already
//! **fenced itself**: a unit checks its [`Fence`] before each commit, and the fence is
//! broken once no heartbeat has succeeded for lease − margin, counted from the
//! heartbeat's send time ([`fence`]). The data fences stay as they were: the checkpoint
//! row `FOR UPDATE` and "stored checkpoint ahead of mine → roll back".
//!
//! **Balance**: a replica holds at most ⌈units / live⌉ of each kind, `live` being the
//! replicas alive with that role (lease connections in `pg_stat_activity`); it releases
//! the extras when more replicas appear ([`fair_share`]). A released unit is announced
//! with a NOTIFY so that another replica claims it at once instead of at its next poll.
//!
//! On SQLite there is one process (`sqlite_lock` refuses a second one on the same file),
//! no lease and no claim: that process runs every unit, under the same runner.
//!
//! Parts: [`member`] (the lease connection, claims, balance, unit tasks), [`fence`] (the
//! lease clock and the fence token), [`observe`] (who holds what, for the `cluster`
//! query, `/metrics` and `ordergraph projections status`), [`sqlite_lock`], and
//! [`backstop`] (a replica's checkpoints kept fresh from the table).

pub mod backstop;
pub mod fence;
pub mod member;
pub mod observe;
pub mod sqlite_lock;

use std::fmt;
use std::str::FromStr;

pub use fence::{Fence, Fenced};
use uuid::Uuid;

/// First key of every unit's advisory lock ("ogun"): keeps them apart from other users of
/// advisory locks (the migration lock, the writers' stream locks).
pub const NAMESPACE: i32 = 0x6f67_756e;

/// The `application_name` prefix of every lease connection.
pub const APPLICATION_PREFIX: &str = "ordergraph/";

/// The channel a graceful release is announced on.
pub const RELEASE_CHANNEL: &str = "ordergraph_units";

/// What a replica does. `api` is informational (every replica serves HTTP: health,
/// readiness and metrics need it); `projector`, `saga` and `publisher` say which units it
/// may claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub api: bool,
    pub projector: bool,
    pub saga: bool,
    pub publisher: bool,
}

impl Default for Roles {
    fn default() -> Self {
        Self {
            api: true,
            projector: true,
            saga: true,
            publisher: true,
        }
    }
}

impl Roles {
    /// Whether this replica may claim units of `kind`.
    pub fn claims(&self, kind: Kind) -> bool {
        match kind {
            Kind::Projector => self.projector,
            Kind::Saga => self.saga,
            Kind::Publisher => self.publisher,
        }
    }

    /// Whether these are the default roles (everything), the only ones SQLite allows.
    pub fn is_everything(&self) -> bool {
        *self == Self::default()
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = [
            (self.api, "api"),
            (self.projector, "projector"),
            (self.saga, "saga"),
            (self.publisher, "publisher"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect();
        f.write_str(&names.join(","))
    }
}

impl FromStr for Roles {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        const NONE: Roles = Roles {
            api: false,
            projector: false,
            saga: false,
            publisher: false,
        };
        let mut roles = NONE;
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "api" => roles.api = true,
                "projector" => roles.projector = true,
                "saga" => roles.saga = true,
                "publisher" => roles.publisher = true,
                other => {
                    return Err(format!("unknown role {other:?} (known: {KNOWN_ROLES})"));
                }
            }
        }
        if roles == NONE {
            return Err(format!("no role given (known: {KNOWN_ROLES})"));
        }
        Ok(roles)
    }
}

/// This replica's name in the cluster: `application_name` of its lease connection, its
/// name in the `cluster` query. At most 48 characters of `[A-Za-z0-9._-]`, so that
/// `ordergraph/<id>` fits PostgreSQL's 63-byte `application_name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(String);

impl NodeId {
    pub const MAX_LEN: usize = 48;

    /// The default: `<hostname>-<pid>`, the host name cut to fit; `-2`, `-3`… added for
    /// the second and later services of one process (tests embed several).
    pub fn generate() -> Self {
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nth = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::env::var("HOSTNAME"))
            .unwrap_or_else(|_| "node".to_owned());
        let host: String = host
            .trim()
            .chars()
            .map(|c| if Self::allowed(c) { c } else { '-' })
            .take(Self::MAX_LEN - 24)
            .collect();
        let host = if host.is_empty() {
            "node".to_owned()
        } else {
            host
        };
        let suffix = if nth > 1 {
            format!("-{nth}")
        } else {
            String::new()
        };
        Self(format!("{host}-{}{suffix}", std::process::id()))
    }

    fn allowed(c: char) -> bool {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `application_name` of this node's lease connection.
    pub fn application_name(&self) -> String {
        format!("{APPLICATION_PREFIX}{}", self.0)
    }
}

impl FromStr for NodeId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() || s.len() > Self::MAX_LEN || !s.chars().all(Self::allowed) {
            return Err(format!(
                "a node id is 1 to {} characters of letters, digits, '.', '_' and '-'",
                Self::MAX_LEN
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// This replica as the `cluster` query describes it.
#[derive(Clone)]
pub struct ClusterInfo {
    pub node: NodeId,
    pub roles: Roles,
    /// Every unit of the service.
    pub units: Vec<Unit>,
    /// PostgreSQL (leases and claims) rather than SQLite (one process).
    pub leased: bool,
    pub started: chrono::DateTime<chrono::Utc>,
    pub state: std::sync::Arc<member::ClusterState>,
    /// How far this replica serves (its lag).
    pub serving: member::Serving,
}

/// The kinds of unit, each balanced on its own among the replicas with its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Projector,
    Saga,
    Publisher,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Projector, Kind::Saga, Kind::Publisher];
}

/// The names `ORDERGRAPH_ROLES` knows.
const KNOWN_ROLES: &str = "api, projector, saga, publisher";

/// One partition of the order saga: the orders whose id falls in it ([`Partition::of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    pub index: u16,
    pub count: u16,
}

impl Partition {
    /// Every partition of `count` (at least 1).
    pub fn all(count: u16) -> Vec<Partition> {
        let count = count.max(1);
        (0..count).map(|index| Partition { index, count }).collect()
    }

    /// The partition index of an order: its id's last two bytes modulo the count. Those
    /// bytes are random in every UUID the service makes (v4, and v7, whose first bytes
    /// are a timestamp), and PostgreSQL computes the same from a stored id
    /// ([`Partition::SQL_KEY`]), so a partition finds its own dead letters in SQL.
    pub fn index_of(order_id: Uuid, count: u16) -> u16 {
        let b = order_id.as_bytes();
        let key = u16::from_be_bytes([b[14], b[15]]);
        key % count.max(1)
    }

    /// Whether this partition handles the order `order_id`.
    pub fn owns(&self, order_id: Uuid) -> bool {
        Self::index_of(order_id, self.count) == self.index
    }

    /// The partition key of the `order_id` column in SQL (PostgreSQL), the same number
    /// as [`Partition::index_of`] before the modulo.
    pub const SQL_KEY: &'static str =
        "(get_byte(uuid_send(order_id), 14) * 256 + get_byte(uuid_send(order_id), 15))";
}

/// A unit of work: exactly one replica runs it at a time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    /// The projector of one view (its persisted projection name).
    Projector(&'static str),
    /// One partition of the order saga.
    Saga(Partition),
    /// The publisher of the log to the message broker (ADR 0016), when one is configured.
    Publisher,
}

impl Unit {
    /// The units of a service with these views and saga partitions, and the publisher
    /// when a broker is configured, in a stable order.
    pub fn all(views: &[&'static str], saga_partitions: u16, publisher: bool) -> Vec<Unit> {
        views
            .iter()
            .copied()
            .map(Unit::Projector)
            .chain(Partition::all(saga_partitions).into_iter().map(Unit::Saga))
            .chain(publisher.then_some(Unit::Publisher))
            .collect()
    }

    pub fn kind(&self) -> Kind {
        match self {
            Unit::Projector(_) => Kind::Projector,
            Unit::Saga(_) => Kind::Saga,
            Unit::Publisher => Kind::Publisher,
        }
    }

    /// Its name: `projector:catalog`, `saga:3`, `publisher`.
    pub fn name(&self) -> String {
        match self {
            Unit::Projector(view) => format!("projector:{view}"),
            Unit::Saga(p) => format!("saga:{}", p.index),
            Unit::Publisher => "publisher".to_owned(),
        }
    }

    /// The second key of its advisory lock: a 32-bit FNV-1a hash of its name (stable
    /// across builds and platforms, unlike `std`'s hasher).
    pub fn key(&self) -> i32 {
        let mut hash: u32 = 0x811c_9dc5;
        for byte in self.name().bytes() {
            hash ^= u32::from(byte);
            hash = hash.wrapping_mul(0x0100_0193);
        }
        i32::from_ne_bytes(hash.to_ne_bytes())
    }

    /// The key as `pg_locks.objid` shows it (an unsigned 32-bit `oid`).
    pub fn objid(&self) -> i64 {
        i64::from(u32::from_ne_bytes(self.key().to_ne_bytes()))
    }
}

/// The most units of one kind a replica may hold: ⌈units / live⌉, `live` counting the
/// replicas alive with the role (this one included, so never less than 1).
pub fn fair_share(units: usize, live: usize) -> usize {
    units.div_ceil(live.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fair_share_is_the_units_divided_by_the_live_replicas_rounded_up() {
        assert_eq!(fair_share(12, 1), 12);
        assert_eq!(fair_share(12, 3), 4);
        assert_eq!(
            fair_share(8, 3),
            3,
            "three replicas cover eight units: 3+3+2"
        );
        assert_eq!(fair_share(4, 3), 2);
        assert_eq!(
            fair_share(4, 5),
            1,
            "more replicas than units: one each at most"
        );
        assert_eq!(
            fair_share(4, 0),
            4,
            "this replica is alive even before it sees itself"
        );
        // Shares always cover every unit when every live replica takes its share.
        for units in 0..40 {
            for live in 1..10 {
                assert!(fair_share(units, live) * live >= units);
            }
        }
    }

    #[test]
    fn an_order_and_its_payment_events_fall_in_one_partition_by_the_order_id() {
        let order = Uuid::parse_str("0194c7f0-5a1b-7c3d-8e9f-0123456789ab").expect("a uuid");
        // The last two bytes: 0x89ab = 35243; 35243 % 8 = 3.
        assert_eq!(Partition::index_of(order, 8), 3);
        assert!(Partition { index: 3, count: 8 }.owns(order));
        assert!(!Partition { index: 2, count: 8 }.owns(order));
        assert_eq!(
            Partition::index_of(order, 1),
            0,
            "one partition owns everything"
        );
        assert_eq!(Partition::index_of(order, 0), 0, "zero is read as one");
        // Random ids spread over every partition.
        let mut seen = [0usize; 8];
        for _ in 0..4000 {
            seen[usize::from(Partition::index_of(Uuid::new_v4(), 8))] += 1;
            seen[usize::from(Partition::index_of(Uuid::now_v7(), 8))] += 1;
        }
        assert!(seen.iter().all(|n| *n > 600), "{seen:?}");
    }

    #[test]
    fn every_unit_has_its_own_lock_key() {
        let units = Unit::all(&["catalog", "cart", "orders", "dashboard"], 64, true);
        let mut keys: Vec<i32> = units.iter().map(Unit::key).collect();
        keys.sort_unstable();
        keys.dedup();
        assert_eq!(keys.len(), units.len());
        assert_eq!(Unit::Projector("catalog").name(), "projector:catalog");
        assert_eq!(
            Unit::Saga(Partition { index: 5, count: 8 }).name(),
            "saga:5"
        );
        // Pinned: a key is persisted in no table, but replicas of two builds must agree.
        assert_eq!(
            Unit::Projector("catalog").key(),
            Unit::Projector("catalog").key()
        );
        let objid = Unit::Saga(Partition { index: 0, count: 8 }).objid();
        assert!((0..=i64::from(u32::MAX)).contains(&objid));
    }

    #[test]
    fn roles_parse_from_a_comma_list_and_refuse_unknown_names() {
        assert_eq!(
            "api,projector,saga,publisher".parse::<Roles>(),
            Ok(Roles::default())
        );
        let api = "api".parse::<Roles>().expect("api alone");
        assert!(Kind::ALL.iter().all(|kind| !api.claims(*kind)));
        let publisher = "publisher".parse::<Roles>().expect("publisher alone");
        assert!(publisher.claims(Kind::Publisher) && !publisher.claims(Kind::Saga));
        assert_eq!(api.to_string(), "api");
        assert_eq!(
            " saga , api ".parse::<Roles>().map(|r| r.to_string()),
            Ok("api,saga".to_owned())
        );
        assert!("api,relay".parse::<Roles>().is_err());
        assert!("".parse::<Roles>().is_err());
    }

    #[test]
    fn node_ids_fit_the_application_name() {
        let generated = NodeId::generate();
        assert!(generated.as_str().len() <= NodeId::MAX_LEN);
        assert!(generated.as_str().parse::<NodeId>().is_ok());
        assert!(generated.application_name().len() <= 63);
        assert!("replica-1".parse::<NodeId>().is_ok());
        assert!("a b".parse::<NodeId>().is_err());
        assert!("x".repeat(49).parse::<NodeId>().is_err());
    }
}
