//! A listener's or route's filters in run order, and the loop that runs them:
//! the first filter that does not continue ends the chain; a deferred filter is
//! awaited; every step's verdict goes to `explain` when one was asked for.

use std::sync::Arc;

use super::{Filter, Flow, RequestCx};

/// One request step: the name it was configured under and the filter.
#[derive(Debug, Clone)]
pub struct Step {
    /// The policy's name from `policies:`, or the filter type for Gateway API filters.
    pub label: Arc<str>,
    pub filter: Arc<dyn Filter>,
}

/// Filters split by phase, each list in declared order.
#[derive(Debug, Default)]
pub struct FilterChain {
    pub request: Vec<Step>,
    pub response: Vec<Arc<dyn Filter>>,
}

impl FilterChain {
    /// Appends a request filter labelled with its type.
    pub fn push_request(&mut self, filter: Arc<dyn Filter>) {
        self.request.push(Step {
            label: filter.name().into(),
            filter,
        });
    }

    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }

    /// Runs request filters in order; the first that does not continue wins.
    pub async fn on_request(&self, req: &mut http::request::Parts, cx: &mut RequestCx<'_>) -> Flow {
        for step in &self.request {
            let mut flow = step.filter.on_request(req, cx);
            if matches!(flow, Flow::Defer) {
                flow = step.filter.on_request_async(req, cx).await;
            }
            if let Some(explain) = cx.explain.as_mut() {
                explain.record(&step.label, step.filter.name(), &flow);
            }
            match flow {
                Flow::Continue => {}
                done => return done,
            }
        }
        Flow::Continue
    }

    pub fn on_response(&self, resp: &mut http::response::Parts, cx: &RequestCx<'_>) {
        for f in &self.response {
            f.on_response(resp, cx);
        }
    }
}
