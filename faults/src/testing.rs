//! A system for the nemeses' unit tests.

use crate::system::{NodeView, System, SystemError};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Nodes that are all down; node 2 will not start the first time it is asked, and will not
/// stop.
#[derive(Default)]
pub(crate) struct Down {
    pub(crate) started: std::sync::Mutex<Vec<u64>>,
    pub(crate) refused: AtomicBool,
}

#[async_trait]
impl System for Down {
    fn name(&self) -> &'static str {
        "down"
    }
    fn nodes(&self) -> Vec<u64> {
        vec![1, 2, 3]
    }
    fn addresses(&self) -> BTreeMap<u64, String> {
        BTreeMap::new()
    }
    fn log_file(&self, _: u64) -> Option<&std::path::Path> {
        None
    }
    async fn setup(&self) -> Result<(), SystemError> {
        Ok(())
    }
    async fn statuses(&self, _: Duration) -> BTreeMap<u64, NodeView> {
        BTreeMap::new()
    }
    async fn start(&self, node: u64) -> Result<(), SystemError> {
        if node == 2 && !self.refused.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(SystemError::Process { node, message: "no room".into() });
        }
        self.started.lock().unwrap().push(node);
        Ok(())
    }
    async fn is_running(&self, node: u64) -> bool {
        self.started.lock().unwrap().contains(&node)
    }
    async fn stop(&self, node: u64) -> Result<(), SystemError> {
        if node == 2 {
            return Err(SystemError::Process { node, message: "no answer".into() });
        }
        self.started.lock().unwrap().retain(|n| *n != node);
        Ok(())
    }
}
