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

#[tokio::test]
async fn the_schema_route_describes_the_devices_messages_and_404s_without_one() {
    let w = TestWorld::new();
    w.with_weather_device("w1").await;
    let (status, body) = call(
        &w,
        "GET /v1/devices/{deviceId}/schema",
        "/v1/devices/w1/schema",
        "",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["deviceId"], "w1");
    assert_eq!(body["namespace"], "default");
    let cmd = body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["name"] == "schema.v1.ActivateHVACCmd")
        .cloned()
        .unwrap_or_default();
    assert_eq!(cmd["kind"], "command", "{body}");
    assert_eq!(cmd["fields"][0]["jsonName"], "durationSec");
    assert_eq!(cmd["template"], json!({"durationSec": 0}));

    let bare = json!({"meta": {"name": "bare"}, "spec": {"deviceId": "bare"}});
    call(&w, "POST /v1/devices", "/v1/devices", "", Some(bare)).await;
    let (status, body) = call(
        &w,
        "GET /v1/devices/{deviceId}/schema",
        "/v1/devices/bare/schema",
        "",
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "device bare has not sent its schema yet");
    let (status, body) = call(
        &w,
        "GET /v1/devices/{deviceId}/schema",
        "/v1/devices/nobody/schema",
        "",
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "device nobody does not exist");
}

/// A certificate authority that records what the twin store held when it was asked to
/// revoke or to change its certificates' state, and fails when told to.
struct Revoker {
    store: mir_shared::adapters::embedded::EmbeddedStore,
    fail: bool,
    /// Deletes the twin right after disabling the certificates (a concurrent delete).
    delete_on_disable: bool,
    twin_at_revoke: std::sync::Mutex<Vec<bool>>,
    /// (active asked, the twin's `spec.disabled` at that moment)
    set_active: std::sync::Mutex<Vec<(bool, bool)>>,
}

