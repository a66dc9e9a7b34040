//! The `gatehouse` command line: `serve` (the default), `migrate`, `config check`,
//! `config reference`, `user …`,
//! `audit verify`, `audit head`.
//!
//! Exit codes: `0` success, `1` a refused configuration, a failed check or an operation error,
//! `2` a usage error.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::app::Application;
use crate::audit::{self, AuditContext};
use crate::config::{Environment, Origin, Settings, Sources};
use crate::identity::allowlist;
use crate::identity::passwords::PasswordHasher;
use crate::identity::user_import;
use crate::identity::users::{self, NewUser};
use crate::identity::{DisplayName, Email, Role, UserStatus};
use crate::store::Db;
use crate::telemetry;
use secrecy::{ExposeSecret as _, SecretString};

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

#[derive(Debug, Subcommand)]
enum AllowlistCommand {
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

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the effective configuration (secrets redacted) and every production problem.
    /// Exits 1 when production mode would refuse to start.
    Check {
        /// Judge the configuration as production even if GATEHOUSE_ENV says otherwise.
        #[arg(long)]
        production: bool,
    },
    /// Print every setting (name, aliases, default, meaning) as the Markdown table README shows.
    /// Needs no valid configuration.
    Reference,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user.
    Add {
        /// Email address.
        #[arg(long)]
        email: String,
        /// admin, manager or user.
        #[arg(long, default_value = "user")]
        role: String,
        /// Display name.
        #[arg(long, default_value = "")]
        name: String,
        /// Read a password from standard input (the password policy applies).
        #[arg(long)]
        password_stdin: bool,
    },
    /// Import users with their password hashes (JSON lines, or CSV for a `.csv` file) from
    /// another application; Werkzeug hashes keep working. One bad line imports nothing.
    Import {
        /// The file.
        file: PathBuf,
    },
    /// List users.
    List {
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Change a user's role.
    SetRole(RoleArgs),
    /// Stop a user from signing in.
    Disable(EmailArg),
    /// Let a disabled user sign in again.
    Enable(EmailArg),
    /// Turn off a user's two-step sign-in (they lost their authenticator and recovery codes);
    /// ends their sessions.
    ResetMfa(EmailArg),
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Add a new token signing key; it signs from the next minute on (every instance reloads),
    /// older keys keep verifying until their tokens have expired, then go at the next rotation.
    Rotate,
    /// Seal every encrypted secret (TOTP secrets, signing keys) again under the current
    /// GATEHOUSE_SECRET_KEY, after a key change with the old key in
    /// GATEHOUSE_SECRET_KEY_PREVIOUS.
    Reencrypt,
}

#[derive(Debug, Args)]
struct RoleArgs {
    /// Email address.
    #[arg(long)]
    email: String,
    /// admin, manager or user.
    #[arg(long)]
    role: String,
}

#[derive(Debug, Args)]
struct EmailArg {
    /// Email address.
    #[arg(long)]
    email: String,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Walk the hash chain and name the first broken record. Exits 1 if it is broken.
    Verify {
        /// A head hash kept from `audit head`: also catches removed newest records.
        #[arg(long, value_name = "HASH")]
        head: Option<String>,
    },
    /// Print the newest record's hash, to keep somewhere else.
    Head,
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
            let db = crate::app::open_database(&settings).await?;
            let identity = crate::app::cli_identity(&settings, &db).await?;
            let code = user_command(&db, &identity, &settings, cmd).await;
            if !identity.mailer.flush(MAIL_FLUSH_LIMIT).await {
                eprintln!("warning: a notice mail could not be sent in time; see the log");
            }
            db.close().await;
            code
        }
        Command::Allowlist(AllowlistCommand::Import { file, role }) => {
            telemetry::init_stderr("warn");
            let text = std::fs::read_to_string(&file)
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
            let db = crate::app::open_database(&settings).await?;
            let report = allowlist::import(&db, entries, &AuditContext::cli()).await?;
            db.close().await;
            println!(
                "{} users created, {} already existed",
                report.created.len(),
                report.existing.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys(_) if settings.secret_key_generated => {
            eprintln!(
                "error: set GATEHOUSE_SECRET_KEY (or GATEHOUSE_SECRET_KEY_FILE) to the key the servers use: keys sealed under a throwaway key could never be opened"
            );
            Ok(ExitCode::FAILURE)
        }
        Command::Keys(KeysCommand::Rotate) => {
            telemetry::init_stderr("warn");
            let db = crate::app::open_database(&settings).await?;
            let keys = crate::keys::Keys::derive_with_previous(
                &settings.secret_key,
                settings.previous_secret_key.as_ref(),
            );
            let kid = crate::identity::tokens::rotate(
                &db,
                &keys,
                crate::store::now(),
                settings.access_token_lifetime,
            )
            .await;
            db.close().await;
            let kid = kid?;
            let ctx = AuditContext::cli();
            let db = crate::app::open_database(&settings).await?;
            let mut tx = db.begin().await?;
            audit::record(
                &mut tx,
                &ctx,
                audit::AuditEvent {
                    action: "keys.rotate",
                    entity_type: "signing_key",
                    entity_id: Some(kid.clone()),
                    changes: serde_json::json!({}),
                },
            )
            .await?;
            tx.commit().await?;
            db.close().await;
            println!("new signing key {kid}; every instance signs with it within a minute");
            Ok(ExitCode::SUCCESS)
        }
        Command::Keys(KeysCommand::Reencrypt) => {
            telemetry::init_stderr("warn");
            let db = crate::app::open_database(&settings).await?;
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
        Command::Audit(cmd) => {
            telemetry::init_stderr("warn");
            let db = crate::app::open_database(&settings).await?;
            let code = audit_command(&db, cmd).await;
            db.close().await;
            code
        }
    }
}

async fn serve(settings: Settings) -> anyhow::Result<ExitCode> {
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

fn config_reference() -> ExitCode {
    print!("{}", crate::config::reference_markdown());
    ExitCode::SUCCESS
}

fn config_check(
    settings: &Settings,
    origins: &std::collections::BTreeMap<&'static str, Origin>,
    production: bool,
) -> ExitCode {
    let judged_as_production = production || settings.env == Environment::Production;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "Effective configuration (secrets redacted):");
    for (name, value) in settings.describe() {
        let origin = origins.get(name).copied().unwrap_or(Origin::Default);
        let _ = writeln!(out, "  {name:<36} {value}  ({origin})");
    }
    let warnings = settings.warnings();
    if !warnings.is_empty() {
        let _ = writeln!(out, "\nWarnings:");
        for w in &warnings {
            let _ = writeln!(out, "  - {w}");
        }
    }
    let problems = settings.production_problems();
    if problems.is_empty() {
        let _ = writeln!(out, "\nNo production problems.");
        return ExitCode::SUCCESS;
    }
    let _ = writeln!(
        out,
        "\nProduction problems (production mode refuses to start):"
    );
    for p in &problems {
        let _ = writeln!(out, "  - {p}");
    }
    if judged_as_production {
        ExitCode::FAILURE
    } else {
        let _ = writeln!(
            out,
            "(GATEHOUSE_ENV is development, so these do not stop `serve`; use --production to fail on them)"
        );
        ExitCode::SUCCESS
    }
}

/// How long a command waits for the notices it queued to go out.
const MAIL_FLUSH_LIMIT: std::time::Duration = std::time::Duration::from_secs(30);

async fn user_command(
    db: &Db,
    identity: &crate::identity::Identity,
    settings: &Settings,
    cmd: UserCommand,
) -> anyhow::Result<ExitCode> {
    let ctx = AuditContext::cli();
    match cmd {
        UserCommand::Add {
            email,
            role,
            name,
            password_stdin,
        } => {
            let new = NewUser {
                email: Email::parse(&email)?,
                role: role.parse::<Role>()?,
                display_name: DisplayName::parse(&name)?,
            };
            let user = if password_stdin {
                let mut password = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut password)?;
                let password = SecretString::from(password.trim_end_matches(['\n', '\r']));
                if let Err(broken) = settings
                    .password_policy
                    .check(password.expose_secret(), Some(&new.email))
                {
                    eprintln!("error: the password does not meet the policy; nothing was created:");
                    for rule in broken {
                        eprintln!("  - {rule}");
                    }
                    return Ok(ExitCode::FAILURE);
                }
                let hash = PasswordHasher::per_core(settings.argon2)?
                    .hash(&password)
                    .await?;
                users::create_with_password_hash(db, new, &hash, &ctx).await?
            } else {
                users::create(db, new, &ctx).await?
            };
            println!("created {} {} ({})", user.id, user.email, user.role);
        }
        UserCommand::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let csv = file
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
            let parsed = match user_import::parse(&text, csv) {
                Ok(parsed) => parsed,
                Err(problems) => {
                    eprintln!(
                        "error: {} cannot be imported; nothing was imported:",
                        file.display()
                    );
                    for p in problems {
                        eprintln!("  - {p}");
                    }
                    return Ok(ExitCode::FAILURE);
                }
            };
            let (created, existing) = user_import::import(db, parsed, &ctx).await?;
            println!("{created} users created, {existing} already existed (left unchanged)");
        }
        UserCommand::List { json } => {
            let all = users::list(db).await?;
            let mut out = std::io::stdout().lock();
            if json {
                for u in &all {
                    let line = serde_json::json!({
                        "id": u.id,
                        "email": u.email.as_str(),
                        "display_name": u.display_name.as_str(),
                        "role": u.role.as_str(),
                        "status": u.status.as_str(),
                        "created_at": crate::store::timestamp_text(u.created_at),
                    });
                    let _ = writeln!(out, "{line}");
                }
            } else {
                let _ = writeln!(
                    out,
                    "{:<36}  {:<32}  {:<8}  {:<8}  NAME",
                    "ID", "EMAIL", "ROLE", "STATUS"
                );
                for u in &all {
                    let _ = writeln!(
                        out,
                        "{:<36}  {:<32}  {:<8}  {:<8}  {}",
                        u.id,
                        u.email,
                        u.role,
                        u.status,
                        u.display_name.as_str()
                    );
                }
            }
        }
        UserCommand::SetRole(args) => {
            let email = Email::parse(&args.email)?;
            let (user, ended) = identity
                .set_role_and_status(&email, Some(args.role.parse()?), None, None, &ctx)
                .await
                .map_err(|e| not_found_as(e, &email))?;
            println!("{} is now {}", user.email, user.role);
            print_ended(&user, ended);
        }
        UserCommand::Disable(args) => {
            set_status(identity, &args, UserStatus::Disabled, &ctx).await?
        }
        UserCommand::Enable(args) => set_status(identity, &args, UserStatus::Active, &ctx).await?,
        UserCommand::ResetMfa(args) => {
            let email = Email::parse(&args.email)?;
            if identity
                .mfa_reset(&email, &ctx)
                .await
                .map_err(|e| not_found_as(e, &email))?
            {
                println!("two-step sign-in is off for {email}; every sign-in of theirs ended");
            } else {
                println!("{email} has no two-step sign-in; nothing changed");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn set_status(
    identity: &crate::identity::Identity,
    args: &EmailArg,
    status: UserStatus,
    ctx: &AuditContext,
) -> anyhow::Result<()> {
    let email = Email::parse(&args.email)?;
    let (user, ended) = identity
        .set_role_and_status(&email, None, Some(status), None, ctx)
        .await
        .map_err(|e| not_found_as(e, &email))?;
    println!("{} is now {}", user.email, user.status);
    print_ended(&user, ended);
    Ok(())
}

fn print_ended(user: &crate::identity::User, ended: usize) {
    if ended > 0 {
        println!("ended {ended} session(s) of {}", user.email);
    }
}

fn not_found_as(e: crate::Error, email: &Email) -> anyhow::Error {
    match e {
        crate::Error::NotFound => anyhow::anyhow!("no user has the address {email}"),
        other => other.into(),
    }
}

async fn audit_command(db: &Db, cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        AuditCommand::Head => {
            match audit::head(db).await? {
                Some((id, hash)) => println!("{hash}  (record {id})"),
                None => println!("the audit log is empty"),
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify { head } => {
            let total = audit::count(db).await?;
            let bar = indicatif::ProgressBar::new(total);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "verifying {bar:40} {pos}/{len} records ({eta})",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            let report = audit::verify(db, head.as_deref(), |n| bar.set_position(n)).await?;
            bar.finish_and_clear();
            match report.broken {
                None => {
                    println!(
                        "audit chain intact: {} records, head {}",
                        report.checked,
                        report.head.as_deref().unwrap_or("(empty)")
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Some(b) => {
                    match b.id {
                        Some(id) => println!(
                            "audit chain BROKEN at record {id}: {} ({} records before it verified)",
                            b.reason, report.checked
                        ),
                        None => println!("audit chain BROKEN: {}", b.reason),
                    }
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
