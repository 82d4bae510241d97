//! Lambda behind API Gateway: `GET /api/projects/{id}/preview-access` and
//! `PUT /api/projects/{id}/share`.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_endpoint(apna::api::endpoints::API_PREVIEW_ACCESS).await
}
