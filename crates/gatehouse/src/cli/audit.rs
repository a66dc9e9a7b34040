//! `gatehouse audit verify` and `gatehouse audit head`.

use std::process::ExitCode;

use clap::Subcommand;

use crate::audit;
use crate::store::Db;

#[derive(Debug, Subcommand)]
pub(super) enum AuditCommand {
    /// Walk the hash chain and name the first broken record. Exits 1 if it is broken.
    Verify {
        /// A head hash kept from `audit head`: also catches removed newest records.
        #[arg(long, value_name = "HASH")]
        head: Option<String>,
    },
    /// Print the newest record's hash, to keep somewhere else.
    Head,
}

pub(super) async fn audit_command(db: &Db, cmd: AuditCommand) -> anyhow::Result<ExitCode> {
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
