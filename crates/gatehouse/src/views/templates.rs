//! Server-side templates (minijinja).
//!
//! minijinja rather than askama: templates are parsed once at startup from files embedded in
//! the binary (`include_str!`), so there is no proc-macro compile step per template (build time
//! on small machines matters), the syntax is Jinja's (what the seeds' Flask templates used), and
//! auto-escaping is on for every `.html` template.
//!
//! Pages whose output does not depend on the request at all (the anonymous home page) are
//! rendered once at startup: rendering them with a probe nonce shows whether the nonce appears
//! in the output; if it does not, the bytes are the same for every request and are served as
//! they are.
//!
//! # Security
//! - Auto-escaping is on for `.html` templates; nothing is marked safe from user input.
//! - Every page gets the request's CSP nonce as `nonce`; an inline `<script>` or `<style>` must
//!   carry `nonce="{{ nonce }}"` or the browser refuses it. The base layout has none.

use std::sync::Arc;

use std::collections::HashMap;

use axum::response::Html;
use bytes::Bytes;
use gatehouse_security::{CspNonce, Problem};
use minijinja::{Environment, Value, context};
use serde::Serialize;

use super::assets::Assets;
use crate::error::Error;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("home.html", include_str!("../../templates/home.html")),
    ("error.html", include_str!("../../templates/error.html")),
    ("login.html", include_str!("../../templates/login.html")),
    (
        "oidc_continue.html",
        include_str!("../../templates/oidc_continue.html"),
    ),
    (
        "login_sent.html",
        include_str!("../../templates/login_sent.html"),
    ),
    (
        "login_confirm.html",
        include_str!("../../templates/login_confirm.html"),
    ),
    (
        "dashboard.html",
        include_str!("../../templates/dashboard.html"),
    ),
    ("account.html", include_str!("../../templates/account.html")),
    (
        "passkey_register.html",
        include_str!("../../templates/passkey_register.html"),
    ),
    (
        "password_rules.html",
        include_str!("../../templates/password_rules.html"),
    ),
    (
        "account_password.html",
        include_str!("../../templates/account_password.html"),
    ),
    (
        "login_mfa.html",
        include_str!("../../templates/login_mfa.html"),
    ),
    (
        "account_api_keys.html",
        include_str!("../../templates/account_api_keys.html"),
    ),
    ("items.html", include_str!("../../templates/items.html")),
    (
        "item_edit.html",
        include_str!("../../templates/item_edit.html"),
    ),
    (
        "account_mfa.html",
        include_str!("../../templates/account_mfa.html"),
    ),
    (
        "password_forgot.html",
        include_str!("../../templates/password_forgot.html"),
    ),
    (
        "password_reset.html",
        include_str!("../../templates/password_reset.html"),
    ),
    ("setup.html", include_str!("../../templates/setup.html")),
];

/// Pages rendered once at startup when they turn out not to depend on the nonce, with their
/// fixed context.
const PRERENDERED: &[(&str, &str)] = &[("home.html", "Welcome")];

/// A nonce value that cannot occur in a page by accident.
const PROBE_NONCE: &str = "gatehouse-prerender-probe-3b9f1c";

/// The parsed templates.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
    prerendered: HashMap<&'static str, Bytes>,
}

impl Templates {
    /// Parses every embedded template; `assets` resolves `asset("app.css")` to its
    /// fingerprinted URL.
    pub fn new(assets: Arc<Assets>) -> Result<Self, Error> {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .map_err(|e| Error::Internal(anyhow::anyhow!("template {name}: {e}")))?;
        }
        // Asset URLs are ours (fixed names and hex digests), so they are marked safe: escaping
        // would only turn their slashes into entities.
        env.add_function(
            "asset",
            move |name: String| -> Result<Value, minijinja::Error> {
                assets
                    .url(&name)
                    .map(Value::from_safe_string)
                    .ok_or_else(|| {
                        minijinja::Error::new(
                            minijinja::ErrorKind::InvalidOperation,
                            format!("no static asset named {name}"),
                        )
                    })
            },
        );
        let mut templates = Self {
            env,
            prerendered: HashMap::new(),
        };
        for (name, title) in PRERENDERED {
            let Html(page) = templates.render(name, PROBE_NONCE, context! { title => title })?;
            if !page.contains(PROBE_NONCE) {
                templates.prerendered.insert(name, Bytes::from(page));
            }
        }
        Ok(templates)
    }

    /// The page rendered at startup, when `name` does not depend on the request.
    pub fn prerendered(&self, name: &str) -> Option<Html<Bytes>> {
        self.prerendered.get(name).cloned().map(Html)
    }

    /// Renders a full page with the request's nonce merged into `ctx`.
    pub fn page<S: Serialize>(
        &self,
        name: &str,
        nonce: &CspNonce,
        ctx: S,
    ) -> Result<Html<String>, Error> {
        self.render(name, nonce.as_str(), ctx)
    }

    fn render<S: Serialize>(&self, name: &str, nonce: &str, ctx: S) -> Result<Html<String>, Error> {
        let ctx = context! { nonce => nonce, ..Value::from_serialize(&ctx) };
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map(Html)
            .map_err(|e| Error::Internal(anyhow::anyhow!("rendering {name}: {e:#}")))
    }

    /// The HTML error page for a problem.
    pub fn error_page(&self, problem: &Problem, nonce: &CspNonce) -> Result<Html<String>, Error> {
        self.page(
            "error.html",
            nonce,
            context! {
                title => problem.title(),
                status => problem.status().as_u16(),
                detail => problem.detail(),
                request_id => problem.request_id(),
            },
        )
    }
}
