//! Lambda behind API Gateway: `GET /healthz`.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_endpoint(apna::api::endpoints::API_HEALTHZ).await
}
