//! `GET /openapi.json`: the API described from the handlers' own annotations (utoipa).

use axum::Json;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
};

use crate::{error, health, import, jobs, queues, runs, schedules, sync};

#[derive(OpenApi)]
#[openapi(
    info(title = "ferry", description = "Background jobs: enqueue, inspect, re-queue; sync to MongoDB; metrics."),
    paths(
        jobs::enqueue, jobs::list, jobs::show, jobs::retry_one, jobs::retry_filtered,
        jobs::cancel, jobs::stats, runs::list, runs::show, sync::full, sync::entity,
        sync::status, sync::backups, schedules::list, health::healthz, health::readyz,
        import::run, import::status, queues::pause, queues::resume,
    ),
    components(schemas(error::ErrorBody)),
    modifiers(&BearerTokens),
)]
struct ApiDoc;

/// The two bearer scopes.
struct BearerTokens;

impl Modify for BearerTokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (name, what) in [
            (
                "enqueue",
                "FERRY_API_TOKEN: enqueue, and read the jobs it enqueued",
            ),
            ("admin", "FERRY_ADMIN_TOKEN: every route"),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(what))
                        .build(),
                ),
            );
        }
    }
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
