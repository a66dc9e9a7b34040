//! Where a request comes from, as the identity services want it: the client (as the trusted
//! proxies tell it), the browser's `User-Agent`, its device cookie and the request ID.

use axum::extract::FromRequestParts;
use gatehouse_security::{ClientIp, Problem, RequestId};
use http::header::USER_AGENT;
use http::request::Parts;

use crate::identity::signin::Origin;
use crate::state::AppState;

/// Longest `User-Agent` kept (it is shown to the user on their sessions page).
const USER_AGENT_MAX: usize = 200;

impl FromRequestParts<AppState> for Origin {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let client = ClientIp::from_request_parts(parts, state).await?;
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map(|id| id.as_str().to_owned());
        let user_agent = parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(USER_AGENT_MAX).collect());
        Ok(Self {
            client,
            user_agent,
            request_id,
            device: super::session::device_token(state, &parts.headers),
        })
    }
}
