//! Reaching an EKS cluster's API with nothing but AWS credentials (a Lambda's
//! role): DescribeCluster gives the endpoint and CA once per process, and each
//! request carries a bearer token made as `aws-iam-authenticator` and
//! `aws eks get-token` make it — `k8s-aws-v1.` followed by the unpadded
//! base64url of a presigned STS `GetCallerIdentity` URL (regional endpoint,
//! `X-Amz-Expires=60`) whose signed headers include `x-k8s-aws-id: {cluster}`.
//! EKS accepts such a token for 15 minutes; it is minted again after 10.
//!
//! `shared/tests/eks/eks_token.py` computes the same token with botocore for fixed
//! credentials, time, region and cluster; the test here must match it exactly.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use base64::Engine;
use futures::future::BoxFuture;
use http::{HeaderValue, Request};
use kube::client::{Body, ConfigExt};
use tower::filter::AsyncPredicate;

use crate::error::{Error, Result};

/// The prefix of an EKS bearer token.
pub const TOKEN_PREFIX: &str = "k8s-aws-v1.";
/// The header naming the cluster inside the signature.
const CLUSTER_HEADER: &str = "x-k8s-aws-id";
/// How long the presigned URL says it is valid (as aws-iam-authenticator).
const URL_EXPIRY: Duration = Duration::from_secs(60);
/// A token is used this long, then minted again (EKS accepts it for 15 minutes).
const REFRESH_AFTER: Duration = Duration::from_secs(10 * 60);

/// What DescribeCluster says about a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// `https://…eks.amazonaws.com`.
    pub endpoint: String,
    /// The cluster CA: base64 of PEM, as EKS returns it.
    pub certificate_authority: String,
}

/// DescribeCluster: the cluster's API endpoint and CA.
pub async fn describe_cluster(eks: &aws_sdk_eks::Client, name: &str) -> Result<Cluster> {
    let out = eks
        .describe_cluster()
        .name(name)
        .send()
        .await
        .map_err(|e| {
            let e = aws_sdk_eks::error::DisplayErrorContext(e);
            Error::Sandbox(format!("EKS DescribeCluster {name}: {e}"))
        })?;
    let cluster = out
        .cluster()
        .ok_or_else(|| Error::Sandbox(format!("EKS cluster {name}: no description")))?;
    let endpoint = cluster
        .endpoint()
        .filter(|e| !e.is_empty())
        .ok_or_else(|| {
            Error::NotReady(format!(
                "EKS cluster {name} has no endpoint yet (status {:?})",
                cluster.status()
            ))
        })?;
    let ca = cluster
        .certificate_authority()
        .and_then(|c| c.data())
        .filter(|d| !d.is_empty())
        .ok_or_else(|| {
            Error::Sandbox(format!("EKS cluster {name} has no certificate authority"))
        })?;
    Ok(Cluster {
        endpoint: endpoint.to_string(),
        certificate_authority: ca.to_string(),
    })
}

impl Cluster {
    /// A kube client configuration for this cluster: its endpoint, trusting
    /// only its CA, without credentials (the token is added per request).
    pub fn kube_config(&self, namespace: &str) -> Result<kube::Config> {
        let url: http::Uri = self
            .endpoint
            .parse()
            .map_err(|e| Error::Sandbox(format!("EKS endpoint {:?}: {e}", self.endpoint)))?;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(self.certificate_authority.trim())
            .map_err(|e| Error::Sandbox(format!("EKS certificate authority is not base64: {e}")))?;
        let ders: Vec<Vec<u8>> = pem::parse_many(&pem)
            .map_err(|e| Error::Sandbox(format!("EKS certificate authority is not PEM: {e}")))?
            .into_iter()
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(|p| p.into_contents())
            .collect();
        if ders.is_empty() {
            return Err(Error::Sandbox(
                "EKS certificate authority holds no certificate".into(),
            ));
        }
        let mut config = kube::Config::new(url);
        config.root_cert = Some(ders);
        config.default_namespace = namespace.to_string();
        Ok(config)
    }
}

/// RFC 3986 percent-encoding of a query value, as botocore does it.
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The bearer token for `cluster` signed with `creds` at `at`.
pub fn token(creds: &Credentials, region: &str, cluster: &str, at: SystemTime) -> Result<String> {
    let sign_err = |e: &dyn std::fmt::Display| Error::Sandbox(format!("EKS token: {e}"));
    let host = format!("sts.{region}.amazonaws.com");
    let base = format!("https://{host}/?Action=GetCallerIdentity&Version=2011-06-15");
    let identity = creds.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(URL_EXPIRY);
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(at)
        .settings(settings)
        .build()
        .map_err(|e| sign_err(&e))?
        .into();
    let signable = SignableRequest::new(
        "GET",
        base.as_str(),
        [("host", host.as_str()), (CLUSTER_HEADER, cluster)].into_iter(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| sign_err(&e))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| sign_err(&e))?
        .into_parts();
    // botocore's order: the signature goes last (aws-sigv4 puts the session token after it).
    let mut query: Vec<(&str, &str)> = instructions
        .params()
        .iter()
        .map(|(k, v)| (*k, v.as_ref()))
        .collect();
    query.sort_by_key(|(k, _)| *k == "X-Amz-Signature");
    let mut url = base;
    for (k, v) in query {
        url.push('&');
        url.push_str(k);
        url.push('=');
        url.push_str(&encode(v));
    }
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(url)
    ))
}

