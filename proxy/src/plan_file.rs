//! Plan file source: a YAML or JSON file holding a [`Plan`], checked every second and applied when
//! its contents change. A file that does not parse or validate is logged and counted; the plan in
//! force stays.

use std::{path::PathBuf, sync::Arc, time::Duration};

use crate::state::Shared;
use loadshift_core::plan::Plan;

/// Why a plan file was not applied.
#[derive(Debug, thiserror::Error)]
pub enum PlanFileError {
    #[error("reading plan file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("plan file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("plan file {path}: {source}")]
    Invalid {
        path: PathBuf,
        source: loadshift_core::plan::PlanError,
    },
}

/// Parses plan text (YAML; JSON is valid YAML).
pub fn parse(text: &str) -> Result<Plan, String> {
    serde_yaml_ng::from_str(text).map_err(|e| e.to_string())
}

/// Reads, parses and applies the file once.
pub fn load(shared: &Shared, path: &std::path::Path) -> Result<u64, PlanFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| PlanFileError::Read {
        path: path.into(),
        source,
    })?;
    let plan = parse(&text).map_err(|message| PlanFileError::Parse {
        path: path.into(),
        message,
    })?;
    let version = plan.version;
    shared
        .apply_plan(plan)
        .map_err(|source| PlanFileError::Invalid {
            path: path.into(),
            source,
        })?;
    Ok(version)
}

/// `loadshift proxy --check`: the config's `plan_file`, when it names one, read, parsed and
/// validated against the config's services and endpoints exactly as the running proxy would
/// (unknown fields, hosts or endpoints, negative or overflowing weights refused). Returns the
/// plan's version, `None` without a plan file. An empty file is accepted: the running proxy
/// waits for content then.
pub fn check(config: &crate::config::ProxyConfig) -> Result<Option<u64>, PlanFileError> {
    let Some(path) = &config.plan_file else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path).map_err(|source| PlanFileError::Read {
        path: path.clone(),
        source,
    })?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let limits = crate::admission::AdmissionLimits {
        max_connections: 1,
        max_connections_per_source: 0,
        max_in_flight: 0,
        max_memory_bytes: 0,
        retry_after_s: 1,
    };
    load(&Shared::new(config.clone(), limits), path).map(Some)
}

/// Applies the file now and whenever its contents change.
pub async fn watch(shared: Arc<Shared>, path: PathBuf) {
    // What was last seen, so each change is logged once: `None` before the first look, then the
    // file's text, or an empty string while it is missing, unreadable or empty.
    let mut last: Option<String> = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let text = match tokio::fs::read_to_string(&path).await {
            Ok(t) => t,
            Err(e) => {
                if last.as_deref() != Some("") {
                    tracing::warn!(path = %path.display(), error = %e, "plan file unreadable; keeping the plan in force");
                    last = Some(String::new());
                }
                continue;
            }
        };
        if last.as_deref() == Some(text.as_str()) {
            continue;
        }
        // An empty file is one being written, or none yet: never an empty plan.
        if text.trim().is_empty() {
            if last.as_deref() != Some("") {
                tracing::warn!(path = %path.display(), "plan file is empty; keeping the plan in force");
            }
            last = Some(String::new());
            continue;
        }
        match parse(&text)
            .map_err(|message| PlanFileError::Parse {
                path: path.clone(),
                message,
            })
            .and_then(|plan| {
                let v = plan.version;
                shared
                    .apply_plan(plan)
                    .map(|()| v)
                    .map_err(|source| PlanFileError::Invalid {
                        path: path.clone(),
                        source,
                    })
            }) {
            Ok(v) => tracing::info!(version = v, path = %path.display(), "plan file applied"),
            Err(e) => tracing::error!(error = %e, "plan file refused; keeping the plan in force"),
        }
        last = Some(text);
    }
}
