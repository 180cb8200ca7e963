//! Every `--help` that takes a planner or a scaler lists the registered names, one line each.

mod common;

use std::process::Command;

fn help(args: &[&str]) -> String {
    let out = Command::new(common::bin())
        .args(args)
        .arg("--help")
        .output()
        .expect("loadshift runs");
    assert!(out.status.success(), "{args:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `name` starts a line of `text` (after indentation) followed by its description.
fn listed(text: &str, name: &str) -> bool {
    text.lines().any(|l| {
        l.trim_start()
            .strip_prefix(name)
            .is_some_and(|rest| rest.starts_with("  ") && !rest.trim().is_empty())
    })
}

#[test]
fn planner_and_scaler_arguments_list_the_names() {
    let planners = loadshift_policy::planners::NAMES;
    let scalers = loadshift_policy::scalers::NAMES;
    for (args, want_planners, want_scalers) in [
        (&["sim"][..], true, true),
        (&["lab"][..], true, true),
        (&["ctl", "objective", "set"][..], true, true),
    ] {
        let text = help(args);
        if want_planners {
            for p in planners {
                assert!(
                    listed(&text, p),
                    "{args:?} --help lacks planner {p}:\n{text}"
                );
            }
        }
        if want_scalers {
            for s in scalers {
                assert!(
                    listed(&text, s),
                    "{args:?} --help lacks scaler {s}:\n{text}"
                );
            }
        }
    }
    assert!(listed(&help(&["sim"]), "hpa-best"));
}
