//! `gatehouse serve`: the server, until Ctrl-C or SIGTERM.

use std::process::ExitCode;

use crate::app::Application;
use crate::config::Settings;
use crate::telemetry;

pub(super) async fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
    let _log_guard = telemetry::init(&settings.log_filter, settings.log_format);
    if settings.is_production() {
        let problems = settings.production_problems();
        if !problems.is_empty() {
            eprintln!("error: production mode refuses to start:");
            for p in &problems {
                eprintln!("  - {p}");
            }
            eprintln!("run `gatehouse config check` to see the whole configuration");
            return Ok(ExitCode::FAILURE);
        }
    }
    for w in settings.warnings() {
        tracing::warn!(event = "config_warning", setting = %w.setting, "{}", w.message);
    }
    let app = Application::build(settings).await?;
    app.run_until(shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
