//! An in-memory [`ContainerRuntime`] for the scheduler simulator's hollow nodes and
//! for unit tests: containers "run" until killed or until a test makes them exit.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use super::{ContainerRuntime, ContainerState, CreateRequest, ExitStatus, RuntimeError, Status};

#[derive(Debug, Clone)]
struct FakeContainer {
    state: ContainerState,
    args: Vec<String>,
}

/// A runtime whose containers are entries in a map.
#[derive(Debug, Default)]
pub struct FakeRuntime {
    containers: Mutex<BTreeMap<String, FakeContainer>>,
    next_pid: Mutex<u32>,
}

impl FakeRuntime {
    /// An empty fake runtime.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes container `id` exit with `code` (as if its process ended).
    pub fn exit(&self, id: &str, code: i32) {
        let mut all = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = all.get_mut(id) {
            c.state = ContainerState {
                status: Status::Stopped,
                pid: None,
                exit: Some(ExitStatus {
                    code,
                    signal: None,
                    finished_at: SystemTime::now(),
                }),
            };
        }
    }

    /// The argv a container was created with.
    pub fn args(&self, id: &str) -> Option<Vec<String>> {
        let all = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        all.get(id).map(|c| c.args.clone())
    }
}

impl ContainerRuntime for FakeRuntime {
    fn name(&self) -> &str {
        "fake"
    }

    fn create(&self, request: &CreateRequest) -> Result<u32, RuntimeError> {
        let mut pid = self.next_pid.lock().unwrap_or_else(|e| e.into_inner());
        *pid += 1;
        let args = request
            .spec
            .process()
            .as_ref()
            .and_then(|p| p.args().clone())
            .unwrap_or_default();
        let state = ContainerState {
            status: Status::Created,
            pid: Some(1000 + *pid),
            exit: None,
        };
        let mut all = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        all.insert(request.id.clone(), FakeContainer { state, args });
        Ok(1000 + *pid)
    }

    fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let mut all = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        match all.get_mut(id) {
            Some(c) if c.state.status == Status::Created => {
                c.state.status = Status::Running;
                Ok(())
            }
            _ => Err(RuntimeError::Command {
                command: format!("fake start {id}"),
                message: "container not created".into(),
            }),
        }
    }

    fn state(&self, id: &str) -> Result<Option<ContainerState>, RuntimeError> {
        let all = self.containers.lock().unwrap_or_else(|e| e.into_inner());
        Ok(all.get(id).map(|c| c.state.clone()))
    }

    fn kill(&self, id: &str, signal: i32) -> Result<(), RuntimeError> {
        let running = self.state(id)?.is_some_and(|s| s.status != Status::Stopped);
        if running {
            self.exit(id, 128 + signal);
            let mut all = self.containers.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(exit) = all.get_mut(id).and_then(|c| c.state.exit.as_mut()) {
                exit.signal = Some(signal);
            }
        }
        Ok(())
    }

    fn delete(&self, id: &str) -> Result<(), RuntimeError> {
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
        Ok(())
    }

    fn list(&self) -> Result<Vec<String>, RuntimeError> {
        Ok(self
            .containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect())
    }
}
