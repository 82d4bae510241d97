//! Lambda behind API Gateway: `POST /api/projects/{id}/versions/{n}/restore`.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_endpoint(apna::api::endpoints::API_RESTORE_VERSION).await
}
