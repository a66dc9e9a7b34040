//! The OpenID Connect settings: the row naming the providers, and the settings each provider
//! has under its own name (`GATEHOUSE_OIDC_<NAME>_ISSUER`, …), which no fixed row can declare:
//! [`read_providers`] reads them after the rows, and [`PER_PROVIDER`] documents them in README's
//! table.
//!
//! Seed 004's `GOOGLE_CLIENT_ID` and `GOOGLE_CLIENT_SECRET` are aliases of the `google`
//! provider's client settings, and alone configure that provider (issuer
//! `https://accounts.google.com`).
//!
//! # Security
//! - A variable that names a provider that is not listed, or a setting that does not exist, is
//!   refused by name: a typo never leaves a provider silently half-configured.
//! - The algorithm allowlist accepts only asymmetric algorithms: an ID token signed with HS256
//!   (keyed by the client secret, which the provider's every client knows) is never accepted.
//! - An `http://` issuer is refused in production (`Settings::production_problems`).

use std::collections::BTreeMap;

use secrecy::SecretString;
use url::Url;

use super::{Secrecy, Setting, Shown};
use crate::config::parse::split_list;
use crate::config::{ConfigError, Origin, Settings};
use crate::identity::oidc::{Algorithm, ProviderConfig};

/// The issuer of the provider named `google` when none is set.
pub(crate) const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// The prefix of every per-provider setting.
pub(crate) const PREFIX: &str = "GATEHOUSE_OIDC_";

/// Seed 004's names for the `google` provider's client settings.
pub(crate) const GOOGLE_ALIASES: &[(&str, &str)] = &[
    ("GOOGLE_CLIENT_ID", "CLIENT_ID"),
    ("GOOGLE_CLIENT_SECRET", "CLIENT_SECRET"),
];

