//! Each projection's status as operators see it (`projections`, `/readyz`, `/metrics`):
//! running, rebuilding, or failed at an event with its error. A failed projection stops
//! at that event (it never skips it); the others go on. It resumes from that event after
//! the cause is fixed and the service restarted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr};

use super::checkpoints::Checkpoints;
use crate::log::reader::Span;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Running,
    Rebuilding,
    Failed,
}

#[derive(Debug, Clone)]
struct Entry {
    state: State,
    error: Option<String>,
    failed_position: Option<i64>,
    updated_at: Option<DateTime<Utc>>,
}

/// One line of the status table.
#[derive(Debug, Clone)]
pub struct Report {
    pub name: &'static str,
    pub position: i64,
    pub head: i64,
    pub lag: i64,
    pub lag_millis: i64,
    pub state: State,
    pub error: Option<String>,
    pub failed_position: Option<i64>,
    pub updated_at: Option<DateTime<Utc>>,
}

pub struct Statuses {
    entries: Mutex<BTreeMap<&'static str, Entry>>,
    head: AtomicI64,
    checkpoints: Arc<Checkpoints>,
}

impl Statuses {
    pub fn new(names: &[&'static str], checkpoints: Arc<Checkpoints>) -> Self {
        let entries = names
            .iter()
            .map(|name| {
                (
                    *name,
                    Entry {
                        state: State::Running,
                        error: None,
                        failed_position: None,
                        updated_at: None,
                    },
                )
            })
            .collect();
        Self {
            entries: Mutex::new(entries),
            head: AtomicI64::new(0),
            checkpoints,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<&'static str, Entry>) -> T) -> T {
        f(&mut self.entries.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn set_head(&self, head: i64) {
        self.head.fetch_max(head, Ordering::Relaxed);
    }

    pub fn head(&self) -> i64 {
        self.head.load(Ordering::Relaxed)
    }

    /// The projection's checkpoint moved.
    pub fn advanced(&self, name: &str) {
        self.with(|e| {
            if let Some(entry) = e.get_mut(name) {
                entry.updated_at = Some(Utc::now());
            }
        });
    }

    /// The projection cannot fold the event at `position`: it stops there.
    pub fn failed(&self, name: &str, position: i64, error: String) {
        self.with(|e| {
            if let Some(entry) = e.get_mut(name) {
                entry.state = State::Failed;
                entry.failed_position = Some(position);
                entry.error = Some(error);
            }
        });
    }

    /// A rebuild replaced the view of a failed projection: it runs again from the
    /// rebuild's checkpoint.
    pub fn recovered(&self, name: &str) {
        self.with(|e| {
            if let Some(entry) = e.get_mut(name) {
                entry.state = State::Running;
                entry.failed_position = None;
                entry.error = None;
                entry.updated_at = Some(Utc::now());
            }
        });
    }

    pub fn set_rebuilding(&self, name: &str, rebuilding: bool) {
        self.with(|e| {
            if let Some(entry) = e.get_mut(name)
                && entry.state != State::Failed
            {
                entry.state = if rebuilding {
                    State::Rebuilding
                } else {
                    State::Running
                };
            }
        });
    }

    /// The projections' names.
    pub fn names(&self) -> Vec<&'static str> {
        self.with(|e| e.keys().copied().collect())
    }

    pub fn is_failed(&self, name: &str) -> bool {
        self.with(|e| {
            e.get(name)
                .is_some_and(|entry| entry.state == State::Failed)
        })
    }

    /// The failed projections: name, position and error.
    pub fn failures(&self) -> Vec<(&'static str, i64, String)> {
        self.with(|e| {
            e.iter()
                .filter(|(_, entry)| entry.state == State::Failed)
                .map(|(name, entry)| {
                    (
                        *name,
                        entry.failed_position.unwrap_or_default(),
                        entry.error.clone().unwrap_or_default(),
                    )
                })
                .collect()
        })
    }

    /// The status table as stored, read from outside the server (`ordergraph projections
    /// status`): checkpoints and recorded failures, and the log's committed head now (not
    /// the safe horizon: a report must not wait for the server's open transactions).
    pub async fn offline(
        db: &DatabaseConnection,
        log: &DatabaseConnection,
        names: &[&'static str],
    ) -> Result<Vec<Report>, DbErr> {
        let checkpoints = Arc::new(Checkpoints::load(db, names).await?);
        let statuses = Self::new(names, checkpoints);
        statuses.set_head(crate::log::horizon::committed_head(log).await?);
        for row in super::checkpoints::all(db).await? {
            let Some(name) = names.iter().find(|n| **n == row.name) else {
                continue;
            };
            statuses.with(|e| {
                if let Some(entry) = e.get_mut(name) {
                    entry.updated_at = Some(row.updated_at);
                }
            });
            if let (Some(at), Some(error)) = (row.failed_position, row.error) {
                statuses.failed(name, at, error);
            }
        }
        statuses.report(log).await
    }

    /// The status table, with each projection's lag counted in the log: the events of
    /// the log it wants and has not folded yet (a view is not behind an event that cannot
    /// change it, even where its stored checkpoint has not moved past that event).
    pub async fn report(&self, db: &DatabaseConnection) -> Result<Vec<Report>, DbErr> {
        let head = self.head();
        let entries = self.with(|e| e.clone());
        let projections = super::all_projections();
        let mut out = Vec::with_capacity(entries.len());
        for (name, entry) in entries {
            let position = self.checkpoints.get(name);
            let (lag, lag_millis) = if position >= head {
                (0, 0)
            } else {
                let written;
                let mut behind = Span::new(position, head);
                if let Some(projection) = projections.iter().find(|p| p.name() == name) {
                    written = super::written_by(projection.as_ref());
                    behind = behind.wanted(&written);
                }
                let lag = behind.count(db).await?;
                let oldest = behind.first(db).await?.map_or(0, |e| {
                    (Utc::now() - e.recorded_at).num_milliseconds().max(0)
                });
                (i64::try_from(lag).unwrap_or(i64::MAX), oldest)
            };
            out.push(Report {
                name,
                position,
                head: head.max(position),
                lag,
                lag_millis,
                state: entry.state,
                error: entry.error,
                failed_position: entry.failed_position,
                updated_at: entry.updated_at,
            });
        }
        Ok(out)
    }
}
