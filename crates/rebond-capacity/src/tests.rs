use super::*;

const POLICY: ScalingPolicy = ScalingPolicy { sessions_per_node: 100, target_utilization: 0.8, min_nodes: 4, max_nodes: 80 };

#[test]
fn desired_nodes_follow_sessions_within_bounds() {
    assert_eq!(POLICY.desired_nodes(0), 4);
    assert_eq!(POLICY.desired_nodes(320), 4);
    assert_eq!(POLICY.desired_nodes(321), 5);
    assert_eq!(POLICY.desired_nodes(6400), 80);
    assert_eq!(POLICY.desired_nodes(1_000_000), 80);
}

#[test]
fn scale_in_drains_the_least_loaded_and_waits() {
    let nodes = [
        Node { sessions: 30, draining: false },
        Node { sessions: 5, draining: false },
        Node { sessions: 40, draining: false },
        Node { sessions: 2, draining: false },
        Node { sessions: 9, draining: false },
        Node { sessions: 1, draining: false },
    ];
    let d = decide(&POLICY, &nodes);
    assert_eq!(d.drain, vec![3, 5], "87 sessions need 4 nodes: drain the two emptiest");
    let mut during = nodes;
    during[3].draining = true;
    during[5].draining = true;
    during[4].sessions = 0; // even if another node empties meanwhile…
    assert_eq!(decide(&POLICY, &during), Decision::default(), "…no further drain while one is under way");
    during[3].sessions = 0;
    during[5].sessions = 0;
    assert_eq!(decide(&POLICY, &during).retire, vec![3, 5], "retired only when empty");
}

/// A day: a morning rush from 0 to 6,000 sessions in an hour, a plateau, an evening
/// drain. The load balancer sends each new person to the least loaded ready node;
/// nodes take a minute to start; people leave at random (deterministically here).
#[test]
fn a_day_of_morning_rush_and_evening_drain() {
    struct Sim {
        nodes: Vec<Node>,
        starting: Vec<u32>, // minutes left before a new node is ready
        refused: u64,
        max_nodes_seen: usize,
        retired_with_sessions: u64,
    }
    let mut sim = Sim { nodes: vec![Node { sessions: 0, draining: false }; 4], starting: vec![], refused: 0, max_nodes_seen: 4, retired_with_sessions: 0 };
    let mut rng = 0x2545_f491_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let target = |minute: u32| -> u64 {
        match minute {
            0..=59 => u64::from(minute) * 100,      // rush: +100 per minute
            60..=479 => 6000,                       // the working day
            480..=599 => u64::from(599 - minute) * 50, // evening
            _ => 0,
        }
    };
    for minute in 0..660 {
        // Nodes come up.
        for s in &mut sim.starting {
            *s = s.saturating_sub(1);
        }
        let ready = sim.starting.iter().filter(|s| **s == 0).count();
        sim.starting.retain(|s| *s > 0);
        sim.nodes.extend(std::iter::repeat_n(Node { sessions: 0, draining: false }, ready));

        // People come and go.
        let now: u64 = sim.nodes.iter().map(|n| u64::from(n.sessions)).sum();
        let want = target(minute);
        if want > now {
            for _ in 0..want - now {
                let best = sim
                    .nodes
                    .iter_mut()
                    .filter(|n| !n.draining && n.sessions < POLICY.sessions_per_node)
                    .min_by_key(|n| n.sessions);
                match best {
                    Some(n) => n.sessions += 1,
                    None => sim.refused += 1,
                }
            }
        } else {
            for _ in 0..now - want {
                let busy: Vec<usize> = (0..sim.nodes.len()).filter(|&i| sim.nodes[i].sessions > 0).collect();
                let i = busy[(next() % busy.len() as u64) as usize];
                sim.nodes[i].sessions -= 1;
            }
        }

        // The rule decides; the orchestrator obeys.
        let d = decide(&POLICY, &sim.nodes);
        sim.starting.extend(std::iter::repeat_n(1, d.add as usize));
        for &i in &d.drain {
            sim.nodes[i].draining = true;
        }
        for &i in d.retire.iter().rev() {
            sim.retired_with_sessions += u64::from(sim.nodes[i].sessions);
            sim.nodes.remove(i);
        }
        assert!(sim.nodes.len() + sim.starting.len() <= 80);
        sim.max_nodes_seen = sim.max_nodes_seen.max(sim.nodes.len());
    }
    assert_eq!(sim.retired_with_sessions, 0, "nobody is cut off by scale-in");
    assert_eq!(sim.refused, 0, "the rush is absorbed by the headroom while nodes start");
    assert!(sim.max_nodes_seen >= 75, "the peak reaches {} nodes (6,000 sessions at 80 per node)", sim.max_nodes_seen);
    assert_eq!(sim.nodes.iter().filter(|n| !n.draining).count(), 4, "back to the minimum at night");
}
