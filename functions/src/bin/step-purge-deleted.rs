//! Lambda for the Step Functions task `PurgeDeleted` (statemachines/*.asl.json).

use apna::tasks::PURGE_DELETED as T;

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    // The backends it uses as constants: the binary links only those.
    apna::lambda::run_task::<{ T.calls_model }, { T.sandboxes }>(T).await
}
