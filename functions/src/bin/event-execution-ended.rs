//! Lambda behind the EventBridge rule on Step Functions status changes:
//! finishes runs whose generation ended without ending them.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_execution_events().await
}
