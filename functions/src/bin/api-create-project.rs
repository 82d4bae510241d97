//! Lambda behind API Gateway: `POST /api/projects (and the seed's POST /api/projects/create)`.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_endpoint(apna::api::endpoints::API_CREATE_PROJECT).await
}
