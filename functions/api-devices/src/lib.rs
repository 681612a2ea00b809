//! `api-devices`: `/v1/devices...` — list (by namespace, labels, names, ids), get,
//! create, apply (PUT), merge (PATCH), delete, issue a certificate, describe the schema
//! (fields, types and `mir.device.v1` annotations, for the console) and ask for it again.
//!
//! Operators edit meta, spec.disabled and desired properties; status is the system's.
//! Desired properties are validated against the device schema when it is known and
//! pushed to the device when it is online.
//!
//! Architecture: see docs/architecture.md in the repository (sections Routes, Delivery semantics).

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use bytes::Bytes;
use serde_json::Value;

use mir_proto::{topics::DeviceTopic, DeviceId};
use mir_shared::{
    api::{self, ApiError, ApiRequest, Caller, CertificateRequest, DeviceList, DeviceSchema},
    domain::{twin::Status, Event, EventReason, Twin},
    service::{self, Change, HandlerError},
};

mir_shared::deps! {
    /// The ports `api-devices` uses.
    pub struct Deps { twins, schemas, events, publisher, certificates, cache, clock }
}

pub async fn handle(deps: &Deps<'_>, event: &ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    let req = match ApiRequest::from_event(event) {
        Ok(r) => r,
        Err(e) => return api::error_response(&e),
    };
    match req.route_key.as_str() {
        "GET /v1/devices" => api::respond(list(deps, &req).await),
        "POST /v1/devices" => api::respond(create(deps, &req).await),
        "GET /v1/devices/{deviceId}" => api::respond(get(deps, &req).await),
        "PUT /v1/devices/{deviceId}" => api::respond(apply(deps, &req).await),
        "PATCH /v1/devices/{deviceId}" => api::respond(merge(deps, &req).await),
        "DELETE /v1/devices/{deviceId}" => api::respond(delete(deps, &req).await),
        "POST /v1/devices/{deviceId}/certificate" => api::respond(certificate(deps, &req).await),
        "GET /v1/devices/{deviceId}/schema" => api::respond(schema(deps, &req).await),
        "POST /v1/devices/{deviceId}/schema/refresh" => api::respond(refresh(deps, &req).await),
        other => api::error_response(&ApiError::not_found(format!("no route {other}"))),
    }
}

fn device_id(req: &ApiRequest) -> Result<DeviceId, ApiError> {
    DeviceId::new(req.path_param("deviceId")?).map_err(|e| ApiError::bad_request(e.to_string()))
}

/// Most twins in one page of `GET /v1/devices`: a thousand twins of a few KB stay well
/// under Lambda's 6 MB response limit.
pub const MAX_DEVICE_PAGE: usize = 1_000;

/// One page of twins (`limit`, `nextToken`), sorted by namespace and name within it.
async fn list(deps: &Deps<'_>, req: &ApiRequest) -> Result<(u16, DeviceList), ApiError> {
    let mut page = req.page()?;
    page.limit = page.limit.min(MAX_DEVICE_PAGE);
    let found = deps.twins.list_page(&req.targets()?, &page).await?;
    let mut devices: Vec<Twin> = found.items.into_iter().map(|t| t.value).collect();
    devices
        .sort_by(|a, b| (&a.meta.namespace, &a.meta.name).cmp(&(&b.meta.namespace, &b.meta.name)));
    Ok((
        200,
        DeviceList {
            devices,
            next_token: found.next_token,
        },
    ))
}

async fn get(deps: &Deps<'_>, req: &ApiRequest) -> Result<(u16, Twin), ApiError> {
    let id = device_id(req)?;
    let twin = deps
        .twins
        .get(id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("device {id} does not exist")))?;
    Ok((200, twin.value))
}

async fn create(deps: &Deps<'_>, req: &ApiRequest) -> Result<(u16, Twin), ApiError> {
    let twin: Twin = req.json()?;
    let created = create_twin(deps, &req.caller, twin).await?;
    Ok((201, created))
}

