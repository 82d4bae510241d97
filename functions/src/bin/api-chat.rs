//! Lambda behind API Gateway: `POST /api/projects/{id}/chat`.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_endpoint(apna::api::endpoints::API_CHAT).await
}
