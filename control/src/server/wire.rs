//! The operator API's management objective on the wire and as the policies take it. The wire form
//! is flat (a kind and every field); the typed form holds what each kind needs, so a request that
//! misses a field MO3 needs is refused naming it.

use std::collections::BTreeMap;

use loadshift_policy::ManagementObjective;
use loadshift_proto::v1 as pb;

use pb::management_objective::Kind;

/// The typed objective of a request, `None` for a clear; the error names the field and why.
pub(crate) fn management_from_pb(
    m: &pb::ManagementObjective,
) -> Result<Option<ManagementObjective>, String> {
    if m.clear {
        return Ok(None);
    }
    let bounds_ms: BTreeMap<String, f64> = m.max_response_ms.clone().into_iter().collect();
    Ok(Some(match Kind::try_from(m.kind) {
        Ok(Kind::Mo1) => ManagementObjective::Mo1 { bounds_ms },
        Ok(Kind::Mo2) => ManagementObjective::Mo2 {
            bounds_ms,
            utility: m.utility_weight.clone().into_iter().collect(),
        },
        Ok(Kind::Mo3) => ManagementObjective::Mo3 {
            bounds_ms,
            favoured: (!m.favoured_service.is_empty()).then(|| m.favoured_service.clone()),
            protected: m.protected_service.clone(),
            min_carried_rps: m.min_carried_rps,
        },
        Ok(Kind::Unspecified) | Err(_) => {
            return Err(format!(
                "management.kind = {}: expected MO1, MO2 or MO3 (or clear)",
                m.kind
            ));
        }
    }))
}

/// The wire form of an objective.
pub(crate) fn management_to_pb(m: &ManagementObjective) -> pb::ManagementObjective {
    let mut out = pb::ManagementObjective {
        max_response_ms: m.bounds_ms().clone().into_iter().collect(),
        ..Default::default()
    };
    match m {
        ManagementObjective::Mo1 { .. } => out.kind = Kind::Mo1 as i32,
        ManagementObjective::Mo2 { utility, .. } => {
            out.kind = Kind::Mo2 as i32;
            out.utility_weight = utility.clone().into_iter().collect();
        }
        ManagementObjective::Mo3 {
            favoured,
            protected,
            min_carried_rps,
            ..
        } => {
            out.kind = Kind::Mo3 as i32;
            out.favoured_service = favoured.clone().unwrap_or_default();
            out.protected_service = protected.clone();
            out.min_carried_rps = *min_carried_rps;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips_and_bad_kinds_are_named() {
        let kinds = [
            ManagementObjective::Mo1 {
                bounds_ms: [("a".to_string(), 100.0)].into(),
            },
            ManagementObjective::Mo2 {
                bounds_ms: [("a".to_string(), 100.0)].into(),
                utility: [("a".to_string(), 5.0)].into(),
            },
            ManagementObjective::Mo3 {
                bounds_ms: [("b".to_string(), 250.0)].into(),
                favoured: Some("b".into()),
                protected: "a".into(),
                min_carried_rps: 20.0,
            },
        ];
        for m in kinds {
            assert_eq!(management_from_pb(&management_to_pb(&m)), Ok(Some(m)));
        }
        let clear = pb::ManagementObjective {
            clear: true,
            ..Default::default()
        };
        assert_eq!(management_from_pb(&clear), Ok(None));
        let e = management_from_pb(&pb::ManagementObjective::default()).unwrap_err();
        assert!(e.contains("management.kind = 0"), "{e}");
    }
}
