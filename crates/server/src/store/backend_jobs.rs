//! Jobs of orders forwarded to a backend CA (`docs/upstream.md`): created with the
//! order's move to `processing`, updated around each attempt, and removed in the same
//! transaction that completes or fails the order. Which run holds a job is the order's
//! lease (`leases.rs`).

use certwright_proto::Problem;

use super::audit::{self, Actor, AuditEvent};
use super::engine::columns::Columns;
use super::engine::tx::params;
use super::orders::{begin_finalize_in, complete_in, fail_in};
use super::{NewCertificate, OrderId, Result, Store, StoreError};

/// A job to create with `begin_forward`.
#[derive(Debug, Clone)]
pub struct NewBackendJob {
    /// The backend's name.
    pub backend: String,
    /// The request id the backend sees (stable for the order, unique across databases).
    pub request_id: String,
    /// Transient failures are retried until then (Unix seconds).
    pub deadline: i64,
    /// Now.
    pub created_at: i64,
}

/// A forwarded order's job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendJob {
    /// The order.
    pub order_id: OrderId,
    /// The backend's name.
    pub backend: String,
    /// See [`NewBackendJob::request_id`].
    pub request_id: String,
    /// Attempts started so far.
    pub attempts: i64,
    /// An attempt was started and has no recorded outcome: its run died or is running.
    pub in_flight: bool,
    /// See [`NewBackendJob::deadline`].
    pub deadline: i64,
    /// What the backend saved to resume.
    pub state: Option<String>,
    /// The last failure, for operators.
    pub last_error: Option<String>,
    /// When the order was forwarded.
    pub created_at: i64,
}

fn job(row: &impl Columns) -> Result<BackendJob> {
    Ok(BackendJob {
        order_id: OrderId(row.int("order_id")?),
        backend: row.text("backend")?,
        request_id: row.text("request_id")?,
        attempts: row.int("attempts")?,
        in_flight: row.int("in_flight")? != 0,
        deadline: row.int("deadline")?,
        state: row.opt_text("state")?,
        last_error: row.opt_text("last_error")?,
        created_at: row.int("created_at")?,
    })
}

impl Store {
    /// `begin_finalize` for an order a backend signs: the order `processing` under a
    /// lease until `lease_until`, and its job, in one transaction. False if the order
    /// was not `ready` (nothing changed).
    pub async fn begin_forward(
        &self,
        order: OrderId,
        csr_der: &[u8],
        lease_until: i64,
        new: &NewBackendJob,
    ) -> Result<bool> {
        let (csr_der, new) = (csr_der.to_vec(), new.clone());
        self.write(move |tx| {
            Box::pin(async move {
                if !begin_finalize_in(tx, order, &csr_der, lease_until).await? {
                    return Ok(false);
                }
                tx.execute(
                    "INSERT INTO backend_jobs (order_id, backend, request_id, deadline, created_at)
                     VALUES ($1, $2, $3, $4, $5)",
                    &params![
                        order.0,
                        &new.backend,
                        &new.request_id,
                        new.deadline,
                        new.created_at
                    ],
                )
                .await?;
                let event = AuditEvent::new(&Actor::System, "order.forward")
                    .order(order)
                    .details(serde_json::json!({
                        "backend": new.backend,
                        "request_id": new.request_id,
                    }));
                audit::append(tx, &event).await?;
                Ok(true)
            })
        })
        .await
    }

    /// The job of a forwarded order; `None` for an order signed here.
    pub async fn backend_job(&self, order: OrderId) -> Result<Option<BackendJob>> {
        let sql = "SELECT order_id, backend, request_id, attempts, in_flight, deadline, state, last_error, created_at
                   FROM backend_jobs WHERE order_id = $1";
        match self.read_optional(sql, &params![order.0]).await? {
            Some(row) => Ok(Some(job(&row)?)),
            None => Ok(None),
        }
    }

