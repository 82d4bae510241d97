//! Lambda behind API Gateway: `GET /api/runs/{id}/events (long-poll JSON; API Gateway does not stream)`.

use apna::api::endpoints::API_RUN_EVENTS as E;

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    // The backends it uses as constants: the binary links only those.
    apna::lambda::run_endpoint::<{ E.uses.sandboxes }, { E.uses.workflow }>(E).await
}
