//! The command queue of one supervisor task: the daemon's [`super::Handle`] pushes, the task
//! pops. Everything runs on the daemon's one thread, so a queue and the task's waker suffice.
//! tokio's unbounded channel, used before, allocated about 1.8 KiB per instance (a block of 32
//! slots and a cache-padded header) for a queue that is empty nearly all the time: 1.8 MiB of the
//! daemon's memory at 1,000 instances.
//!
//! Semantics are the channel's: a command sent once the task has ended is dropped (so its reply
//! channel closes), commands still queued when the task ends are dropped, and the task sees the
//! end of the queue once the handle is dropped.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::{Poll, Waker};

use super::Cmd;

struct Shared {
    queue: RefCell<VecDeque<Cmd>>,
    waker: RefCell<Option<Waker>>,
    sender_gone: Cell<bool>,
    receiver_gone: Cell<bool>,
}

impl Shared {
    fn wake(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }
}

/// The daemon's end.
pub struct Sender(Rc<Shared>);

/// The task's end.
pub struct Receiver(Rc<Shared>);

pub fn inbox() -> (Sender, Receiver) {
    let shared = Rc::new(Shared {
        queue: RefCell::new(VecDeque::new()),
        waker: RefCell::new(None),
        sender_gone: Cell::new(false),
        receiver_gone: Cell::new(false),
    });
    (Sender(shared.clone()), Receiver(shared))
}

impl Sender {
    /// Queues `cmd`; once the task has ended, drops it instead.
    pub fn send(&self, cmd: Cmd) {
        if self.0.receiver_gone.get() {
            return;
        }
        self.0.queue.borrow_mut().push_back(cmd);
        self.0.wake();
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.0.sender_gone.set(true);
        self.0.wake();
    }
}

impl Receiver {
    /// The next command; `None` once the queue is empty and the handle dropped.
    pub async fn recv(&mut self) -> Option<Cmd> {
        std::future::poll_fn(|cx| {
            if let Some(cmd) = self.0.queue.borrow_mut().pop_front() {
                return Poll::Ready(Some(cmd));
            }
            if self.0.sender_gone.get() {
                return Poll::Ready(None);
            }
            let mut waker = self.0.waker.borrow_mut();
            if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.0.receiver_gone.set(true);
        self.0.waker.borrow_mut().take();
        // Their reply channels close, as the requests waiting on them expect.
        let queued = std::mem::take(&mut *self.0.queue.borrow_mut());
        drop(queued);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply() -> (super::super::Reply, tokio::sync::oneshot::Receiver<super::super::Outcome>) {
        tokio::sync::oneshot::channel()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn commands_arrive_in_order_and_the_end_follows_the_handle() {
        let (tx, mut rx) = inbox();
        let (r1, _w1) = reply();
        let (r2, _w2) = reply();
        tx.send(Cmd::Stop { reply: r1 });
        tx.send(Cmd::Remove { reply: r2 });
        assert!(matches!(rx.recv().await, Some(Cmd::Stop { .. })));
        assert!(matches!(rx.recv().await, Some(Cmd::Remove { .. })));
        drop(tx);
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_waiting_task_is_woken_by_a_send() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let (tx, mut rx) = inbox();
                let task = tokio::task::spawn_local(async move { rx.recv().await.is_some() });
                tokio::task::yield_now().await;
                let (r, _w) = reply();
                tx.send(Cmd::Stop { reply: r });
                assert!(task.await.unwrap_or(false));
            })
            .await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn commands_to_an_ended_task_are_dropped_and_their_replies_close() {
        let (tx, rx) = inbox();
        let (r1, w1) = reply();
        tx.send(Cmd::Stop { reply: r1 });
        drop(rx);
        assert!(w1.await.is_err(), "queued when the task ended");
        let (r2, w2) = reply();
        tx.send(Cmd::Stop { reply: r2 });
        assert!(w2.await.is_err(), "sent after the task ended");
    }
}
