//! The child process: started, killed with SIGKILL, reaped.

use tokio::process::{Child, Command};

use crate::ChaosError;

/// The running child of a chaos run (killed if dropped).
#[derive(Debug)]
pub struct Running {
    child: Child,
    cycle: u32,
}

impl Running {
    pub(crate) fn spawn(mut command: Command, cycle: u32) -> Result<Running, ChaosError> {
        let child = command
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| ChaosError::Spawn { cycle, source })?;
        Ok(Running { child, cycle })
    }

    /// The child's process id (`None` once reaped).
    pub fn id(&self) -> Option<u32> {
        self.child.id()
    }

    /// The start this child is: 0 for the first, `n` for the restart after kill `n`.
    pub fn cycle(&self) -> u32 {
        self.cycle
    }

    /// `Err` if the child has exited by itself.
    pub fn check_alive(&mut self) -> Result<(), ChaosError> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(ChaosError::Exited {
                cycle: self.cycle,
                status,
            }),
            Ok(None) => Ok(()),
            Err(e) => Err(ChaosError::Kill(e)),
        }
    }

    /// Kills the child now (SIGKILL on Unix) and reaps it; `Err` if it had exited by itself.
    pub(crate) async fn kill_now(&mut self, cycle: u32) -> Result<(), ChaosError> {
        self.check_alive().map_err(|e| match e {
            ChaosError::Exited { status, .. } => ChaosError::Exited { cycle, status },
            e => e,
        })?;
        self.child.start_kill().map_err(ChaosError::Kill)?;
        self.child.wait().await.map_err(ChaosError::Kill)?;
        Ok(())
    }

    /// Kills the child (SIGKILL) and reaps it: the end of a run, after the checks.
    pub async fn kill(mut self) -> Result<(), ChaosError> {
        if self.child.try_wait().map_err(ChaosError::Kill)?.is_none() {
            self.child.start_kill().map_err(ChaosError::Kill)?;
            self.child.wait().await.map_err(ChaosError::Kill)?;
        }
        Ok(())
    }
}
