//! The operator CLI: `meshgate plan|apply|rollback|history|status`, calling a
//! control plane's Operator API over TLS with an operator token. Everything is
//! decided by the control plane (validation, diff, versions); this file reads
//! files, makes the call and prints the answer.
//!
//! Exit codes: 0 success, 1 error (invalid document, refused, unreachable…);
//! `plan --detailed-exitcode` exits 2 when the document would change something
//! (as `terraform plan -detailed-exitcode` does), so scripts can tell.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use meshgate_control::proto::v1::operator_client::OperatorClient;
use meshgate_control::proto::v1::{
    ApplyRequest, Document, Empty, HistoryResult, ProxyStatus, RollbackRequest, StatusResult,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};
use tonic::{Request, Status};

/// Where the control plane is and how to prove who we are.
#[derive(Args, Clone, Debug)]
pub struct Connection {
    /// Control-plane URL, e.g. `https://cp.example.com:7443` (env MESHGATE_CONTROL).
    #[arg(long, value_name = "URL")]
    control: Option<String>,
    /// CA certificate (PEM) the control plane's certificate is verified with
    /// (env MESHGATE_CONTROL_CA).
    #[arg(long, value_name = "FILE")]
    control_ca: Option<PathBuf>,
    /// File holding an operator token (env MESHGATE_TOKEN_FILE).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show what applying a document would change (field by field) and which
    /// gateways it would reach; nothing is applied.
    Plan {
        /// The whole config document (YAML).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
        /// Exit 2 (not 0) when there are changes.
        #[arg(long)]
        detailed_exitcode: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// Validate a document and make it the next config version.
    Apply {
        /// The whole config document (YAML).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
        /// Refuse unless version N is the one running (guards against
        /// overwriting someone else's change).
        #[arg(long, value_name = "N")]
        expect_version: Option<u64>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Make an earlier version current again (as a new version with its content).
    Rollback {
        /// The version to restore. Default: the one before the current.
        version: Option<u64>,
        #[command(flatten)]
        connection: Connection,
    },
    /// List the kept config versions, newest first.
    History {
        #[command(flatten)]
        connection: Connection,
    },
    /// Show every proxy and whether it runs the current config.
    Status {
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Config(#[from] meshgate_config::ConfigErrors),
    #[error("connecting to the control plane: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("{}", describe(.0))]
    Call(#[from] Status),
}

fn describe(status: &Status) -> String {
    format!("{} ({:?})", status.message(), status.code())
}

pub fn run(command: Command) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command) -> Result<ExitCode, CliError> {
    match command {
        Command::Plan {
            file,
            detailed_exitcode,
            connection,
        } => {
            let document = read_document(&file)?;
            let mut client = connect(&connection).await?;
            let token = token(&connection)?;
            let plan = client
                .plan(authorized(document, &token)?)
                .await?
                .into_inner();
            print!("{}", plan.text);
            Ok(if plan.changes && detailed_exitcode {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Apply {
            file,
            expect_version,
            connection,
        } => {
            let request = ApplyRequest {
                document: Some(read_document(&file)?),
                expected_version: expect_version.unwrap_or(0),
            };
            let mut client = connect(&connection).await?;
            let token = token(&connection)?;
            let result = client
                .apply(authorized(request, &token)?)
                .await?
                .into_inner();
            if result.unchanged {
                println!("unchanged (version {})", result.version);
            } else {
                println!("applied version {}", result.version);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Rollback {
            version,
            connection,
        } => {
            let request = RollbackRequest {
                version: version.unwrap_or(0),
            };
            let mut client = connect(&connection).await?;
            let token = token(&connection)?;
            let result = client
                .rollback(authorized(request, &token)?)
                .await?
                .into_inner();
            if result.unchanged {
                println!("unchanged (version {} is current)", result.version);
            } else {
                println!("rolled back: version {} is current", result.version);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::History { connection } => {
            let mut client = connect(&connection).await?;
            let token = token(&connection)?;
            let history = client
                .history(authorized(Empty {}, &token)?)
                .await?
                .into_inner();
            print!("{}", render_history(&history));
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { connection } => {
            let mut client = connect(&connection).await?;
            let token = token(&connection)?;
            let status = client
                .status(authorized(Empty {}, &token)?)
                .await?
                .into_inner();
            print!("{}", render_status(&status));
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn read_document(file: &Path) -> Result<Document, CliError> {
    Ok(Document {
        yaml: meshgate_config::read_file(file)?,
        source: file.display().to_string(),
    })
}

/// A flag's value, else the environment variable's.
fn or_env<T: From<String> + Clone>(flag: &Option<T>, env: &str) -> Option<T> {
    flag.clone().or_else(|| {
        std::env::var(env)
            .ok()
            .filter(|v| !v.is_empty())
            .map(T::from)
    })
}

fn token(connection: &Connection) -> Result<String, CliError> {
    let path: PathBuf = or_env(&connection.token_file, "MESHGATE_TOKEN_FILE").ok_or_else(|| {
        CliError::Usage("--token-file FILE (or MESHGATE_TOKEN_FILE) is required".into())
    })?;
    let token = std::fs::read_to_string(&path)
        .map_err(|e| CliError::Usage(format!("reading {}: {e}", path.display())))?;
    let token = token.trim();
    if token.is_empty() {
        return Err(CliError::Usage(format!("{} is empty", path.display())));
    }
    Ok(token.to_owned())
}

fn authorized<T>(message: T, token: &str) -> Result<Request<T>, CliError> {
    let mut request = Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| CliError::Usage("the token file holds characters a header cannot".into()))?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

async fn connect(connection: &Connection) -> Result<OperatorClient<Channel>, CliError> {
    let url: String = or_env(&connection.control, "MESHGATE_CONTROL")
        .ok_or_else(|| CliError::Usage("--control URL (or MESHGATE_CONTROL) is required".into()))?;
    let url = if url.contains("://") {
        url
    } else {
        format!("https://{url}")
    };
    if !url.starts_with("https://") {
        return Err(CliError::Usage(format!(
            "{url}: the control plane is served over TLS: use https://"
        )));
    }
    let ca: PathBuf = or_env(&connection.control_ca, "MESHGATE_CONTROL_CA").ok_or_else(|| {
        CliError::Usage(
            "--control-ca FILE (or MESHGATE_CONTROL_CA) is required: the CA that issued \
             the control plane's certificate (in its data dir's ca/ unless configured)"
                .into(),
        )
    })?;
    let pem = std::fs::read(&ca)
        .map_err(|e| CliError::Usage(format!("reading {}: {e}", ca.display())))?;
    let channel = Channel::from_shared(url.clone())
        .map_err(|e| CliError::Usage(format!("{url}: {e}")))?
        .tls_config(ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)))?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .connect()
        .await?;
    Ok(OperatorClient::new(channel))
}

/// Columns padded to their widest cell, two spaces apart.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn or_dash(s: &str) -> String {
    if s.is_empty() { "-".into() } else { s.into() }
}

/// What `meshgate status` prints.
pub fn render_status(status: &StatusResult) -> String {
    let mut out = match status.current {
        0 => "desired config version: none (nothing applied yet)\n".to_string(),
        v => format!("desired config version: {v}\n"),
    };
    if status.proxies.is_empty() {
        out.push_str("no proxies known\n");
        return out;
    }
    let rows: Vec<Vec<String>> = status.proxies.iter().map(status_row).collect();
    out.push_str(&table(
        &[
            "NODE",
            "ROLE",
            "REPLICA",
            "CONNECTED",
            "RUNNING",
            "DESIRED",
            "STATE",
        ],
        &rows,
    ));
    out
}

fn status_row(p: &ProxyStatus) -> Vec<String> {
    let id = p.identity.clone().unwrap_or_default();
    let role = if id.service.is_empty() {
        id.role
    } else {
        format!("{} ({})", id.role, id.service)
    };
    let state = match p.state.as_str() {
        "rejected" if !p.nack_reason.is_empty() => {
            format!("rejected: {}", one_line(&p.nack_reason))
        }
        "" => "unknown".into(),
        s => s.into(),
    };
    vec![
        or_dash(&id.node_id),
        or_dash(&role),
        or_dash(&p.replica),
        if p.connected { "yes" } else { "no" }.into(),
        or_dash(&p.acked),
        or_dash(&p.desired),
        state,
    ]
}

/// A multi-line reason (config errors) on one table line.
fn one_line(reason: &str) -> String {
    let mut lines = reason.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().unwrap_or("").trim().to_owned();
    match lines.count() {
        0 => first,
        more => format!("{first} (+{more} more)"),
    }
}

/// What `meshgate history` prints (`*` marks the current version).
pub fn render_history(history: &HistoryResult) -> String {
    if history.versions.is_empty() {
        return "no versions (nothing applied yet)\n".into();
    }
    let rows: Vec<Vec<String>> = history
        .versions
        .iter()
        .map(|v| {
            let mark = if v.version == history.current {
                "*"
            } else {
                " "
            };
            vec![
                format!("{mark}{}", v.version),
                or_dash(&v.applied_at),
                or_dash(&v.source),
                v.note.clone(),
            ]
        })
        .collect();
    table(&[" VERSION", "APPLIED", "SOURCE", "NOTE"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshgate_control::proto::v1::{ProxyIdentity, VersionInfo};

    fn proxy(node: &str, acked: &str, desired: &str, state: &str, reason: &str) -> ProxyStatus {
        ProxyStatus {
            identity: Some(ProxyIdentity {
                role: "gateway".into(),
                node_id: node.into(),
                ..Default::default()
            }),
            connected: node != "gw-3",
            acked: acked.into(),
            nacked: if reason.is_empty() { "" } else { "4-9f0e1d2c" }.into(),
            nack_reason: reason.into(),
            desired: desired.into(),
            replica: "cp-1".into(),
            state: state.into(),
            ..Default::default()
        }
    }

    #[test]
    fn status_table() {
        let status = StatusResult {
            current: 4,
            proxies: vec![
                proxy("gw-1", "4-9f0e1d2c", "4-9f0e1d2c", "current", ""),
                proxy(
                    "gw-2",
                    "3-00aa11bb",
                    "4-9f0e1d2c",
                    "rejected",
                    "control-plane:v4:3:5: services[0]: unknown field\nsecond error",
                ),
                proxy("gw-3", "", "4-9f0e1d2c", "behind", ""),
            ],
        };
        assert_eq!(
            render_status(&status),
            "desired config version: 4\n\
             NODE  ROLE     REPLICA  CONNECTED  RUNNING     DESIRED     STATE\n\
             gw-1  gateway  cp-1     yes        4-9f0e1d2c  4-9f0e1d2c  current\n\
             gw-2  gateway  cp-1     yes        3-00aa11bb  4-9f0e1d2c  rejected: control-plane:v4:3:5: services[0]: unknown field (+1 more)\n\
             gw-3  gateway  cp-1     no         -           4-9f0e1d2c  behind\n"
        );
        assert_eq!(
            render_status(&StatusResult::default()),
            "desired config version: none (nothing applied yet)\nno proxies known\n"
        );
    }

    #[test]
    fn history_table() {
        let v = |version: u64, note: &str| VersionInfo {
            version,
            source: "prod.yaml".into(),
            applied_at: format!("2026-11-22T03:0{version}:00Z"),
            note: note.into(),
        };
        let history = HistoryResult {
            current: 3,
            versions: vec![v(3, "rollback to 1"), v(2, ""), v(1, "")],
        };
        assert_eq!(
            render_history(&history),
            " VERSION  APPLIED               SOURCE     NOTE\n\
             *3        2026-11-22T03:03:00Z  prod.yaml  rollback to 1\n \
             2        2026-11-22T03:02:00Z  prod.yaml\n \
             1        2026-11-22T03:01:00Z  prod.yaml\n"
        );
    }
}
