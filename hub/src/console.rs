//! The browser console: the files of `console/dist` (built by `console/build.sh` and
//! committed, so a plain `cargo build` needs only the Rust toolchain), embedded in the
//! binary and served at `/` (`index.html`) and `/assets/...`, plus `/config.json`, which
//! tells the console how to reach the API: the same origin (`"api": ""`), and
//! `auth.kind` `none`, or `token` when the hub has `access.apiToken` (the console then
//! asks for the token and sends it as `Authorization: Bearer` on every API call).
//!
//! These files need no token ([`is_public`]): they hold nothing of the fleet. Every
//! `/v1/*` call still does, and the `Host` check applies to everything.

use axum::{
    extract::{Path, State},
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use rust_embed::RustEmbed;

use crate::http::HttpState;

#[derive(RustEmbed)]
#[folder = "../console/dist"]
struct Dist;

/// Where the console's configuration is served.
pub const CONFIG_PATH: &str = "/config.json";
/// Where the bundled files (content-hashed names) are served.
pub const ASSETS_PREFIX: &str = "/assets/";

/// What the page may load: its own files only, and API calls to its own origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// True for the paths of the console's own files, which are served without the bearer
/// token (the page must load before it can ask for the token).
pub fn is_public(path: &str) -> bool {
    path == "/"
        || path == "/index.html"
        || path == CONFIG_PATH
        || (path.starts_with(ASSETS_PREFIX) && !path.contains(".."))
}

/// The console's `config.json` for a hub that does or does not require its API token.
pub fn config_document(token_required: bool) -> serde_json::Value {
    let kind = if token_required { "token" } else { "none" };
    serde_json::json!({ "api": "", "auth": { "kind": kind } })
}

fn with_headers(
    status: StatusCode,
    body: impl IntoResponse,
    content_type: &str,
    cache: &'static str,
) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

fn not_found(what: &str) -> Response {
    let body = serde_json::json!({ "error": format!("no console file {what}") }).to_string();
    with_headers(StatusCode::NOT_FOUND, body, "application/json", "no-store")
}

/// `GET /` and `GET /index.html`: the console's page.
pub async fn index() -> Response {
    let Some(file) = Dist::get("index.html") else {
        return not_found("index.html (build it with console/build.sh)");
    };
    let mut resp = with_headers(
        StatusCode::OK,
        file.data.into_owned(),
        "text/html; charset=utf-8",
        "no-cache",
    );
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// `GET /assets/{path}`: a bundled file, with the content type of its extension; the
/// names carry a hash of the content, so they are cached for good.
pub async fn asset(Path(path): Path<String>) -> Response {
    let name = format!("assets/{path}");
    match Dist::get(&name) {
        Some(file) if !path.contains("..") => with_headers(
            StatusCode::OK,
            file.data.into_owned(),
            file.metadata.mimetype(),
            "public, max-age=31536000, immutable",
        ),
        _ => not_found(&format!("/{name}")),
    }
}

/// `GET /config.json`: how the console reaches this hub's API.
pub async fn config(State(state): State<HttpState>) -> Response {
    with_headers(
        StatusCode::OK,
        config_document(state.access.token_required()).to_string(),
        "application/json",
        "no-store",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_consoles_own_files_are_public() {
        for public in ["/", "/index.html", "/config.json", "/assets/app-X1.js"] {
            assert!(is_public(public), "{public}");
        }
        for private in [
            "/v1/devices",
            "/metrics",
            "/assets/../v1/devices",
            "/index.htm",
            "/config.json/x",
        ] {
            assert!(!is_public(private), "{private}");
        }
    }

    #[test]
    fn the_config_document_names_the_auth_kind() {
        assert_eq!(
            config_document(false),
            serde_json::json!({"api": "", "auth": {"kind": "none"}})
        );
        assert_eq!(config_document(true)["auth"]["kind"], "token");
    }

    #[test]
    fn the_embedded_console_has_its_page_and_assets() {
        let index = Dist::get("index.html").expect("console/dist/index.html is embedded");
        let text = String::from_utf8_lossy(&index.data);
        assert!(text.contains("<div id=\"app\"></div>"), "{text}");
        assert!(Dist::iter().any(|f| f.starts_with("assets/") && f.ends_with(".js")));
    }
}
