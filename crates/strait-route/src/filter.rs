//! Filters: what a request passes between routing and admission. A filter sees the request
//! head and the context, and may answer, change the head, or pass the request on. The
//! entrypoint's filters run first, then the router's, in order.

use std::sync::Arc;

use http::StatusCode;
use strait_config::AbortStatus;
use strait_core::RequestHead;
use strait_http::Reply;
use strait_telemetry::Metrics;

use crate::FaultInjector;

/// One filter of a chain.
#[derive(Debug)]
pub enum Filter {
    /// The router's `fault`: delays or aborts a share of its requests.
    Fault(FaultInjector),
}

/// What a filter decided.
#[derive(Debug)]
pub enum Flow {
    /// The request goes on to the next filter, then to admission.
    Next,
    /// strait answers the request itself; nothing is sent upstream.
    Answer(Reply),
}

/// What a filter may read besides the head.
#[derive(Debug)]
pub struct FilterContext<'a> {
    pub router: &'a Arc<str>,
    pub metrics: &'a Metrics,
}

/// A chain of filters, in the order they run.
#[derive(Debug, Default)]
pub struct Filters {
    chain: Vec<Filter>,
}

// === impl Filters ===

impl Filters {
    pub fn new(chain: Vec<Filter>) -> Filters {
        Filters { chain }
    }

    pub fn is_empty(&self) -> bool {
        self.chain.is_empty()
    }

    /// Runs the chain over `head` until a filter answers.
    pub async fn run(&self, head: &mut RequestHead, cx: &FilterContext<'_>) -> Flow {
        for filter in &self.chain {
            if let Flow::Answer(reply) = filter.apply(head, cx).await {
                return Flow::Answer(reply);
            }
        }
        Flow::Next
    }
}

// === impl Filter ===

impl Filter {
    async fn apply(&self, head: &mut RequestHead, cx: &FilterContext<'_>) -> Flow {
        match self {
            Filter::Fault(fault) => {
                let injected = fault.decide(head.headers());
                if let Some(delay) = injected.delay {
                    cx.metrics.fault_injected(cx.router, "delay");
                    tokio::time::sleep(delay).await;
                }
                match injected.abort {
                    Some(status) => {
                        cx.metrics.fault_injected(cx.router, "abort");
                        Flow::Answer(abort(status))
                    }
                    None => Flow::Next,
                }
            }
        }
    }
}

/// The answer to an injected abort.
fn abort(status: AbortStatus) -> Reply {
    const MESSAGE: &str = "fault injected";
    match status {
        AbortStatus::Grpc(code) => Reply::Grpc(code, MESSAGE.to_owned()),
        AbortStatus::Http(status) => Reply::Http(
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            MESSAGE.to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use strait_config::{Fault, FaultAbort, FaultDelay};
    use strait_grpc::Code;

    use super::*;

    fn fault(delay: Option<FaultDelay>, abort: Option<FaultAbort>) -> Filter {
        Filter::Fault(FaultInjector::new(&Fault {
            delay,
            abort,
            header_trigger: None,
        }))
    }

    fn head() -> RequestHead {
        RequestHead::from_request(http::Request::new(())).0
    }

    #[tokio::test(start_paused = true)]
    async fn an_abort_answers_and_a_delay_waits() {
        let metrics = Metrics::new();
        let router: Arc<str> = Arc::from("r");
        let cx = FilterContext {
            router: &router,
            metrics: &metrics,
        };
        let chain = Filters::new(vec![fault(
            Some(FaultDelay {
                duration: Duration::from_secs(3),
                percent: 100.0,
            }),
            Some(FaultAbort {
                status: AbortStatus::Grpc(Code::Unavailable),
                percent: 100.0,
            }),
        )]);
        let started = tokio::time::Instant::now();
        let flow = chain.run(&mut head(), &cx).await;
        assert_eq!(started.elapsed(), Duration::from_secs(3));
        assert!(
            matches!(flow, Flow::Answer(Reply::Grpc(Code::Unavailable, ref m)) if m == "fault injected"),
            "{flow:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_chain_that_does_not_answer_passes_the_request_on() {
        let metrics = Metrics::new();
        let router: Arc<str> = Arc::from("r");
        let cx = FilterContext {
            router: &router,
            metrics: &metrics,
        };
        assert!(matches!(
            Filters::default().run(&mut head(), &cx).await,
            Flow::Next
        ));
        let never = Filters::new(vec![fault(
            None,
            Some(FaultAbort {
                status: AbortStatus::Http(429),
                percent: 0.0,
            }),
        )]);
        assert!(matches!(never.run(&mut head(), &cx).await, Flow::Next));
    }

    #[test]
    fn an_http_abort_keeps_its_status() {
        assert!(matches!(
            abort(AbortStatus::Http(429)),
            Reply::Http(StatusCode::TOO_MANY_REQUESTS, _)
        ));
    }
}
