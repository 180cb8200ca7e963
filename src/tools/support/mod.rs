//! Helpers the tools share: child processes that die with their owner ([`process`]), a keep-alive
//! HTTP/1.1 client pool ([`pool`]) and atomic file writes.

pub mod pool;
pub mod process;

use std::path::Path;

pub use pool::Pool;

/// Writes `content` to a temporary sibling and renames it over `path`, so readers never see a
/// partial file.
pub fn write_atomically(path: &Path, content: &str) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, content)?;
    std::fs::rename(&tmp, path)
}
