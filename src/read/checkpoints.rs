//! How far each projection has folded the log, in memory for waiters (read-your-writes
//! waits on these, never on a sleep) and in `projection_checkpoints` for restarts. In
//! memory they move with this process's folds and, on PostgreSQL, with the doorbells of
//! every replica's folds (`read::doorbell`): always to a position whose fold has
//! committed, never back.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait};
use tokio::sync::watch;

use crate::entity::projection_checkpoints;

pub struct Checkpoints {
    by_name: HashMap<&'static str, watch::Sender<i64>>,
    /// Per view, a count of the moments its rows may have changed (`changed`,
    /// `invalidate`): what an in-memory copy of its rows is valid for (`read::cache`).
    epochs: HashMap<&'static str, Epochs>,
}

/// The most keys remembered as touched, per view, before they are all forgotten at once
/// (every copy read before then is dropped, as when the changed keys are unknown).
pub(super) const TOUCHED_KEYS: usize = 16_384;

/// A view's epoch, and which of its keys changed at which epoch.
#[derive(Default)]
struct Epochs {
    count: AtomicU64,
    /// Whether anyone keeps copies of single rows of the view (`keep_keys`): only then are
    /// the keys a fold names remembered; otherwise every fold moves every row's epoch.
    keyed: AtomicBool,
    touched: Mutex<Touched>,
}

/// Which keys changed at which epoch since `wiped`; before `wiped`, any key may have.
#[derive(Default)]
struct Touched {
    at: HashMap<String, u64>,
    wiped: u64,
}

impl Checkpoints {
    /// Loads the persisted checkpoint of each named projection (0 when new).
    pub async fn load<C: ConnectionTrait>(db: &C, names: &[&'static str]) -> Result<Self, DbErr> {
        let rows = projection_checkpoints::Entity::find().all(db).await?;
        Ok(Self::at(names, |name| {
            rows.iter()
                .find(|r| r.name == name)
                .map_or(0, |r| r.position)
        }))
    }

    /// The checkpoints of the named projections, each at `position(name)`.
    pub fn at(names: &[&'static str], position: impl Fn(&str) -> i64) -> Self {
        let by_name = names
            .iter()
            .map(|name| (*name, watch::Sender::new(position(name))))
            .collect();
        let epochs = names
            .iter()
            .map(|name| (*name, Epochs::default()))
            .collect();
        Self { by_name, epochs }
    }

    /// The view's rows may have changed up to `position` (a fold of its events
    /// committed, here or on another replica; a rebuild swapped it): its epoch moves
    /// first, then its checkpoint. A copy of its rows read in an earlier epoch is never
    /// served again, so whoever sees the checkpoint at `position` (read-your-writes)
    /// reads rows at least that new.
    pub fn changed(&self, name: &str, position: i64) {
        self.invalidate(name);
        self.advance(name, position);
    }

    /// [`changed`](Self::changed) when the fold says which rows it changed: `keys`, the
    /// keys of its announced changes, which name every row it wrote. Only copies of
    /// those rows are dropped (`fresh`); copies of the others stay valid.
    pub fn changed_keys<'k>(
        &self,
        name: &str,
        position: i64,
        keys: impl ExactSizeIterator<Item = &'k str>,
    ) {
        self.touch(name, Some(keys));
        self.advance(name, position);
    }

    /// Someone keeps copies of single rows of the view `name` and asks whether each is
    /// [`fresh`](Self::fresh): from now on the keys its folds name are remembered
    /// (`changed_keys`). For every other view they are not, which costs its folds nothing.
    pub fn keep_keys(&self, name: &str) {
        if let Some(epochs) = self.epochs.get(name) {
            epochs.keyed.store(true, Ordering::SeqCst);
        }
    }

    /// The view's rows may have changed without its checkpoint moving (a rebuild's swap
    /// ended where it started): copies of them are dropped.
    pub fn invalidate(&self, name: &str) {
        self.touch(name, None::<std::iter::Empty<&str>>);
    }

    /// Moves the view's epoch, noting which keys changed at it (`None`: any may have).
    /// Under the lock, so that whoever sees the new epoch and asks `fresh` sees the keys.
    /// Returns the epoch it moved to (0 for a view it does not know). The relay's fold
    /// calls it itself to keep the rows it wrote in that epoch *before* it advances the
    /// checkpoint (`advance`), so that a mutation woken by the checkpoint finds them.
    pub fn touch<'k>(
        &self,
        name: &str,
        keys: Option<impl ExactSizeIterator<Item = &'k str>>,
    ) -> u64 {
        let Some(epochs) = self.epochs.get(name) else {
            return 0;
        };
        let mut touched = epochs
            .touched
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let epoch = epochs.count.fetch_add(1, Ordering::SeqCst) + 1;
        let keyed = epochs.keyed.load(Ordering::SeqCst);
        match keys {
            Some(keys) if keyed && touched.at.len() + keys.len() <= TOUCHED_KEYS => {
                for key in keys {
                    match touched.at.get_mut(key) {
                        Some(at) => *at = epoch,
                        None => {
                            touched.at.insert(key.to_owned(), epoch);
                        }
                    }
                }
            }
            _ => {
                touched.at.clear();
                touched.wiped = epoch;
            }
        }
        epoch
    }

