//! The typed outcome of a plugin call, as in kube-scheduler's `framework.Status`.

use std::borrow::Cow;
use std::fmt;

/// What a plugin said about a pod (on a node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// The pod may go ahead.
    Success,
    /// The pod does not fit now; preemption or a cluster change may help.
    Unschedulable,
    /// The pod does not fit and preemption cannot help (only a cluster change).
    UnschedulableAndUnresolvable,
    /// Something went wrong inside the scheduler.
    Error,
}

/// A plugin's verdict: a code, the plugin's name and a human-readable reason.
///
/// Reasons are `Cow<'static, str>` so the common rejections on the hot path (one per
/// node scanned) do not allocate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The verdict.
    pub code: Code,
    /// The plugin that gave it (empty for success).
    pub plugin: &'static str,
    /// Why, for the pod's `PodScheduled` condition and events (empty for success).
    pub reason: Cow<'static, str>,
}

impl Status {
    /// Success.
    pub const fn success() -> Self {
        Status {
            code: Code::Success,
            plugin: "",
            reason: Cow::Borrowed(""),
        }
    }

    /// `Unschedulable` from `plugin` with `reason`.
    pub fn unschedulable(plugin: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Status {
            code: Code::Unschedulable,
            plugin,
            reason: reason.into(),
        }
    }

    /// `UnschedulableAndUnresolvable` from `plugin` with `reason`.
    pub fn unresolvable(plugin: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Status {
            code: Code::UnschedulableAndUnresolvable,
            plugin,
            reason: reason.into(),
        }
    }

    /// `Error` from `plugin` with `reason`.
    pub fn error(plugin: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Status {
            code: Code::Error,
            plugin,
            reason: reason.into(),
        }
    }

    /// Whether the code is `Success`.
    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    /// Whether the code is one of the two unschedulable codes.
    pub fn is_rejected(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable
        )
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_success() {
            return f.write_str("success");
        }
        write!(f, "{}: {}", self.plugin, self.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_plugin() {
        let s = Status::unschedulable("NodeResourcesFit", "insufficient cpu");
        assert!(s.is_rejected());
        assert_eq!(s.to_string(), "NodeResourcesFit: insufficient cpu");
        assert_eq!(Status::success().to_string(), "success");
        assert!(!Status::error("x", "y").is_rejected());
    }
}