impl Revoker {
    fn new(w: &TestWorld, fail: bool) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            store: w.store.clone(),
            fail,
            delete_on_disable: false,
            twin_at_revoke: Default::default(),
            set_active: Default::default(),
        })
    }

    fn failure() -> mir_shared::ports::CertificateError {
        mir_shared::ports::CertificateError::Unavailable {
            message: "IoT UpdateCertificate: throttled".into(),
            source: None,
        }
    }
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

    async fn set_active(
        &self,
        device_id: &str,
        active: bool,
    ) -> Result<(), mir_shared::ports::CertificateError> {
        use mir_shared::ports::TwinStore;
        let twin = self.store.get(device_id).await.expect("read");
        let disabled = twin.is_some_and(|t| t.value.spec.disabled);
        self.set_active
            .lock()
            .expect("lock")
            .push((active, disabled));
        if self.delete_on_disable && !active {
            self.store
                .delete(device_id, chrono::Utc::now())
                .await
                .expect("deleted");
        }
        if self.fail {
            return Err(Self::failure());
        }
        Ok(())
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
    async fn retire_earlier(
        &self,
        _: &str,
        _: &str,
    ) -> Result<u32, mir_shared::ports::CertificateError> {
        Ok(0)
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
    let revoker = Revoker::new(&w, false);
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
    let revoker = Revoker::new(&w, true);
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

async fn call_with(
    w: &TestWorld,
    revoker: std::sync::Arc<Revoker>,
    route: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let ports = mir_shared::ports::Ports {
        certificates: Some(revoker),
        ..w.ports.clone()
    };
    let deps = Deps::try_from(&ports).expect("every port");
    response_json(&handle(&deps, &api_request(route, path, "", body)).await)
}

#[tokio::test]
async fn disabling_a_device_makes_its_certificates_inactive_first_and_enabling_active_again() {
    let w = TestWorld::new();
    w.with_weather_device("w1").await;
    let revoker = Revoker::new(&w, false);
    let patch = |disabled: bool| Some(json!({"spec": {"disabled": disabled}}));
    let route = "PATCH /v1/devices/{deviceId}";
    let (status, body) = call_with(&w, revoker.clone(), route, "/v1/devices/w1", patch(true)).await;
    assert_eq!(
        (status, &body["spec"]["disabled"]),
        (200, &json!(true)),
        "{body}"
    );
    let (status, _) = call_with(&w, revoker.clone(), route, "/v1/devices/w1", patch(false)).await;
    assert_eq!(status, 200);
    // Each change reached the certificates while the twin still held the old state.
    assert_eq!(
        *revoker.set_active.lock().expect("lock"),
        [(false, false), (true, true)]
    );
    // A patch that leaves `disabled` alone does not touch them.
    let same = Some(json!({"meta": {"labels": {"site": "lab"}}}));
    assert_eq!(
        call_with(&w, revoker.clone(), route, "/v1/devices/w1", same)
            .await
            .0,
        200
    );
    assert_eq!(revoker.set_active.lock().expect("lock").len(), 2);
    let reasons = w.reasons("w1").await;
    assert_eq!(
        reasons
            .iter()
            .filter(|r| *r == "CertificatesChanged")
            .count(),
        2,
        "{reasons:?}"
    );
}

#[tokio::test]
async fn a_disable_whose_twin_write_then_fails_makes_the_certificates_active_again() {
    let w = TestWorld::new();
    w.with_weather_device("w1").await;
    let revoker = std::sync::Arc::new(Revoker {
        delete_on_disable: true,
        ..std::sync::Arc::into_inner(Revoker::new(&w, false)).expect("sole owner")
    });
    let (status, body) = call_with(
        &w,
        revoker.clone(),
        "PATCH /v1/devices/{deviceId}",
        "/v1/devices/w1",
        Some(json!({"spec": {"disabled": true}})),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    let calls: Vec<bool> = revoker
        .set_active
        .lock()
        .expect("lock")
        .iter()
        .map(|(active, _)| *active)
        .collect();
    assert_eq!(calls, [false, true], "disabled, then put back");
}

#[tokio::test]
async fn a_disable_whose_certificates_cannot_change_keeps_the_device_enabled_and_answers_503() {
    let w = TestWorld::new();
    w.with_weather_device("w1").await;
    let (status, body) = call_with(
        &w,
        Revoker::new(&w, true),
        "PATCH /v1/devices/{deviceId}",
        "/v1/devices/w1",
        Some(json!({"spec": {"disabled": true}})),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["error"],
        "could not make the certificates of w1 inactive, so the device was not changed; retry later"
    );
    let (_, twin) = call(&w, "GET /v1/devices/{deviceId}", "/v1/devices/w1", "", None).await;
    assert_eq!(twin["spec"]["disabled"], json!(false));
}

#[tokio::test]
async fn events_written_by_the_api_carry_the_callers_arn_from_the_request_context() {
    let w = TestWorld::new();
    let twin = json!({"meta": {"name": "t1"}, "spec": {"deviceId": "t-1"}});
    assert_eq!(
        call(&w, "POST /v1/devices", "/v1/devices", "", Some(twin))
            .await
            .0,
        201
    );
    let patch = Some(json!({"meta": {"labels": {"a": "b"}}}));
    assert_eq!(
        call(
            &w,
            "PATCH /v1/devices/{deviceId}",
            "/v1/devices/t-1",
            "",
            patch
        )
        .await
        .0,
        200
    );
    let filter = mir_shared::domain::EventFilter {
        device_id: Some("t-1".into()),
        ..Default::default()
    };
    let events = mir_shared::ports::EventStore::list(&w.store, &filter, &Default::default())
        .await
        .expect("events")
        .items;
    // Both at the same (fixed) time: listed in the order of their ids.
    let mut actors: Vec<(&str, Option<&str>)> = events
        .iter()
        .map(|e| (e.reason.as_str(), e.actor.as_deref()))
        .collect();
    actors.sort();
    let operator = Some("arn:aws:iam::123456789012:user/operator");
    assert_eq!(
        actors,
        [("DeviceCreated", operator), ("DeviceUpdated", operator)]
    );
}

/// A certificate authority that signs anything, for the event it leads to.
struct Signer;

#[async_trait::async_trait]
impl mir_shared::ports::CertificateIssuer for Signer {
    async fn issue(
        &self,
        device_id: &str,
        _: Option<&str>,
    ) -> Result<mir_shared::ports::DeviceCertificate, mir_shared::ports::CertificateError> {
        Ok(mir_shared::ports::DeviceCertificate {
            certificate_id: format!("cert-of-{device_id}"),
            certificate_pem: "-----BEGIN CERTIFICATE-----".into(),
            private_key_pem: None,
            root_ca_pem: None,
            endpoint: None,
        })
    }
    async fn set_active(
        &self,
        _: &str,
        _: bool,
    ) -> Result<(), mir_shared::ports::CertificateError> {
        Ok(())
    }
    async fn revoke_all(&self, _: &str) -> Result<(), mir_shared::ports::CertificateError> {
        Ok(())
    }
    async fn retire_earlier(
        &self,
        _: &str,
        _: &str,
    ) -> Result<u32, mir_shared::ports::CertificateError> {
        Ok(0)
    }
}

#[tokio::test]
async fn issuing_a_certificate_writes_an_event_naming_it_and_the_caller() {
    let w = TestWorld::new();
    w.with_weather_device("w1").await;
    let ports = mir_shared::ports::Ports {
        certificates: Some(std::sync::Arc::new(Signer)),
        ..w.ports.clone()
    };
    let deps = Deps::try_from(&ports).expect("every port");
    let req = api_request(
        "POST /v1/devices/{deviceId}/certificate",
        "/v1/devices/w1/certificate",
        "",
        Some(json!({"csrPem": "-----BEGIN CERTIFICATE REQUEST-----"})),
    );
    let (status, body) = response_json(&handle(&deps, &req).await);
    assert_eq!(status, 201, "{body}");
    let filter = mir_shared::domain::EventFilter {
        device_id: Some("w1".into()),
        reason: Some(EventReason::CertificateIssued),
        ..Default::default()
    };
    let events = mir_shared::ports::EventStore::list(&w.store, &filter, &Default::default())
        .await
        .expect("events")
        .items;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].payload, json!({"certificateId": "cert-of-w1"}));
    assert_eq!(
        events[0].actor.as_deref(),
        Some("arn:aws:iam::123456789012:user/operator")
    );
}
