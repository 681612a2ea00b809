//! Who made an API request: the IAM identity API Gateway verified (`requestContext.
//! authorizer.iam`), and the request id that ties the access log, the function's log
//! and the events written to one request.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;

/// The caller of one API request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Caller {
    /// The IAM principal's ARN (`arn:aws:sts::<account>:assumed-role/<role>/<session>`),
    /// when the route is IAM-authorized.
    pub arn: Option<String>,
    /// The caller's account.
    pub account_id: Option<String>,
    /// API Gateway's request id (also in the access log).
    pub request_id: String,
}

impl Caller {
    /// Reads the request context. A request without one (a test, a local call) has an
    /// empty request id and no identity.
    pub fn from_event(ev: &ApiGatewayV2httpRequest) -> Self {
        let ctx = &ev.request_context;
        let iam = ctx.authorizer.as_ref().and_then(|a| a.iam.as_ref());
        let non_empty = |v: Option<&String>| v.filter(|s| !s.is_empty()).cloned();
        Self {
            arn: non_empty(iam.and_then(|i| i.user_arn.as_ref())),
            account_id: non_empty(iam.and_then(|i| i.account_id.as_ref())),
            request_id: ctx.request_id.clone().unwrap_or_default(),
        }
    }

    /// The identity events record as their `actor`: the ARN, else `anonymous`.
    pub fn actor(&self) -> String {
        self.arn.clone().unwrap_or_else(|| "anonymous".into())
    }

    /// The cause an event's id derives from: the request id when there is one, else
    /// `fallback` (a time), so that one request's events are recorded once.
    pub fn cause(&self, fallback: i64) -> String {
        if self.request_id.is_empty() {
            format!("api|{fallback}")
        } else {
            format!("api|{}", self.request_id)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An API Gateway HTTP API (payload v2) event of an IAM-authorized route, as AWS
    /// sends it (trimmed to the context).
    const IAM_EVENT: &str = r#"{
      "version": "2.0",
      "routeKey": "DELETE /v1/devices/{deviceId}",
      "rawPath": "/v1/devices/w1",
      "rawQueryString": "",
      "headers": {"host": "abc.execute-api.eu-west-1.amazonaws.com"},
      "requestContext": {
        "accountId": "123456789012",
        "apiId": "abc",
        "authorizer": {
          "iam": {
            "accessKey": "ASIAEXAMPLE",
            "accountId": "123456789012",
            "callerId": "AROAEXAMPLE:alice",
            "principalOrgId": "o-example",
            "userArn": "arn:aws:sts::123456789012:assumed-role/mir-dev-provisioner/alice",
            "userId": "AROAEXAMPLE:alice"
          }
        },
        "domainName": "abc.execute-api.eu-west-1.amazonaws.com",
        "http": {"method": "DELETE", "path": "/v1/devices/w1", "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "mir"},
        "requestId": "Jd1XhjRyIAMEb3w=",
        "routeKey": "DELETE /v1/devices/{deviceId}",
        "stage": "$default",
        "time": "01/Dec/2026:12:00:00 +0000",
        "timeEpoch": 1796126400000
      },
      "pathParameters": {"deviceId": "w1"},
      "isBase64Encoded": false
    }"#;

    #[test]
    fn the_caller_is_the_iam_principal_of_the_request_context() {
        let ev: ApiGatewayV2httpRequest = serde_json::from_str(IAM_EVENT).expect("event");
        let c = Caller::from_event(&ev);
        assert_eq!(
            c.actor(),
            "arn:aws:sts::123456789012:assumed-role/mir-dev-provisioner/alice"
        );
        assert_eq!(c.account_id.as_deref(), Some("123456789012"));
        assert_eq!(c.cause(7), "api|Jd1XhjRyIAMEb3w=");
    }

    #[test]
    fn a_request_without_identity_is_anonymous() {
        let c = Caller::from_event(&ApiGatewayV2httpRequest::default());
        assert_eq!(
            (c.actor().as_str(), c.cause(7).as_str()),
            ("anonymous", "api|7")
        );
    }
}
