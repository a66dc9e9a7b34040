//! Server-side templates (minijinja).
//!
//! minijinja rather than askama: templates are parsed once at startup from files embedded in
//! the binary (`include_str!`), so there is no proc-macro compile step per template (build time
//! on small machines matters), the syntax is Jinja's (what the seeds' Flask templates used), and
//! auto-escaping is on for every `.html` template.
//!
//! # Security
//! - Auto-escaping is on for `.html` templates; nothing is marked safe from user input.
//! - Every page gets the request's CSP nonce as `nonce`; an inline `<script>` or `<style>` must
//!   carry `nonce="{{ nonce }}"` or the browser refuses it. The base layout has none.

use std::sync::Arc;

use axum::response::Html;
use gatehouse_security::{CspNonce, Problem};
use minijinja::{Environment, Value, context};
use serde::Serialize;

use super::assets::Assets;
use crate::Error;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("home.html", include_str!("../../templates/home.html")),
    ("error.html", include_str!("../../templates/error.html")),
];

/// The parsed templates.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
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
        Ok(Self { env })
    }

    /// Renders a full page with the request's nonce merged into `ctx`.
    pub fn page<S: Serialize>(
        &self,
        name: &str,
        nonce: &CspNonce,
        ctx: S,
    ) -> Result<Html<String>, Error> {
        let ctx = context! { nonce => nonce.as_str(), ..Value::from_serialize(&ctx) };
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