/// Mints tokens from the process's AWS credentials and keeps the current one.
pub struct TokenSource {
    credentials: SharedCredentialsProvider,
    region: String,
    cluster: String,
    current: Mutex<Option<(String, SystemTime)>>,
}

impl TokenSource {
    /// Tokens for `cluster` in `region`.
    pub fn new(credentials: SharedCredentialsProvider, region: &str, cluster: &str) -> Self {
        TokenSource {
            credentials,
            region: region.to_string(),
            cluster: cluster.to_string(),
            current: Mutex::new(None),
        }
    }

    /// The current token, minted again when it is older than 10 minutes.
    pub async fn token(&self) -> Result<String> {
        self.token_at(SystemTime::now()).await
    }

    async fn token_at(&self, now: SystemTime) -> Result<String> {
        if let Some((t, minted)) = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let age = now.duration_since(*minted).unwrap_or(REFRESH_AFTER);
            if age < REFRESH_AFTER {
                return Ok(t.clone());
            }
        }
        // Credentials are asked for each time: the provider caches them and
        // refreshes a role's session before it expires.
        let creds = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| Error::Sandbox(format!("AWS credentials for EKS: {e}")))?;
        let t = token(&creds, &self.region, &self.cluster, now)?;
        *self.current.lock().unwrap_or_else(|p| p.into_inner()) = Some((t.clone(), now));
        Ok(t)
    }
}

/// Adds `Authorization: Bearer {token}` to every API request.
#[derive(Clone)]
struct BearerToken(Arc<TokenSource>);

impl AsyncPredicate<Request<Body>> for BearerToken {
    type Future = BoxFuture<'static, std::result::Result<Request<Body>, tower::BoxError>>;
    type Request = Request<Body>;

    fn check(&mut self, mut req: Request<Body>) -> Self::Future {
        let source = self.0.clone();
        Box::pin(async move {
            let token = source.token().await?;
            let mut value = HeaderValue::from_str(&format!("Bearer {token}"))?;
            value.set_sensitive(true);
            req.headers_mut().insert(http::header::AUTHORIZATION, value);
            Ok(req)
        })
    }
}

/// A kube client for EKS cluster `cluster` with the credentials and region of `sdk`.
pub async fn client(
    sdk: &aws_config::SdkConfig,
    cluster: &str,
    namespace: &str,
) -> Result<kube::Client> {
    let region = sdk
        .region()
        .ok_or_else(|| Error::Config {
            var: "EKS_CLUSTER_NAME",
            message: "no AWS region (set AWS_REGION)".into(),
        })?
        .to_string();
    let credentials = sdk.credentials_provider().ok_or_else(|| Error::Config {
        var: "EKS_CLUSTER_NAME",
        message: "no AWS credentials provider".into(),
    })?;
    let description = describe_cluster(
        &aws_sdk_eks::Client::from_conf(
            aws_sdk_eks::config::Builder::from(sdk)
                .interceptor(crate::xray::aws::XRayInterceptor::from_env())
                .build(),
        ),
        cluster,
    )
    .await?;
    let config = description.kube_config(namespace)?;
    let tokens = Arc::new(TokenSource::new(credentials, &region, cluster));
    let client = client_with(&config, tokens)?;
    tracing::info!(cluster, endpoint = %description.endpoint, "connected to EKS");
    Ok(client)
}