async fn create_twin(deps: &Deps<'_>, caller: &Caller, twin: Twin) -> Result<Twin, ApiError> {
    let mut twin = twin.normalized()?;
    let now = deps.clock.now();
    twin.status = Status::default();
    let names: Vec<String> = twin.properties.desired.keys().cloned().collect();
    for name in &names {
        twin.status.properties.desired.insert(name.clone(), now);
    }
    let schema = deps.cache.get(deps.schemas, &twin.spec.device_id).await?;
    service::validate_desired(schema.as_deref(), &mut twin, &names)?;
    let created = deps.twins.create(&twin).await?.value;
    let ev = Event::by_caller(
        EventReason::DeviceCreated,
        &created.spec.device_id,
        now,
        caller,
        "device created",
    )
    .for_twin(&created);
    deps.events.append(&[ev]).await?;
    Ok(created)
}

/// PUT: create, or replace what operators may edit.
async fn apply(deps: &Deps<'_>, req: &ApiRequest) -> Result<(u16, Twin), ApiError> {
    let id = device_id(req)?;
    let mut edit: Twin = req.json()?;
    if edit.spec.device_id.is_empty() {
        edit.spec.device_id = id.to_string();
    }
    if edit.spec.device_id != id.as_str() {
        return Err(ApiError::bad_request(format!(
            "spec.deviceId {:?} does not match the device {id} in the path; deviceId cannot change",
            edit.spec.device_id
        )));
    }
    let edit = edit.normalized()?;
    if deps.twins.get(id.as_str()).await?.is_none() {
        return Ok((201, create_twin(deps, &req.caller, edit).await?));
    }
    Ok((
        200,
        update(deps, &req.caller, &id, |twin, now| {
            Ok(twin.apply_edit(&edit, now))
        })
        .await?,
    ))
}

/// PATCH: a JSON merge patch (RFC 7386) on meta, spec and properties.desired.
async fn merge(deps: &Deps<'_>, req: &ApiRequest) -> Result<(u16, Twin), ApiError> {
    let id = device_id(req)?;
    let patch: Value = req.json()?;
    if let Some(obj) = patch.as_object() {
        if let Some(bad) = obj.keys().find(|k| {
            !matches!(
                k.as_str(),
                "meta" | "spec" | "properties" | "apiVersion" | "kind"
            )
        }) {
            return Err(ApiError::bad_request(format!(
                "{bad} cannot be changed; only meta, spec and properties.desired can"
            )));
        }
        if obj
            .get("properties")
            .and_then(Value::as_object)
            .is_some_and(|p| p.keys().any(|k| k != "desired"))
        {
            return Err(ApiError::bad_request(
                "only properties.desired can be changed",
            ));
        }
    } else {
        return Err(ApiError::bad_request(
            "the merge patch must be a JSON object",
        ));
    }
    let twin = update(deps, &req.caller, &id, |twin, now| {
        let mut doc = serde_json::to_value(&*twin).map_err(|e| HandlerError::invalid("twin", e))?;
        api::merge_patch(&mut doc, &patch);
        let edit: Twin = serde_json::from_value(doc)
            .map_err(|e| HandlerError::invalid("the patched twin", e))?;
        if edit.spec.device_id != twin.spec.device_id {
            return Err(HandlerError::invalid("spec.deviceId", "cannot change"));
        }
        let edit = edit.normalized()?;
        Ok(twin.apply_edit(&edit, now))
    })
    .await?;
    Ok((200, twin))
}

