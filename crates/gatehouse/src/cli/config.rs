//! `gatehouse config check` and `gatehouse config reference`.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Subcommand;

use crate::config::{Environment, Origin, Settings};

#[derive(Debug, Subcommand)]
pub(super) enum ConfigCommand {
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

pub(super) fn config_reference() -> ExitCode {
    print!("{}", crate::config::reference_markdown());
    ExitCode::SUCCESS
}

pub(super) fn config_check(
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
