//! Group commit: concurrent callers' writes go to the database together, in one database
//! transaction, so that many requests share one commit and one statement per table.
//!
//! There is no timer. The first write to arrive while no writer is busy is written at once
//! (an idle hub adds no latency); what arrives while writers are busy waits for the next free
//! writer and goes in its group, up to `max_batch`. The window is therefore the time a write
//! takes, and grows and shrinks with the load by itself. Tokio's timers are
//! millisecond-grained, too coarse for a window of a few hundred microseconds.
//!
//! A group is all or nothing: [`GroupWrite::write_group`] runs in one database transaction.
//! If it fails, each of its items is written again alone, so that one bad item (a constraint
//! the statements did not foresee, an invariant broken) fails only its own caller and a
//! database that went away fails every caller at once (an outage is not split: written one
//! by one, each item would only wait for the pool in turn). Writing an item again is
//! safe because every group write is conditional (`ON CONFLICT DO NOTHING`, `WHERE` a lease
//! still holds): whatever an ambiguous commit did write is seen, not written twice.

use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::{DbConnection, Store, StoreError};

/// One kind of write that can be grouped.
pub trait GroupWrite: Send + Sync + 'static {
    type Item: Send + 'static;
    type Output: Send + 'static;

    /// Writes every item in one database transaction; one output per item, in order.
    fn write_group(
        &self,
        conn: &mut DbConnection,
        items: &[Self::Item],
    ) -> Result<Vec<Self::Output>, StoreError>;

    /// What the group sizes are reported under (`hub_group_commit_*{write=...}`).
    fn name(&self) -> &'static str;

    /// Whether an item whose caller stopped waiting is dropped unwritten. Only for writes
    /// that nobody else depends on (a claim nobody will act on), never for a settlement:
    /// the operator has moved the money it records.
    fn skips_abandoned(&self) -> bool {
        false
    }
}

/// How groups are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    /// The most items in one group.
    pub max_batch: usize,
    /// Groups written at the same time (each on its own pooled connection).
    pub writers: usize,
}

/// What a caller waits on: its item's output, or the error that kept it from being written.
type Reply<W> = oneshot::Sender<Result<<W as GroupWrite>::Output, StoreError>>;

struct Queue<W: GroupWrite> {
    waiting: Vec<(W::Item, Reply<W>)>,
    busy_writers: usize,
}

/// Observes each group written: its write's name, size, and whether it had to be split.
pub trait GroupObserver: Send + Sync + 'static {
    fn group_written(&self, write: &'static str, size: usize, split: bool);
}

pub struct GroupCommit<W: GroupWrite> {
    store: Store,
    write: Arc<W>,
    limits: GroupLimits,
    queue: Arc<Mutex<Queue<W>>>,
    observer: Arc<dyn GroupObserver>,
}

impl<W: GroupWrite> Clone for GroupCommit<W> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            write: self.write.clone(),
            limits: self.limits,
            queue: self.queue.clone(),
            observer: self.observer.clone(),
        }
    }
}

