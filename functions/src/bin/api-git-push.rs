//! Lambda behind API Gateway: `POST /api/projects/{id}/git/push`.

use apna::api::endpoints::API_GIT_PUSH as E;

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    // The backends it uses as constants: the binary links only those.
    apna::lambda::run_endpoint::<{ E.uses.sandboxes }, { E.uses.workflow }>(E).await
}
