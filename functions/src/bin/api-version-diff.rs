//! Lambda behind API Gateway: `GET /api/projects/{id}/versions/{n}/diff`.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_endpoint(apna::api::endpoints::API_VERSION_DIFF).await
}
