//! The embedded performance-table store: one `redb` database file, crash-safe (ACID commits),
//! one row per service holding its [`StoredTable`] as JSON.

use std::{collections::BTreeMap, path::Path};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use loadshift_policy::{
    planners::perf_table::StoredTable,
    store::{StoreError, TableStore},
};

use super::{decode, encode};

/// Service name -> JSON of its [`StoredTable`].
const TABLES: TableDefinition<'_, &str, &str> = TableDefinition::new("perf_table_v1");

/// The embedded store: one `redb` file.
pub struct RedbStore {
    db: Database,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

fn redb_err(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Backend {
        store: "redb",
        message: e.into().to_string(),
    }
}

impl RedbStore {
    /// Opens the database at `path`, creating the file and its table if needed.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(redb_err)?;
        // Creating the table up front lets reads of a fresh file see an empty table.
        let txn = db.begin_write().map_err(redb_err)?;
        txn.open_table(TABLES).map_err(redb_err)?;
        txn.commit().map_err(redb_err)?;
        Ok(Self { db })
    }
}

impl TableStore for RedbStore {
    fn load_all(&mut self) -> Result<BTreeMap<String, StoredTable>, StoreError> {
        let txn = self.db.begin_read().map_err(redb_err)?;
        let t = txn.open_table(TABLES).map_err(redb_err)?;
        let mut out = BTreeMap::new();
        for row in t.iter().map_err(redb_err)? {
            let (k, v) = row.map_err(redb_err)?;
            let service = k.value().to_string();
            let table = decode(&service, v.value())?;
            out.insert(service, table);
        }
        Ok(out)
    }

    fn save(&mut self, tables: &[(String, StoredTable)]) -> Result<(), StoreError> {
        let encoded: Vec<(&str, String)> = tables
            .iter()
            .map(|(s, t)| Ok((s.as_str(), encode(s, t)?)))
            .collect::<Result<_, StoreError>>()?;
        let txn = self.db.begin_write().map_err(redb_err)?;
        {
            let mut t = txn.open_table(TABLES).map_err(redb_err)?;
            for (service, json) in &encoded {
                t.insert(*service, json.as_str()).map_err(redb_err)?;
            }
        }
        txn.commit().map_err(redb_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loadshift_policy::{
        planners::perf_table::{Interference, PerfTable, ServiceTable, TableParams},
        store::{persist, restore},
    };

    fn learned() -> PerfTable {
        let mut t = PerfTable::new(TableParams {
            max_load_rps: Some(100.0),
            ..Default::default()
        });
        let cpu = |u| Interference {
            cpu: u,
            membw: 0.0,
            net: 0.0,
        };
        t.record("a", cpu(0.1), 10.0, 10.0, 50);
        t.record("a", cpu(0.1), 90.0, 40.0, 50);
        t.record("b", cpu(0.7), 30.0, 80.0, 5);
        t
    }

    #[test]
    fn redb_round_trip_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("perf.redb");
        let mut table = learned();
        {
            let mut store = RedbStore::open(&path).unwrap();
            assert!(
                store.load_all().unwrap().is_empty(),
                "fresh file reads empty"
            );
            assert_eq!(persist(&mut table, &mut store).unwrap(), 2);
            assert_eq!(persist(&mut table, &mut store).unwrap(), 0, "nothing new");
        }
        // A new process: reopen the file and restore.
        let mut store = RedbStore::open(&path).unwrap();
        let mut restored = PerfTable::new(*table.params());
        assert_eq!(restore(&mut restored, &mut store).unwrap(), 2);
        assert_eq!(restored.service("a"), table.service("a"));
        assert_eq!(restored.service("b"), table.service("b"));
        let cpu = Interference {
            cpu: 0.1,
            membw: 0.0,
            net: 0.0,
        };
        let got = restored.lookup("a", cpu, 40.0).unwrap();
        assert!((got - 21.0).abs() < 1e-9, "{got}");
        // Later updates overwrite the stored row.
        restored.record("b", cpu, 30.0, 1.0, 5);
        persist(&mut restored, &mut store).unwrap();
        let again = store.load_all().unwrap();
        assert_eq!(
            ServiceTable::from_stored(&again["b"]),
            *restored.service("b").unwrap()
        );
    }

    #[test]
    fn corrupt_rows_are_reported_with_the_service() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RedbStore::open(&dir.path().join("perf.redb")).unwrap();
        let txn = store.db.begin_write().unwrap();
        txn.open_table(TABLES)
            .unwrap()
            .insert("broken", "{not json")
            .unwrap();
        txn.commit().unwrap();
        let e = store.load_all().unwrap_err().to_string();
        assert!(e.contains("broken"), "{e}");
    }
}
