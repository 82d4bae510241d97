//! Lambda behind API Gateway: `GET /api/runs/{id}/events (long-poll JSON; API Gateway does not stream)`.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_endpoint(apna::api::endpoints::API_RUN_EVENTS).await
}
