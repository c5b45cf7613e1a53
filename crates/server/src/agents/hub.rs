//! The [`Dispatch`] of this instance, in memory: jobs wait per segment until an agent of
//! that segment takes one in its long poll (`Hub::take`); each attempt gets a fresh random
//! 128-bit job id, and its answer is accepted only from the agent that took it, once
//! (`Hub::answer`). A job nobody takes within the pickup time-out, or that its taker does
//! not answer within the job time-out, goes to another agent of the segment (one that has
//! not had it), up to `attempts` in all.
//!
//! Everything is bounded: waiting jobs per segment ([`MAX_WAITING`]), pending attempts
//! (each removed when answered, timed out, or when its caller gives up — a drop guard),
//! and the memory of finished attempts ([`MAX_FINISHED`]). Contact and job counts go to
//! the store throttled: at most every [`CONTACT_WRITE_INTERVAL`] per agent for polls, at
//! once for results and time-outs.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};

use super::{Answered, Dispatch, DispatchError};
use crate::clock::Clock;
use crate::store::Store;
use crate::va::remote::{Job, JobResult};
use crate::va::BoxFuture;

/// The most jobs that may wait for an agent in one segment; more fail at once (`NoAgent`).
pub const MAX_WAITING: usize = 4096;
/// How many finished attempts are remembered (to tell a late or repeated answer from a
/// forged one).
pub const MAX_FINISHED: usize = 8192;
/// The least time between two writes of an agent's last contact for its polls.
pub const CONTACT_WRITE_INTERVAL: Duration = Duration::from_secs(10);

/// The hub's time-outs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubSettings {
    /// How long the agent that took a job has to answer it.
    pub job_timeout: Duration,
    /// How long a job waits for an agent to take it, per attempt.
    pub pickup_timeout: Duration,
    /// Attempts per job (agents tried), at least 1.
    pub attempts: u32,
}

impl HubSettings {
    /// From `[agents]`.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            job_timeout: Duration::from_secs(config.agent_job_timeout_secs()),
            pickup_timeout: Duration::from_secs(config.agents.pickup_timeout_secs),
            attempts: config.agents.attempts.max(1),
        }
    }
}

/// Why an answer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// No attempt has this id (never had, or forgotten).
    #[error("no such job")]
    Unknown,
    /// The attempt went to another agent.
    #[error("the job was given to another agent")]
    NotYours,
    /// This agent's attempt was already answered.
    #[error("the job was already answered")]
    AlreadyAnswered,
    /// This agent's attempt timed out (the job went elsewhere or failed).
    #[error("the job timed out")]
    TimedOut,
}

struct Waiting {
    job: Job,
    /// Agents that already had this job.
    exclude: Vec<String>,
    /// Tells the dispatcher who took it.
    taken: oneshot::Sender<String>,
    answer: oneshot::Sender<JobResult>,
}

struct Pending {
    agent: String,
    segment: String,
    answer: oneshot::Sender<JobResult>,
    since: Instant,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Finished {
    Answered,
    TimedOut,
}

#[derive(Default)]
struct Segment {
    waiting: VecDeque<Waiting>,
    polling: usize,
    notify: Arc<Notify>,
}

#[derive(Default)]
struct Contact {
    written: Option<Instant>,
    done: i64,
    failed: i64,
}

#[derive(Default)]
struct State {
    segments: HashMap<String, Segment>,
    pending: HashMap<String, Pending>,
    finished: HashMap<String, (String, Finished)>,
    finished_order: VecDeque<String>,
    contacts: HashMap<String, Contact>,
}

impl State {
    fn finish(&mut self, id: String, agent: String, how: Finished) {
        if self.finished.insert(id.clone(), (agent, how)).is_none() {
            self.finished_order.push_back(id);
        }
        while self.finished_order.len() > MAX_FINISHED {
            if let Some(old) = self.finished_order.pop_front() {
                self.finished.remove(&old);
            }
        }
    }
}

struct Inner {
    settings: HubSettings,
    state: Mutex<State>,
    store: Option<Store>,
    clock: Clock,
}

/// The in-memory dispatcher of this instance (cheap to clone).
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// A fresh random 128-bit job id (base64url).
fn job_id() -> String {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).expect("the system RNG works");
    certwright_proto::b64::encode(b)
}

/// Removes an attempt's traces when its dispatcher stops waiting, however it stops.
struct AttemptGuard<'a> {
    hub: &'a Hub,
    segment: &'a str,
    id: String,
}

