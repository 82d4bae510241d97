//! Lambda for the Step Functions task `SandboxStatus` (statemachines/*.asl.json).

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_task(apna::tasks::SANDBOX_STATUS).await
}
