//! Instance events: spot interruptions, rebalance recommendations,
//! scheduled maintenance and Auto Scaling lifecycle states.
//!
//! An event is stored on its own (not in the instance record) so scheduling
//! one never races with option changes. What the metadata tree shows for an
//! event depends on the time: hidden before `visible_from`, then current;
//! maintenance moves to history when completed or canceled; other kinds
//! disappear when canceled. [`InstanceEvent::next_change_after`] tells the
//! agent when to render again.

use crate::ids::InstanceId;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An event value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidEvent(pub String);

/// What happens to an interrupted Spot Instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpotAction {
    /// `hibernate`
    Hibernate,
    /// `stop`
    Stop,
    /// `terminate`
    Terminate,
}

impl SpotAction {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hibernate => "hibernate",
            Self::Stop => "stop",
            Self::Terminate => "terminate",
        }
    }
}

impl FromStr for SpotAction {
    type Err = InvalidEvent;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "hibernate" => Ok(Self::Hibernate),
            "stop" => Ok(Self::Stop),
            "terminate" => Ok(Self::Terminate),
            _ => {
                Err(InvalidEvent(format!("invalid spot action '{s}': expected hibernate, stop or terminate")))
            }
        }
    }
}

/// Scheduled-event codes (EC2 `EventCode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MaintenanceCode {
    /// `instance-reboot`
    InstanceReboot,
    /// `system-reboot`
    SystemReboot,
    /// `system-maintenance`
    SystemMaintenance,
    /// `instance-retirement`
    InstanceRetirement,
    /// `instance-stop`
    InstanceStop,
}

impl MaintenanceCode {
    /// Wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InstanceReboot => "instance-reboot",
            Self::SystemReboot => "system-reboot",
            Self::SystemMaintenance => "system-maintenance",
            Self::InstanceRetirement => "instance-retirement",
            Self::InstanceStop => "instance-stop",
        }
    }

    /// The description EC2 uses when none is given.
    pub fn default_description(self) -> &'static str {
        match self {
            Self::InstanceReboot => "scheduled reboot",
            Self::SystemReboot => "scheduled reboot",
            Self::SystemMaintenance => "scheduled maintenance",
            Self::InstanceRetirement => "scheduled retirement",
            Self::InstanceStop => "scheduled stop",
        }
    }
}

impl FromStr for MaintenanceCode {
    type Err = InvalidEvent;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "instance-reboot" => Ok(Self::InstanceReboot),
            "system-reboot" => Ok(Self::SystemReboot),
            "system-maintenance" => Ok(Self::SystemMaintenance),
            "instance-retirement" => Ok(Self::InstanceRetirement),
            "instance-stop" => Ok(Self::InstanceStop),
            _ => Err(InvalidEvent(format!(
                "invalid maintenance code '{s}': expected instance-reboot, system-reboot, system-maintenance, instance-retirement or instance-stop"
            ))),
        }
    }
}

/// Auto Scaling target lifecycle states.
pub const LIFECYCLE_STATES: &[&str] = &[
    "Detached",
    "InService",
    "Standby",
    "Terminated",
    "Warmed:Hibernated",
    "Warmed:Running",
    "Warmed:Stopped",
    "Warmed:Terminated",
];

/// What the event is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum EventKind {
    /// `spot/instance-action` (and `spot/termination-time` for terminate).
    SpotInterruption {
        /// What will happen.
        action: SpotAction,
        /// When, Unix seconds.
        time: u64,
    },
    /// `events/recommendations/rebalance`.
    Rebalance {
        /// When the signal was emitted, Unix seconds.
        notice_time: u64,
    },
    /// `events/maintenance/scheduled`, later `history`.
    Maintenance {
        /// Event code.
        code: MaintenanceCode,
        /// Free text.
        description: String,
        /// Earliest start, Unix seconds.
        not_before: u64,
        /// Latest end, Unix seconds; completed after it.
        not_after: Option<u64>,
        /// Rescheduling deadline, Unix seconds.
        not_before_deadline: Option<u64>,
    },
    /// `autoscaling/target-lifecycle-state`.
    TargetLifecycleState {
        /// One of [`LIFECYCLE_STATES`].
        state: String,
    },
}

impl EventKind {
    /// Short name of the kind, as the CLI and API spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::SpotInterruption { .. } => "spot-interruption",
            Self::Rebalance { .. } => "rebalance",
            Self::Maintenance { .. } => "maintenance",
            Self::TargetLifecycleState { .. } => "target-lifecycle-state",
        }
    }

    /// Checks values that serde cannot.
    pub fn validate(&self) -> Result<(), InvalidEvent> {
        match self {
            Self::TargetLifecycleState { state } if !LIFECYCLE_STATES.contains(&state.as_str()) => {
                Err(InvalidEvent(format!(
                    "invalid lifecycle state '{state}': expected one of {}",
                    LIFECYCLE_STATES.join(", ")
                )))
            }
            Self::Maintenance { not_before, not_after: Some(after), .. } if after < not_before => {
                Err(InvalidEvent("not_after must not be before not_before".to_owned()))
            }
            Self::Maintenance { description, .. } if description.len() > 1024 => {
                Err(InvalidEvent("description is longer than 1024 bytes".to_owned()))
            }
            _ => Ok(()),
        }
    }
}

