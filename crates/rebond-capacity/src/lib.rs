//! The scaling rule, sans-IO: from the sessions on each gateway node, how many nodes
//! are needed, which to add, and which to drain. Kubernetes (or any orchestrator)
//! carries the decisions out; the same numbers configure its autoscaler
//! (`deploy/kubernetes`: target `sessions_per_node × target_utilization` sessions per pod).
//!
//! INVARIANT: scale-in never cuts anyone off: it only *drains* nodes (no new sessions),
//! and a node is retired only when its last session has ended.
//! INVARIANT: while a drain is under way, no further node is picked for draining.

/// How the fleet should be sized.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScalingPolicy {
    /// Sessions one node accepts (`max_sessions`).
    pub sessions_per_node: u32,
    /// Share of that capacity to fill before adding nodes (headroom for a rush), 0..=1.
    pub target_utilization: f64,
    pub min_nodes: u32,
    pub max_nodes: u32,
}

impl ScalingPolicy {
    /// Sessions per node the autoscaler aims at.
    pub fn target_sessions_per_node(&self) -> f64 {
        (f64::from(self.sessions_per_node) * self.target_utilization.clamp(0.05, 1.0)).max(1.0)
    }

    /// Nodes needed for `sessions`, within the bounds.
    pub fn desired_nodes(&self, sessions: u64) -> u32 {
        let needed = (sessions as f64 / self.target_sessions_per_node()).ceil() as u64;
        needed.clamp(u64::from(self.min_nodes.max(1)), u64::from(self.max_nodes.max(1))) as u32
    }
}

/// What a node reports (its `/metrics` and `/readyz`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    pub sessions: u32,
    pub draining: bool,
}

/// One step's decision.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// Nodes to start.
    pub add: u32,
    /// Nodes (indices) to start draining: the least loaded, so the fewest people wait.
    pub drain: Vec<usize>,
    /// Draining nodes (indices) with no session left: stop them now.
    pub retire: Vec<usize>,
}

/// Decides one step from the current nodes.
pub fn decide(policy: &ScalingPolicy, nodes: &[Node]) -> Decision {
    let sessions: u64 = nodes.iter().map(|n| u64::from(n.sessions)).sum();
    let desired = policy.desired_nodes(sessions);
    let serving: Vec<usize> = (0..nodes.len()).filter(|&i| !nodes[i].draining).collect();
    let retire: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].draining && nodes[i].sessions == 0).collect();
    let draining_busy = nodes.iter().any(|n| n.draining && n.sessions > 0);
    let serving_count = serving.len() as u32;

    let mut decision = Decision { retire, ..Decision::default() };
    if desired > serving_count {
        // Room for a draining node's people is not room for new people: count only serving nodes.
        let total = nodes.len() as u32 - decision.retire.len() as u32;
        decision.add = (desired - serving_count).min(policy.max_nodes.saturating_sub(total));
    } else if desired < serving_count && !draining_busy {
        let mut by_load = serving;
        by_load.sort_by_key(|&i| (nodes[i].sessions, std::cmp::Reverse(i)));
        decision.drain = by_load.into_iter().take((serving_count - desired) as usize).collect();
        decision.drain.sort_unstable();
    }
    decision
}

#[cfg(test)]
mod tests;
