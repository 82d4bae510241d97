//! Lambda behind API Gateway: `GET /api/projects/{id}/images/{image_id}`.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_endpoint(apna::api::endpoints::API_GET_IMAGE).await
}
