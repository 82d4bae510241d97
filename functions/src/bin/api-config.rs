//! Lambda behind API Gateway: `GET /api/config`.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_endpoint(apna::api::endpoints::API_CONFIG).await
}
