//! Vertex AI's OAuth access tokens from a service account key: Google's two-legged flow.
//!
//! The adapter signs a JWT (RS256, with ring: the same crypto library rustls uses here) claiming
//! the `cloud-platform` scope for the account, and exchanges it at the key file's `token_uri`
//! (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`) for an access token of about an
//! hour, sent as `Authorization: Bearer`.
//!
//! Tokens are cached. Requests read the cached header without waiting; once a token enters its
//! last minutes ([`REFRESH_MARGIN`]) the first request to notice starts one background refresh
//! and goes on with the token it has, so no request waits for Google's token endpoint except
//! when there is no valid token at all (the first request, or after refreshes failed until the
//! token expired). Then requests wait for one exchange together: one refresh runs at a time.

use std::{
    fmt,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use http::{HeaderValue, header};
use ring::{
    rand::SystemRandom,
    signature::{RSA_PKCS1_SHA256, RsaKeyPair},
};
use rustls_pki_types::{PrivatePkcs8KeyDer, pem::PemObject};
use serde::Deserialize;
use switchyard_types::llm::{ErrorClass, LlmError};
use tokio::time::Instant;

use crate::upstream::{error_chain, truncate};

/// The scope Vertex AI needs.
pub(super) const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// The grant type of a signed JWT exchanged for a token.
pub(super) const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How long before expiry a token is refreshed (in the background).
pub(super) const REFRESH_MARGIN: Duration = Duration::from_secs(300);
/// The lifetime asked for in the JWT: Google's maximum.
const ASSERTION_LIFETIME_SECS: u64 = 3600;

/// A service account key, as Google's JSON key file holds it.
pub struct ServiceAccountKey {
    client_email: String,
    private_key_id: Option<String>,
    token_uri: reqwest::Url,
    key: RsaKeyPair,
}

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file is not the JSON of a service account key.
    #[error("not a service account key file (JSON with client_email, private_key and token_uri): {0}")]
    NotAKeyFile(String),
    /// A key file of another kind (`authorized_user`, `external_account`, ...).
    #[error(
        "a `{0}` credentials file; Vertex AI deployments take a service account key (type service_account), or an access token as api_key"
    )]
    WrongType(String),
    /// The private key does not parse as an RSA PKCS#8 PEM key.
    #[error("the private_key is not an RSA private key in PKCS#8 PEM: {0}")]
    BadKey(String),
    /// The `token_uri` is not a URL.
    #[error("token_uri `{0}` is not a valid URL")]
    BadTokenUri(String),
}

#[derive(Deserialize)]
struct KeyFile {
    client_email: String,
    private_key: String,
    #[serde(default)]
    private_key_id: Option<String>,
    #[serde(default)]
    token_uri: Option<String>,
}

// === impl ServiceAccountKey ===

impl ServiceAccountKey {
    /// Reads a service account key file's JSON (the gateway reads the file).
    pub fn from_json(json: &str) -> Result<Self, KeyError> {
        #[derive(Deserialize)]
        struct Kind {
            #[serde(rename = "type", default)]
            kind: Option<String>,
        }
        if let Ok(Kind { kind: Some(kind) }) = serde_json::from_str::<Kind>(json)
            && kind != "service_account"
        {
            return Err(KeyError::WrongType(kind));
        }
        let file: KeyFile = serde_json::from_str(json).map_err(|e| KeyError::NotAKeyFile(e.to_string()))?;
        let der = PrivatePkcs8KeyDer::from_pem_slice(file.private_key.as_bytes())
            .map_err(|e| KeyError::BadKey(e.to_string()))?;
        let key =
            RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).map_err(|e| KeyError::BadKey(e.to_string()))?;
        let token_uri = file.token_uri.unwrap_or_else(|| "https://oauth2.googleapis.com/token".to_owned());
        let token_uri =
            reqwest::Url::parse(&token_uri).map_err(|_| KeyError::BadTokenUri(token_uri.clone()))?;
        Ok(Self { client_email: file.client_email, private_key_id: file.private_key_id, token_uri, key })
    }

    /// The account's email, which names it in errors.
    pub fn client_email(&self) -> &str {
        &self.client_email
    }

    /// The signed JWT asking for a `cloud-platform` token, issued at `now` (Unix seconds).
    pub fn assertion(&self, now: u64) -> Result<String, LlmError> {
        let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        if let Some(id) = &self.private_key_id {
            header["kid"] = id.as_str().into();
        }
        let claims = serde_json::json!({
            "iss": self.client_email,
            "scope": CLOUD_PLATFORM_SCOPE,
            "aud": self.token_uri.as_str(),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME_SECS,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), signing_input.as_bytes(), &mut signature)
            .map_err(|_| LlmError::new(ErrorClass::Internal, "could not sign the service account's JWT"))?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

impl fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri.as_str())
            .finish_non_exhaustive()
    }
}

