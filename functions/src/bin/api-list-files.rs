//! Lambda behind API Gateway: `GET /api/projects/{id}/files`.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_endpoint(apna::api::endpoints::API_LIST_FILES).await
}
