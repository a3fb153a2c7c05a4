//! Supervision of the background tasks (the relay, the order saga, the live views hub and
//! the event feed), all together: a task that dies, by an error or a panic, is logged with
//! its cause, shown by `/readyz` (503, naming it) and started again after a backoff; it
//! counts as up again once its new run says it is ([`TaskHealth::ready`]), so `/readyz`
//! stays 503 for as long as the cause does. A task may also ask for the whole service to
//! stop ([`Failure::Stop`]): the saga's injected faults, which play a crashed process.
//! Why restart rather than stop the process: ADR 0006.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

/// Delay before the first restart of a task; it doubles while the task keeps dying
/// without having come up, up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(50);
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How a task's run ended badly.
#[derive(Debug)]
pub enum Failure {
    /// Start it again after a backoff.
    Restart(anyhow::Error),
    /// Stop the whole service (a simulated crash).
    Stop(anyhow::Error),
}

impl Failure {
    /// Start it again after a backoff, for this cause.
    pub fn restart(cause: impl Into<anyhow::Error>) -> Self {
        Failure::Restart(cause.into())
    }
}

/// One task as `/readyz` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Down {
    pub name: &'static str,
    /// Runs that died since it was last up.
    pub deaths: u32,
}

/// The tasks that are down, shared by the supervisor and `/readyz`.
#[derive(Default)]
pub struct Tasks {
    down: Mutex<BTreeMap<&'static str, u32>>,
}

impl Tasks {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<&'static str, u32>) -> T) -> T {
        f(&mut self.down.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The tasks down now, by name.
    pub fn down(&self) -> Vec<Down> {
        self.with(|down| {
            down.iter()
                .map(|(name, deaths)| Down {
                    name,
                    deaths: *deaths,
                })
                .collect()
        })
    }
}

/// A task's handle on its own health: it calls [`TaskHealth::ready`] when a run has
/// done what proves it works (a relay tick, a retried change delivered).
#[derive(Clone)]
pub struct TaskHealth {
    name: &'static str,
    tasks: Arc<Tasks>,
    /// Set while the task is down: `ready` is a load and nothing more when it is up.
    down: Arc<AtomicBool>,
}

impl TaskHealth {
    pub fn ready(&self) {
        if self.down.swap(false, Ordering::AcqRel) {
            self.tasks.with(|down| down.remove(self.name));
            tracing::info!(task = self.name, "background task is up again");
        }
    }

    fn died(&self) -> u32 {
        self.down.store(true, Ordering::Release);
        self.tasks.with(|down| {
            let deaths = down.entry(self.name).or_default();
            *deaths += 1;
            *deaths
        })
    }

    fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }
}

/// Runs the background tasks until `stop` flips to true.
pub struct Supervisor {
    tasks: Arc<Tasks>,
    stop: watch::Receiver<bool>,
    running: JoinSet<anyhow::Result<()>>,
}

impl Supervisor {
    pub fn new(tasks: Arc<Tasks>, stop: watch::Receiver<bool>) -> Self {
        Self {
            tasks,
            stop,
            running: JoinSet::new(),
        }
    }

