//! How far the log can be read: the *safe horizon*, below which every position is final
//! (committed, or rolled back for good), and the committed head. On PostgreSQL a
//! transaction can commit a lower position after another committed a higher one; readers
//! that must never skip an event read only up to the safe horizon (ADR 0001,
//! docs/adr/0001-relay-never-skips-a-late-commit.md). On SQLite one writer at a time
//! commits in position order, so the horizon is the maximum.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};

/// The highest position below which every event is final: committed (visible) or rolled
/// back (never visible).
///
/// `known` is a horizon already established (the lowest checkpoint): when nothing was
/// appended beyond it, no further work is needed.
pub async fn safe_horizon(db: &DatabaseConnection, known: i64) -> Result<i64, DbErr> {
    match db.get_database_backend() {
        DbBackend::Postgres => postgres_horizon(db, known).await,
        _ => committed_head(db).await,
    }
}

/// One process's readers of the log — the projectors, the saga's partitions, the
/// publisher — share their safe-horizon reads (through `log::shared::SharedLog`): a commit wakes them all at once, and one
/// read made after each of them asked answers them all, instead of one read (a scan of
/// `pg_stat_activity`, and a poll per writer still in flight) per reader per commit.
///
/// A read answers every request made *before it started*: whatever had committed when a
/// reader asked is below the horizon that read finds. Requests made while a read is in
/// flight wait for it, then share the next one; at most one read runs at a time.
///
/// A reader that only polls (nothing woke it: the backstop for commits nobody told this
/// process of) takes any read that started within its poll interval ([`recent`]): under
/// load the woken readers read all the time, and the polls of eight saga partitions no
/// longer queue reads of their own (each a wait for the writers in flight) in front of
/// theirs.
///
/// [`recent`]: Self::recent
pub struct SharedHorizon {
    db: DatabaseConnection,
    /// How many requests were ever made: request `n` is answered by a read that starts
    /// after the counter reached `n`.
    asked: AtomicU64,
    /// The last read (or the one in flight, while this is locked).
    last: tokio::sync::Mutex<Last>,
    /// This process's wake-up rings, counted (`Wakeup::subscribe`): rung after each
    /// commit a reader here is woken for, this process's or another replica's. `None`:
    /// every request is answered by tickets alone.
    rings: Option<tokio::sync::watch::Receiver<u64>>,
}

/// What a read of the horizon answers, and what it found.
#[derive(Default)]
struct Last {
    /// Every request numbered up to this one was made before it started.
    answers: u64,
    found: i64,
    started: Option<Instant>,
    /// The rings counted when it started: it sees every commit they rang for.
    rung: u64,
}

impl SharedHorizon {
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            asked: AtomicU64::new(0),
            last: tokio::sync::Mutex::default(),
            rings: None,
        }
    }

    /// Also answers readers woken by a ring of `rings` (see [`after_ring`]).
    ///
    /// [`after_ring`]: Self::after_ring
    pub fn ringing(mut self, rings: tokio::sync::watch::Receiver<u64>) -> Self {
        self.rings = Some(rings);
        self
    }

    /// A safe horizon read at most `within` ago (or now, when there was none), and
    /// whether this request read it: for a poll, which any recent read answers as well
    /// as its own would.
    pub async fn recent(&self, known: i64, within: Duration) -> Result<(i64, bool), DbErr> {
        {
            // Waits for a read in flight, which is then the most recent.
            let last = self.last.lock().await;
            if last.started.is_some_and(|at| at.elapsed() <= within) {
                return Ok((last.found.max(known), false));
            }
        }
        self.get(known).await
    }

    /// For a reader woken by a ring (`ring`: the count it saw after it woke): any read
    /// that started after that ring sees the commit it rang for, so it answers this
    /// request too, though it started before the request. A commit wakes every reader of
    /// the process at once, and the first to run starts a read: the others, woken a few
    /// microseconds later, take that read instead of queueing a second one behind it
    /// (one round trip more on the path of every mutation's read-your-writes).
    pub async fn after_ring(&self, known: i64, ring: u64) -> Result<(i64, bool), DbErr> {
        if self.rings.is_none() {
            return self.get(known).await;
        }
        let mut last = self.last.lock().await;
        if last.started.is_some() && last.rung >= ring {
            return Ok((last.found.max(known), false));
        }
        self.read(&mut last, known).await
    }

    /// The safe horizon as of now (see [`safe_horizon`]; `known` as there), and whether
    /// this request read it from the database (`false`: another read answered it).
    pub async fn get(&self, known: i64) -> Result<(i64, bool), DbErr> {
        let ticket = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        let mut last = self.last.lock().await;
        if last.answers >= ticket {
            return Ok((last.found.max(known), false));
        }
        self.read(&mut last, known).await
    }

    /// Reads the horizon now, holding `last` (requests wait for this read).
    async fn read(&self, last: &mut Last, known: i64) -> Result<(i64, bool), DbErr> {
        // Every request numbered up to here was made, and every ring counted here rang,
        // before this read starts.
        let answers = self.asked.load(Ordering::SeqCst);
        let rung = self.rings.as_ref().map_or(0, |rings| *rings.borrow());
        let started = Instant::now();
        let found = safe_horizon(&self.db, known.max(last.found)).await?;
        *last = Last {
            answers,
            found: found.max(last.found),
            started: Some(started),
            rung,
        };
        Ok((last.found.max(known), true))
    }
}

