//! `gatehouse allowlist import`: who may sign in, from seed 000's `users.json`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use crate::audit::AuditContext;
use crate::config::Settings;
use crate::identity::allowlist;

#[derive(Debug, Subcommand)]
pub(super) enum AllowlistCommand {
    /// Create a user for every address in a JSON allowlist (seed 000's users.json; formats in
    /// README). Existing users are left unchanged; one invalid entry refuses the whole file.
    Import {
        /// The JSON file.
        file: PathBuf,
        /// Role of the users created when an entry names none.
        #[arg(long, default_value = "user")]
        role: String,
    },
}

/// Imports the allowlist `file`, giving `role` to entries that name none.
pub(super) async fn import(
    settings: &Settings,
    file: &Path,
    role: &str,
) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    let entries = match allowlist::parse(&text, role.parse()?) {
        Ok(entries) => entries,
        Err(problems) => {
            eprintln!(
                "error: {} is not a usable allowlist; nothing was imported:",
                file.display()
            );
            for p in problems {
                eprintln!("  - {p}");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    let db = crate::app::open_database(settings).await?;
    let report = allowlist::import(&db, entries, &AuditContext::cli()).await?;
    db.close().await;
    println!(
        "{} users created, {} already existed",
        report.created.len(),
        report.existing.len()
    );
    Ok(ExitCode::SUCCESS)
}
