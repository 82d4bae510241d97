//! Lambda behind API Gateway: `POST /api/projects/{id}/git/push`.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_endpoint(apna::api::endpoints::API_GIT_PUSH).await
}
