//! Lambda behind API Gateway: `GET /api/projects/{id}/download`.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_endpoint(apna::api::endpoints::API_DOWNLOAD).await
}
