//! Systems for the nemeses' unit tests.

use crate::system::{GroupState, Member, Members, Membership, NodeView, System, SystemError, Upgrade};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// Nodes that are all down; node 2 will not start the first time it is asked, and will not
/// stop: its stop fails, or with `stuck` the first one never ends. `calls` lists every start and
/// stop asked, in order. A restart on another build stops the node and never starts it (as one
/// the runner's bound cuts off).
#[derive(Default)]
pub(crate) struct Down {
    pub(crate) started: std::sync::Mutex<Vec<u64>>,
    pub(crate) refused: AtomicBool,
    pub(crate) stuck: AtomicBool,
    pub(crate) calls: std::sync::Mutex<Vec<String>>,
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
        self.calls.lock().unwrap().push(format!("start {node}"));
        if node == 2 && !self.refused.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return Err(SystemError::Process { node, message: "no room".into() });
        }
        self.started.lock().unwrap().push(node);
        Ok(())
    }
    async fn is_running(&self, node: u64) -> bool {
        self.started.lock().unwrap().contains(&node)
    }
    fn upgrade(&self) -> Option<&dyn Upgrade> {
        Some(self)
    }
    async fn stop(&self, node: u64) -> Result<(), SystemError> {
        self.calls.lock().unwrap().push(format!("stop {node}"));
        if node == 2 {
            if self.stuck.swap(false, std::sync::atomic::Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            return Err(SystemError::Process { node, message: "no answer".into() });
        }
        self.started.lock().unwrap().retain(|n| *n != node);
        Ok(())
    }
}

#[async_trait]
impl Upgrade for Down {
    async fn restart_on(&self, node: u64, _: &std::path::Path) -> Result<(), SystemError> {
        self.started.lock().unwrap().retain(|n| *n != node);
        std::future::pending().await
    }
    fn binary(&self, _: u64) -> Option<std::path::PathBuf> {
        Some("old".into())
    }
}

/// A leader (node 1, commit index 10) and learner 4, whose promotes answer from a script, one
/// answer per ask (an empty script answers "not now").
#[derive(Default)]
pub(crate) struct Promotes {
    pub(crate) answers: std::sync::Mutex<std::collections::VecDeque<Result<Option<u64>, SystemError>>>,
    pub(crate) asked: std::sync::atomic::AtomicUsize,
}

impl Promotes {
    pub(crate) fn answering(answers: Vec<Result<Option<u64>, SystemError>>) -> Promotes {
        Promotes { answers: std::sync::Mutex::new(answers.into()), ..Promotes::default() }
    }
}

#[async_trait]
impl System for Promotes {
    fn name(&self) -> &'static str {
        "promotes"
    }
    fn nodes(&self) -> Vec<u64> {
        vec![1, 2, 3, 4]
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
        let group = |role: &str| GroupState {
            role: role.into(),
            leader_id: 1,
            term: 2,
            commit_index: 10,
            applied_index: 10,
            ..GroupState::default()
        };
        let view = |id, role| NodeView { id, groups: vec![group(role)], ..NodeView::default() };
        [(1, view(1, "leader")), (4, view(4, "learner"))].into()
    }
    fn membership(&self) -> Option<&dyn Membership> {
        Some(self)
    }
}

#[async_trait]
impl Membership for Promotes {
    fn spares(&self) -> Vec<u64> {
        Vec::new()
    }
    async fn add_learner(&self, node: u64) -> Result<(), SystemError> {
        Err(SystemError::UnknownNode(node))
    }
    async fn promote(&self, node: u64, _: u64) -> Result<Option<u64>, SystemError> {
        self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let next = self.answers.lock().unwrap().pop_front();
        next.unwrap_or_else(|| Err(SystemError::Unavailable { node, message: "no leader".into() }))
    }
    async fn remove(&self, _: u64) -> Result<(), SystemError> {
        Ok(())
    }
    async fn members(&self) -> Result<Members, SystemError> {
        let member = |id, learner| Member { id, learner, match_index: 10, applied_index: Some(10), snapshot: false };
        Ok(Members { leader: 1, commit_index: 10, members: vec![member(1, false), member(4, true)] })
    }
}
