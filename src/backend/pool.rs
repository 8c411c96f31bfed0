//! Idle keep-alive connections to instances, per worker and per back-end address.
//!
//! Any client session of the worker may take a connection another one opened. Stacks
//! are LIFO so the warmest connection is reused first and the coldest ones reach the
//! idle timeout and close. Each stack is bounded; a connection that does not fit closes.

/// Idle connections kept per back-end address per worker.
pub const MAX_IDLE_PER_BACKEND: usize = 1024;

#[derive(Default)]
pub struct Pool {
    idle: Vec<Vec<usize>>,
}

impl Pool {
    pub fn resize(&mut self, backends: usize) {
        self.idle.resize_with(backends, Vec::new);
    }

    /// Parks a connection; false when the stack is full (the caller closes it).
    pub fn push(&mut self, backend: usize, conn: usize) -> bool {
        match self.idle.get_mut(backend) {
            Some(stack) if stack.len() < MAX_IDLE_PER_BACKEND => {
                stack.push(conn);
                true
            }
            _ => false,
        }
    }

    pub fn pop(&mut self, backend: usize) -> Option<usize> {
        self.idle.get_mut(backend)?.pop()
    }

    /// Forgets a connection that closed while idle.
    pub fn remove(&mut self, backend: usize, conn: usize) {
        if let Some(stack) = self.idle.get_mut(backend) {
            if let Some(i) = stack.iter().rposition(|&c| c == conn) {
                stack.swap_remove(i);
            }
        }
    }

    /// Hands over every stack, indexed by back end, leaving the pool empty.
    pub fn take(&mut self) -> Vec<Vec<usize>> {
        std::mem::take(&mut self.idle)
    }

    pub fn idle(&self) -> usize {
        self.idle.iter().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifo_and_remove() {
        let mut pool = Pool::default();
        pool.resize(2);
        assert!(pool.push(1, 10));
        assert!(pool.push(1, 11));
        assert!(pool.push(1, 12));
        pool.remove(1, 11);
        assert_eq!(pool.pop(1), Some(12));
        assert_eq!(pool.pop(1), Some(10));
        assert_eq!(pool.pop(1), None);
        assert!(!pool.push(5, 1));
    }
}
