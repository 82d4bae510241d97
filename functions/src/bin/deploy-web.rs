//! Lambda behind the stack's web site (a CloudFormation custom resource):
//! publishes web/ to the web bucket with the API's address.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_publish_web().await
}
