//! Lambda behind API Gateway: `GET /api/projects/{id}/files/{path+}`.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_endpoint(apna::api::endpoints::API_READ_FILE).await
}
