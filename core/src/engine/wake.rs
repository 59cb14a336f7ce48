//! When the engine wants to be called again.

use super::*;

impl DecisionDraft<'_> {
    /// When to look again. With `polling`, this includes the next look at running tasks; without,
    /// only the timers (deadlines, backoffs, the missing-task grace), for a runner whose running
    /// tasks are watched by someone else (the controller's shared poller).
    pub(super) fn wake_at(&self, polling: bool) -> Option<Timestamp> {
        let poll = self.later(Duration::from_secs(self.plan.poll_interval_seconds.max(1)));
        let mut wake: Option<Timestamp> = None;
        let mut at = |t: Timestamp| wake = Some(wake.map_or(t, |w| w.min(t)));
        if let (Some(seconds), Some(start)) =
            (self.plan.active_deadline_seconds, self.status.start_time)
            && let Ok(deadline) = start.checked_add(Duration::from_secs(seconds))
        {
            at(deadline.max(self.now));
        }
        for (index, s) in self
            .status
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.phase.is_terminal())
        {
            if let Some(t) = s.next_attempt_at {
                at(t);
            }
            for a in s.attempts.iter().filter(|a| !a.phase.is_terminal()) {
                match a.phase {
                    AttemptPhase::Launching => at(a.retry_launch_at.unwrap_or(poll)),
                    _ if polling => at(poll),
                    _ => {}
                }
                // A task ECS calls MISSING is judged only after a grace period: look again then.
                if !polling
                    && let Some(grace_end) = a
                        .launched_at
                        .and_then(|t| t.checked_add(MISSING_GRACE).ok())
                        .filter(|t| *t > self.now)
                {
                    at(grace_end);
                }
                // A stop that ECS has not acknowledged is asked again at the next look.
                if !polling
                    && a.tasks.iter().any(|t| {
                        !t.is_finished() && t.stop_request.as_ref().is_some_and(|r| !r.acknowledged)
                    })
                {
                    at(poll);
                }
                // A log read that has not answered is given up at the end of its wait.
                if let Some(logs) = a.logs.as_ref().filter(|l| !l.done)
                    && let Ok(end) = logs.requested_at.checked_add(LOGS_WAIT)
                {
                    at(end.max(self.now));
                }
                let timeout = self
                    .plan
                    .steps
                    .get(index)
                    .and_then(|s| s.definition.timeout_seconds);
                if let (Some(secs), Some(launched)) = (timeout, a.launched_at)
                    && let Ok(deadline) = launched.checked_add(Duration::from_secs(secs))
                {
                    at(deadline.max(self.now));
                }
            }
        }
        wake
    }
}