/// Access tokens for one service account, cached and refreshed; cheap to share (`Arc`).
pub(super) struct TokenSource {
    key: ServiceAccountKey,
    client: reqwest::Client,
    label: Arc<str>,
    current: RwLock<Option<Token>>,
    /// One exchange at a time; requests with no valid token wait on it.
    exchange: tokio::sync::Mutex<()>,
    /// A background refresh has been started and has not finished.
    refreshing: AtomicBool,
}

#[derive(Clone)]
struct Token {
    header: HeaderValue,
    refresh_at: Instant,
    expires_at: Instant,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

// === impl TokenSource ===

impl TokenSource {
    pub(super) fn new(key: ServiceAccountKey, client: reqwest::Client, label: Arc<str>) -> Self {
        Self {
            key,
            client,
            label,
            current: RwLock::new(None),
            exchange: tokio::sync::Mutex::new(()),
            refreshing: AtomicBool::new(false),
        }
    }

    /// The `Authorization` header for a request now.
    pub(super) async fn authorization(self: &Arc<Self>) -> Result<HeaderValue, LlmError> {
        let now = Instant::now();
        if let Some(token) = self.cached() {
            if now >= token.refresh_at && !self.refreshing.swap(true, Ordering::AcqRel) {
                let source = Arc::clone(self);
                tokio::spawn(async move {
                    let _exchange = source.exchange.lock().await;
                    if let Err(error) = source.fetch().await {
                        tracing::warn!(deployment = %source.label, %error, "refreshing the Vertex AI access token failed; the current one is used until it expires");
                    }
                    source.refreshing.store(false, Ordering::Release);
                });
            }
            if now < token.expires_at {
                return Ok(token.header);
            }
        }
        let _exchange = self.exchange.lock().await;
        // Another request may have fetched one while this one waited.
        if let Some(token) = self.cached()
            && Instant::now() < token.expires_at
        {
            return Ok(token.header);
        }
        self.fetch().await
    }

    /// Drops the cached token (Google refused it), so that the next request gets a new one.
    pub(super) fn forget(&self) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn cached(&self) -> Option<Token> {
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Exchanges a fresh assertion for a token and caches it. Callers hold `exchange`.
    async fn fetch(&self) -> Result<HeaderValue, LlmError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let assertion = self.key.assertion(now)?;
        let body = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", JWT_BEARER_GRANT)
            .append_pair("assertion", &assertion)
            .finish();
        let started = Instant::now();
        let response = self
            .client
            .post(self.key.token_uri.clone())
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| self.failure(ErrorClass::Unreachable, &error_chain(&e)))?;
        let status = response.status();
        let bytes =
            response.bytes().await.map_err(|e| self.failure(ErrorClass::UpstreamServer, &error_chain(&e)))?;
        if !status.is_success() {
            // OAuth's error body: {"error": "invalid_grant", "error_description": "..."}.
            let said = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
            let field = |name: &str| {
                said.as_ref().and_then(|v| v.get(name)).and_then(|v| v.as_str()).map(str::to_owned)
            };
            let text = match (field("error"), field("error_description")) {
                (Some(error), Some(description)) => format!("{error}: {description}"),
                (Some(error), None) => error,
                _ => truncate(String::from_utf8_lossy(&bytes).trim(), 300).to_owned(),
            };
            let class = if status.is_server_error() {
                ErrorClass::UpstreamServer
            } else {
                ErrorClass::ProviderAuthentication
            };
            return Err(self.failure(class, &format!("{} {text}", status.as_u16())));
        }
        let token: TokenResponse = serde_json::from_slice(&bytes)
            .map_err(|e| self.failure(ErrorClass::UpstreamServer, &format!("unreadable answer: {e}")))?;
        let mut header = HeaderValue::try_from(format!("Bearer {}", token.access_token)).map_err(|_| {
            self.failure(ErrorClass::UpstreamServer, "the token holds bytes a header cannot carry")
        })?;
        header.set_sensitive(true);
        let lifetime = Duration::from_secs(token.expires_in.unwrap_or(ASSERTION_LIFETIME_SECS));
        // A short-lived token is refreshed halfway through its life instead.
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        let expires_at = started + lifetime;
        let fresh = Token { header: header.clone(), refresh_at: expires_at - margin, expires_at };
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(fresh);
        Ok(header)
    }

