//! One serving process per SQLite file.
//!
//! SQLite is the embedded, single-process mode: the write gate, the relay, the saga and
//! the checkpoints read-your-writes waits on all live in one process's memory. A second
//! `ordergraph serve` on the same file would run a second relay and saga with no lease
//! between them. So a serving process takes an exclusive lock on `<database>.lock` next to
//! the file (`flock`, through `std::fs::File::try_lock`) and holds it until it exits; the
//! operating system frees it when the process dies, however it dies. A second process is
//! refused at start-up with a message that says why.
//!
//! Within one process the lock is shared: tests embed several `Application`s on one file
//! (in-process replicas), which share one address space and are not what this guards
//! against. `flock` locks belong to an open file description, so the process keeps one
//! description per file in a small registry and hands out shares of it.
//!
//! The command line's `projections` and `migrate` take no lock: they are designed to run
//! beside a server (they take turns with it through the checkpoint rows, ADR 0002).

use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use anyhow::Context as _;

/// This process's hold on a SQLite file; the lock goes with the last share.
#[derive(Debug, Clone)]
pub struct SqliteLock {
    _file: Arc<File>,
    pub path: PathBuf,
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Weak<File>>> {
    static HELD: OnceLock<Mutex<HashMap<PathBuf, Weak<File>>>> = OnceLock::new();
    HELD.get_or_init(Default::default)
}

/// The database file of a SQLite URL (`sqlite://path?mode=rwc`, `sqlite:path`); `None`
/// for an in-memory database.
pub fn database_file(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" || rest.contains("mode=memory") {
        return None;
    }
    Some(PathBuf::from(path))
}

/// Takes the exclusive lock of the SQLite database at `database`, or says who holds it.
pub fn acquire(database: &Path) -> anyhow::Result<SqliteLock> {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    let path = PathBuf::from(name);
    let mut held = registry().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(file) = held.get(&path).and_then(Weak::upgrade) {
        return Ok(SqliteLock { _file: file, path });
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => anyhow::bail!(
            "another ordergraph process is serving the SQLite database {} (it holds {}). \
             SQLite is the single-process mode: stop the other process, give this one \
             its own ORDERGRAPH_DATA_DIR, or run several replicas on PostgreSQL \
             (DATABASE_URL=postgres://…)",
            database.display(),
            path.display()
        ),
        Err(TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("locking {}", path.display()));
        }
    }
    let file = Arc::new(file);
    held.insert(path.clone(), Arc::downgrade(&file));
    Ok(SqliteLock { _file: file, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_file_is_read_from_the_url() {
        assert_eq!(
            database_file("sqlite:///tmp/x/ordergraph.db?mode=rwc"),
            Some(PathBuf::from("/tmp/x/ordergraph.db"))
        );
        assert_eq!(
            database_file("sqlite://./data/ordergraph.db?mode=rwc"),
            Some(PathBuf::from("./data/ordergraph.db"))
        );
        assert_eq!(database_file("sqlite::memory:"), None);
        assert_eq!(database_file("sqlite://db?mode=memory"), None);
        assert_eq!(database_file("postgres://x@y/z"), None);
    }

    #[test]
    fn one_process_shares_its_lock_and_another_open_description_is_refused() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = dir.path().join("test.db");
        let first = acquire(&db).expect("the first lock");
        let second = acquire(&db).expect("a share of it, in the same process");
        // What another process sees: a second open file description cannot lock it.
        let other = File::open(&first.path).expect("the lock file exists");
        assert!(matches!(other.try_lock(), Err(TryLockError::WouldBlock)));
        drop((first, second));
        other.try_lock().expect("free once every share is gone");
    }
}
