//! Every setting, read from the environment once at startup.
//!
//! Names follow the seed where it had one (PORT, DATABASE_URL, S3_BUCKET, …).
//! With nothing set, `apna serve` runs on the embedded defaults: SQLite and
//! snapshots under `APNA_DATA_DIR`, local sandboxes, the built-in workflow
//! interpreter. A malformed value is an [`Error::Config`] naming the variable.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// The default model (overridable with `ANTHROPIC_MODEL`).
pub const DEFAULT_MODEL: &str = "claude-sonnet-4-5";
/// The same model on Amazon Bedrock (a cross-region inference profile).
pub const DEFAULT_BEDROCK_MODEL: &str = "us.anthropic.claude-sonnet-4-5-20250929-v1:0";

/// Who runs the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelProvider {
    /// The Anthropic Messages API (or a server speaking it at `ANTHROPIC_BASE_URL`).
    Anthropic,
    /// Amazon Bedrock, with the AWS credentials of the process (IAM role on Lambda).
    Bedrock,
}

/// Where project sandboxes run (`APNA_SANDBOX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxBackend {
    /// A directory and a Vite process per project on this machine (the default).
    Local,
    /// A Pod + PVC + Service per project on Kubernetes (needs `--features kube`).
    Kube,
}

/// What connecting to PostgreSQL does with the schema (`APNA_DB_MIGRATIONS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbMigrations {
    /// Applies pending migrations (the default: `apna serve`, one process).
    Apply,
    /// Only checks that they are applied, failing clearly when not: for a
    /// fleet of functions whose role may not create tables (the SAM template
    /// sets it; its migrate step applies them once per deploy).
    Check,
}

/// How the backend reaches a pod's `apna sandboxd` (`APNA_KUBE_TRANSPORT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeTransport {
    /// Through the API server's `pods/proxy` subresource: needs nothing but
    /// the API endpoint (works from a Lambda outside the VPC). The default.
    Proxy,
    /// Straight to the pod IP on sandboxd's port (the caller must be inside the cluster network).
    Direct,
}

/// The browser UI's OpenID Connect client (`APNA_OIDC_ISSUER`,
/// `APNA_OIDC_CLIENT_ID`, `APNA_OIDC_SCOPES`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct OidcClient {
    /// The issuer (its discovery document is at `{issuer}/.well-known/openid-configuration`).
    pub issuer: String,
    /// The UI's client id at the issuer (a public client: no secret).
    pub client_id: String,
    /// Scopes to ask for (default `openid email profile`).
    pub scopes: String,
}