    fn failure(&self, class: ErrorClass, cause: &str) -> LlmError {
        LlmError::new(
            class,
            format!(
                "{}: could not get a Vertex AI access token for {} from {}: {cause}",
                self.label,
                self.key.client_email,
                self.key.token_uri.as_str()
            ),
        )
    }

    /// Makes the cached token due for refresh now, as if its last minutes had come.
    #[cfg(test)]
    fn age_to_refresh(&self) {
        if let Some(token) = self.current.write().unwrap_or_else(PoisonError::into_inner).as_mut() {
            token.refresh_at = Instant::now();
        }
    }
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSource").field("key", &self.key).finish_non_exhaustive()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use switchyard_testkit::{MockConfig, MockServer};

    use super::*;

    /// A service account key file for a fresh 2048-bit RSA key (made by `openssl`), whose
    /// `token_uri` is `token_uri`.
    pub(crate) fn key_file(token_uri: &str) -> String {
        let output = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
            .output()
            .expect("the openssl command makes the test's RSA key");
        assert!(output.status.success(), "openssl genpkey failed");
        let pem = String::from_utf8(output.stdout).expect("PEM is text");
        serde_json::json!({
            "type": "service_account", "project_id": "proj", "private_key_id": "key-1", "private_key": pem,
            "client_email": "gateway@proj.iam.gserviceaccount.com", "client_id": "1", "token_uri": token_uri,
        })
        .to_string()
    }

    fn source(mock: &MockServer) -> Arc<TokenSource> {
        let json = key_file(&format!("http://{}/token", mock.addr()));
        mock.register_service_account(&json).unwrap();
        let client = crate::client::build_client(&crate::client::ClientSettings::default()).unwrap();
        Arc::new(TokenSource::new(ServiceAccountKey::from_json(&json).unwrap(), client, "vertex/test".into()))
    }

    fn token_requests(mock: &MockServer) -> usize {
        mock.requests().iter().filter(|r| r.path == "/token").count()
    }

    #[tokio::test]
    async fn one_exchange_serves_concurrent_first_requests_and_later_ones() {
        let mock = MockServer::start(MockConfig::default()).await.unwrap();
        let source = source(&mock);
        let tokens = futures_util::future::join_all((0..5).map(|_| source.authorization())).await;
        let first = tokens[0].as_ref().unwrap().clone();
        assert!(tokens.iter().all(|t| t.as_ref().unwrap() == first));
        assert!(first.is_sensitive());
        assert_eq!(source.authorization().await.unwrap(), first);
        assert_eq!(token_requests(&mock), 1, "the token is cached");
    }

    #[tokio::test]
    async fn a_token_near_expiry_is_refreshed_in_the_background() {
        let mock = MockServer::start(MockConfig::default()).await.unwrap();
        let source = source(&mock);
        let first = source.authorization().await.unwrap();
        source.age_to_refresh();
        assert_eq!(source.authorization().await.unwrap(), first, "the request does not wait for the refresh");
        let refreshed = async {
            loop {
                let now = source.authorization().await.unwrap();
                if now != first {
                    return now;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), refreshed).await.expect("a new token arrives");
        assert_eq!(token_requests(&mock), 2, "exactly one refresh");
    }

    #[tokio::test]
    async fn a_refused_grant_is_a_provider_authentication_error_naming_the_account() {
        let mock = MockServer::start(MockConfig::default()).await.unwrap();
        // Not registered with the mock under this key: the signature does not verify.
        let json = key_file(&format!("http://{}/token", mock.addr()));
        mock.register_service_account(&key_file(&format!("http://{}/token", mock.addr()))).unwrap();
        let client = crate::client::build_client(&crate::client::ClientSettings::default()).unwrap();
        let source = Arc::new(TokenSource::new(
            ServiceAccountKey::from_json(&json).unwrap(),
            client,
            "vertex/test".into(),
        ));
        let error = source.authorization().await.unwrap_err();
        assert_eq!(error.class, ErrorClass::ProviderAuthentication);
        assert!(
            error.message.contains("gateway@proj.iam.gserviceaccount.com")
                && error.message.contains("invalid_grant"),
            "{}",
            error.message
        );
    }

    #[test]
    fn key_files_of_other_kinds_are_refused_by_name() {
        let user =
            r#"{"type": "authorized_user", "client_id": "x", "client_secret": "y", "refresh_token": "z"}"#;
        assert!(
            matches!(ServiceAccountKey::from_json(user), Err(KeyError::WrongType(kind)) if kind == "authorized_user")
        );
        assert!(matches!(ServiceAccountKey::from_json("{}"), Err(KeyError::NotAKeyFile(_))));
    }
}
