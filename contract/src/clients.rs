//! Clients that kinds build on first use and share for the life of the worker process: a
//! database pool, an SMTP pool, an HTTP client. The contract names none of them; each kind
//! asks for its own by type.

use std::{
    any::{Any, TypeId},
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
};

use tokio::sync::OnceCell;

/// One lazily built client per type, shared by every job of the worker process.
#[derive(Default)]
pub struct Clients {
    cells: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.cells.lock().map_or(0, |c| c.len());
        f.debug_struct("Clients").field("types", &count).finish()
    }
}

impl Clients {
    /// The client of type `T`, built by `init` on first use; a failed build is tried again by
    /// the next caller. Concurrent first uses build it once.
    pub async fn get_or_try_init<T, E, F, Fut>(&self, init: F) -> Result<T, E>
    where
        T: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let cell = {
            let mut cells = self.cells.lock().unwrap_or_else(|e| e.into_inner());
            cells
                .entry(TypeId::of::<T>())
                .or_insert_with(|| Arc::new(OnceCell::<T>::new()))
                .clone()
        };
        // The map is keyed by the cell's own type, so the downcast cannot fail.
        let cell = cell
            .downcast::<OnceCell<T>>()
            .unwrap_or_else(|_| unreachable!("a client cell under another type"));
        cell.get_or_try_init(init).await.cloned()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn builds_once_per_type_and_retries_a_failed_build() {
        let clients = Clients::default();
        let builds = AtomicUsize::new(0);
        let failed: Result<Arc<String>, &str> =
            clients.get_or_try_init(|| async { Err("down") }).await;
        assert_eq!(failed, Err("down"));
        for _ in 0..3 {
            let a: Result<Arc<String>, &str> = clients
                .get_or_try_init(|| async {
                    builds.fetch_add(1, Ordering::SeqCst);
                    Ok(Arc::new("a".to_owned()))
                })
                .await;
            assert_eq!(a.unwrap().as_str(), "a");
        }
        let n: Result<u32, &str> = clients.get_or_try_init(|| async { Ok(7) }).await;
        assert_eq!((n, builds.load(Ordering::SeqCst)), (Ok(7), 1));
    }
}
