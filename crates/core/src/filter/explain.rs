//! The trace `explain` prints: which route matched and why earlier candidates did
//! not, then each filter's verdict and reason, then where the request goes. Filled
//! only for requests that asked for it; other requests carry `None` and pay nothing.

use super::Flow;

/// Everything learned about one request's way through the gateway.
#[derive(Debug, Default, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explain {
    /// Route candidates in match order, up to and including the one that matched.
    pub routes: Vec<RouteCheck>,
    /// Filters and policies in the order they ran.
    pub steps: Vec<ExplainStep>,
    /// The authenticated consumer at the end, if any.
    pub consumer: Option<String>,
    /// Where the request goes (service and its endpoints), or the answer it gets.
    pub outcome: Option<String>,
    /// Detail left by the running filter (`RequestCx::note`), taken by `record`.
    #[serde(skip)]
    pub(crate) pending: Option<String>,
}

/// A route the table tried.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteCheck {
    pub route: String,
    /// The host key and path rule, as `/routes` lists them (`* PathPrefix /api`).
    pub rule: String,
    /// `None` when it matched; else why not.
    pub mismatch: Option<String>,
}

/// One filter's decision.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExplainStep {
    /// The policy name (or filter type).
    pub name: String,
    /// The filter type (`Jwt`, `RateLimit`…).
    pub kind: &'static str,
    /// `continue`, `respond 301`, `deny 401 invalid_credentials`.
    pub verdict: String,
    pub detail: Option<String>,
}

impl Explain {
    pub(crate) fn record(&mut self, name: &str, kind: &'static str, flow: &Flow) {
        let verdict = match flow {
            Flow::Continue => "continue".to_owned(),
            Flow::Respond(r) => format!("respond {}", r.status().as_u16()),
            Flow::Reject(e) => format!("deny {} {}", e.status().as_u16(), e.reason()),
            Flow::Defer => "deferred".to_owned(),
        };
        self.steps.push(ExplainStep {
            name: name.to_owned(),
            kind,
            verdict,
            detail: self.pending.take(),
        });
    }

    /// Plain text, one line per fact, as `meshgate explain` prints it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for r in &self.routes {
            match &r.mismatch {
                None => out.push_str(&format!("route {}: matched ({})\n", r.route, r.rule)),
                Some(why) => {
                    out.push_str(&format!("route {}: skipped ({}): {why}\n", r.route, r.rule))
                }
            }
        }
        for s in &self.steps {
            out.push_str(&format!("{} [{}]: {}", s.name, s.kind, s.verdict));
            if let Some(d) = &s.detail {
                out.push_str(&format!(" — {d}"));
            }
            out.push('\n');
        }
        if let Some(c) = &self.consumer {
            out.push_str(&format!("consumer: {c}\n"));
        }
        if let Some(o) = &self.outcome {
            out.push_str(&format!("=> {o}\n"));
        }
        out
    }

    /// One line for the live `x-meshgate-explain` response header (ASCII dashes:
    /// clients read header values as Latin-1 or refuse non-ASCII).
    pub fn one_line(&self) -> String {
        self.render()
            .trim_end()
            .replace('\n', "; ")
            .replace(" — ", " - ")
    }
}
