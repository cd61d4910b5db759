//! One request through a service: admission under the request limits, then tries — pick an
//! endpoint, send, judge the answer — until one is final. Retries replay the buffered body,
//! wait a full-jitter backoff, stay within the router's budget and never outlive the client's
//! deadline. The outcome of the try that answered is fed back when its stream ends.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::Either;
use futures_util::FutureExt;

use http::header::HeaderName;
use http::{HeaderValue, Request, Response};
use strait_core::{Body, Code, ErrorKind, ProxyError, Side};
use strait_upstream::Answer;
use tokio::time::Instant;
use tracing::debug;

use crate::deadline::{self, Deadline};
use crate::idle::StreamIdle;
use crate::limits::Admission;
use crate::outcome::{self, Ending, Verdict};
use crate::replay::Replay;
use crate::retry::{Reason, Retries, RetryPermit};
use crate::state::InFlight;
use crate::Pick;
use crate::Service;

const MAX_TRIES: usize = 10;

/// Tells the backend which try this is, as gRPC's retry design specifies.
static PREVIOUS_ATTEMPTS: HeaderName = HeaderName::from_static("grpc-previous-rpc-attempts");

/// What a request brings to [`Service::call`].
#[derive(Debug)]
pub struct CallContext<'a> {
    pub router: &'a Arc<str>,
    pub retries: &'a Retries,
    /// The router's traffic class, over the one the request's header names.
    pub class: Option<&'a str>,
    /// The client's deadline (grpc-timeout or the route's timeout): no try outlives it, and
    /// the response body is cut when it passes.
    pub deadline: Option<Deadline>,
    /// The router's `stream_idle_timeout`, running since the request arrived.
    pub idle: Option<&'a StreamIdle>,
    pub grpc: bool,
    pub hash_key: Option<u64>,
}

/// Why a request got no response from the service.
#[derive(Debug)]
pub enum Failure {
    /// strait turned it away before sending anything (a limit, no healthy endpoint): the
    /// request comes back, for a fallback. `reason` is the metric label.
    Rejected {
        request: Box<Request<Body>>,
        error: ProxyError,
        reason: &'static str,
    },
    /// Every try failed.
    Failed { error: ProxyError, tries: u32 },
    /// The stream carried no DATA for the router's `stream_idle_timeout` before the
    /// response head came.
    Idle { error: ProxyError },
}

/// The try that answered: fed its outcome when the response stream ends, and holding the
/// request's places under the limits until then.
#[derive(Debug)]
pub struct Completion {
    service: Arc<Service>,
    index: usize,
    _admission: Option<Admission>,
    /// Counts the request in flight on the endpoint until the stream ends.
    in_flight: Option<InFlight>,
    tries: u32,
}

/// One request's tries: what was tried, and what they hold until the request ends.
struct Tries<'a> {
    service: &'a Arc<Service>,
    cx: &'a CallContext<'a>,
    parts: http::request::Parts,
    replay: Replay,
    /// Capped at 10 (the policy's limit), so no allocation is needed.
    tried: [usize; MAX_TRIES],
    tried_len: usize,
    count: u32,
    admission: Option<Admission>,
    /// The budget counts a retry until the next try has an answer.
    _permit: Option<RetryPermit>,
}

/// A try in flight on one endpoint: counted there until its answer is judged.
struct Attempt {
    index: usize,
    in_flight: InFlight,
}

/// What a try's answer means for the request.
enum Step {
    /// Final: the client gets this response.
    Answer(Response<Body>),
    /// Worth another try; if there is none, `outcome` is the answer after all.
    Retry {
        reason: Reason,
        outcome: Result<Response<Body>, ProxyError>,
        verdict: Verdict,
    },
    /// Final: the request failed.
    Fail(ProxyError, Verdict),
    /// The endpoint's connection limits turned the request away before sending it.
    Reject(ProxyError),
}

// === impl Service ===

