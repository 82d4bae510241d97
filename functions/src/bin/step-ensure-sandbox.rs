//! Lambda for the Step Functions task `EnsureSandbox` (statemachines/*.asl.json).

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_task(apna::tasks::ENSURE_SANDBOX).await
}
