//! The controller's errors. The variant decides what `error_policy` does and labels the
//! `sequencer_reconcile_errors_total` metric. Problems with a Sequence itself (bad spec,
//! unreadable source) are not errors here: they are reported on the object and the controller
//! waits for it to change.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error(
        "the Sequence changed while being reconciled; the next reconcile starts from its stored status"
    )]
    Conflict,
    /// Deletion waits until the Sequence's tasks have acknowledged StopTask; keeping the
    /// finalizer needs an error here (the finalizer helper removes it on success).
    #[error("the deleted Sequence's tasks are still being stopped")]
    TasksStopping,
    /// A deleted Sequence whose run cannot be read: its tasks cannot be found to stop them, so the
    /// finalizer stays (the `Held` condition says why) rather than leave tasks running untracked.
    #[error(
        "the deleted Sequence's run cannot be read, so its tasks cannot be stopped; it is held"
    )]
    HeldOnDeletion,
    /// An ECS call made by the controller itself (not through the engine) failed.
    #[error("ECS: {0}")]
    Ecs(sequencer_core::observation::ApiError),
    #[error("{0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
}

impl Error {
    /// A short label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self.innermost() {
            Error::Kube(_) => "kube",
            Error::Conflict => "conflict",
            Error::TasksStopping => "tasks_stopping",
            Error::HeldOnDeletion => "held",
            Error::Ecs(_) => "ecs",
            Error::Finalizer(_) => "finalizer",
        }
    }

    /// Reconcile errors come wrapped by the finalizer helper; policies are about the cause.
    pub fn innermost(&self) -> &Error {
        use kube::runtime::finalizer::Error as F;
        match self {
            Error::Finalizer(inner) => match inner.as_ref() {
                F::ApplyFailed(e) | F::CleanupFailed(e) => e.innermost(),
                _ => self,
            },
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_see_the_cause_behind_the_finalizer_wrapper() {
        use kube::runtime::finalizer::Error as F;
        let wrapped = Error::Finalizer(Box::new(F::ApplyFailed(Error::Conflict)));
        assert_eq!(wrapped.metric_label(), "conflict");
        let wrapped = Error::Finalizer(Box::new(F::CleanupFailed(Error::TasksStopping)));
        assert_eq!(wrapped.metric_label(), "tasks_stopping");
        let unnamed = Error::Finalizer(Box::new(F::UnnamedObject));
        assert_eq!(unnamed.metric_label(), "finalizer");
    }
}