impl Service {
    /// Sends `request` to one of the service's endpoints, retrying as `cx.retries` allows.
    /// The response's body keeps honouring the deadline and the idle timeout as it streams.
    ///
    /// Not an `async fn`: the request moves straight into the future of the tries, instead
    /// of being stored once more in a wrapper's.
    pub fn call<'a>(
        self: &'a Arc<Self>,
        request: Request<Body>,
        cx: &'a CallContext<'a>,
    ) -> impl Future<Output = Result<(Response<Body>, Completion), Failure>> + Send + 'a {
        let tries = match cx.idle {
            None => Either::Left(self.tries(request, cx)),
            // Boxed: only routers with the timeout carry this future.
            Some(idle) => Either::Right(Box::pin(async move {
                tokio::select! {
                    result = self.tries(request, cx) => result,
                    () = idle.expired(&self.metrics) => Err(Failure::Idle { error: idle.error() }),
                }
            })),
        };
        tries.map(move |result| {
            let (response, completion) = result?;
            let response = match cx.deadline {
                Some(deadline) => deadline.bound(response, cx.grpc),
                None => response,
            };
            let response = match cx.idle {
                Some(idle) => idle.clone().bound(response, cx.grpc, &self.metrics),
                None => response,
            };
            Ok((response, completion))
        })
    }

    async fn tries(
        self: &Arc<Self>,
        request: Request<Body>,
        cx: &CallContext<'_>,
    ) -> Result<(Response<Body>, Completion), Failure> {
        let (mut tries, mut pick) = self.admit(request, cx)?;
        loop {
            let attempt = tries.attempt(pick);
            let request = tries.request();
            let result = self.send(cx, &pick, request).await;
            let now = Instant::now();
            let step = tries.judge(&attempt, result, now);
            let (reason, outcome, verdict) = match step {
                Step::Answer(response) => return Ok(tries.answered(response, attempt)),
                Step::Fail(error, verdict) => return Err(tries.failed(error, attempt, verdict)),
                Step::Reject(error) => return Err(tries.rejected(error, attempt)),
                Step::Retry {
                    reason,
                    outcome,
                    verdict,
                } => (reason, outcome, verdict),
            };
            let (next, permit, wait) = match self.next_try(cx, reason, &tries, now) {
                Ok(next) => next,
                Err(why) => {
                    debug!(router = %cx.router, service = %self.name, tries = tries.count, "not retrying: {why}");
                    return match outcome {
                        // The answer that was worth a retry is the answer after all; its
                        // stream's end is judged like any other.
                        Ok(response) => Ok(tries.answered(response, attempt)),
                        Err(error) => Err(tries.failed(error, attempt, verdict)),
                    };
                }
            };
            let index = attempt.index;
            attempt.settle(self, verdict);
            drop(outcome);
            self.metrics.retried(cx.router, reason.on.as_str());
            debug!(
                router = %cx.router,
                service = %self.name,
                endpoint = %self.endpoints[index].label(),
                tries = tries.count,
                "retrying ({}) after {wait:?}",
                reason.on.as_str()
            );
            pick = next;
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
                pick.at = Instant::now();
                pick.nanos = self.outlier.nanos(pick.at);
            }
            tries._permit = permit;
        }
    }

    /// Admission under the service's request limits, and the first endpoint.
    fn admit<'a>(
        self: &'a Arc<Self>,
        request: Request<Body>,
        cx: &'a CallContext<'a>,
    ) -> Result<(Tries<'a>, Pick), Failure> {
        let admission = match self.limits.admit(&self.name, cx.class, request.headers()) {
            Ok(admission) => admission,
            Err((error, reason)) => {
                self.metrics.rejected(&self.name, reason);
                return Err(Failure::Rejected {
                    request: Box::new(request),
                    error,
                    reason,
                });
            }
        };
        let first = match self.pick(cx.hash_key, &[]) {
            Ok(pick) => pick,
            Err(error) => {
                let reason = if error.kind() == ErrorKind::Overloaded {
                    self.metrics.rejected(&self.name, "no_healthy_endpoint");
                    "no_healthy_endpoint"
                } else {
                    "no_endpoint"
                };
                return Err(Failure::Rejected {
                    request: Box::new(request),
                    error,
                    reason,
                });
            }
        };
        let (parts, body) = request.into_parts();
        let tries = Tries {
            service: self,
            cx,
            replay: Replay::new(body, cx.retries.buffer()),
            parts,
            tried: [usize::MAX; MAX_TRIES],
            tried_len: 0,
            count: 0,
            admission: Some(admission),
            _permit: None,
        };
        Ok((tries, first))
    }

    /// One try on the picked endpoint, within the per-try timeout and the deadline.
    async fn send(
        &self,
        cx: &CallContext<'_>,
        pick: &Pick,
        request: Request<Body>,
    ) -> Result<Answer, ProxyError> {
        let endpoint = &self.endpoints[pick.index];
        let per_try = cx.retries.per_try_timeout().map(|t| pick.at + t);
        let until = match (per_try, cx.deadline) {
            (Some(a), Some(b)) => Some(a.min(b.at())),
            (a, b) => a.or(b.map(|b| b.at())),
        };
        // The send future is made where it is awaited: bound to a local first, it would be
        // stored twice in this future (once per branch), and every layer above multiplies
        // what each request's future weighs and copies.
        match until {
            Some(until) => match tokio::time::timeout_at(until, endpoint.send(request)).await {
                Ok(result) => result,
                Err(_) if per_try == Some(until) => Err(ProxyError::new(
                    ErrorKind::UpstreamReset,
                    Side::Proxy,
                    format!(
                        "endpoint {} did not answer within the per-try timeout",
                        endpoint.label()
                    ),
                )),
                // The client's own deadline: the client gets DEADLINE_EXCEEDED.
                Err(_) => Err(deadline::exceeded(cx.router)),
            },
            None => endpoint.send(request).await,
        }
    }

    /// The endpoint, budget permit and wait for another try, or why there is none.
    fn next_try(
        &self,
        cx: &CallContext<'_>,
        reason: Reason,
        tries: &Tries<'_>,
        now: Instant,
    ) -> Result<(Pick, Option<RetryPermit>, Duration), &'static str> {
        if !cx.retries.may_try_again(tries.count, reason) {
            return Err("no tries left");
        }
        if !tries.replay.can_replay() {
            return Err("the request body outgrew the replay buffer");
        }
        let wait = if reason.transparent {
            Duration::ZERO
        } else {
            cx.retries.backoff(tries.count)
        };
        if cx
            .deadline
            .is_some_and(|deadline| now + wait >= deadline.at())
        {
            return Err("the client's deadline would pass");
        }
        // Requests the backend never saw cost it nothing: they are outside the budget.
        let permit = if reason.transparent {
            None
        } else {
            match cx.retries.budget() {
                Some(permit) => Some(permit),
                None => {
                    self.metrics.retry_budget_exhausted(cx.router);
                    return Err("the retry budget is spent");
                }
            }
        };
        let next = self
            .pick(cx.hash_key, tries.tried())
            .map_err(|_| "no endpoint is left to try")?;
        Ok((next, permit, wait))
    }

    /// Feeds a verdict on endpoint `index` to outlier detection.
    fn judge(&self, index: usize, verdict: Verdict) {
        let Some(endpoint) = self.endpoints.get(index) else {
            return;
        };
        self.outlier.record(
            &self.states,
            index,
            verdict,
            Instant::now(),
            (&self.name, endpoint.label()),
            &self.metrics,
        );
    }
}

