//! Remote validation (`docs/remote-validation.md`): agents inside network segments the CA
//! cannot reach take validation jobs over an outbound, mutually authenticated connection;
//! routes send identifiers to segments, and can ask several perspectives to agree
//! (multi-perspective corroboration).
//!
//! - `route`: which perspectives validate an identifier (`[[validation.routes]]`).
//! - `validator`: the RA's [`Validator`](crate::va::Validator) that runs a route's
//!   perspectives (the local VA and agents through a [`Dispatch`]) and combines them.
//! - `hub`: the [`Dispatch`] of this instance: jobs waiting per segment, handed to the
//!   agents that poll, retried on another agent when one does not answer in time.
//! - `pki`: the agent CA (enrolment certificates, the listener's certificate).
//! - `listener`: the agent listener (HTTPS with client certificates), the protocol of
//!   [`crate::va::remote`].

use std::time::Duration;

use crate::va::remote::{Job, JobResult};
use crate::va::BoxFuture;

pub mod hub;
pub mod listener;
pub mod pki;
pub mod route;
pub mod validator;

/// An agent's answer to a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Answered {
    /// The agent that answered.
    pub agent: String,
    /// What it saw.
    pub result: JobResult,
    /// Attempts made (1 when the first agent answered).
    pub attempts: u32,
}

/// Why a job got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DispatchError {
    /// No agent of the segment took the job (none connected, or all busy) in time.
    #[error("no validation agent of segment {segment:?} took the job within {waited:?}")]
    NoAgent {
        /// The segment.
        segment: String,
        /// How long the job waited in all.
        waited: Duration,
    },
    /// Agents took the job and none answered within the job time-out.
    #[error("no validation agent of segment {segment:?} answered in time (tried {agents:?})")]
    Unanswered {
        /// The segment.
        segment: String,
        /// The agents that took the job and did not answer, in order.
        agents: Vec<String>,
    },
}

/// Runs jobs on the agents of a segment.
pub trait Dispatch: Send + Sync + 'static {
    /// Runs `job` on an agent of `segment` and returns its answer. The dispatcher gives
    /// every attempt a fresh random `job.id` (what the caller put there is replaced), so
    /// an answer is accepted only from the agent an attempt went to, once. A job no agent
    /// takes within the pickup time-out, or that the agent which took it does not answer
    /// within the job time-out, goes to another agent of the segment (one that has not
    /// had it), up to `[agents] attempts` in all.
    fn run<'a>(
        &'a self,
        segment: &'a str,
        job: Job,
    ) -> BoxFuture<'a, Result<Answered, DispatchError>>;
}
