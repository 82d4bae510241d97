//! Lambda behind API Gateway: `GET /api/openapi.json`.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_endpoint(apna::api::endpoints::API_OPENAPI).await
}
