//! Lambda for the Step Functions task `HibernateProject` (statemachines/*.asl.json).

use apna::tasks::HIBERNATE_PROJECT as T;

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    // The backends it uses as constants: the binary links only those.
    apna::lambda::run_task::<{ T.calls_model }, { T.sandboxes }>(T).await
}
