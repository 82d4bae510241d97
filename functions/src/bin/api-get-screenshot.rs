//! Lambda behind API Gateway: `GET /api/projects/{id}/screenshots/{sha256}`.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_endpoint(apna::api::endpoints::API_GET_SCREENSHOT).await
}
