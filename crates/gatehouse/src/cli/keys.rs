//! `gatehouse keys rotate` and `gatehouse keys reencrypt`.

use std::process::ExitCode;

use clap::Subcommand;

use crate::audit::AuditContext;
use crate::config::Settings;
use crate::identity::secrets;
use crate::telemetry;

#[derive(Debug, Subcommand)]
pub(super) enum KeysCommand {
    /// Add a new token signing key: published in the key set at once, it signs after the
    /// publication delay (6 minutes: every instance has read it and every cached key set has
    /// expired); the old key stays published until its last token has expired.
    Rotate,
    /// Seal every encrypted secret (data keys, TOTP secrets, signing keys) again under the
    /// current GATEHOUSE_SECRET_KEY, after a key change with the old key in
    /// GATEHOUSE_SECRET_KEY_PREVIOUS; fails while anything is left under another key.
    Reencrypt,
}

/// Runs a `keys` command.
pub(super) async fn run(settings: &Settings, cmd: KeysCommand) -> anyhow::Result<ExitCode> {
    if settings.secret_key_generated && settings.is_production() {
        eprintln!(
            "error: set GATEHOUSE_SECRET_KEY (or GATEHOUSE_SECRET_KEY_FILE) to the key the servers use: keys sealed under a throwaway key could never be opened"
        );
        return Ok(ExitCode::FAILURE);
    }
    telemetry::init_stderr("warn");
    let db = crate::app::open_database(settings).await?;
    let result = match cmd {
        KeysCommand::Rotate => rotate(settings, &db).await,
        KeysCommand::Reencrypt => reencrypt(settings, &db).await,
    };
    db.close().await;
    result
}

async fn rotate(settings: &Settings, db: &crate::store::Db) -> anyhow::Result<ExitCode> {
    let now = crate::store::now();
    let keys = crate::app::load_keys(settings, db, now).await?;
    let rotated = secrets::rotate_signing_key(db, &keys, now, &AuditContext::cli()).await?;
    println!(
        "new signing key {}: every instance publishes it within {} s, and it signs from {} on",
        rotated.kid,
        crate::identity::tokens::RELOAD_EVERY.as_secs(),
        crate::store::timestamp_text(rotated.signs_from),
    );
    Ok(ExitCode::SUCCESS)
}

async fn reencrypt(settings: &Settings, db: &crate::store::Db) -> anyhow::Result<ExitCode> {
    let keys = crate::app::load_keys(settings, db, crate::store::now()).await?;
    let done = secrets::reencrypt(db, &keys).await?;
    for k in &done.0 {
        println!(
            "{}: {} sealed again under the current secret key",
            k.kind, k.resealed
        );
    }
    if done.complete() {
        println!(
            "everything is sealed under GATEHOUSE_SECRET_KEY: GATEHOUSE_SECRET_KEY_PREVIOUS can be removed"
        );
        return Ok(ExitCode::SUCCESS);
    }
    for k in done.0.iter().filter(|k| k.left > 0) {
        eprintln!(
            "error: {}: {} not sealed under GATEHOUSE_SECRET_KEY",
            k.kind, k.left
        );
    }
    eprintln!(
        "error: not finished: keep GATEHOUSE_SECRET_KEY_PREVIOUS. A value that opens with neither key needs GATEHOUSE_SECRET_KEY_PREVIOUS set to the key it was sealed under; one sealed again under the old key means an instance still runs with it: restart it with the new key and run this again"
    );
    Ok(ExitCode::FAILURE)
}
