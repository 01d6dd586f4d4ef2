//! The Kubernetes manifests: valid against the API schemas (offline), and consistent
//! with the gateway's configuration and the scaling rule.

use std::path::Path;

use rebond_capacity::ScalingPolicy;

fn manifests() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes")
}

fn read(name: &str) -> String {
    std::fs::read_to_string(manifests().join(name)).unwrap()
}

/// `key: value` of the first line that has `key:`.
fn value_of(text: &str, key: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .unwrap_or_else(|| panic!("no {key}"))
}

#[test]
fn kubernetes_manifests_are_valid_and_consistent() {
    let files: Vec<String> = std::fs::read_dir(manifests())
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".yaml"))
        .collect();
    assert!(files.len() >= 5);
    let out = std::process::Command::new("python3").args(["-m", "kubernetes_validate", "--strict"]).args(&files).output().expect("kubernetes-validate (scripts/test installs it)");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));

    // The embedded gateway configuration is valid.
    let config_map = read("config.yaml");
    let toml: String = config_map
        .lines()
        .skip_while(|l| !l.contains("rebond.toml: |"))
        .skip(1)
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let config = rebond_gateway::Config::parse(&toml, "config.yaml").unwrap();

    // A pod is given longer to stop than its drain takes.
    let grace: u64 = value_of(&read("deployment.yaml"), "terminationGracePeriodSeconds").parse().unwrap();
    assert!(grace > config.drain_deadline_seconds, "grace {grace} s must exceed the drain deadline");

    // The autoscaler aims at the scaling rule's target and reaches 80 pods.
    let hpa = read("autoscaler.yaml");
    let policy = ScalingPolicy {
        sessions_per_node: config.max_sessions as u32,
        target_utilization: 0.8,
        min_nodes: value_of(&hpa, "minReplicas").parse().unwrap(),
        max_nodes: value_of(&hpa, "maxReplicas").parse().unwrap(),
    };
    let average: f64 = hpa.lines().find_map(|l| l.split("averageValue: \"").nth(1)).unwrap().trim_end_matches(['"', '}', ' ']).parse().unwrap();
    assert_eq!(average, policy.target_sessions_per_node());
    assert_eq!((policy.min_nodes, policy.max_nodes), (4, 80));
    assert_eq!(policy.desired_nodes(6400), 80);
}
