//! The builder's Datadog settings (feature `datadog`, on by default): where
//! uploads go, with which tags. Each method sets one field of
//! [`DatadogSettings`], which wins over its `DD_*` variable.

use std::time::Duration;

use super::ProfilerBuilder;
#[cfg(doc)]
use super::ProfilerHandle;
use crate::export::datadog::settings::{clean_tags, ApiKey, DatadogSettings};

/// Builder methods that each set one field of [`DatadogSettings`].
macro_rules! datadog_setters {
    ($($(#[$doc:meta])* fn $method:ident($arg:ident: $ty:ty) => $field:ident = $value:expr;)*) => {
        $(
            $(#[$doc])*
            pub fn $method(mut self, $arg: $ty) -> Self {
                self.datadog.$field = Some($value);
                self
            }
        )*
    };
}

impl ProfilerBuilder {
    /// Whether to upload to Datadog: `true` uploads (to `localhost:8126`
    /// when no agent is configured), `false` writes local files. Unset, the
    /// profiler uploads when an agent is configured (`DD_TRACE_AGENT_URL`,
    /// `DD_AGENT_HOST`, `DD_TRACE_AGENT_PORT` or their methods), agentless
    /// mode is on, the agent's socket `/var/run/datadog/apm.socket` exists,
    /// or an agent answers on `localhost:8126` at start; otherwise it writes
    /// local files. [`output_pprof`](Self::output_pprof) always means files.
    pub fn upload(mut self, upload: bool) -> Self {
        self.upload = Some(upload);
        self
    }

    datadog_setters! {
        /// The `service` tag (`DD_SERVICE`; default: the executable's name).
        fn service(service: impl Into<String>) => service = service.into();
        /// The `env` tag (`DD_ENV`).
        fn env(env: impl Into<String>) => env = env.into();
        /// The `version` tag (`DD_VERSION`).
        fn version(version: impl Into<String>) => version = version.into();
    }

    /// Tags for every profile, each `key:value` (`DD_TAGS`). Malformed ones
    /// are logged and left out.
    pub fn tags<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, tags: I) -> Self {
        let tags: Vec<S> = tags.into_iter().collect();
        self.datadog.tags = Some(clean_tags("tags", tags.iter().map(AsRef::as_ref)));
        self
    }

    /// More tags, for profiles only (`DD_PROFILING_TAGS`).
    pub fn profiling_tags<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, tags: I) -> Self {
        let tags: Vec<S> = tags.into_iter().collect();
        self.datadog.profiling_tags = Some(clean_tags("profiling_tags", tags.iter().map(AsRef::as_ref)));
        self
    }

    datadog_setters! {
        /// The agent's URL: `http://host:port`, `https://…` or
        /// `unix:///path/to/socket` (`DD_TRACE_AGENT_URL`). Checked at start.
        fn agent_url(url: impl Into<String>) => agent_url = url.into();
        /// The agent's host (`DD_AGENT_HOST`, default `localhost`).
        fn agent_host(host: impl Into<String>) => agent_host = host.into();
        /// The agent's port (`DD_TRACE_AGENT_PORT`, default 8126).
        fn agent_port(port: u16) => agent_port = port;
        /// Uploads straight to Datadog's intake, without an agent
        /// (`DD_PROFILING_AGENTLESS`); needs an API key.
        fn agentless(agentless: bool) => agentless = agentless;
        /// Whether uploads to Datadog carry lockprof's `lock-caused-wait` sample
        /// type and its labels (`DD_PROFILING_LOCK_UPLOAD_CAUSED_WAIT`; default
        /// false: uploads have exactly the four sample types of Datadog's lock
        /// profile). Local files always carry them.
        fn upload_caused_wait(upload: bool) => upload_caused_wait = upload;
        /// The API key for agentless uploads (`DD_API_KEY`). Never logged.
        fn api_key(key: impl Into<String>) => api_key = ApiKey::new(key);
        /// The Datadog site for agentless uploads (`DD_SITE`, default
        /// `datadoghq.com`).
        fn site(site: impl Into<String>) => site = site.into();
        /// Timeout of one upload request, and the longest [`ProfilerHandle::stop`]
        /// waits for the last upload: 1 ms to an hour
        /// (`DD_PROFILING_API_TIMEOUT_MS`, default 10 s).
        fn api_timeout(timeout: Duration) => api_timeout = timeout;
    }

    /// The Datadog settings as they stand.
    pub fn datadog_settings(&self) -> &DatadogSettings {
        &self.datadog
    }
}
