//! Lambda behind API Gateway: `POST /preview-wake/{id}` (public, throttled).

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_endpoint(apna::api::endpoints::API_PREVIEW_WAKE).await
}