impl<W: GroupWrite> GroupCommit<W> {
    pub fn new(
        store: Store,
        write: W,
        limits: GroupLimits,
        observer: Arc<dyn GroupObserver>,
    ) -> Self {
        Self {
            store,
            write: Arc::new(write),
            limits: GroupLimits {
                max_batch: limits.max_batch.max(1),
                writers: limits.writers.max(1),
            },
            queue: Arc::new(Mutex::new(Queue {
                waiting: Vec::new(),
                busy_writers: 0,
            })),
            observer,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue<W>> {
        self.queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Items waiting for a writer (not those being written).
    pub fn waiting(&self) -> usize {
        self.lock().waiting.len()
    }

    /// Writers at work.
    pub fn writing(&self) -> usize {
        self.lock().busy_writers
    }

    /// Writes `item` with whatever else is waiting, and returns its output once committed.
    pub async fn submit(&self, item: W::Item) -> Result<W::Output, StoreError> {
        let (reply, answer) = oneshot::channel();
        let become_writer = {
            let mut queue = self.lock();
            queue.waiting.push((item, reply));
            let free = queue.busy_writers < self.limits.writers;
            if free {
                queue.busy_writers += 1;
            }
            free
        };
        if become_writer {
            // Spawned, so that a caller that gives up (a dropped request) never strands the
            // group it was writing for others.
            let this = self.clone();
            tokio::spawn(async move { this.write_until_empty().await });
        }
        answer.await.map_err(|_| StoreError::TaskFailed)?
    }

    /// Writes groups until nothing waits, then frees its writer slot.
    async fn write_until_empty(&self) {
        let mut slot = WriterSlot { owner: self };
        while let Some(group) = slot.next_group() {
            self.write_one_group(group).await;
        }
    }

    async fn write_one_group(&self, group: Vec<(W::Item, Reply<W>)>) {
        let (items, replies): (Vec<W::Item>, Vec<Reply<W>>) = group.into_iter().unzip();
        let size = items.len();
        let write = self.write.clone();
        // A failed write returns its items, for writing them one by one, and is an `Err` to
        // the store, which then checks whether the connection itself died.
        let written = self
            .store
            .run(move |conn| {
                write
                    .write_group(conn, &items)
                    .map_err(|error| Failed { error, items })
            })
            .await;
        let name = self.write.name();
        match written {
            Ok(outputs) if outputs.len() == size => {
                self.observer.group_written(name, size, false);
                for (reply, output) in replies.into_iter().zip(outputs) {
                    let _ = reply.send(Ok(output));
                }
            }
            Ok(outputs) => send_error(
                replies,
                StoreError::Invariant(format!(
                    "a group of {size} {name} writes gave {} outputs",
                    outputs.len()
                )),
            ),
            Err(Failed { error, items })
                if size > 1 && items.len() == size && !error.is_outage() =>
            {
                tracing::warn!(%error, size, write = name, "a group write failed; writing its items one by one");
                self.observer.group_written(name, size, true);
                self.write_alone(items, replies).await;
            }
            Err(Failed { error, .. }) => send_error(replies, error),
        }
    }

    /// Each item in its own database transaction, after their group failed.
    async fn write_alone(&self, items: Vec<W::Item>, replies: Vec<Reply<W>>) {
        for (item, reply) in items.into_iter().zip(replies) {
            let write = self.write.clone();
            let written = self
                .store
                .run(move |conn| {
                    let mut outputs = write.write_group(conn, std::slice::from_ref(&item))?;
                    outputs
                        .pop()
                        .ok_or_else(|| StoreError::Invariant("a group of 1 gave no output".into()))
                })
                .await;
            let _ = reply.send(written);
        }
    }
}

/// A group write that failed, with the items it could not write.
struct Failed<I> {
    error: StoreError,
    items: Vec<I>,
}

/// The store's own failures (no connection, a connection found dead) come without items.
impl<I> From<StoreError> for Failed<I> {
    fn from(error: StoreError) -> Self {
        Self {
            error,
            items: Vec::new(),
        }
    }
}

/// The first caller gets the error itself, the others its duplicate.
fn send_error<T>(replies: Vec<oneshot::Sender<Result<T, StoreError>>>, error: StoreError) {
    let mut replies = replies.into_iter();
    let first = replies.next();
    for reply in replies {
        let _ = reply.send(Err(error.duplicate()));
    }
    if let Some(reply) = first {
        let _ = reply.send(Err(error));
    }
}

/// A writer's claim on one of the `writers` slots; handed back when the queue is empty, or
/// when the writer ends any other way (a panic in a group write), so that the next
/// `submit` starts a new writer rather than waiting forever.
struct WriterSlot<'a, W: GroupWrite> {
    owner: &'a GroupCommit<W>,
}

impl<W: GroupWrite> WriterSlot<'_, W> {
    fn next_group(&mut self) -> Option<Vec<(W::Item, Reply<W>)>> {
        let mut queue = self.owner.lock();
        if queue.waiting.is_empty() {
            return None;
        }
        if self.owner.write.skips_abandoned() {
            queue.waiting.retain(|(_, reply)| !reply.is_closed());
            if queue.waiting.is_empty() {
                return None;
            }
        }
        let take = queue.waiting.len().min(self.owner.limits.max_batch);
        Some(queue.waiting.drain(..take).collect())
    }
}

impl<W: GroupWrite> Drop for WriterSlot<'_, W> {
    fn drop(&mut self) {
        let mut queue = self.owner.lock();
        queue.busy_writers = queue.busy_writers.saturating_sub(1);
        // A writer that ended while items still wait (a panic) leaves them to a new writer.
        if !queue.waiting.is_empty() && queue.busy_writers < self.owner.limits.writers {
            queue.busy_writers += 1;
            let this = self.owner.clone();
            drop(queue);
            tokio::spawn(async move { this.write_until_empty().await });
        }
    }
}
