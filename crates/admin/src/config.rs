//! `GET /config` (the served config, its version and reload history) and
//! `POST /config/reload` (re-read the config file; a bad one is rejected whole and
//! the served config stays).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use meshgate_core::{ReloadError, StartError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::AdminState;
use crate::handlers::{ErrorBody, error};

/// The served config and where it came from.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConfigView {
    /// 1 at start, +1 for every applied change.
    version: u64,
    /// xxh3-64 of the config file's bytes, hex.
    hash: String,
    /// The config file.
    source: String,
    /// When the served version was loaded, RFC 3339.
    loaded_at: String,
    reloads_ok: u64,
    reloads_failed: u64,
    /// The last refused reload's errors (`file:line:col: path: message` lines),
    /// until a later reload succeeds.
    last_error: Option<String>,
    /// The served config (the `meshgate.yaml` model) as JSON, defaults filled in.
    /// Never contains the admin token.
    #[schema(value_type = Object)]
    config: serde_json::Value,
}

/// The config being served.
#[utoipa::path(get, path = "/config", tag = "config",
    responses((status = 200, description = "Served config", body = ConfigView)))]
pub(crate) async fn get_config(State(state): State<AdminState>) -> Response {
    let status = state.reloader.status();
    let snapshot = state.reloader.gateway().snapshot();
    let config = match serde_json::to_value(&*snapshot.config) {
        Ok(c) => c,
        Err(e) => {
            let msg = format!("cannot serialise config: {e}");
            return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", &msg);
        }
    };
    Json(ConfigView {
        version: status.version,
        hash: status.hash,
        source: status.source,
        loaded_at: status.loaded_at,
        reloads_ok: status.reloads_ok,
        reloads_failed: status.reloads_failed,
        last_error: status.last_error,
        config,
    })
    .into_response()
}

/// The outcome of an accepted reload.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Reloaded {
    /// The version now served (unchanged when the file was).
    version: u64,
}

/// Re-reads the config file and applies it if it changed.
#[utoipa::path(post, path = "/config/reload", tag = "config", responses(
    (status = 200, description = "Applied, or the file is unchanged", body = Reloaded),
    (status = 400, description = "`invalid_config`: rejected, the previous config keeps \
        serving; `message` has one `file:line:col: path: message` line per error",
        body = ErrorBody),
    (status = 500, description = "`apply_failed`: valid, but could not be applied (e.g. a \
        listener address in use); the previous config keeps serving", body = ErrorBody)))]
pub(crate) async fn reload(State(state): State<AdminState>) -> Response {
    match state.reloader.reload("admin").await {
        Ok(version) => Json(Reloaded { version }).into_response(),
        Err(ReloadError::Invalid(errors)) => error(
            StatusCode::BAD_REQUEST,
            "invalid_config",
            &errors.to_string(),
        ),
        Err(ReloadError::Apply(e @ StartError::Compile(_))) => {
            error(StatusCode::BAD_REQUEST, "invalid_config", &e.to_string())
        }
        Err(ReloadError::Apply(e)) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "apply_failed",
            &e.to_string(),
        ),
    }
}
