//! Config changes over the control plane's admin endpoint (HTTP), for scripts
//! and tools that do not speak gRPC — the same operations as `meshgate
//! plan|apply|rollback|history`, through the same functions
//! (`server::operator::{plan_document, apply_document, rollback_to, history}`),
//! so validation, compare-and-set commits and automatic-rollback watching are
//! identical. Every route needs an operator token (`authorization: Bearer …`,
//! the control plane's `Tokens`), because this listener is plain HTTP and may
//! be reachable by more than the operators:
//!
//! | route | answer |
//! |---|---|
//! | `POST /config[?expectVersion=N][&source=NAME]`, body: the YAML document | 200 `{version, unchanged}`; 400 `{errors: [{file, line, column, path, message}]}`; 409 when N is not running or another apply won |
//! | `POST /plan[?source=NAME]`, body: the YAML document | 200 text/plain (the plan), headers `x-meshgate-changes`, `x-meshgate-running-version` |
//! | `GET /versions` | 200 `{current, versions: [{version, source, applied_at, note}]}` |
//! | `POST /rollback[?version=N]` | 200 `{version, unchanged}`; 404 unknown version; 409 nothing to roll back to |
//!
//! Other errors: 401 (no or unknown token), 403 (not an operator token), 503
//! (store unreachable); bodies `{error}`.

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use meshgate_control::proto::v1::{ApplyResult, Document};
use meshgate_control::server::operator::{apply_document, history, plan_document, rollback_to};
use serde_json::json;

use super::admin::AdminState;

/// Where documents come from when the caller names no `source`.
const DEFAULT_SOURCE: &str = "admin API";

pub(super) fn routes() -> Router<AdminState> {
    Router::new()
        .route("/config", post(apply))
        .route("/plan", post(plan))
        .route("/versions", get(versions))
        .route("/rollback", post(rollback))
}

type Params = Query<HashMap<String, String>>;

/// An error answer (boxed: a `Response` is large, and travels in every `Err`).
pub(super) struct Failure(Box<Response>);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl From<tonic::Status> for Failure {
    /// The HTTP answer for an operator-API error.
    fn from(status: tonic::Status) -> Failure {
        use tonic::Code;
        let code = match status.code() {
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::InvalidArgument => StatusCode::BAD_REQUEST,
            Code::FailedPrecondition | Code::Aborted => StatusCode::CONFLICT,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = axum::Json(json!({ "error": status.message() }));
        Failure(Box::new(if code == StatusCode::UNAUTHORIZED {
            (code, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (code, body).into_response()
        }))
    }
}

fn bad_request(body: serde_json::Value) -> Failure {
    Failure(Box::new(
        (StatusCode::BAD_REQUEST, axum::Json(body)).into_response(),
    ))
}

/// The caller's token name if it is an operator token; else 401/403.
fn operator(s: &AdminState, headers: &HeaderMap) -> Result<String, Failure> {
    // The same check as the gRPC API: a tonic request carrying these headers.
    let request = tonic::Request::from_parts(
        tonic::metadata::MetadataMap::from_headers(headers.clone()),
        tonic::Extensions::default(),
        (),
    );
    let token = s.cp.options.tokens.operator(&request)?;
    Ok(token.name.clone())
}

/// The submitted document, or 400 with every located error as JSON. (The
/// operator functions validate again; this pass only keeps the errors
/// structured rather than flattened into one message.)
fn document(yaml: String, params: &HashMap<String, String>) -> Result<Document, Failure> {
    let source = params
        .get("source")
        .filter(|s| !s.is_empty())
        .map_or(DEFAULT_SOURCE, String::as_str)
        .to_owned();
    if let Err(errors) = meshgate_config::parse_str(&yaml, &source) {
        let errors: Vec<_> = errors
            .0
            .iter()
            .map(|e| {
                json!({
                    "file": e.file, "line": e.line, "column": e.column,
                    "path": e.path, "message": e.message,
                })
            })
            .collect();
        return Err(bad_request(json!({ "errors": errors })));
    }
    Ok(Document { yaml, source })
}

/// A numeric query parameter (absent: 0), or 400.
fn number(params: &HashMap<String, String>, name: &str) -> Result<u64, Failure> {
    match params.get(name) {
        None => Ok(0),
        Some(v) => v.parse().map_err(|_| {
            bad_request(json!({ "error": format!("{name}={v:?}: expected a version number") }))
        }),
    }
}

/// The answer of an apply or a rollback: `{version, unchanged}`.
fn committed(r: ApplyResult) -> Response {
    axum::Json(json!({ "version": r.version, "unchanged": r.unchanged })).into_response()
}

/// `POST /config`: validate and commit the body as the next version.
async fn apply(
    State(s): State<AdminState>,
    Query(params): Params,
    headers: HeaderMap,
    yaml: String,
) -> Result<Response, Failure> {
    let who = operator(&s, &headers)?;
    let expected = number(&params, "expectVersion")?;
    let document = document(yaml, &params)?;
    let who = format!("{who} (admin API)");
    Ok(committed(
        apply_document(&s.cp, document, expected, &who).await?,
    ))
}

/// `POST /plan`: the body compared with the running version (nothing applied).
async fn plan(
    State(s): State<AdminState>,
    Query(params): Params,
    headers: HeaderMap,
    yaml: String,
) -> Result<Response, Failure> {
    operator(&s, &headers)?;
    let document = document(yaml, &params)?;
    let plan = plan_document(&s.cp, &document).await?;
    let headers = [
        (
            header::CONTENT_TYPE.as_str(),
            "text/plain; charset=utf-8".to_owned(),
        ),
        ("x-meshgate-changes", plan.changes.to_string()),
        (
            "x-meshgate-running-version",
            plan.running_version.to_string(),
        ),
    ];
    Ok((headers, plan.text).into_response())
}

/// `GET /versions`: the kept versions, newest first.
async fn versions(State(s): State<AdminState>, headers: HeaderMap) -> Result<Response, Failure> {
    operator(&s, &headers)?;
    let h = history(&s.cp).await?;
    let versions: Vec<_> = h
        .versions
        .iter()
        .map(|v| {
            json!({
                "version": v.version, "source": v.source,
                "applied_at": v.applied_at, "note": v.note,
            })
        })
        .collect();
    Ok(axum::Json(json!({ "current": h.current, "versions": versions })).into_response())
}

/// `POST /rollback?version=N`: N's content as a new version (no N: the one
/// before the current).
async fn rollback(
    State(s): State<AdminState>,
    Query(params): Params,
    headers: HeaderMap,
) -> Result<Response, Failure> {
    let who = operator(&s, &headers)?;
    let version = number(&params, "version")?;
    let who = format!("{who} (admin API)");
    Ok(committed(rollback_to(&s.cp, version, &who).await?))
}
