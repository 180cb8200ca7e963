//! Tunables of every planner as one config section (`planner_settings:`, the same struct in the
//! control config, the scenario and `loadshift sim --planner-settings`), every field defaulting
//! to its paper's value, and [`build_with`] to build any registered planner with them.
//!
//! ```yaml
//! planner_settings:
//!   interval_ms: 5000            # optional: every planner's period instead of its own
//!   shift: { eta: 0.5, interval_ms: 5000, floor_fraction: 0.1, max_step: 0.5, min_samples: 20,
//!            reprobe_after: 6, deadband: 0.05 }
//!   shift_pure: { eta: 0.2 }     # imbres-shift-pure: the paper's values
//!   connect: { cap_per_downstream: 10, seed: 0 }
//!   table: { interference_buckets: 4, interference_max: 0.8, load_buckets: 4, target_cpu: 0.5 }
//!   table_store: { kind: redb, path: /var/lib/loadshift/perf.redb }
//!   random_partial: { seed: 0, per_caller: 10 }
//!   inner_pick: p2c-ewma         # imbres-shift's pick inside its shares; or hot-cold (Prequal)
//!   objective: { model: models/mesh.objective.json, levels: 6, steepness: 10, seed: 1 }
//! ```

use std::path::PathBuf;

use loadshift_core::shift::{ShiftError, ShiftParams};
use serde::{Deserialize, Serialize};

use super::{
    Connections, ImbresConnect, ImbresShift, ObjectivePlanner, ObjectiveSettings, RandomPlanner,
    UnknownPlanner, build_plain, imbres_connect::ConnectParams, imbres_shift::InnerPick,
    perf_table::TableParams,
};
use crate::{BadSetting, Planner};

/// Planner tunables (defaults: the papers').
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlannerSettings {
    /// Period of every planner, milliseconds, instead of its own (the Alg. 1 planners' is
    /// `shift.interval_ms`, every other planner's 5000). Default: each planner's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval_ms: Option<u64>,
    /// Imbres Alg. 1, for `imbres-shift`, `imbres-connect`, `full` and `random-partial`
    /// (default [`ShiftParams::default`]: `eta` 0.5, the paper's 0.2 converged too slowly, see
    /// `loadshift_core::shift`).
    pub shift: ShiftParams,
    /// Imbres Alg. 1 for `imbres-shift-pure`, the paper's variant (default
    /// [`ShiftParams::paper`]: `eta` 0.2).
    #[serde(default = "ShiftParams::paper")]
    pub shift_pure: ShiftParams,
    /// `imbres-connect` grouping and matching.
    pub connect: ConnectSettings,
    /// Performance hash table shape.
    pub table: TableParams,
    /// Where the performance hash table is kept. Default: memory only.
    pub table_store: TableStoreConfig,
    /// `random-partial` baseline.
    pub random_partial: RandomPartialSettings,
    /// How `imbres-shift`'s callers pick inside its host shares: `p2c-ewma` (weighted P2C over
    /// Peak-EWMA) or `hot-cold` (Prequal's rule over the endpoints' reported load). Default
    /// `p2c-ewma` (the two measured in `docs/balancing.md`).
    pub inner_pick: InnerPick,
    /// `objective` and `random` (Samani & Stadler): the model file, levels per action
    /// dimension, the reward's steepness, `random`'s seed.
    pub objective: ObjectiveSettings,
}

impl Default for PlannerSettings {
    fn default() -> Self {
        Self {
            interval_ms: None,
            shift: ShiftParams::default(),
            shift_pure: ShiftParams::paper(),
            connect: ConnectSettings::default(),
            table: TableParams::default(),
            table_store: TableStoreConfig::default(),
            random_partial: RandomPartialSettings::default(),
            inner_pick: InnerPick::default(),
            objective: ObjectiveSettings::default(),
        }
    }
}

/// `imbres-connect` settings besides Alg. 1 and the table.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectSettings {
    /// Connections per downstream container per service pair (paper: 10).
    pub cap_per_downstream: u32,
    /// k-means++ seed (default 0).
    pub seed: u64,
}

impl Default for ConnectSettings {
    fn default() -> Self {
        let p = ConnectParams::default();
        Self {
            cap_per_downstream: p.cap_per_downstream,
            seed: p.seed,
        }
    }
}

/// `random-partial` settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RandomPartialSettings {
    /// Seed of the random choice (default 0).
    pub seed: u64,
    /// Containers per caller (paper's baseline: 10).
    pub per_caller: usize,
}

impl Default for RandomPartialSettings {
    fn default() -> Self {
        Self {
            seed: 0,
            per_caller: 10,
        }
    }
}