/// Applies an operator edit with optimistic concurrency, validates and pushes changed
/// desired properties, and records the event.
async fn update<F>(
    deps: &Deps<'_>,
    caller: &Caller,
    id: &DeviceId,
    mut edit: F,
) -> Result<Twin, ApiError>
where
    F: FnMut(&mut Twin, chrono::DateTime<chrono::Utc>) -> Result<Vec<String>, HandlerError> + Send,
{
    let now = deps.clock.now();
    let schema = deps.cache.get(deps.schemas, id.as_str()).await?;
    let mut changed_desired = Vec::new();
    let before = deps
        .twins
        .get(id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("device {id} does not exist")))?;
    // Disabling or enabling a device changes its certificates first: a failure leaves
    // the device as it was, and the call can be repeated.
    let mut preview = before.value.clone();
    let mut toggled = None;
    if let Ok(names) = edit(&mut preview, now) {
        if preview.spec.disabled != before.value.spec.disabled
            && service::validate_desired(schema.as_deref(), &mut preview, &names).is_ok()
        {
            set_certificates_active(deps, caller, id, !preview.spec.disabled, now).await?;
            toggled = Some(!preview.spec.disabled);
        }
    }
    let written = service::update_twin(deps.twins, id.as_str(), |twin| {
        let original = twin.clone();
        changed_desired = edit(twin, now)?;
        service::validate_desired(schema.as_deref(), twin, &changed_desired)?;
        Ok(if *twin == original {
            Change::Unchanged
        } else {
            Change::Changed
        })
    })
    .await;
    let twin = match written {
        Ok(Some(t)) => t.value,
        failed => {
            // The twin did not change: neither do its certificates.
            if let Some(active) = toggled {
                reconcile_certificates(deps, id, !active).await;
            }
            failed?;
            return Err(ApiError::not_found(format!("device {id} does not exist")));
        }
    };
    // A concurrent edit may have decided otherwise: the certificates follow the twin.
    if toggled.is_some_and(|active| active == twin.spec.disabled) {
        reconcile_certificates(deps, id, !twin.spec.disabled).await;
    }
    if twin != before.value {
        let mut events = vec![Event::by_caller(
            EventReason::DeviceUpdated,
            id.as_str(),
            now,
            caller,
            "device updated",
        )
        .for_twin(&twin)];
        if !changed_desired.is_empty() {
            events.push(
                Event::by_caller(
                    EventReason::DesiredPropertiesUpdated,
                    id.as_str(),
                    now,
                    caller,
                    format!("desired {}", changed_desired.join(", ")),
                )
                .for_twin(&twin),
            );
        }
        deps.events.append(&events).await?;
        if let Some(schema) = &schema {
            service::push_desired(deps.publisher, schema, &twin, &changed_desired).await?;
        }
    }
    Ok(twin)
}

/// Marks the device's certificates active or inactive (enable, disable), and records it.
async fn set_certificates_active(
    deps: &Deps<'_>,
    caller: &Caller,
    id: &DeviceId,
    active: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), ApiError> {
    let Some(certs) = deps.certificates else {
        return Ok(());
    };
    let state = if active { "active" } else { "inactive" };
    certs.set_active(id.as_str(), active).await.map_err(|e| {
        tracing::error!(device = %id, error = %e, state, "could not change the device's certificates");
        ApiError::unavailable(format!(
            "could not make the certificates of {id} {state}, so the device was not changed; retry later"
        ))
    })?;
    let ev = Event::by_caller(
        EventReason::CertificatesChanged,
        id.as_str(),
        now,
        caller,
        format!("certificates {state}"),
    )
    .with_payload(serde_json::json!({ "active": active }));
    deps.events.append(&[ev]).await?;
    Ok(())
}

/// Puts the certificates back in line with the twin after a write that did not go as
/// previewed. Best effort: a failure is logged, and the next enable or disable repairs it.
async fn reconcile_certificates(deps: &Deps<'_>, id: &DeviceId, active: bool) {
    if let Some(certs) = deps.certificates {
        if let Err(e) = certs.set_active(id.as_str(), active).await {
            tracing::error!(device = %id, error = %e, active, "could not put the certificates back in line with the twin");
        }
    }
}

