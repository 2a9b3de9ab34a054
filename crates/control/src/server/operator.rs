//! Operator: what `meshgate plan/apply/rollback/history/status` call. Every call
//! needs an operator token. Documents are parsed and validated here, so an
//! invalid one is refused (with its file:line:col errors) before anything is
//! stored; versions are committed with compare-and-set on the current one, so two
//! operators (or replicas) cannot silently overwrite each other. After an apply,
//! the rollout is watched for an automatic rollback ([`super::rollback`]) when the
//! control plane is configured for it.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meshgate_config::Config;
use tonic::{Request, Response, Status};

use super::{ControlPlane, rollback};
use crate::plan;
use crate::proto::v1::operator_server::{Operator, OperatorServer};
use crate::proto::v1::{
    ApplyRequest, ApplyResult, Document, Empty, HistoryResult, PlanResult, ProxyIdentity,
    ProxyStatus, RollbackRequest, StatusResult, VersionInfo,
};
use crate::store::{NewRevision, ProxyRecord, Revision, StoreError};

pub fn service(cp: Arc<ControlPlane>) -> OperatorServer<OperatorApi> {
    OperatorServer::new(OperatorApi { cp })
}

pub struct OperatorApi {
    cp: Arc<ControlPlane>,
}

/// The gRPC status for a store failure.
fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::Conflict { .. } => Status::aborted(e.to_string()),
        StoreError::VersionNotFound(_) | StoreError::LeaseNotFound(_) => {
            Status::not_found(e.to_string())
        }
        StoreError::Io(_) | StoreError::Etcd(_) => Status::unavailable(e.to_string()),
        StoreError::Corrupt(_) => Status::internal(e.to_string()),
    }
}

/// Parses and validates a submitted document; INVALID_ARGUMENT with every error
/// (file:line:col and field path) otherwise.
fn parse_document(doc: &Document) -> Result<Config, Status> {
    meshgate_config::parse_str(&doc.yaml, source_of(doc))
        .map_err(|e| Status::invalid_argument(error_lines(&e)))
}

/// The errors, one a line, capped: the message travels in an HTTP/2 header.
fn error_lines(errors: &meshgate_config::ConfigErrors) -> String {
    const CAP: usize = 8 * 1024;
    let mut out = String::new();
    for (i, e) in errors.0.iter().enumerate() {
        let line = e.to_string();
        if out.len() + line.len() > CAP {
            out.push_str(&format!("\n… and {} more errors", errors.0.len() - i));
            break;
        }
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&line);
    }
    out
}

fn source_of(doc: &Document) -> &str {
    if doc.source.is_empty() {
        "operator API"
    } else {
        &doc.source
    }
}

