//! The OpenAPI document, generated from the handlers and request types, served at
//! `/v1/openapi.json`.

use std::sync::LazyLock;

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

use crate::{activity, api, campaigns, connections, policies, problem, uploads};

/// The API's OpenAPI description.
#[derive(OpenApi, Debug)]
#[openapi(
    info(title = "cascade", description = "Cascading message delivery: one message, tried over an ordered chain of channels until it is delivered."),
    paths(api::start, api::get_one, api::list, api::cancel, api::events, api::upload, api::dead_callbacks,
        campaigns::create, campaigns::list, campaigns::get_one, campaigns::events, campaigns::pause,
        campaigns::resume, campaigns::cancel, campaigns::export, policies::list, policies::get_one, policies::put,
        policies::delete, connections::list),
    components(schemas(api::StartRequest, api::MessageBody, api::AttachmentBody, api::Started, api::Uploaded,
        uploads::UploadInfo, problem::ProblemDetails, campaigns::CreateCampaign, campaigns::ScheduleBody,
        campaigns::CampaignSummary, policies::PolicyEntry, policies::PolicyList, policies::PolicySource,
        connections::ConnectionsReport, connections::ChannelReport, connections::ConnectionReport,
        connections::HealthReport, connections::RateLimitReport, connections::SendCounts, connections::Share,
        activity::RecentError, activity::ErrorStage)),
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

/// `GET /v1/openapi.json`: the document, built and serialized once.
pub async fn serve() -> Response {
    static DOCUMENT: LazyLock<Bytes> = LazyLock::new(|| {
        Bytes::from(
            serde_json::to_vec(&ApiDoc::openapi())
                .unwrap_or_else(|e| unreachable!("the OpenAPI document serializes: {e}")),
        )
    });
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT.clone()).into_response()
}
