//! One request through a service: admission under the request limits, then tries — pick an
//! endpoint, send, judge the answer — until one is final. Retries replay the buffered body,
//! wait a full-jitter backoff, stay within the router's budget and never outlive the client's
//! deadline. The outcome of the try that answered is fed back when its stream ends.

use std::sync::Arc;
use std::time::Duration;

use http::header::HeaderName;
use http::{HeaderValue, Request, Response};
use strait_core::{Body, Code, ErrorKind, ProxyError, Side};
use strait_upstream::Answer;
use tokio::time::Instant;
use tracing::debug;

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
    /// The client's deadline (grpc-timeout or the route's timeout).
    pub deadline: Option<Instant>,
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

// === impl Service ===

impl Service {
    /// Sends `request` to one of the service's endpoints, retrying as `cx.retries` allows.
    pub async fn call(
        self: &Arc<Self>,
        request: Request<Body>,
        cx: CallContext<'_>,
    ) -> Result<(Response<Body>, Completion), Failure> {
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
        let replay = Replay::new(body, cx.retries.buffer());
        // Tries are capped at 10 (the policy's limit), so no allocation is needed.
        let mut tried = [usize::MAX; MAX_TRIES];
        let mut tried_len = 0;
        let mut pick = first;
        let mut tries = 0u32;
        let mut _permit: Option<RetryPermit> = None;
        let mut admission = Some(admission);
        loop {
            tries += 1;
            if tried_len < MAX_TRIES {
                tried[tried_len] = pick.index;
                tried_len += 1;
            }
            let endpoint = &self.endpoints[pick.index];
            let state = &self.states[pick.index];
            let mut attempt = rebuild(&parts, &replay);
            if tries > 1 && cx.grpc {
                attempt
                    .headers_mut()
                    .insert(PREVIOUS_ATTEMPTS.clone(), HeaderValue::from(tries - 1));
            }

            let mut in_flight = Some(state.started(pick.nanos));
            let per_try = cx.retries.per_try_timeout().map(|t| pick.at + t);
            let until = match (per_try, cx.deadline) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            // The send future is made where it is awaited: bound to a local first, it would
            // be stored twice in this future (once per branch), and every layer above
            // multiplies what each request's future weighs and copies.
            let result = match until {
                Some(until) => match tokio::time::timeout_at(until, endpoint.send(attempt)).await {
                    Ok(result) => result,
                    Err(_) if per_try == Some(until) => Err(ProxyError::new(
                        ErrorKind::UpstreamReset,
                        Side::Proxy,
                        format!(
                            "endpoint {} did not answer within the per-try timeout",
                            endpoint.label()
                        ),
                    )),
                    // The client's own deadline: the caller answers DEADLINE_EXCEEDED.
                    Err(_) => Err(ProxyError::new(
                        ErrorKind::DeadlineExceeded,
                        Side::Proxy,
                        format!("deadline exceeded on router `{}`", cx.router),
                    )),
                },
                None => endpoint.send(attempt).await,
            };
            let now = Instant::now();
            let (reason, outcome, verdict) = match result {
                Ok(Answer { response, sent_at }) => {
                    state.observe(now - sent_at, now);
                    let grpc_status = strait_telemetry::grpc_status_of(response.headers())
                        .map(|(code, _)| Code::from_u32(code).unwrap_or(Code::Unknown));
                    let Some(reason) =
                        cx.retries
                            .on_response(response.status(), grpc_status, cx.grpc)
                    else {
                        replay.finish();
                        let done = self.completion(pick.index, &mut admission, in_flight, tries);
                        return Ok((response, done));
                    };
                    let head = Ending {
                        http_status: Some(response.status().as_u16()),
                        grpc_status: grpc_status.map(Code::as_u32),
                        ..Ending::default()
                    };
                    let verdict = outcome::of_ending(&head, self.outlier.failing_statuses());
                    (reason, Ok(response), verdict)
                }
                // The endpoint's connection limits turned it away before sending: the
                // request comes back whole, for the router's fallback.
                Err(error) if error.kind() == ErrorKind::Overloaded && replay.can_replay() => {
                    drop(in_flight);
                    self.metrics.rejected(&self.name, "max_pending");
                    return Err(Failure::Rejected {
                        request: Box::new(rebuild(&parts, &replay)),
                        error,
                        reason: "max_pending",
                    });
                }
                Err(error) => {
                    let verdict = outcome::of_error(&error);
                    match cx.retries.on_error(&error) {
                        Some(reason) => (reason, Err(error), verdict),
                        None => {
                            drop(in_flight);
                            self.judge(pick.index, verdict);
                            replay.finish();
                            return Err(Failure::Failed { error, tries });
                        }
                    }
                }
            };

            match self.next_try(&cx, reason, tries, &tried[..tried_len], &replay, now) {
                Err(why) => {
                    debug!(router = %cx.router, service = %self.name, tries, "not retrying: {why}");
                    replay.finish();
                    return match outcome {
                        // The answer that was worth a retry is the answer after all; its
                        // stream's end is judged like any other.
                        Ok(response) => {
                            let done =
                                self.completion(pick.index, &mut admission, in_flight, tries);
                            Ok((response, done))
                        }
                        Err(error) => {
                            drop(in_flight);
                            self.judge(pick.index, verdict);
                            Err(Failure::Failed { error, tries })
                        }
                    };
                }
                Ok((next, permit, wait)) => {
                    drop(in_flight.take());
                    self.judge(pick.index, verdict);
                    drop(outcome);
                    self.metrics.retried(cx.router, reason.on.as_str());
                    debug!(
                        router = %cx.router,
                        service = %self.name,
                        endpoint = %endpoint.label(),
                        tries,
                        "retrying ({}) after {wait:?}",
                        reason.on.as_str()
                    );
                    pick = next;
                    if !wait.is_zero() {
                        tokio::time::sleep(wait).await;
                        pick.at = Instant::now();
                        pick.nanos = self.outlier.nanos(pick.at);
                    }
                    // The budget counts this retry until the next try has an answer.
                    _permit = permit;
                }
            }
        }
    }

    /// The endpoint, budget permit and wait for another try, or why there is none.
    fn next_try(
        &self,
        cx: &CallContext<'_>,
        reason: Reason,
        tries: u32,
        tried: &[usize],
        replay: &Replay,
        now: Instant,
    ) -> Result<(Pick, Option<RetryPermit>, Duration), &'static str> {
        if !cx.retries.may_try_again(tries, reason) {
            return Err("no tries left");
        }
        if !replay.can_replay() {
            return Err("the request body outgrew the replay buffer");
        }
        let wait = if reason.transparent {
            Duration::ZERO
        } else {
            cx.retries.backoff(tries)
        };
        if cx.deadline.is_some_and(|deadline| now + wait >= deadline) {
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
            .pick(cx.hash_key, tried)
            .map_err(|_| "no endpoint is left to try")?;
        Ok((next, permit, wait))
    }

    fn completion(
        self: &Arc<Self>,
        index: usize,
        admission: &mut Option<Admission>,
        in_flight: Option<InFlight>,
        tries: u32,
    ) -> Completion {
        Completion {
            service: self.clone(),
            index,
            _admission: admission.take(),
            in_flight,
            tries,
        }
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
