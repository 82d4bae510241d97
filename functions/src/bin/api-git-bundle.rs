//! Lambda behind API Gateway: `GET /api/projects/{id}/git`.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_endpoint(apna::api::endpoints::API_GIT_BUNDLE).await
}