    /// Supervises the task `name`: `start` makes one run of it, which ends when `stopped`
    /// (the future `start` receives) resolves.
    pub fn spawn<F, Fut>(&mut self, name: &'static str, mut start: F)
    where
        F: FnMut(TaskHealth, Stopped) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), Failure>> + Send + 'static,
    {
        let health = TaskHealth {
            name,
            tasks: self.tasks.clone(),
            down: Arc::new(AtomicBool::new(false)),
        };
        let mut stop = self.stop.clone();
        self.running.spawn(async move {
            let mut backoff = FIRST_BACKOFF;
            loop {
                let run = tokio::spawn(start(health.clone(), Stopped(stop.clone())));
                let ended = run.await;
                if *stop.borrow() {
                    return Ok(());
                }
                let error = match ended {
                    Ok(Ok(())) => anyhow::anyhow!("it returned before shutdown"),
                    Ok(Err(Failure::Restart(e))) => e,
                    Ok(Err(Failure::Stop(e))) => {
                        return Err(e.context(format!("background task {name}")));
                    }
                    Err(e) => match e.try_into_panic() {
                        Ok(panic) => anyhow::anyhow!("it panicked: {}", panic_text(&*panic)),
                        Err(e) => anyhow::anyhow!("it was cancelled: {e}"),
                    },
                };
                // Up since the last restart: this is a new failure, not the same one again.
                if !health.is_down() {
                    backoff = FIRST_BACKOFF;
                }
                let deaths = health.died();
                tracing::error!(
                    task = name,
                    deaths,
                    restart_in_ms = backoff.as_millis() as u64,
                    error = format!("{error:#}"),
                    "background task died; restarting it"
                );
                tokio::select! {
                    _ = stop.wait_for(|stop| *stop) => return Ok(()),
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        });
    }

    /// Resolves with the error of a task that stopped the service; never otherwise
    /// before shutdown.
    pub async fn failed(&mut self) -> anyhow::Error {
        loop {
            match self.running.join_next().await {
                Some(Ok(Err(e))) => return e,
                Some(Err(e)) => return anyhow::anyhow!("a supervisor failed: {e}"),
                Some(Ok(Ok(()))) => {}
                None => std::future::pending::<()>().await,
            }
        }
    }

    /// Waits for every task to end (after `stop` flipped).
    pub async fn join(mut self) {
        while self.running.join_next().await.is_some() {}
    }
}

/// Resolves when the service stops: what each run of a task is given to end on.
#[derive(Clone)]
pub struct Stopped(watch::Receiver<bool>);

impl Stopped {
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }

    /// Whether the service is stopping.
    pub fn now(&self) -> bool {
        *self.0.borrow()
    }

    /// The flag itself, for a task that watches it.
    pub fn receiver(&self) -> watch::Receiver<bool> {
        self.0.clone()
    }
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[tokio::test]
    async fn a_task_that_panics_is_down_until_a_new_run_says_it_is_up() {
        let tasks = Arc::new(Tasks::default());
        let (stop_tx, stop) = watch::channel(false);
        let mut supervisor = Supervisor::new(tasks.clone(), stop);
        let runs = Arc::new(AtomicU32::new(0));
        let (fixed_tx, fixed) = watch::channel(false);
        let counted = runs.clone();
        supervisor.spawn("flaky", move |health, stopped| {
            let run = counted.fetch_add(1, Ordering::SeqCst);
            let mut fixed = fixed.clone();
            async move {
                if run == 0 {
                    panic!("the first run dies");
                }
                // Later runs fail until the cause is fixed, then come up.
                if !*fixed.borrow_and_update() {
                    return Err(Failure::Restart(anyhow::anyhow!("still broken")));
                }
                health.ready();
                stopped.wait().await;
                Ok(())
            }
        });
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while runs.load(Ordering::SeqCst) < 3 {
            assert!(tokio::time::Instant::now() < deadline, "restarted");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(tasks.down()[0].name, "flaky");
        assert!(tasks.down()[0].deaths >= 2);
        fixed_tx.send_replace(true);
        while !tasks.down().is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "up again");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop_tx.send_replace(true);
        supervisor.join().await;
    }

    #[tokio::test]
    async fn a_task_that_asks_to_stop_the_service_stops_it() {
        let tasks = Arc::new(Tasks::default());
        let (_stop_tx, stop) = watch::channel(false);
        let mut supervisor = Supervisor::new(tasks, stop);
        supervisor.spawn("crashing", |_, _| async {
            Err(Failure::Stop(anyhow::anyhow!("a simulated crash")))
        });
        let error = supervisor.failed().await;
        assert!(
            format!("{error:#}").contains("a simulated crash"),
            "{error:#}"
        );
        assert!(format!("{error:#}").contains("crashing"), "{error:#}");
    }
}