/// Where an event stands at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventPhase {
    /// Scheduled to appear later.
    Hidden,
    /// Shown as current.
    Active,
    /// Maintenance that ended (history, `[Completed]`).
    Completed,
    /// Canceled (maintenance: history, `[Canceled]`; others: gone).
    Canceled,
}

/// One event of one instance, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceEvent {
    /// `instance-event-` + 17 hex digits.
    pub event_id: String,
    /// The instance.
    pub instance_id: InstanceId,
    /// What it is.
    #[serde(flatten)]
    pub kind: EventKind,
    /// Shown from this time on, Unix seconds (a delay at scheduling).
    pub visible_from: u64,
    /// When it was canceled, if it was.
    #[serde(default)]
    pub canceled_at: Option<u64>,
}

impl InstanceEvent {
    /// The phase at `now` (Unix seconds).
    pub fn phase(&self, now: u64) -> EventPhase {
        if self.canceled_at.is_some_and(|c| c <= now) {
            return EventPhase::Canceled;
        }
        if now < self.visible_from {
            return EventPhase::Hidden;
        }
        match &self.kind {
            EventKind::Maintenance { not_after: Some(after), .. } if now >= *after => EventPhase::Completed,
            _ => EventPhase::Active,
        }
    }

    /// The next time after `now` at which [`Self::phase`] changes, if any.
    pub fn next_change_after(&self, now: u64) -> Option<u64> {
        let mut candidates = vec![self.visible_from];
        if let EventKind::Maintenance { not_after: Some(after), .. } = &self.kind {
            candidates.push(*after);
        }
        if let Some(c) = self.canceled_at {
            candidates.push(c);
        }
        candidates.into_iter().filter(|t| *t > now).min()
    }
}

impl fmt::Display for EventPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Hidden => "scheduled",
            Self::Active => "active",
            Self::Completed => "completed",
            Self::Canceled => "canceled",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: EventKind, visible_from: u64) -> InstanceEvent {
        InstanceEvent {
            event_id: "instance-event-0d59937288b749b32".into(),
            instance_id: InstanceId::parse("i-1234567890abcdef0").unwrap(),
            kind,
            visible_from,
            canceled_at: None,
        }
    }

    #[test]
    fn maintenance_goes_hidden_active_completed() {
        let e = event(
            EventKind::Maintenance {
                code: MaintenanceCode::SystemReboot,
                description: "scheduled reboot".into(),
                not_before: 200,
                not_after: Some(300),
                not_before_deadline: None,
            },
            100,
        );
        assert_eq!(e.phase(99), EventPhase::Hidden);
        assert_eq!(e.next_change_after(99), Some(100));
        assert_eq!(e.phase(100), EventPhase::Active);
        assert_eq!(e.next_change_after(100), Some(300));
        assert_eq!(e.phase(300), EventPhase::Completed);
        assert_eq!(e.next_change_after(300), None);
    }

    #[test]
    fn cancel_wins_over_everything() {
        let mut e = event(EventKind::Rebalance { notice_time: 5 }, 0);
        e.canceled_at = Some(10);
        assert_eq!(e.phase(9), EventPhase::Active);
        assert_eq!(e.phase(10), EventPhase::Canceled);
    }

    #[test]
    fn json_shape_is_flat_and_tagged() {
        let e = event(EventKind::SpotInterruption { action: SpotAction::Terminate, time: 7 }, 1);
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["kind"], "spot-interruption");
        assert_eq!(json["action"], "terminate");
        let back: InstanceEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn unknown_fields_of_a_kind_are_refused() {
        let ok = r#"{"kind":"spot-interruption","action":"stop","time":5}"#;
        assert!(serde_json::from_str::<EventKind>(ok).is_ok());
        let typo = r#"{"kind":"spot-interruption","acton":"stop","time":5}"#;
        let err = serde_json::from_str::<EventKind>(typo).unwrap_err().to_string();
        assert!(err.contains("acton"), "{err}");
        assert!(serde_json::from_str::<EventKind>(r#"{"kind":"meteor"}"#).is_err());
    }

    #[test]
    fn validation() {
        assert!(EventKind::TargetLifecycleState { state: "InService".into() }.validate().is_ok());
        assert!(EventKind::TargetLifecycleState { state: "Flying".into() }.validate().is_err());
        assert!("explode".parse::<SpotAction>().is_err());
        assert!("system-reboot".parse::<MaintenanceCode>().is_ok());
        assert!("reboot".parse::<MaintenanceCode>().is_err());
    }
}
