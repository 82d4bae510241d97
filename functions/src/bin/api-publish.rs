//! Lambda behind API Gateway: `POST /api/projects/{id}/publish`.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_endpoint(apna::api::endpoints::API_PUBLISH).await
}
