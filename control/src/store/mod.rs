//! Where the control plane keeps the performance hash table between restarts, chosen by
//! `planner_settings.table_store`: in memory (default), an embedded `redb` file, or a Redis hash
//! shared by control-plane replicas. The stores implement the policy crate's
//! [`TableStore`](loadshift_policy::store::TableStore); the control loop restores the tables when
//! a policy is registered and writes the changed ones after each round.

mod redb;
mod redis;

use std::time::Duration;

use loadshift_policy::{
    planners::{perf_table::StoredTable, settings::TableStoreConfig},
    store::{StoreError, TableStore},
};

pub use self::{
    redb::RedbStore,
    redis::{DEFAULT_KEY, RedisStore},
};

/// Opens the store `cfg` names; `None` for memory.
pub fn open(cfg: &TableStoreConfig) -> Result<Option<Box<dyn TableStore>>, StoreError> {
    Ok(match cfg {
        TableStoreConfig::Memory => None,
        TableStoreConfig::Redb { path } => Some(Box::new(RedbStore::open(path)?)),
        TableStoreConfig::Redis {
            url,
            key,
            timeout_ms,
        } => {
            let key = key.clone().unwrap_or_else(|| DEFAULT_KEY.to_string());
            let timeout = Duration::from_millis(timeout_ms.unwrap_or(2000));
            Some(Box::new(RedisStore::open(url, key, timeout)?))
        }
    })
}

/// Encodes one table as the stores keep it.
fn encode(service: &str, t: &StoredTable) -> Result<String, StoreError> {
    serde_json::to_string(t).map_err(|e| StoreError::Encode {
        service: service.to_string(),
        message: e.to_string(),
    })
}

/// Decodes one stored table.
fn decode(service: &str, text: &str) -> Result<StoredTable, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Decode {
        service: service.to_string(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use loadshift_policy::planners::{NAMES, NEED_FILES, PlannerSettings, build_with};

    use super::*;

    #[test]
    fn builds_every_planner_and_opens_the_configured_store() {
        let dir = tempfile::tempdir().unwrap();
        let s = PlannerSettings {
            table_store: TableStoreConfig::Redb {
                path: dir.path().join("perf.redb"),
            },
            ..Default::default()
        };
        for &name in NAMES.iter().filter(|n| !NEED_FILES.contains(n)) {
            assert_eq!(build_with(name, &s).unwrap().name(), name);
        }
        assert!(open(&s.table_store).unwrap().is_some());
        assert!(dir.path().join("perf.redb").exists());
        assert!(open(&TableStoreConfig::Memory).unwrap().is_none());
    }
}
