//! Lambda behind API Gateway: `POST /api/projects/{id}/text-edit`.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_endpoint(apna::api::endpoints::API_TEXT_EDIT).await
}
