//! The flags (and environment variables) every search command takes to find its index.

use std::path::PathBuf;

use clap::Args;

use super::choice::ChoiceParser;
use crate::search::{BackendKind, BackendOptions, DEFAULT_ES_INDEX, DEFAULT_INDEX_PATH};

/// Where the index lives: `--backend`, `--index-path`, `--es-*`; read into
/// [`BackendOptions`].
#[derive(Debug, Clone, Args)]
pub struct BackendArgs {
    /// Search backend: an embedded index on disk (no server), or an Elasticsearch 8 cluster.
    #[arg(long, value_parser = ChoiceParser::<BackendKind>::new(), default_value_t = BackendKind::Embedded)]
    pub backend: BackendKind,

    /// Folder of the embedded index.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_INDEX_PATH)]
    pub index_path: PathBuf,

    /// Elasticsearch URL, e.g. http://localhost:9200 (required with `--backend elasticsearch`).
    #[arg(long, value_name = "URL", env = "ES_URL")]
    pub es_url: Option<String>,

    /// Elasticsearch index name.
    #[arg(long, value_name = "NAME", env = "ES_INDEX", default_value = DEFAULT_ES_INDEX)]
    pub es_index: String,

    /// Elasticsearch user for basic authentication (with ES_PASSWORD).
    #[arg(long, value_name = "USER", env = "ES_USERNAME")]
    pub es_username: Option<String>,

    /// Elasticsearch password for basic authentication; prefer the environment variable.
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "ES_PASSWORD",
        hide_env_values = true
    )]
    pub es_password: Option<String>,

    /// Elasticsearch API key (the base64 `encoded` form); prefer the environment variable.
    #[arg(long, value_name = "KEY", env = "ES_API_KEY", hide_env_values = true)]
    pub es_api_key: Option<String>,
}

impl BackendArgs {
    /// The library's options for these flags.
    pub fn options(&self) -> BackendOptions {
        BackendOptions {
            backend: self.backend,
            index_path: self.index_path.clone(),
            es_url: self.es_url.clone(),
            es_index: self.es_index.clone(),
            es_username: self.es_username.clone(),
            es_password: self.es_password.clone(),
            es_api_key: self.es_api_key.clone(),
        }
    }
}
