//! Per-worker deadlines for the request path: a client connection's idle and head-read limits
//! and each request's timeout.
//!
//! Each of those is armed and disarmed once per request, and almost never fires. A tokio timer
//! costs a clock read, a timer-wheel insert and a removal every time; here a deadline is a slot
//! in the worker's table, arming it is a write, and one sweeping task per worker sleeps until the
//! earliest armed deadline and wakes whatever has passed it. The sweeper is woken early only when
//! a deadline earlier than the one it sleeps for is armed, which under steady traffic (every new
//! deadline later than the ones before it) is rare.

use std::{
    cell::{Cell, RefCell},
    future::Future,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, Waker},
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

/// Timers woken between two polls of the worker's sockets.
const WAKE_BATCH: usize = 32;

/// The deadlines of one worker. Run [`Deadlines::sweep`] on the worker's thread.
#[derive(Debug, Default)]
pub struct Deadlines {
    slots: RefCell<Slots>,
    /// The earliest deadline the sweeper will wake for; `None` while it waits for any.
    next_wake: Cell<Option<Instant>>,
    wake_sweeper: Notify,
}

#[derive(Debug, Default)]
struct Slots {
    entries: Vec<Entry>,
    free: Vec<usize>,
}

#[derive(Debug, Default)]
struct Entry {
    at: Option<Instant>,
    fired: bool,
    waker: Option<Waker>,
}

impl Deadlines {
    pub fn new() -> Rc<Self> {
        Rc::new(Self::default())
    }

    /// A timer owning one slot until dropped.
    pub fn timer(self: &Rc<Self>) -> Timer {
        let mut s = self.slots.borrow_mut();
        let slot = match s.free.pop() {
            Some(i) => i,
            None => {
                s.entries.push(Entry::default());
                s.entries.len() - 1
            }
        };
        Timer {
            owner: self.clone(),
            slot,
        }
    }

    /// Number of slots held by live timers.
    #[cfg(test)]
    fn live(&self) -> usize {
        let s = self.slots.borrow();
        s.entries.len() - s.free.len()
    }

    /// Wakes expired timers for as long as the worker runs.
    pub async fn sweep(self: Rc<Self>) {
        let mut expired = Vec::new();
        loop {
            let now = Instant::now();
            let mut next: Option<Instant> = None;
            {
                let mut s = self.slots.borrow_mut();
                for e in s.entries.iter_mut() {
                    let Some(at) = e.at else { continue };
                    if e.fired {
                        continue;
                    }
                    if at <= now {
                        e.fired = true;
                        expired.extend(e.waker.take());
                    } else {
                        next = Some(next.map_or(at, |n| n.min(at)));
                    }
                }
            }
            self.next_wake.set(next);
            // Woken outside the borrow (a woken task may arm or drop a timer when it runs), a
            // batch at a time: each batch runs, and the worker polls its sockets, before the
            // next is woken, so thousands of connections timing out together (a storm's) do not
            // hold up the requests being served.
            for batch in expired.chunks(WAKE_BATCH) {
                batch.iter().for_each(Waker::wake_by_ref);
                if expired.len() > WAKE_BATCH {
                    tokio::task::yield_now().await;
                }
            }
            expired.clear();
            match next {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = self.wake_sweeper.notified() => {}
                    }
                }
                None => self.wake_sweeper.notified().await,
            }
        }
    }

    fn arm(&self, slot: usize, at: Instant) {
        {
            let mut s = self.slots.borrow_mut();
            let e = &mut s.entries[slot];
            e.at = Some(at);
            e.fired = false;
        }
        if self.next_wake.get().is_none_or(|n| at < n) {
            self.next_wake.set(Some(at));
            // A stored permit if the sweeper is busy, so the earlier deadline is not missed.
            self.wake_sweeper.notify_one();
        }
    }

    fn disarm(&self, slot: usize) {
        let mut s = self.slots.borrow_mut();
        let e = &mut s.entries[slot];
        e.at = None;
        e.fired = false;
    }

    fn poll_expired(&self, slot: usize, cx: &Context<'_>) -> Poll<()> {
        let mut s = self.slots.borrow_mut();
        let e = &mut s.entries[slot];
        if e.fired {
            return Poll::Ready(());
        }
        if e.at.is_some() && !e.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            e.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// One deadline slot; re-armed as often as needed, freed on drop.
#[derive(Debug)]
pub struct Timer {
    owner: Rc<Deadlines>,
    slot: usize,
}

impl Timer {
    /// Runs `fut` until it completes or `at` passes (`None`: no limit); `None` when it passed.
    pub fn bound<F: Future>(&mut self, at: Option<Instant>, fut: F) -> Bound<'_, F> {
        Bound {
            timer: self,
            at: at.map_or(When::Never, When::At),
            armed: false,
            fut,
        }
    }

    /// Runs `fut` until it completes or has waited `limit`; `None` when it waited too long. The
    /// clock is read only if `fut` has to wait at all.
    pub fn bound_for<F: Future>(&mut self, limit: Duration, fut: F) -> Bound<'_, F> {
        Bound {
            timer: self,
            at: When::After(limit),
            armed: false,
            fut,
        }
    }
}

impl Timer {
    /// This timer as an alarm for `at`, for a deadline kept by something that is itself polled
    /// (a response body) rather than wrapped around one future.
    pub fn alarm(self, at: Instant) -> Alarm {
        Alarm {
            timer: self,
            at,
            armed: false,
        }
    }
}

/// A deadline polled by its owner, from [`Timer::alarm`]; armed at the first poll, freed on drop.
#[derive(Debug)]
pub struct Alarm {
    timer: Timer,
    at: Instant,
    armed: bool,
}