    /// How many times the view's rows may have changed so far: a copy read after this
    /// was read is valid while it stays the same.
    pub fn epoch(&self, name: &str) -> u64 {
        self.epochs
            .get(name)
            .map_or(0, |epoch| epoch.count.load(Ordering::SeqCst))
    }

    /// Whether a copy of the view's row `key`, read after `epoch` was, is still what the
    /// view holds: no change of that row (or of unknown rows) became visible since.
    pub fn fresh(&self, name: &str, key: &str, epoch: u64) -> bool {
        let Some(epochs) = self.epochs.get(name) else {
            return false;
        };
        let touched = epochs
            .touched
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        epoch >= touched.wiped && touched.at.get(key).is_none_or(|at| *at <= epoch)
    }

    pub fn get(&self, name: &str) -> i64 {
        self.by_name.get(name).map_or(0, |tx| *tx.borrow())
    }

    /// Announces a committed checkpoint to waiters.
    pub fn advance(&self, name: &str, position: i64) {
        if let Some(tx) = self.by_name.get(name) {
            tx.send_if_modified(|p| {
                let moved = position > *p;
                if moved {
                    *p = position;
                }
                moved
            });
        }
    }

    /// A receiver of projection `name`'s checkpoint, told of each move from now on.
    pub fn watch(&self, name: &str) -> Option<watch::Receiver<i64>> {
        self.by_name.get(name).map(watch::Sender::subscribe)
    }

    /// Waits until projection `name` has reached `position`; `false` on timeout.
    pub async fn wait_for(&self, name: &str, position: i64, timeout: Duration) -> bool {
        let Some(tx) = self.by_name.get(name) else {
            return false;
        };
        let mut rx = tx.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|p| *p >= position))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// The persisted checkpoint of one consumer (0 when new).
pub async fn load_one<C: ConnectionTrait>(db: &C, name: &str) -> Result<i64, DbErr> {
    Ok(projection_checkpoints::Entity::find_by_id(name.to_owned())
        .one(db)
        .await?
        .map_or(0, |r| r.position))
}