/// A kube client for `config` whose requests carry `tokens`' current token.
fn client_with(config: &kube::Config, tokens: Arc<TokenSource>) -> Result<kube::Client> {
    let https = config
        .rustls_https_connector()
        .map_err(|e| Error::Sandbox(format!("TLS for {}: {e}", config.cluster_url)))?;
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build(https);
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .layer(tower::filter::AsyncFilterLayer::new(BearerToken(tokens)))
        .service(http);
    Ok(kube::Client::new(service, config.default_namespace.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Case {
        region: String,
        cluster: String,
        access_key_id: String,
        secret_access_key: String,
        session_token: Option<String>,
        unix_time: u64,
        url: String,
        token: String,
    }

    /// Tokens botocore made for fixed inputs (`shared/tests/eks/eks_token.py`).
    #[test]
    fn tokens_match_botocore() {
        let cases: Vec<Case> =
            serde_json::from_str(include_str!("../../../tests/eks/eks_token.json")).unwrap();
        assert!(cases.len() >= 2);
        for c in cases {
            let creds = Credentials::new(
                c.access_key_id,
                c.secret_access_key,
                c.session_token,
                None,
                "test",
            );
            let at = SystemTime::UNIX_EPOCH + Duration::from_secs(c.unix_time);
            let got = token(&creds, &c.region, &c.cluster, at).unwrap();
            let url = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(got.trim_start_matches(TOKEN_PREFIX))
                .unwrap();
            assert_eq!(String::from_utf8(url).unwrap(), c.url);
            assert_eq!(got, c.token);
        }
    }

    #[tokio::test]
    async fn tokens_are_reused_for_ten_minutes_then_minted_again() {
        let creds = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        let source = TokenSource::new(SharedCredentialsProvider::new(creds), "eu-west-1", "apna");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_323_045);
        let first = source.token_at(t0).await.unwrap();
        assert!(first.starts_with(TOKEN_PREFIX));
        let url = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(first.trim_start_matches(TOKEN_PREFIX))
                .unwrap(),
        )
        .unwrap();
        assert!(url.starts_with(
            "https://sts.eu-west-1.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&"
        ));
        assert!(url.contains("&X-Amz-Expires=60&X-Amz-SignedHeaders=host%3Bx-k8s-aws-id&"));
        assert!(url.contains("&X-Amz-Date=20260102T030405Z&"));
        let later = source
            .token_at(t0 + Duration::from_secs(9 * 60))
            .await
            .unwrap();
        assert_eq!(later, first);
        let renewed = source
            .token_at(t0 + Duration::from_secs(10 * 60))
            .await
            .unwrap();
        assert_ne!(renewed, first);
        assert_eq!(
            source
                .token_at(t0 + Duration::from_secs(12 * 60))
                .await
                .unwrap(),
            renewed
        );
    }

    /// Every API request carries the current token (a loopback API server
    /// records the header).
    #[tokio::test]
    async fn api_requests_carry_the_bearer_token() {
        use k8s_openapi::api::core::v1::Pod;
        let seen = Arc::new(Mutex::new(Vec::<String>::new()));
        let record = seen.clone();
        let app = axum::Router::new().route(
            "/api/v1/namespaces/apna/pods",
            axum::routing::get(move |headers: http::HeaderMap| {
                let record = record.clone();
                async move {
                    let auth = headers
                        .get(http::header::AUTHORIZATION)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_string();
                    record.lock().unwrap().push(auth);
                    axum::Json(serde_json::json!({
                        "apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": []
                    }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });

        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut config = kube::Config::new(format!("http://{addr}").parse().unwrap());
        config.default_namespace = "apna".into();
        let creds = Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            Some("session".into()),
            None,
            "test",
        );
        let tokens = Arc::new(TokenSource::new(
            SharedCredentialsProvider::new(creds),
            "eu-west-1",
            "apna",
        ));
        let client = client_with(&config, tokens).unwrap();
        let pods: kube::Api<Pod> = kube::Api::default_namespaced(client);
        for _ in 0..2 {
            assert!(pods
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .is_empty());
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0], seen[1], "one token for both requests");
        let token = seen[0].strip_prefix("Bearer ").expect("a bearer token");
        let url = String::from_utf8(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token.trim_start_matches(TOKEN_PREFIX))
                .unwrap(),
        )
        .unwrap();
        assert!(
            url.contains("X-Amz-SignedHeaders=host%3Bx-k8s-aws-id"),
            "{url}"
        );
        assert!(url.contains("X-Amz-Security-Token=session"), "{url}");
    }

    #[test]
    fn the_ca_becomes_the_only_trusted_root() {
        let pem = include_str!("../../../tests/eks/ca.pem");
        let cluster = Cluster {
            endpoint: "https://0123456789ABCDEF.gr7.eu-west-1.eks.amazonaws.com".into(),
            certificate_authority: base64::engine::general_purpose::STANDARD.encode(pem),
        };
        let config = cluster.kube_config("apna").unwrap();
        assert_eq!(
            config.cluster_url.to_string(),
            "https://0123456789ABCDEF.gr7.eu-west-1.eks.amazonaws.com/"
        );
        let roots = config.root_cert.as_ref().unwrap();
        assert_eq!(roots.len(), 1);
        assert_eq!(roots[0][0], 0x30, "DER sequence");
        assert_eq!(config.default_namespace, "apna");
        let _ = rustls::crypto::ring::default_provider().install_default();
        assert!(config.rustls_https_connector().is_ok());

        for bad in ["not base64!", "aGVsbG8="] {
            let c = Cluster {
                certificate_authority: bad.into(),
                ..cluster.clone()
            };
            assert!(
                matches!(c.kube_config("apna"), Err(Error::Sandbox(_))),
                "{bad}"
            );
        }
    }
}
