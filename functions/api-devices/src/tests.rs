use super::*;
use mir_shared::testing::{api_request, response_json, TestWorld};
use serde_json::json;

fn deps<'a>(w: &'a TestWorld) -> Deps<'a> {
    Deps::try_from(&w.ports).expect("the test world has every port")
}

async fn call(
    w: &TestWorld,
    route: &str,
    path: &str,
    query: &str,
    body: Option<Value>,
) -> (u16, Value) {
    response_json(&handle(&deps(w), &api_request(route, path, query, body)).await)
}

#[tokio::test]
async fn a_created_device_is_listed_by_namespace_and_label() {
    let w = TestWorld::new();
    let twin = json!({"meta": {"name": "t1", "namespace": "factory", "labels": {"type": "temp"}}, "spec": {"deviceId": "t-1"}});
    let (status, body) = call(&w, "POST /v1/devices", "/v1/devices", "", Some(twin)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["apiVersion"], "mir/v1alpha");
    let (_, list) = call(
        &w,
        "GET /v1/devices",
        "/v1/devices",
        "namespaces=factory&labels=type%3Dtemp",
        None,
    )
    .await;
    assert_eq!(list["devices"][0]["spec"]["deviceId"], "t-1");
    let (_, none) = call(
        &w,
        "GET /v1/devices",
        "/v1/devices",
        "labels=type%3Dhvac",
        None,
    )
    .await;
    assert_eq!(none["devices"], json!([]));
    assert_eq!(w.reasons("t-1").await, ["DeviceCreated"]);
}

#[tokio::test]
async fn a_second_device_with_the_same_name_and_namespace_is_refused() {
    let w = TestWorld::new();
    let a = json!({"meta": {"name": "same"}, "spec": {"deviceId": "a"}});
    let b = json!({"meta": {"name": "same"}, "spec": {"deviceId": "b"}});
    assert_eq!(
        call(&w, "POST /v1/devices", "/v1/devices", "", Some(a))
            .await
            .0,
        201
    );
    let (status, body) = call(&w, "POST /v1/devices", "/v1/devices", "", Some(b)).await;
    assert_eq!(status, 409);
    assert!(
        body["error"]
            .as_str()
            .unwrap_or("")
            .contains("same/default"),
        "{body}"
    );
}