/// Performance-table persistence.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TableStoreConfig {
    /// Not persisted (default).
    #[default]
    Memory,
    /// An embedded redb file, created if missing.
    Redb { path: PathBuf },
    /// A Redis hash shared by control-plane replicas.
    Redis {
        /// `redis://host:port/db`.
        url: String,
        /// Hash key (default `loadshift:perf_table:v1`).
        #[serde(default)]
        key: Option<String>,
        /// Connect and command timeout in milliseconds (default 2000).
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
}

/// Why a planner could not be built from settings.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Unknown(#[from] UnknownPlanner),
    #[error("planner_settings.{0}")]
    Bad(#[from] BadSetting),
}

impl PlannerSettings {
    /// Checks every tunable; the error's field is the path below `planner_settings`.
    pub fn validate(&self) -> Result<(), BadSetting> {
        if self.interval_ms == Some(0) {
            return Err(BadSetting {
                field: "interval_ms".into(),
                value: "0".into(),
                reason: "must be > 0".into(),
            });
        }
        for (section, p) in [("shift", &self.shift), ("shift_pure", &self.shift_pure)] {
            p.validate().map_err(
                |ShiftError::Param {
                     field,
                     value,
                     reason,
                 }| BadSetting {
                    field: format!("{section}.{field}"),
                    value: value.to_string(),
                    reason: reason.to_string(),
                },
            )?;
        }
        Ok(())
    }
}

/// Builds planner `name` with `s`; planners without tunables are built as [`build`] does.
pub fn build_with(name: &str, s: &PlannerSettings) -> Result<Box<dyn Planner>, SettingsError> {
    s.validate()?;
    Ok(match name {
        "imbres-shift" => Box::new(ImbresShift::new(s.shift).inner_pick(s.inner_pick)),
        "imbres-shift-pure" => Box::new(ImbresShift::pure(s.shift_pure)),
        "full" => Box::new(Connections::full(s.shift)),
        "random-partial" => Box::new(Connections::random_partial(
            s.shift,
            s.random_partial.seed,
            s.random_partial.per_caller,
        )),
        "imbres-connect" => {
            let params = ConnectParams {
                cap_per_downstream: s.connect.cap_per_downstream,
                seed: s.connect.seed,
                shift: s.shift,
                table: s.table,
            };
            Box::new(ImbresConnect::new(params))
        }
        "objective" => Box::new(ObjectivePlanner::new(
            std::sync::Arc::new(s.objective.load_model()?),
            s.objective.clone(),
        )),
        "random" => Box::new(RandomPlanner::new(s.objective.clone())),
        other => build_plain(other)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_section_parses_with_paper_defaults() {
        let s: PlannerSettings = serde_yaml_ng::from_str(
            "shift: { eta: 0.3 }\ntable_store: { kind: redb, path: /tmp/x.redb }\n",
        )
        .unwrap();
        assert_eq!(s.shift.eta, 0.3);
        assert_eq!(s.shift.interval_ms, 5000);
        assert_eq!(s.shift_pure, ShiftParams::paper());
        assert_eq!(PlannerSettings::default().shift.eta, 0.5);
        let s2: PlannerSettings = serde_yaml_ng::from_str("shift_pure: { eta: 0.4 }\n").unwrap();
        assert_eq!((s2.shift_pure.eta, s2.shift_pure.interval_ms), (0.4, 5000));
        assert_eq!(s.connect.cap_per_downstream, 10);
        assert_eq!(s.table.interference_buckets, 4);
        assert_eq!(s.random_partial.per_caller, 10);
        assert_eq!(s.inner_pick, InnerPick::P2cEwma);
        let hc: PlannerSettings = serde_yaml_ng::from_str("inner_pick: hot-cold\n").unwrap();
        assert_eq!(hc.inner_pick, InnerPick::HotCold);
        assert_eq!(
            s.table_store,
            TableStoreConfig::Redb {
                path: "/tmp/x.redb".into()
            }
        );
        assert!(serde_yaml_ng::from_str::<PlannerSettings>("shfit: {}\n").is_err());
        assert!(serde_yaml_ng::from_str::<PlannerSettings>("table_store: { kind: s3 }\n").is_err());
    }

    #[test]
    fn builds_every_planner() {
        for &name in super::super::NAMES {
            if super::super::NEED_FILES.contains(&name) {
                let e = build_with(name, &PlannerSettings::default()).err().unwrap();
                assert!(
                    e.to_string().contains("planner_settings.objective.model"),
                    "{e}"
                );
                continue;
            }
            assert_eq!(
                build_with(name, &PlannerSettings::default())
                    .unwrap()
                    .name(),
                name
            );
        }
        let bad = PlannerSettings {
            shift: ShiftParams {
                eta: 0.0,
                ..Default::default()
            },
            ..Default::default()
        };
        let e = build_with("imbres-shift", &bad).err().unwrap().to_string();
        assert!(e.contains("planner_settings.shift.eta"), "{e}");
        assert!(build_with("nope", &PlannerSettings::default()).is_err());
    }
}
