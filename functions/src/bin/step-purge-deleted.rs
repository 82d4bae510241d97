//! Lambda for the Step Functions task `PurgeDeleted` (statemachines/*.asl.json).

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_task(apna::tasks::PURGE_DELETED).await
}