impl Drop for AttemptGuard<'_> {
    fn drop(&mut self) {
        let mut state = self.hub.lock();
        state.pending.remove(&self.id);
        if let Some(seg) = state.segments.get_mut(self.segment) {
            seg.waiting.retain(|w| w.job.id != self.id);
        }
    }
}

impl Hub {
    /// A hub with these time-outs; with a store, agents' contact and job counts are
    /// written to it.
    pub fn new(settings: HubSettings, store: Option<Store>, clock: Clock) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                state: Mutex::new(State::default()),
                store,
                clock,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent maps (no step spans an await).
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits up to `wait` for a job of `segment` that `agent` has not had, and hands it
    /// to `agent` (which must answer it within the job time-out). `None` when none came.
    pub async fn take(&self, agent: &str, segment: &str, wait: Duration) -> Option<Job> {
        self.note(agent, 0, 0, false);
        let deadline = tokio::time::Instant::now() + wait;
        let _polling = PollingGuard::new(self, segment);
        loop {
            let notified = {
                let mut state = self.lock();
                let state = &mut *state;
                let seg = state.segments.entry(segment.to_owned()).or_default();
                while let Some(pos) = seg
                    .waiting
                    .iter()
                    .position(|w| !w.exclude.iter().any(|a| a == agent))
                {
                    let w = seg.waiting.remove(pos).expect("position is in range");
                    // Sent under the lock: a dispatcher whose pickup time ran out finds
                    // either the job still waiting or the agent that took it.
                    if w.taken.send(agent.to_owned()).is_err() {
                        continue; // its dispatcher gave up
                    }
                    state.pending.insert(
                        w.job.id.clone(),
                        Pending {
                            agent: agent.to_owned(),
                            segment: segment.to_owned(),
                            answer: w.answer,
                            since: Instant::now(),
                        },
                    );
                    return Some(w.job);
                }
                let notify = seg.notify.clone();
                let mut notified = Box::pin(notify.notified_owned());
                notified.as_mut().enable();
                notified
            };
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Takes back attempt `job_id` from `agent` before it works on it (the agent was
    /// removed while it waited for the job): its dispatcher moves on to another agent at
    /// once, and an answer from `agent` is refused.
    pub fn withdraw(&self, agent: &str, job_id: &str) {
        let mut state = self.lock();
        if state.pending.get(job_id).is_some_and(|p| p.agent == agent) {
            state.pending.remove(job_id);
            state.finish(job_id.to_owned(), agent.to_owned(), Finished::TimedOut);
        }
    }

    /// The answer of `agent` to attempt `job_id`: accepted once, from the agent the attempt
    /// went to, while its dispatcher still waits.
    pub fn answer(&self, agent: &str, job_id: &str, result: JobResult) -> Result<(), AnswerError> {
        let pending = {
            let mut state = self.lock();
            match state.pending.get(job_id) {
                Some(p) if p.agent != agent => return Err(AnswerError::NotYours),
                // Its dispatcher stopped waiting (time-out) and has not cleaned up yet.
                Some(p) if p.answer.is_closed() => {
                    state.pending.remove(job_id);
                    state.finish(job_id.to_owned(), agent.to_owned(), Finished::TimedOut);
                    return Err(AnswerError::TimedOut);
                }
                Some(_) => {
                    let p = state.pending.remove(job_id).expect("just found");
                    state.finish(job_id.to_owned(), agent.to_owned(), Finished::Answered);
                    p
                }
                None => {
                    return Err(match state.finished.get(job_id) {
                        Some((a, _)) if a != agent => AnswerError::NotYours,
                        Some((_, Finished::Answered)) => AnswerError::AlreadyAnswered,
                        Some((_, Finished::TimedOut)) => AnswerError::TimedOut,
                        None => AnswerError::Unknown,
                    })
                }
            }
        };
        crate::metrics::agent_job(
            &pending.segment,
            agent,
            "answered",
            Some(pending.since.elapsed()),
        );
        self.note(agent, 1, 0, true);
        // The dispatcher may have stopped waiting this instant: the answer is then moot.
        let _ = pending.answer.send(result);
        Ok(())
    }

    /// How many attempts are pending (taken, unanswered) and jobs waiting, in all.
    pub fn in_flight(&self) -> (usize, usize) {
        let state = self.lock();
        (
            state.pending.len(),
            state.segments.values().map(|s| s.waiting.len()).sum(),
        )
    }

    /// Agents of `segment` waiting in a poll now.
    pub fn polling(&self, segment: &str) -> usize {
        self.lock().segments.get(segment).map_or(0, |s| s.polling)
    }

    /// Counts contact with `agent` (and `done`/`failed` jobs); writes to the store when
    /// `force` or when the last write is older than `CONTACT_WRITE_INTERVAL`.
    fn note(&self, agent: &str, done: i64, failed: i64, force: bool) {
        let Some(store) = self.inner.store.clone() else {
            return;
        };
        let (done, failed) = {
            let mut state = self.lock();
            let c = state.contacts.entry(agent.to_owned()).or_default();
            c.done += done;
            c.failed += failed;
            let due = c
                .written
                .is_none_or(|at| at.elapsed() >= CONTACT_WRITE_INTERVAL);
            if !force && !due {
                return;
            }
            c.written = Some(Instant::now());
            (std::mem::take(&mut c.done), std::mem::take(&mut c.failed))
        };
        let now = self.inner.clock.now();
        let agent = agent.to_owned();
        tokio::spawn(async move {
            if let Err(e) = store.record_agent_contact(&agent, now, done, failed).await {
                tracing::warn!(%agent, error = %e, "recording an agent's contact failed");
            }
        });
    }

    async fn run_job(&self, segment: &str, mut job: Job) -> Result<Answered, DispatchError> {
        let settings = self.inner.settings;
        let started = Instant::now();
        let mut tried: Vec<String> = Vec::new();
        for attempt in 1..=settings.attempts {
            job.id = job_id();
            let (taken_tx, mut taken_rx) = oneshot::channel();
            let (answer_tx, answer_rx) = oneshot::channel();
            let guard = AttemptGuard {
                hub: self,
                segment,
                id: job.id.clone(),
            };
            {
                let mut state = self.lock();
                let seg = state.segments.entry(segment.to_owned()).or_default();
                if seg.waiting.len() >= MAX_WAITING {
                    drop(state);
                    break;
                }
                seg.waiting.push_back(Waiting {
                    job: job.clone(),
                    exclude: tried.clone(),
                    taken: taken_tx,
                    answer: answer_tx,
                });
                seg.notify.notify_waiters();
            }
            let agent = match tokio::time::timeout(settings.pickup_timeout, &mut taken_rx).await {
                Ok(Ok(agent)) => Some(agent),
                Ok(Err(_)) => None,
                Err(_) => {
                    // Taken at the last moment? `take` sends under the lock, so under it
                    // the job is either taken or, removed here, never handed out.
                    let mut state = self.lock();
                    match taken_rx.try_recv() {
                        Ok(agent) => Some(agent),
                        Err(_) => {
                            if let Some(seg) = state.segments.get_mut(segment) {
                                seg.waiting.retain(|w| w.job.id != job.id);
                            }
                            None
                        }
                    }
                }
            };
            let Some(agent) = agent else {
                drop(guard); // no longer waiting
                continue;
            };
            tried.push(agent.clone());
            match tokio::time::timeout(settings.job_timeout, answer_rx).await {
                Ok(Ok(result)) => {
                    return Ok(Answered {
                        agent,
                        result,
                        attempts: attempt,
                    })
                }
                _ => {
                    let timed_out = {
                        let mut state = self.lock();
                        let was_pending = state.pending.remove(&job.id).is_some();
                        if was_pending {
                            state.finish(job.id.clone(), agent.clone(), Finished::TimedOut);
                        }
                        // Or a late answer found it closed and marked it (`answer`).
                        was_pending
                            || matches!(state.finished.get(&job.id), Some((_, Finished::TimedOut)))
                    };
                    if timed_out {
                        tracing::warn!(%segment, %agent, job = %job.id, "validation agent did not answer in time; trying another");
                        crate::metrics::agent_job(segment, &agent, "timeout", None);
                        self.note(&agent, 0, 1, true);
                    }
                }
            }
            drop(guard);
        }
        if tried.is_empty() {
            crate::metrics::agent_dispatch_failure(segment, "no_agent");
            Err(DispatchError::NoAgent {
                segment: segment.to_owned(),
                waited: started.elapsed(),
            })
        } else {
            crate::metrics::agent_dispatch_failure(segment, "unanswered");
            Err(DispatchError::Unanswered {
                segment: segment.to_owned(),
                agents: tried,
            })
        }
    }
}

/// Counts an agent in its segment's pollers while it waits.
struct PollingGuard<'a> {
    hub: &'a Hub,
    segment: &'a str,
}

impl<'a> PollingGuard<'a> {
    fn new(hub: &'a Hub, segment: &'a str) -> Self {
        let n = {
            let mut state = hub.lock();
            let seg = state.segments.entry(segment.to_owned()).or_default();
            seg.polling += 1;
            seg.polling
        };
        crate::metrics::agents_polling(segment, n);
        Self { hub, segment }
    }
}

impl Drop for PollingGuard<'_> {
    fn drop(&mut self) {
        let n = {
            let mut state = self.hub.lock();
            let seg = state.segments.entry(self.segment.to_owned()).or_default();
            seg.polling = seg.polling.saturating_sub(1);
            seg.polling
        };
        crate::metrics::agents_polling(self.segment, n);
    }
}

impl Dispatch for Hub {
    fn run<'a>(
        &'a self,
        segment: &'a str,
        job: Job,
    ) -> BoxFuture<'a, Result<Answered, DispatchError>> {
        Box::pin(self.run_job(segment, job))
    }
}