impl Alarm {
    /// Ready once the deadline has passed (and from then on).
    pub fn poll(&mut self, cx: &Context<'_>) -> Poll<()> {
        if !self.armed {
            self.armed = true;
            self.timer.owner.arm(self.timer.slot, self.at);
        }
        self.timer.owner.poll_expired(self.timer.slot, cx)
    }
}

/// When a [`Bound`] future is cut off.
#[derive(Clone, Copy, Debug)]
enum When {
    Never,
    At(Instant),
    /// This long after the future first has to wait.
    After(Duration),
}

pin_project_lite::pin_project! {
    /// A future cut off at a deadline, from [`Timer::bound`]. A named type rather than an
    /// `async fn` so the wrapped future is stored once, not once as an argument and again pinned.
    pub struct Bound<'t, F> {
        timer: &'t mut Timer,
        at: When,
        armed: bool,
        #[pin]
        fut: F,
    }

    impl<'t, F> PinnedDrop for Bound<'t, F> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if *this.armed {
                this.timer.owner.disarm(this.timer.slot);
            }
        }
    }
}

impl<F: Future> Future for Bound<'_, F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            if std::mem::take(this.armed) {
                this.timer.owner.disarm(this.timer.slot);
            }
            return Poll::Ready(Some(v));
        }
        // Armed only once the future has to wait: one that finishes at once costs nothing.
        if !*this.armed {
            let at = match *this.at {
                When::Never => return Poll::Pending,
                When::At(at) => at,
                When::After(d) => Instant::now() + d,
            };
            *this.armed = true;
            this.timer.owner.arm(this.timer.slot, at);
        }
        match this.timer.owner.poll_expired(this.timer.slot, cx) {
            Poll::Ready(()) => {
                *this.armed = false;
                this.timer.owner.disarm(this.timer.slot);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        let mut s = self.owner.slots.borrow_mut();
        s.entries[self.slot] = Entry::default();
        s.free.push(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn with_sweeper<F: Future>(f: impl FnOnce(Rc<Deadlines>) -> F) -> F::Output {
        let d = Deadlines::new();
        let local = tokio::task::LocalSet::new();
        local.spawn_local(d.clone().sweep());
        local.run_until(f(d)).await
    }

    #[tokio::test(start_paused = true)]
    async fn a_future_that_waits_too_long_is_cut_off_at_its_deadline() {
        with_sweeper(|d| async move {
            let mut t = d.timer();
            let start = Instant::now();
            let got = t
                .bound(
                    Some(start + Duration::from_millis(300)),
                    std::future::pending::<()>(),
                )
                .await;
            assert_eq!(got, None);
            assert_eq!(start.elapsed(), Duration::from_millis(300));
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_future_that_finishes_in_time_gives_its_output_and_disarms() {
        with_sweeper(|d| async move {
            let mut t = d.timer();
            let at = Instant::now() + Duration::from_millis(500);
            let sleep = tokio::time::sleep(Duration::from_millis(100));
            assert_eq!(
                t.bound(Some(at), async {
                    sleep.await;
                    7
                })
                .await,
                Some(7)
            );
            // Disarmed: waiting past the old deadline fires nothing, and the slot is reused.
            tokio::time::sleep(Duration::from_secs(1)).await;
            assert_eq!(t.bound(None, async { 8 }).await, Some(8));
            assert!(!d.slots.borrow().entries[t.slot].fired);
            drop(t);
            assert_eq!(d.live(), 0);
            let again = d.timer();
            assert_eq!(again.slot, 0);
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_armed_while_the_sweeper_sleeps_still_fires_on_time() {
        with_sweeper(|d| async move {
            let start = Instant::now();
            let mut long = d.timer();
            let long_wait = tokio::task::spawn_local(async move {
                long.bound(
                    Some(start + Duration::from_secs(60)),
                    std::future::pending::<()>(),
                )
                .await
            });
            tokio::time::sleep(Duration::from_millis(10)).await;
            let mut short = d.timer();
            let got = short
                .bound(
                    Some(start + Duration::from_millis(200)),
                    std::future::pending::<()>(),
                )
                .await;
            assert_eq!(got, None);
            assert_eq!(start.elapsed(), Duration::from_millis(200));
            assert_eq!(long_wait.await.ok(), Some(None));
            assert_eq!(start.elapsed(), Duration::from_secs(60));
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn an_alarm_fires_at_its_deadline_and_stays_fired() {
        with_sweeper(|d| async move {
            let start = Instant::now();
            let mut alarm = d.timer().alarm(start + Duration::from_millis(250));
            std::future::poll_fn(|cx| alarm.poll(cx)).await;
            assert_eq!(start.elapsed(), Duration::from_millis(250));
            std::future::poll_fn(|cx| Poll::Ready(alarm.poll(cx).is_ready()))
                .await
                .then_some(())
                .expect("still fired");
            drop(alarm);
            assert_eq!(d.live(), 0);
        })
        .await;
    }

    #[tokio::test(start_paused = true)]
    async fn many_timers_fire_each_at_its_own_deadline() {
        with_sweeper(|d| async move {
            let start = Instant::now();
            let mut waits = Vec::new();
            for i in (1..=20u64).rev() {
                let mut t = d.timer();
                waits.push(tokio::task::spawn_local(async move {
                    let at = start + Duration::from_millis(i * 50);
                    t.bound(Some(at), std::future::pending::<()>()).await;
                    (i, start.elapsed())
                }));
            }
            for w in waits {
                let (i, took) = w.await.expect("timer task");
                assert_eq!(took, Duration::from_millis(i * 50));
            }
            assert_eq!(d.live(), 0);
        })
        .await;
    }
}
