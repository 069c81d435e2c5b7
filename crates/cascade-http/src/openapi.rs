//! The OpenAPI document, generated from the handlers and request types, served at
//! `/v1/openapi.json`.

use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

use crate::{api, problem, uploads};

/// The API's OpenAPI description.
#[derive(OpenApi, Debug)]
#[openapi(
    info(title = "cascade", description = "Cascading message delivery: one message, tried over an ordered chain of channels until it is delivered."),
    paths(api::start, api::get_one, api::list, api::cancel, api::events, api::upload, api::dead_callbacks),
    components(schemas(api::StartRequest, api::MessageBody, api::AttachmentBody, api::Started, api::Uploaded,
        uploads::UploadInfo, problem::ProblemDetails)),
    modifiers(&BearerAuth),
    security(("api_key" = []))
)]
pub struct ApiDoc;

#[derive(Debug)]
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("api_key", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// `GET /v1/openapi.json`.
pub async fn serve() -> Response {
    axum::Json(ApiDoc::openapi()).into_response()
}
