//! The API's OpenAPI 3 document, generated from the handlers'
//! `#[utoipa::path]` annotations and the wire types' schemas, served at
//! `GET /api/v1/openapi.json`.
//!
//! What every secured operation shares is added here from the same rule
//! the authentication middleware applies ([`access_of`]), so the document
//! cannot disagree with it: the `bearer` security requirement, 401
//! `unauthorized`, 404 for another tenant's route (tenant routes) and 403
//! `admin_only` (admin routes). A handler's annotation lists only its own
//! answers.

use std::borrow::Cow;
use std::sync::LazyLock;

use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cameleer_runtime::{AppId, EnvId, TenantId};
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaFormat, SchemaType, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{IntoParams, Modify, OpenApi, PartialSchema, ToSchema};

use super::error::ErrorBody;
use super::{handlers, logs, quota, retention, streams, tokens};
use crate::auth::{Access, access_of};

/// The name of the security scheme: `Authorization: Bearer <token>`.
pub const SECURITY_SCHEME: &str = "bearer";

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// Routes that need no token.
pub const PUBLIC_PATHS: &[&str] = &["/healthz"];

/// The document: every API route (not the dashboard's static files).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cameleer example server",
        description = "The platform's HTTP API: upload JARs, deploy, promote, read logs. \
Every error is `{\"error\": {\"code\", \"message\"}}`."
    ),
    paths(
        handlers::upload,
        handlers::deploy,
        handlers::history,
        handlers::status,
        streams::logs,
        logs::search,
        logs::forwarder_stats,
        streams::events,
        handlers::stop,
        handlers::restart,
        handlers::rollback,
        handlers::promote,
        handlers::list,
        streams::tenant_events,
        quota::get_quota,
        quota::put_quota,
        retention::plan,
        retention::sweep,
        tokens::create,
        tokens::list,
        tokens::revoke,
        handlers::healthz,
        serve,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Secured)
)]
pub struct ApiDoc;

/// The document as served (built once).
pub fn document() -> &'static utoipa::openapi::OpenApi {
    static DOC: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(ApiDoc::openapi);
    &DOC
}

/// `GET /api/v1/openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object))
)]
pub async fn serve() -> Response {
    static JSON: LazyLock<Vec<u8>> =
        LazyLock::new(|| serde_json::to_vec(document()).unwrap_or_default());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        JSON.as_slice(),
    )
        .into_response()
}

/// Adds what the authentication middleware decides: see the module docs.
struct Secured;

impl Modify for Secured {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            SECURITY_SCHEME,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "The admin token (`<data-dir>/admin-token`) or a tenant token \
                         (`POST /api/v1/tenants/{tenant}/tokens`).",
                    ))
                    .build(),
            ),
        );
        for schema in components.schemas.values_mut() {
            if let RefOr::T(schema) = schema {
                trim_description(schema);
            }
        }
        for (path, item) in openapi.paths.paths.iter_mut() {
            for op in [&mut item.put, &mut item.post].into_iter().flatten() {
                json_body_errors(op);
            }
            if path.contains('{') {
                let ops = [
                    &mut item.get,
                    &mut item.put,
                    &mut item.post,
                    &mut item.delete,
                ];
                for op in ops.into_iter().flatten() {
                    add_error(
                        op,
                        StatusCode::BAD_REQUEST,
                        "`invalid_id` (an id in the path breaks the rules) or `invalid_path`",
                    );
                }
            }
            if PUBLIC_PATHS.contains(&path.as_str()) {
                continue;
            }
            let ops = [
                (Method::GET, &mut item.get),
                (Method::PUT, &mut item.put),
                (Method::POST, &mut item.post),
                (Method::DELETE, &mut item.delete),
                (Method::PATCH, &mut item.patch),
            ];
            for (method, op) in ops {
                if let Some(op) = op {
                    secure(op, access_of(&method, path));
                }
            }
        }
    }
}

