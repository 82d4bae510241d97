//! Lambda behind API Gateway: `GET /api/runs/{id}`.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_endpoint(apna::api::endpoints::API_GET_RUN).await
}