    /// Every job, oldest first (operators' view).
    pub async fn backend_jobs(&self) -> Result<Vec<BackendJob>> {
        let sql = "SELECT order_id, backend, request_id, attempts, in_flight, deadline, state, last_error, created_at
                   FROM backend_jobs ORDER BY order_id";
        self.read_all(sql, &[]).await?.iter().map(job).collect()
    }

    /// Records that an attempt starts: one more attempt, in flight, and the order's lease
    /// extended to `lease_until`. False if the order is no longer `processing` (another
    /// run finished it).
    pub async fn start_backend_attempt(&self, order: OrderId, lease_until: i64) -> Result<bool> {
        self.write(move |tx| {
            Box::pin(async move {
                let leased = super::leases::extend_in(tx, order, lease_until).await?;
                if !leased {
                    return Ok(false);
                }
                let started = tx
                    .execute(
                        "UPDATE backend_jobs SET attempts = attempts + 1, in_flight = 1 WHERE order_id = $1",
                        &params![order.0],
                    )
                    .await?;
                Ok(started == 1)
            })
        })
        .await
    }

    /// Records that an attempt failed and will be retried: not in flight, the error for
    /// operators, and the order's lease until `lease_until` (the retry).
    pub async fn backend_attempt_failed(
        &self,
        order: OrderId,
        error: &str,
        lease_until: i64,
    ) -> Result<()> {
        let error = error.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                super::leases::extend_in(tx, order, lease_until).await?;
                tx.execute(
                    "UPDATE backend_jobs SET in_flight = 0, last_error = $1 WHERE order_id = $2",
                    &params![&error, order.0],
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Saves what the backend needs to resume this order's job.
    pub async fn save_backend_state(&self, order: OrderId, state: &str) -> Result<()> {
        let state = state.to_owned();
        self.write(move |tx| {
            Box::pin(async move {
                let saved = tx
                    .execute(
                        "UPDATE backend_jobs SET state = $1 WHERE order_id = $2",
                        &params![&state, order.0],
                    )
                    .await?;
                if saved == 1 {
                    Ok(())
                } else {
                    Err(StoreError::NotFound)
                }
            })
        })
        .await
    }

    /// `complete_order` for a forwarded order: the certificate the backend delivered
    /// (checked), the order valid and the job removed, atomically.
    pub async fn complete_forwarded_order(
        &self,
        order: OrderId,
        cert: &NewCertificate,
    ) -> Result<()> {
        let (cert, hooks, backend) = (cert.clone(), self.webhooks.clone(), self.backend);
        self.write(move |tx| {
            Box::pin(async move {
                complete_in(tx, backend, order, &cert, &hooks).await?;
                remove_job(tx, order).await
            })
        })
        .await
    }

    /// `fail_order` for a forwarded order, the job removed with it. `action` is audited
    /// too when it is not `order.fail` (`backend.mismatch`: what the backend returned
    /// did not match the order), with `details` (the backend, why). False if the order
    /// is no longer `processing`.
    pub async fn fail_forwarded_order(
        &self,
        order: OrderId,
        problem: &Problem,
        action: &'static str,
        details: serde_json::Value,
    ) -> Result<bool> {
        let problem = problem.clone();
        self.write(move |tx| {
            Box::pin(async move {
                if !fail_in(tx, order, &problem, details.clone()).await? {
                    return Ok(false);
                }
                if action != "order.fail" {
                    let event = AuditEvent::new(&Actor::System, action)
                        .order(order)
                        .details(details);
                    audit::append(tx, &event).await?;
                }
                remove_job(tx, order).await?;
                Ok(true)
            })
        })
        .await
    }
}

async fn remove_job(tx: &mut dyn super::engine::tx::Tx, order: OrderId) -> Result<()> {
    tx.execute(
        "DELETE FROM backend_jobs WHERE order_id = $1",
        &params![order.0],
    )
    .await?;
    Ok(())
}