/// A type's description is its doc comment: keeps it to the prose, without
/// the Rust examples.
fn trim_description(schema: &mut Schema) {
    let description = match schema {
        Schema::Object(o) => &mut o.description,
        Schema::Array(a) => &mut a.description,
        Schema::OneOf(o) => &mut o.description,
        Schema::AllOf(a) => &mut a.description,
        Schema::AnyOf(a) => &mut a.description,
        _ => return,
    };
    if let Some(text) = description
        && let Some(at) = text.find("# Examples")
    {
        text.truncate(at);
        text.truncate(text.trim_end().len());
    }
}

/// What every JSON body may get wrong (see [`JsonBytes`](super::extract::JsonBytes)
/// and [`ApiError::from_json`](super::ApiError::from_json)).
fn json_body_errors(op: &mut Operation) {
    let takes_json = op
        .request_body
        .as_ref()
        .is_some_and(|b| matches!(b, RefOr::T(b) if b.content.contains_key("application/json")));
    if !takes_json {
        return;
    }
    add_error(
        op,
        StatusCode::BAD_REQUEST,
        "`malformed_json` (not JSON) or `invalid_body` (the body could not be read)",
    );
    add_error(
        op,
        StatusCode::PAYLOAD_TOO_LARGE,
        "`body_too_large`: over 1 MiB",
    );
    add_error(
        op,
        StatusCode::UNPROCESSABLE_ENTITY,
        "`invalid_request`: JSON of the wrong shape",
    );
}

fn secure(op: &mut Operation, access: Access) {
    op.security = Some(vec![SecurityRequirement::new(
        SECURITY_SCHEME,
        Vec::<String>::new(),
    )]);
    add_error(
        op,
        StatusCode::UNAUTHORIZED,
        "`unauthorized`: no token, or one the server does not know",
    );
    match access {
        Access::AnyToken => {}
        Access::Tenant => add_error(
            op,
            StatusCode::NOT_FOUND,
            "`not_found`: a tenant token on another tenant's route",
        ),
        Access::Admin => add_error(
            op,
            StatusCode::FORBIDDEN,
            "`admin_only`: a tenant token on an admin route",
        ),
    }
}

/// Adds an error response with the envelope, or appends to the description
/// of the one the annotation gave.
fn add_error(op: &mut Operation, status: StatusCode, description: &str) {
    let key = status.as_u16().to_string();
    if let Some(RefOr::T(existing)) = op.responses.responses.get_mut(&key) {
        existing.description = format!("{}; {description}", existing.description);
        return;
    }
    let response = ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(ErrorBody::name())))
                .build(),
        )
        .build();
    op.responses.responses.insert(key, RefOr::T(response));
}

/// The path of the app-and-environment routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // a schema only: handlers parse the ids themselves
pub(crate) struct EnvPath {
    /// The tenant.
    #[param(inline)]
    tenant: TenantId,
    /// The app.
    #[param(inline)]
    app: AppId,
    /// The environment (e.g. `dev`, `staging`, `prod`).
    #[param(inline)]
    env: EnvId,
}

/// The path of the app routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // a schema only
pub(crate) struct AppPath {
    /// The tenant.
    #[param(inline)]
    tenant: TenantId,
    /// The app.
    #[param(inline)]
    app: AppId,
}

/// The path of the tenant routes.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // a schema only
pub(crate) struct TenantPath {
    /// The tenant.
    #[param(inline)]
    tenant: TenantId,
}

/// A JAR's bytes, as uploaded.
pub(crate) struct JarBytes;

impl PartialSchema for JarBytes {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .format(Some(SchemaFormat::Custom("binary".into())))
            .description(Some("The JAR, raw (not multipart)."))
            .into()
    }
}

impl ToSchema for JarBytes {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("JarBytes")
    }
}

/// An SSE stream (`text/event-stream`), described in words.
pub(crate) struct EventStream;

impl PartialSchema for EventStream {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Type(Type::String))
            .description(Some(
                "Server-sent events: `status`, `build_progress`, `unhealthy` and `lagged` \
                 (`{\"type\": \"lagged\", \"missed\": N}`), each with the event's JSON as data.",
            ))
            .into()
    }
}

impl ToSchema for EventStream {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("EventStream")
    }
}
