//! Lambda behind API Gateway: `GET /api/projects/{id}/runs`.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_endpoint(apna::api::endpoints::API_LIST_RUNS).await
}
