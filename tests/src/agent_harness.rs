//! Everything an agent step needs, wired for tests: a SQLite store in a temp
//! dir, a [`MemorySandbox`] with the template, an [`AnthropicClient`] pointed at
//! a [`MockAnthropic`] with short retry delays, and a project with a run.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use apna::agent::bedrock::{BedrockClient, BedrockOptions};
use apna::agent::{
    run_step, AnthropicClient, AnthropicOptions, Model, RetryPolicy, StepDeps, StepOutcome,
};
use apna::config::Config;
use apna::domain::{ContentBlock, NewMessage, Project, Role, Run, User};
use apna::store::{SqliteStore, Store};
use apna::testing::memory::MemorySandbox;

use crate::mock_anthropic::{MockAnthropic, Script};

/// The API key the harness sends (the mock only checks that one is present).
pub const TEST_API_KEY: &str = "sk-ant-test";

/// A project, its run, and the store, sandbox and model behind them.
pub struct AgentHarness {
    /// The SQLite store.
    pub store: Arc<dyn Store>,
    /// The project's sandbox.
    pub sandbox: MemorySandbox,
    /// The blob store (a temp dir) holding the project's images.
    pub blobs: Arc<dyn apna::blob::BlobStore>,
    /// The mock API.
    pub mock: MockAnthropic,
    /// The client used for steps (Anthropic, or Bedrock via [`Self::with_bedrock`]).
    pub model: Arc<dyn Model>,
    /// Settings (budgets come from `extra_env`).
    pub config: Config,
    /// The project.
    pub project: Project,
    /// The current run.
    pub run: Run,
    _dir: tempfile::TempDir,
}

/// Client options for tests: retries fast, times out in `timeout`.
pub fn test_options(base_url: &str, stream: bool, timeout: Duration) -> AnthropicOptions {
    let mut o = AnthropicOptions::new(base_url, Some(TEST_API_KEY.into()), "claude-sonnet-4-5");
    o.stream = stream;
    o.request_timeout = timeout;
    o.retry = RetryPolicy {
        max_retries: 4,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(50),
        max_retry_after: Duration::from_secs(5),
    };
    o
}

impl AgentHarness {
    /// A harness answering from `script`, streaming, with default budgets.
    pub async fn new(script: Script) -> anyhow::Result<Self> {
        Self::with(script, true, &[]).await
    }

    /// A harness with streaming on or off and extra environment settings (e.g. budgets).
    pub async fn with(
        script: Script,
        stream: bool,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mock = MockAnthropic::start(script).await?;
        let model = Arc::new(AnthropicClient::new(test_options(
            &mock.url(),
            stream,
            Duration::from_secs(10),
        ))?);
        Self::with_model(mock, model, extra_env).await
    }

    /// A harness whose model is Claude on Bedrock, served by the mock's Bedrock routes.
    pub async fn with_bedrock(script: Script, stream: bool) -> anyhow::Result<Self> {
        let mock = MockAnthropic::start(script).await?;
        // SigV4 needs credentials; the mock only checks that requests are
        // signed. Once, before any client of this process reads them.
        static CREDENTIALS: std::sync::Once = std::sync::Once::new();
        CREDENTIALS.call_once(|| {
            for (k, v) in [
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
            ] {
                if std::env::var_os(k).is_none() {
                    std::env::set_var(k, v);
                }
            }
        });
        let model = Arc::new(
            BedrockClient::new(BedrockOptions {
                model: apna::config::DEFAULT_BEDROCK_MODEL.into(),
                stream,
                endpoint: Some(mock.url()),
                region: Some("us-east-1".into()),
                retry: test_options(&mock.url(), stream, Duration::from_secs(10)).retry,
            })
            .await,
        );
        Self::with_model(mock, model, &[]).await
    }

    async fn with_model(
        mock: MockAnthropic,
        model: Arc<dyn Model>,
        extra_env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("apna.db").display());
        let store: Arc<dyn Store> = Arc::new(SqliteStore::connect(&url).await?);
        let mut vars: HashMap<String, String> = HashMap::from([
            ("ANTHROPIC_BASE_URL".to_string(), mock.url()),
            ("ANTHROPIC_API_KEY".to_string(), TEST_API_KEY.to_string()),
            (
                "APNA_DATA_DIR".to_string(),
                dir.path().display().to_string(),
            ),
        ]);
        for (k, v) in extra_env {
            vars.insert(k.to_string(), v.to_string());
        }
        let config = Config::from_vars(vars)?;
        store
            .upsert_user(&User {
                id: "local".into(),
                email: None,
                created_at: apna::domain::now(),
            })
            .await?;
        let project = Project::new("local", "a todo app", "vite-react");
        store.create_project(&project).await?;
        let sandbox = MemorySandbox::with_template(&project.id);
        let run = Run::new(&project.id, "local", "");
        store.create_run(&run).await?;
        Ok(AgentHarness {
            store,
            sandbox,
            blobs: Arc::new(apna::blob::FsBlobStore::new(dir.path().join("blobs")).await?),
            mock,
            model,
            config,
            project,
            run,
            _dir: dir,
        })
    }

    /// Step dependencies for this harness.
    pub fn deps(&self) -> StepDeps<'_> {
        StepDeps {
            store: self.store.clone(),
            model: self.model.clone(),
            sandbox: Arc::new(self.sandbox.clone()),
            blobs: self.blobs.clone(),
            config: &self.config,
            deltas: None,
            template: self.project.template.clone(),
        }
    }

    /// Stores the person's message for the current run (as the API does on create/chat).
    pub async fn say(&self, text: &str) -> anyhow::Result<()> {
        self.store
            .append_messages(
                &self.project.id,
                &[NewMessage {
                    run_id: Some(self.run.id.clone()),
                    role: Role::User,
                    content: vec![ContentBlock::Text { text: text.into() }],
                    tool_calls: vec![],
                    file_diffs: vec![],
                }],
            )
            .await?;
        Ok(())
    }

    /// Starts a new run of the same project (a follow-up chat message).
    pub async fn new_run(&mut self, text: &str) -> anyhow::Result<()> {
        self.run = Run::new(&self.project.id, "local", text);
        self.store.create_run(&self.run).await?;
        self.say(text).await
    }

    /// Switches to a fresh project (new sandbox, new run) on the same store and mock.
    pub async fn new_project(&mut self, prompt: &str) -> anyhow::Result<()> {
        self.project = Project::new("local", prompt, "vite-react");
        self.store.create_project(&self.project).await?;
        self.sandbox = MemorySandbox::with_template(&self.project.id);
        self.new_run(prompt).await
    }

    /// Runs steps from `first` until the model is done or the loop must stop (at most `max`).
    pub async fn run_until_done(&self, first: u32, max: u32) -> anyhow::Result<Vec<StepOutcome>> {
        let deps = self.deps();
        let mut out = Vec::new();
        for step in first..first + max {
            let o = run_step(&deps, &self.run.id, step, None).await?;
            let more = o.should_continue();
            out.push(o);
            if !more {
                break;
            }
        }
        Ok(out)
    }
}

/// The scripted conversation `tests/fixtures/conversations/{name}.json`.
pub fn fixture(name: &str) -> anyhow::Result<Script> {
    Script::from_file(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/conversations")
            .join(format!("{name}.json")),
    )
}
