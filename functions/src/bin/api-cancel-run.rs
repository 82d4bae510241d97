//! Lambda behind API Gateway: `POST /api/runs/{id}/cancel`.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_endpoint(apna::api::endpoints::API_CANCEL_RUN).await
}
