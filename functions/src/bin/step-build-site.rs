//! Lambda for the Step Functions task `BuildSite` (statemachines/*.asl.json).

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_task(apna::tasks::BUILD_SITE).await
}
