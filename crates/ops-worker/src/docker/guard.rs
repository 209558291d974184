//! The safety rules: containers the worker never touches, whatever it is asked.

use super::error::Refusal;
use super::model::ContainerInfo;

/// Label that marks a container as off limits.
pub const PROTECTED_LABEL: &str = "orion.protected";

/// Why `container` must not be touched, or `None` if the worker may act on it.
///
/// Refused: a container labelled `orion.protected=true` (also `1`/`yes`/`on`, any case), one
/// whose name or image contains `nats` (any case), and the worker's own container (its id starts
/// with `self_id`).
pub fn refusal(container: &ContainerInfo, self_id: Option<&str>) -> Option<Refusal> {
    if container.labels.get(PROTECTED_LABEL).is_some_and(|v| {
        ["true", "1", "yes", "on"]
            .iter()
            .any(|t| v.trim().eq_ignore_ascii_case(t))
    }) {
        return Some(Refusal::ProtectedLabel);
    }
    if let Some(id) = self_id.filter(|id| !id.is_empty()) {
        if container.id.starts_with(id) {
            return Some(Refusal::SelfContainer);
        }
    }
    for (field, value) in [("name", &container.name), ("image", &container.image)] {
        if mentions_nats(value) {
            return Some(Refusal::Nats {
                field,
                value: value.clone(),
            });
        }
    }
    None
}

/// True when `s` contains `nats` in any letter case.
pub fn mentions_nats(s: &str) -> bool {
    s.to_ascii_lowercase().contains("nats")
}
