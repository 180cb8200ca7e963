//! The production commands: the data-plane proxy, the control plane, the operator CLI and the
//! simulator. Each reads its config or arguments, refuses bad input with exit code 64 naming the
//! field and the reason, and runs until done or signalled.

pub mod control;
pub mod ctl;
pub mod identity;
pub mod install;
pub mod proxy;
pub mod sim;
pub mod token;

/// Where `token create` writes and what `ctl` reads by default: `loadshift.token` in the working
/// directory, the path `deploy/control.example.yaml` names.
pub const DEFAULT_TOKEN_FILE: &str = "loadshift.token";

/// `lead` and then one line per name of `about`, for an argument's `--help`.
fn names_help(lead: &str, what: &str, about: &[(&str, &str)], extra: &[(&str, &str)]) -> String {
    let w = about
        .iter()
        .chain(extra)
        .map(|(n, _)| n.len())
        .max()
        .unwrap_or(0);
    let mut s = format!("{lead}\n\n{what}:");
    for (name, line) in about.iter().chain(extra) {
        s.push_str(&format!("\n  {name:<w$}  {line}"));
    }
    s
}

/// `--help` of an argument naming planners: `lead`, then every planner with one line.
pub fn planner_help(lead: &str) -> String {
    names_help(lead, "Planners", loadshift_policy::planners::ABOUT, &[])
}

/// `--help` of an argument naming scalers: `lead`, then every scaler with one line.
pub fn scaler_help(lead: &str) -> String {
    names_help(lead, "Scalers", loadshift_policy::scalers::ABOUT, &[])
}

/// [`scaler_help`] with the simulator's tuned HPA baseline.
pub fn sim_scaler_help(lead: &str) -> String {
    names_help(
        lead,
        "Scalers",
        loadshift_policy::scalers::ABOUT,
        &[(
            "hpa-best",
            "the HPA at the target (0.4-0.8) with the fewest container-seconds within the SLA",
        )],
    )
}