/// DELETE: revokes the device's certificates first (a failure leaves the device as it
/// was, and the call can be repeated), then deletes the twin, leaving a tombstone so that
/// no message still on its way creates the device again, then its schema.
async fn delete(deps: &Deps<'_>, req: &ApiRequest) -> Result<(u16, Twin), ApiError> {
    let id = device_id(req)?;
    if deps.twins.get(id.as_str()).await?.is_none() {
        return Err(ApiError::not_found(format!("device {id} does not exist")));
    }
    let now = deps.clock.now();
    if let Some(certs) = deps.certificates {
        certs.revoke_all(id.as_str()).await.map_err(|e| {
            tracing::error!(device = %id, error = %e, "could not revoke the device's certificates");
            ApiError::unavailable(format!(
                "could not revoke the certificates of {id}, so it was not deleted; retry later"
            ))
        })?;
        let ev = Event::by_caller(
            EventReason::CertificatesChanged,
            id.as_str(),
            now,
            &req.caller,
            "certificates revoked",
        )
        .with_payload(serde_json::json!({ "revoked": true }));
        deps.events.append(&[ev]).await?;
    }
    let twin = deps
        .twins
        .delete(id.as_str(), now)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("device {id} does not exist")))?;
    deps.schemas.delete(id.as_str()).await?;
    deps.cache.forget(id.as_str());
    let ev = Event::by_caller(
        EventReason::DeviceDeleted,
        id.as_str(),
        now,
        &req.caller,
        "device deleted",
    )
    .for_twin(&twin);
    deps.events.append(&[ev]).await?;
    Ok((200, twin))
}

async fn certificate(
    deps: &Deps<'_>,
    req: &ApiRequest,
) -> Result<(u16, mir_shared::ports::DeviceCertificate), ApiError> {
    let id = device_id(req)?;
    let body: CertificateRequest = if req.body.as_ref().is_none_or(|b| b.is_empty()) {
        CertificateRequest::default()
    } else {
        req.json()?
    };
    if deps.twins.get(id.as_str()).await?.is_none() {
        return Err(ApiError::not_found(format!(
            "device {id} does not exist; create it first"
        )));
    }
    let issuer = deps.certificates.ok_or_else(|| ApiError {
        status: 501,
        message: "this deployment does not issue certificates".into(),
    })?;
    let cert = issuer
        .issue(id.as_str(), body.csr_pem.as_deref())
        .await
        .map_err(|e| match e {
            mir_shared::ports::CertificateError::Invalid(m) => ApiError::bad_request(m),
            e @ mir_shared::ports::CertificateError::CsrRequired => {
                ApiError::bad_request(e.to_string())
            }
            other => {
                tracing::error!(error = %other, "certificate issue failed");
                ApiError::unavailable("the certificate authority is unavailable; retry later")
            }
        })?;
    let ev = Event::by_caller(
        EventReason::CertificateIssued,
        id.as_str(),
        deps.clock.now(),
        &req.caller,
        format!("certificate {} issued", cert.certificate_id),
    )
    .with_payload(serde_json::json!({ "certificateId": cert.certificate_id }));
    deps.events.append(&[ev]).await?;
    Ok((201, cert))
}

/// The schema the device last sent, described; 404 when it has sent none.
async fn schema(deps: &Deps<'_>, req: &ApiRequest) -> Result<(u16, DeviceSchema), ApiError> {
    let id = device_id(req)?;
    let twin = deps
        .twins
        .get(id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("device {id} does not exist")))?
        .value;
    let schema = deps
        .cache
        .get(deps.schemas, id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found(format!("device {id} has not sent its schema yet")))?;
    Ok((
        200,
        DeviceSchema {
            device_id: twin.spec.device_id,
            name: twin.meta.name,
            namespace: twin.meta.namespace,
            schema: schema.view(),
        },
    ))
}

async fn refresh(deps: &Deps<'_>, req: &ApiRequest) -> Result<(u16, Value), ApiError> {
    let id = device_id(req)?;
    if deps.twins.get(id.as_str()).await?.is_none() {
        return Err(ApiError::not_found(format!("device {id} does not exist")));
    }
    deps.cache.forget(id.as_str());
    let sent = match deps
        .publisher
        .publish(&DeviceTopic::HelloGet.for_device(&id), Bytes::new())
        .await
    {
        Ok(()) => true,
        Err(mir_shared::ports::PublishError::NotConnected(_)) => false,
        Err(e) => return Err(HandlerError::from(e).into()),
    };
    Ok((
        202,
        serde_json::json!({ "deviceId": id.as_str(), "requested": sent }),
    ))
}

#[cfg(test)]
mod tests;
