//! Lambda behind API Gateway: `GET /api/projects/{id}`.

use apna::api::endpoints::API_GET_PROJECT as E;

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    // The backends it uses as constants: the binary links only those.
    apna::lambda::run_endpoint::<{ E.uses.sandboxes }, { E.uses.workflow }>(E).await
}
