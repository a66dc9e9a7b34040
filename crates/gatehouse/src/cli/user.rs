//! `gatehouse user …`: add, import, list, set-role, disable, enable, reset-mfa. Every change
//! goes through the same identity services the pages and the API use, so it is audited,
//! revokes and notifies exactly as they do.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use secrecy::{ExposeSecret as _, SecretString};

use crate::audit::AuditContext;
use crate::config::Settings;
use crate::identity::user_import;
use crate::identity::users::{self, NewUser};
use crate::identity::{DisplayName, Email, Role, UserStatus};
use crate::store::Db;

#[derive(Debug, Subcommand)]
pub(super) enum UserCommand {
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
    /// another application; Werkzeug hashes keep working. One bad line (a hash whose cost is over
    /// the bounds included) imports nothing.
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

#[derive(Debug, Args)]
pub(super) struct RoleArgs {
    /// Email address.
    #[arg(long)]
    email: String,
    /// admin, manager or user.
    #[arg(long)]
    role: String,
}

#[derive(Debug, Args)]
pub(super) struct EmailArg {
    /// Email address.
    #[arg(long)]
    email: String,
}

/// Runs a `user` command against the configured database.
pub(super) async fn run(settings: &Settings, cmd: UserCommand) -> anyhow::Result<ExitCode> {
    let db = crate::app::open_database(settings).await?;
    let identity = crate::app::cli_identity(settings, &db).await?;
    let code = user_command(&db, &identity, settings, cmd).await;
    if !identity.mailer.flush(MAIL_FLUSH_LIMIT).await {
        eprintln!("warning: a notice mail could not be sent in time; see the log");
    }
    db.close().await;
    code
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
                let hash = identity.passwords.hash(&password).await?;
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
            let parsed = match user_import::parse(&text, csv, settings.argon2) {
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
            let (created, existing) =
                user_import::import(db, &identity.passwords, parsed, &ctx).await?;
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

fn not_found_as(e: crate::error::Error, email: &Email) -> anyhow::Error {
    match e {
        crate::error::Error::NotFound => anyhow::anyhow!("no user has the address {email}"),
        other => other.into(),
    }
}