/// Makes sure every named projection has its checkpoint row, so that the row can be
/// locked (`lock`) from the first fold on.
pub async fn ensure<C: ConnectionTrait>(db: &C, names: &[&'static str]) -> Result<(), DbErr> {
    for name in names {
        projection_checkpoints::Entity::insert(row(name, 0, None))
            .on_conflict_do_nothing_on([projection_checkpoints::Column::Name])
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Makes sure the checkpoint row `name` exists, at `position` when it is new (an
/// existing row is left as it is).
pub async fn ensure_at<C: ConnectionTrait>(db: &C, name: &str, position: i64) -> Result<(), DbErr> {
    projection_checkpoints::Entity::insert(row(name, position, None))
        .on_conflict_do_nothing_on([projection_checkpoints::Column::Name])
        .exec(db)
        .await?;
    Ok(())
}

/// How a transaction holds a projection's checkpoint row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// The view is about to be written (the relay's fold, a rebuild's swap).
    Update,
    /// The view is being read as of this checkpoint and must not move (a verify).
    Share,
}

/// Reads a projection's stored checkpoint and locks its row until the transaction ends:
/// whoever writes a view (the relay, a rebuild's swap, in this process or another) takes
/// this lock first, so they take turns and each sees where the other left the view. On
/// SQLite the write transaction itself is the lock (it is IMMEDIATE).
pub async fn lock<C: ConnectionTrait>(txn: &C, name: &str, hold: Hold) -> Result<i64, DbErr> {
    let backend = txn.get_database_backend();
    let suffix = match (backend, hold) {
        (sea_orm::DbBackend::Postgres, Hold::Update) => " FOR UPDATE",
        (sea_orm::DbBackend::Postgres, Hold::Share) => " FOR SHARE",
        _ => "",
    };
    let position = sea_orm::Statement::from_sql_and_values(
        backend,
        format!(
            "SELECT position FROM projection_checkpoints WHERE name = {}{suffix}",
            match backend {
                sea_orm::DbBackend::Postgres => "$1",
                _ => "?",
            }
        ),
        [name.into()],
    );
    Ok(crate::db::scalar::<i64>(txn, position, "position")
        .await?
        .unwrap_or(0))
}

/// The first statement of a fold that writes a projection's view from `from` up to
/// `upto`: moves the stored checkpoint to `upto` unless it is past `from` already, and
/// holds its row until the transaction ends, as [`lock`] does (on PostgreSQL the UPDATE
/// waits for another holder and re-reads the row it committed). One round trip where
/// `lock` before the fold and `store` after it took two; a rollback undoes it with the
/// view. `Some(stored)` when the view was past `from` already (someone else folded these
/// events): nothing was moved, and the caller rolls back.
pub async fn claim<C: ConnectionTrait>(
    txn: &C,
    name: &str,
    from: i64,
    upto: i64,
) -> Result<Option<i64>, DbErr> {
    if move_from(txn, name, from, upto).await? {
        return Ok(None);
    }
    // Past `from`, or no row yet (`ensure` makes them; a row deleted by hand).
    let stored = lock(txn, name, Hold::Update).await?;
    if stored > from {
        return Ok(Some(stored));
    }
    store(txn, name, upto).await?;
    Ok(None)
}

/// Moves the stored checkpoint `name` forward to `position` in one statement, outside any
/// transaction, when it is behind `position`: a consumer that writes no view (the order
/// saga's partitions) records how far it got this way, one round trip where a
/// transaction of lock, store and commit took four. `false` when no row moved (it is at
/// or past `position` already, or missing): the caller takes the transactional way,
/// which tells the two apart.
pub async fn advance_past<C: ConnectionTrait>(
    db: &C,
    name: &str,
    position: i64,
) -> Result<bool, DbErr> {
    move_from(db, name, position - 1, position).await
}

/// Moves the stored checkpoint `name` to `upto` (clearing a recorded failure) if it is
/// at or before `from`; whether a row moved.
async fn move_from<C: ConnectionTrait>(
    db: &C,
    name: &str,
    from: i64,
    upto: i64,
) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    let sql = crate::db::numbered(
        backend,
        "UPDATE projection_checkpoints SET position = ?, updated_at = ?, \
         failed_position = NULL, error = NULL \
         WHERE name = ? AND position <= ? RETURNING position",
    );
    let moved = sea_orm::Statement::from_sql_and_values(
        backend,
        sql,
        [upto.into(), Utc::now().into(), name.into(), from.into()],
    );
    Ok(db.query_one_raw(moved).await?.is_some())
}

/// Persists a checkpoint inside the projection's transaction.
pub async fn store<C: ConnectionTrait>(txn: &C, name: &str, position: i64) -> Result<(), DbErr> {
    use projection_checkpoints::Column;
    upsert(
        txn,
        row(name, position, None),
        &[
            Column::Position,
            Column::UpdatedAt,
            Column::FailedPosition,
            Column::Error,
        ],
    )
    .await
}

/// A checkpoint row at `position`, with the event it failed at and the error, if any.
fn row(
    name: &str,
    position: i64,
    failure: Option<(i64, &str)>,
) -> projection_checkpoints::ActiveModel {
    projection_checkpoints::ActiveModel {
        name: Set(name.to_owned()),
        position: Set(position),
        updated_at: Set(Utc::now()),
        failed_position: Set(failure.map(|(at, _)| at)),
        error: Set(failure.map(|(_, error)| error.to_owned())),
    }
}

/// Inserts `row`, or updates `columns` of the projection's existing row.
async fn upsert<C: ConnectionTrait>(
    db: &C,
    row: projection_checkpoints::ActiveModel,
    columns: &[projection_checkpoints::Column],
) -> Result<(), DbErr> {
    let key = [projection_checkpoints::Column::Name];
    crate::db::upsert(db, row, key, columns.iter().copied()).await
}

/// Records that a projection stopped at the event at `failed_position` (its checkpoint
/// stays `position`, just before it).
pub async fn store_failure<C: ConnectionTrait>(
    db: &C,
    name: &str,
    position: i64,
    failed_position: i64,
    error: &str,
) -> Result<(), DbErr> {
    use projection_checkpoints::Column;
    upsert(
        db,
        row(name, position, Some((failed_position, error))),
        &[Column::FailedPosition, Column::Error],
    )
    .await
}

/// Every stored checkpoint row (for the status table outside the server).
pub async fn all<C: ConnectionTrait>(db: &C) -> Result<Vec<projection_checkpoints::Model>, DbErr> {
    projection_checkpoints::Entity::find().all(db).await
}
