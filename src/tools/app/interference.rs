//! The app's interference multiplier: every sampled service time is multiplied by it, emulating
//! a noisy neighbour on the container's host. It changes at runtime through a file holding one
//! number (for example `2.5`), re-read every [`POLL`]; write it atomically (write a temporary
//! file, then rename) so a half-written number is never read. A missing file leaves the last
//! value in force; an unparsable or non-positive one is ignored with a warning.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often the file is re-read.
pub const POLL: Duration = Duration::from_millis(200);

/// The current multiplier, shared by the request handlers and the poller.
#[derive(Debug, Clone)]
pub struct Interference(Arc<AtomicU64>);

impl Interference {
    /// Starts at `initial` (1.0 means no interference).
    pub fn new(initial: f64) -> Self {
        Self(Arc::new(AtomicU64::new(initial.to_bits())))
    }

    /// The multiplier now.
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    /// Replaces the multiplier.
    pub fn set(&self, v: f64) {
        self.0.store(v.to_bits(), Ordering::Relaxed);
    }

    /// Parses the file's content; `None` unless it is one finite number > 0.
    pub fn parse(content: &str) -> Option<f64> {
        content
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
    }

    /// Re-reads `path` every [`POLL`] for as long as the runtime lives.
    pub fn watch(&self, path: PathBuf) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL);
            let mut last_bad: Option<String> = None;
            loop {
                tick.tick().await;
                let Ok(content) = tokio::fs::read_to_string(&path).await else {
                    continue;
                };
                match Self::parse(&content) {
                    Some(v) => {
                        this.set(v);
                        last_bad = None;
                    }
                    None if last_bad.as_deref() != Some(content.as_str()) => {
                        tracing::warn!(path = %path.display(), content = %content.trim(), "ignoring invalid interference multiplier");
                        last_bad = Some(content);
                    }
                    None => {}
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_positive_finite_numbers() {
        assert_eq!(Interference::parse(" 2.5\n"), Some(2.5));
        assert_eq!(Interference::parse("1"), Some(1.0));
        for bad in ["", "0", "-1", "NaN", "inf", "fast"] {
            assert_eq!(Interference::parse(bad), None, "{bad}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn watcher_picks_up_a_changed_file() {
        let dir = std::env::temp_dir().join(format!("loadshift-interf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("factor");
        std::fs::write(&path, "3.0").expect("write");
        let i = Interference::new(1.0);
        let task = i.watch(path.clone());
        // File reads run on the blocking pool, which the paused clock does not wait for; give
        // the poller a few ticks to land one.
        for _ in 0..50 {
            tokio::time::sleep(POLL).await;
            if i.get() == 3.0 {
                break;
            }
        }
        assert_eq!(i.get(), 3.0);
        std::fs::write(&path, "garbage").expect("write");
        tokio::time::sleep(POLL * 3).await;
        assert_eq!(i.get(), 3.0, "an invalid file keeps the last value");
        task.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
