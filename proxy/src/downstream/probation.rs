//! Connections on probation: accepted, no request yet. When a listener is at its connection cap,
//! the oldest of them that has had at least [`MIN_AGE`] to send a request is closed to make
//! room, so clients that send requests are not locked out by connections that only hold a
//! place (an idle-connection storm from more addresses than the per-source cap can hold back).
//! One list per worker and listener, oldest first; a connection leaves it with its first
//! request head (HTTP/2: its first stream) or when it closes.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    rc::Rc,
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

/// A connection younger than this is never evicted: a client gets this long to send its first
/// request, however full the listener.
pub const MIN_AGE: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Waiting,
    /// Sent a request, or closed.
    Done,
    Evicted,
}

#[derive(Debug)]
struct Entry {
    since: Instant,
    state: Cell<State>,
    evict: Notify,
}

/// The connections of one worker's listener that have not sent a request yet.
#[derive(Debug, Default)]
pub struct Probation {
    queue: RefCell<VecDeque<Rc<Entry>>>,
}

impl Probation {
    /// Puts a just-accepted connection on probation.
    pub fn admit(&self) -> Ticket {
        let entry = Rc::new(Entry {
            since: Instant::now(),
            state: Cell::new(State::Waiting),
            evict: Notify::new(),
        });
        let mut q = self.queue.borrow_mut();
        // Entries leave lazily from the front, so the list stays as long as the span of the
        // oldest waiting connection, which the first-request limit bounds.
        while q.front().is_some_and(|e| e.state.get() != State::Waiting) {
            q.pop_front();
        }
        q.push_back(entry.clone());
        Ticket(entry)
    }

    /// Whether some connection has waited at least `min_age` without a request.
    pub fn has_evictable(&self, min_age: Duration) -> bool {
        let now = Instant::now();
        let mut q = self.queue.borrow_mut();
        while q.front().is_some_and(|e| e.state.get() != State::Waiting) {
            q.pop_front();
        }
        q.front()
            .is_some_and(|e| now.duration_since(e.since) >= min_age)
    }

    /// Closes the oldest connection waiting for at least `min_age`; false when there is none.
    pub fn evict_oldest(&self, min_age: Duration) -> bool {
        let now = Instant::now();
        let mut q = self.queue.borrow_mut();
        while let Some(e) = q.front() {
            if e.state.get() != State::Waiting {
                q.pop_front();
                continue;
            }
            if now.duration_since(e.since) < min_age {
                return false;
            }
            e.state.set(State::Evicted);
            e.evict.notify_one();
            q.pop_front();
            return true;
        }
        false
    }
}

/// A connection's place on probation.
#[derive(Debug)]
pub struct Ticket(Rc<Entry>);

impl Ticket {
    /// Resolves when the connection is evicted; never once it has passed.
    pub async fn evicted(&self) {
        loop {
            match self.0.state.get() {
                State::Evicted => return,
                State::Done => std::future::pending::<()>().await,
                State::Waiting => self.0.evict.notified().await,
            }
        }
    }

    /// The connection sent its first request: it can no longer be evicted.
    pub fn passed(&self) {
        if self.0.state.get() == State::Waiting {
            self.0.state.set(State::Done);
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.passed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_oldest_waiting_connection_old_enough_is_evicted() {
        let p = Probation::default();
        let first = p.admit();
        tokio::time::advance(Duration::from_millis(500)).await;
        let second = p.admit();
        let third = p.admit();
        assert!(!p.evict_oldest(MIN_AGE), "nobody is a second old yet");
        tokio::time::advance(Duration::from_millis(600)).await;
        // The first passed (sent a request): the second is the oldest still waiting.
        first.passed();
        assert!(p.evict_oldest(Duration::from_millis(500)));
        tokio::time::timeout(Duration::from_millis(1), second.evicted())
            .await
            .expect("the second was told");
        assert!(
            tokio::time::timeout(Duration::from_millis(1), third.evicted())
                .await
                .is_err(),
            "the third stays"
        );
        drop(third);
        assert!(
            !p.evict_oldest(Duration::ZERO),
            "closed connections are not evicted"
        );
        assert_eq!(p.queue.borrow().len(), 0);
    }
}
