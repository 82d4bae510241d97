//! Lambda for the Step Functions task `ListIdleProjects` (statemachines/*.asl.json).

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_task(apna::tasks::LIST_IDLE_PROJECTS).await
}