/// All settings.
#[derive(Clone)]
pub struct Config {
    /// Address `apna serve` binds (`APNA_BIND`, default 127.0.0.1).
    pub bind: IpAddr,
    /// Port `apna serve` listens on (`PORT`, default 3000).
    pub port: u16,
    /// Where embedded backends keep their files (`APNA_DATA_DIR`, default `./.apna`).
    pub data_dir: PathBuf,
    /// Store URL (`DATABASE_URL`, default `sqlite://{data_dir}/apna.db`;
    /// `postgres://…`, or `dynamodb://<table>` in a build with `--features dynamodb`).
    pub database_url: String,
    /// DynamoDB endpoint override (`DYNAMODB_ENDPOINT`), e.g. dynalite; region
    /// and credentials come from the usual AWS settings.
    pub dynamodb_endpoint: Option<String>,
    /// Days a run's events are kept before DynamoDB's TTL removes them
    /// (`APNA_EVENT_RETENTION_DAYS`, default 30; 0 keeps them). The SQL stores keep them.
    pub event_retention_days: u32,
    /// Most PostgreSQL connections per process (`APNA_DB_POOL_SIZE`, default 16; 1–2 on Lambda).
    pub db_pool_size: u32,
    /// Whether connecting applies or only checks the PostgreSQL schema
    /// (`APNA_DB_MIGRATIONS`: `apply`, the default, or `check`).
    pub db_migrations: DbMigrations,
    /// Anthropic API key (`ANTHROPIC_API_KEY`); without it runs fail with a clear message.
    pub anthropic_api_key: Option<String>,
    /// Secrets Manager secret holding the key (`ANTHROPIC_API_KEY_SECRET_ARN`,
    /// on AWS): the functions that call the model read it at start; the others
    /// only report that a key is configured.
    pub anthropic_api_key_secret: Option<String>,
    /// Model id (`ANTHROPIC_MODEL`).
    pub anthropic_model: String,
    /// Messages API base URL (`ANTHROPIC_BASE_URL`, default https://api.anthropic.com).
    pub anthropic_base_url: String,
    /// Who runs the model (`APNA_MODEL_PROVIDER`: `anthropic`, the default, or
    /// `bedrock`, which needs a build with `--features bedrock`).
    pub model_provider: ModelProvider,
    /// Bedrock runtime endpoint override (`APNA_BEDROCK_ENDPOINT`), e.g. a VPC endpoint.
    pub bedrock_endpoint: Option<String>,
    /// Snapshot bucket (`S3_BUCKET`); unset means snapshots on disk.
    pub s3_bucket: Option<String>,
    /// Bucket region (`S3_REGION`, default us-east-1).
    pub s3_region: String,
    /// S3-compatible endpoint (`S3_ENDPOINT`), e.g. MinIO, R2 or moto.
    pub s3_endpoint: Option<String>,
    /// Where sandboxes run (`APNA_SANDBOX`: `local`, the default, or `kube`).
    pub sandbox: SandboxBackend,
    /// Kubeconfig path (`KUBE_CONFIG_PATH`); unset means `KUBECONFIG`,
    /// `~/.kube/config` or the in-cluster service account, in that order.
    pub kube_config_path: Option<PathBuf>,
    /// Namespace for project pods (`KUBE_NAMESPACE`, default `apna`).
    pub kube_namespace: String,
    /// Sandbox image (`CONTAINER_IMAGE`; by digest in production).
    pub container_image: String,
    /// Storage class of the project volumes (`KUBE_STORAGE_CLASS`; unset = the cluster default).
    pub kube_storage_class: Option<String>,
    /// EKS cluster whose endpoint and token the driver gets from AWS
    /// (`EKS_CLUSTER_NAME`; needs the `eks` feature). Unset: the kubeconfig.
    pub eks_cluster_name: Option<String>,
    /// Ready template pods kept for new projects to adopt (`APNA_WARM_PODS`, default 0).
    pub warm_pods: u32,
    /// How the backend reaches sandboxd in a pod (`APNA_KUBE_TRANSPORT`: `proxy`, the default, or `direct`).
    pub kube_transport: KubeTransport,
    /// Wildcard preview domain (`CADDY_DOMAIN`); unset means `{id}.localhost:{PORT}`.
    pub caddy_domain: Option<String>,
    /// How often idle projects are swept (`CLEANUP_INTERVAL_MINUTES`, default 10).
    pub cleanup_interval: Duration,
    /// Idle time before hibernation (`POD_TTL_HOURS`, default 1; fractions allowed).
    pub pod_ttl: Duration,
    /// Quiet time before a preview's dev server is put to light sleep
    /// (`APNA_PREVIEW_IDLE_MINUTES`, default 5; fractions allowed).
    pub preview_idle: Duration,
    /// HS256 secret for API tokens (`APNA_JWT_SECRET`); unset means single-user mode.
    pub jwt_secret: Option<String>,
    /// Secret the preview tokens' key is derived from (`APNA_PREVIEW_SECRET`),
    /// when it is not `APNA_JWT_SECRET`: on AWS (no API secret) and for a
    /// preview gate that must not be able to mint API tokens.
    pub preview_secret: Option<String>,
    /// The OpenID Connect provider the browser UI signs people in with
    /// (authorization code + PKCE), when its tokens are what the API accepts:
    /// behind API Gateway's JWT authorizer (the SAM template sets these).
    pub oidc: Option<OidcClient>,
    /// Verify attempts before giving up (`APNA_MAX_FIX_ATTEMPTS`, default 4 as in the seed).
    pub max_fix_attempts: u32,
    /// Model calls per run (`APNA_MAX_STEPS`, default 40).
    pub max_steps: u32,
    /// Output tokens per run (`APNA_MAX_OUTPUT_TOKENS`, default 200000).
    pub max_output_tokens: u64,
    /// Dollars per run (`APNA_MAX_COST_USD`, default 5).
    pub max_cost_usd: f64,
    /// Projects per user (`APNA_MAX_PROJECTS`, default 100).
    pub max_projects_per_user: i64,
    /// Concurrent runs per user (`APNA_MAX_ACTIVE_RUNS`, default 3).
    pub max_active_runs_per_user: i64,
    /// Days a deleted project's data is kept before it is purged
    /// (`APNA_DELETED_RETENTION_DAYS`, default 30; 0 purges at the next sweep).
    pub deleted_retention_days: u32,
    /// Dollars of model use per user per UTC day (`APNA_MAX_DAILY_COST_USD`;
    /// unset means no daily cap, only the per-run budget).
    pub max_daily_cost_usd: Option<f64>,
    /// Longest prompt or chat message, in characters (`APNA_MAX_PROMPT_CHARS`, default 20000).
    pub max_prompt_chars: usize,
    /// The folder of starters (`APNA_TEMPLATES_DIR`, default: `images/preview/templates` of this checkout).
    pub templates_dir: PathBuf,
    /// Where the starters' installed dependencies are cached (`APNA_TEMPLATE_CACHE`,
    /// default `{data_dir}/template-cache`).
    pub template_cache: PathBuf,
    /// The browser UI's files (`APNA_WEB_DIR`, default: `web/` of this checkout).
    pub web_dir: PathBuf,
    /// Origins allowed by CORS (`APNA_CORS_ORIGINS`, comma-separated; empty = same origin only).
    pub cors_origins: Vec<String>,
    /// Host names the API and UI answer besides the loopback names
    /// (`APNA_PUBLIC_HOSTS`, comma-separated, each `name` or `name:port`).
    pub public_hosts: Vec<String>,
    /// Start in multi-user mode without bubblewrap (`APNA_ALLOW_UNSANDBOXED=1`).
    pub allow_unsandboxed: bool,
    /// Disk budget of one project's directory in MiB (`APNA_MAX_PROJECT_MB`, default 500).
    pub max_project_mb: u64,
    /// Warm spare sandboxes kept ready by the local driver (`APNA_WARM_SPARES`, default 1; 0: none).
    pub warm_spares: usize,
    /// Verify checks and package installs run at once by the local driver
    /// (`APNA_MAX_BUILDS`, default: the cores available).
    pub max_builds: usize,
    /// Verify runs `tsc` and a full `vite build` instead of checking through
    /// the dev server (`APNA_VERIFY_BUILD=1`; the way before #16, for comparison).
    pub verify_build: bool,
    /// The browser the check after Verify starts (`APNA_CHROMIUM`; unset:
    /// Debian's headless shell, `/usr/bin/chromium` or a Chromium on `PATH`).
    pub chromium: Option<PathBuf>,
    /// Whether the app is opened in a headless browser after Verify passes
    /// (`APNA_SMOKE_CHECK`, default on; `0` turns it off).
    pub smoke_check: bool,
    /// Whether the model looks at the browser check's desktop screenshot once
    /// at the end of a project's first run and fixes what looks wrong
    /// (`APNA_VISUAL_CHECK`, default off; `1` turns it on).
    pub visual_check: bool,
    /// Step Functions state machine ARNs by name (`generation` from
    /// `GENERATION_STATE_MACHINE_ARN`, `hibernation` from
    /// `HIBERNATION_STATE_MACHINE_ARN`, `publish` from
    /// `PUBLISH_STATE_MACHINE_ARN`, `wake` from `WAKE_STATE_MACHINE_ARN`);
    /// empty outside AWS.
    pub state_machine_arns: Vec<(String, String)>,
    /// Domain published sites are served under, `{slug}.{apps_domain}`
    /// (`APNA_APPS_DOMAIN`, default `apps.localhost`).
    pub apps_domain: String,
    /// Extra host names serving a site, host → slug (`APNA_SITE_HOSTS`,
    /// `shop.example.com=my-shop,…`): custom domains for `apna serve`.
    pub site_hosts: Vec<(String, String)>,
    /// Whether Git pushes may go to `http://` and to loopback or private
    /// addresses (`APNA_GIT_ALLOW_PRIVATE_REMOTES=1`; for tests and private
    /// networks: otherwise only `https://` to public addresses).
    pub git_allow_private_remotes: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach logs: print everything else.
        f.debug_struct("Config")
            .field("bind", &self.bind)
            .field("port", &self.port)
            .field("data_dir", &self.data_dir)
            .field("database", &redact_url(&self.database_url))
            .field(
                "anthropic_api_key",
                &self.anthropic_api_key.as_ref().map(|_| "<set>"),
            )
            .field("anthropic_model", &self.anthropic_model)
            .field("anthropic_base_url", &self.anthropic_base_url)
            .field("model_provider", &self.model_provider)
            .field("bedrock_endpoint", &self.bedrock_endpoint)
            .field("s3_bucket", &self.s3_bucket)
            .field("s3_endpoint", &self.s3_endpoint)
            .field("dynamodb_endpoint", &self.dynamodb_endpoint)
            .field("caddy_domain", &self.caddy_domain)
            .field("sandbox", &self.sandbox)
            .field("kube_namespace", &self.kube_namespace)
            .field("eks_cluster_name", &self.eks_cluster_name)
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "<set>"))
            .field(
                "preview_secret",
                &self.preview_secret.as_ref().map(|_| "<set>"),
            )
            .finish_non_exhaustive()
    }
}