/// The ids of the jobs `hub` has handed out and not finished (tests).
#[cfg(test)]
fn pending_ids(hub: &Hub) -> std::collections::HashSet<String> {
    hub.lock().pending.keys().cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::va::remote::JobKind;
    use certwright_proto::types::{ChallengeType, Identifier};

    pub(crate) fn job() -> Job {
        Job {
            id: "caller-id".into(),
            kind: JobKind::Validate,
            challenge: ChallengeType::Http01,
            identifier: Identifier::dns("web.lab.test"),
            wildcard: false,
            token: "tok".into(),
            key_authorization: "tok.thumb".into(),
            account_uri: "https://ca.test/acme/acct/1".into(),
            caa_identities: vec![],
            check_caa: false,
            http01_port: 80,
            tlsalpn01_port: 443,
            timeout_ms: 1000,
        }
    }

    fn hub(job_ms: u64, pickup_ms: u64, attempts: u32) -> Hub {
        Hub::new(
            HubSettings {
                job_timeout: Duration::from_millis(job_ms),
                pickup_timeout: Duration::from_millis(pickup_ms),
                attempts,
            },
            None,
            Clock::system(),
        )
    }

    fn result(tag: &str) -> JobResult {
        JobResult {
            error: None,
            record: serde_json::json!({ "by": tag }),
            diagnostic: serde_json::json!({}),
        }
    }

    const WAIT: Duration = Duration::from_secs(5);

    fn assert_empty(hub: &Hub) {
        assert_eq!(hub.in_flight(), (0, 0), "nothing left pending or waiting");
    }

    #[tokio::test]
    async fn an_agent_answers() {
        let hub = hub(2000, 2000, 2);
        let agent = {
            let hub = hub.clone();
            tokio::spawn(async move {
                let job = hub.take("a1", "lab", WAIT).await.unwrap();
                assert_ne!(job.id, "caller-id", "a fresh id");
                assert_eq!(job.id.len(), 22, "128 bits");
                // Another agent cannot answer it.
                assert_eq!(
                    hub.answer("a2", &job.id, result("a2")),
                    Err(AnswerError::NotYours)
                );
                hub.answer("a1", &job.id, result("a1")).unwrap();
                // Once.
                assert_eq!(
                    hub.answer("a1", &job.id, result("a1")),
                    Err(AnswerError::AlreadyAnswered)
                );
                assert_eq!(
                    hub.answer("a2", &job.id, result("a2")),
                    Err(AnswerError::NotYours)
                );
                assert_eq!(
                    hub.answer("a1", "forged", result("a1")),
                    Err(AnswerError::Unknown)
                );
            })
        };
        let answered = hub.run("lab", job()).await.unwrap();
        assert_eq!(answered.agent, "a1");
        assert_eq!(answered.attempts, 1);
        assert_eq!(answered.result, result("a1"));
        tokio::time::timeout(WAIT, agent).await.unwrap().unwrap();
        assert_empty(&hub);
    }

    #[tokio::test]
    async fn a_withdrawn_job_goes_to_another_agent_at_once() {
        // A job time-out far longer than the test: only the withdrawal can move it on.
        let hub = hub(60_000, 3000, 2);
        let run = {
            let hub = hub.clone();
            tokio::spawn(async move { hub.run("lab", job()).await })
        };
        let first = hub.take("removed", "lab", WAIT).await.unwrap();
        hub.withdraw("someone-else", &first.id); // not theirs: no effect
        assert_eq!(pending_ids(&hub).len(), 1);
        hub.withdraw("removed", &first.id);
        let second = tokio::time::timeout(Duration::from_secs(2), hub.take("a2", "lab", WAIT))
            .await
            .expect("the job moved on at once")
            .unwrap();
        assert_ne!(second.id, first.id);
        assert_eq!(
            hub.answer("removed", &first.id, result("removed")),
            Err(AnswerError::TimedOut)
        );
        hub.answer("a2", &second.id, result("a2")).unwrap();
        let answered = tokio::time::timeout(WAIT, run)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!((answered.agent.as_str(), answered.attempts), ("a2", 2));
        assert_empty(&hub);
    }

    #[tokio::test]
    async fn a_silent_agent_is_replaced_and_its_late_answer_refused() {
        let hub = hub(300, 3000, 2);
        let silent = {
            let hub = hub.clone();
            tokio::spawn(async move { hub.take("a1", "lab", WAIT).await.unwrap() })
        };
        let run = {
            let hub = hub.clone();
            tokio::spawn(async move { hub.run("lab", job()).await })
        };
        let first = tokio::time::timeout(WAIT, silent).await.unwrap().unwrap();
        // a1 polls again: it must not get the same job back.
        let again = hub.take("a1", "lab", Duration::from_millis(600)).await;
        assert!(again.is_none(), "{again:?}");
        let second = hub.take("a2", "lab", WAIT).await.unwrap();
        assert_ne!(second.id, first.id);
        assert_eq!(
            hub.answer("a1", &first.id, result("a1")),
            Err(AnswerError::TimedOut),
            "late"
        );
        assert_eq!(
            hub.answer("a1", &second.id, result("a1")),
            Err(AnswerError::NotYours)
        );
        hub.answer("a2", &second.id, result("a2")).unwrap();
        let answered = tokio::time::timeout(WAIT, run)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!((answered.agent.as_str(), answered.attempts), ("a2", 2));
        assert_eq!(answered.result, result("a2"));
        assert_empty(&hub);
    }

    #[tokio::test]
    async fn no_agent_and_unanswered() {
        let hub = hub(200, 200, 2);
        let err = hub.run("lab", job()).await.unwrap_err();
        assert!(
            matches!(&err, DispatchError::NoAgent { segment, waited } if segment == "lab" && *waited >= Duration::from_millis(400)),
            "{err:?}"
        );
        assert_empty(&hub);

        // Two agents take it and stay silent.
        let takers = ["a1", "a2"].map(|name| {
            let hub = hub.clone();
            tokio::spawn(async move { hub.take(name, "lab", WAIT).await })
        });
        let err = hub.run("lab", job()).await.unwrap_err();
        let mut agents = match err {
            DispatchError::Unanswered { segment, agents } => {
                assert_eq!(segment, "lab");
                agents
            }
            other => panic!("{other:?}"),
        };
        agents.sort();
        assert_eq!(agents, ["a1", "a2"]);
        for t in takers {
            assert!(t.await.unwrap().is_some());
        }
        assert_empty(&hub);
        assert!(pending_ids(&hub).is_empty());
    }

    #[tokio::test]
    async fn segments_are_kept_apart_and_dropped_callers_leave_nothing() {
        let hub = hub(200, 5000, 1);
        let run = {
            let hub = hub.clone();
            tokio::spawn(async move { hub.run("lab", job()).await })
        };
        assert!(hub
            .take("b1", "office", Duration::from_millis(300))
            .await
            .is_none());
        let job = hub.take("a1", "lab", WAIT).await.unwrap();
        assert_eq!(hub.in_flight(), (1, 0));
        run.abort();
        let _ = run.await;
        assert_empty(&hub);
        assert_eq!(
            hub.answer("a1", &job.id, result("a1")),
            Err(AnswerError::Unknown)
        );
        // A caller dropped while its job waits leaves nothing either.
        let run = {
            let hub = hub.clone();
            tokio::spawn(async move { hub.run("lab", super::tests::job()).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(hub.in_flight(), (0, 1));
        run.abort();
        let _ = run.await;
        assert_empty(&hub);
        assert_eq!(hub.polling("lab"), 0);
    }
}
