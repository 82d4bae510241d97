//! Lambda for the Step Functions task `ActivateSite` (statemachines/*.asl.json).

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_task(apna::tasks::ACTIVATE_SITE).await
}
