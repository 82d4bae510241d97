//! Lambda behind API Gateway: `DELETE /api/projects/{id}/publish`.

use apna::api::endpoints::API_UNPUBLISH as E;

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    // The backends it uses as constants: the binary links only those.
    apna::lambda::run_endpoint::<{ E.uses.sandboxes }, { E.uses.workflow }>(E).await
}
