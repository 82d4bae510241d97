//! Lambda behind API Gateway: `GET /api/projects/{id}/images/{image_id}`.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_endpoint("api-get-image").await
}
