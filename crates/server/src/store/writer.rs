//! Write transactions, and group commit for SQLite.
//!
//! Every write operation of the store is a closure over one connection inside a
//! transaction ([`Store::write`]). On PostgreSQL each runs in a transaction of its own
//! from the pool. On SQLite, where there is one writer and every commit waits for an
//! fsync, a single task takes all operations waiting at that moment (up to
//! [`MAX_BATCH`]), runs each inside a savepoint of one transaction, commits once, and only
//! then answers every caller. An operation that fails rolls back to its savepoint and gets
//! its own error; the others are unaffected. If the commit fails, every operation of the
//! batch gets that failure and none of them happened. No caller is answered before its
//! change is durable, so the durability promise is the same as one commit per operation —
//! with one fsync per batch instead of one per operation.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sqlx::{Acquire, AnyConnection, AnyPool};
use tokio::sync::{mpsc, oneshot};

use super::{Result, Store, StoreError};

/// A boxed future borrowing the connection it runs on.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Most operations committed together.
pub const MAX_BATCH: usize = 128;

/// How many operations may wait for the writer before callers are held back.
const QUEUE: usize = 4096;

/// Answers a caller once the fate of its batch is known (`Some(reason)`: the commit
/// failed).
type Answer = Box<dyn FnOnce(Option<&str>) + Send>;

/// One queued operation: runs on the batch's connection, says whether it succeeded (so
/// its savepoint is released or rolled back) and how to answer its caller.
type Job = Box<dyn for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, (bool, Answer)> + Send>;

/// The queue in front of the SQLite writer task.
#[derive(Clone)]
pub(super) struct GroupCommit {
    jobs: mpsc::Sender<Job>,
    /// Transactions committed by the writer task so far.
    commits: Arc<AtomicU64>,
}

impl GroupCommit {
    /// Starts the writer task on `pool` (the single writer connection).
    pub(super) fn start(pool: AnyPool) -> Self {
        let (jobs, rx) = mpsc::channel(QUEUE);
        let commits = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(pool, rx, commits.clone()));
        Self { jobs, commits }
    }
}

impl Store {
    /// How many group-commit transactions the SQLite writer has committed (`None` on
    /// PostgreSQL, where each write commits on its own).
    pub fn group_commits(&self) -> Option<u64> {
        self.group
            .as_ref()
            .map(|g| g.commits.load(Ordering::Relaxed))
    }

    /// Runs `op` as (part of) one committed transaction and returns its result once the
    /// change is durable. See the module documentation.
    pub(super) async fn write<T, F>(&self, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut AnyConnection) -> BoxFuture<'c, Result<T>> + Send + 'static,
    {
        let Some(group) = &self.group else {
            let mut tx = self.writer.begin().await?;
            let value = op(&mut tx).await?;
            tx.commit().await?;
            return Ok(value);
        };
        let (reply, answer) = oneshot::channel::<Result<T>>();
        let job: Job = Box::new(move |conn| {
            Box::pin(async move {
                let outcome = op(conn).await;
                let ok = outcome.is_ok();
                let answer: Answer = Box::new(move |commit_failure| {
                    let result = match (outcome, commit_failure) {
                        (Err(e), _) => Err(e),
                        (Ok(_), Some(reason)) => Err(StoreError::Commit(reason.to_owned())),
                        (Ok(value), None) => Ok(value),
                    };
                    let _ = reply.send(result);
                });
                (ok, answer)
            })
        });
        group
            .jobs
            .send(job)
            .await
            .map_err(|_| StoreError::Commit("the writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Commit("the writer dropped the operation".into()))?
    }
}

/// The writer task: batches until the store (and with it the queue's senders) is gone.
/// Each batch runs in a task of its own, so an operation that panics costs its batch
/// (rolled back, its callers get an error), not the writer.
async fn run(pool: AnyPool, mut rx: mpsc::Receiver<Job>, commits: Arc<AtomicU64>) {
    loop {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        if rx.recv_many(&mut batch, MAX_BATCH).await == 0 {
            return;
        }
        let size = batch.len();
        let pool = pool.clone();
        let (outcome, answers) = match tokio::spawn(run_batch(pool, batch)).await {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %e, operations = size, "a write batch panicked; rolled back");
                continue;
            }
        };
        if outcome.is_ok() {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        let failure = outcome.err().map(|e| e.to_string());
        if let Some(reason) = &failure {
            tracing::error!(error = %reason, operations = size, "a write batch failed to commit");
        }
        metrics::histogram!("certwright_store_write_batch_size").record(size as f64);
        for answer in answers {
            answer(failure.as_deref());
        }
    }
}

/// Runs `batch` in one transaction. Jobs never started (the batch failed before them)
/// are dropped: their callers learn it from the closed reply channel.
async fn run_batch(
    pool: AnyPool,
    batch: Vec<Job>,
) -> (std::result::Result<(), sqlx::Error>, Vec<Answer>) {
    let mut answers = Vec::with_capacity(batch.len());
    let outcome = async {
        let mut tx = pool.begin().await?;
        for job in batch {
            let mut savepoint = tx.begin().await?;
            let (ok, answer) = job(&mut savepoint).await;
            answers.push(answer);
            if ok {
                savepoint.commit().await?;
            } else {
                savepoint.rollback().await?;
            }
        }
        tx.commit().await
    }
    .await;
    (outcome, answers)
}
