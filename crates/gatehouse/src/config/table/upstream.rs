//! Rows of the upstream identity settings: the person an access proxy in front of Gatehouse
//! names (`identity::upstream`). Read after `GATEHOUSE_TRUSTED_PROXIES`, which the trusted header
//! relies on; production's refusals are in `config::check`.

use super::{Secrecy, Setting, Shown};
use crate::identity::upstream::{UpstreamMode, parse_aud, parse_header_name, parse_team_domain};

/// The message for a setting `mode` needs and that is missing.
fn required_by_cloudflare(what: &str) -> String {
    format!("is required when GATEHOUSE_UPSTREAM_IDENTITY=cloudflare_access: set it to {what}")
}

pub(super) static ROWS: &[Setting] = &[
    Setting {
        name: "GATEHOUSE_UPSTREAM_IDENTITY",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`off`",
        doc: "who names the person, besides Gatehouse's own sign-in: `off`; `cloudflare_access` (Cloudflare Access's signed `Cf-Access-Jwt-Assertion` is verified and required on every request; needs both `GATEHOUSE_CF_ACCESS_*`); `trusted_header` (the header `GATEHOUSE_UPSTREAM_IDENTITY_HEADER`, believed only from `GATEHOUSE_TRUSTED_PROXIES`). See Upstream identity",
        read: |s, v| {
            s.upstream_identity.mode = match v {
                None => UpstreamMode::Off,
                Some(raw) => UpstreamMode::parse(raw).ok_or_else(|| {
                    format!("expected `off`, `cloudflare_access` or `trusted_header`, got `{raw}`")
                })?,
            };
            Ok(())
        },
        show: |s| Shown::of(s.upstream_identity.mode.as_str()),
    },
    Setting {
        name: "GATEHOUSE_UPSTREAM_IDENTITY_HEADER",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "`X-Forwarded-Email`",
        doc: "with `trusted_header`: the request header in which the authenticating proxy (oauth2-proxy, Authelia, Pomerium) names the person's address; the proxy must set it on every request, replacing any the client sent",
        read: |s, v| {
            s.upstream_identity.header =
                parse_header_name(v.unwrap_or(crate::identity::upstream::DEFAULT_IDENTITY_HEADER))?;
            Ok(())
        },
        show: |s| Shown::of(&s.upstream_identity.header),
    },
    Setting {
        name: "GATEHOUSE_CF_ACCESS_TEAM_DOMAIN",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "unset",
        doc: "with `cloudflare_access`: your Cloudflare Zero Trust team domain, `https://<team>.cloudflareaccess.com` (the assertions' issuer; the signing keys are fetched from its `/cdn-cgi/access/certs`); `http://` only in development",
        read: |s, v| {
            s.upstream_identity.team_domain = match v {
                Some(raw) => Some(parse_team_domain(raw)?),
                None if s.upstream_identity.mode == UpstreamMode::CloudflareAccess => {
                    return Err(required_by_cloudflare(
                        "your team domain, `https://<team>.cloudflareaccess.com`",
                    ));
                }
                None => None,
            };
            Ok(())
        },
        show: |s| Shown::opt(s.upstream_identity.issuer()),
    },
    Setting {
        name: "GATEHOUSE_CF_ACCESS_AUD",
        aliases: &[],
        secrecy: Secrecy::Public,
        default: "unset",
        doc: "with `cloudflare_access`: the Access application's AUD tag (its Overview tab), which every assertion's `aud` must contain",
        read: |s, v| {
            s.upstream_identity.aud = match v {
                Some(raw) => Some(parse_aud(raw)?),
                None if s.upstream_identity.mode == UpstreamMode::CloudflareAccess => {
                    return Err(required_by_cloudflare(
                        "the Access application's AUD tag, from its Overview tab",
                    ));
                }
                None => None,
            };
            Ok(())
        },
        show: |s| Shown::opt(s.upstream_identity.aud.as_ref()),
    },
];

#[cfg(test)]
mod tests {
    use crate::config::Settings;
    use crate::config::testing::sources;
    use crate::identity::upstream::UpstreamMode;

    #[test]
    fn upstream_identity_is_off_by_default() {
        let s = Settings::load(&sources(&[])).unwrap();
        assert_eq!(s.upstream_identity.mode, UpstreamMode::Off);
        assert_eq!(s.upstream_identity.header, "x-forwarded-email");
    }

    #[test]
    fn cloudflare_access_needs_its_team_domain_and_aud_each_named() {
        let err = Settings::load(&sources(&[(
            "GATEHOUSE_UPSTREAM_IDENTITY",
            "cloudflare_access",
        )]))
        .unwrap_err();
        let names: Vec<&str> = err.0.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(
            names,
            ["GATEHOUSE_CF_ACCESS_TEAM_DOMAIN", "GATEHOUSE_CF_ACCESS_AUD"],
            "{err}"
        );
        let s = Settings::load(&sources(&[
            ("GATEHOUSE_UPSTREAM_IDENTITY", "cloudflare_access"),
            (
                "GATEHOUSE_CF_ACCESS_TEAM_DOMAIN",
                "https://acme.cloudflareaccess.com",
            ),
            ("GATEHOUSE_CF_ACCESS_AUD", "0123abcd"),
        ]))
        .unwrap();
        assert_eq!(
            s.upstream_identity.issuer().as_deref(),
            Some("https://acme.cloudflareaccess.com")
        );
        let err = Settings::load(&sources(&[(
            "GATEHOUSE_CF_ACCESS_TEAM_DOMAIN",
            "https://acme.cloudflareaccess.com/cdn-cgi/access/certs",
        )]))
        .unwrap_err();
        assert_eq!(err.0[0].setting, "GATEHOUSE_CF_ACCESS_TEAM_DOMAIN");
    }
}
