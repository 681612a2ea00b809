//! The module as a Lambda (worker mode of `MirModule`): settings from the environment,
//! the platform's API signed with the function's role, `lambda_runtime::run`.

use lambda_runtime::{service_fn, LambdaEvent};
use mir_module_offline_alert::lambda::{handle_sqs, Settings};
use mir_module_sdk::Module;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    tracing_subscriber::fmt()
        .json()
        .with_env_filter("info")
        .init();
    let settings = Settings::from_lookup(|k| std::env::var(k).ok())?;
    let module = Module::builder()
        .aws(&settings.api_url, &settings.region)
        .build()?;
    let (module, minutes) = (&module, settings.minutes);
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            handle_sqs(module, minutes, &event.payload)
                .await
                .map_err(lambda_runtime::Error::from)
        },
    ))
    .await
}