/// A URL with its password replaced, for logs.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_string(),
    }
}

impl Config {
    /// Whether a model call can be made: an API key (or, on AWS, the secret
    /// holding it) for Anthropic; for Bedrock the AWS credential chain decides
    /// at call time.
    pub fn model_configured(&self) -> bool {
        match self.model_provider {
            ModelProvider::Anthropic => {
                self.anthropic_api_key.is_some() || self.anthropic_api_key_secret.is_some()
            }
            ModelProvider::Bedrock => true,
        }
    }

    /// The secret preview tokens' keys come from: `APNA_PREVIEW_SECRET`,
    /// else `APNA_JWT_SECRET`; `None` when previews are open (single-user).
    pub fn preview_key_secret(&self) -> Option<&str> {
        self.preview_secret
            .as_deref()
            .or(self.jwt_secret.as_deref())
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_vars(std::env::vars().collect())
    }

    /// Reads settings from a map (tests use this instead of mutating the process env).
    pub fn from_vars(vars: HashMap<String, String>) -> Result<Self> {
        let get = |k: &str| {
            vars.get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let data_dir = PathBuf::from(get("APNA_DATA_DIR").unwrap_or_else(|| ".apna".into()));
        let database_url = match get("DATABASE_URL") {
            Some(u) => {
                if let Some(table) = dynamodb_table(&u) {
                    check_dynamodb_table(table)?;
                } else {
                    let ok = u.starts_with("sqlite:")
                        || ((u.starts_with("postgres://") || u.starts_with("postgresql://"))
                            && url::Url::parse(&u).is_ok());
                    if !ok {
                        return Err(Error::Config {
                            var: "DATABASE_URL",
                            message: format!(
                                "{:?} is not a database URL; use postgres://user:pass@host/db, dynamodb://table or sqlite://path",
                                redact_url(&u)
                            ),
                        });
                    }
                }
                u
            }
            None => format!("sqlite://{}", data_dir.join("apna.db").display()),
        };
        let dynamodb_endpoint = get("DYNAMODB_ENDPOINT");
        if let Some(e) = &dynamodb_endpoint {
            check_http_url("DYNAMODB_ENDPOINT", e)?;
        }
        let anthropic_base_url = get("ANTHROPIC_BASE_URL")
            .unwrap_or_else(|| "https://api.anthropic.com".into())
            .trim_end_matches('/')
            .to_string();
        check_http_url("ANTHROPIC_BASE_URL", &anthropic_base_url)?;
        if get("S3_BUCKET").is_some() && !cfg!(feature = "aws") {
            return Err(Error::Config {
                var: "S3_BUCKET",
                message: "snapshots on S3 need a build with `--features aws` (cargo run --release --features aws -- serve)".into(),
            });
        }
        let model_provider = match get("APNA_MODEL_PROVIDER").as_deref() {
            None | Some("anthropic") => ModelProvider::Anthropic,
            Some("bedrock") if cfg!(feature = "bedrock") => ModelProvider::Bedrock,
            Some("bedrock") => {
                return Err(Error::Config {
                    var: "APNA_MODEL_PROVIDER",
                    message: "bedrock needs a build with `--features bedrock` (cargo run --release --features bedrock -- serve)".into(),
                })
            }
            Some(other) => {
                return Err(Error::Config {
                    var: "APNA_MODEL_PROVIDER",
                    message: format!("{other:?} is not a provider; use anthropic or bedrock"),
                })
            }
        };
        let bedrock_endpoint = get("APNA_BEDROCK_ENDPOINT");
        if let Some(e) = &bedrock_endpoint {
            check_http_url("APNA_BEDROCK_ENDPOINT", e)?;
        }
        let s3_endpoint = get("S3_ENDPOINT");
        if let Some(e) = &s3_endpoint {
            check_http_url("S3_ENDPOINT", e)?;
        }
        let sandbox = match get("APNA_SANDBOX").as_deref() {
            None | Some("local") => SandboxBackend::Local,
            Some("kube") if cfg!(feature = "kube") => SandboxBackend::Kube,
            Some("kube") => {
                return Err(Error::Config {
                    var: "APNA_SANDBOX",
                    message: "kube needs a build with `--features kube` (cargo run --release --features kube -- serve)".into(),
                })
            }
            Some(other) => {
                return Err(Error::Config {
                    var: "APNA_SANDBOX",
                    message: format!("{other:?} is not a sandbox backend; use local or kube"),
                })
            }
        };
        let kube_transport = match get("APNA_KUBE_TRANSPORT").as_deref() {
            None | Some("proxy") => KubeTransport::Proxy,
            Some("direct") => KubeTransport::Direct,
            Some(other) => {
                return Err(Error::Config {
                    var: "APNA_KUBE_TRANSPORT",
                    message: format!("{other:?} is not a transport; use proxy or direct"),
                })
            }
        };
        let eks_cluster_name = get("EKS_CLUSTER_NAME");
        if eks_cluster_name.is_some() && !cfg!(feature = "eks") {
            return Err(Error::Config {
                var: "EKS_CLUSTER_NAME",
                message: "EKS authentication needs a build with `--features eks`".into(),
            });
        }
        let kube_namespace = get("KUBE_NAMESPACE").unwrap_or_else(|| "apna".into());
        if !is_dns_label(&kube_namespace) {
            return Err(Error::Config {
                var: "KUBE_NAMESPACE",
                message: format!("{kube_namespace:?} is not a namespace name (lowercase letters, digits and '-', at most 63)"),
            });
        }
        let kube_storage_class = get("KUBE_STORAGE_CLASS");
        if let Some(c) = &kube_storage_class {
            let ok = c.len() <= 253 && c.split('.').all(is_dns_label);
            if !ok {
                return Err(Error::Config {
                    var: "KUBE_STORAGE_CLASS",
                    message: format!("{c:?} is not a storage class name"),
                });
            }
        }
        if let Some(d) = get("CADDY_DOMAIN") {
            let ok = d.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
            if !ok {
                return Err(Error::Config {
                    var: "CADDY_DOMAIN",
                    message: format!("{d:?} is not a domain name like preview.example.com"),
                });
            }
        }
        let apps_domain = get("APNA_APPS_DOMAIN")
            .map(|d| d.to_ascii_lowercase())
            .unwrap_or_else(|| "apps.localhost".into());
        if !is_domain(&apps_domain) {
            return Err(Error::Config {
                var: "APNA_APPS_DOMAIN",
                message: format!("{apps_domain:?} is not a domain name like apps.example.com"),
            });
        }
        let mut site_hosts = Vec::new();
        for pair in get("APNA_SITE_HOSTS")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            let (host, slug) = pair
                .split_once('=')
                .map(|(h, s)| (h.trim().to_ascii_lowercase(), s.trim().to_string()))
                .filter(|(h, s)| is_domain(h) && !s.is_empty())
                .ok_or_else(|| Error::Config {
                    var: "APNA_SITE_HOSTS",
                    message: format!("{pair:?} is not host=slug (e.g. shop.example.com=my-shop)"),
                })?;
            site_hosts.push((host, slug));
        }
        for h in list(&get("APNA_PUBLIC_HOSTS")) {
            let ok = !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b));
            if !ok {
                return Err(Error::Config {
                    var: "APNA_PUBLIC_HOSTS",
                    message: format!("{h:?} is not a host name like apna.example.com or apna.example.com:8443 (no scheme, no path)"),
                });
            }
        }
        Ok(Config {
            bind: parse_or(&get("APNA_BIND"), "APNA_BIND", IpAddr::from([127, 0, 0, 1]))?,
            port: parse_or(&get("PORT"), "PORT", 3000u16)?,
            database_url,
            dynamodb_endpoint,
            event_retention_days: parse_or(
                &get("APNA_EVENT_RETENTION_DAYS"),
                "APNA_EVENT_RETENTION_DAYS",
                30,
            )?,
            db_pool_size: parse_or(&get("APNA_DB_POOL_SIZE"), "APNA_DB_POOL_SIZE", 16)?,
            db_migrations: match get("APNA_DB_MIGRATIONS").as_deref() {
                None | Some("apply") => DbMigrations::Apply,
                Some("check") => DbMigrations::Check,
                Some(other) => {
                    return Err(Error::Config {
                        var: "APNA_DB_MIGRATIONS",
                        message: format!("{other:?} is neither apply nor check"),
                    })
                }
            },
            anthropic_api_key: get("ANTHROPIC_API_KEY"),
            anthropic_api_key_secret: get("ANTHROPIC_API_KEY_SECRET_ARN"),
            anthropic_model: get("ANTHROPIC_MODEL").unwrap_or_else(|| {
                match model_provider {
                    ModelProvider::Anthropic => DEFAULT_MODEL,
                    ModelProvider::Bedrock => DEFAULT_BEDROCK_MODEL,
                }
                .into()
            }),
            anthropic_base_url,
            model_provider,
            bedrock_endpoint,
            s3_bucket: get("S3_BUCKET"),
            s3_region: get("S3_REGION").unwrap_or_else(|| "us-east-1".into()),
            s3_endpoint,
            sandbox,
            kube_config_path: get("KUBE_CONFIG_PATH").map(PathBuf::from),
            kube_namespace,
            container_image: get("CONTAINER_IMAGE")
                .unwrap_or_else(|| "ghcr.io/apna-dev/preview:latest".into()),
            kube_storage_class,
            eks_cluster_name,
            warm_pods: parse_or(&get("APNA_WARM_PODS"), "APNA_WARM_PODS", 0)?,
            kube_transport,
            caddy_domain: get("CADDY_DOMAIN"),
            cleanup_interval: Duration::from_secs_f64(
                positive(
                    &get("CLEANUP_INTERVAL_MINUTES"),
                    "CLEANUP_INTERVAL_MINUTES",
                    10.0,
                )? * 60.0,
            ),
            pod_ttl: Duration::from_secs_f64(
                positive(&get("POD_TTL_HOURS"), "POD_TTL_HOURS", 1.0)? * 3600.0,
            ),
            preview_idle: Duration::from_secs_f64(
                positive(
                    &get("APNA_PREVIEW_IDLE_MINUTES"),
                    "APNA_PREVIEW_IDLE_MINUTES",
                    5.0,
                )? * 60.0,
            ),
            jwt_secret: get("APNA_JWT_SECRET"),
            preview_secret: get("APNA_PREVIEW_SECRET"),
            oidc: match (get("APNA_OIDC_ISSUER"), get("APNA_OIDC_CLIENT_ID")) {
                (None, None) => None,
                (Some(issuer), Some(client_id)) => {
                    check_http_url("APNA_OIDC_ISSUER", &issuer)?;
                    Some(OidcClient {
                        issuer: issuer.trim_end_matches('/').to_string(),
                        client_id,
                        scopes: get("APNA_OIDC_SCOPES")
                            .unwrap_or_else(|| "openid email profile".into()),
                    })
                }
                (Some(_), None) => {
                    return Err(Error::Config {
                        var: "APNA_OIDC_CLIENT_ID",
                        message: "required with APNA_OIDC_ISSUER".into(),
                    })
                }
                (None, Some(_)) => {
                    return Err(Error::Config {
                        var: "APNA_OIDC_ISSUER",
                        message: "required with APNA_OIDC_CLIENT_ID".into(),
                    })
                }
            },
            max_fix_attempts: parse_or(&get("APNA_MAX_FIX_ATTEMPTS"), "APNA_MAX_FIX_ATTEMPTS", 4)?,
            max_steps: parse_or(&get("APNA_MAX_STEPS"), "APNA_MAX_STEPS", 40)?,
            max_output_tokens: parse_or(
                &get("APNA_MAX_OUTPUT_TOKENS"),
                "APNA_MAX_OUTPUT_TOKENS",
                200_000,
            )?,
            max_cost_usd: positive(&get("APNA_MAX_COST_USD"), "APNA_MAX_COST_USD", 5.0)?,
            max_projects_per_user: parse_or(&get("APNA_MAX_PROJECTS"), "APNA_MAX_PROJECTS", 100)?,
            max_active_runs_per_user: parse_or(
                &get("APNA_MAX_ACTIVE_RUNS"),
                "APNA_MAX_ACTIVE_RUNS",
                3,
            )?,
            deleted_retention_days: parse_or(
                &get("APNA_DELETED_RETENTION_DAYS"),
                "APNA_DELETED_RETENTION_DAYS",
                30,
            )?,
            max_daily_cost_usd: match get("APNA_MAX_DAILY_COST_USD") {
                None => None,
                v => Some(positive(&v, "APNA_MAX_DAILY_COST_USD", 0.0)?),
            },
            max_prompt_chars: parse_or(
                &get("APNA_MAX_PROMPT_CHARS"),
                "APNA_MAX_PROMPT_CHARS",
                20_000,
            )?,
            chromium: get("APNA_CHROMIUM").map(PathBuf::from),
            smoke_check: flag(&get("APNA_SMOKE_CHECK"), "APNA_SMOKE_CHECK", true)?,
            visual_check: flag(&get("APNA_VISUAL_CHECK"), "APNA_VISUAL_CHECK", false)?,
            state_machine_arns: [
                ("generation", "GENERATION_STATE_MACHINE_ARN"),
                ("hibernation", "HIBERNATION_STATE_MACHINE_ARN"),
                ("publish", "PUBLISH_STATE_MACHINE_ARN"),
                ("wake", "WAKE_STATE_MACHINE_ARN"),
            ]
            .into_iter()
            .filter_map(|(name, var)| get(var).map(|arn| (name.to_string(), arn)))
            .collect(),
            cors_origins: list(&get("APNA_CORS_ORIGINS")),
            public_hosts: list(&get("APNA_PUBLIC_HOSTS"))
                .into_iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            allow_unsandboxed: match get("APNA_ALLOW_UNSANDBOXED").as_deref() {
                None | Some("0") => false,
                Some("1") => true,
                Some(other) => {
                    return Err(Error::Config {
                        var: "APNA_ALLOW_UNSANDBOXED",
                        message: format!("{other:?} is not 0 or 1"),
                    })
                }
            },
            max_project_mb: match parse_or(
                &get("APNA_MAX_PROJECT_MB"),
                "APNA_MAX_PROJECT_MB",
                500u64,
            )? {
                0 => {
                    return Err(Error::Config {
                        var: "APNA_MAX_PROJECT_MB",
                        message: "must be at least 1".into(),
                    })
                }
                mb => mb,
            },
            warm_spares: match parse_or(&get("APNA_WARM_SPARES"), "APNA_WARM_SPARES", 1usize)? {
                n if n > MAX_WARM_SPARES => {
                    return Err(Error::Config {
                        var: "APNA_WARM_SPARES",
                        message: format!(
                        "{n} is more than {MAX_WARM_SPARES} (each is an idle dev server, ~150 MB)"
                    ),
                    })
                }
                n => n,
            },
            max_builds: match parse_or(
                &get("APNA_MAX_BUILDS"),
                "APNA_MAX_BUILDS",
                std::thread::available_parallelism().map_or(1, |n| n.get()),
            )? {
                0 => {
                    return Err(Error::Config {
                        var: "APNA_MAX_BUILDS",
                        message: "must be at least 1".into(),
                    })
                }
                n => n,
            },
            verify_build: flag(&get("APNA_VERIFY_BUILD"), "APNA_VERIFY_BUILD", false)?,
            templates_dir: get("APNA_TEMPLATES_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(concat!(
                        env!("CARGO_MANIFEST_DIR"),
                        "/../images/preview/templates"
                    ))
                }),
            template_cache: get("APNA_TEMPLATE_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| data_dir.join("template-cache")),
            apps_domain,
            site_hosts,
            git_allow_private_remotes: parse_or(
                &get("APNA_GIT_ALLOW_PRIVATE_REMOTES")
                    .map(|v| (v == "1" || v == "true").to_string()),
                "APNA_GIT_ALLOW_PRIVATE_REMOTES",
                false,
            )?,
            web_dir: get("APNA_WEB_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../web"))),
            data_dir,
        })
    }

    /// The public URL of a site published under `slug`: plain HTTP with the
    /// port on a `localhost` domain (`apna serve`), HTTPS otherwise (CloudFront).
    pub fn site_url(&self, slug: &str) -> String {
        if self.apps_domain == "localhost" || self.apps_domain.ends_with(".localhost") {
            format!("http://{slug}.{}:{}/", self.apps_domain, self.port)
        } else {
            format!("https://{slug}.{}/", self.apps_domain)
        }
    }

    /// The public URL of a project's preview.
    pub fn preview_url(&self, project_id: &str) -> String {
        match &self.caddy_domain {
            Some(d) => format!("https://{project_id}.{d}/"),
            None => format!("http://{project_id}.localhost:{}/", self.port),
        }
    }
}

