//! Shutdown signals, for every long-running mode: the CLI stops its tasks on the first signal, the
//! controller finishes its in-flight reconciles; both exit at once on a second one.

/// Resolves at the next SIGINT (Ctrl-C) or SIGTERM, naming it.
pub async fn wait_for_signal() -> String {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "interrupted (SIGINT)".to_owned(),
                _ = term.recv() => "terminated (SIGTERM)".to_owned(),
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "interrupted (SIGINT)".to_owned()
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "interrupted".to_owned()
    }
}
