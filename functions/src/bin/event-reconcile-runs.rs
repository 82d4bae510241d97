//! Lambda run on a schedule: finishes runs whose execution ended (or never
//! started) without ending them, in case their status-change event was lost.

#[tokio::main]
async fn main() -> Result<(), apna::lambda::BoxError> {
    apna::lambda::run_reconcile().await
}
