//! The `gatehouse` command line: `serve` (the default), `migrate`, `config check`,
//! `config reference`, `user …`, `allowlist import`, `keys rotate|reencrypt`, `audit verify`,
//! `audit head`; one file per command group. Each command calls the domain services the
//! server uses (the same rules, audit records and notices).
//!
//! Exit codes: `0` success, `1` a refused configuration, a failed check or an operation error,
//! `2` a usage error.

mod allowlist;
mod audit;
mod config;
mod keys;
mod serve;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Settings, Sources};
use crate::telemetry;
use allowlist::AllowlistCommand;
use audit::{AuditCommand, audit_command};
use config::{ConfigCommand, config_check, config_reference};
use keys::KeysCommand;
use serve::serve;
use user::UserCommand;

/// Gatehouse: a secure-by-default web application server.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about)]
pub struct Cli {
    /// TOML configuration file (also `GATEHOUSE_CONFIG`).
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve HTTP (the default).
    Serve {
        /// Address to bind, overriding GATEHOUSE_LISTEN.
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Apply pending database migrations.
    Migrate,
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Check the audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Manage who may sign in.
    #[command(subcommand)]
    Allowlist(AllowlistCommand),
    /// Manage the keys secrets are encrypted with.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let sources = Sources::from_process(cli.config);
    let command = cli.command.unwrap_or(Command::Serve { listen: None });
    if matches!(command, Command::Config(ConfigCommand::Reference)) {
        // Before loading: the reference is wanted most when the configuration is wrong.
        return Ok(config_reference());
    }
    let (mut settings, origins) = match Settings::load_with_origins(&sources) {
        Ok(loaded) => loaded,
        Err(errors) => {
            eprint!("error: {errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if !matches!(command, Command::Serve { .. } | Command::Config(_)) {
        // Commands seal and open what the server does: in development, with its kept key.
        crate::app::use_development_key(&mut settings)?;
    }
    match command {
        Command::Serve { listen } => {
            if let Some(addr) = listen {
                settings.listen = addr;
            }
            serve(settings).await
        }
        Command::Config(ConfigCommand::Check { production }) => {
            Ok(config_check(&settings, &origins, production))
        }
        Command::Config(ConfigCommand::Reference) => Ok(config_reference()),
        Command::Migrate => {
            telemetry::init_stderr("warn");
            let db = crate::app::open_database(&settings).await?;
            db.close().await;
            println!("migrations applied ({})", db.backend_name());
            Ok(ExitCode::SUCCESS)
        }
        Command::User(cmd) => {
            telemetry::init_stderr("warn");
            user::run(&settings, cmd).await
        }
        Command::Allowlist(AllowlistCommand::Import { file, role }) => {
            telemetry::init_stderr("warn");
            allowlist::import(&settings, &file, &role).await
        }
        Command::Keys(cmd) => keys::run(&settings, cmd).await,
        Command::Audit(cmd) => {
            telemetry::init_stderr("warn");
            let db = crate::app::open_database(&settings).await?;
            let code = audit_command(&db, cmd).await;
            db.close().await;
            code
        }
    }
}
