//! SigV4 signing of API requests for aws contexts (API Gateway with IAM auth): service
//! `execute-api`, the context's region, credentials from the standard AWS chain
//! (environment, the context's profile or the default one, SSO, web identity, IMDS...),
//! loaded once per process on first use.

use std::sync::Arc;
use std::time::SystemTime;

use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use reqwest::header::{HeaderName, HeaderValue};

use crate::context::SigV4Config;

/// The service name API Gateway's IAM auth expects.
pub const SERVICE: &str = "execute-api";

#[derive(Clone)]
enum Source {
    Fixed(Credentials),
    Chain {
        profile: Option<String>,
        cached: Arc<
            tokio::sync::OnceCell<
                aws_config::default_provider::credentials::DefaultCredentialsChain,
            >,
        >,
    },
}

/// Signs requests for one region.
#[derive(Clone)]
pub struct Signer {
    region: String,
    source: Source,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// Credentials from the standard chain (with the context's profile, if any).
    pub fn from_config(cfg: &SigV4Config) -> Self {
        Self {
            region: cfg.region.clone(),
            source: Source::Chain {
                profile: cfg.profile.clone(),
                cached: Arc::new(tokio::sync::OnceCell::new()),
            },
        }
    }

    /// Fixed credentials (tests, tools).
    pub fn with_credentials(region: &str, credentials: Credentials) -> Self {
        Self {
            region: region.to_string(),
            source: Source::Fixed(credentials),
        }
    }

    async fn credentials(&self) -> Result<Credentials, String> {
        match &self.source {
            Source::Fixed(c) => Ok(c.clone()),
            Source::Chain { profile, cached } => {
                let chain = cached
                    .get_or_init(|| async {
                        let mut b = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                            .region(aws_config::Region::new(self.region.clone()));
                        if let Some(p) = profile {
                            b = b.profile_name(p);
                        }
                        b.build().await
                    })
                    .await;
                chain.provide_credentials().await.map_err(|e| {
                    format!(
                        "no AWS credentials to sign the request ({e}); configure them with \
                         `aws configure`, `aws sso login`, AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
                    )
                })
            }
        }
    }

    /// Adds `authorization`, `x-amz-date` (and `x-amz-security-token`) to the request.
    pub async fn sign(&self, req: &mut reqwest::Request) -> Result<(), String> {
        let credentials = self.credentials().await?;
        sign_at(req, &credentials, &self.region, SystemTime::now())
    }
}

/// Signs `req` as of `time`.
pub fn sign_at(
    req: &mut reqwest::Request,
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<(), String> {
    let identity: Identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| format!("cannot sign the request: {e}"))?
        .into();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let body: Vec<u8> = req
        .body()
        .and_then(|b| b.as_bytes())
        .map(<[u8]>::to_vec)
        .unwrap_or_default();
    let method = req.method().as_str().to_string();
    let url = req.url().as_str().to_string();
    let signable = SignableRequest::new(
        &method,
        &url,
        headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Bytes(&body),
    )
    .map_err(|e| format!("cannot sign the request: {e}"))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| format!("cannot sign the request: {e}"))?
        .into_parts();
    let (new_headers, _params) = instructions.into_parts();
    for h in new_headers {
        let name = HeaderName::from_static(h.name());
        let value = HeaderValue::from_str(h.value())
            .map_err(|e| format!("cannot sign the request: {e}"))?;
        req.headers_mut().insert(name, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_request_has_the_sigv4_headers() {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", Some("token".into()), None, "test");
        let client = reqwest::Client::new();
        let mut req = client
            .post("https://abc.execute-api.eu-west-1.amazonaws.com/v1/devices?namespace=lab")
            .json(&serde_json::json!({"a": 1}))
            .build()
            .expect("request");
        // 2024-01-02T03:04:05Z
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_704_164_645);
        sign_at(&mut req, &creds, "eu-west-1", time).expect("signs");
        let h = req.headers();
        assert_eq!(h["x-amz-date"], "20240102T030405Z");
        assert_eq!(h["x-amz-security-token"], "token");
        let auth = h["authorization"].to_str().expect("ascii");
        assert!(
            auth.starts_with(
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240102/eu-west-1/execute-api/aws4_request, SignedHeaders="
            ),
            "{auth}"
        );
        let signed = auth
            .split("SignedHeaders=")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .expect("signed headers");
        for want in ["content-type", "host", "x-amz-date", "x-amz-security-token"] {
            assert!(signed.split(';').any(|s| s == want), "{want} in {signed}");
        }
        let sig = auth.split("Signature=").nth(1).expect("signature");
        assert_eq!(sig.len(), 64);
        assert!(sig.chars().all(|c| c.is_ascii_hexdigit()));
        // Deterministic for the same request and time; another body changes it.
        let mut again = client
            .post("https://abc.execute-api.eu-west-1.amazonaws.com/v1/devices?namespace=lab")
            .json(&serde_json::json!({"a": 1}))
            .build()
            .expect("request");
        sign_at(&mut again, &creds, "eu-west-1", time).expect("signs");
        assert_eq!(again.headers()["authorization"], h["authorization"]);
        let mut other = client
            .post("https://abc.execute-api.eu-west-1.amazonaws.com/v1/devices?namespace=lab")
            .json(&serde_json::json!({"a": 2}))
            .build()
            .expect("request");
        sign_at(&mut other, &creds, "eu-west-1", time).expect("signs");
        assert_ne!(other.headers()["authorization"], h["authorization"]);
    }
}
