//! Lambda for the Step Functions task `PublishFailed` (statemachines/*.asl.json).

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_task(apna::tasks::PUBLISH_FAILED).await
}
