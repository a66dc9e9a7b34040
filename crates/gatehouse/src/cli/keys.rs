//! `gatehouse keys rotate` and `gatehouse keys reencrypt`.

use std::process::ExitCode;

use clap::Subcommand;

use crate::audit::AuditContext;
use crate::config::Settings;
use crate::telemetry;

#[derive(Debug, Subcommand)]
pub(super) enum KeysCommand {
    /// Add a new token signing key; it signs from the next minute on (every instance reloads),
    /// older keys keep verifying until their tokens have expired, then go at the next rotation.
    Rotate,
    /// Seal every encrypted secret (TOTP secrets, signing keys) again under the current
    /// GATEHOUSE_SECRET_KEY, after a key change with the old key in
    /// GATEHOUSE_SECRET_KEY_PREVIOUS.
    Reencrypt,
}

/// Runs a `keys` command.
pub(super) async fn run(settings: &Settings, cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        _ if settings.secret_key_generated => {
            eprintln!(
                "error: set GATEHOUSE_SECRET_KEY (or GATEHOUSE_SECRET_KEY_FILE) to the key the servers use: keys sealed under a throwaway key could never be opened"
            );
            Ok(ExitCode::FAILURE)
        }
        KeysCommand::Rotate => {
            telemetry::init_stderr("warn");
            let db = crate::app::open_database(settings).await?;
            let keys = crate::keys::Keys::derive_with_previous(
                &settings.secret_key,
                settings.previous_secret_key.as_ref(),
            );
            let kid = crate::identity::tokens::rotate(
                &db,
                &keys,
                crate::store::now(),
                settings.access_token_lifetime,
                Some(&AuditContext::cli()),
            )
            .await;
            db.close().await;
            let kid = kid?;
            println!("new signing key {kid}; every instance signs with it within a minute");
            Ok(ExitCode::SUCCESS)
        }
        KeysCommand::Reencrypt => {
            telemetry::init_stderr("warn");
            let db = crate::app::open_database(settings).await?;
            let keys = crate::keys::Keys::derive_with_previous(
                &settings.secret_key,
                settings.previous_secret_key.as_ref(),
            );
            let resealed = match crate::identity::mfa::reencrypt(&db, &keys).await {
                Ok(n) => crate::identity::tokens::reencrypt(&db, &keys)
                    .await
                    .map(|m| n + m),
                Err(e) => Err(e),
            };
            db.close().await;
            let resealed = resealed?;
            println!("{resealed} secret(s) sealed again under the current secret key");
            Ok(ExitCode::SUCCESS)
        }
    }
}
