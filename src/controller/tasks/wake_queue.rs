//! The Sequences the poller wakes because their tasks changed, waiting for the controller to take
//! them. A set in arrival order: a Sequence woken many times before it is taken is held once, so
//! the queue never holds more than one entry per Sequence, however long the controller stalls
//! (a channel would grow with every wake).

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};

use futures::Stream;
use tokio::sync::Notify;

use crate::controller::tasks::owner::Owner;

#[derive(Default)]
pub struct WakeQueue {
    waiting: Mutex<(VecDeque<Owner>, HashSet<Owner>)>,
    pushed: Notify,
}

impl WakeQueue {
    pub fn new() -> Arc<Self> {
        Arc::new(WakeQueue::default())
    }

    /// Asks for `owner` to be reconciled (once, however often it is asked before it is taken).
    pub fn push(&self, owner: Owner) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let (order, set) = &mut *waiting;
        if set.insert(owner.clone()) {
            order.push_back(owner);
        }
        drop(waiting);
        // A permit is kept when nobody waits, so a push just before the taker sleeps is not lost.
        self.pushed.notify_one();
    }

    /// The longest-waiting Sequence, if any.
    pub fn try_pop(&self) -> Option<Owner> {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        let (order, set) = &mut *waiting;
        let owner = order.pop_front()?;
        set.remove(&owner);
        Some(owner)
    }

    pub fn len(&self) -> usize {
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .0
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The Sequences as they are woken, for `Controller::reconcile_on`.
    pub fn stream(self: Arc<Self>) -> impl Stream<Item = Owner> + Send {
        futures::stream::unfold(self, |queue| async move {
            loop {
                if let Some(owner) = queue.try_pop() {
                    return Some((owner, queue));
                }
                queue.pushed.notified().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use kube::runtime::reflector::ObjectRef;

    fn owner(name: &str) -> Owner {
        ObjectRef::new(name).within("default")
    }

    #[test]
    fn a_sequence_woken_many_times_waits_once_in_arrival_order() {
        let queue = WakeQueue::new();
        for _ in 0..1000 {
            queue.push(owner("b"));
            queue.push(owner("a"));
        }
        assert_eq!(queue.len(), 2);
        assert_eq!(queue.try_pop().map(|o| o.name), Some("b".into()));
        queue.push(owner("b"));
        let order: Vec<String> = std::iter::from_fn(|| queue.try_pop().map(|o| o.name)).collect();
        assert_eq!(order, vec!["a", "b"]);
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn the_stream_yields_wakes_pushed_while_it_waits() {
        let queue = WakeQueue::new();
        let mut stream = Box::pin(queue.clone().stream());
        let pusher = {
            let queue = queue.clone();
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                queue.push(owner("late"));
            })
        };
        let first = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next()).await;
        pusher.await.expect("pushed");
        assert_eq!(first.ok().flatten().map(|o| o.name), Some("late".into()));
    }
}