#[tokio::test]
async fn invalid_ids_and_bodies_get_a_400_that_says_why() {
    let w = TestWorld::new();
    let (status, body) = call(
        &w,
        "POST /v1/devices",
        "/v1/devices",
        "",
        Some(json!({"spec": {"deviceId": "no spaces"}})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap_or("").contains("deviceId"),
        "{body}"
    );
    let (status, body) = call(
        &w,
        "POST /v1/devices",
        "/v1/devices",
        "",
        Some(json!({"spec": {"deviceID": "x"}})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = call(
        &w,
        "GET /v1/devices/{deviceId}",
        "/v1/devices/a+b",
        "",
        None,
    )
    .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_merge_patch_changes_labels_and_desired_and_pushes_to_an_online_device() {
    let w = TestWorld::new();
    let mut twin = w.with_weather_device("w1").await;
    twin.status.online = true;
    mir_shared::ports::TwinStore::update(&w.store, &twin, 1)
        .await
        .expect("online");
    let patch = json!({"meta": {"labels": {"site": "roof"}}, "properties": {"desired": {"schema.v1.DataRateProp": {"sec": 4}}}});
    let (status, body) = call(
        &w,
        "PATCH /v1/devices/{deviceId}",
        "/v1/devices/w1",
        "",
        Some(patch),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["meta"]["labels"]["site"], "roof");
    assert_eq!(
        body["properties"]["desired"]["schema.v1.DataRateProp"],
        json!({"sec": 4})
    );
    assert_eq!(w.publisher.published()[0].0, "mir/w1/cfg/desired");
    let (status, body) = call(
        &w,
        "PATCH /v1/devices/{deviceId}",
        "/v1/devices/w1",
        "",
        Some(json!({"status": {"online": false}})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = call(
        &w,
        "PATCH /v1/devices/{deviceId}",
        "/v1/devices/w1",
        "",
        Some(json!({"properties": {"desired": {"schema.v1.DataRateProp": {"sec": "x"}}}})),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap_or("").contains("sec"),
        "{body}"
    );
}

#[tokio::test]
async fn apply_creates_then_updates_and_keeps_status() {
    let w = TestWorld::new();
    let doc = json!({"apiVersion": "mir/v1alpha", "kind": "device", "meta": {"name": "p"}, "spec": {"deviceId": "p1"}});
    assert_eq!(
        call(
            &w,
            "PUT /v1/devices/{deviceId}",
            "/v1/devices/p1",
            "",
            Some(doc.clone())
        )
        .await
        .0,
        201
    );
    let mut doc2 = doc.clone();
    doc2["meta"]["annotations"] = json!({"note": "moved"});
    doc2["status"] = json!({"online": true});
    let (status, body) = call(
        &w,
        "PUT /v1/devices/{deviceId}",
        "/v1/devices/p1",
        "",
        Some(doc2),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["meta"]["annotations"]["note"], "moved");
    assert_eq!(body["status"]["online"], false, "status is not editable");
    let (status, _) = call(
        &w,
        "PUT /v1/devices/{deviceId}",
        "/v1/devices/other",
        "",
        Some(doc),
    )
    .await;
    assert_eq!(status, 400, "id in body differs from path");
}

#[tokio::test]
async fn delete_removes_the_twin_and_its_schema() {
    let w = TestWorld::new();
    w.with_weather_device("w1").await;
    let (status, _) = call(
        &w,
        "DELETE /v1/devices/{deviceId}",
        "/v1/devices/w1",
        "",
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(w.store_schema("w1").await.is_none());
    assert_eq!(
        call(&w, "GET /v1/devices/{deviceId}", "/v1/devices/w1", "", None)
            .await
            .0,
        404
    );
    assert_eq!(
        call(
            &w,
            "DELETE /v1/devices/{deviceId}",
            "/v1/devices/w1",
            "",
            None
        )
        .await
        .0,
        404
    );
}

#[tokio::test]
async fn a_schema_refresh_asks_the_device_and_certificates_need_an_issuer() {
    let w = TestWorld::new();
    w.with_weather_device("w1").await;
    let (status, _) = call(
        &w,
        "POST /v1/devices/{deviceId}/schema/refresh",
        "/v1/devices/w1/schema/refresh",
        "",
        None,
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(w.publisher.published()[0].0, "mir/w1/hello/get");
    let (status, _) = call(
        &w,
        "POST /v1/devices/{deviceId}/certificate",
        "/v1/devices/w1/certificate",
        "",
        None,
    )
    .await;
    assert_eq!(status, 501);
}

/// A certificate authority that records what the twin store held when it was asked to
/// revoke, and fails when told to.
struct Revoker {
    store: mir_shared::adapters::embedded::EmbeddedStore,
    fail: bool,
    twin_at_revoke: std::sync::Mutex<Vec<bool>>,
}

#[async_trait::async_trait]
impl mir_shared::ports::CertificateIssuer for Revoker {
    async fn issue(
        &self,
        _: &str,
        _: Option<&str>,
    ) -> Result<mir_shared::ports::DeviceCertificate, mir_shared::ports::CertificateError> {
        Err(mir_shared::ports::CertificateError::Invalid(
            "not in this test".into(),
        ))
    }

    async fn revoke_all(&self, device_id: &str) -> Result<(), mir_shared::ports::CertificateError> {
        use mir_shared::ports::TwinStore;
        let exists = self.store.get(device_id).await.expect("read").is_some();
        self.twin_at_revoke.lock().expect("lock").push(exists);
        if self.fail {
            return Err(mir_shared::ports::CertificateError::Unavailable {
                message: "IoT DeleteCertificate: throttled".into(),
                source: None,
            });
        }
        Ok(())
    }
}

async fn delete_with(w: &TestWorld, revoker: std::sync::Arc<Revoker>) -> (u16, Value) {
    let ports = mir_shared::ports::Ports {
        certificates: Some(revoker),
        ..w.ports.clone()
    };
    let deps = Deps::try_from(&ports).expect("every port");
    let req = api_request("DELETE /v1/devices/{deviceId}", "/v1/devices/w1", "", None);
    response_json(&handle(&deps, &req).await)
}

#[tokio::test]
async fn delete_revokes_the_certificates_before_it_deletes_the_twin_and_leaves_a_tombstone() {
    let w = TestWorld::new();
    w.with_weather_device("w1").await;
    let revoker = std::sync::Arc::new(Revoker {
        store: w.store.clone(),
        fail: false,
        twin_at_revoke: Default::default(),
    });
    let (status, _) = delete_with(&w, revoker.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(*revoker.twin_at_revoke.lock().expect("lock"), [true]);
    let tomb = mir_shared::ports::TwinStore::tombstone(&w.store, "w1")
        .await
        .expect("read")
        .expect("a tombstone");
    assert_eq!(tomb.deleted_at, mir_shared::ports::Clock::now(&*w.clock));
    // An operator's create brings the device back and clears the tombstone.
    let (status, _) = call(
        &w,
        "POST /v1/devices",
        "/v1/devices",
        "",
        Some(json!({"spec": {"deviceId": "w1"}})),
    )
    .await;
    assert_eq!(status, 201);
    assert!(mir_shared::ports::TwinStore::tombstone(&w.store, "w1")
        .await
        .expect("read")
        .is_none());
}

#[tokio::test]
async fn a_failed_revocation_keeps_the_device_and_answers_503() {
    let w = TestWorld::new();
    w.with_weather_device("w1").await;
    let revoker = std::sync::Arc::new(Revoker {
        store: w.store.clone(),
        fail: true,
        twin_at_revoke: Default::default(),
    });
    let (status, body) = delete_with(&w, revoker).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|m| m.starts_with("could not revoke the certificates of w1")),
        "{body}"
    );
    assert!(w.store_schema("w1").await.is_some());
    assert_eq!(
        call(&w, "GET /v1/devices/{deviceId}", "/v1/devices/w1", "", None)
            .await
            .0,
        200
    );
}
