//! Lambda behind API Gateway: `GET /api/projects/{id}/preview-access` and
//! `PUT /api/projects/{id}/share`.

use apna::api::endpoints::API_PREVIEW_ACCESS as E;

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    // The backends it uses as constants: the binary links only those.
    apna::lambda::run_endpoint::<{ E.uses.sandboxes }, { E.uses.workflow }>(E).await
}