/// Parses a stored version. It was valid when applied; a newer build may judge
/// it differently, which is the caller's precondition to fix, not a server fault.
fn parse_revision(revision: &Revision) -> Result<Config, Status> {
    meshgate_config::parse_str(&revision.yaml, &format!("version {}", revision.version)).map_err(
        |e| {
            Status::failed_precondition(format!(
                "version {} does not validate with this build: {e}",
                revision.version
            ))
        },
    )
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

fn millis(ms: u64) -> String {
    match ms {
        0 => String::new(),
        ms => rfc3339(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
    }
}

/// Where a proxy stands against the current config version: `rejected` when the
/// newest snapshot it was sent (or, without one recorded, the current version) is
/// the one it refused; `current` when it serves the current version (and the
/// newest snapshot sent, if recorded); `behind` otherwise.
pub fn proxy_state(record: &ProxyRecord, current: u64) -> &'static str {
    let rejected = !record.nacked.is_empty()
        && (record.nacked == record.desired
            || (record.desired.is_empty()
                && record.nacked_config == current
                && record.acked_config != current));
    if rejected {
        "rejected"
    } else if record.acked_config == current
        && (record.desired.is_empty() || record.acked == record.desired)
    {
        "current"
    } else {
        "behind"
    }
}

fn proxy_status(record: ProxyRecord, current: u64) -> ProxyStatus {
    let state = proxy_state(&record, current).to_owned();
    ProxyStatus {
        identity: Some(ProxyIdentity {
            role: record.role,
            node_id: record.node_id,
            service: record.service,
            namespace: record.namespace,
        }),
        connected: record.connected,
        acked: record.acked,
        nacked: record.nacked,
        nack_reason: record.nack_reason,
        desired: record.desired,
        last_seen: millis(record.last_seen_ms),
        build: record.build,
        replica: record.replica,
        acked_config: record.acked_config,
        nacked_config: record.nacked_config,
        state,
    }
}

fn current(cp: &ControlPlane) -> Option<Arc<Revision>> {
    cp.store.config().borrow().clone()
}

/// The plan of `document` against the running version. Callable without gRPC
/// (the admin API); the caller checks authorization.
pub async fn plan_document(cp: &ControlPlane, document: &Document) -> Result<PlanResult, Status> {
    let next = parse_document(document)?;
    let current = current(cp);
    let version = current.as_ref().map_or(0, |r| r.version);
    // A running version this build no longer accepts is compared as empty: the
    // plan that replaces it is exactly what the operator needs to see.
    let (running, note) = match current.as_deref().map(parse_revision).transpose() {
        Ok(running) => (running, String::new()),
        Err(e) => (
            None,
            format!(
                "note: {}; showing the document against an empty config.\n\n",
                e.message()
            ),
        ),
    };
    let proxies = cp.store.proxies().await.map_err(store_status)?;
    let plan = plan::plan(running.as_ref(), &next)
        .against(version)
        .affecting(&proxies);
    Ok(PlanResult {
        text: format!("{note}{}", plan.render()),
        changes: plan.has_changes(),
        running_version: version,
    })
}

/// Validates and commits `document` as the next version (see the module doc);
/// `who` names the caller in the log. Callable without gRPC.
pub async fn apply_document(
    cp: &ControlPlane,
    document: Document,
    expected_version: u64,
    who: &str,
) -> Result<ApplyResult, Status> {
    let next = parse_document(&document)?;
    let current = current(cp);
    let version = current.as_ref().map_or(0, |r| r.version);
    if expected_version != 0 && expected_version != version {
        return Err(Status::failed_precondition(format!(
            "version {version} is running, not the expected {expected_version}"
        )));
    }
    if let Some(running) = &current
        && parse_revision(running).is_ok_and(|c| c == next)
    {
        return Ok(ApplyResult {
            version,
            unchanged: true,
        });
    }
    let committed = cp
        .store
        .commit(
            version,
            NewRevision {
                source: source_of(&document).to_owned(),
                yaml: document.yaml,
                note: String::new(),
            },
        )
        .await
        .map_err(store_status)?;
    tracing::info!(
        version = committed.version,
        source = %committed.source,
        by = %who,
        "config applied"
    );
    if let Some(settings) = &cp.options.auto_rollback {
        rollback::spawn(
            cp.store.clone(),
            settings.clone(),
            committed.clone(),
            current,
        );
    }
    Ok(ApplyResult {
        version: committed.version,
        unchanged: false,
    })
}

/// Commits the content of `version` (0: the one before the current) as a new
/// version noted "rollback to N". Callable without gRPC.
pub async fn rollback_to(
    cp: &ControlPlane,
    version: u64,
    who: &str,
) -> Result<ApplyResult, Status> {
    let current =
        current(cp).ok_or_else(|| Status::failed_precondition("nothing has been applied yet"))?;
    let target = match version {
        0 if current.version <= 1 => {
            return Err(Status::failed_precondition(format!(
                "version {} is the first: there is no earlier one",
                current.version
            )));
        }
        0 => current.version - 1,
        v => v,
    };
    if target == current.version {
        return Ok(ApplyResult {
            version: target,
            unchanged: true,
        });
    }
    let old = cp.store.get(target).await.map_err(store_status)?;
    parse_revision(&old)?;
    let committed = cp
        .store
        .commit(
            current.version,
            NewRevision {
                yaml: old.yaml.clone(),
                source: old.source.clone(),
                note: format!("rollback to {target}"),
            },
        )
        .await
        .map_err(store_status)?;
    tracing::warn!(
        version = committed.version,
        restored = target,
        by = %who,
        "config rolled back"
    );
    Ok(ApplyResult {
        version: committed.version,
        unchanged: false,
    })
}

/// The kept versions, newest first.
pub async fn history(cp: &ControlPlane) -> Result<HistoryResult, Status> {
    let versions = cp.store.history().await.map_err(store_status)?;
    Ok(HistoryResult {
        current: current(cp).map_or(0, |r| r.version),
        versions: versions
            .iter()
            .map(|r| VersionInfo {
                version: r.version,
                source: r.source.clone(),
                applied_at: rfc3339(r.applied_at()),
                note: r.note.clone(),
            })
            .collect(),
    })
}

/// Every proxy record and where it stands against the current version.
pub async fn status(cp: &ControlPlane) -> Result<StatusResult, Status> {
    let current = current(cp).map_or(0, |r| r.version);
    let proxies = cp.store.proxies().await.map_err(store_status)?;
    Ok(StatusResult {
        current,
        proxies: proxies
            .into_iter()
            .map(|p| proxy_status(p, current))
            .collect(),
    })
}

#[tonic::async_trait]
impl Operator for OperatorApi {
    async fn plan(&self, request: Request<Document>) -> Result<Response<PlanResult>, Status> {
        self.cp.options.tokens.operator(&request)?;
        plan_document(&self.cp, request.get_ref())
            .await
            .map(Response::new)
    }

    async fn apply(&self, request: Request<ApplyRequest>) -> Result<Response<ApplyResult>, Status> {
        let who = self.cp.options.tokens.operator(&request)?.name.clone();
        let ApplyRequest {
            document,
            expected_version,
        } = request.into_inner();
        let document =
            document.ok_or_else(|| Status::invalid_argument("apply needs a document"))?;
        apply_document(&self.cp, document, expected_version, &who)
            .await
            .map(Response::new)
    }

    async fn rollback(
        &self,
        request: Request<RollbackRequest>,
    ) -> Result<Response<ApplyResult>, Status> {
        let who = self.cp.options.tokens.operator(&request)?.name.clone();
        rollback_to(&self.cp, request.get_ref().version, &who)
            .await
            .map(Response::new)
    }

    async fn history(&self, request: Request<Empty>) -> Result<Response<HistoryResult>, Status> {
        self.cp.options.tokens.operator(&request)?;
        history(&self.cp).await.map(Response::new)
    }

    async fn status(&self, request: Request<Empty>) -> Result<Response<StatusResult>, Status> {
        self.cp.options.tokens.operator(&request)?;
        status(&self.cp).await.map(Response::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(acked: &str, nacked: &str, desired: &str) -> ProxyRecord {
        let config = |v: &str| {
            v.split('-')
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(0)
        };
        ProxyRecord {
            role: "gateway".into(),
            node_id: "n".into(),
            service: String::new(),
            namespace: String::new(),
            connected: true,
            acked: acked.into(),
            acked_config: config(acked),
            nacked: nacked.into(),
            nacked_config: config(nacked),
            nack_reason: String::new(),
            desired: desired.into(),
            last_seen_ms: 0,
            build: String::new(),
            replica: String::new(),
        }
    }

    #[test]
    fn store_errors_map_to_codes() {
        use tonic::Code;
        let conflict = store_status(StoreError::Conflict {
            expected: 1,
            current: 2,
        });
        assert_eq!(conflict.code(), Code::Aborted);
        assert!(conflict.message().contains("version 2 is current"));
        assert_eq!(
            store_status(StoreError::VersionNotFound(9)).code(),
            Code::NotFound
        );
        assert_eq!(
            store_status(StoreError::Etcd("down".into())).code(),
            Code::Unavailable
        );
    }

    #[test]
    fn many_errors_are_capped() {
        let errors = meshgate_config::ConfigErrors(
            (0..2000)
                .map(|i| meshgate_config::ConfigError {
                    file: "big.yaml".into(),
                    line: i + 1,
                    column: 1,
                    path: format!("routes[{i}]"),
                    message: "unknown field".into(),
                })
                .collect(),
        );
        let text = error_lines(&errors);
        assert!(text.len() < 9 * 1024, "{}", text.len());
        assert!(text.starts_with("big.yaml:1:1: routes[0]: unknown field\n"));
        assert!(text.ends_with("more errors"), "{text}");
    }

    #[test]
    fn states() {
        assert_eq!(proxy_state(&record("3-a", "", "3-a"), 3), "current");
        assert_eq!(proxy_state(&record("3-a", "", ""), 3), "current");
        assert_eq!(proxy_state(&record("2-a", "", "3-a"), 3), "behind");
        assert_eq!(proxy_state(&record("3-a", "", "3-b"), 3), "behind");
        assert_eq!(proxy_state(&record("2-a", "3-a", "3-a"), 3), "rejected");
        assert_eq!(proxy_state(&record("2-a", "3-a", ""), 3), "rejected");
        // Refused an older version, since sent a newer one it has not answered.
        assert_eq!(proxy_state(&record("2-a", "3-a", "4-a"), 4), "behind");
        // Refused one snapshot of v3, serves a later one (new endpoints).
        assert_eq!(proxy_state(&record("3-b", "3-a", "3-b"), 3), "current");
    }
}
