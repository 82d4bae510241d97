//! Lambda behind the stack's migrate step (a CloudFormation custom resource,
//! DatabaseBackend=postgres): applies the schema migrations once per deploy.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_migrate().await
}