pub(super) static ROWS: &[Setting] = &[Setting {
    name: "GATEHOUSE_OIDC_PROVIDERS",
    aliases: &[],
    secrecy: Secrecy::Public,
    default: "unset (`google` when `GOOGLE_CLIENT_ID` is set)",
    doc: "comma-separated names of the OpenID Connect providers users may sign in with (letters and digits, such as `google,corp`); each has the `GATEHOUSE_OIDC_<NAME>_…` settings below and one button on the sign-in page",
    read: |s, v| {
        let names: Vec<String> = v
            .map(split_list)
            .unwrap_or_default()
            .into_iter()
            .map(|n| n.to_ascii_lowercase())
            .collect();
        if let Some(bad) = names.iter().find(|n| !valid_name(n)) {
            return Err(format!(
                "expected provider names of letters and digits (at most 32), such as `google,corp`; `{bad}` is not one"
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = names.iter().find(|n| !seen.insert(*n)) {
            return Err(format!("`{twice}` is listed twice"));
        }
        s.oidc_provider_names = names;
        Ok(())
    },
    show: |s| {
        Shown::of(
            s.oidc_providers
                .iter()
                .map(|p| p.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
        )
    },
}];

/// One setting each provider has under its own name.
#[derive(Debug)]
pub(crate) struct PerProvider {
    /// What follows `GATEHOUSE_OIDC_<NAME>_`.
    pub(crate) suffix: &'static str,
    /// Whether it is secret (then also read from `…_FILE`).
    pub(crate) secret: bool,
    /// The default, in Markdown.
    pub(crate) default: &'static str,
    /// What it does, one line of Markdown.
    pub(crate) doc: &'static str,
}

/// The per-provider settings, as README's table shows them.
pub(crate) static PER_PROVIDER: &[PerProvider] = &[
    PerProvider {
        suffix: "ISSUER",
        secret: false,
        default: "`https://accounts.google.com` for `google`; required for others",
        doc: "the provider's issuer URL, exactly as its discovery document and ID tokens name it; `https://` (an `http://` issuer only in development)",
    },
    PerProvider {
        suffix: "CLIENT_ID",
        secret: false,
        default: "required",
        doc: "the client ID the provider gave Gatehouse; for `google` also `GOOGLE_CLIENT_ID` (seed 004)",
    },
    PerProvider {
        suffix: "CLIENT_SECRET",
        secret: true,
        default: "required",
        doc: "the client secret (or `…_CLIENT_SECRET_FILE`); for `google` also `GOOGLE_CLIENT_SECRET` (seed 004)",
    },
    PerProvider {
        suffix: "SCOPES",
        secret: false,
        default: "`openid email profile`",
        doc: "the scopes asked for, space- or comma-separated; must include `openid` and `email`",
    },
    PerProvider {
        suffix: "LABEL",
        secret: false,
        default: "`Google` for `google`, else the name",
        doc: "the provider's name on its sign-in button (`Sign in with <label>`)",
    },
    PerProvider {
        suffix: "ALLOWED_DOMAINS",
        secret: false,
        default: "`GATEHOUSE_ALLOWED_DOMAINS`",
        doc: "domains whose addresses, verified by this provider, may get a new account at their first sign-in; for Google the token's `hd` (Workspace domain) must be one of them too",
    },
    PerProvider {
        suffix: "ALGORITHMS",
        secret: false,
        default: "`RS256`",
        doc: "the ID-token signature algorithms accepted, whatever the provider's metadata lists: `RS256`, `RS384`, `RS512`, `PS256`, `PS384`, `PS512`, `ES256`, `ES384`, `EdDSA` (never an HMAC algorithm)",
    },
];

/// README's rows for the per-provider settings.
pub(crate) fn markdown_rows() -> String {
    let mut out = String::new();
    for p in PER_PROVIDER {
        let lock = if p.secret { " 🔒" } else { "" };
        out.push_str(&format!(
            "| `GATEHOUSE_OIDC_<NAME>_{}`{lock} | {} | {} |\n",
            p.suffix, p.default, p.doc
        ));
    }
    out
}

#[cfg(test)]
/// The names README's first column may use for the per-provider settings.
pub(crate) fn documented_names() -> Vec<String> {
    PER_PROVIDER
        .iter()
        .map(|p| format!("GATEHOUSE_OIDC_<NAME>_{}", p.suffix))
        .chain(GOOGLE_ALIASES.iter().map(|(alias, _)| (*alias).to_owned()))
        .collect()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 32 && name.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Whether an environment variable belongs to the per-provider settings (or is one of seed
/// 004's Google names): the loader collects these for [`read_providers`].
pub(crate) fn is_provider_variable(name: &str) -> bool {
    (name.starts_with(PREFIX) && name != "GATEHOUSE_OIDC_PROVIDERS")
        || GOOGLE_ALIASES
            .iter()
            .any(|(alias, _)| name == *alias || name.strip_suffix("_FILE") == Some(alias))
}

/// Reads every listed provider's settings from `vars` (the per-provider variables, see
/// [`is_provider_variable`]) into `settings.oidc_providers`, reporting each problem by its
/// variable.
pub(crate) fn read_providers(
    settings: &mut Settings,
    vars: &BTreeMap<String, (String, Origin)>,
    errors: &mut Vec<ConfigError>,
) {
    let mut error = |setting: String, message: String| {
        errors.push(ConfigError { setting, message });
    };
    let get = |name: &str| {
        vars.get(name)
            .map(|(v, _)| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let mut names = settings.oidc_provider_names.clone();
    let google_alias_set = GOOGLE_ALIASES.iter().any(|(alias, _)| get(alias).is_some());
    if names.is_empty() && (google_alias_set || get("GATEHOUSE_OIDC_GOOGLE_CLIENT_ID").is_some()) {
        names.push("google".into());
    }
    // Every variable must belong to a listed provider and be a known setting.
    for var in vars.keys() {
        let Some(rest) = var.strip_prefix(PREFIX) else {
            if !names.iter().any(|n| n == "google") {
                error(
                    var.clone(),
                    "configures the `google` provider, which GATEHOUSE_OIDC_PROVIDERS does not list".into(),
                );
            }
            continue;
        };
        let known = names.iter().any(|n| {
            rest.strip_prefix(&n.to_ascii_uppercase())
                .and_then(|s| s.strip_prefix('_'))
                .is_some_and(|suffix| {
                    PER_PROVIDER.iter().any(|p| {
                        suffix == p.suffix || (p.secret && suffix == format!("{}_FILE", p.suffix))
                    })
                })
        });
        if !known {
            error(
                var.clone(),
                "is no setting of a provider listed in GATEHOUSE_OIDC_PROVIDERS; see the configuration reference in README.md".into(),
            );
        }
    }
    let mut providers = Vec::new();
    for name in &names {
        let var = |suffix: &str| format!("{PREFIX}{}_{suffix}", name.to_ascii_uppercase());
        let google = name == "google";
        // The name, its `_FILE` variant, then (for `google`) seed 004's name and its `_FILE`.
        let lookup = |suffix: &str, secret: bool, errors: &mut dyn FnMut(String, String)| {
            let mut candidates = vec![var(suffix)];
            if google {
                if let Some((alias, _)) = GOOGLE_ALIASES.iter().find(|(_, s)| *s == suffix) {
                    candidates.push((*alias).to_owned());
                }
            }
            for candidate in candidates {
                if let Some(v) = get(&candidate) {
                    return Some(v);
                }
                if secret {
                    let file_var = format!("{candidate}_FILE");
                    if let Some(path) = get(&file_var) {
                        return match std::fs::read_to_string(&path) {
                            Ok(content) => Some(content.trim_end_matches(['\n', '\r']).to_owned()),
                            Err(e) => {
                                errors(file_var, format!("cannot read the file it names: {e}"));
                                None
                            }
                        };
                    }
                }
            }
            None
        };
        let issuer_raw = lookup("ISSUER", false, &mut error)
            .or_else(|| google.then(|| GOOGLE_ISSUER.to_owned()));
        let issuer = match issuer_raw {
            None => {
                error(
                    var("ISSUER"),
                    format!(
                        "is not set: set it to the issuer URL of the `{name}` provider, such as `https://login.example.com`"
                    ),
                );
                None
            }
            Some(raw) => match Url::parse(&raw) {
                Ok(url)
                    if matches!(url.scheme(), "https" | "http")
                        && url.host().is_some()
                        && url.query().is_none()
                        && url.fragment().is_none()
                        && url.username().is_empty()
                        && url.password().is_none() =>
                {
                    Some(raw.trim_end_matches('/').to_owned())
                }
                _ => {
                    error(
                        var("ISSUER"),
                        format!(
                            "expected an https:// URL without query or credentials, got `{raw}`"
                        ),
                    );
                    None
                }
            },
        };
        let client_id = lookup("CLIENT_ID", false, &mut error);
        if client_id.is_none() {
            error(
                var("CLIENT_ID"),
                format!("is not set: set it to the client ID the `{name}` provider gave Gatehouse"),
            );
        }
        let client_secret = lookup("CLIENT_SECRET", true, &mut error);
        if client_secret.is_none() {
            error(
                var("CLIENT_SECRET"),
                format!(
                    "is not set: set it (or {}_FILE) to the client secret the `{name}` provider gave Gatehouse",
                    var("CLIENT_SECRET")
                ),
            );
        }
        let scopes = lookup("SCOPES", false, &mut error).map_or_else(
            || vec!["openid".into(), "email".into(), "profile".into()],
            |v| split_list(&v),
        );
        if !scopes.iter().any(|s| s == "openid") || !scopes.iter().any(|s| s == "email") {
            error(
                var("SCOPES"),
                format!(
                    "must include `openid` and `email`, got `{}`",
                    scopes.join(" ")
                ),
            );
        }
        let label = lookup("LABEL", false, &mut error).unwrap_or_else(|| {
            if google {
                "Google".into()
            } else {
                name.clone()
            }
        });
        if label.chars().count() > 40 || label.chars().any(char::is_control) {
            error(
                var("LABEL"),
                "expected a short name of at most 40 characters".into(),
            );
        }
        let allowed_domains = match lookup("ALLOWED_DOMAINS", false, &mut error) {
            None => settings.allowed_domains.clone(),
            Some(v) => {
                let domains: Vec<String> = split_list(&v)
                    .into_iter()
                    .map(|d| d.trim_start_matches('@').to_ascii_lowercase())
                    .collect();
                if domains
                    .iter()
                    .any(|d| !d.contains('.') || d.contains('@') || d.contains('*'))
                {
                    error(
                        var("ALLOWED_DOMAINS"),
                        "expected domain names such as `example.com` (no wildcards)".into(),
                    );
                }
                domains
            }
        };
        let algorithms = match lookup("ALGORITHMS", false, &mut error) {
            None => vec![Algorithm::Rs256],
            Some(v) => {
                let parsed: Result<Vec<Algorithm>, String> =
                    split_list(&v).iter().map(|a| Algorithm::parse(a)).collect();
                match parsed {
                    Ok(list) if !list.is_empty() => list,
                    Ok(_) => {
                        error(
                            var("ALGORITHMS"),
                            "expected at least one algorithm, such as `RS256`".into(),
                        );
                        Vec::new()
                    }
                    Err(bad) => {
                        error(
                            var("ALGORITHMS"),
                            format!(
                                "`{bad}` is not accepted: expected asymmetric algorithms among RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA"
                            ),
                        );
                        Vec::new()
                    }
                }
            }
        };
        if let (Some(issuer), Some(client_id), Some(client_secret)) =
            (issuer, client_id, client_secret)
        {
            providers.push(ProviderConfig {
                name: name.clone(),
                label,
                issuer,
                client_id,
                client_secret: SecretString::from(client_secret),
                scopes,
                allowed_domains,
                algorithms,
            });
        }
    }
    settings.oidc_providers = providers;
}

#[cfg(test)]
mod tests {
    use crate::config::Settings;
    use crate::config::testing::{GOOD_KEY, sources};

    fn names_of(errs: &crate::config::ConfigErrors) -> Vec<String> {
        errs.0.iter().map(|e| e.setting.clone()).collect()
    }

    #[test]
    fn providers_are_read_by_name_with_their_defaults() {
        let s = Settings::load(&sources(&[
            ("GATEHOUSE_OIDC_PROVIDERS", "google,corp"),
            ("GATEHOUSE_OIDC_GOOGLE_CLIENT_ID", "g-id"),
            ("GATEHOUSE_OIDC_GOOGLE_CLIENT_SECRET", "g-secret"),
            ("GATEHOUSE_OIDC_CORP_ISSUER", "https://login.corp.example/"),
            ("GATEHOUSE_OIDC_CORP_CLIENT_ID", "c-id"),
            ("GATEHOUSE_OIDC_CORP_CLIENT_SECRET", "c-secret"),
            ("GATEHOUSE_OIDC_CORP_LABEL", "Corp SSO"),
            ("GATEHOUSE_OIDC_CORP_ALGORITHMS", "ES256,RS256"),
            ("GATEHOUSE_OIDC_CORP_ALLOWED_DOMAINS", "corp.example"),
        ]))
        .unwrap();
        let [google, corp] = &s.oidc_providers[..] else {
            panic!("two providers: {:?}", s.oidc_providers)
        };
        assert_eq!(google.issuer, "https://accounts.google.com");
        assert_eq!(google.label, "Google");
        assert_eq!(google.scopes, ["openid", "email", "profile"]);
        assert_eq!(google.algorithms, [crate::identity::oidc::Algorithm::Rs256]);
        assert_eq!(corp.issuer, "https://login.corp.example");
        assert_eq!(corp.label, "Corp SSO");
        assert_eq!(corp.allowed_domains, ["corp.example"]);
        assert_eq!(corp.algorithms.len(), 2);
        assert!(
            !format!("{s:?}").contains("c-secret"),
            "the secret is redacted"
        );
    }

    #[test]
    fn seed_004s_google_names_configure_google_on_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "from-a-file\n").unwrap();
        let s = Settings::load(&sources(&[
            ("GOOGLE_CLIENT_ID", "seed-id"),
            ("GOOGLE_CLIENT_SECRET_FILE", path.to_str().unwrap()),
        ]))
        .unwrap();
        assert_eq!(s.oidc_providers.len(), 1);
        assert_eq!(s.oidc_providers[0].name, "google");
        assert_eq!(s.oidc_providers[0].client_id, "seed-id");
    }

    #[test]
    fn missing_or_inconsistent_provider_settings_fail_naming_the_variable() {
        let errs = Settings::load(&sources(&[
            ("GATEHOUSE_OIDC_PROVIDERS", "corp"),
            ("GATEHOUSE_OIDC_CORP_CLIENT_ID", "c-id"),
            ("GATEHOUSE_OIDC_CORP_ALGORITHMS", "HS256"),
            ("GATEHOUSE_OIDC_CORP_SCOPES", "profile"),
            ("GATEHOUSE_OIDC_CORP_CLIENTSECRET", "typo"),
            ("GATEHOUSE_OIDC_OTHER_ISSUER", "https://other.example"),
        ]))
        .unwrap_err();
        let names = names_of(&errs);
        for expected in [
            "GATEHOUSE_OIDC_CORP_ISSUER",
            "GATEHOUSE_OIDC_CORP_CLIENT_SECRET",
            "GATEHOUSE_OIDC_CORP_ALGORITHMS",
            "GATEHOUSE_OIDC_CORP_SCOPES",
            "GATEHOUSE_OIDC_CORP_CLIENTSECRET",
            "GATEHOUSE_OIDC_OTHER_ISSUER",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} missing from {names:?}"
            );
        }
        let errs =
            Settings::load(&sources(&[("GATEHOUSE_OIDC_PROVIDERS", "bad_name")])).unwrap_err();
        assert_eq!(names_of(&errs), ["GATEHOUSE_OIDC_PROVIDERS"]);
    }

    #[test]
    fn an_http_issuer_is_refused_in_production_only() {
        let corp = [
            ("GATEHOUSE_OIDC_PROVIDERS", "corp"),
            ("GATEHOUSE_OIDC_CORP_ISSUER", "http://127.0.0.1:9/"),
            ("GATEHOUSE_OIDC_CORP_CLIENT_ID", "c-id"),
            ("GATEHOUSE_OIDC_CORP_CLIENT_SECRET", "c-secret"),
        ];
        let dev = Settings::load(&sources(&corp)).unwrap();
        assert!(
            dev.production_problems()
                .iter()
                .all(|p| p.setting != "GATEHOUSE_OIDC_CORP_ISSUER")
                || !dev.is_production()
        );
        let mut prod = corp.to_vec();
        prod.extend([
            ("GATEHOUSE_ENV", "production"),
            ("GATEHOUSE_SECRET_KEY", GOOD_KEY),
        ]);
        let problems = Settings::load(&sources(&prod))
            .unwrap()
            .production_problems();
        assert!(
            problems
                .iter()
                .any(|p| p.setting == "GATEHOUSE_OIDC_CORP_ISSUER"),
            "{problems:?}"
        );
    }
}