// === impl Tries ===

impl Tries<'_> {
    /// Starts a try on `pick`: counted as tried, and in flight on its endpoint.
    fn attempt(&mut self, pick: Pick) -> Attempt {
        self.count += 1;
        if self.tried_len < MAX_TRIES {
            self.tried[self.tried_len] = pick.index;
            self.tried_len += 1;
        }
        Attempt {
            index: pick.index,
            in_flight: self.service.states[pick.index].started(pick.nanos),
        }
    }

    fn tried(&self) -> &[usize] {
        &self.tried[..self.tried_len]
    }

    /// The request for the current try, with a body that replays what was sent so far.
    fn request(&self) -> Request<Body> {
        let mut request = rebuild(&self.parts, &self.replay);
        if self.count > 1 && self.cx.grpc {
            request
                .headers_mut()
                .insert(PREVIOUS_ATTEMPTS.clone(), HeaderValue::from(self.count - 1));
        }
        request
    }

    /// What the current try's result means for the request.
    fn judge(&self, attempt: &Attempt, result: Result<Answer, ProxyError>, now: Instant) -> Step {
        let retries = self.cx.retries;
        match result {
            Ok(Answer { response, sent_at }) => {
                self.service.states[attempt.index].observe(now - sent_at, now);
                let grpc_status = strait_telemetry::grpc_status_of(response.headers())
                    .map(|(code, _)| Code::from_u32(code).unwrap_or(Code::Unknown));
                let Some(reason) =
                    retries.on_response(response.status(), grpc_status, self.cx.grpc)
                else {
                    return Step::Answer(response);
                };
                let head = Ending {
                    http_status: Some(response.status().as_u16()),
                    grpc_status: grpc_status.map(Code::as_u32),
                    ..Ending::default()
                };
                let verdict = outcome::of_ending(&head, self.service.outlier.failing_statuses());
                Step::Retry {
                    reason,
                    outcome: Ok(response),
                    verdict,
                }
            }
            // The endpoint's connection limits turned it away before sending: the request
            // comes back whole, for the router's fallback.
            Err(error) if error.kind() == ErrorKind::Overloaded && self.replay.can_replay() => {
                Step::Reject(error)
            }
            Err(error) => {
                let verdict = outcome::of_error(&error);
                match retries.on_error(&error) {
                    Some(reason) => Step::Retry {
                        reason,
                        outcome: Err(error),
                        verdict,
                    },
                    None => Step::Fail(error, verdict),
                }
            }
        }
    }

    /// The request is answered by `attempt`'s response.
    fn answered(
        mut self,
        response: Response<Body>,
        attempt: Attempt,
    ) -> (Response<Body>, Completion) {
        self.replay.finish();
        let completion = Completion {
            service: self.service.clone(),
            index: attempt.index,
            _admission: self.admission.take(),
            in_flight: Some(attempt.in_flight),
            tries: self.count,
        };
        (response, completion)
    }

    /// The request failed on `attempt`.
    fn failed(self, error: ProxyError, attempt: Attempt, verdict: Verdict) -> Failure {
        attempt.settle(self.service, verdict);
        self.replay.finish();
        Failure::Failed {
            error,
            tries: self.count,
        }
    }

    /// The endpoint's limits turned the request away; it comes back whole.
    fn rejected(self, error: ProxyError, attempt: Attempt) -> Failure {
        drop(attempt);
        self.service
            .metrics
            .rejected(&self.service.name, "max_pending");
        Failure::Rejected {
            request: Box::new(rebuild(&self.parts, &self.replay)),
            error,
            reason: "max_pending",
        }
    }
}

// === impl Attempt ===

impl Attempt {
    /// The try is over: it no longer counts in flight, and `verdict` goes to outlier
    /// detection.
    fn settle(self, service: &Service, verdict: Verdict) {
        drop(self.in_flight);
        service.judge(self.index, verdict);
    }
}

/// The request again, for another try, with a body that replays what was sent so far.
fn rebuild(parts: &http::request::Parts, replay: &Replay) -> Request<Body> {
    let mut request = Request::new(replay.body());
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = parts.headers.clone();
    request
}

// === impl Completion ===

impl Completion {
    /// How many tries the request took (1: no retry).
    pub fn tries(&self) -> u32 {
        self.tries
    }

    /// The endpoint that answered.
    pub fn endpoint(&self) -> &Arc<str> {
        self.service.endpoints[self.index].label()
    }

    /// The response stream ended this way: the verdict goes to outlier detection.
    pub fn finish(mut self, ending: &Ending) -> Verdict {
        drop(self.in_flight.take());
        let verdict = outcome::of_ending(ending, self.service.outlier.failing_statuses());
        self.service.judge(self.index, verdict);
        verdict
    }
}

#[cfg(test)]
mod tests;
