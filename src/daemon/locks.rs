//! Mutations are serialized per config file: a request that changes processes holds the keys
//! of every config file it touches until it is done, so two clients working on the same names
//! (a scale racing a restart, two starts of one file) run one after the other, and the table
//! and the processes agree after any mix. Dependencies never cross config files, so a file is
//! the smallest unit that also covers the dependencies a start brings in and the dependents a
//! stop takes down. Requests on different files still run side by side, and reads (`list`,
//! `info`, `log`) never wait.
//!
//! A request holds its keys while it plans and dispatches (resolving targets, reconciling the
//! table, sending each supervisor its command) and while a next step depends on a previous
//! one's outcome (stop layers, removals, a rollout). Once every command is sent it lets go:
//! each supervisor handles its commands in the order they were sent, so a `stop` that follows
//! a `start` still lands after it, and can interrupt a long `pre_start` instead of waiting.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::rc::Rc;

use tokio::sync::Notify;

/// The keys held by requests in progress.
#[derive(Default)]
pub struct Locks {
    held: RefCell<BTreeSet<PathBuf>>,
    freed: Notify,
}

/// Keys held until dropped.
pub struct Guard {
    locks: Rc<Locks>,
    keys: BTreeSet<PathBuf>,
}

impl Locks {
    /// Waits until none of `keys` is held, then takes them all at once (all or nothing, so two
    /// requests can never each hold a key the other waits for).
    pub async fn acquire(self: &Rc<Self>, keys: BTreeSet<PathBuf>) -> Guard {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before the check: a release between the check and the wait still wakes us.
            freed.as_mut().enable();
            {
                let mut held = self.held.borrow_mut();
                if keys.iter().all(|k| !held.contains(k)) {
                    held.extend(keys.iter().cloned());
                    return Guard { locks: self.clone(), keys };
                }
            }
            freed.await;
        }
    }
}

impl Guard {
    /// True when this guard holds every key of `keys`.
    pub fn covers(&self, keys: &BTreeSet<PathBuf>) -> bool {
        keys.is_subset(&self.keys)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut held = self.locks.held.borrow_mut();
        for k in &self.keys {
            held.remove(k);
        }
        drop(held);
        self.locks.freed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn keys(v: &[&str]) -> BTreeSet<PathBuf> {
        v.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn overlapping_requests_run_one_after_the_other() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let locks = Rc::new(Locks::default());
            let inside = Rc::new(Cell::new(0u32));
            let most = Rc::new(Cell::new(0u32));
            let mut tasks = Vec::new();
            for i in 0..8 {
                let (locks, inside, most) = (locks.clone(), inside.clone(), most.clone());
                let k = if i % 2 == 0 { keys(&["/a", "/b"]) } else { keys(&["/b"]) };
                tasks.push(tokio::task::spawn_local(async move {
                    let _g = locks.acquire(k).await;
                    inside.set(inside.get() + 1);
                    most.set(most.get().max(inside.get()));
                    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                    inside.set(inside.get() - 1);
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            assert_eq!(most.get(), 1, "two holders of /b at once");
            // Disjoint keys do not wait for each other.
            let a = locks.acquire(keys(&["/a"])).await;
            let c = locks.acquire(keys(&["/c"])).await;
            assert!(a.covers(&keys(&["/a"])) && !a.covers(&keys(&["/a", "/c"])) && c.covers(&keys(&["/c"])));
        });
    }
}
