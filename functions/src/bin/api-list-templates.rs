//! Lambda behind API Gateway: `GET /api/templates` and `GET /api/templates/{name}/preview.png`.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_endpoint(apna::api::endpoints::API_LIST_TEMPLATES).await
}