/// The table of a `dynamodb://<table>` URL.
pub fn dynamodb_table(url: &str) -> Option<&str> {
    url.strip_prefix("dynamodb://")
}

/// A DynamoDB table name (3–255 of `A-Za-z0-9_.-`), in a build that has DynamoDB.
fn check_dynamodb_table(table: &str) -> Result<()> {
    if !cfg!(feature = "dynamodb") {
        return Err(Error::Config {
            var: "DATABASE_URL",
            message: "DynamoDB needs a build with `--features dynamodb` (cargo run --release --features dynamodb -- serve)".into(),
        });
    }
    let ok = (3..=255).contains(&table.len())
        && table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::Config {
            var: "DATABASE_URL",
            message: format!(
                "{table:?} is not a DynamoDB table name (3-255 letters, digits, _ - .)"
            ),
        })
    }
}

/// An RFC 1123 label: what Kubernetes accepts as a namespace or a name segment.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Whether `d` is a lower-case DNS name of at least two labels.
fn is_domain(d: &str) -> bool {
    d.len() <= 253 && d.split('.').count() >= 2 && d.split('.').all(is_dns_label)
}

/// A comma-separated list, trimmed, without empty items.
fn list(v: &Option<String>) -> Vec<String> {
    v.as_deref()
        .map(|s| {
            s.split(',')
                .map(|o| o.trim().to_string())
                .filter(|o| !o.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

fn check_http_url(var: &'static str, value: &str) -> Result<()> {
    match url::Url::parse(value) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(()),
        _ => Err(Error::Config {
            var,
            message: format!("{value:?} is not an http(s) URL"),
        }),
    }
}

/// More warm spares than this is a typo, not a plan.
const MAX_WARM_SPARES: usize = 64;

fn parse_or<T: std::str::FromStr>(v: &Option<String>, var: &'static str, default: T) -> Result<T> {
    match v {
        None => Ok(default),
        Some(s) => s.parse().map_err(|_| Error::Config {
            var,
            message: format!("{s:?} is not a valid value"),
        }),
    }
}

/// `1`/`true`/`on`/`yes` or `0`/`false`/`off`/`no`.
fn flag(v: &Option<String>, var: &'static str, default: bool) -> Result<bool> {
    match v.as_deref().map(|s| s.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(s) => match s.as_str() {
            "1" | "true" | "on" | "yes" => Ok(true),
            "0" | "false" | "off" | "no" => Ok(false),
            _ => Err(Error::Config {
                var,
                message: format!("{s:?} is not on or off (use 1 or 0)"),
            }),
        },
    }
}

fn positive(v: &Option<String>, var: &'static str, default: f64) -> Result<f64> {
    let x: f64 = parse_or(v, var, default)?;
    if x.is_finite() && x > 0.0 {
        Ok(x)
    } else {
        Err(Error::Config {
            var,
            message: format!("must be a positive number, got {x}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn warm_spares_and_build_limit() {
        let c = Config::from_vars(HashMap::new()).unwrap();
        assert_eq!(c.warm_spares, 1);
        assert_eq!(
            c.max_builds,
            std::thread::available_parallelism().unwrap().get()
        );
        let c = Config::from_vars(vars(&[("APNA_WARM_SPARES", "4"), ("APNA_MAX_BUILDS", "3")]))
            .unwrap();
        assert_eq!((c.warm_spares, c.max_builds), (4, 3));
        assert!(!c.verify_build);
        assert!(
            Config::from_vars(vars(&[("APNA_VERIFY_BUILD", "1")]))
                .unwrap()
                .verify_build
        );
        assert_eq!(
            Config::from_vars(vars(&[("APNA_WARM_SPARES", "0")]))
                .unwrap()
                .warm_spares,
            0
        );
        for (var, value) in [
            ("APNA_WARM_SPARES", "-1"),
            ("APNA_WARM_SPARES", "many"),
            ("APNA_WARM_SPARES", "65"),
            ("APNA_MAX_BUILDS", "0"),
            ("APNA_MAX_BUILDS", "two"),
            ("APNA_VERIFY_BUILD", "maybe"),
        ] {
            let e = Config::from_vars(vars(&[(var, value)])).unwrap_err();
            assert!(e.to_string().contains(var), "{var}={value}: {e}");
        }
    }

    #[test]
    fn defaults_need_nothing() {
        let c = Config::from_vars(HashMap::new()).unwrap();
        assert_eq!(c.port, 3000);
        assert_eq!(c.anthropic_model, DEFAULT_MODEL);
        assert!(c.database_url.starts_with("sqlite://"));
        assert_eq!(c.cleanup_interval, Duration::from_secs(600));
        assert_eq!(c.pod_ttl, Duration::from_secs(3600));
        assert_eq!(c.preview_idle, Duration::from_secs(300));
        assert_eq!(c.preview_url("abc"), "http://abc.localhost:3000/");
        assert_eq!(c.max_daily_cost_usd, None);
        assert_eq!(c.model_provider, ModelProvider::Anthropic);
        assert!(!c.model_configured());
        // Bedrock: its own default model id, no API key needed; only in builds with the feature.
        let bedrock = Config::from_vars(vars(&[("APNA_MODEL_PROVIDER", "bedrock")]));
        assert_eq!(bedrock.is_ok(), cfg!(feature = "bedrock"));
        match bedrock {
            Ok(b) => {
                assert_eq!(b.anthropic_model, DEFAULT_BEDROCK_MODEL);
                assert!(b.model_configured());
            }
            Err(e) => assert!(e.to_string().contains("--features bedrock"), "{e}"),
        }
    }

    #[test]
    fn the_visual_check_is_off_unless_asked_for() {
        let c = Config::from_vars(HashMap::new()).unwrap();
        assert!(!c.visual_check);
        assert!(c.smoke_check);
        for (v, on) in [("1", true), ("true", true), ("0", false), ("false", false)] {
            let c = Config::from_vars(vars(&[("APNA_VISUAL_CHECK", v)])).unwrap();
            assert_eq!(c.visual_check, on, "APNA_VISUAL_CHECK={v}");
        }
        let e = Config::from_vars(vars(&[("APNA_VISUAL_CHECK", "maybe")])).unwrap_err();
        assert!(e.to_string().contains("APNA_VISUAL_CHECK"), "{e}");
    }

    #[test]
    fn dynamodb_urls_name_a_table() {
        let c = Config::from_vars(vars(&[("DATABASE_URL", "dynamodb://apna-prod")]));
        assert_eq!(c.is_ok(), cfg!(feature = "dynamodb"));
        match c {
            Ok(c) => {
                assert_eq!(dynamodb_table(&c.database_url), Some("apna-prod"));
                assert_eq!(c.dynamodb_endpoint, None);
            }
            Err(e) => assert!(e.to_string().contains("--features dynamodb"), "{e}"),
        }
        for bad in [
            "dynamodb://",
            "dynamodb://ab",
            "dynamodb://a/b",
            "dynamodb://sp ace",
        ] {
            let e = Config::from_vars(vars(&[("DATABASE_URL", bad)])).unwrap_err();
            assert!(e.to_string().starts_with("DATABASE_URL:"), "{bad}: {e}");
        }
        let e = Config::from_vars(vars(&[("DYNAMODB_ENDPOINT", "localhost:8000")])).unwrap_err();
        assert!(e.to_string().starts_with("DYNAMODB_ENDPOINT:"), "{e}");
        let c = Config::from_vars(vars(&[("DYNAMODB_ENDPOINT", "http://127.0.0.1:8000")])).unwrap();
        assert_eq!(
            c.dynamodb_endpoint.as_deref(),
            Some("http://127.0.0.1:8000")
        );
    }

    #[test]
    fn preview_idle_is_minutes_and_fractions_are_allowed() {
        let idle = |v: &str| {
            Config::from_vars(vars(&[("APNA_PREVIEW_IDLE_MINUTES", v)])).map(|c| c.preview_idle)
        };
        assert_eq!(idle("5").unwrap(), Duration::from_secs(300));
        assert_eq!(idle("0.5").unwrap(), Duration::from_secs(30));
        assert_eq!(idle("0.05").unwrap(), Duration::from_secs(3));
        for bad in ["0", "-1", "five", "NaN", "inf"] {
            let e = idle(bad).unwrap_err();
            assert!(
                e.to_string().starts_with("APNA_PREVIEW_IDLE_MINUTES:"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn event_retention_is_days_and_zero_keeps_events() {
        let days = |v: &str| {
            Config::from_vars(vars(&[("APNA_EVENT_RETENTION_DAYS", v)]))
                .map(|c| c.event_retention_days)
        };
        assert_eq!(
            Config::from_vars(HashMap::new())
                .unwrap()
                .event_retention_days,
            30
        );
        assert_eq!(days("7").unwrap(), 7);
        assert_eq!(days("0").unwrap(), 0);
        for bad in ["-1", "1.5", "a week"] {
            let e = days(bad).unwrap_err();
            assert!(
                e.to_string().starts_with("APNA_EVENT_RETENTION_DAYS:"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn kube_settings() {
        let c = Config::from_vars(HashMap::new()).unwrap();
        assert_eq!(c.sandbox, SandboxBackend::Local);
        assert_eq!(c.kube_namespace, "apna");
        assert_eq!(c.kube_storage_class, None);
        assert_eq!(c.eks_cluster_name, None);
        assert_eq!(c.warm_pods, 0);
        assert_eq!(c.kube_transport, KubeTransport::Proxy);

        // kube only in builds with the feature, with a message saying how.
        let kube = Config::from_vars(vars(&[
            ("APNA_SANDBOX", "kube"),
            ("KUBE_NAMESPACE", "previews"),
            ("KUBE_STORAGE_CLASS", "gp3.encrypted"),
            ("APNA_WARM_PODS", "2"),
            ("APNA_KUBE_TRANSPORT", "direct"),
            ("CONTAINER_IMAGE", "registry.example/preview@sha256:abc"),
        ]));
        assert_eq!(kube.is_ok(), cfg!(feature = "kube"));
        match kube {
            Ok(k) => {
                assert_eq!(k.sandbox, SandboxBackend::Kube);
                assert_eq!(k.kube_namespace, "previews");
                assert_eq!(k.kube_storage_class.as_deref(), Some("gp3.encrypted"));
                assert_eq!(k.warm_pods, 2);
                assert_eq!(k.kube_transport, KubeTransport::Direct);
                assert_eq!(k.container_image, "registry.example/preview@sha256:abc");
            }
            Err(e) => assert!(e.to_string().contains("--features kube"), "{e}"),
        }
        let eks = Config::from_vars(vars(&[("EKS_CLUSTER_NAME", "apna")]));
        assert_eq!(eks.is_ok(), cfg!(feature = "eks"));
        if let Ok(c) = eks {
            assert_eq!(c.eks_cluster_name.as_deref(), Some("apna"));
        }

        for (var, value) in [
            ("APNA_SANDBOX", "docker"),
            ("APNA_KUBE_TRANSPORT", "ssh"),
            ("APNA_WARM_PODS", "-1"),
            ("APNA_WARM_PODS", "two"),
            ("KUBE_NAMESPACE", "Apna"),
            ("KUBE_NAMESPACE", "-apna"),
            ("KUBE_NAMESPACE", "a.b"),
            ("KUBE_STORAGE_CLASS", "gp3 fast"),
        ] {
            match Config::from_vars(vars(&[(var, value)])) {
                Err(Error::Config { var: v, message }) => {
                    assert_eq!(v, var, "{message}");
                    assert!(!message.is_empty());
                }
                other => panic!("{var}={value}: {:?}", other.map(|_| ())),
            }
        }
    }

    #[test]
    fn debug_hides_secrets() {
        let c = Config::from_vars(vars(&[
            ("ANTHROPIC_API_KEY", "sk-ant-secret"),
            ("DATABASE_URL", "postgres://u:hunter2@h/db"),
        ]))
        .unwrap();
        let s = format!("{c:?}");
        assert!(
            !s.contains("sk-ant-secret") && !s.contains("hunter2"),
            "{s}"
        );
    }
}
