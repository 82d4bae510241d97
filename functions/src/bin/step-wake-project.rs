//! Lambda for the Step Functions task `WakeProject` (statemachines/wake.asl.json).

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_task(apna::tasks::WAKE_PROJECT).await
}
