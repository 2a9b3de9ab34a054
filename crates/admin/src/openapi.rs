//! The admin API's routes registered together with their OpenAPI descriptions
//! (`utoipa-axum`), so the served `/openapi.json` (OpenAPI 3.1) is generated from
//! the handlers themselves and cannot drift from the router. Authentication is
//! documented from the same list of open paths the middleware uses.

use axum::Extension;
use axum::body::{Body, Bytes};
use axum::http::HeaderValue;
use axum::http::header::CONTENT_TYPE;
use axum::response::Response;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document31, Ref, ResponseBuilder, SecurityRequirement};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::OPEN_PATHS;
use crate::{AdminState, config, handlers};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "meshgate admin API",
        description = "Inspect and reload a running meshgate. With an admin token \
            configured, every endpoint except /healthz and /readyz needs \
            `authorization: Bearer <token>`."
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "config", description = "Served config, compiled routes, services, reload"),
        (name = "health", description = "Liveness and readiness probes (no token needed)"),
        (name = "observe", description = "Metrics"),
    )
)]
struct ApiDoc;

/// Every admin route with its OpenAPI description.
pub(crate) fn api() -> OpenApiRouter<AdminState> {
    let mut api = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(config::get_config))
        .routes(routes!(config::reload))
        .routes(routes!(handlers::routes))
        .routes(routes!(handlers::services))
        .routes(routes!(handlers::healthz))
        .routes(routes!(handlers::readyz))
        .routes(routes!(handlers::metrics))
        .routes(routes!(crate::mesh_graph::mesh_graph))
        .routes(routes!(openapi_json));
    document_auth(api.get_openapi_mut());
    api
}

/// The admin API's OpenAPI 3.1 document, as `/openapi.json` serves it.
pub fn document() -> Document31 {
    api().into_openapi()
}

/// The document, serialised once when the router is built.
#[derive(Clone)]
pub(crate) struct Document(Bytes);

impl Document {
    pub(crate) fn new(doc: &Document31) -> Self {
        // Serialising the generated document cannot fail (string keys, no floats).
        Document(doc.to_json().unwrap_or_default().into())
    }
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "observe",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub(crate) async fn openapi_json(Extension(doc): Extension<Document>) -> Response {
    let mut resp = Response::new(Body::from(doc.0));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

/// Declares the bearer scheme, requires it on every operation outside
/// [`OPEN_PATHS`], and documents their 401 answer.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut Document31) {
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build();
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
        doc.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// Runs after the paths are registered (a `Modify` on [`ApiDoc`] would run before).
fn document_auth(doc: &mut Document31) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let ops = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for op in ops.into_iter().flatten() {
            if OPEN_PATHS.contains(&path.as_str()) {
                op.security = Some(vec![SecurityRequirement::default()]);
                continue;
            }
            let content = Content::new(Some(Ref::from_schema_name("ErrorBody")));
            let unauthorized = ResponseBuilder::new()
                .description("Missing or wrong bearer token (`www-authenticate: Bearer`)")
                .content("application/json", content)
                .build();
            let responses = &mut op.responses.responses;
            responses.insert("401".into(), unauthorized.into());
        }
    }
}