/// The highest committed position, without waiting for anyone: on SQLite the safe
/// horizon itself; on PostgreSQL a lower position may still commit below it. For reports
/// from outside the server, which must never wait on another session's transaction.
pub async fn committed_head(db: &DatabaseConnection) -> Result<i64, DbErr> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COALESCE(MAX(position), 0) AS head FROM events",
        ))
        .await?;
    Ok(row
        .map(|r| r.try_get::<i64>("", "head"))
        .transpose()?
        .unwrap_or(0))
}

/// PostgreSQL: (1) read the last position handed out, L; (2) *then* list the xids of
/// the transactions running in this database. Every transaction that holds a position
/// ≤ L took its xid before it drew that position (the `events.position` default calls
/// `pg_current_xact_id()` first), so before L was read: if it is still running it is on
/// that list. (3) Wait until none of the listed transactions is running any more (no
/// longer in progress in a fresh snapshot). From then on every position ≤ L belongs to
/// a finished transaction, committed (visible) or rolled back (a gap forever).
/// Transactions that start later are not waited for, so a steady stream of writers
/// cannot starve the relay, and transactions of other databases on the same server are
/// never waited for. The wait never gives up on a slow transaction. Steps 1 and 2 are
/// one statement: a read costs one round trip, and one more per poll while a listed
/// writer is still in flight. (ADR 0001.)
async fn postgres_horizon(db: &DatabaseConnection, known: i64) -> Result<i64, DbErr> {
    let backend = DbBackend::Postgres;
    // Steps 1 and 2 in one round trip, still in that order: the list is a subquery that
    // depends on `L` (a parameter of the sub-plan, evaluated for the row `l` produced), so
    // it runs after `L` was read, and only when `L` is past `known`. `l` is MATERIALIZED
    // and calls a volatile function, so the planner neither inlines it nor evaluates it
    // twice. The statement runs outside any transaction, so `pg_stat_activity` is read
    // afresh (it is cached for a transaction's length). backend_xid is NULL for a
    // session without a writing transaction.
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            "WITH l AS MATERIALIZED (SELECT COALESCE(pg_sequence_last_value(\
                 pg_get_serial_sequence('events', 'position')), 0) AS last) \
             SELECT l.last, ARRAY(SELECT backend_xid::text FROM pg_stat_activity \
                 WHERE l.last > $1 AND datname = current_database() \
                 AND backend_xid IS NOT NULL AND pid <> pg_backend_pid()) AS running \
             FROM l",
            [known.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("no answer to the horizon read".into()))?;
    let last: i64 = row.try_get("", "last")?;
    if last <= known {
        return Ok(known);
    }
    let running: Vec<String> = row.try_get("", "running")?;
    if running.is_empty() {
        return Ok(last);
    }
    // Still running: not visible in a fresh snapshot (`pg_visible_in_snapshot`: at or
    // past its xmax, or in its in-progress list). A snapshot is what every statement
    // takes anyway, where `pg_stat_activity` copies every backend's status and query
    // text: this poll runs while writers are in flight, which under load is most of the
    // time. `backend_xid` is 32 bits; it is widened to the xid8 within 2^31 of the
    // snapshot's xmax (a running transaction's xid is always that close).
    let still_running = Statement::from_sql_and_values(
        backend,
        "WITH s AS (SELECT pg_current_snapshot() AS snap, \
                    pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax), \
              w AS (SELECT s.snap, s.xmax, ((s.xmax >> 32) << 32) | x::bigint AS xid \
                    FROM s, unnest($1::text[]) AS x) \
         SELECT COUNT(*) AS n FROM w WHERE NOT pg_visible_in_snapshot( \
             (CASE WHEN xid > xmax + 2147483648 THEN xid - 4294967296 \
                   WHEN xid < xmax - 2147483648 THEN xid + 4294967296 \
                   ELSE xid END)::text::xid8, snap)",
        [sea_orm::Value::from(running)],
    );
    let mut pause = Duration::from_micros(200);
    loop {
        let n = db
            .query_one_raw(still_running.clone())
            .await?
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()?
            .unwrap_or(0);
        if n == 0 {
            return Ok(last);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::log::shared::tests::append;

    #[tokio::test]
    async fn every_reader_of_a_shared_horizon_sees_what_had_committed_when_it_asked() {
        let db = crate::db::in_memory().await;
        let horizon = Arc::new(SharedHorizon::new(db.clone()));
        assert_eq!(horizon.get(0).await.expect("a horizon"), (0, true));
        for _ in 1..=20 {
            let position = append(&db, "Product", "ProductStockAdjusted").await;
            // Many readers at once after the commit, as a commit wakes them all.
            let readers: Vec<_> = (0..16)
                .map(|i| {
                    let horizon = horizon.clone();
                    // Some know the position before it, some nothing.
                    let known = (i % 2) * (position - 1);
                    tokio::spawn(async move { horizon.get(known).await })
                })
                .collect();
            let mut reads = 0;
            for reader in readers {
                let (seen, read) = reader.await.expect("a reader").expect("a horizon");
                assert_eq!(seen, position, "after the commit of position {position}");
                reads += usize::from(read);
            }
            // One read for the first reader, one for those who asked while it ran.
            assert!(reads <= 3, "{reads} reads for 16 readers");
        }
        // What a reader already knows is never taken back.
        assert_eq!(horizon.get(99).await.expect("a horizon").0, 99);
    }

    /// A reader woken by a ring takes a read that started after the ring, even one that
    /// started before it asked; a read that started before the ring never answers it,
    /// and a request by ticket (a poll, the first tick) still reads for itself.
    #[tokio::test]
    async fn a_reader_woken_by_a_ring_takes_any_read_that_started_after_the_ring() {
        let db = crate::db::in_memory().await;
        let (rings, rx) = tokio::sync::watch::channel(0u64);
        let horizon = SharedHorizon::new(db.clone()).ringing(rx);
        assert_eq!(horizon.get(0).await.expect("a horizon"), (0, true));
        let first = append(&db, "Product", "ProductStockAdjusted").await;
        rings.send_modify(|n| *n += 1);
        // The first reader woken by ring 1 reads; the others woken by it take that read.
        assert_eq!(
            horizon.after_ring(0, 1).await.expect("a horizon"),
            (first, true)
        );
        assert_eq!(
            horizon.after_ring(0, 1).await.expect("a horizon"),
            (first, false)
        );
        // A request by ticket was made after that read started: it reads.
        assert_eq!(horizon.get(0).await.expect("a horizon"), (first, true));
        // The next commit rings again: the reads before that ring do not answer it.
        let second = append(&db, "Product", "ProductStockAdjusted").await;
        rings.send_modify(|n| *n += 1);
        assert_eq!(
            horizon.after_ring(first, 2).await.expect("a horizon"),
            (second, true)
        );
        // Without rings to count, a woken reader is answered as a request by ticket.
        let plain = SharedHorizon::new(db.clone());
        assert_eq!(
            plain.after_ring(0, 1).await.expect("a horizon"),
            (second, true)
        );
        assert_eq!(
            plain.after_ring(0, 1).await.expect("a horizon"),
            (second, true)
        );
    }

    /// A poll takes any read that started within its interval, and reads when there
    /// was none: it never answers with nothing read at all.
    #[tokio::test]
    async fn a_poll_takes_a_recent_read_and_reads_when_there_is_none() {
        let db = crate::db::in_memory().await;
        let horizon = SharedHorizon::new(db.clone());
        let within = Duration::from_secs(3600);
        assert_eq!(
            horizon.recent(0, within).await.expect("a horizon"),
            (0, true)
        );
        let position = append(&db, "Product", "ProductStockAdjusted").await;
        // Read an hour ago at the most: the poll takes the earlier read.
        assert_eq!(
            horizon.recent(0, within).await.expect("a horizon"),
            (0, false)
        );
        // A woken reader reads, and a poll takes what it found.
        assert_eq!(horizon.get(0).await.expect("a horizon"), (position, true));
        assert_eq!(
            horizon.recent(0, within).await.expect("a horizon"),
            (position, false)
        );
        // Nothing recent enough: the poll reads.
        let position = append(&db, "Product", "ProductStockAdjusted").await;
        assert_eq!(
            horizon.recent(0, Duration::ZERO).await.expect("a horizon"),
            (position, true)
        );
    }
}
