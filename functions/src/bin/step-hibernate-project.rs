//! Lambda for the Step Functions task `HibernateProject` (statemachines/*.asl.json).

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_task(apna::tasks::HIBERNATE_PROJECT).await
}
