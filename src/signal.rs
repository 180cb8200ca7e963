//! Waiting for the signals that end a long-running subcommand.

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            // Without signal handlers only Ctrl-C through tokio's portable path is left.
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
