//! AWS Signature Version 4 for Bedrock requests, by the AWS SDK's own signer (`aws-sigv4`).
//!
//! What is signed is what is sent: the method, the URL as sent (the model id percent-encoded
//! once in the path; SigV4 encodes it again for the canonical request, as every AWS service
//! but S3 expects), the exact body bytes, and every header the adapter sets (content type,
//! accept, the deployment's configured headers and the ones layers ask for, such as
//! `traceparent`), except those the signer leaves out by design because proxies rewrite them
//! (`user-agent`, `x-amzn-trace-id`, `transfer-encoding`). Headers the HTTP client adds on
//! its own later (`content-length`, `accept` when none was set) are simply not in the signed
//! set, which SigV4 allows. A session token goes in `x-amz-security-token`, signed.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::{
    http_request::{SignableBody, SignableRequest, SigningSettings, sign},
    sign::v4,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use switchyard_types::llm::{ErrorClass, LlmError};

/// The signing name of the Bedrock runtime (its credential scope's service).
pub const SERVICE: &str = "bedrock";

/// Signs a `POST` of `body` to `url` with `headers`, adding `x-amz-date`, `authorization` and,
/// for temporary credentials, `x-amz-security-token` to `headers`.
pub(crate) fn sign_request(
    credentials: &Credentials,
    region: &str,
    url: &str,
    headers: &mut HeaderMap,
    body: &[u8],
    time: SystemTime,
) -> Result<(), LlmError> {
    let failed = |e: &dyn std::fmt::Display| {
        LlmError::new(ErrorClass::Internal, format!("could not sign the Bedrock request: {e}"))
    };
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| failed(&e))?
        .into();
    // A header whose value is not visible ASCII cannot be canonicalised; it goes unsigned.
    let signed = headers.iter().filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
    let request =
        SignableRequest::new("POST", url, signed, SignableBody::Bytes(body)).map_err(|e| failed(&e))?;
    let (instructions, _signature) = sign(request, &params).map_err(|e| failed(&e))?.into_parts();
    let (added, _params) = instructions.into_parts();
    for header in added {
        let mut value = HeaderValue::try_from(header.value()).map_err(|e| failed(&e))?;
        value.set_sensitive(header.sensitive() || header.name() == "authorization");
        let name = HeaderName::from_bytes(header.name().as_bytes()).map_err(|e| failed(&e))?;
        headers.insert(name, value);
    }
    Ok(())
}
