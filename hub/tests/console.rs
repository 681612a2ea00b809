//! The browser console served by the hub: `/` is the console's page, its assets come
//! with their content types, and `/config.json` says whether API calls need the token.
//! The console's files need no token; the API still does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use mir_hub::{config::AccessConfig, Hub, HubConfig};

const TOKEN: &str = "console-token-0123456789";

async fn open_hub(
    token: Option<&str>,
) -> (Hub, tempfile::TempDir, tokio::sync::oneshot::Sender<()>) {
    let dir = tempfile::tempdir().unwrap();
    let config = HubConfig {
        data_dir: dir.path().to_path_buf(),
        mqtt_port: 0,
        mqtts_port: 0,
        http_port: 0,
        access: AccessConfig {
            api_token: token.map(String::from),
            ..AccessConfig::default()
        },
        ..HubConfig::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let hub = Hub::start(config, async move {
        let _ = stopped.await;
    })
    .await
    .unwrap();
    (hub, dir, stop)
}

fn url(hub: &Hub, path: &str) -> String {
    format!("http://127.0.0.1:{}{path}", hub.http_addr.port())
}

fn content_type(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

/// The first `./assets/<name>` the page links that ends with `ext`.
fn asset_of(index: &str, ext: &str) -> String {
    index
        .split(['"', '\''])
        .find(|s| s.starts_with("./assets/") && s.ends_with(ext))
        .unwrap_or_else(|| panic!("index.html links no {ext} asset: {index}"))
        .trim_start_matches('.')
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_root_is_the_consoles_page_and_its_assets_have_their_content_types() {
    let (hub, _dir, _stop) = open_hub(None).await;
    let http = reqwest::Client::new();

    let page = http.get(url(&hub, "/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(content_type(&page), "text/html; charset=utf-8");
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let index = page.text().await.unwrap();
    assert!(index.contains("<title>Mir console</title>"), "{index}");
    assert!(index.contains("<div id=\"app\"></div>"), "{index}");

    let script = http
        .get(url(&hub, &asset_of(&index, ".js")))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200);
    assert_eq!(content_type(&script), "text/javascript");
    assert!(script.text().await.unwrap().len() > 1000);
    let style = http
        .get(url(&hub, &asset_of(&index, ".css")))
        .send()
        .await
        .unwrap();
    assert_eq!(style.status(), 200);
    assert_eq!(content_type(&style), "text/css");
    assert_eq!(
        style.headers()["cache-control"].to_str().unwrap(),
        "public, max-age=31536000, immutable"
    );

    let missing = http.get(url(&hub, "/assets/nope.js")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(body["error"], "no console file /assets/nope.js");

    let api = http.get(url(&hub, "/v1/devices")).send().await.unwrap();
    assert_eq!(api.status(), 200, "the API routes are unchanged");
    let body: serde_json::Value = api.json().await.unwrap();
    assert_eq!(body["devices"], serde_json::json!([]));
    let health = http.get(url(&hub, "/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_json_says_none_on_a_hub_without_a_token() {
    let (hub, _dir, _stop) = open_hub(None).await;
    let resp = reqwest::get(url(&hub, "/config.json")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(content_type(&resp), "application/json");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"api": "", "auth": {"kind": "none"}})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_the_console_loads_without_it_and_the_api_still_needs_it() {
    let (hub, _dir, _stop) = open_hub(Some(TOKEN)).await;
    let http = reqwest::Client::new();

    let config = http.get(url(&hub, "/config.json")).send().await.unwrap();
    assert_eq!(config.status(), 200, "config.json needs no token");
    let body: serde_json::Value = config.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"api": "", "auth": {"kind": "token"}})
    );

    let page = http.get(url(&hub, "/")).send().await.unwrap();
    assert_eq!(page.status(), 200, "the page needs no token");
    let index = page.text().await.unwrap();
    let script = http
        .get(url(&hub, &asset_of(&index, ".js")))
        .send()
        .await
        .unwrap();
    assert_eq!(script.status(), 200, "assets need no token");

    let devices = http.get(url(&hub, "/v1/devices")).send().await.unwrap();
    assert_eq!(devices.status(), 401, "the API still needs the token");
    let metrics = http.get(url(&hub, "/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 401, "metrics still need the token");
    let ok = http
        .get(url(&hub, "/v1/devices"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    let rebound = http
        .get(url(&hub, "/"))
        .header("host", "attacker.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        rebound.status(),
        421,
        "the Host check still applies to the console"
    );
}
